//! MCP servers, with real processes, a fake Anthropic upstream and real
//! MCP servers built with the official Rust SDK: a project's servers are
//! added (their headers never shown again), listed and removed; a
//! thread's `mcp_servers` offer every tool of theirs as `<server>_<tool>`
//! and a `run: {mcp}` tool one of them; the service calls the tool with
//! the stored headers and its structured content, text or `isError` is the
//! call's result, the answer going on in the same message; a slow server,
//! an erroring tool, a server that disappears mid-call and an answer over
//! the cap end in error results; names that clash, unknown servers or
//! tools, and inside addresses are refused at definition.

use serde_json::{json, Value};

use crate::{
    binary::Binary,
    fake_upstream::FakeUpstream,
    mcp_server::McpServer,
    support::{database_url, Server},
    tools::{calls_answer, text_answer},
};

const KEY: (&str, &str) = ("ANTHROPIC_API_KEY", "sk-test-key");

struct Node {
    upstream: FakeUpstream,
    _dir: tempfile::TempDir,
    bin: Binary,
    pid: String,
}

async fn node(replies: Vec<crate::fake_upstream::Reply>, extra: &[&str]) -> Node {
    let upstream = FakeUpstream::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut flags =
        vec!["--provider", "anthropic", "--anthropic-base-url", &upstream.url, "--upstream-retry-min-ms", "10"];
    flags.extend_from_slice(extra);
    let bin = Binary::start_env(&db, &flags, &[(KEY.0.into(), KEY.1.into())]).await;
    let pid = bin.server.post_json("/v1/projects", json!({"name": "t"})).await["id"].as_str().unwrap().to_owned();
    Node { upstream, _dir: dir, bin, pid }
}

async fn send(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", server.base);
    let req = match method {
        "POST" => server.client.post(url),
        "PATCH" => server.client.patch(url),
        "DELETE" => server.client.delete(url),
        _ => server.client.get(url),
    };
    let req = match body {
        Some(body) => req.json(&body),
        None => req,
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Adds `server` as `name` to the project, with an Authorization header.
async fn add(n: &Node, name: &str, server: &McpServer) {
    let body = json!({"name": name, "url": server.url, "headers": {"Authorization": "Bearer s3cret"}});
    let (code, added) = send(&n.bin.server, "POST", &format!("/v1/projects/{}/mcp-servers", n.pid), Some(body)).await;
    assert_eq!(code, 201, "{added}");
}

async fn thread(n: &Node, body: Value) -> String {
    let (code, t) = send(&n.bin.server, "POST", &format!("/v1/projects/{}/threads", n.pid), Some(body)).await;
    assert_eq!(code, 201, "{t}");
    format!("/v1/projects/{}/threads/{}", n.pid, t["id"].as_str().unwrap())
}

fn result_of<'a>(message: &'a Value, id: &str) -> &'a Value {
    message["blocks"].as_array().unwrap().iter().find(|b| b["tool_use_id"] == id).expect("a result block")
}

fn kinds(message: &Value) -> Vec<String> {
    message["blocks"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap().to_owned()).collect()
}

#[actix_web::test]
async fn servers_are_added_listed_without_their_headers_and_removed() {
    let mcp = McpServer::start().await;
    let n = node(vec![text_answer("hi")], &["--allow-private-urls"]).await;
    let s = &n.bin.server;
    let servers = format!("/v1/projects/{}/mcp-servers", n.pid);
    let body = json!({"name": "calc", "url": mcp.url, "headers": {"Authorization": "Bearer s3cret"}});
    let (code, added) = send(s, "POST", &servers, Some(body.clone())).await;
    assert_eq!(code, 201, "{added}");
    assert_eq!((added["name"].as_str(), added["header_names"].clone()), (Some("calc"), json!(["Authorization"])));
    assert!(!added.to_string().contains("s3cret"), "headers are never shown: {added}");
    let (code, again) = send(s, "POST", &servers, Some(body)).await;
    assert_eq!((code, again["error"]["code"].as_str()), (409, Some("mcp_server_exists")));
    let (code, listed) = send(s, "GET", &servers, None).await;
    assert_eq!(code, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains("s3cret"));
    for bad in [
        json!({"name": "no spaces", "url": mcp.url}),
        json!({"name": "x".repeat(33), "url": mcp.url}),
        json!({"name": "h", "url": mcp.url, "headers": {"Bad Header": "x"}}),
        json!({"name": "h", "url": mcp.url, "headers": {"Mcp-Session-Id": "x"}}),
        json!({"name": "u", "url": "ftp://example.invalid/"}),
    ] {
        let (code, err) = send(s, "POST", &servers, Some(bad.clone())).await;
        assert_eq!((code, err["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}: {err}");
    }
    let (code, _) = send(s, "DELETE", &format!("{servers}/calc"), None).await;
    assert_eq!(code, 204);
    let (code, _) = send(s, "DELETE", &format!("{servers}/calc"), None).await;
    assert_eq!(code, 404);
    let (code, _) = send(s, "GET", "/v1/projects/01a25000-0000-7000-8000-000000000000/mcp-servers", None).await;
    assert_eq!(code, 404);
}

#[actix_web::test]
async fn a_threads_servers_offer_their_tools_and_calls_go_on_in_the_same_message() {
    let mcp = McpServer::start().await;
    let replies = vec![
        calls_answer(
            "Let me compute.",
            &[("toolu_1", "calc_add", r#"{"a": 2, "b": 3}"#), ("toolu_2", "say", r#"{"text": "hello"}"#)],
        ),
        text_answer("2 + 3 = 5."),
    ];
    let n = node(replies, &["--allow-private-urls"]).await;
    add(&n, "calc", &mcp).await;
    let say = json!({"name": "say", "input_schema": {"type": "object"}, "run": {"mcp": "calc", "tool": "echo"}});
    let t = thread(&n, json!({"mcp_servers": ["calc"], "tools": [say]})).await;
    let s = &n.bin.server;
    let id = s.ask(&t, "2 + 3?").await;
    let message = s.ended(&t, &id).await;
    assert_eq!(message["status"], "complete", "{message}");
    assert_eq!(kinds(&message), ["text", "tool_use", "tool_use", "tool_result", "tool_result", "text"]);
    let sum = result_of(&message, "toolu_1");
    assert_eq!((sum["text"].as_str(), sum["is_error"].as_bool()), (Some(r#"{"sum":5}"#), Some(false)));
    assert_eq!(result_of(&message, "toolu_2")["text"], r#""hello""#);
    let mut ran = mcp.calls();
    ran.sort();
    assert_eq!(ran, ["add", "echo"]);
    // The stored headers went with every request, and nothing else did.
    let auths = mcp.authorizations.lock().unwrap().clone();
    assert!(!auths.is_empty() && auths.iter().all(|a| a.as_deref() == Some("Bearer s3cret")), "{auths:?}");
    // The model was offered every tool of the server, as `calc_<tool>`.
    let asked = n.upstream.requests();
    let offered: Vec<&str> =
        asked[0].body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for name in ["say", "calc_add", "calc_echo", "calc_fail", "calc_slow"] {
        assert!(offered.contains(&name), "{name} in {offered:?}");
    }
    let add_tool = asked[0].body["tools"].as_array().unwrap().iter().find(|t| t["name"] == "calc_add").unwrap().clone();
    assert_eq!(add_tool["description"], "Adds two integers.");
    assert_eq!(add_tool["input_schema"]["required"], json!(["a", "b"]));
    let told = asked[1].body["messages"].to_string();
    assert!(told.contains(r#"\"sum\":5"#), "{told}");
}

#[actix_web::test]
async fn an_error_a_slow_server_and_one_that_disappears_become_error_results() {
    let mcp = McpServer::start().await;
    let doomed = McpServer::start().await;
    let long = format!(r#"{{"text": "{}"}}"#, "x".repeat(500));
    let replies = vec![
        calls_answer(
            "Trying.",
            &[
                ("toolu_1", "calc_fail", "{}"),
                ("toolu_2", "calc_slow", "{}"),
                ("toolu_3", "gone_slow", "{}"),
                ("toolu_4", "calc_echo", &long),
            ],
        ),
        text_answer("Nothing worked."),
    ];
    let flags = ["--allow-private-urls", "--tool-timeout-ms", "1500", "--tool-max-attempts", "2"];
    let n = node(replies, &[&flags[..], &["--tool-max-response-bytes", "200"]].concat()).await;
    add(&n, "calc", &mcp).await;
    add(&n, "gone", &doomed).await;
    let t = thread(&n, json!({"mcp_servers": ["calc", "gone"]})).await;
    let s = &n.bin.server;
    let id = s.ask(&t, "go").await;
    // The doomed server disappears while its call runs.
    crate::support::eventually(|| async { (!doomed.calls().is_empty()).then_some(()) }).await;
    doomed.stop().await;
    let message = s.ended(&t, &id).await;
    assert_eq!(message["status"], "complete", "{message}");
    let failed = result_of(&message, "toolu_1");
    assert_eq!((failed["text"].as_str(), failed["is_error"].as_bool()), (Some(r#""it broke""#), Some(true)));
    let slow = result_of(&message, "toolu_2");
    assert_eq!(slow["is_error"], true);
    assert!(slow["text"].as_str().unwrap().contains("in time"), "{slow}");
    let gone = result_of(&message, "toolu_3");
    assert_eq!(gone["is_error"], true, "{gone}");
    let long = result_of(&message, "toolu_4");
    assert_eq!(long["is_error"], true);
    assert!(long["text"].as_str().unwrap().contains("larger than 200 bytes"), "{long}");
    assert_eq!(mcp.calls().iter().filter(|c| *c == "slow").count(), 2, "a time-out is tried again");
    assert_eq!(mcp.calls().iter().filter(|c| *c == "echo").count(), 1, "an answer over the cap is not");
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"convo_tool_calls_total{kind="mcp"} 4"#), "{metrics}");
    // (The tool's own error is an answer; the other three are failures.)
    assert!(metrics.contains(r#"convo_tool_call_failures_total{kind="mcp"} 3"#), "{metrics}");
}

#[actix_web::test]
async fn clashes_unknown_servers_and_tools_and_inside_addresses_are_refused_at_definition() {
    let mcp = McpServer::start().await;
    let n = node(vec![text_answer("hi")], &["--allow-private-urls"]).await;
    add(&n, "calc", &mcp).await;
    let threads = format!("/v1/projects/{}/threads", n.pid);
    let s = &n.bin.server;
    let object = json!({"type": "object"});
    for (body, says) in [
        (json!({"mcp_servers": ["nope"]}), "no MCP server named"),
        (json!({"mcp_servers": ["calc", "calc"]}), "twice"),
        (json!({"mcp_servers": ["calc"], "tools": [{"name": "calc_add", "input_schema": object}]}), "used twice"),
        (json!({"tools": [{"name": "x", "input_schema": object, "run": {"mcp": "calc", "tool": "nope"}}]}), "no tool"),
        (json!({"tools": [{"name": "x", "input_schema": object, "run": {"mcp": "other"}}]}), "no MCP server"),
    ] {
        let (code, err) = send(s, "POST", &threads, Some(body.clone())).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(says), "{body}: {err}");
    }
    // PATCH is checked the same way.
    let t = thread(&n, json!({})).await;
    let (code, err) = send(s, "PATCH", &t, Some(json!({"mcp_servers": ["nope"]}))).await;
    assert_eq!(code, 400, "{err}");
    let (code, ok) = send(s, "PATCH", &t, Some(json!({"mcp_servers": ["calc"]}))).await;
    assert_eq!((code, ok["mcp_servers"].clone()), (200, json!(["calc"])));
    // A server that is down cannot be listed: refused, saying so.
    let down = McpServer::start().await;
    add(&n, "down", &down).await;
    down.stop().await;
    let (code, err) = send(s, "POST", &threads, Some(json!({"mcp_servers": ["down"]}))).await;
    assert_eq!(code, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("could not list"), "{err}");

    // Without --allow-private-urls an inside address is refused.
    let strict = node(vec![text_answer("hi")], &[]).await;
    let body = json!({"name": "calc", "url": mcp.url});
    let (code, err) =
        send(&strict.bin.server, "POST", &format!("/v1/projects/{}/mcp-servers", strict.pid), Some(body)).await;
    assert_eq!(code, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("loopback"), "{err}");
}

#[actix_web::test]
async fn an_mcp_tool_that_needs_approval_runs_only_once_approved() {
    let mcp = McpServer::start().await;
    let replies = vec![calls_answer("Adding.", &[("toolu_1", "sum", r#"{"a": 1, "b": 1}"#)]), text_answer("Two.")];
    let n = node(replies, &["--allow-private-urls"]).await;
    add(&n, "calc", &mcp).await;
    let sum = json!({"name": "sum", "input_schema": {"type": "object"}, "approval": "always",
        "run": {"mcp": "calc", "tool": "add"}});
    let t = thread(&n, json!({"tools": [sum]})).await;
    let s = &n.bin.server;
    let mut tab = s.sse(&t, None).await;
    let id = s.ask(&t, "1 + 1?").await;
    use crate::support::Events as _;
    let awaiting = tab.until("message.awaiting").await.pop().unwrap();
    assert_eq!(awaiting.data["pending"][0]["needs"], "approval");
    assert!(mcp.calls().is_empty(), "nothing runs before its approval");
    let yes = json!({"tool_call_id": "toolu_1", "approved": true});
    let (code, body) = send(s, "POST", &format!("{t}/approvals"), Some(yes)).await;
    assert_eq!(code, 200, "{body}");
    let message = s.ended(&t, &id).await;
    assert_eq!(message["status"], "complete");
    assert_eq!(result_of(&message, "toolu_1")["text"], r#"{"sum":2}"#);
    assert_eq!(mcp.calls(), ["add"], "it ran once");
}

/// A thread naming an MCP server by a name no server can have (a NUL,
/// which Postgres refuses in a query; a space) is 400, not a lookup
/// (schemathesis found the 500).
#[actix_web::test]
async fn a_thread_naming_an_impossible_server_is_400() {
    let server = Server::temp(&[]).await;
    let p = server.post_json("/v1/projects", json!({"name": "m"})).await;
    let path = format!("/v1/projects/{}/threads", p["id"].as_str().unwrap());
    for name in ["a\u{0}b", "a b", ""] {
        let (status, body) = send(&server, "POST", &path, Some(json!({"mcp_servers": [name]}))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{name:?}: {body}");
    }
}
