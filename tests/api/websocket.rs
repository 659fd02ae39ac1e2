//! WebSocket client frames: `send` starts a generation, `cancel` stops
//! it, a malformed or binary frame gets an `error` and the connection
//! stays usable; an over-size frame closes it with 1009 and invalid UTF-8
//! with 1007; unfinished messages of all sockets stay within the node's
//! budget, past which a socket is closed with 1013.

use std::time::Duration;

use serde_json::json;

use crate::support::{Events as _, RawWs, Server, Transcript, Ws};

#[actix_web::test]
async fn send_and_cancel_frames_drive_the_thread() {
    let server = Server::temp(&["--sim-chunks", "400", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");

    ws.send(json!({"type": "send", "content": "over the socket"})).await;
    let evs = ws.until("message.delta").await;
    let created = evs.iter().find(|e| e.kind == "message.created").expect("the user message is announced");
    assert_eq!(created.data["message"]["content"], "over the socket");
    let id = evs.iter().find(|e| e.kind == "message.started").unwrap().data["message_id"].as_str().unwrap().to_owned();

    ws.send(json!({"type": "send", "content": "while busy"})).await;
    let busy = ws.until("error").await;
    assert_eq!(busy.last().unwrap().data["code"], "thread_busy");

    ws.send(json!({"type": "cancel"})).await;
    let mut t = Transcript::default();
    t.apply_all(&evs);
    t.apply_all(&busy);
    t.apply_all(&ws.until("message.completed").await);
    assert_eq!(t.completed, vec![(id.clone(), "cancelled".to_owned())]);
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["status"], "cancelled");
    t.assert_matches(&stored);
}

#[actix_web::test]
async fn a_malformed_frame_gets_an_error_and_the_connection_stays_usable() {
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    for bad in ["{not json", r#"{"type": "dance"}"#, r#"{"type": "send"}"#, r#"{"type": "send", "content": ""}"#, "[]"]
    {
        ws.send_text(bad).await;
        let evs = ws.until("error").await;
        assert_eq!(evs.last().unwrap().data["code"], "bad_request", "{bad}");
    }
    ws.send(json!({"type": "send", "content": "now properly"})).await;
    let evs = ws.until("message.completed").await;
    let done = evs.last().unwrap();
    assert_eq!(done.data["status"], "complete");
    let mut t = Transcript::default();
    t.apply_all(&evs);
    t.assert_matches(&server.finished(&thread, done.data["message_id"].as_str().unwrap()).await);
}

/// The close code the server sends next, skipping other frames.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    ws.close_frame().await.map(|(code, _)| code)
}

#[actix_web::test]
async fn binary_frames_get_an_error_and_bad_frames_close_with_the_proper_code() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{
        protocol::frame::{
            coding::{Data, OpCode},
            Frame,
        },
        Message,
    };
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;

    // Binary: a clear error, and the connection goes on.
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    ws.socket.send(Message::Binary(vec![1u8, 2, 3].into())).await.unwrap();
    let error = ws.until("error").await.pop().unwrap();
    assert_eq!(error.data["code"], "bad_request");
    assert!(error.data["message"].as_str().unwrap().contains("binary"));
    ws.send(json!({"type": "cancel"})).await;
    assert_eq!(ws.until("error").await.pop().unwrap().data["code"], "not_generating", "still usable");

    // Larger than a frame may be: closed with 1009 (message too big).
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    let huge = json!({"type": "send", "content": "x".repeat(300 * 1024)}).to_string();
    ws.socket.send(Message::Text(huge.into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));

    // Frames each under the limit, one message over it: 1009 too.
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    let half = vec![b'x'; 200 * 1024];
    ws.socket.send(Message::Frame(Frame::message(half.clone(), OpCode::Data(Data::Text), false))).await.unwrap();
    ws.socket.send(Message::Frame(Frame::message(half, OpCode::Data(Data::Continue), true))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));

    // A text frame that is not UTF-8: closed with 1007 (invalid payload).
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    let invalid = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.socket.send(Message::Frame(invalid)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1007));

    // Nothing of it reached the thread.
    assert!(server.messages(&thread).await.is_empty());
}

/// An idle subscriber gets a heartbeat every period: `: keep-alive` over
/// SSE, a ping over WebSocket; the SSE answer has the contract's headers
/// and starts with `retry:` (API.md, "Heartbeat").
#[actix_web::test]
async fn idle_subscribers_get_heartbeats_over_sse_and_websocket() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::temp(&["--heartbeat-ms", "200"]).await;
    let thread = server.thread().await;
    let window = std::time::Duration::from_secs(2);

    // The client asks for compression; an event stream is never compressed.
    let sse = server
        .client
        .get(format!("{}{thread}/events", server.base))
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    assert_eq!(sse.headers()["cache-control"], "no-cache");
    assert_eq!(sse.headers()["x-accel-buffering"], "no");
    assert!(sse.headers().get("content-encoding").is_none_or(|e| e == "identity"), "{:?}", sse.headers());
    let mut body = sse.bytes_stream();
    let mut text = String::new();
    let _ = tokio::time::timeout(window, async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(text.starts_with("retry: "), "{text}");
    // About ten in two seconds; at least three proves they recur.
    let keep_alives = text.matches(": keep-alive\n\n").count();
    assert!(keep_alives >= 3, "{keep_alives} keep-alives in 2 s: {text}");

    let mut ws = Ws::open(&server.base, &thread, None).await;
    let mut pings = 0;
    let _ = tokio::time::timeout(window, async {
        while let Some(Ok(msg)) = ws.socket.next().await {
            pings += matches!(msg, Message::Ping(_)) as usize;
        }
    })
    .await;
    assert!(pings >= 3, "{pings} pings in 2 s");
}

/// A browser sends nothing on its own: only the server's pings make it
/// answer. A WebSocket subscriber that is busy receiving an answer longer
/// than the peer timeout must still be pinged, or it is closed as a dead
/// peer in the middle of the answer.
#[actix_web::test]
async fn a_websocket_reading_an_answer_longer_than_the_peer_timeout_stays_open() {
    let server = Server::temp(&[
        "--heartbeat-ms",
        "200",
        "--ws-timeout-ms",
        "700",
        "--sim-chunks",
        "150",
        "--sim-interval-ms",
        "15",
    ])
    .await;
    let thread = server.thread().await;
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    let started = std::time::Instant::now();
    let id = server.ask(&thread, "a long answer").await;
    let mut t = Transcript::default();
    t.apply_all(&ws.until("message.completed").await);
    assert!(started.elapsed() > std::time::Duration::from_millis(1400), "the answer outlasted the peer timeout");
    assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())], "closed before the answer ended");
    t.assert_matches(&server.finished(&thread, &id).await);
}

#[actix_web::test]
async fn a_frame_declared_too_large_is_refused_at_its_header_not_buffered() {
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    // Declared 2^62 bytes; a little of it sent, then nothing: the server
    // must not wait for the rest (it used to buffer a gigabyte of it).
    let mut ws = RawWs::open(&server.base, &thread).await;
    ws.write(&RawWs::header(0x81, 1 << 62)).await.unwrap();
    ws.write(&[b'x'; 1024]).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1009));
    // A message of frames each within the limit, declared past it in all:
    // refused at the second header, before its payload.
    let mut ws = RawWs::open(&server.base, &thread).await;
    ws.write(&RawWs::header(0x01, 200 * 1024)).await.unwrap();
    ws.write(&vec![b'x'; 200 * 1024]).await.unwrap();
    ws.write(&RawWs::header(0x80, 100 * 1024)).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1009));
    assert!(server.messages(&thread).await.is_empty());
}

/// The node's share of unfinished WebSocket messages, from
/// `/admin/stats`: (held, peak, cap).
async fn pending(server: &Server) -> (u64, u64, u64) {
    let p = server.get_json("/admin/stats").await["websocket_pending"].clone();
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
    (n("held_bytes"), n("peak_bytes"), n("cap_bytes"))
}

/// Sends a text frame of 250,000 bytes without FIN: a message that never
/// ends. (A socket the server already closed refuses some of it.)
async fn hold_250_kb(ws: &mut RawWs) {
    let _ = ws.write(&RawWs::header(0x01, 250_000)).await;
    let _ = ws.write(&vec![b'x'; 250_000]).await;
}

#[actix_web::test]
async fn unfinished_messages_of_all_sockets_share_a_budget() {
    let server = Server::temp(&["--max-ws-pending-bytes", "1500000"]).await;
    let thread = server.thread().await;
    // Sockets hold 250 KB each of a message they never finish, until the
    // budget refuses one: closed with 1013 (try again later).
    let mut holders = Vec::new();
    let refused = loop {
        let mut ws = RawWs::open(&server.base, &thread).await;
        assert_eq!(ws.next_event_type().await, "ready");
        hold_250_kb(&mut ws).await;
        match ws.closed_within(Duration::from_millis(500)).await {
            Some(code) => break code,
            None => holders.push(ws),
        }
        assert!(holders.len() <= 6, "each holds at least 250 KB: no more than six fit");
    };
    assert_eq!(refused, 1013);
    assert!(holders.len() >= 2, "{} held", holders.len());
    let (held, peak, _) = pending(&server).await;
    assert!(held >= holders.len() as u64 * 250_000 && peak <= 1_500_000, "held {held}, peak {peak}");
    // A holder that goes gives its share back: a new socket may hold again,
    // and its message, once finished, is read (not JSON: an `error`).
    drop(holders.pop());
    crate::support::eventually(|| async { (pending(&server).await.0 <= held - 250_000).then_some(()) }).await;
    let mut ws = RawWs::open(&server.base, &thread).await;
    assert_eq!(ws.next_event_type().await, "ready");
    hold_250_kb(&mut ws).await;
    ws.write(&RawWs::header(0x80, 0)).await.unwrap();
    let mut kind = ws.next_event_type().await;
    while kind == "thread.presence" {
        kind = ws.next_event_type().await;
    }
    assert_eq!(kind, "error");
}

/// Two hundred sockets each send an unfinished 250 KB message (50 MB in
/// all) to a node with the default budget of 32 MiB: what they hold is
/// paid from the budget, all of it (a frame's buffer, the read buffer its
/// burst grew), which never passes its cap; the sockets it cannot pay for
/// are closed with 1013 and hold nothing.
#[actix_web::test]
async fn two_hundred_unfinished_messages_stay_within_the_nodes_budget() {
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(RawWs::open(&server.base, &thread).await);
    }
    for ws in &mut sockets {
        hold_250_kb(ws).await;
    }
    let closes = futures_util::future::join_all(sockets.iter_mut().map(|ws| ws.closed_within(Duration::from_secs(2))));
    let closes = closes.await;
    let refused = closes.iter().filter(|c| **c == Some(1013)).count();
    let open = closes.iter().filter(|c| c.is_none()).count();
    assert_eq!(refused + open, 200, "closed only for the budget: {closes:?}");
    assert!(refused > 0 && open > 0, "{open} held, {refused} refused");
    crate::support::eventually(|| async {
        (server.get_json("/admin/stats").await["subscribers"]["ws"] == open).then_some(())
    })
    .await;
    let (held, peak, cap) = pending(&server).await;
    assert_eq!(cap, 32 * 1024 * 1024, "the default budget");
    assert!(peak <= cap, "the budget was never passed: peak {peak}");
    assert!(held >= open as u64 * 250_000, "every byte held is paid: {held} for {open} sockets");
    drop(sockets);
    crate::support::eventually(|| async { (pending(&server).await.0 == 0).then_some(()) }).await;
}
