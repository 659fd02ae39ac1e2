//! The route table as a client meets it: every route is held to its own
//! body limit, also where another method of its path takes a larger body;
//! every GET also answers HEAD, with its headers and no body, and a HEAD
//! of a stream opens nothing.

use std::time::Duration;

use convo::http::{routes, Kind};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    access::ADMIN,
    support::{database_url, error_code, Server, WAIT},
};

#[actix_web::test]
async fn a_get_is_held_to_its_small_body_limit_where_the_post_of_its_path_takes_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, &[]).await;
    let c = &server.client;
    let thread = server.thread().await;
    let project = thread.rsplit_once("/threads/").unwrap().0;
    let threads = format!("{}{project}/threads", server.base);
    let messages = format!("{}{thread}/messages", server.base);

    // 2 KiB on a GET, whose path's POST takes JSON: past the small allowance.
    for url in [&threads, &messages] {
        let r = c.get(url).header("content-type", "application/json").body("x".repeat(2048)).send().await.unwrap();
        assert_eq!(error_code(r).await, (413, "payload_too_large".into()), "GET {url}");
    }

    // The POST of the same paths still takes a JSON body of that size.
    let padded = |field: &str| {
        let body = json!({ field: "s".repeat(2048 - format!(r#"{{"{field}":""}}"#).len()) });
        assert_eq!(body.to_string().len(), 2048);
        body
    };
    let r = c.post(&threads).json(&padded("system")).send().await.unwrap();
    assert_eq!(r.status(), 201, "POST {threads}");
    let r = c.post(&messages).json(&padded("content")).send().await.unwrap();
    assert_eq!(r.status(), 202, "POST {messages}");

    // The GETs answer without a body; a wrong method is told so, body or not.
    assert_eq!(c.get(&threads).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&messages).send().await.unwrap().status(), 200);
    let r = c.delete(&threads).body("x".repeat(2048)).send().await.unwrap();
    assert_eq!(error_code(r).await, (405, "method_not_allowed".into()));
}

/// What a monitor or `curl -I` sees: for every GET of the route table,
/// HEAD answers the GET's status and headers (access checks included),
/// with no body.
#[actix_web::test]
async fn every_get_also_answers_head_with_its_headers_and_no_body() {
    let server = Server::temp(&["--admin-token", ADMIN]).await;
    let c = &server.client;
    let p = server.post_json_as(ADMIN, "/v1/projects", Some(json!({"name": "p"}))).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let t = server.post_json_as(ADMIN, &format!("/v1/projects/{pid}/threads"), Some(json!({}))).await;
    let tid = t["id"].as_str().unwrap().to_owned();

    let gets: Vec<_> = routes().into_iter().filter(|r| r.method == "GET").collect();
    assert!(gets.len() >= 20, "the page's files, the probes and the API's reads");
    for route in gets {
        let path = route.path.replace("{pid}", &pid).replace("{tid}", &tid).replace("{id}", &tid);
        let url = format!("{}{path}", server.base);
        for bearer in [None, Some(ADMIN)] {
            let send = |method: Method| {
                let req = c.request(method, &url);
                let req = match bearer {
                    Some(token) => req.bearer_auth(token),
                    None => req,
                };
                // A stream's GET answers its headers, then streams: its
                // status is what counts here; the response is dropped.
                tokio::time::timeout(WAIT, req.send())
            };
            let get = send(Method::GET).await.expect("GET answers in time").unwrap();
            let head = send(Method::HEAD).await.expect("HEAD answers in time").unwrap();
            let who = if bearer.is_some() { "admin" } else { "anonymous" };
            assert_eq!(head.status(), get.status(), "HEAD {path} ({who})");
            let header = |r: &reqwest::Response, name: &str| r.headers().get(name).cloned();
            for name in ["content-type", "content-security-policy", "cache-control", "allow"] {
                assert_eq!(header(&head, name), header(&get, name), "HEAD {path} ({who}): {name}");
            }
            if route.kind == Kind::Asset {
                // The page's files: the length of the body a GET gets.
                let length = header(&head, "content-length").expect("a length");
                let body = get.bytes().await.unwrap();
                assert_eq!(length.to_str().unwrap(), body.len().to_string(), "HEAD {path}");
            }
            let body = tokio::time::timeout(WAIT, head.bytes()).await.expect("HEAD ends in time").unwrap();
            assert!(body.is_empty(), "HEAD {path} ({who}) has no body");
        }
    }
}

/// A HEAD of a stream takes no place among the thread's subscribers, no
/// slot of the caller's streams, and ends at once; a wrong method is told
/// that the path answers HEAD too.
#[actix_web::test]
async fn a_head_of_a_stream_opens_nothing() {
    let server = Server::temp(&["--max-subscribers-per-thread", "1"]).await;
    let c = &server.client;
    let thread = server.thread().await;
    let events = format!("{}{thread}/events", server.base);
    let mut sse = server.sse(&thread, None).await;
    assert_eq!(sse.next().await.unwrap().kind, "ready");
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(5), c.head(&events).send()).await.expect("in time").unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        assert!(tokio::time::timeout(Duration::from_secs(5), r.bytes()).await.expect("ends").unwrap().is_empty());
    }
    // The one place was the open stream's all along.
    let r = c.get(&events).send().await.unwrap();
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));

    let r = c.post(&events).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = c.delete(format!("{}{thread}/messages", server.base)).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST");
}
