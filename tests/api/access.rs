//! Access control, tried as an attacker would: no token, a wrong token, a
//! key of another project on every project route (the table comes from the
//! router's own route list), stream tokens outside their thread or past
//! their expiry, and open mode on a public address.

use clap::Parser;
use convo::{config::Settings, startup::Application};
use serde_json::{json, Value};

use crate::support::{args, database_url, error_code, Server, Ws};

pub const ADMIN: &str = "admin-token-for-tests-0123456789";

async fn secured(extra: &[&str]) -> Server {
    let mut flags = vec!["--admin-token", ADMIN];
    flags.extend_from_slice(extra);
    Server::temp(&flags).await
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A project with a thread, created with the admin token; the thread path.
async fn project_with_thread(server: &Server) -> (String, String) {
    let c = &server.client;
    let (_, p) =
        send(c.post(format!("{}/v1/projects", server.base)).bearer_auth(ADMIN).json(&json!({"name": "p"}))).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let (_, t) =
        send(c.post(format!("{}/v1/projects/{pid}/threads", server.base)).bearer_auth(ADMIN).json(&json!({}))).await;
    (pid.clone(), format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap()))
}

async fn new_key(server: &Server, pid: &str) -> (String, String) {
    let (status, k) =
        send(server.client.post(format!("{}/admin/projects/{pid}/keys", server.base)).bearer_auth(ADMIN)).await;
    assert_eq!(status, 201);
    (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned())
}

#[actix_web::test]
async fn open_mode_is_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let open = Settings::try_parse_from(args(&db, &["--bind", "0.0.0.0:0"])).unwrap();
    let err = Application::build(open).await.err().expect("refused").to_string();
    assert!(err.contains("--admin-token") && err.contains("--allow-open"), "{err}");
    for extra in [&["--bind", "0.0.0.0:0", "--allow-open"][..], &["--bind", "0.0.0.0:0", "--admin-token", ADMIN][..]] {
        let settings = Settings::try_parse_from(args(&db, extra)).unwrap();
        let app = Application::build(settings).await.expect("allowed");
        let handle = app.handle();
        actix_web::rt::spawn(app.run_until_stopped());
        handle.shutdown().await;
    }
}

#[actix_web::test]
async fn the_admin_token_guards_admin_routes_and_project_creation() {
    let server = secured(&[]).await;
    let c = &server.client;
    let stats = format!("{}/admin/stats", server.base);
    assert_eq!(error_code(c.get(&stats).send().await.unwrap()).await, (401, "unauthorized".into()));
    assert_eq!(error_code(c.get(&stats).bearer_auth("wrong-token").send().await.unwrap()).await.0, 401);
    assert_eq!(c.get(&stats).bearer_auth(ADMIN).send().await.unwrap().status(), 200);
    let projects = format!("{}/v1/projects", server.base);
    let r = c.post(&projects).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    assert_eq!(c.post(&projects).bearer_auth(ADMIN).json(&json!({"name": "x"})).send().await.unwrap().status(), 201);
}

#[actix_web::test]
async fn a_project_key_opens_its_project_only_and_can_be_revoked() {
    let server = secured(&[]).await;
    let c = &server.client;
    let (a, a_thread) = project_with_thread(&server).await;
    let (b, b_thread) = project_with_thread(&server).await;
    let (key_id, key) = new_key(&server, &a).await;

    // Its own project works.
    assert_eq!(c.get(format!("{}/v1/projects/{a}", server.base)).bearer_auth(&key).send().await.unwrap().status(), 200);
    let r = c.post(format!("{}{a_thread}/messages", server.base)).bearer_auth(&key).json(&json!({"content": "hi"}));
    assert_eq!(r.send().await.unwrap().status(), 202);

    // Every route of another project answers 404, as if it did not exist.
    let b_tid = b_thread.rsplit('/').next().unwrap();
    let routes: Vec<(String, String)> = convo::http::routes()
        .into_iter()
        .filter(|r| r.access == convo::http::Access::Project)
        .map(|r| (r.method.to_string(), r.path.replace("{pid}", &b).replace("{tid}", b_tid)))
        .collect();
    assert!(routes.len() >= 12);
    for (method, path) in routes {
        let req =
            c.request(method.parse().unwrap(), format!("{}{path}", server.base)).bearer_auth(&key).json(&json!({}));
        assert_eq!(error_code(req.send().await.unwrap()).await, (404, "not_found".into()), "{method} {path}");
    }
    // …and the key opens no admin route.
    let r = c.get(format!("{}/admin/stats", server.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let r =
        c.delete(format!("{}/admin/projects/{a}/keys/{key_id}", server.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(format!("{}/v1/projects/{a}", server.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
}

#[actix_web::test]
async fn stream_tokens_open_one_threads_streams_until_they_expire() {
    let server = secured(&["--stream-token-ttl-secs", "8"]).await;
    let c = &server.client;
    let (pid, thread) = project_with_thread(&server).await;
    let (_, key) = new_key(&server, &pid).await;
    let (_, other) =
        send(c.post(format!("{}/v1/projects/{pid}/threads", server.base)).bearer_auth(&key).json(&json!({}))).await;
    let other = format!("/v1/projects/{pid}/threads/{}", other["id"].as_str().unwrap());
    let (status, t) = send(c.post(format!("{}{thread}/stream-token", server.base)).bearer_auth(&key)).await;
    assert_eq!(status, 201);
    assert!(t["expires_at"].is_string());
    let token = t["token"].as_str().unwrap().to_owned();

    let mut sse = crate::support::Sse::open(c.get(format!("{}{thread}/events?token={token}", server.base))).await;
    assert_eq!(sse.next().await.unwrap().kind, "ready");
    let ws_url = format!("{}{thread}/ws?token={token}", server.base.replace("http://", "ws://"));
    let mut ws = Ws::connect(&ws_url).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");

    for path in [format!("{other}/events"), format!("{thread}/messages"), format!("{thread}/cancel")] {
        let r = c.get(format!("{}{path}?token={token}", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = c.get(format!("{}{thread}/events", server.base)).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let expires: chrono::DateTime<chrono::Utc> = t["expires_at"].as_str().unwrap().parse().unwrap();
    let left = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(100)).await;
    let r = c.get(format!("{}{thread}/events?token={token}", server.base)).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()), "an expired token is refused");
}

#[actix_web::test]
async fn websocket_upgrades_and_cors_check_the_origin() {
    let server = Server::temp(&["--allowed-origins", "https://app.example.com,http://localhost:3000"]).await;
    let thread = server.thread().await;
    let ws_base = server.base.replace("http://", "ws://");
    let project = thread.split("/threads/").next().unwrap();
    // The thread's socket and the AI SDK's chat socket alike.
    for url in [format!("{ws_base}{thread}/ws"), format!("{ws_base}{project}/chat/ws")] {
        let upgrade = |origin: &'static str| {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = url.clone().into_client_request().unwrap();
            req.headers_mut().insert("Origin", origin.parse().unwrap());
            tokio_tungstenite::connect_async(req)
        };
        match upgrade("https://evil.example.net").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403, "{url}"),
            other => panic!("a foreign origin was let in at {url}: {:?}", other.map(|(_, r)| r.status())),
        }
        let (_, resp) = upgrade("https://app.example.com").await.expect("an allowed origin upgrades");
        assert_eq!(resp.status(), 101);
    }

    let preflight = |origin: &str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, format!("{}{thread}/messages", server.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
    };
    let ok = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert!(ok.headers().get("access-control-allow-credentials").is_none(), "no credentials");
    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[actix_web::test]
async fn a_silent_websocket_peer_is_closed() {
    let server = Server::temp(&["--heartbeat-ms", "100", "--ws-timeout-ms", "3000"]).await;
    let thread = server.thread().await;
    let url = format!("{}{thread}/ws", server.base.replace("http://", "ws://"));
    // A raw upgrade, then silence: no pong ever goes back.
    let (socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    crate::support::eventually(|| async {
        (server.get_json("/admin/stats").await["subscribers"]["ws"] == 1).then_some(())
    })
    .await;
    crate::support::eventually(|| async {
        (server.get_json("/admin/stats").await["subscribers"]["ws"] == 0).then_some(())
    })
    .await;
    drop(socket);
}

#[actix_web::test]
async fn a_key_holds_no_more_streams_than_its_cap_even_through_stream_tokens() {
    let server = secured(&["--max-connections-per-key", "2"]).await;
    let c = &server.client;
    let (pid, thread) = project_with_thread(&server).await;
    let (_, key) = new_key(&server, &pid).await;
    let (_, other_key) = new_key(&server, &pid).await;
    let events = format!("{}{thread}/events", server.base);
    let mut first = crate::support::Sse::open(c.get(&events).bearer_auth(&key)).await;
    assert_eq!(first.next().await.unwrap().kind, "ready");
    let ws_url = format!("{}{thread}/ws", server.base.replace("http://", "ws://"));
    let mut ws = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = ws_url.into_client_request().unwrap();
        req.headers_mut().insert("Authorization", format!("Bearer {key}").parse().unwrap());
        Ws { socket: tokio_tungstenite::connect_async(req).await.unwrap().0 }
    };
    assert_eq!(ws.next().await.unwrap().kind, "ready");

    // A third stream with the key, or with a token minted by it, is refused.
    let r = c.get(&events).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    let (_, t) = send(c.post(format!("{}{thread}/stream-token", server.base)).bearer_auth(&key)).await;
    let token = t["token"].as_str().unwrap().to_owned();
    let r = c.get(format!("{events}?token={token}")).send().await.unwrap();
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));

    // Other keys and the admin token are not held back by it.
    assert_eq!(c.get(&events).bearer_auth(&other_key).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&events).bearer_auth(ADMIN).send().await.unwrap().status(), 200);

    // A token minted with the admin token has a cap of its own.
    let admin_token = || async {
        let (_, t) = send(c.post(format!("{}{thread}/stream-token", server.base)).bearer_auth(ADMIN)).await;
        t["token"].as_str().unwrap().to_owned()
    };
    let minted = admin_token().await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut sse = crate::support::Sse::open(c.get(format!("{events}?token={minted}"))).await;
        assert_eq!(sse.next().await.unwrap().kind, "ready");
        held.push(sse);
    }
    let r = c.get(format!("{events}?token={minted}")).send().await.unwrap();
    assert_eq!(error_code(r).await, (429, "rate_limited".into()), "an admin-minted token is capped too");
    let another = admin_token().await;
    assert_eq!(c.get(format!("{events}?token={another}")).send().await.unwrap().status(), 200, "each its own");

    // A stream that ends gives its place back.
    drop(first);
    crate::support::eventually(|| async {
        let r = c.get(format!("{events}?token={token}")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_busy_thread_of_another_project_is_still_not_found() {
    let server = secured(&["--sim-chunks", "400", "--sim-interval-ms", "10"]).await;
    let c = &server.client;
    let (a, _) = project_with_thread(&server).await;
    let (_, b_thread) = project_with_thread(&server).await;
    let (_, key) = new_key(&server, &a).await;
    // B's thread is generating, so its actor is live and busy.
    let r = c.post(format!("{}{b_thread}/messages", server.base)).bearer_auth(ADMIN).json(&json!({"content": "go"}));
    assert_eq!(r.send().await.unwrap().status(), 202);
    // A's key names its own project and B's thread: 404, never 409.
    let b_tid = b_thread.rsplit('/').next().unwrap();
    let path = format!("{}/v1/projects/{a}/threads/{b_tid}/messages", server.base);
    let r = c.post(&path).bearer_auth(&key).json(&json!({"content": "hi"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (404, "not_found".into()));
}

#[actix_web::test]
async fn an_allowed_origin_that_could_never_match_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    for origin in ["https://app.example.com/", "https://app.example.com/app", "app.example.com"] {
        let settings = Settings::try_parse_from(args(&db, &["--allowed-origins", origin])).unwrap();
        let err = Application::build(settings).await.err().expect("refused").to_string();
        assert!(err.contains("--allowed-origins"), "{origin}: {err}");
    }
}

#[actix_web::test]
async fn open_mode_answers_loopback_host_names_only() {
    let server = Server::temp(&[]).await;
    let url = format!("{}/v1/projects", server.base);
    // A page on a rebinding domain reaches 127.0.0.1 with its own name.
    let r = server.client.post(&url).header("Host", "rebind.evil.example").json(&json!({"name": "x"})).send().await;
    assert_eq!(error_code(r.unwrap()).await, (403, "forbidden".into()));
    for host in ["localhost:8080", "127.0.0.1"] {
        let r = server.client.post(&url).header("Host", host).json(&json!({"name": "x"})).send().await.unwrap();
        assert_eq!(r.status(), 201, "{host}");
    }
    // Forwarding headers from a client that is not a trusted proxy change
    // nothing: the request's own Host decides.
    let stats = format!("{}/admin/stats", server.base);
    for (name, value) in [("X-Forwarded-Host", "127.0.0.1"), ("Forwarded", "host=localhost")] {
        let r = server.client.post(&url).header("Host", "evil.example").header(name, value);
        assert_eq!(error_code(r.json(&json!({"name": "x"})).send().await.unwrap()).await.0, 403, "{name}");
        let r = server.client.get(&stats).header("Host", "evil.example").header(name, value).send().await;
        assert_eq!(r.unwrap().status(), 403, "{name}");
    }
    // From a trusted proxy, its forwarded host is the one checked.
    let proxied = Server::temp(&["--trusted-proxies", "127.0.0.1,::1"]).await;
    let stats = format!("{}/admin/stats", proxied.base);
    let r = proxied.client.get(&stats).header("Host", "127.0.0.1").header("X-Forwarded-Host", "evil.example");
    assert_eq!(r.send().await.unwrap().status(), 403);
    let r = proxied.client.get(&stats).header("Host", "evil.example").header("Forwarded", "for=1.2.3.4;host=localhost");
    assert_eq!(r.send().await.unwrap().status(), 200);
    // With an admin token every request is authenticated: any name goes.
    let secured = secured(&[]).await;
    let r = secured.client.get(format!("{}/admin/stats", secured.base)).header("Host", "api.example.com");
    assert_eq!(r.bearer_auth(ADMIN).send().await.unwrap().status(), 200);
}
