//! A provider reached over HTTPS through a private CA
//! (`--provider-ca-file`), as a gateway in front of the model would be:
//! a burst of questions shares one HTTP/2 connection to it (no handshake
//! per question): the one that is up when negotiating, one new one once
//! `auto` has learnt that the provider speaks HTTP/2, or from the first
//! question with `--provider-http http2`. Without the CA file the
//! provider is not trusted.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix_web::{http::Version, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use clap::Parser;
use convo::{
    config::{Settings, TlsSettings},
    startup::Application,
};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::{
    fake_upstream::{anthropic, Piece},
    providers::{harness, Harness},
};

/// An Anthropic Messages upstream over HTTPS (actix-web, so ALPN offers
/// HTTP/2), with a certificate of its own CA.
struct HttpsUpstream {
    url: String,
    /// The PEM file that makes its certificate trusted.
    ca_file: String,
    /// TLS connections it accepted.
    connections: Arc<AtomicUsize>,
    seen: Arc<Seen>,
    _dir: tempfile::TempDir,
}

/// What the upstream was asked.
#[derive(Default)]
struct Seen {
    /// The HTTP version of each question.
    versions: Mutex<Vec<Version>>,
    in_flight: AtomicUsize,
    /// The most questions it held at once.
    most_at_once: AtomicUsize,
}

async fn https_upstream() -> HttpsUpstream {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert_path, key_path) = (dir.path().join("upstream.pem"), dir.path().join("upstream.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let tls = TlsSettings { tls_cert: Some(cert_path.clone()), tls_key: Some(key_path) };
    let config = convo::tls::server_config(&tls).unwrap().unwrap();

    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Seen::default());
    let (counted, asked) = (connections.clone(), seen.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(web::Data::new(asked.clone())).route("/v1/messages", web::post().to(answer))
    })
    .workers(1)
    .on_connect(move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
    })
    .bind_rustls_0_23(("127.0.0.1", 0), config)
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    HttpsUpstream {
        url: format!("https://127.0.0.1:{port}"),
        ca_file: cert_path.display().to_string(),
        connections,
        seen,
        _dir: dir,
    }
}

/// Answers "over TLS", its head after a pause, so that the questions of a
/// burst are all in flight at once.
async fn answer(req: HttpRequest, seen: web::Data<Arc<Seen>>) -> HttpResponse {
    seen.versions.lock().unwrap().push(req.version());
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.most_at_once.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    let pieces = anthropic::text_answer(&["over ", "TLS"]).into_iter().filter_map(|p| match p {
        Piece::Bytes(b) => Some(Ok::<_, std::convert::Infallible>(Bytes::from(b))),
        _ => None,
    });
    HttpResponse::Ok().content_type("text/event-stream").streaming(futures_util::stream::iter(pieces))
}

/// A new thread of the harness's project; its path.
async fn another_thread(h: &Harness) -> String {
    let t: Value = h
        .client
        .post(format!("{}/v1/projects/{}/threads", h.base, h.pid))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("{}/v1/projects/{}/threads/{}", h.base, h.pid, t["id"].as_str().unwrap())
}

/// The thread's last message once it is no longer streaming.
async fn settled(h: &Harness, thread: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page: Value = h.client.get(format!("{thread}/messages")).send().await.unwrap().json().await.unwrap();
        let last = page["data"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
        if last["role"] == "assistant" && last["status"] != "streaming" {
            return last;
        }
        assert!(tokio::time::Instant::now() < deadline, "the answer did not end: {last}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The harness's thread and four more, asked at once; each answer ends
/// complete with the upstream's whole text.
async fn burst(h: &Harness) {
    let mut threads = vec![format!("{}/v1/projects/{}/threads/{}", h.base, h.pid, h.tid)];
    for _ in 0..4 {
        threads.push(another_thread(h).await);
    }
    let posts = threads.iter().map(|t| h.client.post(format!("{t}/messages")).json(&json!({"content": "hi"})).send());
    for posted in join_all(posts).await {
        assert_eq!(posted.unwrap().status(), 202);
    }
    for thread in &threads {
        let answer = settled(h, thread).await;
        assert_eq!(answer["status"], "complete", "{answer}");
        assert_eq!(answer["content"], "over TLS");
    }
}

/// One question, answered over HTTP/2 on a new connection.
async fn one_question(h: &Harness) {
    let first = another_thread(h).await;
    let posted = h.client.post(format!("{first}/messages")).json(&json!({"content": "hi"})).send().await.unwrap();
    assert_eq!(posted.status(), 202);
    assert_eq!(settled(h, &first).await["content"], "over TLS");
}

#[actix_web::test]
async fn negotiated_http2_carries_a_burst_of_questions_on_the_connection_that_is_up() {
    let up = https_upstream().await;
    let extra = ["--anthropic-base-url", &up.url, "--provider-ca-file", &up.ca_file, "--provider-http", "negotiate"];
    let h = harness("anthropic", vec![], &extra).await;
    one_question(&h).await;
    burst(&h).await;
    assert_eq!(*up.seen.versions.lock().unwrap(), vec![Version::HTTP_2; 6], "every question went over HTTP/2");
    assert_eq!(up.seen.most_at_once.load(Ordering::SeqCst), 5, "the five questions were in flight together");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "no connection per question");
}

#[actix_web::test]
async fn auto_learns_that_the_provider_speaks_http2_and_a_later_cold_burst_opens_one_connection() {
    let up = https_upstream().await;
    let h = harness("anthropic", vec![], &["--anthropic-base-url", &up.url, "--provider-ca-file", &up.ca_file]).await;
    one_question(&h).await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    // Learnt: HTTP/2. The HTTP/2-only connections start cold, and the
    // burst waits for one of them rather than opening five.
    burst(&h).await;
    assert_eq!(*up.seen.versions.lock().unwrap(), vec![Version::HTTP_2; 6]);
    assert_eq!(up.seen.most_at_once.load(Ordering::SeqCst), 5, "the five questions were in flight together");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "one more connection for five questions at once");
}

#[actix_web::test]
async fn with_provider_http2_a_cold_burst_of_questions_opens_one_connection() {
    let up = https_upstream().await;
    let extra = ["--anthropic-base-url", &up.url, "--provider-ca-file", &up.ca_file, "--provider-http", "http2"];
    let h = harness("anthropic", vec![], &extra).await;
    burst(&h).await;
    assert_eq!(*up.seen.versions.lock().unwrap(), vec![Version::HTTP_2; 5]);
    assert_eq!(up.seen.most_at_once.load(Ordering::SeqCst), 5, "the five questions were in flight together");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "the burst waited for one handshake");
}

#[actix_web::test]
async fn a_provider_with_a_private_ca_is_not_trusted_without_its_ca_file() {
    let up = https_upstream().await;
    let h = harness("anthropic", vec![], &["--anthropic-base-url", &up.url, "--upstream-attempts", "1"]).await;
    let thread = format!("{}/v1/projects/{}/threads/{}", h.base, h.pid, h.tid);
    let posted = h.client.post(format!("{thread}/messages")).json(&json!({"content": "hi"})).send().await.unwrap();
    assert_eq!(posted.status(), 202);
    let answer = settled(&h, &thread).await;
    assert_eq!((answer["status"].as_str(), answer["error"]["code"].as_str()), (Some("failed"), Some("upstream_error")));
    assert!(up.seen.versions.lock().unwrap().is_empty(), "no question reached an untrusted provider");
}

#[actix_web::test]
async fn a_provider_ca_file_that_holds_no_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (file, says) in [(&missing, "cannot read"), (&empty, "no certificate")] {
        let db = crate::support::database_url(dir.path()).await;
        let args = crate::support::args(&db, &["--provider-ca-file", file.to_str().unwrap()]);
        let settings = Settings::try_parse_from(args).unwrap();
        let refused = format!("{:#}", Application::build(settings).await.err().expect("the start is refused"));
        assert!(refused.contains("--provider-ca-file") && refused.contains(says), "{refused}");
    }
}
