// sse.js: Server-Sent Events read from a fetch body (part of
// /client/convo.js).
//
// `Stream` reads SSE with fetch rather than EventSource because only
// fetch shows HTTP statuses (401, 404, 429 with Retry-After) and the
// heartbeat comments its stall watchdog needs; this is the parser that
// makes that possible, kept apart as it knows nothing of convo's events.

/** Reads Server-Sent Events from a fetch body: `onEvent({type, data,
 * id})` per event, `onBytes()` per chunk (heartbeats included). */
export async function readSse(body, onEvent, onBytes) {
  const reader = body.getReader();
  const text = new TextDecoder();
  let buffer = '';
  let event = { type: 'message', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes();
    buffer += text.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (event.data.length) onEvent({ type: event.type, data: event.data.join('\n'), id: event.id });
        event = { type: 'message', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event.type = value;
      else if (field === 'data') event.data.push(value);
      else if (field === 'id') event.id = value;
    }
  }
}
