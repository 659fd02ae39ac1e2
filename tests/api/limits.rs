//! Limits, each tried: oversized content, a `max_tokens` past the cap, a
//! project posting too fast (429 with Retry-After, other projects
//! untouched), too many subscribers on one thread, and a client too slow
//! with its headers (408) while others are served.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{database_url, error_code, Server};

async fn server(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    (Server::start(&db, extra).await, dir)
}

#[actix_web::test]
async fn oversized_content_and_max_tokens_are_refused_and_nothing_is_stored() {
    let (server, _dir) = server(&["--max-content-bytes", "1000", "--max-tokens-cap", "4096"]).await;
    let thread = server.thread().await;
    let url = format!("{}{thread}/messages", server.base);
    let big = "é".repeat(600);
    let r = server.client.post(&url).json(&json!({"content": big})).send().await.unwrap();
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()));
    let r = server.client.post(&url).json(&json!({"content": "ok", "max_tokens": 5000})).send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    let r = server.client.post(&url).json(&json!({"content": "ok", "max_tokens": "many"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    let huge = "x".repeat(300 * 1024);
    let r = server.client.post(&url).json(&json!({"content": huge})).send().await.unwrap();
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()), "the body limit answers before buffering");
    assert!(server.messages(&thread).await.is_empty());
}

#[actix_web::test]
async fn a_project_posting_too_fast_gets_429_with_retry_after() {
    let (server, _dir) = server(&["--posts-per-minute", "2", "--sim-chunks", "2"]).await;
    let a = server.thread().await;
    // A second thread of the same project (so the limit, not 409, answers).
    let project = a.rsplit_once("/threads/").unwrap().0;
    let t = server.post_json(&format!("{project}/threads"), json!({})).await;
    let a2 = format!("{project}/threads/{}", t["id"].as_str().unwrap());
    let post = |thread: &str| {
        server.client.post(format!("{}{thread}/messages", server.base)).json(&json!({"content": "hi"})).send()
    };
    assert_eq!(post(&a).await.unwrap().status(), 202);
    assert_eq!(post(&a2).await.unwrap().status(), 202);
    let r = post(&a2).await.unwrap();
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    // Another project has its own allowance.
    let b = server.thread().await;
    assert_eq!(post(&b).await.unwrap().status(), 202);
}

#[actix_web::test]
async fn a_thread_takes_no_more_than_its_subscriber_cap() {
    let (server, _dir) = server(&["--max-subscribers-per-thread", "2"]).await;
    let thread = server.thread().await;
    let mut a = server.sse(&thread, None).await;
    let mut b = server.sse(&thread, None).await;
    a.next().await;
    b.next().await;
    let r = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    drop(a);
    crate::support::eventually(|| async {
        let r = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn slow_headers_get_408_while_other_clients_are_served() {
    let (server, _dir) = server(&["--header-timeout-ms", "300"]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Meanwhile another client is answered at once.
    assert_eq!(server.client.get(format!("{}/healthz", server.base)).send().await.unwrap().status(), 200);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the slow client was cut off");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
}
