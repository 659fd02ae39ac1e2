//! What a client can make the service log: the real binary, its JSON log
//! read line by line. Malformed requests and frames are the client's
//! mistakes: WARN at most (never ERROR, which is for the service's own
//! faults), and a flood of them is a bounded number of lines.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    binary::Binary,
    support::{database_url, RawWs},
};

/// Sends `request` on a connection of its own and reads what comes back
/// until the server closes (or a second passes).
async fn send_raw(addr: &str, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = socket.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON lines the binary logged from line `from` on.
fn lines_since(binary: &Binary, from: usize) -> Vec<Value> {
    let logs = binary.logs.lock().unwrap();
    logs[from..].iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn post(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n{body}").into_bytes()
}

#[actix_web::test]
async fn a_clients_malformed_requests_log_warnings_bounded_never_errors() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::start(&database_url(dir.path()).await, &["--body-timeout-ms", "300"]).await;
    let server = &binary.server;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let thread = server.thread().await;
    let pid = thread.split('/').nth(3).unwrap().to_owned();
    let before = binary.logs.lock().unwrap().len();

    let json = "Content-Type: application/json\r\n";
    let malformed: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        b"\x00\x01\x02 garbage\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"GET /v1/projects/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        post("/v1/projects", &format!("{json}Content-Length: 2\r\nContent-Length: 3\r\n"), "{}"),
        post("/v1/projects", &format!("{json}Transfer-Encoding: chunked\r\n"), "zz\r\nabc\r\n0\r\n\r\n"),
        post("/v1/projects", &format!("{json}Content-Length: 5\r\n"), "{nope"),
        post("/v1/projects", "Content-Type: text/plain\r\nContent-Length: 2\r\n", "{}"),
        post(&format!("{thread}/messages"), &format!("{json}Content-Length: 100\r\n"), "{\"content\": "),
        format!("GET /v1/projects/{pid}/threads?limit=abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        b"GET /v1/projects/not-a-uuid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for request in &malformed {
        let answer = send_raw(&addr, request).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    }
    // WebSocket frames against the protocol, on both kinds of socket: a
    // control frame without FIN, a continuation that continues nothing.
    for path in [format!("{thread}/ws"), format!("/v1/projects/{pid}/chat/ws")] {
        for frame in [[0x09u8, 0x80, 0, 0, 0, 0], [0x80, 0x80, 0, 0, 0, 0]] {
            let mut ws = RawWs::open_at(&server.base, &path).await;
            ws.write(&frame).await.unwrap();
            assert_eq!(ws.close_code().await, Some(1002), "{path}");
        }
    }
    // The service still answers, and logged each kind of mistake at WARN.
    assert_eq!(server.client.get(format!("{}/healthz", server.base)).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged = lines_since(&binary, before);
    let errors: Vec<&Value> = logged.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "a client's mistakes logged at ERROR: {errors:#?}");
    for fault in ["malformed_http", "client_error", "websocket_protocol"] {
        assert!(
            logged.iter().any(|l| l["level"] == "WARN" && l["peer_fault"] == fault),
            "a WARN line for {fault} in {logged:#?}"
        );
    }

    // A flood of a thousand bad requests, malformed or refused, fifty at a
    // time: a bounded number of lines, the rest counted, not logged.
    tokio::time::sleep(Duration::from_secs(3)).await; // the bound fills again
    let before = binary.logs.lock().unwrap().len();
    let started = Instant::now();
    let bad: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(),
        post("/v1/projects", &format!("{json}Content-Length: 5\r\n"), "{nope"),
    ];
    let requests: Vec<&Vec<u8>> = bad.iter().cycle().take(1000).collect();
    for batch in requests.chunks(50) {
        futures_util::future::join_all(batch.iter().map(|r| send_raw(&addr, r))).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood = lines_since(&binary, before);
    assert!(flood.iter().all(|l| l["level"] != "ERROR"), "{flood:#?}");
    let bound = convo::telemetry::peer::BURST as f64 + convo::telemetry::peer::PER_SECOND as f64 * (seconds + 1.0);
    assert!(
        (flood.len() as f64) <= bound,
        "{} lines for 1,000 bad requests in {seconds:.1} s (at most {bound})",
        flood.len()
    );
    let suppressed: u64 = flood.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
    assert!(suppressed > 0, "the lines left out are counted on the next one logged");
    eprintln!("1,000 bad requests in {seconds:.1} s: {} lines, {suppressed} left out", flood.len());
}
