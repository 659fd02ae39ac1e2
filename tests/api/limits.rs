//! Limits, each tried: oversized content and bodies (by length, chunked,
//! on routes that take no body), a `max_tokens` past the cap, a project
//! posting too fast over HTTP or WebSocket (429 with Retry-After, other
//! projects untouched), too many generations of one project, too many
//! subscribers on one thread (counted as admitted, the seed route too),
//! and clients too slow with their headers or
//! body (408) while others are served.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{error_code, Events as _, Server, Ws};

/// Two threads of one project (so a project's limit, not 409, answers).
async fn two_threads_of_one_project(server: &Server) -> (String, String) {
    let a = server.thread().await;
    let project = a.rsplit_once("/threads/").unwrap().0;
    let t = server.post_json(&format!("{project}/threads"), json!({})).await;
    let a2 = format!("{project}/threads/{}", t["id"].as_str().unwrap());
    (a, a2)
}

fn post_hi(server: &Server, thread: &str) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    server.client.post(format!("{}{thread}/messages", server.base)).json(&json!({"content": "hi"})).send()
}

#[actix_web::test]
async fn oversized_content_and_max_tokens_are_refused_and_nothing_is_stored() {
    let server = Server::temp(&["--max-content-bytes", "1000", "--max-tokens-cap", "4096"]).await;
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
    // Text no database could store (Postgres refuses NUL) is refused up front.
    let r = server.client.post(&url).json(&json!({"content": "a\u{0}b"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    let project = thread.rsplit_once("/threads/").unwrap().0;
    let r = server.client.post(format!("{}{project}/threads", server.base)).json(&json!({"title": "a\u{0}"}));
    assert_eq!(error_code(r.send().await.unwrap()).await, (400, "bad_request".into()));
    assert!(server.messages(&thread).await.is_empty());
}

#[actix_web::test]
async fn a_project_posting_too_fast_gets_429_with_retry_after() {
    let server = Server::temp(&["--posts-per-minute", "2", "--sim-chunks", "2"]).await;
    let (a, a2) = two_threads_of_one_project(&server).await;
    let post = |thread: &str| post_hi(&server, thread);
    assert_eq!(post(&a).await.unwrap().status(), 202);
    assert_eq!(post(&a2).await.unwrap().status(), 202);
    // A third thread of the project, idle: the refusal can only be the
    // rate (a2 may still be answering, which would be 409 thread_busy).
    let project = a.rsplit_once("/threads/").unwrap().0;
    let t = server.post_json(&format!("{project}/threads"), json!({})).await;
    let a3 = format!("{project}/threads/{}", t["id"].as_str().unwrap());
    let r = post(&a3).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    // Another project has its own allowance.
    let b = server.thread().await;
    assert_eq!(post(&b).await.unwrap().status(), 202);
}

#[actix_web::test]
async fn a_thread_takes_no_more_than_its_subscriber_cap() {
    let server = Server::temp(&["--max-subscribers-per-thread", "2"]).await;
    let thread = server.thread().await;
    let mut a = server.sse(&thread, None).await;
    let mut b = server.sse(&thread, None).await;
    a.next().await;
    b.next().await;
    let r = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    // A WebSocket upgrade is refused the same way, before the handshake.
    let url = format!("{}{thread}/ws", server.base.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert!(resp.headers().contains_key("retry-after"), "{:?}", resp.headers());
        }
        other => panic!("a third subscriber was let in: {:?}", other.map(|(_, r)| r.status())),
    }
    let tid = thread.rsplit('/').next().unwrap();
    assert_eq!(server.get_json(&format!("/admin/threads/{tid}")).await["subscribers"], 2, "refusals hold no place");
    drop(a);
    crate::support::eventually(|| async {
        let r = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn concurrent_connects_cannot_overshoot_the_subscriber_cap_and_the_seed_route_counts() {
    let server = Server::temp(&["--max-subscribers-per-thread", "2"]).await;
    let thread = server.thread().await;
    let url = format!("{}{thread}/events", server.base);
    // Ten at once: each place is taken as it is admitted, so exactly two
    // get in however the connects interleave.
    let tries = (0..10).map(|_| server.client.get(&url).send());
    let answers = futures_util::future::join_all(tries).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.as_ref().unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 8, "{statuses:?}");
    // The seed route is a subscriber of the thread too: refused while
    // the thread is full, and nothing is generated.
    let seed = format!("{}{}/query/stream", server.base, thread.trim_start_matches("/v1"));
    let r = server.client.post(&seed).json(&json!({"query": "hi"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    let history = server.get_json(&format!("{thread}/messages")).await;
    assert_eq!(history["data"].as_array().map(Vec::len), Some(0), "a refused seed stream started a generation");
    drop(answers);
    crate::support::eventually(|| async {
        let r = server.client.post(&seed).json(&json!({"query": "hi"})).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn slow_headers_get_408_while_other_clients_are_served() {
    let server = Server::temp(&["--header-timeout-ms", "300"]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    // Meanwhile another client is answered at once.
    assert_eq!(server.client.get(format!("{}/healthz", server.base)).send().await.unwrap().status(), 200);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the slow client was cut off");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw_status(addr: &str, request: &[u8], within: Duration) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(within, socket.read(&mut answer)).await.expect("answered in time").unwrap();
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[actix_web::test]
async fn bodies_past_their_routes_limit_or_too_slow_are_refused_before_buffering() {
    let server = Server::temp(&["--max-body-bytes", "4096", "--body-timeout-ms", "300"]).await;
    let thread = server.thread().await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let post =
        |path: &str, headers: &str| format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").into_bytes();

    // A declared length past the limit: refused at once, nothing read.
    let big = post(&format!("{thread}/messages"), "Content-Type: application/json\r\nContent-Length: 5000000\r\n");
    assert!(raw_status(&addr, &big, Duration::from_secs(2)).await.contains("413"));

    // A chunked body that passes the limit: refused once it does.
    let mut chunked =
        post(&format!("{thread}/messages"), "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n");
    for _ in 0..5 {
        chunked.extend_from_slice(format!("400\r\n{}\r\n", "x".repeat(1024)).as_bytes());
    }
    assert!(raw_status(&addr, &chunked, Duration::from_secs(2)).await.contains("413"));

    // Routes that take no body allow only a small one.
    let r = server.client.post(format!("{}{thread}/cancel", server.base)).body("x".repeat(2048)).send().await.unwrap();
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()));

    // A body that never arrives whole: 408 after the body timeout, while
    // other clients are served.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(&post(&format!("{thread}/messages"), "Content-Type: application/json\r\nContent-Length: 100\r\n"))
        .await
        .unwrap();
    slow.write_all(b"{\"content\": ").await.unwrap();
    assert_eq!(server.client.get(format!("{}/healthz", server.base)).send().await.unwrap().status(), 200);
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer)).await.expect("cut off").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    assert!(server.messages(&thread).await.is_empty(), "nothing refused was stored");
    // The thread still takes a proper message.
    let r = server.client.post(format!("{}{thread}/messages", server.base)).json(&json!({"content": "hi"})).send();
    assert_eq!(r.await.unwrap().status(), 202);
}

#[actix_web::test]
async fn a_project_runs_no_more_than_its_generation_cap() {
    let server =
        Server::temp(&["--max-generations-per-project", "1", "--sim-chunks", "400", "--sim-interval-ms", "10"]).await;
    let (a, a2) = two_threads_of_one_project(&server).await;
    let post = |thread: &str| post_hi(&server, thread);
    assert_eq!(post(&a).await.unwrap().status(), 202);
    let r = post(&a2).await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    assert!(server.messages(&a2).await.is_empty());
    // Another project is not held back.
    assert_eq!(post(&server.thread().await).await.unwrap().status(), 202);
    // When the first ends, the project may start another.
    assert_eq!(server.client.post(format!("{}{a}/cancel", server.base)).send().await.unwrap().status(), 202);
    assert_eq!(post(&a2).await.unwrap().status(), 202);
}

#[actix_web::test]
async fn websocket_sends_count_against_the_projects_message_rate() {
    let server = Server::temp(&["--posts-per-minute", "1", "--sim-chunks", "2"]).await;
    let thread = server.thread().await;
    let mut ws = Ws::open(&server.base, &thread, None).await;
    ws.until("ready").await;
    ws.send(json!({"type": "send", "content": "one"})).await;
    ws.until("message.completed").await;
    ws.send(json!({"type": "send", "content": "two"})).await;
    let error = ws.until("error").await.pop().unwrap();
    assert_eq!(error.data["code"], "rate_limited", "{:?}", error.data);
    // The connection stays usable and nothing was stored for the refused send.
    ws.send(json!({"type": "cancel"})).await;
    assert_eq!(ws.until("error").await.pop().unwrap().data["code"], "not_generating");
    assert_eq!(server.messages(&thread).await.len(), 2);
}

#[actix_web::test]
async fn subscribers_that_close_cleanly_give_their_places_back_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Heartbeats far apart: only noticing the close can free the places.
    let server = Server::temp(&["--max-subscribers-per-thread", "21", "--heartbeat-ms", "120000"]).await;
    let thread = server.thread().await;
    let mut watcher = server.sse(&thread, None).await;
    assert_eq!(watcher.next().await.unwrap().kind, "ready");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut socks = Vec::new();
    for _ in 0..20 {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!("GET {thread}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
        sock.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        while !seen.windows(11).any(|w| w == b"event: read") {
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        socks.push(sock);
    }
    let presence = |n: u64| async move {
        move |ev: &crate::support::Ev| ev.kind == "thread.presence" && ev.data["subscribers"] == n
    };
    let full = presence(21).await;
    while !full(&watcher.next().await.unwrap()) {}
    let r = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 429, "the cap is full");
    // Each closes its connection the clean way (FIN, nothing unread).
    for mut sock in socks {
        sock.shutdown().await.unwrap();
    }
    let alone = presence(1).await;
    while !alone(&watcher.next().await.unwrap()) {}
    assert_eq!(server.get_json("/admin/stats").await["subscribers"]["sse"], 1);
    for _ in 0..20 {
        let r = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "places came back");
    }
}
