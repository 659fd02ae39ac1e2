//! Tools the service runs itself (`run: {"url"}`), with real processes, a
//! fake Anthropic upstream and a fake tool endpoint: the call is a signed
//! POST (Standard Webhooks headers, `webhook-id` = `<message>.<call>`, the
//! same on every attempt and after a restart), its `{output}` or `{error}`
//! is the result and the answer goes on in the same message; time-outs and
//! 5xx are tried again, everything else becomes an error result; a call
//! that needs approval runs only once approved, and once; a cancel stops a
//! running call; a `kill -9` mid-call runs it again after the restart; the
//! outbound guard refuses inside addresses at definition and at call time,
//! follows no redirect, reads no body past its cap and takes no proxy from
//! the environment. In cluster mode (needs `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL`) the node that takes over from a dead owner runs the
//! call again, and two nodes approving at once run it once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    binary::{signal, Binary},
    cluster::Cluster,
    fake_upstream::{FakeUpstream, Recorded, Reply},
    support::{database_url, eventually, Events as _, Server},
    tools::{calls_answer, text_answer},
};

const KEY: (&str, &str) = ("ANTHROPIC_API_KEY", "sk-test-key");

fn ok(output: Value) -> Reply {
    Reply::Status { code: 200, body: json!({ "output": output }).to_string(), retry_after: None }
}

fn status(code: u16, body: &str) -> Reply {
    Reply::Status { code, body: body.into(), retry_after: None }
}

/// One node with the outbound guard open (the endpoints are on loopback),
/// `upstream` as its model and a project whose tool secret is made.
struct Node {
    upstream: FakeUpstream,
    dir: tempfile::TempDir,
    db: String,
    bin: Binary,
    pid: String,
    secret: String,
}

async fn start_on(db: &str, upstream: &FakeUpstream, extra: &[&str], env: &[(String, String)]) -> Binary {
    let mut flags =
        vec!["--provider", "anthropic", "--anthropic-base-url", &upstream.url, "--upstream-retry-min-ms", "10"];
    flags.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push((KEY.0.into(), KEY.1.into()));
    Binary::start_env(db, &flags, &env).await
}

async fn node(replies: Vec<Reply>, extra: &[&str], env: &[(String, String)]) -> Node {
    let upstream = FakeUpstream::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut flags = vec!["--allow-private-urls", "--tool-retry-min-ms", "10"];
    flags.extend_from_slice(extra);
    let bin = start_on(&db, &upstream, &flags, env).await;
    let p = bin.server.post_json("/v1/projects", json!({"name": "t"})).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let secret = rotate(&bin.server, &pid).await;
    Node { upstream, dir, db, bin, pid, secret }
}

/// A new tool secret for project `pid`.
async fn rotate(server: &Server, pid: &str) -> String {
    let r = server.client.post(format!("{}/v1/projects/{pid}/tool-secret", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let secret = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    secret
}

/// A tool `name` run at `url`.
fn url_tool(name: &str, url: &str) -> Value {
    json!({"name": name, "input_schema": {"type": "object"}, "run": {"url": url}})
}

async fn thread_with(server: &Server, pid: &str, tools: Value) -> String {
    let r = server.client.post(format!("{}/v1/projects/{pid}/threads", server.base)).json(&json!({"tools": tools}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap())
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let r = server.client.post(format!("{}{path}", server.base)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn kinds(message: &Value) -> Vec<String> {
    message["blocks"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap().to_owned()).collect()
}

/// The `tool_result` block of call `id` in `message`.
fn result_of<'a>(message: &'a Value, id: &str) -> &'a Value {
    message["blocks"].as_array().unwrap().iter().find(|b| b["tool_use_id"] == id).expect("a result block")
}

/// The endpoint's requests once it has `n`.
async fn requests(endpoint: &FakeUpstream, n: usize) -> Vec<Recorded> {
    eventually(|| async {
        let got = endpoint.requests();
        (got.len() >= n).then_some(got)
    })
    .await
}

#[actix_web::test]
async fn a_url_tool_is_called_signed_and_its_output_goes_on_in_the_same_message() {
    let endpoint = FakeUpstream::start(vec![ok(json!({"temp": 21}))]).await;
    let replies = vec![
        calls_answer("Checking.", &[("toolu_1", "weather", r#"{"city": "Oslo"}"#)]),
        text_answer("21 degrees in Oslo."),
    ];
    let n = node(replies, &[], &[]).await;
    let s = &n.bin.server;
    let thread = thread_with(s, &n.pid, json!([url_tool("weather", &format!("{}/weather", endpoint.url))])).await;
    let mut tab = s.sse(&thread, None).await;
    let id = s.ask(&thread, "Weather in Oslo?").await;

    let events = tab.until("message.completed").await;
    let seen: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(!seen.contains(&"message.awaiting"), "nothing waits for a client: {seen:?}");
    let resolved = events.iter().find(|e| e.kind == "tool.resolved").expect("tool.resolved");
    assert_eq!(
        (resolved.data["tool_call_id"].as_str(), resolved.data["needs"].as_str(), resolved.data["is_error"].as_bool()),
        (Some("toolu_1"), Some("result"), Some(false))
    );
    assert_eq!(events.iter().find(|e| e.kind == "message.step").unwrap().data["step"], 2);
    let done = events.last().unwrap();
    assert_eq!((done.data["message_id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("complete")));

    let message = s.message(&thread, &id).await;
    assert_eq!(kinds(&message), ["text", "tool_use", "tool_result", "text"]);
    let result = result_of(&message, "toolu_1");
    assert_eq!((result["text"].as_str(), result["is_error"].as_bool()), (Some(r#"{"temp":21}"#), Some(false)));

    // The call: one signed POST of the call, by its Standard Webhooks id.
    let calls = endpoint.requests();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/weather");
    assert_eq!(call.header("webhook-id"), Some(format!("{id}.toolu_1").as_str()));
    let sent_at: i64 = call.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    let signature = call.header("webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 1, "one secret signs: {signature}");
    assert!(signature.starts_with("v1,"), "{signature}");
    let tid = thread.rsplit('/').next().unwrap();
    assert_eq!(
        call.body,
        json!({"project_id": n.pid, "thread_id": tid, "message_id": id, "tool_call_id": "toolu_1",
            "name": "weather", "input": {"city": "Oslo"}})
    );
    // The model is told the output on the next step.
    let asked = n.upstream.requests();
    assert_eq!(asked.len(), 2);
    let told = asked[1].body["messages"].to_string();
    assert!(told.contains(r#"\"temp\":21"#) && told.contains("tool_result"), "{told}");

    // A client cannot answer a call the service runs, even afterwards.
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": "mine"}]});
    let (code, body) = post(s, &format!("{thread}/tool-results"), result).await;
    assert_eq!(code, 409, "{body}");
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"convo_tool_calls_total{kind="url"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"convo_tool_call_seconds_count{kind="url"} 1"#));
}

#[actix_web::test]
async fn errors_redirects_refusals_and_oversized_bodies_become_error_results() {
    let error = FakeUpstream::start(vec![status(200, r#"{"error": "no such city"}"#)]).await;
    let redirect = FakeUpstream::start(vec![status(307, "")]).await;
    let missing = FakeUpstream::start(vec![status(404, "{}")]).await;
    let big = FakeUpstream::start(vec![ok(json!("x".repeat(5000)))]).await;
    let neither = FakeUpstream::start(vec![status(200, r#"{"result": 1}"#)]).await;
    let calls: Vec<(String, String)> = (1..=5).map(|i| (format!("toolu_{i}"), format!("t{i}"))).collect();
    let call_refs: Vec<(&str, &str, &str)> =
        calls.iter().map(|(id, name)| (id.as_str(), name.as_str(), "{}")).collect();
    let replies = vec![calls_answer("Trying.", &call_refs), text_answer("All failed.")];
    let n = node(replies, &["--tool-max-response-bytes", "1000"], &[]).await;
    let s = &n.bin.server;
    let tools = json!([
        url_tool("t1", &error.url),
        url_tool("t2", &redirect.url),
        url_tool("t3", &missing.url),
        url_tool("t4", &big.url),
        url_tool("t5", &neither.url),
    ]);
    let thread = thread_with(s, &n.pid, tools).await;
    let id = s.ask(&thread, "go").await;
    let message = s.ended(&thread, &id).await;
    assert_eq!(message["status"], "complete", "{message}");
    let expect = [
        ("toolu_1", "no such city"),
        ("toolu_2", "307 Temporary Redirect; redirects are not followed"),
        ("toolu_3", "answered 404"),
        ("toolu_4", "larger than 1000 bytes"),
        ("toolu_5", "neither"),
    ];
    for (call, says) in expect {
        let result = result_of(&message, call);
        assert_eq!(result["is_error"], true, "{call}");
        assert!(result["text"].as_str().unwrap().contains(says), "{call}: {result}");
    }
    // None of them was tried again, and each endpoint was called once.
    for endpoint in [&error, &redirect, &missing, &big, &neither] {
        assert_eq!(endpoint.requests().len(), 1);
    }
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    // (The endpoint's own error is an answer, not a failure.)
    assert!(metrics.contains(r#"convo_tool_call_failures_total{kind="url"} 4"#), "{metrics}");
}

#[actix_web::test]
async fn time_outs_and_5xx_are_tried_again_with_the_same_webhook_id_then_become_an_error() {
    let flaky = FakeUpstream::start(vec![status(503, "{}"), Reply::Silent, ok(json!("third time"))]).await;
    let down = FakeUpstream::start(vec![status(502, "{}")]).await;
    let replies =
        vec![calls_answer("Trying.", &[("toolu_1", "flaky", "{}"), ("toolu_2", "down", "{}")]), text_answer("ok")];
    let n = node(replies, &["--tool-timeout-ms", "400", "--tool-max-attempts", "3"], &[]).await;
    let s = &n.bin.server;
    let thread = thread_with(s, &n.pid, json!([url_tool("flaky", &flaky.url), url_tool("down", &down.url)])).await;
    let id = s.ask(&thread, "go").await;
    let message = s.ended(&thread, &id).await;
    let first = result_of(&message, "toolu_1");
    assert_eq!((first["text"].as_str(), first["is_error"].as_bool()), (Some(r#""third time""#), Some(false)));
    let second = result_of(&message, "toolu_2");
    assert_eq!(second["is_error"], true);
    assert!(second["text"].as_str().unwrap().contains("502"), "{second}");
    for (endpoint, call) in [(&flaky, "toolu_1"), (&down, "toolu_2")] {
        let attempts = endpoint.requests();
        assert_eq!(attempts.len(), 3, "{call}: three attempts");
        let ids: Vec<_> = attempts.iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
        assert!(ids.iter().all(|i| *i == format!("{id}.{call}")), "one id for every attempt: {ids:?}");
    }
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"convo_tool_call_retries_total{kind="url"} 4"#), "{metrics}");
}

#[actix_web::test]
async fn a_call_that_needs_approval_runs_once_approved_and_never_when_denied() {
    let endpoint = FakeUpstream::start(vec![ok(json!("paid"))]).await;
    let replies = vec![
        calls_answer("Paying.", &[("toolu_1", "pay", r#"{"eur": 5}"#), ("toolu_2", "pay", r#"{"eur": 500}"#)]),
        text_answer("Paid 5."),
    ];
    let n = node(replies, &[], &[]).await;
    let s = &n.bin.server;
    let mut pay = url_tool("pay", &endpoint.url);
    pay["approval"] = json!("always");
    let thread = thread_with(s, &n.pid, json!([pay])).await;
    let mut tab = s.sse(&thread, None).await;
    let id = s.ask(&thread, "pay").await;
    let awaiting = tab.until("message.awaiting").await.pop().unwrap();
    let needs: Vec<_> = awaiting.data["pending"].as_array().unwrap().iter().map(|p| p["needs"].clone()).collect();
    assert_eq!(needs, [json!("approval"), json!("approval")]);
    assert!(endpoint.requests().is_empty(), "nothing runs before its approval");

    let (code, body) =
        post(s, &format!("{thread}/approvals"), json!({"tool_call_id": "toolu_2", "approved": false})).await;
    assert_eq!(code, 200, "{body}");
    let yes = json!({"tool_call_id": "toolu_1", "approved": true});
    let (code, body) = post(s, &format!("{thread}/approvals"), yes.clone()).await;
    assert_eq!((code, body["resolved"].clone()), (200, json!(["toolu_1"])));
    let rest = tab.until("message.completed").await;
    assert_eq!(rest.last().unwrap().data["status"], "complete");
    let calls = requests(&endpoint, 1).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["input"], json!({"eur": 5}), "only the approved call ran");
    let (code, body) = post(s, &format!("{thread}/approvals"), yes).await;
    assert_eq!((code, body["unchanged"].clone()), (200, json!(["toolu_1"])));
    let message = s.message(&thread, &id).await;
    assert_eq!(result_of(&message, "toolu_1")["text"], r#""paid""#);
    assert!(result_of(&message, "toolu_2")["text"].as_str().unwrap().contains("denied"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.requests().len(), 1, "a decision again runs nothing");
}

#[actix_web::test]
async fn a_cancel_stops_a_running_call_and_operators_see_it_running_before() {
    let endpoint = FakeUpstream::start(vec![Reply::Silent]).await;
    let replies = vec![calls_answer("Working.", &[("toolu_1", "slow", "{}")])];
    let n = node(replies, &[], &[]).await;
    let s = &n.bin.server;
    let thread = thread_with(s, &n.pid, json!([url_tool("slow", &endpoint.url)])).await;
    let id = s.ask(&thread, "go").await;
    requests(&endpoint, 1).await;
    let tid = thread.rsplit('/').next().unwrap().to_owned();
    let detail = s.get_json(&format!("/admin/threads/{tid}")).await;
    assert_eq!(detail["running_calls"][0]["tool_call_id"], "toolu_1", "{detail}");
    assert_eq!(s.get_json(&thread).await["status"], "awaiting_input");
    let (code, body) = post(s, &format!("{thread}/cancel"), json!({})).await;
    assert_eq!((code, body["message_id"].as_str()), (202, Some(id.as_str())), "{body}");
    let message = s.ended(&thread, &id).await;
    assert_eq!(message["status"], "cancelled");
    assert_eq!(result_of(&message, "toolu_1")["text"], r#""cancelled""#);
    assert!(endpoint.wait_hangup(Duration::from_secs(10)).await, "the call's request was dropped");
    let detail = s.get_json(&format!("/admin/threads/{tid}")).await;
    assert_eq!(detail["running_calls"], json!([]));
}

#[actix_web::test]
async fn a_call_cut_by_kill_9_runs_again_after_the_restart_with_the_same_webhook_id() {
    let endpoint = FakeUpstream::start(vec![Reply::Silent, ok(json!("done"))]).await;
    let replies = vec![calls_answer("Working.", &[("toolu_1", "job", "{}")]), text_answer("It is done.")];
    let mut n = node(replies, &[], &[]).await;
    let thread = thread_with(&n.bin.server, &n.pid, json!([url_tool("job", &endpoint.url)])).await;
    let id = n.bin.server.ask(&thread, "go").await;
    requests(&endpoint, 1).await;
    signal(&n.bin.child, "-KILL");
    let _ = n.bin.child.wait();

    n.bin = start_on(&n.db, &n.upstream, &["--allow-private-urls"], &[]).await;
    let message = n.bin.server.ended(&thread, &id).await;
    assert_eq!(message["status"], "complete");
    assert_eq!(kinds(&message), ["text", "tool_use", "tool_result", "text"]);
    assert_eq!(result_of(&message, "toolu_1")["text"], r#""done""#);
    let calls = endpoint.requests();
    assert_eq!(calls.len(), 2, "called again after the restart");
    assert_eq!(calls[0].header("webhook-id"), calls[1].header("webhook-id"), "the same id: the receiver drops repeats");
    let _ = &n.dir;
}

#[actix_web::test]
async fn the_guard_refuses_inside_addresses_at_call_time_too() {
    // Defined while private URLs were allowed, called after a restart
    // without: the call is refused, said to the model, and nothing is sent.
    let endpoint = FakeUpstream::start(vec![ok(json!("should not"))]).await;
    let replies = vec![calls_answer("Calling.", &[("toolu_1", "inside", "{}")]), text_answer("Refused.")];
    let mut n = node(replies, &[], &[]).await;
    let thread = thread_with(&n.bin.server, &n.pid, json!([url_tool("inside", &endpoint.url)])).await;
    signal(&n.bin.child, "-TERM");
    let _ = n.bin.child.wait();
    n.bin = start_on(&n.db, &n.upstream, &[], &[]).await;
    let id = n.bin.server.ask(&thread, "go").await;
    let message = n.bin.server.ended(&thread, &id).await;
    let result = result_of(&message, "toolu_1");
    assert_eq!(result["is_error"], true);
    let text = result["text"].as_str().unwrap();
    assert!(text.contains("not called") && text.contains("loopback"), "{text}");
    assert!(endpoint.requests().is_empty());
}

#[actix_web::test]
async fn no_proxy_is_taken_from_the_environment() {
    // The endpoint on another loopback address than the model's upstream,
    // which the environment exempts (the provider's client may use a proxy;
    // the tool calls must not).
    let endpoint = FakeUpstream::start_at("127.0.0.2", vec![ok(json!("direct"))]).await;
    let proxy = FakeUpstream::start(vec![status(502, "{}")]).await;
    let mut env: Vec<(String, String)> =
        ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .map(|k| (k.to_string(), proxy.url.clone()))
            .collect();
    env.extend([("NO_PROXY".to_string(), "127.0.0.1".to_string()), ("no_proxy".to_string(), "127.0.0.1".to_string())]);
    let replies = vec![calls_answer("Calling.", &[("toolu_1", "t", "{}")]), text_answer("ok")];
    let n = node(replies, &[], &env).await;
    let s = &n.bin.server;
    let thread = thread_with(s, &n.pid, json!([url_tool("t", &endpoint.url)])).await;
    let id = s.ask(&thread, "go").await;
    let message = s.ended(&thread, &id).await;
    assert_eq!(result_of(&message, "toolu_1")["text"], r#""direct""#);
    assert_eq!(endpoint.requests().len(), 1);
    assert!(proxy.requests().is_empty(), "the proxy of the environment was not used");
}

#[actix_web::test]
async fn a_rotated_secret_signs_beside_the_new_one() {
    let endpoint = FakeUpstream::start(vec![ok(json!(1))]).await;
    let replies = vec![calls_answer("Calling.", &[("toolu_1", "t", "{}")]), text_answer("ok")];
    let n = node(replies, &[], &[]).await;
    let s = &n.bin.server;
    let newer = rotate(s, &n.pid).await;
    assert_ne!(newer, n.secret);
    let thread = thread_with(s, &n.pid, json!([url_tool("t", &endpoint.url)])).await;
    let id = s.ask(&thread, "go").await;
    s.ended(&thread, &id).await;
    let call = &endpoint.requests()[0];
    let signatures: Vec<&str> = call.header("webhook-signature").unwrap().split(' ').collect();
    assert_eq!(signatures.len(), 2, "the new and the previous secret both sign: {signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")) && signatures[0] != signatures[1]);
}

#[actix_web::test]
async fn definitions_that_point_inside_or_lack_a_secret_are_refused() {
    // The guard as it is by default: no inside address, https only.
    let upstream = FakeUpstream::start(vec![text_answer("hi")]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let bin = start_on(&db, &upstream, &[], &[]).await;
    let s = &bin.server;
    let pid = s.post_json("/v1/projects", json!({"name": "t"})).await["id"].as_str().unwrap().to_owned();
    let threads = format!("{}/v1/projects/{pid}/threads", s.base);
    let public = "https://tools.example.invalid/run";
    let r = s.client.post(&threads).json(&json!({"tools": [url_tool("t", public)]})).send().await.unwrap();
    let (code, body) = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("tool_secret_missing")), "{body}");
    rotate(s, &pid).await;
    let r = s.client.post(&threads).json(&json!({"tools": [url_tool("t", public)]})).send().await.unwrap();
    assert_eq!(r.status(), 201, "a public https URL with a secret is accepted");
    let thread = format!("/v1/projects/{pid}/threads/{}", r.json::<Value>().await.unwrap()["id"].as_str().unwrap());

    let refused = [
        ("http://tools.example.invalid/run", "https"),
        ("https://127.0.0.1/run", "loopback"),
        ("https://[::1]/run", "loopback"),
        ("https://localhost:9/run", "loopback"),
        ("https://10.1.2.3/run", "private"),
        ("https://192.168.0.10/run", "private"),
        ("https://[fd00:ec2::254]/", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://100.100.100.200/", "shared"),
        ("https://224.0.0.1/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://240.0.0.1/", "reserved"),
        ("https://255.255.255.255/", "reserved"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://user:pw@tools.example.invalid/", "user name"),
        ("not a url", "URL"),
    ];
    for (url, says) in refused {
        let body = json!({"tools": [url_tool("t", url)]});
        for (method, path) in [("POST", threads.clone()), ("PATCH", format!("{}{thread}", s.base))] {
            let req = match method {
                "POST" => s.client.post(&path),
                _ => s.client.patch(&path),
            };
            let r = req.json(&body).send().await.unwrap();
            let (code, err) = (r.status().as_u16(), r.json::<Value>().await.unwrap());
            assert_eq!((code, err["error"]["code"].as_str()), (400, Some("bad_request")), "{method} {url}: {err}");
            assert!(err["error"]["message"].as_str().unwrap().contains(says), "{method} {url}: {err}");
        }
        // A question's own tools too.
        let (code, _) =
            post(s, &format!("{thread}/messages"), json!({"content": "x", "tools": [url_tool("q", url)]})).await;
        assert_eq!(code, 400, "{url}");
    }
    let mcp = json!({"tools": [{"name": "m", "input_schema": {"type": "object"}, "run": {"mcp": "none"}}]});
    let r = s.client.post(&threads).json(&mcp).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

// ------------------------------------------------------------ cluster mode

async fn cluster(n: usize, upstream: &FakeUpstream) -> Option<Cluster> {
    let flags = ["--provider", "anthropic", "--anthropic-base-url", &upstream.url, "--upstream-retry-min-ms", "10"];
    Cluster::start_env(n, None, &flags, &[KEY, ("ALLOW_PRIVATE_URLS", "true"), ("TOOL_RETRY_MIN_MS", "10")]).await
}

async fn cluster_thread(server: &Server, tools: Value) -> String {
    let pid = server.post_json("/v1/projects", json!({"name": "t"})).await["id"].as_str().unwrap().to_owned();
    rotate(server, &pid).await;
    thread_with(server, &pid, tools).await
}

#[actix_web::test]
async fn the_node_that_takes_over_from_a_dead_owner_runs_the_call_again_and_every_tab_sees_the_answer_go_on() {
    let endpoint = FakeUpstream::start(vec![Reply::Silent, ok(json!("done"))]).await;
    let replies = vec![calls_answer("Working.", &[("toolu_1", "job", "{}")]), text_answer("It is done.")];
    let upstream = FakeUpstream::start(replies).await;
    let Some(mut cluster) = cluster(2, &upstream).await else { return };
    let thread = cluster_thread(cluster.node(0), json!([url_tool("job", &endpoint.url)])).await;
    let mut tab = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "go").await;
    requests(&endpoint, 1).await;
    // The owner holds the thread while its call runs.
    let tid = thread.rsplit('/').next().unwrap().to_owned();
    let detail = cluster.node(0).get_json(&format!("/admin/threads/{tid}")).await;
    assert_eq!(detail["owner_node"], "node-0", "{detail}");
    assert_eq!(detail["running_calls"][0]["tool_call_id"], "toolu_1");
    signal(&cluster.nodes[0].child, "-KILL");
    let _ = cluster.nodes[0].child.wait();

    let rest = tab.until("message.completed").await;
    let done = rest.last().unwrap();
    assert_eq!((done.data["message_id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("complete")));
    assert!(rest.iter().any(|e| e.kind == "tool.resolved" && e.data["tool_call_id"] == "toolu_1"));
    let calls = endpoint.requests();
    assert_eq!(calls.len(), 2, "called again by the node that took over");
    assert_eq!(calls[0].header("webhook-id"), calls[1].header("webhook-id"));
    let message = cluster.node(1).message(&thread, &id).await;
    assert_eq!(kinds(&message), ["text", "tool_use", "tool_result", "text"]);
    assert_eq!(result_of(&message, "toolu_1")["text"], r#""done""#);
}

#[actix_web::test]
async fn two_nodes_approving_at_once_run_the_call_once() {
    let endpoint = FakeUpstream::start(vec![ok(json!("paid"))]).await;
    let replies = vec![calls_answer("Paying.", &[("toolu_1", "pay", "{}")]), text_answer("Paid.")];
    let upstream = FakeUpstream::start(replies).await;
    let Some(cluster) = cluster(2, &upstream).await else { return };
    let mut pay = url_tool("pay", &endpoint.url);
    pay["approval"] = json!("always");
    let thread = cluster_thread(cluster.node(0), json!([pay])).await;
    let mut tab = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "pay").await;
    tab.until("message.awaiting").await;
    let yes = json!({"tool_call_id": "toolu_1", "approved": true});
    let path = format!("{thread}/approvals");
    let (a, b) = tokio::join!(post(cluster.node(0), &path, yes.clone()), post(cluster.node(1), &path, yes.clone()));
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let mut winners: Vec<Value> = [&a.1, &b.1].iter().flat_map(|r| r["resolved"].as_array().unwrap().clone()).collect();
    winners.sort_by_key(|v| v.to_string());
    assert_eq!(winners, [json!("toolu_1")], "one decision resolved it: {a:?} {b:?}");
    let done = tab.until("message.completed").await.pop().unwrap();
    assert_eq!((done.data["message_id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("complete")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.requests().len(), 1, "the call ran once");
    assert_eq!(upstream.requests().len(), 2, "one next step");
}

#[actix_web::test]
async fn an_owner_paused_during_a_call_loses_it_to_another_node_and_changes_nothing_when_it_wakes() {
    let endpoint = FakeUpstream::start(vec![Reply::Silent, ok(json!("done"))]).await;
    let replies = vec![calls_answer("Working.", &[("toolu_1", "job", "{}")]), text_answer("It is done.")];
    let upstream = FakeUpstream::start(replies).await;
    let Some(cluster) = cluster(2, &upstream).await else { return };
    let thread = cluster_thread(cluster.node(0), json!([url_tool("job", &endpoint.url)])).await;
    let mut tab = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "go").await;
    requests(&endpoint, 1).await;
    signal(&cluster.nodes[0].child, "-STOP");
    let done = tab.until("message.completed").await.pop().unwrap();
    assert_eq!((done.data["message_id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("complete")));
    assert_eq!(endpoint.requests().len(), 2, "called again by the node that took over");
    // The paused owner wakes: it lets its call go and writes nothing.
    signal(&cluster.nodes[0].child, "-CONT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..2 {
        let message = cluster.node(i).message(&thread, &id).await;
        assert_eq!(message["status"], "complete", "node {i}");
        assert_eq!(kinds(&message), ["text", "tool_use", "tool_result", "text"], "node {i}");
        assert_eq!(result_of(&message, "toolu_1")["text"], r#""done""#, "node {i}");
    }
    assert_eq!(endpoint.requests().len(), 2);
    assert_eq!(upstream.requests().len(), 2, "one next step");
    let (code, _) = post(cluster.node(0), &format!("{thread}/messages"), json!({"content": "thanks"})).await;
    assert_eq!(code, 202, "the woken node serves the thread again");
}
