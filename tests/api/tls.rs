//! HTTPS (`--tls-cert`, `--tls-key`): a client that trusts the service's
//! certificate speaks HTTP/2 to it, and many live streams share that
//! connection with requests (what lets a browser's tabs not starve each
//! other); clients without HTTP/2 still get HTTP/1.1.

use clap::Parser;
use convo::{config::Settings, startup::Application};
use reqwest::Version;
use serde_json::json;

use crate::support::{args, database_url, Events, Server, Transcript};

/// A self-signed certificate for 127.0.0.1 and localhost, written into
/// `dir`: (certificate PEM, its path, the key's path).
fn self_signed(dir: &std::path::Path) -> (String, String, String) {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    (cert.pem(), cert_path.display().to_string(), key_path.display().to_string())
}

async fn https_server(dir: &tempfile::TempDir) -> (Server, reqwest::Certificate) {
    let (server, pem) = https_server_with(dir, &[]).await;
    (server, reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
}

/// A server on HTTPS with a fresh self-signed certificate and `extra`
/// flags, its client trusting that certificate: the server, and the
/// certificate's PEM.
pub async fn https_server_with(dir: &tempfile::TempDir, extra: &[&str]) -> (Server, String) {
    let (pem, cert, key) = self_signed(dir.path());
    let db = database_url(dir.path()).await;
    let mut flags = vec!["--tls-cert", &cert, "--tls-key", &key];
    flags.extend_from_slice(extra);
    let mut server = Server::start(&db, &flags).await;
    server.base = server.base.replacen("http://", "https://", 1);
    let trusted = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    server.client = reqwest::Client::builder().add_root_certificate(trusted).build().unwrap();
    (server, pem)
}

#[actix_web::test]
async fn https_speaks_http2_and_carries_many_streams_beside_requests_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, trusted) = https_server(&dir).await;
    let r = server.client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), Version::HTTP_2, "ALPN chose h2");

    // Eight live streams (a browser opens at most six HTTP/1.1
    // connections per host), then a question: answered at once, and
    // every stream sees the whole answer.
    let thread = server.thread().await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(server.sse(&thread, None).await);
    }
    let started = std::time::Instant::now();
    let posted = server.client.post(format!("{}{thread}/messages", server.base)).json(&json!({"content": "hi"}));
    let posted = posted.send().await.unwrap();
    assert_eq!((posted.status().as_u16(), posted.version()), (202, Version::HTTP_2));
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "the POST did not wait for the streams");
    let id = posted.json::<serde_json::Value>().await.unwrap()["assistant_message"]["id"].as_str().unwrap().to_owned();
    let stored = server.finished(&thread, &id).await;
    for stream in &mut streams {
        let mut transcript = Transcript::default();
        transcript.apply_all(&stream.until("message.completed").await);
        transcript.assert_matches(&stored);
    }
    let events = server.client.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
    assert_eq!(events.version(), Version::HTTP_2);
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    // A client without HTTP/2 is served HTTP/1.1 on the same port.
    let old = reqwest::Client::builder().add_root_certificate(trusted).http1_only().build().unwrap();
    let r = old.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_11));
    // Plain HTTP on the TLS port is not answered as HTTP.
    let plain = reqwest::get(format!("{}/healthz", server.base.replacen("https://", "http://", 1))).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[actix_web::test]
async fn tls_settings_come_in_pairs_and_bad_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let (_, cert, key) = self_signed(dir.path());
    assert!(Settings::try_parse_from(args(&db, &["--tls-cert", &cert])).is_err(), "a certificate needs its key");
    assert!(Settings::try_parse_from(args(&db, &["--tls-key", &key])).is_err(), "a key needs its certificate");

    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.display().to_string();
    for (c, k, says) in [(&not_pem, &key, "--tls-cert"), (&cert, &not_pem, "--tls-key")] {
        let settings = Settings::try_parse_from(args(&db, &["--tls-cert", c, "--tls-key", k])).unwrap();
        let err = Application::build(settings).await.err().expect("refused").to_string();
        assert!(err.contains(says), "{err}");
    }
}
