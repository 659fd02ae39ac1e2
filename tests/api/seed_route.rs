//! The seed-compatible route keeps the original service's exact wire
//! format, while other tabs watch the same generation through /events.

use serde_json::{json, Value};

use crate::support::{database_url, Events as _, Server, Transcript};

#[actix_web::test]
async fn query_stream_speaks_the_seed_wire_format_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, &["--sim-chunks", "15", "--sim-thinking"]).await;
    let thread = server.thread().await;
    let mut watcher = server.sse(&thread, None).await;
    let seed_path = thread.trim_start_matches("/v1");
    let resp = server
        .client
        .post(format!("{}{seed_path}/query/stream", server.base))
        .json(&json!({"query": "the old way"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();

    let mut chunks = String::new();
    let mut lines = body.split("\n\n").filter(|l| !l.is_empty()).peekable();
    let mut last = "";
    while let Some(line) = lines.next() {
        let data = line.strip_prefix("data: ").unwrap_or_else(|| panic!("only data lines: {line:?}"));
        let v: Value = serde_json::from_str(data).unwrap();
        if lines.peek().is_some() {
            assert_eq!(v["type"], "chunk");
            let text = v["content"].as_str().unwrap();
            // Byte for byte what the original service wrote.
            assert_eq!(data, format!("{{\"type\": \"chunk\", \"content\": {}}}", serde_json::to_string(text).unwrap()));
            chunks.push_str(text);
        }
        last = data;
    }
    assert_eq!(last, r#"{"type": "done"}"#);

    let messages = server.messages(&thread).await;
    let answer = messages.last().unwrap();
    assert_eq!(messages[messages.len() - 2]["content"], "the old way");
    assert_eq!(answer["status"], "complete");
    assert_eq!(chunks, answer["content"].as_str().unwrap(), "chunks are the text blocks only, in full");

    let mut t = Transcript::default();
    t.apply_all(&watcher.until("message.completed").await);
    t.assert_matches(answer);
}
