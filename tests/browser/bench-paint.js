// Benchmark (not part of `npm test`; run with `npm run bench`): how long a
// chunk of a long answer takes from the upstream to the screen.
//
// The fake Anthropic upstream streams a 10,000-chunk Markdown answer
// (paragraphs, emphasis, inline code, headings, lists, code blocks and
// tables); each chunk carries its number (`w123`). For each chunk this
// measures, on one clock (the machine's, both processes reading
// `performance.timeOrigin + performance.now()`):
//
// - sent: when the upstream wrote it to the service;
// - painted: the end of the first animation frame whose DOM holds its
//   text. The page's DOM is watched with a MutationObserver (the highest
//   chunk number in what changed); a task posted from each frame's
//   requestAnimationFrame runs once that frame's rendering (style, layout,
//   paint) is done, and stamps every chunk that reached the DOM before it;
// - and, beside the page, a raw reader: when the thread's SSE stream
//   (GET …/events, read by this process) delivered it.
//
// It prints chunk-to-paint and chunk-to-reader p50/p95/p99/max overall
// and per quarter of the answer (2,500 chunks each), as a table and as a
// JSON line. Settings from the environment: CONVO_BIN (the binary,
// default target/debug/convo), BENCH_CHUNKS (10000), BENCH_INTERVAL_MS
// (2: the upstream's pause between chunks).

import { performance } from 'node:perf_hooks';

import { FakeAnthropic, Service, context, eventually, finalMessage, launch } from './harness.js';

const CHUNKS = Number(process.env.BENCH_CHUNKS) || 10000;
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 2);
const now = () => performance.timeOrigin + performance.now();

/** Chunk `i` of the answer: Markdown of every kind, in a 400-chunk cycle,
 * each chunk with its number `w{i}` in its text (never held back by the
 * page: a table arrives with its header and delimiter rows in one chunk). */
function piece(i) {
  const j = i % 400;
  const w = `w${i}`;
  if (j === 0) return `${i ? '\n\n' : ''}## Section ${w}\n\n`;
  if (j === 150) return `\n\n- item ${w}\n`;
  if (j > 150 && j < 190) return `- item **${w}** and more\n`;
  if (j === 200) return `\n\`\`\`js\nconst ${w} = 1;\n`;
  if (j > 200 && j < 260) return `let ${w} = w${i - 1} + 1; // step\n`;
  if (j === 260) return `\`\`\`\n\n${w} `;
  if (j === 300) return `\n\n| Name | Value |\n|------|------:|\n| ${w} | ${i} |\n`;
  if (j > 300 && j < 320) return `| ${w} | ${i} |\n`;
  if (j === 320) return `\n${w} `;
  if (j % 30 === 29) return `${w}.\n\n`;
  if (j % 7 === 3) return `*${w}* `;
  if (j % 11 === 5) return `\`${w}\` `;
  return `${w} `;
}

/** The highest chunk number in `text`, or -1. */
function highest(text) {
  let max = -1;
  for (const m of text.matchAll(/w(\d+)/g)) max = Math.max(max, Number(m[1]));
  return max;
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function stats(values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  const r = (x) => Math.round(x * 10) / 10;
  return { n: sorted.length, p50: r(percentile(sorted, 50)), p95: r(percentile(sorted, 95)),
    p99: r(percentile(sorted, 99)), max: r(sorted[sorted.length - 1]) };
}

/** Reads the thread's SSE stream until `done()`; the arrival time of
 * each chunk number. */
async function rawReader(url, arrived, signal) {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal });
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const bytes of res.body) {
      const at = now();
      buffer += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('\n');
        if (!data.includes('"message.delta"')) continue;
        const ev = JSON.parse(data);
        for (const m of ev.text.matchAll(/w(\d+)/g)) if (arrived[Number(m[1])] === undefined) arrived[Number(m[1])] = at;
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  }
}

async function main() {
  const pieces = Array.from({ length: CHUNKS }, (_, i) => piece(i));
  const upstream = await FakeAnthropic.start({ intervalMs: INTERVAL_MS });
  // When each chunk left the upstream.
  const sent = new Array(CHUNKS);
  const answer = upstream.answer.bind(upstream);
  upstream.answer = (req, res) => {
    const write = res.write.bind(res);
    res.write = (chunk, ...rest) => {
      if (typeof chunk === 'string' && chunk.includes('"text_delta"')) {
        const i = highest(chunk);
        if (i >= 0 && sent[i] === undefined) sent[i] = now();
      }
      return write(chunk, ...rest);
    };
    return answer(req, res);
  };
  upstream.queue.push({ intervalMs: INTERVAL_MS, blocks: [{ kind: 'text', pieces }] });

  const service = await Service.start({
    // Room for the long answer (the defaults cap an answer's size).
    args: ['--provider', 'anthropic', '--max-tokens', '64000', '--max-answer-bytes', '8000000'],
    env: { ANTHROPIC_API_KEY: 'bench', ANTHROPIC_BASE_URL: upstream.url },
  });
  const browser = await launch();
  const controller = new AbortController();
  try {
    const project = await service.project();
    const thread = await service.thread(project.id, { title: 'Paint benchmark' });
    const ctx = await context(browser, service.origin, { viewport: { width: 1200, height: 900 } });
    const page = await ctx.newPage();
    await page.goto(`${service.origin}/#/projects/${project.id}/threads/${thread.id}`);
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');

    await page.evaluate((chunks) => {
      const stamp = () => performance.timeOrigin + performance.now();
      window.painted = new Array(chunks).fill(null);
      let reached = -1; // the highest chunk in the DOM
      let stamped = -1; // the highest chunk stamped as painted
      const highestIn = (text) => {
        let max = -1;
        for (const m of text.matchAll(/w(\d+)/g)) max = Math.max(max, Number(m[1]));
        return max;
      };
      new MutationObserver((records) => {
        for (const r of records) {
          if (r.type === 'characterData') reached = Math.max(reached, highestIn(r.target.data));
          else for (const n of r.addedNodes) reached = Math.max(reached, highestIn(n.textContent));
        }
      }).observe(document.querySelector('[data-testid="messages"]'), { subtree: true, childList: true, characterData: true });
      // A task posted during a frame runs after that frame's rendering.
      const afterFrame = new MessageChannel();
      afterFrame.port1.onmessage = () => {
        const at = stamp();
        for (let i = stamped + 1; i <= reached && i < chunks; i += 1) window.painted[i] = at;
        stamped = Math.max(stamped, reached);
      };
      const frame = () => {
        afterFrame.port2.postMessage(0);
        if (!window.benchDone) requestAnimationFrame(frame);
      };
      requestAnimationFrame(frame);
      window.clockSkew = stamp() - Date.now();
    }, CHUNKS);

    const arrived = new Array(CHUNKS);
    const reader = rawReader(`${service.origin}/v1/projects/${project.id}/threads/${thread.id}/events`, arrived,
      controller.signal);
    const started = now();
    await page.getByTestId('composer').fill('A long answer, please.');
    await page.getByTestId('composer').press('Enter');
    const id = await eventually(async () => (await service.history(project.id, thread.id)).find((m) => m.role === 'assistant')?.id);
    await finalMessage(page, id, 300000);
    const history = await service.history(project.id, thread.id);
    const stored = history.find((m) => m.id === id);
    if (stored.status !== 'complete' || stored.content !== pieces.join('')) {
      throw new Error(`the answer is ${stored.status} with ${stored.content.length} of ${pieces.join('').length} characters`);
    }
    await page.waitForTimeout(200);
    const seconds = (now() - started) / 1000;
    const painted = await page.evaluate(() => { window.benchDone = true; return window.painted; });
    const skew = await page.evaluate(() => window.clockSkew);
    controller.abort();
    await reader;
    await ctx.close();

    const paint = painted.map((t, i) => (t === null || sent[i] === undefined ? NaN : t - sent[i]));
    const raw = arrived.map((t, i) => (t === undefined || sent[i] === undefined ? NaN : t - sent[i]));
    const quarter = Math.ceil(CHUNKS / 4);
    const rows = [['all', 0, CHUNKS]];
    for (let q = 0; q < 4; q += 1) rows.push([`chunks ${q * quarter + 1}–${Math.min(CHUNKS, (q + 1) * quarter)}`, q * quarter, (q + 1) * quarter]);
    const result = { chunks: CHUNKS, interval_ms: INTERVAL_MS, seconds: Math.round(seconds * 10) / 10,
      answer_chars: history.find((m) => m.id === id).content.length, page_clock_skew_ms: Math.round(skew * 10) / 10,
      paint: {}, raw_reader: {} };
    for (const [name, from, to] of rows) {
      result.paint[name] = stats(paint.slice(from, to));
      result.raw_reader[name] = stats(raw.slice(from, to));
    }
    const fmt = (s) => `${s.p50} | ${s.p95} | ${s.p99} | ${s.max}`;
    console.log(`${CHUNKS} chunks, ${INTERVAL_MS} ms apart, ${result.answer_chars} characters, ${result.seconds} s`);
    console.log('\n| Chunks | to paint p50 | p95 | p99 | max | to raw reader p50 | p95 | p99 | max |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const [name] of rows) console.log(`| ${name} | ${fmt(result.paint[name])} | ${fmt(result.raw_reader[name])} |`);
    const missing = paint.filter((x) => !Number.isFinite(x)).length;
    if (missing) console.log(`\n${missing} chunks never stamped as painted`);
    console.log(`\n${JSON.stringify(result)}`);
  } finally {
    controller.abort();
    await browser.close();
    await service.close();
    upstream.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
