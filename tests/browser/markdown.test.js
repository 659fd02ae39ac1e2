// Answers in Markdown (issue 25, items 2 and 4), in Chromium: every
// element renders (headings, lists, emphasis, safe links, tables, block
// quotes, coloured code blocks whose Copy button puts the code on the
// clipboard); a fence or a table streamed a character at a time never
// jumps about; text that tries to become markup or script stays text,
// with no CSP violation; a question stays plain text; and a long answer's
// DOM work per frame does not grow with the answer, drawn at most once
// per frame however fast its deltas come (and the client's transcript,
// without a browser, extends an answer's content by each delta).

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { Transcript } from '../../src/web/client/convo.js';
import { FakeAnthropic, Service, context, eventually, finalMessage, launch, shot } from './harness.js';

const AXE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/axe-core/axe.min.js');

let browser;
let upstream;
let service;

before(async () => {
  browser = await launch();
  upstream = await FakeAnthropic.start({ intervalMs: 5 });
  service = await Service.start({
    args: ['--provider', 'anthropic'],
    env: { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: upstream.url },
  });
});

after(async () => {
  await browser?.close();
  await service?.close();
  upstream?.close();
});

/** A context whose pages record CSP violations (`window.cspViolations`)
 * from their first script on. */
async function watchedContext(options = {}) {
  const ctx = await context(browser, service.origin, options);
  await ctx.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return ctx;
}

async function clean(ctx, page) {
  assert.deepEqual(ctx.record.foreign, [], 'requests to another host');
  assert.deepEqual(ctx.record.errors, [], 'console errors');
  assert.deepEqual(await page.evaluate(() => window.cspViolations), [], 'CSP violations');
}

async function openThread(ctx, title) {
  const project = await service.project();
  const thread = await service.thread(project.id, { title });
  const page = await ctx.newPage();
  await page.goto(`${service.origin}/#/projects/${project.id}/threads/${thread.id}`);
  await page.waitForSelector('[data-testid="connection"][data-state="live"]');
  return { page, pid: project.id, tid: thread.id };
}

/** Asks `question`; the upstream answers with `pieces`, `intervalMs`
 * apart. */
async function ask(page, question, pieces, intervalMs = 5) {
  upstream.queue.push({ intervalMs, blocks: [{ kind: 'text', pieces }] });
  await page.getByTestId('composer').fill(question);
  await page.getByTestId('composer').press('Enter');
}

/** The `nth` answer of a thread (1 the first), once it is stored whole
 * and the page shows it so. */
async function settledAnswer(page, pid, tid, nth = 1) {
  const answer = await eventually(async () => {
    const answers = (await service.settled(pid, tid)).filter((m) => m.role === 'assistant');
    return answers.length >= nth ? answers[nth - 1] : null;
  });
  await finalMessage(page, answer.id);
  return { answer, el: page.locator(`[data-testid="message"][data-message-id="${answer.id}"]`) };
}

/** `text` cut into pieces of `n` characters. */
const cut = (text, n = 1) => Array.from({ length: Math.ceil(text.length / n) }, (_, i) => text.slice(i * n, i * n + n));

const CODE = 'def greet(name):\n    return f"Hello {name}"  # a greeting\n';
const RICH = [
  '# Release notes',
  '',
  'Some **bold**, *emphasis*, ~~struck~~ and `inline code`, a [guide](https://example.com/docs "The guide") '
    + 'and a bare https://example.org/x?y=1 link; mail <mailto:team@example.com>.',
  '',
  '## Lists',
  '',
  '- one',
  '- two',
  '  1. nested first',
  '  2. nested second',
  '',
  '> A quoted *line*',
  '> and its second line.',
  '',
  '| Name | Size | Kind |',
  '|:-----|-----:|:----:|',
  '| alpha | 1 | a |',
  '| beta | 22 | b |',
  '',
  '```python',
  CODE.trimEnd(),
  '```',
  '',
  'That is all.',
].join('\n');

test('each Markdown element renders, and Copy puts a code block on the clipboard', async () => {
  const ctx = await watchedContext({ permissions: ['clipboard-read', 'clipboard-write'], viewport: { width: 1000, height: 1100 } });
  try {
    const { page, pid, tid } = await openThread(ctx, 'Markdown');
    await ask(page, 'Show me **everything**', cut(RICH, 7));
    const { answer, el } = await settledAnswer(page, pid, tid);
    assert.equal(answer.content, RICH);

    assert.equal(await el.locator('h1').textContent(), 'Release notes');
    assert.equal(await el.locator('h2').textContent(), 'Lists');
    assert.equal(await el.locator('strong').textContent(), 'bold');
    assert.equal(await el.locator('p em').first().textContent(), 'emphasis');
    assert.equal(await el.locator('s').textContent(), 'struck');
    assert.equal(await el.locator('p > code').textContent(), 'inline code');

    // Links open in a new tab, tell nothing of this page, and are not endorsed.
    const links = await el.locator('a').evaluateAll((as) => as.map((a) => [a.getAttribute('href'), a.target, a.rel, a.textContent]));
    const safe = ['_blank', 'noopener noreferrer nofollow'];
    assert.deepEqual(links, [
      ['https://example.com/docs', ...safe, 'guide'],
      ['https://example.org/x?y=1', ...safe, 'https://example.org/x?y=1'],
      ['mailto:team@example.com', ...safe, 'mailto:team@example.com'],
    ]);
    assert.equal(await el.locator('a').first().getAttribute('title'), 'The guide');

    assert.deepEqual(await el.locator('ul > li').evaluateAll((lis) => lis.map((li) => li.firstChild.textContent.trim())), ['one', 'two']);
    assert.deepEqual(await el.locator('ul > li ol > li').allTextContents(), ['nested first', 'nested second']);
    assert.equal((await el.locator('blockquote').textContent()).trim(), 'A quoted line\nand its second line.');
    assert.equal(await el.locator('blockquote em').textContent(), 'line');

    // A table, aligned by classes (a style attribute would break the CSP).
    assert.deepEqual(await el.locator('table th').allTextContents(), ['Name', 'Size', 'Kind']);
    assert.deepEqual(await el.locator('table tbody tr').evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))),
      [['alpha', '1', 'a'], ['beta', '22', 'b']]);
    assert.deepEqual(await el.locator('table tbody tr:first-child td').evaluateAll((cs) => cs.map((c) => c.className)),
      ['align-left', 'align-right', 'align-center']);
    assert.equal(await el.locator('[style]').count(), 0, 'no style attribute anywhere');
    assert.equal(await el.locator('table td.align-right').first().evaluate((td) => getComputedStyle(td).textAlign), 'right');

    // A code block: coloured, its language named, with a Copy button.
    const block = el.locator('.code-block');
    assert.equal(await block.count(), 1);
    assert.equal(await block.locator('.code-lang').textContent(), 'python');
    const code = block.locator('pre > code.hljs.language-python');
    assert.equal(await code.textContent(), CODE);
    assert.equal(await code.locator('.hljs-keyword').first().textContent(), 'def');
    assert.ok(await code.locator('.hljs-string').count() >= 1, 'strings coloured');
    assert.equal(await code.locator('.hljs-comment').textContent(), '# a greeting');
    const colour = (sel) => code.locator(sel).first().evaluate((s) => getComputedStyle(s).color);
    assert.notEqual(await colour('.hljs-keyword'), await code.evaluate((c) => getComputedStyle(c).color), 'keywords have their colour');
    await page.evaluate(() => navigator.clipboard.writeText('nothing yet'));
    const copy = block.getByTestId('copy-code');
    assert.equal(await copy.getAttribute('aria-label'), 'Copy python code');
    await copy.click();
    await page.waitForFunction((b) => b.textContent === 'Copied', await copy.elementHandle());
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), CODE, 'the code, exactly');

    assert.match(await el.locator('p').last().textContent(), /^That is all\.$/);
    // The question stays as it was typed.
    const question = page.locator('[data-testid="message"][data-role="user"]');
    assert.equal(await question.textContent(), 'Show me **everything**');
    assert.equal(await question.locator('strong').count(), 0);

    await el.evaluate((e) => e.scrollIntoView({ block: 'start' }));
    await shot(page, 'markdown-answer');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, 'markdown-answer-dark');
    await clean(ctx, page);
  } finally {
    await ctx.close();
  }
});

test('axe-core finds no serious or critical issue on a Markdown answer, light or dark', async () => {
  // (CSP lets no injected script run; the audit's own script needs it off.)
  const ctx = await context(browser, service.origin, { bypassCSP: true });
  try {
    const { page, pid, tid } = await openThread(ctx, 'Audited Markdown');
    await ask(page, 'Everything', cut(RICH, 40));
    await settledAnswer(page, pid, tid);
    await page.addScriptTag({ path: AXE });
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      const violations = await page.evaluate(async () => (await window.axe.run(document)).violations);
      const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
      assert.deepEqual(bad, [], scheme);
    }
  } finally {
    await ctx.close();
  }
});

/**
 * Records the answer's DOM after every change (a MutationObserver's
 * callback: each state the browser could paint) into `window.samples`:
 * its code blocks (`kind` 'fence') or its tables ('table').
 */
async function sampling(page, kind) {
  await page.evaluate((what) => {
    window.samples = [];
    let first = null;
    const fence = (answer) => {
      const pres = answer.querySelectorAll('pre');
      first ||= pres[0];
      return { pres: pres.length, same: !pres[0] || pres[0] === first, code: pres[0]?.textContent ?? null,
        text: answer.textContent, blocks: answer.querySelectorAll('.code-block').length };
    };
    const table = (answer) => {
      const t = answer.querySelector('table');
      first ||= t;
      return { tables: answer.querySelectorAll('table').length, same: !t || t === first, rows: t ? t.rows.length : 0,
        heads: t ? t.tHead.rows[0].cells.length : 0, text: answer.textContent };
    };
    const take = what === 'fence' ? fence : table;
    const observer = new MutationObserver(() => {
      const answer = document.querySelector('[data-testid="message"][data-role="assistant"]');
      if (answer) window.samples.push(take(answer));
    });
    observer.observe(document.querySelector('[data-testid="messages"]'), { subtree: true, childList: true, characterData: true });
  }, kind);
}

test('a fence streamed a character at a time is one code block from its first line, and never jumps', async () => {
  const ctx = await watchedContext();
  try {
    const { page, pid, tid } = await openThread(ctx, 'Fence');
    await sampling(page, 'fence');
    const code = 'const answer = {\n  value: 42,\n\n  items: [1, 2, 3],\n};\nconsole.log(`${answer.value}`);\n';
    const source = `Here is the code:\n\n\`\`\`js\n${code}\`\`\`\n\nAnd after it.`;
    await ask(page, 'Code please', cut(source), 8);
    const { el } = await settledAnswer(page, pid, tid);
    const samples = await page.evaluate(() => window.samples);
    assert.ok(samples.length > 40, `the page was sampled while it streamed (${samples.length})`);
    const withCode = samples.filter((s) => s.pres > 0);
    assert.ok(withCode.length > 20, 'the code block showed while its code streamed');
    for (const s of samples) {
      assert.ok(s.pres <= 1 && s.blocks <= 1, `one code block at most: ${JSON.stringify(s)}`);
      assert.ok(s.same, 'the same <pre> element throughout');
      assert.ok(!s.text.includes('``'), `no fence shown as text: ${JSON.stringify(s.text)}`);
      if (s.code !== null) assert.ok(code.startsWith(s.code), `the code only grows: ${JSON.stringify(s.code)}`);
    }
    // Once it appeared it stayed (no flicker back to text).
    const first = samples.findIndex((s) => s.pres === 1);
    assert.ok(samples.slice(first).every((s) => s.pres === 1));
    assert.equal(await el.locator('pre code').textContent(), code);
    assert.equal(await el.locator('.code-lang').textContent(), 'js');
    assert.equal((await el.locator('p').allTextContents()).join('|'), 'Here is the code:|And after it.');
    await clean(ctx, page);
  } finally {
    await ctx.close();
  }
});

test('a table streamed a character at a time appears whole once its delimiter row is, then grows row by row', async () => {
  const ctx = await watchedContext();
  try {
    const { page, pid, tid } = await openThread(ctx, 'Table');
    await sampling(page, 'table');
    const source = 'Sizes:\n\n| Name | Size |\n|------|-----:|\n| alpha | 1 |\n| beta | 22 |\n| gamma | 333 |\n\nDone.';
    await ask(page, 'A table please', cut(source), 8);
    const { el } = await settledAnswer(page, pid, tid);
    const samples = await page.evaluate(() => window.samples);
    assert.ok(samples.length > 15, `sampled while streaming (${samples.length})`);
    let rows = 0;
    for (const s of samples) {
      assert.ok(!s.text.includes('|'), `a table row never shows as text: ${JSON.stringify(s.text)}`);
      assert.ok(s.tables <= 1 && s.same, 'one table element throughout');
      if (s.tables) assert.equal(s.heads, 2, 'the header is whole when the table appears');
      assert.ok(s.rows >= rows, 'rows are only added');
      rows = s.rows;
    }
    assert.equal(rows, 4);
    assert.deepEqual(await el.locator('tbody td:first-child').allTextContents(), ['alpha', 'beta', 'gamma']);
    await clean(ctx, page);
  } finally {
    await ctx.close();
  }
});

test('text that tries to be markup or script stays text: no element, no script run, no CSP violation', async () => {
  const ctx = await watchedContext();
  try {
    const { page, pid, tid } = await openThread(ctx, 'Hostile');
    const hostile = [
      'An image: <img src=x onerror="window.pwned=1">',
      '',
      'A script: <script>window.pwned=2</script>',
      '',
      '[click me](javascript:window.pwned=3) and [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) '
        + 'and [vb](vbscript:msgbox) and <a href="javascript:window.pwned=4">raw link</a>',
      '',
      '![tracker](https://tracker.example/pixel.png) <iframe src="https://evil.example"></iframe>',
      '',
      '<style>body{display:none}</style><div onclick="window.pwned=5" style="color:red">div</div>',
      '',
      '```html',
      '<script>window.pwned=6</script><img src=x onerror=window.pwned=7>',
      '```',
    ].join('\n');
    await ask(page, '<img src=x onerror="window.pwned=8"> **and** <script>window.pwned=9</script>', cut(hostile, 5));
    const { el } = await settledAnswer(page, pid, tid);
    const text = await el.textContent();
    assert.match(text, /<img src=x onerror="window\.pwned=1">/);
    assert.match(text, /<script>window\.pwned=2<\/script>/);
    assert.match(text, /\[click me\]\(javascript:window\.pwned=3\)/);
    assert.match(text, /<a href="javascript:window\.pwned=4">raw link<\/a>/);
    assert.match(text, /<style>body\{display:none\}<\/style>/);
    assert.equal(await el.locator('img, script, iframe, style, object, embed, svg, math, form, div[onclick]').count(), 0);
    assert.equal(await el.locator('[onclick], [onerror], [style]').count(), 0);
    // Links only to http(s): the image became a link to it, and the
    // hostile links stayed text.
    const hrefs = await el.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    assert.ok(hrefs.includes('https://tracker.example/pixel.png'), String(hrefs));
    for (const href of hrefs) assert.match(href, /^https:\/\//);
    // Code shows the markup as code.
    assert.equal(await el.locator('pre code').textContent(), '<script>window.pwned=6</script><img src=x onerror=window.pwned=7>\n');
    const question = page.locator('[data-testid="message"][data-role="user"]');
    assert.equal(await question.locator('*').count(), 0, 'the question is text');
    assert.equal(await page.evaluate(() => window.pwned), undefined, 'no script ran');
    await clean(ctx, page);
  } finally {
    await ctx.close();
  }
});

/** An element's children as markup with attributes in name order (the
 * order they were set in is no part of the result). */
function canonical(el) {
  const show = (n) => {
    if (n.nodeType === Node.TEXT_NODE) return n.data;
    const attrs = [...n.attributes].map((a) => ` ${a.name}="${a.value}"`).sort().join('');
    return `<${n.localName}${attrs}>${[...n.childNodes].map(show).join('')}</${n.localName}>`;
  };
  return [...el.childNodes].map(show).join('');
}

test('a plain answer reads as its text; a reload draws the same Markdown as the stream did', async () => {
  const ctx = await watchedContext();
  try {
    const { page, pid, tid } = await openThread(ctx, 'Plain and reload');
    const plain = 'Line one of a plain answer.\nLine two, with  two spaces.\n\nA second paragraph ';
    await ask(page, 'Plain', cut(plain, 3));
    const first = await settledAnswer(page, pid, tid);
    assert.equal(await first.el.textContent(), plain, 'textContent is the text, byte for byte');
    await ask(page, 'Rich', cut(RICH, 3));
    const second = await settledAnswer(page, pid, tid, 2);
    const streamed = await second.el.evaluate(canonical);
    assert.match(streamed, /<h1>Release notes<\/h1>/);
    // A long fence is drawn in parts while it streams (a docstring spans
    // two of them); once closed it is coloured as one.
    const lines = ['def long():', '    """A docstring', '', '    over a blank line."""',
      ...Array.from({ length: 30 }, (_, i) => `    x${i} = ${i}  # line ${i}`), '    return x0'];
    const fence = `Code:\n\`\`\`python\n${lines.join('\n')}\n\`\`\`\nAfter.`;
    await ask(page, 'Long code', cut(fence, 4));
    const third = await settledAnswer(page, pid, tid, 3);
    const fenced = await third.el.evaluate(canonical);
    assert.equal(await third.el.locator('pre code').textContent(), `${lines.join('\n')}\n`);
    assert.equal(await third.el.locator('.hljs-string').first().textContent(), '"""A docstring\n\n    over a blank line."""');
    await page.reload();
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    const reloaded = (id) => page.locator(`[data-testid="message"][data-message-id="${id}"]`).evaluate(canonical);
    assert.equal(await reloaded(second.answer.id), streamed, 'the same DOM from the history as from the stream');
    assert.equal(await reloaded(third.answer.id), fenced, 'and for the long fence');
    await clean(ctx, page);
  } finally {
    await ctx.close();
  }
});

test('the transcript keeps content as its text blocks joined, extending it by each delta', () => {
  const id = '01900000-0000-7000-8000-00000000000a';
  const t = new Transcript();
  const apply = (ev) => t.apply({ message_id: id, ...ev });
  apply({ type: 'message.started', role: 'assistant', model: 'm' });
  apply({ type: 'message.block', block: 0, kind: 'text' });
  let offset = 0;
  for (const piece of ['One ', 'two ', 'thrée ']) {
    apply({ type: 'message.delta', block: 0, offset, text: piece });
    offset += Buffer.byteLength(piece);
  }
  assert.equal(t.get(id).content, 'One two thrée ');
  apply({ type: 'message.block', block: 1, kind: 'tool_use', id: 'toolu_1', name: 'x' });
  apply({ type: 'message.delta', block: 1, offset: 0, text: '{}' });
  apply({ type: 'message.block', block: 2, kind: 'text' });
  apply({ type: 'message.delta', block: 2, offset: 0, text: 'after' });
  // (A late delta of an earlier text block: content is joined again.)
  apply({ type: 'message.delta', block: 0, offset, text: 'four' });
  assert.equal(t.get(id).content, 'One two thrée fourafter');
  apply({ type: 'message.delta', block: 2, offset: 5, text: ' all' });
  assert.equal(t.get(id).content, 'One two thrée fourafter all');
  // A replay after cursor_ahead starts the message's text afresh.
  t.apply({ type: 'error', code: 'cursor_ahead', message: '' });
  apply({ type: 'message.delta', block: 0, offset: 0, text: 'New' });
  assert.equal(t.get(id).content, 'New');
});

/**
 * Per frame while an answer streams: the characters the page wrote into
 * the transcript's DOM (text nodes changed or added), and how many times
 * it changed the DOM. In `window.frames` (one entry per animation frame
 * that saw a change) and `window.counts`.
 */
async function measuring(page) {
  await page.evaluate(() => {
    window.frames = [];
    window.counts = { frames: 0, batches: 0 };
    let written = 0;
    let batches = 0;
    const observer = new MutationObserver((records) => {
      batches += 1;
      // (A node added inside another added in the same batch counts once.)
      const added = new Set(records.flatMap((r) => [...r.addedNodes]));
      const inside = (n) => { for (let p = n.parentNode; p; p = p.parentNode) if (added.has(p)) return true; return false; };
      for (const r of records) if (r.type === 'characterData') written += r.target.data.length;
      for (const n of added) if (!inside(n)) written += n.textContent.length;
    });
    observer.observe(document.querySelector('[data-testid="messages"]'), { subtree: true, childList: true, characterData: true });
    const tick = () => {
      window.counts.frames += 1;
      if (written) {
        const answer = document.querySelector('[data-testid="message"][data-role="assistant"]');
        window.frames.push({ written, batches, length: answer ? answer.textContent.length : 0 });
      }
      window.counts.batches += batches;
      written = 0;
      batches = 0;
      if (!window.stopMeasuring) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

test('a long answer: the DOM work per frame does not grow with the answer, drawn at most once per frame', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx, 'Long');
    // 1,200 deltas of about 8 characters, a paragraph every 12: about
    // 10 KB, deltas far faster than frames.
    const pieces = Array.from({ length: 1200 }, (_, i) => `word${i} ${(i + 1) % 12 === 0 ? '\n\n' : ''}`);
    await measuring(page);
    await ask(page, 'Long please', pieces, 2);
    const { answer } = await settledAnswer(page, pid, tid);
    await page.evaluate(() => { window.stopMeasuring = true; });
    const frames = await page.evaluate(() => window.frames);
    const counts = await page.evaluate(() => window.counts);
    const total = answer.content.length;
    assert.ok(total > 9000, `a long answer (${total})`);
    const streaming = frames.filter((f) => f.length > 0 && f.length < total);
    assert.ok(streaming.length > 20, `frames while it streamed: ${streaming.length}`);
    // What a frame wrote beyond the text that arrived in it: redrawing
    // the open paragraph (about 100 characters here) and the one it
    // closed. It must not grow with the answer (the rewrite per delta
    // wrote the whole answer, once per delta).
    streaming.forEach((f, i) => { f.extra = f.written - (f.length - (i ? streaming[i - 1].length : 0)); });
    const quarter = Math.floor(streaming.length / 4);
    const early = streaming.slice(0, quarter).map((f) => f.extra);
    const late = streaming.slice(-quarter).map((f) => f.extra);
    const max = (xs) => Math.max(...xs);
    assert.ok(max(late) < 400, `late frames rewrite little: at most ${max(late)} characters (answer ${total})`);
    assert.ok(max(late) <= 2 * max(early) + 150, `late ${max(late)} vs early ${max(early)} characters rewritten per frame`);
    // One change of the DOM per frame while deltas pour in (the rewrite
    // per delta changed it once per delta).
    const busy = streaming.filter((f) => f.batches > 1);
    assert.ok(busy.length <= 5, `frames that changed the DOM more than once: ${busy.length} of ${streaming.length}`);
    assert.ok(streaming.length < pieces.length / 2, `deltas coalesce: ${streaming.length} drawn frames for ${pieces.length} deltas`);
    assert.ok(counts.frames > 0);
  } finally {
    await ctx.close();
  }
});
