//! Answers in several steps through faults, with real processes and a
//! fake Anthropic upstream: an answer awaiting input survives SIGTERM and
//! `kill -9` (a result posted after the restart continues it in the same
//! message); a step cut by a crash ends the answer `interrupted` with its
//! finished steps kept and every call answered, and the thread is asked
//! again. In cluster mode (needs `TEST_DATABASE_URL` and `TEST_REDIS_URL`)
//! a result posted on any node continues the answer there, two nodes
//! deciding one approval have one winner and one next step, the death of
//! the node that made the step loses nothing, a cancel from another node
//! ends what awaits, and an answer whose calls were all answered when its
//! node died goes on by the sweeper. In secured mode a tab answers with
//! its thread's stream token, and no other.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    binary::{signal, Binary},
    cluster::Cluster,
    fake_upstream::{anthropic as a, End, FakeUpstream, Piece, Reply},
    support::{database_url, eventually, Events as _, Server},
    tools::{calls_answer, text_answer},
};

const KEY: (&str, &str) = ("ANTHROPIC_API_KEY", "sk-test-key");

fn upstream_flags(upstream: &FakeUpstream) -> Vec<String> {
    ["--provider", "anthropic", "--anthropic-base-url", &upstream.url, "--upstream-retry-min-ms", "10"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn env() -> Vec<(String, String)> {
    vec![(KEY.0.to_owned(), KEY.1.to_owned())]
}

/// (Continuations off: these tests guard what a cut step does when its
/// answer may not go on; `continuation.rs` has what it does when it may.)
async fn start(db: &str, upstream: &FakeUpstream) -> Binary {
    let mut flags = upstream_flags(upstream);
    flags.extend(["--continue-max-attempts".to_owned(), "0".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Binary::start_env(db, &flags, &env()).await
}

/// A project and a thread with `tools` on `server`: the thread's URL path.
async fn thread_with(server: &Server, tools: Value) -> String {
    let p = server.post_json("/v1/projects", json!({"name": "t"})).await;
    let pid = p["id"].as_str().unwrap();
    let t = server.post_json(&format!("/v1/projects/{pid}/threads"), json!({"tools": tools})).await;
    format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap())
}

async fn post(server: &Server, path: String, body: Value) -> (u16, Value) {
    let r = server.client.post(format!("{}{path}", server.base)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn look() -> Value {
    json!([{"name": "look", "input_schema": {"type": "object"}}])
}

fn kinds(message: &Value) -> Vec<String> {
    message["blocks"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap().to_owned()).collect()
}

/// One node on a fresh database whose thread (tool `look`) has an answer
/// awaiting `toolu_1`, asked with `question`, watched by `sse`.
struct Awaiting {
    upstream: FakeUpstream,
    _dir: tempfile::TempDir,
    db: String,
    bin: Binary,
    thread: String,
    sse: crate::support::Sse,
    id: String,
}

async fn awaiting(replies: Vec<Reply>, question: &str) -> Awaiting {
    let upstream = FakeUpstream::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let bin = start(&db, &upstream).await;
    let thread = thread_with(&bin.server, look()).await;
    let mut sse = bin.server.sse(&thread, None).await;
    let id = bin.server.ask(&thread, question).await;
    sse.until("message.awaiting").await;
    Awaiting { upstream, _dir: dir, db, bin, thread, sse, id }
}

/// An answer awaiting input, then the process stops (`-TERM` or `-KILL`):
/// after the restart the answer still awaits, and a result continues it.
async fn awaiting_survives(stop: &str) {
    let replies = vec![calls_answer("Let me look.", &[("toolu_1", "look", "{}")]), text_answer("Found it.")];
    let Awaiting { upstream, _dir, db, mut bin, thread, id, .. } = awaiting(replies, "look").await;
    signal(&bin.child, stop);
    let _ = bin.child.wait();

    let bin = start(&db, &upstream).await;
    let stored = bin.server.messages(&thread).await.pop().unwrap();
    assert_eq!((stored["id"].as_str(), stored["status"].as_str()), (Some(id.as_str()), Some("awaiting_input")));
    assert_eq!(stored["pending"][0]["tool_call_id"], "toolu_1");
    let t = bin.server.get_json(&thread).await;
    assert_eq!(t["status"], "awaiting_input");
    let (status, _) = post(&bin.server, format!("{thread}/messages"), json!({"content": "meanwhile"})).await;
    assert_eq!(status, 409, "the thread is still busy");

    let mut sse = bin.server.sse(&thread, None).await;
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": {"seen": true}}]});
    let (status, body) = post(&bin.server, format!("{thread}/tool-results"), result).await;
    assert_eq!(status, 200, "{body}");
    let done = sse.until("message.completed").await.pop().unwrap();
    assert_eq!((done.data["message_id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("complete")));
    let stored = bin.server.messages(&thread).await;
    assert_eq!(stored.len(), 2, "one answer, continued");
    assert_eq!(kinds(&stored[1]), ["text", "tool_use", "tool_result", "text"]);
    assert_eq!(stored[1]["content"], "Let me look.Found it.");
    let next = bin.server.ask(&thread, "thanks").await;
    assert_eq!(bin.server.finished(&thread, &next).await["status"], "complete");
}

#[actix_web::test]
async fn an_awaiting_answer_survives_sigterm() {
    awaiting_survives("-TERM").await;
}

#[actix_web::test]
async fn an_awaiting_answer_survives_kill_9() {
    awaiting_survives("-KILL").await;
}

/// A second step that streams until the process is killed.
fn endless_step() -> Reply {
    let pieces = vec![
        Piece::Bytes(a::message_start(20)),
        Piece::Bytes(a::text_start(0)),
        Piece::Forever(a::text_delta(0, "more "), Duration::from_millis(5)),
    ];
    Reply::Stream { pieces, end: End::Clean }
}

#[actix_web::test]
async fn a_step_cut_by_kill_9_ends_interrupted_with_the_steps_before_it_kept() {
    let replies =
        vec![calls_answer("Step one.", &[("toolu_1", "look", "{}")]), endless_step(), text_answer("Asked again.")];
    let Awaiting { upstream, _dir, db, mut bin, thread, mut sse, id } = awaiting(replies, "go").await;
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": 1}]});
    assert_eq!(post(&bin.server, format!("{thread}/tool-results"), result).await.0, 200);
    sse.until("message.step").await;
    sse.until("message.delta").await;
    // A checkpoint of step two is committed, then the kill.
    eventually(|| async {
        let m = bin.server.messages(&thread).await.pop().unwrap();
        (kinds(&m).len() == 4 && m["blocks"][3]["text"].as_str().is_some_and(|t| !t.is_empty())).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&bin.child, "-KILL");
    let _ = bin.child.wait();

    let bin = start(&db, &upstream).await;
    let stored = bin.server.messages(&thread).await.pop().unwrap();
    assert_eq!((stored["id"].as_str(), stored["status"].as_str()), (Some(id.as_str()), Some("interrupted")));
    assert_eq!(kinds(&stored)[..3], ["text", "tool_use", "tool_result"], "step one is kept whole");
    assert!(stored["content"].as_str().unwrap().starts_with("Step one.more "), "{}", stored["content"]);
    // The thread is asked again; the model is told the whole history.
    let next = bin.server.ask(&thread, "again?").await;
    assert_eq!(bin.server.finished(&thread, &next).await["status"], "complete");
    let last = upstream.requests().pop().unwrap();
    let turns = last.body["messages"].as_array().unwrap();
    assert_eq!(turns.last().unwrap()["content"][0]["text"], "again?");
}

/// A result answered 200 is stored, even when the process is killed the
/// moment after (on one node the next step starts while the result
/// commits; the answer to the request waits for the commit): after the
/// restart the call is answered, never pending again, and the answer goes
/// on by itself to its end.
#[actix_web::test]
async fn a_result_answered_200_survives_kill_9_right_after() {
    let replies =
        vec![calls_answer("Step one.", &[("toolu_1", "look", "{}")]), text_answer("Went on."), text_answer("Went on.")];
    let Awaiting { upstream, _dir, db, mut bin, thread, .. } = awaiting(replies, "go").await;
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": 1}]});
    assert_eq!(post(&bin.server, format!("{thread}/tool-results"), result).await.0, 200);
    signal(&bin.child, "-KILL");
    let _ = bin.child.wait();

    let bin = start(&db, &upstream).await;
    let stored = eventually(|| async {
        let m = bin.server.messages(&thread).await.pop().unwrap();
        assert_eq!(m["pending"].as_array().map_or(0, Vec::len), 0, "the answered call is not pending again: {m}");
        (m["status"] == "complete").then_some(m)
    })
    .await;
    assert_eq!(kinds(&stored), ["text", "tool_use", "tool_result", "text"], "{stored}");
    assert_eq!(stored["blocks"][2]["text"], "1", "the result as posted");
    assert_eq!(stored["content"], "Step one.Went on.");
}

#[actix_web::test]
async fn a_cut_step_s_calls_get_error_results_and_the_thread_is_asked_again() {
    // The step's call streams, then the provider fails before the step
    // ends: the answer fails with the call answered `the answer was cut off`.
    let mut pieces = vec![Piece::Bytes(a::message_start(20)), Piece::Bytes(a::tool_start(0, Some("toolu_x"), "look"))];
    pieces.push(Piece::Bytes(a::input_delta(0, "{}")));
    pieces.push(Piece::Bytes(a::block_stop(0)));
    pieces.push(Piece::Bytes(a::event(
        "error",
        &json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
    )));
    let replies = vec![Reply::Stream { pieces, end: End::Clean }, text_answer("Fine now.")];
    let upstream = FakeUpstream::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let bin = start(&db, &upstream).await;
    let thread = thread_with(&bin.server, look()).await;
    let id = bin.server.ask(&thread, "go").await;
    let done = bin.server.finished(&thread, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(kinds(&done), ["tool_use", "tool_result"]);
    assert_eq!(
        (done["blocks"][1]["is_error"].as_bool(), done["blocks"][1]["text"].as_str()),
        (Some(true), Some(r#""the answer was cut off""#))
    );
    let next = bin.server.ask(&thread, "again").await;
    assert_eq!(bin.server.finished(&thread, &next).await["status"], "complete");
    let last = upstream.requests().pop().unwrap();
    let turns = last.body["messages"].as_array().unwrap();
    assert_eq!(turns[2]["content"][0]["type"], "tool_result", "the call went back with its result: {turns:?}");
}

#[actix_web::test]
async fn in_secured_mode_a_tab_answers_with_its_thread_s_stream_token() {
    const ADMIN: &str = "admin-token-for-tool-tests-0123456789";
    let replies = vec![calls_answer("Paying.", &[("toolu_s", "pay", "{}")]), text_answer("Paid.")];
    let upstream = FakeUpstream::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut flags = upstream_flags(&upstream);
    flags.extend(["--admin-token".to_owned(), ADMIN.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let bin = Binary::start_env(&db, &flags, &env()).await;
    let s = &bin.server;
    let (pid, key) = s.project_with_key(ADMIN).await;
    let tools = json!([{"name": "pay", "input_schema": {"type": "object"}, "approval": "always"}]);
    let t = s.post_json_as(&key, &format!("/v1/projects/{pid}/threads"), Some(json!({"tools": tools}))).await;
    let thread = format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap());
    let other = s.post_json_as(&key, &format!("/v1/projects/{pid}/threads"), Some(json!({}))).await;
    let other = format!("/v1/projects/{pid}/threads/{}", other["id"].as_str().unwrap());
    let token = |path: String| {
        let key = key.clone();
        async move {
            s.post_json_as(&key, &format!("{path}/stream-token"), None).await["token"].as_str().unwrap().to_owned()
        }
    };
    let (mine, theirs) = (token(thread.clone()).await, token(other).await);
    s.post_json_as(&key, &format!("{thread}/messages"), Some(json!({"content": "pay"}))).await;
    let mut sse = crate::support::Sse::open(s.client.get(format!("{}{thread}/events?token={mine}", s.base))).await;
    sse.until("message.awaiting").await;
    let decide = |credential: Option<&str>| {
        let url = match credential {
            Some(t) => format!("{}{thread}/approvals?token={t}", s.base),
            None => format!("{}{thread}/approvals", s.base),
        };
        s.client.post(url).json(&json!({"tool_call_id": "toolu_s", "approved": false})).send()
    };
    for (credential, why) in [(None, "no credential"), (Some(theirs.as_str()), "another thread's token")] {
        let (status, code) = crate::support::error_code(decide(credential).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{why}");
    }
    let r = decide(Some(&mine)).await.unwrap();
    assert_eq!(r.status(), 200, "the thread's own token answers");
    assert_eq!(sse.until("message.completed").await.pop().unwrap().data["status"], "complete");
    // A token opens no other route of its thread.
    let r = s.client.post(format!("{}{thread}/messages?token={mine}", s.base)).json(&json!({"content": "x"})).send();
    assert_eq!(r.await.unwrap().status(), 401);
}

// ------------------------------------------------------------ cluster mode

/// A cluster of `n` nodes whose provider is `upstream`.
async fn cluster(n: usize, upstream: &FakeUpstream) -> Option<Cluster> {
    let flags = upstream_flags(upstream);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Cluster::start_env(n, None, &flags, &[KEY]).await
}

#[actix_web::test]
async fn a_result_posted_on_another_node_continues_the_answer_there() {
    let replies = vec![calls_answer("Let me look.", &[("toolu_1", "look", "{}")]), text_answer("Found it.")];
    let upstream = FakeUpstream::start(replies).await;
    let Some(cluster) = cluster(2, &upstream).await else { return };
    let thread = thread_with(cluster.node(0), look()).await;
    let mut tab0 = cluster.node(0).sse(&thread, None).await;
    let mut tab1 = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "look").await;
    let awaiting = tab1.until("message.awaiting").await.pop().unwrap();
    assert_eq!(awaiting.data["pending"][0]["tool_call_id"], "toolu_1");
    tab0.until("message.awaiting").await;
    for i in 0..2 {
        assert_eq!(cluster.node(i).get_json(&thread).await["status"], "awaiting_input", "node {i}");
        let (status, body) = post(cluster.node(i), format!("{thread}/messages"), json!({"content": "and?"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("thread_busy")), "node {i}");
    }
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": "here"}]});
    let (status, body) = post(cluster.node(1), format!("{thread}/tool-results"), result.clone()).await;
    assert_eq!(status, 200, "{body}");
    for tab in [&mut tab0, &mut tab1] {
        let rest = tab.until("message.completed").await;
        assert!(rest.iter().any(|e| e.kind == "tool.resolved"));
        let step = rest.iter().find(|e| e.kind == "message.step").expect("message.step on every node");
        assert_eq!(step.data["step"], 2);
        let done = rest.last().unwrap();
        assert_eq!(
            (done.data["message_id"].as_str(), done.data["status"].as_str()),
            (Some(id.as_str()), Some("complete"))
        );
    }
    for i in 0..2 {
        let messages = cluster.node(i).messages(&thread).await;
        assert_eq!(messages.len(), 2, "node {i}: one answer");
        assert_eq!(kinds(&messages[1]), ["text", "tool_use", "tool_result", "text"], "node {i}");
    }
    // The same result again, on the other node: no change.
    let (status, again) = post(cluster.node(0), format!("{thread}/tool-results"), result).await;
    assert_eq!((status, again["unchanged"].clone()), (200, json!(["toolu_1"])));
    assert_eq!(upstream.requests().len(), 2, "one model call per step");
    // The thread is free again on every node.
    let (status, _) = post(cluster.node(0), format!("{thread}/messages"), json!({"content": "thanks"})).await;
    assert_eq!(status, 202);
}

#[actix_web::test]
async fn two_nodes_deciding_one_approval_have_one_winner_and_one_next_step() {
    const ROUNDS: usize = 6;
    let mut replies = Vec::new();
    for round in 0..ROUNDS {
        let id = format!("toolu_r{round}");
        replies.push(calls_answer("Paying.", &[(id.as_str(), "pay", "{}")]));
        replies.push(text_answer("Done."));
    }
    let upstream = FakeUpstream::start(replies).await;
    let Some(cluster) = cluster(2, &upstream).await else { return };
    let tools = json!([{"name": "pay", "input_schema": {"type": "object"}, "approval": "always"}]);
    for round in 0..ROUNDS {
        let thread = thread_with(cluster.node(0), tools.clone()).await;
        let mut tab = cluster.node(1).sse(&thread, None).await;
        cluster.node(round % 2).ask(&thread, "pay").await;
        tab.until("message.awaiting").await;
        let call = format!("toolu_r{round}");
        let approve = json!({"tool_call_id": call, "approved": true});
        let deny = json!({"tool_call_id": call, "approved": false, "reason": "no"});
        let (a, d) = tokio::join!(
            post(cluster.node(0), format!("{thread}/approvals"), approve),
            post(cluster.node(1), format!("{thread}/approvals"), deny)
        );
        let mut statuses = vec![a.0, d.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: one decision wins: {a:?} {d:?}");
        let loser = if a.0 == 409 { &a.1 } else { &d.1 };
        assert_eq!(loser["error"]["code"], "tool_call_resolved", "round {round}");
        let approved = a.0 == 200;
        let mut rest = Vec::new();
        if approved {
            // Approved: the call, a client's, now waits for its result.
            rest = tab.until("message.awaiting").await;
            assert_eq!(rest.last().unwrap().data["pending"][0]["needs"], "result", "round {round}");
            let result = json!({"results": [{"tool_call_id": call, "output": "paid"}]});
            assert_eq!(post(cluster.node(1 - round % 2), format!("{thread}/tool-results"), result).await.0, 200);
        }
        rest.extend(tab.until("message.completed").await);
        let decisions: Vec<_> =
            rest.iter().filter(|e| e.kind == "tool.resolved" && e.data["needs"] == "approval").collect();
        assert_eq!(decisions.len(), 1, "round {round}: told once");
        assert_eq!(decisions[0].data["approved"].as_bool(), Some(approved), "round {round}: the winner's decision");
        assert_eq!(rest.iter().filter(|e| e.kind == "message.step").count(), 1, "round {round}: one next step");
    }
    assert_eq!(upstream.requests().len(), 2 * ROUNDS, "two model calls a round, never three");
}

#[actix_web::test]
async fn the_node_that_made_the_step_dies_and_a_result_on_another_continues_it() {
    let replies = vec![calls_answer("Let me look.", &[("toolu_1", "look", "{}")]), text_answer("Found it.")];
    let upstream = FakeUpstream::start(replies).await;
    let Some(mut cluster) = cluster(2, &upstream).await else { return };
    let thread = thread_with(cluster.node(0), look()).await;
    let mut tab = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "look").await;
    tab.until("message.awaiting").await;
    signal(&cluster.nodes[0].child, "-KILL");
    let _ = cluster.nodes[0].child.wait();
    // Node 0 held no lease while the answer waited: nothing to expire.
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": 1}]});
    let (status, body) = post(cluster.node(1), format!("{thread}/tool-results"), result).await;
    assert_eq!(status, 200, "{body}");
    let done = tab.until("message.completed").await.pop().unwrap();
    assert_eq!((done.data["message_id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("complete")));
    let messages = cluster.node(1).messages(&thread).await;
    assert_eq!(kinds(&messages[1]), ["text", "tool_use", "tool_result", "text"]);
    cluster.nodes[0] = cluster.spawn(0).await;
    assert_eq!(cluster.node(0).messages(&thread).await[1]["status"], "complete");
}

#[actix_web::test]
async fn a_cancel_on_another_node_ends_what_awaits_and_the_thread_is_asked_again() {
    let replies = vec![
        calls_answer("Two looks.", &[("toolu_a", "look", "{}"), ("toolu_b", "look", "{}")]),
        text_answer("Again."),
    ];
    let upstream = FakeUpstream::start(replies).await;
    let Some(cluster) = cluster(2, &upstream).await else { return };
    let thread = thread_with(cluster.node(0), look()).await;
    let mut tab = cluster.node(0).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "look").await;
    tab.until("message.awaiting").await;
    let one = json!({"results": [{"tool_call_id": "toolu_a", "output": "a"}]});
    assert_eq!(post(cluster.node(1), format!("{thread}/tool-results"), one).await.0, 200);
    tab.until("tool.resolved").await;
    let (status, body) = post(cluster.node(1), format!("{thread}/cancel"), json!({})).await;
    assert_eq!((status, body["message_id"].as_str()), (202, Some(id.as_str())));
    let done = tab.until("message.completed").await.pop().unwrap();
    assert_eq!(done.data["status"], "cancelled");
    let stored = cluster.node(1).messages(&thread).await.pop().unwrap();
    let results: Vec<(String, String)> = stored["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == "tool_result")
        .map(|b| (b["tool_use_id"].as_str().unwrap().to_owned(), b["text"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        results,
        [("toolu_a".to_owned(), r#""a""#.to_owned()), ("toolu_b".to_owned(), r#""cancelled""#.to_owned())]
    );
    let next = cluster.node(0).ask(&thread, "again").await;
    assert_eq!(cluster.node(1).finished(&thread, &next).await["status"], "complete");
}

#[actix_web::test]
async fn an_answer_whose_calls_were_all_answered_when_its_node_died_goes_on() {
    let replies = vec![calls_answer("Let me look.", &[("toolu_1", "look", "{}")]), text_answer("Went on.")];
    let upstream = FakeUpstream::start(replies).await;
    let Some(mut cluster) = cluster(2, &upstream).await else { return };
    let thread = thread_with(cluster.node(0), look()).await;
    let mut tab = cluster.node(0).sse(&thread, None).await;
    cluster.node(0).ask(&thread, "look").await;
    tab.until("message.awaiting").await;
    // Both nodes stop; the database is left as a node leaves it that
    // stored the last result and died before the next step began.
    for node in cluster.nodes.iter_mut() {
        signal(&node.child, "-KILL");
        let _ = node.child.wait();
    }
    let db = sea_orm::Database::connect(&cluster.db).await.unwrap();
    use sea_orm::ConnectionTrait;
    let pg = |sql: &str| sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned());
    let rows = db.query_all(pg("SELECT calls FROM messages WHERE status = 'awaiting_input'")).await.unwrap();
    assert_eq!(rows.len(), 1, "the answer awaits in the database");
    let mut calls: Value = serde_json::from_str(&rows[0].try_get::<String>("", "calls").unwrap()).unwrap();
    assert_eq!(calls[0]["state"]["state"], "needs_result", "stored as the domain writes it: {calls}");
    // Answered, as `convo::domain::turn` writes an answered call.
    let answered =
        convo::domain::turn::CallState::Resolved { text: r#""seen""#.into(), is_error: false, approved: None };
    calls[0]["state"] = serde_json::to_value(answered).unwrap();
    let sql = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "UPDATE messages SET calls = $1, calls_ready = true WHERE status = 'awaiting_input'",
        [calls.to_string().into()],
    );
    db.execute(sql).await.unwrap();
    cluster.nodes[1] = cluster.spawn(1).await;
    let messages = eventually(|| async {
        let m = cluster.node(1).messages(&thread).await;
        (m[1]["status"] == "complete").then_some(m)
    })
    .await;
    assert_eq!(kinds(&messages[1]), ["text", "tool_use", "tool_result", "text"]);
    assert_eq!(messages[1]["blocks"][2]["text"], r#""seen""#);
}
