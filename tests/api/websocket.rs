//! WebSocket client frames: `send` starts a generation, `cancel` stops
//! it, a malformed frame gets an `error` and the connection stays usable.

use serde_json::json;

use crate::support::{database_url, Server, Transcript, Ws};

#[actix_web::test]
async fn send_and_cancel_frames_drive_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, &["--sim-chunks", "400", "--sim-interval-ms", "10"]).await;
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
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, &[]).await;
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
