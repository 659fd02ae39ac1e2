// An answer's Markdown, rendered as it streams: headings, lists,
// emphasis, links, tables, block quotes and fenced code blocks (coloured,
// with a Copy button).
//
// Safety. markdown-it parses with raw HTML off, so text never becomes
// markup; its HTML then goes through DOMPurify (a short list of tags and
// attributes, links only to http, https and mailto) before it reaches the
// page. Links open in a new tab with rel="noopener noreferrer nofollow".
// Images are not rendered (an image of another host would be a request
// the page never makes; `![alt](url)` stays a link). Table alignment is a
// class, not a style attribute, which the CSP would refuse.
//
// Cost. A delta's work must not grow with the answer. The text is cut into
// segments at block boundaries (a blank line outside a code fence, then a
// line that starts at the margin; a fence at the margin is a segment of
// its own); a segment is rendered once, when the next one begins, and
// only the open last one is rendered again on later calls, its elements
// updated in place (so they keep their identity, selection and focus). An
// open fence is drawn in parts of a few lines, each coloured once whole,
// so a long code block costs no more per call than a short one; it is
// coloured as one piece when it ends. The caller renders at most once per
// frame. (A single paragraph, list or table is re-rendered whole while it
// is open: the cost per call is that of the block being written.)
//
// Segments are rendered separately, so a reference-style link defined in
// a later segment than its use stays text, and a list interrupted by a
// blank line is two lists (numbered on, `start`): rare in answers.
//
// Streaming without jumps. An unclosed fence is a code block already.
// Until the answer ends, the open segment holds back what would show
// wrongly for a moment and then change: a table's header row until its
// delimiter row is complete (the table then appears whole, then grows row
// by row), a fence's opening line until it ends (its language is known),
// a line that may close the fence, and a line of only `-`, `=`, `*` or `_`
// (a list's marker, or an underline that would turn the line above into a
// heading).
//
// A segment's leading and trailing blank lines are kept as whitespace text
// (invisible between blocks), so a plain answer's textContent is its text.

import DOMPurify from '/vendor/dompurify/purify.es.mjs';
import hljs from '/vendor/highlight.js/highlight.es.min.js';
import MarkdownIt from '/vendor/markdown-it/markdown-it.esm.min.mjs';

const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: true,
  highlight: (code, lang) => {
    const language = lang && hljs.getLanguage(lang) ? lang : null;
    if (!language) return '';
    try {
      return hljs.highlight(code, { language, ignoreIllegals: true }).value;
    } catch (_) {
      return '';
    }
  },
});
md.disable('image');
// Table alignment as a class (`align-left` …): a style attribute is
// neither kept by the sanitiser nor allowed by the CSP.
md.core.ruler.push('align_classes', (state) => {
  for (const token of state.tokens) {
    if (token.type !== 'th_open' && token.type !== 'td_open') continue;
    const align = /text-align:(left|right|center)/.exec(token.attrGet('style') || '');
    token.attrs = (token.attrs || []).filter(([name]) => name !== 'style');
    if (align) token.attrJoin('class', `align-${align[1]}`);
  }
});

const PURIFY = {
  ALLOWED_TAGS: ['p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'strong', 'em', 's', 'del',
    'code', 'pre', 'blockquote', 'a', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'span'],
  ALLOWED_ATTR: ['href', 'title', 'class', 'start'],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  RETURN_DOM_FRAGMENT: true,
};

// While the page is idle, a first render and a first use of the common
// languages: each compiles code (tens of milliseconds for a language) that
// would otherwise hold up the frame showing the first answer or the first
// code block in that language.
const WARM = ['javascript', 'typescript', 'python', 'bash', 'json', 'rust', 'go', 'java', 'cpp', 'sql', 'xml', 'css',
  'yaml'];
const idle = globalThis.requestIdleCallback || ((f) => setTimeout(f, 100));
const warmSteps = [() => renderMarkdown('# a\n\n- *b* `c` [d](mailto:d@example.com)\n\n| e |\n|---|\n| f |\n\n> g\n'),
  ...WARM.map((language) => () => hljs.highlight('x = f(1) // y', { language, ignoreIllegals: true }))];
idle(function warm() {
  try { warmSteps.shift()?.(); } catch (_) { /* only a warm-up */ }
  if (warmSteps.length) idle(warm);
});

/** `source` as sanitised DOM nodes, ready for the page. */
export function renderMarkdown(source) {
  const fragment = DOMPurify.sanitize(md.render(source), PURIFY);
  for (const a of [...fragment.querySelectorAll('a')]) {
    if (!a.getAttribute('href')) { a.replaceWith(...a.childNodes); continue; }
    a.setAttribute('target', '_blank');
    a.setAttribute('rel', 'noopener noreferrer nofollow');
  }
  for (const code of [...fragment.querySelectorAll('pre > code')]) codeBlock(code);
  for (const table of [...fragment.querySelectorAll('table')]) {
    const wrap = document.createElement('div');
    wrap.className = 'md-table';
    // A region that may scroll sideways takes the keyboard's focus.
    wrap.tabIndex = 0;
    table.replaceWith(wrap);
    wrap.append(table);
  }
  return [...fragment.childNodes].filter((n) => n.nodeType !== Node.TEXT_NODE || n.data.trim());
}

/** A fenced block: its language, a Copy button, the code (scrollable). */
function codeBlock(code) {
  const pre = code.parentNode;
  const lang = /(?:^|\s)language-(\S+)/.exec(code.className)?.[1] || '';
  code.classList.add('hljs');
  pre.tabIndex = 0;
  const block = document.createElement('div');
  block.className = 'code-block';
  const head = document.createElement('div');
  head.className = 'code-head';
  const label = document.createElement('span');
  label.className = 'code-lang';
  label.textContent = lang;
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.className = 'code-copy small';
  copy.dataset.testid = 'copy-code';
  copy.setAttribute('aria-label', lang ? `Copy ${lang} code` : 'Copy code');
  copy.textContent = 'Copy';
  head.append(label, copy);
  pre.replaceWith(block);
  block.append(head, pre);
}

// ------------------------------------------------------------ segments

const BLANK = /^\s*$/;
const FENCE_OPEN = /^\s*(`{3,}|~{3,})(.*)$/;

/** Finds the block boundaries of a growing text, reading each line once:
 * a line that starts at the margin after a blank line, outside a fence;
 * a fence that starts at the margin, and the line after its end (such a
 * fence is a segment of its own, drawn line by line while it is open). */
class Splitter {
  constructor() {
    this.pos = 0; // start of the first line not read yet
    this.fence = null; // the open fence: {ch, n, top (at the margin)}
    this.blank = false; // the last line read was blank (outside a fence)
    this.last = 0; // the last boundary
  }

  /** The boundaries in `src` after what was read (ascending offsets). */
  scan(src) {
    const cuts = [];
    for (let nl = src.indexOf('\n', this.pos); nl !== -1; nl = src.indexOf('\n', this.pos)) {
      this.line(src.slice(this.pos, nl), this.pos, nl + 1, cuts);
      this.pos = nl + 1;
    }
    // The next block began: its first character is enough to know.
    if (this.blank && this.pos < src.length && !/\s/.test(src[this.pos])) {
      this.cut(this.pos, cuts);
      this.blank = false;
    }
    return cuts;
  }

  cut(at, cuts) {
    if (at <= this.last) return;
    cuts.push(at);
    this.last = at;
  }

  line(line, start, next, cuts) {
    if (this.fence) {
      const close = /^\s*(`{3,}|~{3,})\s*$/.exec(line);
      if (close && close[1][0] === this.fence.ch && close[1].length >= this.fence.n) {
        if (this.fence.top) this.cut(next, cuts);
        this.fence = null;
      }
      return;
    }
    if (BLANK.test(line)) { this.blank = true; return; }
    const margin = !/^\s/.test(line);
    const open = FENCE_OPEN.exec(line);
    const fence = open && !(open[1][0] === '`' && open[2].includes('`'));
    if (margin && (this.blank || fence)) this.cut(start, cuts);
    this.blank = false;
    if (fence) this.fence = { ch: open[1][0], n: open[1].length, top: margin };
  }
}

/** Whether `line` may still become the line that closes `fence`. */
function mayClose(line, fence) {
  return new RegExp(`^\\s*\\${fence.ch}+\\s*$`).test(line);
}

const TABLE_ROW = /^ {0,3}\|/;
const TABLE_DELIMITER = /^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

/** What of the open segment `text` to show while the answer streams: all
 * of it but what would show wrongly for a moment (see the module doc).
 * `fence`: the fence open at the end of its last whole line. */
function steady(text, fence) {
  const lines = text.split('\n');
  const last = lines[lines.length - 1];
  let keep = lines.length;
  if (fence) {
    if (last && mayClose(last, fence)) keep -= 1;
  } else if (/^\s*(`{1,2}|~{1,2})$/.test(last) || /^\s*(`{3,}[^`]*|~{3,}.*)$/.test(last)) {
    // A fence being opened: shown once its line (and language) is whole.
    keep -= 1;
  } else if (/^ {0,3}([-=*_])\1* *$/.test(last)) {
    keep -= 1;
  } else {
    // A table: held back until its delimiter row is whole.
    let first = lines.length - (last ? 1 : 2);
    if (first >= 0 && TABLE_ROW.test(lines[first])) {
      while (first > 0 && TABLE_ROW.test(lines[first - 1])) first -= 1;
      const delimiterWhole = first + 1 < lines.length - 1 && TABLE_DELIMITER.test(lines[first + 1]);
      if (!delimiterWhole) keep = first;
    }
  }
  return keep === lines.length ? text : lines.slice(0, keep).join('\n');
}

// ---------------------------------------------------------------- view

/**
 * The Markdown view of one answer, drawn into `element` (which it owns:
 * one `div.md-seg` per segment). `render(source, final)` draws the
 * answer's text so far; `final` once it has ended (nothing held back).
 * Each call does work in proportion to what changed, not to the answer.
 */
export class MarkdownView {
  constructor(element) {
    this.element = element;
    element.classList.add('md');
    element.addEventListener('click', (e) => copyClicked(e, element));
    this.reset();
  }

  reset() {
    this.element.replaceChildren();
    this.source = '';
    this.final = false;
    this.splitter = new Splitter();
    this.open = null; // {start, el}: the segment still being written
  }

  render(source, final = false) {
    if (source === this.source && final === this.final) return;
    // Text only grows; anything else (an answer replaced) starts afresh.
    if (!source.startsWith(this.source)) this.reset();
    this.source = source;
    this.final = final;
    if (!source) return;
    if (!this.open) this.open = this.segment(0);
    for (const cut of this.splitter.scan(source)) {
      // The open segment is whole: drawn one last time, then left alone.
      this.draw(this.open, source.slice(this.open.start, cut));
      this.open = this.segment(cut);
    }
    const text = source.slice(this.open.start);
    const fence = this.splitter.fence;
    if (!final && fence?.top && /^[`~]/.test(text)) this.drawFence(this.open, text, fence);
    else this.draw(this.open, final ? text : steady(text, fence));
  }

  /** A new segment, put in the page at its first draw (whole). */
  segment(start) {
    const el = document.createElement('div');
    el.className = 'md-seg';
    return { start, el };
  }

  draw(segment, text) {
    if (segment.text === text) return;
    segment.text = text;
    segment.code = null;
    const lead = /^\n*/.exec(text)[0];
    const trail = /\s*$/.exec(text.slice(lead.length))[0];
    const nodes = renderMarkdown(text);
    if (lead) nodes.unshift(document.createTextNode(lead));
    if (trail) nodes.push(document.createTextNode(trail));
    morph(segment.el, nodes);
    if (!segment.el.parentNode) this.element.append(segment.el);
  }

  /**
   * An open fence at the margin, drawn as it grows: its frame (language,
   * Copy, an empty code element) from its opening line, then its code in
   * parts of up to PART_LINES lines (ending early at a blank line), each
   * coloured on its own once whole; only the last part is drawn again.
   * Its last line is held back while it may become the closing fence. When
   * the fence ends, `draw` renders it whole (a construct that spans two
   * parts, a long string say, is then coloured as one).
   */
  drawFence(segment, text, fence) {
    const first = text.indexOf('\n') + 1;
    const opener = text.slice(0, first);
    let code = text.slice(first);
    const lastLine = code.slice(code.lastIndexOf('\n') + 1);
    if (lastLine && mayClose(lastLine, fence)) code = code.slice(0, code.length - lastLine.length);
    if (!segment.code || segment.opener !== opener) {
      this.draw(segment, opener);
      segment.opener = opener;
      segment.code = segment.el.querySelector('pre > code');
      segment.lang = /(?:^|\s)language-(\S+)/.exec(segment.code?.className || '')?.[1] || '';
      segment.done = 0; // the code in whole parts
      segment.part = null; // the part still growing
      segment.code?.replaceChildren();
    }
    segment.text = null;
    if (!segment.code) return;
    for (let end = partEnd(code, segment.done); end !== -1; end = partEnd(code, segment.done)) {
      this.drawPart(segment, code.slice(segment.done, end));
      segment.done = end;
      segment.part = null;
    }
    if (segment.done < code.length || segment.part) this.drawPart(segment, code.slice(segment.done));
  }

  drawPart(segment, text) {
    if (!segment.part) {
      segment.part = document.createElement('span');
      segment.part.className = 'code-part';
      segment.code.append(segment.part);
    }
    morph(segment.part, colour(text, segment.lang));
  }
}

const PART_LINES = 12;

/** Where the part of `code` that starts at `from` ends (after a blank
 * line, or after PART_LINES lines), or -1 while it is not whole. */
function partEnd(code, from) {
  let lines = 0;
  for (let nl = code.indexOf('\n', from); nl !== -1; nl = code.indexOf('\n', from)) {
    lines += 1;
    const blank = BLANK.test(code.slice(from, nl));
    from = nl + 1;
    if (blank || lines === PART_LINES) return from;
  }
  return -1;
}

/** `code` coloured as `lang` (when highlight.js knows it), as sanitised
 * nodes. */
function colour(code, lang) {
  if (!code) return [];
  if (!lang || !hljs.getLanguage(lang)) return [document.createTextNode(code)];
  const html = hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
  return [...DOMPurify.sanitize(html, PURIFY).childNodes];
}

/** Makes `parent`'s children look like `next` (nodes not in the page),
 * keeping every node that has the same kind and tag in the same place
 * and changing only what differs. A button is left as it is (its label
 * may say "Copied"). */
function morph(parent, next) {
  let old = parent.firstChild;
  for (const node of next) {
    if (old && old.nodeType === node.nodeType && old.nodeName === node.nodeName) {
      if (node.nodeType === Node.TEXT_NODE) {
        if (old.data !== node.data) old.data = node.data;
      } else if (node.nodeName !== 'BUTTON') {
        for (const { name, value } of node.attributes) if (old.getAttribute(name) !== value) old.setAttribute(name, value);
        for (const { name } of [...old.attributes]) if (!node.hasAttribute(name)) old.removeAttribute(name);
        morph(old, [...node.childNodes]);
      }
      old = old.nextSibling;
    } else {
      parent.insertBefore(node, old);
    }
  }
  while (old) {
    const gone = old;
    old = old.nextSibling;
    gone.remove();
  }
}

// ---------------------------------------------------------------- copy

function copyClicked(e, element) {
  const button = e.target.closest?.('.code-copy');
  if (!button || !element.contains(button)) return;
  const code = button.closest('.code-block')?.querySelector('code');
  if (!code) return;
  copyText(code).then((ok) => {
    button.textContent = ok ? 'Copied' : 'Press Ctrl+C';
    clearTimeout(button.timer);
    button.timer = setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
}

/** Puts `code`'s text on the clipboard; where the page may not (not a
 * secure context), selects it for the reader to copy. */
async function copyText(code) {
  try {
    await navigator.clipboard.writeText(code.textContent);
    return true;
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents(code);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    return false;
  }
}
