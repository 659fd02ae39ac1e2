//! One ordered shutdown, tried on the real binary with SIGTERM: it stops
//! taking work (readiness and new questions answer 503 at once), lets
//! running answers go on until the grace minus its reserve, ends what is
//! left `interrupted`, tells every subscriber `shutting_down` (also those
//! far behind, as soon as they drain what their kernel holds), and exits
//! 0 once they have it, within the grace.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    binary::{signal, Binary},
    support::{database_url, error_code, Ev, Events as _, RawSse, Transcript, Ws},
};

/// An answer of about four seconds.
const SLOW: &[&str] = &["--sim-chunks", "400", "--sim-interval-ms", "10", "--flush-interval-ms", "20"];

/// SIGTERM: at once, readiness and new questions answer 503 (so a load
/// balancer moves on); the running answer goes on until the grace less
/// its reserve, then ends `interrupted` with all its text; its
/// subscribers get `shutting_down`; everything is committed and the
/// process exits 0, within the grace.
#[actix_web::test]
async fn sigterm_stops_new_work_lets_the_answer_run_then_interrupts_it_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut flags = SLOW.to_vec();
    flags.extend(["--shutdown-grace-ms", "2500", "--shutdown-reserve-ms", "1500"]);
    let bin = Binary::start(&db, &flags).await;
    let thread = bin.server.thread().await;
    let other = bin.server.thread().await;
    let mut sse = bin.server.sse(&thread, None).await;
    let id = bin.server.ask(&thread, "stop gracefully").await;
    let mut seen = Transcript::default();
    let mut deltas = 0;
    while deltas < 20 {
        let ev = sse.next().await.unwrap();
        deltas += (ev.kind == "message.delta") as usize;
        seen.apply(&ev);
    }
    signal(&bin.child, "-TERM");
    let signalled = Instant::now();
    // Step 1, at once.
    let client = reqwest::Client::new();
    let refused = crate::support::eventually(|| async {
        let r = client.get(format!("{}/readyz", bin.server.base)).send().await.ok()?;
        (r.status() == 503).then_some(r)
    })
    .await;
    assert!(signalled.elapsed() < Duration::from_millis(500), "readiness fails at once");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let asked = Instant::now();
    let r = client.post(format!("{}{other}/messages", bin.server.base)).json(&json!({"content": "hi"})).send();
    let (status, code) = error_code(r.await.unwrap()).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    assert!(asked.elapsed() < Duration::from_millis(300), "refused at once, not held");

    let mut after_signal = 0;
    let mut error = None;
    while let Some(ev) = sse.try_next().await {
        if ev.kind == "error" {
            error = Some(ev.data["code"].as_str().unwrap().to_owned());
        }
        after_signal += (ev.kind == "message.delta") as usize;
        seen.apply(&ev);
    }
    assert_eq!(error.as_deref(), Some("shutting_down"));
    assert!(after_signal > 30, "the answer went on after the signal: {after_signal} deltas");
    assert_eq!(seen.completed, vec![(id.clone(), "interrupted".to_owned())]);
    assert_eq!(bin.exit_code(Duration::from_secs(15)).await, Some(0));
    assert!(signalled.elapsed() < Duration::from_millis(2500 + 1000), "within the grace: {:?}", signalled.elapsed());

    let mut bin = Binary::start(&db, &[]).await;
    let answer = bin.server.message(&thread, &id).await;
    assert_eq!(answer["status"], "interrupted");
    // The same `error` as after a crash (the start-up sweep's).
    assert_eq!(answer["error"]["code"], "interrupted");
    assert_eq!(answer["error"]["message"], "the service stopped while this message streamed");
    seen.assert_matches(&answer);
    // Its end is exact: a tab that saw it resumes with nothing repeated.
    let mut resumed = bin.server.sse(&thread, seen.last_id.as_deref()).await;
    let r = bin
        .server
        .client
        .post(format!("{}{thread}/messages", bin.server.base))
        .json(&json!({"content": "more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let evs = resumed.until("message.created").await;
    let kinds: Vec<_> = evs.iter().map(|e| e.kind.as_str()).filter(|k| *k != "thread.presence").collect();
    assert_eq!(kinds, ["ready", "message.created"]);
    bin.child.kill().unwrap();
}

/// A fast answer of about 400 KB, over small server send buffers: a
/// reader that stops reading is soon behind in its pipe, where the closing
/// drops what waits. (With the kernel's autotuned send buffers the whole
/// answer waited in the kernel, where no closing event can jump it.)
const FAST_AND_BIG: &[&str] = &[
    "--sim-chunks",
    "300",
    "--sim-chunk-chars",
    "1000",
    "--sim-interval-ms",
    "5",
    "--broadcast-capacity",
    "8",
    "--socket-send-buffer",
    "8192",
];

/// Every event until the stream ends.
async fn drain(mut events: impl crate::support::Events) -> Vec<Ev> {
    let mut out = Vec::new();
    while let Some(ev) = events.next_event().await {
        out.push(ev);
    }
    out
}

/// A laggard's receive buffer: small beside the answer, so it is soon
/// behind, and not so small that Linux drains it only on zero-window
/// probes (see `RawSse::open_sized`): a catch-up already in flight when
/// the service closes it (one coalesced delta of hundreds of kilobytes)
/// took a 2 KB reader longer than the grace.
const READER_BUFFER: u32 = 64 * 1024;

/// Laggards (ten SSE and ten WebSocket readers that stopped reading
/// during a fast answer, with small receive buffers) start reading again
/// 0.2 s or 1 s after SIGTERM: every one ends on its `shutting_down`
/// error, whose cursor is where it stopped, and the process waits for
/// them within its grace before it exits 0.
#[actix_web::test]
async fn readers_far_behind_get_shutting_down_before_the_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut flags = FAST_AND_BIG.to_vec();
    // A grace with room for twenty slow readers on a loaded machine; the
    // process still exits as soon as the last of them has read its end.
    flags.extend(["--shutdown-grace-ms", "20000"]);
    let bin = Binary::start(&db, &flags).await;
    let thread = bin.server.thread().await;
    let mut sse = Vec::new();
    let mut ws = Vec::new();
    for _ in 0..10 {
        let mut reader = RawSse::open_sized(&bin.server.base, &format!("{thread}/events"), None, READER_BUFFER).await;
        assert_eq!(reader.next().await.unwrap().kind, "ready");
        sse.push(reader);
        let mut socket = Ws::open_sized(&bin.server.base, &thread, READER_BUFFER).await;
        assert_eq!(socket.next().await.unwrap().kind, "ready");
        ws.push(socket);
    }
    let mut live = bin.server.sse(&thread, None).await;
    let id = bin.server.ask(&thread, "a fast answer").await;
    let mut live_evs = Vec::new();
    while live_evs.iter().filter(|e: &&Ev| e.kind == "message.delta").count() < 100 {
        live_evs.push(live.next().await.unwrap());
    }
    signal(&bin.child, "-TERM");
    let signalled = Instant::now();

    let mut readers = Vec::new();
    for (i, reader) in sse.into_iter().enumerate() {
        let wait = if i % 2 == 0 { 200 } else { 1000 };
        let task = actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            (drain(reader).await, signalled.elapsed())
        });
        readers.push((format!("SSE reader {i}"), task));
    }
    for (i, socket) in ws.into_iter().enumerate() {
        let port = match socket.socket.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
            _ => 0,
        };
        let wait = if i % 2 == 0 { 200 } else { 1000 };
        let task = actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            (drain(socket).await, signalled.elapsed())
        });
        readers.push((format!("WebSocket reader {i} (client port {port})"), task));
    }
    while let Some(ev) = live.try_next().await {
        live_evs.push(ev);
    }
    assert_eq!(live_evs.last().map(|e| e.data["code"].clone()), Some("shutting_down".into()));

    let mut transcripts = Vec::new();
    for (name, reader) in readers {
        let (mut evs, ended) = reader.await.unwrap();
        let last = evs.pop().expect("some events");
        if (last.kind.as_str(), last.data["code"].as_str()) != ("error", Some("shutting_down")) {
            let logs = bin.logs.lock().unwrap().join("\n");
            panic!(
                "{name}, a reader that was behind, ends on its closing error, but its stream ended {ended:?} \
                 after the signal with {} {} at cursor {} ({} events before it, an error among them at {:?}); \
                 the server logged:\n{logs}",
                last.kind,
                last.data.get("offset").unwrap_or(&Value::Null),
                last.id,
                evs.len(),
                evs.iter().rposition(|e| e.kind == "error"),
            );
        }
        let mut t = Transcript::default();
        t.apply_all(&evs);
        assert_eq!(last.data["cursor"].as_str(), t.last_id.as_deref(), "the error's cursor is where it stopped");
        transcripts.push(t);
    }
    let code = bin.exit_code(Duration::from_secs(25)).await;
    assert_eq!(code, Some(0));
    assert!(signalled.elapsed() < Duration::from_millis(20000 + 1500), "within the grace: {:?}", signalled.elapsed());

    // Each resumes from its cursor after the restart, byte-exact.
    let mut again = Binary::start(&db, &[]).await;
    let stored = again.server.message(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    for mut t in transcripts {
        if t.completed.is_empty() {
            let cursor = t.last_id.clone();
            let mut resumed = again.server.sse(&thread, cursor.as_deref()).await;
            t.apply_all(&resumed.until("message.completed").await);
        }
        t.assert_matches(&stored);
    }
    let _ = again.child.kill();
}
