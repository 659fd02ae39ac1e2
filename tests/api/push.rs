//! Web Push, black-box: the VAPID public key (served, the same across
//! restarts, or the configured one; 404 while push is off), push
//! subscriptions (stored, refused when their keys or endpoint are bad,
//! removed; a thread's stream token opens its own), and pushes end to end.
//! The test plays the browser and its push service: it makes the
//! subscription's P-256 key pair and auth secret, serves the endpoint,
//! checks each push's VAPID JWT (ES256 with the served key, `aud` the
//! endpoint's origin, `exp` within 24 hours, `sub` the subject) and
//! decrypts its body with its own RFC 8291 code (not the service's). A
//! push service answering 404 or 410 gets the subscription removed. An
//! answer awaiting approval is pushed cut to fit (its large `pending`
//! left out), and only the events a subscription asked for are pushed.

use std::{
    sync::{
        atomic::{AtomicU16, Ordering},
        Arc,
    },
    time::Duration,
};

use aes_gcm::{aead::Aead, Aes128Gcm, KeyInit};
use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hkdf::Hkdf;
use p256::{
    ecdsa::{signature::Verifier, Signature, VerifyingKey},
    elliptic_curve::sec1::ToEncodedPoint,
    PublicKey, SecretKey,
};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::support::{error_code, Server, WAIT};

const SUBJECT: &str = "mailto:ops@example.com";

/// One push as the push service received it.
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// The push service: takes pushes at `/push/{anything}`, answering
/// `status` (201 until told otherwise).
struct PushService {
    origin: String,
    status: Arc<AtomicU16>,
    received: mpsc::UnboundedReceiver<Received>,
}

impl PushService {
    async fn start() -> PushService {
        type Shared = (Arc<AtomicU16>, mpsc::UnboundedSender<Received>);
        async fn take(State((status, tx)): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
            let _ = tx.send(Received { headers, body });
            StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
        }
        let status = Arc::new(AtomicU16::new(201));
        let (tx, received) = mpsc::unbounded_channel();
        let router =
            axum::Router::new().route("/push/{id}", axum::routing::post(take)).with_state((status.clone(), tx));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        PushService { origin, status, received }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.received.recv()).await.expect("a push within the wait").unwrap()
    }

    /// Nothing arrives for a while.
    async fn quiet(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.received.recv()).await.is_err()
    }
}

/// A browser's side of a subscription: its key pair and auth secret.
struct Browser {
    secret: SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Browser {
        let mut auth = [0u8; 16];
        getrandom::getrandom(&mut auth).unwrap();
        loop {
            let mut scalar = [0u8; 32];
            getrandom::getrandom(&mut scalar).unwrap();
            if let Ok(secret) = SecretKey::from_slice(&scalar) {
                return Browser { secret, auth };
            }
        }
    }

    fn public(&self) -> Vec<u8> {
        self.secret.public_key().to_encoded_point(false).as_bytes().to_vec()
    }

    /// `PushSubscription.toJSON()` for `endpoint`.
    fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "expirationTime": null,
            "keys": {"p256dh": B64.encode(self.public()), "auth": B64.encode(self.auth)}})
    }

    /// RFC 8291 §3.4 and RFC 8188 §2, by hand: the plaintext of a body
    /// encrypted to this browser (one record).
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        let (salt, rest) = body.split_at(16);
        let rs = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let idlen = rest[4] as usize;
        assert_eq!(idlen, 65, "the key id is the server's public key");
        let (server_key, ciphertext) = rest[5..].split_at(idlen);
        assert!(ciphertext.len() <= rs, "one record");
        let server_key = PublicKey::from_sec1_bytes(server_key).unwrap();
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), server_key.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public());
        info.extend_from_slice(server_key.to_encoded_point(false).as_bytes());
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes()).expand(&info, &mut ikm).unwrap();
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        let mut plain = Aes128Gcm::new(&cek.into()).decrypt(&nonce.into(), ciphertext).expect("it decrypts");
        // The last record's padding: a 2, then zeros.
        while plain.last() == Some(&0) {
            plain.pop();
        }
        assert_eq!(plain.pop(), Some(2), "the last record's delimiter");
        plain
    }
}

/// The push's VAPID header checked as a push service checks it; its
/// claims.
fn check_vapid(headers: &HeaderMap, key: &str, origin: &str) -> Value {
    let authorization = headers["authorization"].to_str().unwrap();
    let (t, k) = authorization.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
    assert_eq!(k, key, "k is the served public key");
    let (signed, signature) = t.rsplit_once('.').unwrap();
    let (header, claims) = signed.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&B64.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let verifying = VerifyingKey::from_sec1_bytes(&B64.decode(k).unwrap()).unwrap();
    let signature = Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
    verifying.verify(signed.as_bytes(), &signature).expect("signed with the VAPID key");
    let claims: Value = serde_json::from_slice(&B64.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin);
    assert_eq!(claims["sub"], SUBJECT);
    let exp = claims["exp"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp} within 24 h of {now}");
    claims
}

async fn public_key(server: &Server) -> String {
    let r = server.client.get(format!("{}/v1/push/public-key", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let point = B64.decode(&key).unwrap();
    assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed P-256 point");
    PublicKey::from_sec1_bytes(&point).expect("on the curve");
    key
}

/// POSTs a subscription; the answer's status and body.
async fn subscribe(server: &Server, pid: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/v1/projects/{pid}/push-subscriptions", server.base);
    let r = server.client.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn pid_tid(thread: &str) -> (String, String) {
    let parts: Vec<&str> = thread.split('/').collect();
    (parts[3].to_owned(), parts[5].to_owned())
}

const PUSH_ON: [&str; 3] = ["--vapid-subject", SUBJECT, "--allow-private-urls"];

#[actix_web::test]
async fn the_public_key_is_kept_across_restarts_and_push_is_off_without_a_subject() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::database_url(dir.path()).await;
    let server = Server::start(&db, &PUSH_ON).await;
    let key = public_key(&server).await;
    assert!(server.client.get(format!("{}/openapi.json", server.base)).send().await.unwrap().status().is_success());
    server.handle.clone().unwrap().shutdown().await;

    let again = Server::start(&db, &PUSH_ON).await;
    assert_eq!(public_key(&again).await, key, "the same key after a restart");
    again.handle.clone().unwrap().shutdown().await;

    // Off: the key and new subscriptions answer 404, saying why.
    let off = Server::start(&db, &[]).await;
    let r = off.client.get(format!("{}/v1/push/public-key", off.base)).send().await.unwrap();
    let (status, code) = error_code(r).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let thread = off.thread().await;
    let (pid, _) = pid_tid(&thread);
    let (status, body) = subscribe(&off, &pid, Browser::new().subscription("https://push.example.com/push/1")).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("--vapid-subject"), "{body}");
    off.handle.clone().unwrap().shutdown().await;

    // A configured key is the one served.
    let private = [9u8; 32];
    let expected = SecretKey::from_slice(&private).unwrap().public_key().to_encoded_point(false);
    let configured =
        Server::temp(&["--vapid-subject", "https://ops.example.com/", "--vapid-private-key", &B64.encode(private)])
            .await;
    assert_eq!(B64.decode(public_key(&configured).await).unwrap(), expected.as_bytes());
}

#[actix_web::test]
async fn two_nodes_that_start_at_once_on_one_database_serve_one_key() {
    // Nodes share a database on Postgres only (two processes starting at
    // once on one SQLite file contend for its start-up writes).
    if std::env::var("TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        eprintln!("push: the two-node start SKIPPED: set TEST_DATABASE_URL to run it (.ci/run does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::database_url(dir.path()).await;
    // (Migrated first: only the key's first write races.)
    Server::start(&db, &[]).await.handle.unwrap().shutdown().await;
    let (a, b) = tokio::join!(Server::start(&db, &PUSH_ON), Server::start(&db, &PUSH_ON));
    assert_eq!(public_key(&a).await, public_key(&b).await);
}

#[actix_web::test]
async fn subscriptions_are_checked_stored_once_and_removed() {
    let server = Server::temp(&["--vapid-subject", SUBJECT]).await;
    let thread = server.thread().await;
    let (pid, tid) = pid_tid(&thread);
    let browser = Browser::new();
    let endpoint = "https://push.example.com/push/abc";
    let mut body = browser.subscription(endpoint);
    body["thread_id"] = json!(tid);
    let (status, created) = subscribe(&server, &pid, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // The same browser for the same thread again: the same subscription.
    let (status, again) = subscribe(&server, &pid, body.clone()).await;
    assert_eq!((status, again["id"].as_str()), (201, Some(id.as_str())));
    // For the whole project: another one.
    let (status, project_wide) = subscribe(&server, &pid, browser.subscription(endpoint)).await;
    assert_eq!(status, 201);
    assert_ne!(project_wide["id"], created["id"]);

    let compressed = B64.encode(browser.secret.public_key().to_encoded_point(true).as_bytes());
    let mut short = browser.public();
    short.pop();
    for (why, change) in [
        ("a compressed p256dh", json!({"keys": {"p256dh": compressed, "auth": B64.encode([1u8; 16])}})),
        ("a 64-byte p256dh", json!({"keys": {"p256dh": B64.encode(&short), "auth": B64.encode([1u8; 16])}})),
        ("a 15-byte auth", json!({"keys": {"p256dh": B64.encode(browser.public()), "auth": B64.encode([1u8; 15])}})),
        ("an unknown event", json!({"events": ["message.created"]})),
        ("no event", json!({"events": []})),
        ("an http endpoint", json!({"endpoint": "http://push.example.com/push/1"})),
        ("a loopback endpoint", json!({"endpoint": "https://127.0.0.1/push/1"})),
        ("a metadata endpoint", json!({"endpoint": "https://169.254.169.254/push/1"})),
        ("not a URL", json!({"endpoint": "push me"})),
        ("an unknown field", json!({"colour": "blue"})),
    ] {
        let mut bad = browser.subscription(endpoint);
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let (status, answer) = subscribe(&server, &pid, bad).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{why}: {answer}");
    }
    // A thread of another project, and an unknown project.
    let other = server.thread().await;
    let (_, other_tid) = pid_tid(&other);
    let mut foreign = browser.subscription(endpoint);
    foreign["thread_id"] = json!(other_tid);
    assert_eq!(subscribe(&server, &pid, foreign).await.0, 404);
    assert_eq!(subscribe(&server, &uuid::Uuid::now_v7().to_string(), browser.subscription(endpoint)).await.0, 404);

    let delete = |id: &str| {
        let url = format!("{}/v1/projects/{pid}/push-subscriptions/{id}", server.base);
        let client = server.client.clone();
        async move { client.delete(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(delete(&id).await, 204);
    assert_eq!(delete(&id).await, 404);
    assert_eq!(delete("not-an-id").await, 400);
}

#[actix_web::test]
async fn a_threads_stream_token_opens_push_subscriptions_of_that_thread_only() {
    let admin = "admin-token-0123456789";
    let server = Server::temp(&["--vapid-subject", SUBJECT, "--admin-token", admin]).await;
    let (pid, key) = server.project_with_key(admin).await;
    let thread = |name: &'static str| {
        let (server, pid, key) = (server.clone(), pid.clone(), key.clone());
        async move {
            let t =
                server.post_json_as(&key, &format!("/v1/projects/{pid}/threads"), Some(json!({"title": name}))).await;
            t["id"].as_str().unwrap().to_owned()
        }
    };
    let (tid, other) = (thread("a").await, thread("b").await);
    let token = server.post_json_as(&key, &format!("/v1/projects/{pid}/threads/{tid}/stream-token"), None).await;
    let token = token["token"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/projects/{pid}/push-subscriptions?token={token}", server.base);
    let browser = Browser::new();
    let with_thread = |t: Option<&str>| {
        let mut body = browser.subscription("https://push.example.com/push/1");
        if let Some(t) = t {
            body["thread_id"] = json!(t);
        }
        body
    };
    let post = |body: Value| {
        let (client, url) = (server.client.clone(), url.clone());
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, created) = post(with_thread(Some(&tid))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(post(with_thread(Some(&other))).await.0, 401, "another thread");
    assert_eq!(post(with_thread(None)).await.0, 401, "the whole project");
    // Without any credential: refused.
    let bare = format!("{}/v1/projects/{pid}/push-subscriptions", server.base);
    assert_eq!(server.client.post(bare).json(&with_thread(Some(&tid))).send().await.unwrap().status(), 401);
    // A key's subscription of another thread is not the token's to remove.
    let theirs = server
        .post_json_as(&key, &format!("/v1/projects/{pid}/push-subscriptions"), Some(with_thread(Some(&other))))
        .await;
    let delete = |id: &str| {
        let url = format!("{}/v1/projects/{pid}/push-subscriptions/{id}?token={token}", server.base);
        let client = server.client.clone();
        async move { client.delete(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(delete(theirs["id"].as_str().unwrap()).await, 401);
    assert_eq!(delete(created["id"].as_str().unwrap()).await, 204);
}

#[actix_web::test]
async fn an_answer_is_pushed_encrypted_with_vapid_and_a_gone_subscription_is_removed() {
    let mut service = PushService::start().await;
    let server = Server::temp(&PUSH_ON).await;
    let key = public_key(&server).await;
    let thread = server.thread().await;
    let (pid, tid) = pid_tid(&thread);
    let browser = Browser::new();
    let mut body = browser.subscription(&format!("{}/push/one", service.origin));
    body["thread_id"] = json!(tid);
    let (status, created) = subscribe(&server, &pid, body).await;
    assert_eq!(status, 201, "{created}");

    let message_id = server.ask(&thread, "Tell me something").await;
    let push = service.next().await;
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    assert_eq!(push.headers["ttl"], "86400");
    assert!(push.body.len() <= 4096, "fits a push: {}", push.body.len());
    check_vapid(&push.headers, &key, &service.origin);
    let data: Value = serde_json::from_slice(&browser.decrypt(&push.body)).unwrap();
    assert_eq!(data["message_id"], message_id.as_str(), "{data}");
    assert_eq!((data["thread_id"].as_str(), data["project_id"].as_str()), (Some(tid.as_str()), Some(pid.as_str())));
    assert_eq!(data["status"], "complete");
    let done = server.message(&thread, &message_id).await;
    let expected: String = done["content"].as_str().unwrap().chars().take(200).collect();
    assert_eq!(data["preview"], expected.as_str());

    // The browser unsubscribed: the push service answers 410, and the
    // subscription is gone (the next answer is not pushed; a DELETE finds
    // nothing).
    service.status.store(410, Ordering::SeqCst);
    server.ask(&thread, "Again").await;
    service.next().await;
    let url = format!("{}/v1/projects/{pid}/push-subscriptions/{}", server.base, created["id"].as_str().unwrap());
    crate::support::eventually(|| {
        let (client, url) = (server.client.clone(), url.clone());
        async move { (client.delete(url).send().await.unwrap().status() == 404).then_some(()) }
    })
    .await;
    service.status.store(201, Ordering::SeqCst);
    server.ask(&thread, "And again").await;
    assert!(service.quiet(Duration::from_millis(1500)).await, "nothing pushed to a gone subscription");
}

#[actix_web::test]
async fn a_push_service_answering_404_loses_the_subscription_too() {
    let mut service = PushService::start().await;
    service.status.store(404, Ordering::SeqCst);
    let server = Server::temp(&PUSH_ON).await;
    let thread = server.thread().await;
    let (pid, _) = pid_tid(&thread);
    let browser = Browser::new();
    let (status, created) =
        subscribe(&server, &pid, browser.subscription(&format!("{}/push/two", service.origin))).await;
    assert_eq!(status, 201);
    let message_id = server.ask(&thread, "Hello").await;
    let push = service.next().await;
    let data: Value = serde_json::from_slice(&browser.decrypt(&push.body)).unwrap();
    assert_eq!(data["message_id"], message_id.as_str(), "a project-wide subscription hears every thread");
    let url = format!("{}/v1/projects/{pid}/push-subscriptions/{}", server.base, created["id"].as_str().unwrap());
    crate::support::eventually(|| {
        let (client, url) = (server.client.clone(), url.clone());
        async move { (client.delete(url).send().await.unwrap().status() == 404).then_some(()) }
    })
    .await;
}

#[actix_web::test]
async fn an_answer_that_awaits_approval_is_pushed_cut_to_fit_and_only_the_events_asked_for() {
    use crate::tools::{calls_answer, text_answer};
    let mut service = PushService::start().await;
    // Six calls that need approval, with inputs of 900 bytes each: the
    // event's `pending` alone is larger than a push.
    let note = "n".repeat(900);
    let inputs: Vec<(String, String)> =
        (1..=6).map(|i| (format!("toolu_{i}"), format!(r#"{{"note": "{note}"}}"#))).collect();
    let calls: Vec<(&str, &str, &str)> =
        inputs.iter().map(|(id, input)| (id.as_str(), "pay", input.as_str())).collect();
    let replies = vec![calls_answer("I will pay six times.", &calls), text_answer("Paid.")];
    let h = crate::providers::harness("anthropic", replies, &PUSH_ON).await;
    let key = public_key(&Server::attach(h.base.clone())).await;
    let tools = json!([{"name": "pay", "input_schema": {"type": "object"}, "approval": "always"}]);
    let url = format!("{}/v1/projects/{}/threads", h.base, h.pid);
    let t: Value = h.client.post(&url).json(&json!({"tools": tools})).send().await.unwrap().json().await.unwrap();
    let tid = t["id"].as_str().unwrap().to_owned();
    let browser = Browser::new();
    let mut body = browser.subscription(&format!("{}/push/awaiting", service.origin));
    body["thread_id"] = json!(tid);
    body["events"] = json!(["message.awaiting"]);
    let r = h.client.post(format!("{}/v1/projects/{}/push-subscriptions", h.base, h.pid)).json(&body).send().await;
    assert_eq!(r.unwrap().status(), 201);

    let thread = format!("{url}/{tid}");
    let posted: Value = h
        .client
        .post(format!("{thread}/messages"))
        .json(&json!({"content": "Pay"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message_id = posted["assistant_message"]["id"].as_str().unwrap().to_owned();
    let push = service.next().await;
    assert!(push.body.len() <= 4096, "fits a push: {}", push.body.len());
    check_vapid(&push.headers, &key, &service.origin);
    let data: Value = serde_json::from_slice(&browser.decrypt(&push.body)).unwrap();
    assert_eq!(
        (data["message_id"].as_str(), data["status"].as_str()),
        (Some(message_id.as_str()), Some("awaiting_input"))
    );
    assert!(data.get("pending").is_none(), "pending is the first to go: {data}");
    assert_eq!(data["preview"], "I will pay six times.");

    // Denied: the answer completes, which this subscription did not ask for.
    for (id, _) in &inputs {
        let decision = json!({"tool_call_id": id, "approved": false});
        let r = h.client.post(format!("{thread}/approvals")).json(&decision).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    crate::support::eventually(|| {
        let (client, url) = (h.client.clone(), format!("{thread}/messages"));
        let id = message_id.clone();
        async move {
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            let done =
                page["data"].as_array().unwrap().iter().any(|m| m["id"] == id.as_str() && m["status"] == "complete");
            if !done {
                eprintln!(
                    "{}",
                    page["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| format!("{} {}", m["status"], m["stop_reason"]))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            done.then_some(())
        }
    })
    .await;
    assert!(service.quiet(Duration::from_millis(1000)).await, "message.completed is not pushed");
}
