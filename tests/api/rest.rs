//! REST resources: projects, thread lists, history paging, deletion, live
//! partial content, and the error shape of every refusal, actix's own
//! included.

use serde_json::{json, Value};

use crate::support::{error_code, eventually, Events as _, Server, Ws};

#[actix_web::test]
async fn history_pages_by_position_both_ways() {
    let server = Server::temp(&["--sim-chunks", "3"]).await;
    let thread = server.thread().await;
    for q in ["a", "b", "c"] {
        let id = server.ask(&thread, q).await;
        server.finished(&thread, &id).await;
    }
    let page = |q: &str| {
        let server = server.clone();
        let url = format!("{thread}/messages?{q}");
        async move { server.get_json(&url).await }
    };
    let positions = |v: &Value| -> Vec<i64> {
        v["data"].as_array().unwrap().iter().map(|m| m["position"].as_i64().unwrap()).collect()
    };
    let first = page("limit=2").await;
    assert_eq!(positions(&first), [0, 1]);
    assert_eq!(first["has_more"], true);
    let next = page("limit=2&after=1").await;
    assert_eq!(positions(&next), [2, 3]);
    assert_eq!(next["has_more"], true);
    let last = page("limit=2&after=3").await;
    assert_eq!(positions(&last), [4, 5]);
    assert_eq!(last["has_more"], false);
    let older = page("limit=2&before=4").await;
    assert_eq!(positions(&older), [2, 3]);
    assert_eq!(older["has_more"], true);
    let oldest = page("limit=2&before=2").await;
    assert_eq!(positions(&oldest), [0, 1]);
    assert_eq!(oldest["has_more"], false);
    assert_eq!(oldest["data"][0]["content"], "a");
    assert_eq!(oldest["data"][1]["role"], "assistant");
    // Both bounds: the messages strictly between, newest page first.
    let between = page("after=0&before=5").await;
    assert_eq!(positions(&between), [1, 2, 3, 4]);
    assert_eq!(between["has_more"], false);
    let between = page("limit=2&after=0&before=5").await;
    assert_eq!(positions(&between), [3, 4]);
    assert_eq!(between["has_more"], true);
}

#[actix_web::test]
async fn thread_list_pages_newest_first_with_a_cursor() {
    let server = Server::temp(&[]).await;
    let p = server.post_json("/v1/projects", json!({"name": "many"})).await;
    let pid = p["id"].as_str().unwrap();
    let mut created = Vec::new();
    for i in 0..5 {
        let t = server.post_json(&format!("/v1/projects/{pid}/threads"), json!({"title": format!("t{i}")})).await;
        assert_eq!(t["status"], "idle");
        created.push(t["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = server.get_json(&format!("/v1/projects/{pid}/threads?limit=2{q}")).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "each thread once, newest first");
}

#[actix_web::test]
async fn deleting_a_thread_closes_its_subscribers_and_removes_it() {
    let server = Server::temp(&["--sim-chunks", "500", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let mut sse = server.sse(&thread, None).await;
    let mut ws = Ws::open(&server.base, &thread, None).await;
    server.ask(&thread, "doomed").await;
    sse.until("message.delta").await;
    ws.until("message.delta").await;
    let del = server.client.delete(format!("{}{thread}", server.base)).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let sse_rest = sse.until("error").await;
    assert_eq!(sse_rest.last().unwrap().data["code"], "thread_deleted");
    assert!(sse.try_next().await.is_none(), "the SSE stream ends");
    let ws_rest = ws.until("error").await;
    assert_eq!(ws_rest.last().unwrap().data["code"], "thread_deleted");
    assert!(ws.next().await.is_none(), "the WebSocket closes");
    for path in ["", "/messages"] {
        let r = server.client.get(format!("{}{thread}{path}", server.base)).send().await.unwrap();
        assert_eq!(error_code(r).await, (404, "not_found".to_owned()));
    }
}

#[actix_web::test]
async fn history_shows_a_streaming_message_with_its_live_text() {
    let server = Server::temp(&["--sim-chunks", "300", "--sim-interval-ms", "10", "--flush-interval-ms", "5000"]).await;
    let thread = server.thread().await;
    let id = server.ask(&thread, "stream").await;
    // The flush interval is long: only the live actor has this text.
    let live = eventually(|| async {
        let m = server.message(&thread, &id).await;
        (m["status"] == "streaming" && !m["content"].as_str().unwrap().is_empty()).then_some(m)
    })
    .await;
    let thread_view = server.get_json(&thread).await;
    assert_eq!(thread_view["status"], "generating");
    let _ = server.client.post(format!("{}{thread}/cancel", server.base)).send().await;
    let done = server.finished(&thread, &id).await;
    assert!(done["content"].as_str().unwrap().starts_with(live["content"].as_str().unwrap()));
}

#[actix_web::test]
async fn every_refusal_has_the_contract_error_shape() {
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let c = &server.client;
    let base = &server.base;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(format!("{base}/v1/projects")).header("content-type", "application/json").body("{not json"),
            400,
            "bad_request",
        ),
        (c.post(format!("{base}/v1/projects")).json(&json!({"name": 5})), 400, "bad_request"),
        (
            c.post(format!("{base}/v1/projects")).header("content-type", "text/plain").body("{}"),
            415,
            "unsupported_media_type",
        ),
        (c.get(format!("{base}/v1/nothing/here")), 404, "not_found"),
        (c.get(format!("{base}/v1/projects/not-a-uuid")), 400, "bad_request"),
        (c.get(format!("{base}/v1/projects/{}", uuid::Uuid::now_v7())), 404, "not_found"),
        (c.get(format!("{base}{thread}/../{}", uuid::Uuid::now_v7())), 404, "not_found"),
        (c.post(format!("{base}{thread}/messages")).json(&json!({"content": "  "})), 400, "bad_request"),
        (c.post(format!("{base}{thread}/messages")).json(&json!({})), 400, "bad_request"),
        (c.get(format!("{base}{thread}/messages?limit=abc")), 400, "bad_request"),
        (c.get(format!("{base}{thread}/messages?limit=201")), 400, "bad_request"),
        (c.get(format!("{base}{thread}/messages?limit=0")), 400, "bad_request"),
        (c.get(format!("{base}{}?limit=101", thread.rsplit_once("/").unwrap().0)), 400, "bad_request"),
        (c.delete(format!("{base}/v1/projects")), 405, "method_not_allowed"),
    ];
    for (req, status, code) in cases {
        let r = req.send().await.unwrap();
        let url = r.url().to_string();
        assert_eq!(error_code(r).await, (status, code.to_owned()), "{url}");
    }
    // A wrong method names the right ones (RFC 9110).
    let r = c.put(format!("{base}{thread}/messages")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST");
    assert_eq!(error_code(r).await, (405, "method_not_allowed".to_owned()));
    let project = server.post_json("/v1/projects", json!({"name": "x"})).await;
    let wrong =
        format!("/v1/projects/{}/threads/{}", project["id"].as_str().unwrap(), thread.rsplit('/').next().unwrap());
    let r = c.get(format!("{base}{wrong}")).send().await.unwrap();
    assert_eq!(error_code(r).await, (404, "not_found".to_owned()), "a thread of another project is not found");
}

#[actix_web::test]
async fn a_delete_racing_a_post_leaves_no_actor_and_calls_no_model_for_the_deleted_thread() {
    use crate::{
        fake_upstream::{anthropic, End, Reply},
        providers::harness,
    };
    let answer = Reply::Stream { pieces: anthropic::text_answer(&["an ", "answer"]), end: End::Clean };
    let h = harness("anthropic", vec![answer], &[]).await;
    let threads = format!("{}/v1/projects/{}/threads", h.base, h.pid);
    let mut accepted = 0;
    for round in 0..10 {
        let t: Value = h.client.post(&threads).json(&json!({})).send().await.unwrap().json().await.unwrap();
        let thread = format!("{threads}/{}", t["id"].as_str().unwrap());
        if round % 2 == 1 {
            // Half the rounds race a live actor, half start one in the race.
            h.client.get(format!("{thread}/messages")).send().await.unwrap();
            let sse = h.client.get(format!("{thread}/events")).send().await.unwrap();
            drop(sse);
        }
        let post = h.client.post(format!("{thread}/messages")).json(&json!({"content": "hi"})).send();
        let delete = h.client.delete(&thread).send();
        let (post, delete) = tokio::join!(post, delete);
        let (post, delete) = (post.unwrap(), delete.unwrap());
        assert_eq!(delete.status(), 204, "round {round}");
        match post.status().as_u16() {
            202 => accepted += 1,
            404 => {}
            other => panic!("round {round}: the racing POST got {other}: {}", post.text().await.unwrap()),
        }
        // The thread is gone for good: no actor, no generation, 404.
        let again = h.client.post(format!("{thread}/messages")).json(&json!({"content": "hi?"})).send().await;
        assert_eq!(error_code(again.unwrap()).await, (404, "not_found".to_owned()), "round {round}");
        let admin = h.client.get(format!("{}/admin/threads/{}", h.base, t["id"].as_str().unwrap())).send().await;
        assert_eq!(admin.unwrap().status(), 404, "round {round}: no live actor");
    }
    // An accepted answer may be cancelled by its deletion before it reached
    // the model; nothing else may call it.
    let calls = h.upstream.requests().len();
    assert!(calls <= accepted, "{calls} model calls for {accepted} accepted messages");
}

#[actix_web::test]
async fn a_blank_model_is_refused_on_every_way_in_and_nothing_is_stored() {
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let project = thread.split("/threads/").next().unwrap().to_owned();
    for model in ["", " "] {
        let r = server.client.post(format!("{}{thread}/messages", server.base));
        let r = r.json(&json!({"content": "hi", "model": model})).send().await.unwrap();
        assert_eq!(error_code(r).await, (400, "bad_request".to_owned()), "{model:?}");
        let r = server.client.post(format!("{}{project}/threads", server.base)).json(&json!({"model": model}));
        assert_eq!(error_code(r.send().await.unwrap()).await.0, 400, "{model:?}");
        let seed = format!("{}{}/query/stream", server.base, thread.trim_start_matches("/v1"));
        let r = server.client.post(seed).json(&json!({"query": "hi", "model": model})).send().await.unwrap();
        assert_eq!(error_code(r).await.0, 400, "{model:?}");
    }
    let mut ws = Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    ws.send(json!({"type": "send", "content": "hi", "model": ""})).await;
    assert_eq!(ws.until("error").await.pop().unwrap().data["code"], "bad_request");
    assert!(server.messages(&thread).await.is_empty());
}

#[actix_web::test]
async fn an_http_1_0_client_gets_a_close_delimited_event_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let mut sock = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    sock.write_all(format!("GET {thread}/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.windows(12).any(|w| w == b"event: ready") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(crate::support::WAIT, sock.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("http/1.") && head.contains(" 200"), "{head}");
    assert!(!head.contains("transfer-encoding"), "HTTP/1.0 has no chunking: {head}");
    assert!(body.starts_with("retry: "), "the body is the event stream itself, not chunks: {body:?}");
}
