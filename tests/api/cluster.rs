//! Several nodes on one Postgres database and one Redis behave, for every
//! client, like one: three real service processes, a fresh database and a
//! Redis prefix per test. Needs `TEST_DATABASE_URL` and `TEST_REDIS_URL`
//! (CI sets both); a test that kills Redis runs its own `redis-server` on
//! a free port.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    binary::{signal, Binary},
    support::{error_code, eventually, Ev, Events as _, Server, Transcript, Ws},
};

const SECRET: &str = "cluster-test-stream-token-secret";

/// Nodes of one cluster.
pub struct Cluster {
    pub nodes: Vec<Binary>,
    pub db: String,
    flags: Vec<String>,
    /// Set in every node's environment.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// `n` nodes on a fresh database, Redis at `redis` (the machine's,
    /// unless a test brings its own), with `extra` flags; `None` (the test
    /// is skipped) without the test services.
    pub async fn start(n: usize, redis: Option<&str>, extra: &[&str]) -> Option<Cluster> {
        Cluster::start_env(n, redis, extra, &[]).await
    }

    /// As `start`, with `env` set in every node's environment.
    pub async fn start_env(n: usize, redis: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Option<Cluster> {
        let (Ok(pg), Ok(machine_redis)) = (std::env::var("TEST_DATABASE_URL"), std::env::var("TEST_REDIS_URL")) else {
            skipped();
            return None;
        };
        let db = crate::pg::fresh_database(&pg).await;
        let prefix = format!("convo-test-{}", uuid::Uuid::now_v7().simple());
        let mut flags: Vec<String> = [
            "--redis-url",
            redis.unwrap_or(&machine_redis),
            "--redis-prefix",
            &prefix,
            "--stream-token-secret",
            SECRET,
            "--lease-ms",
            "1000",
            "--sim-chunks",
            "200",
            "--sim-interval-ms",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A flag of `extra` replaces its value here (clap refuses repeats).
        for pair in extra.chunks(2) {
            match flags.iter().position(|f| f == pair[0]) {
                Some(i) if pair.len() == 2 => flags[i + 1] = pair[1].to_string(),
                _ => flags.extend(pair.iter().map(|s| s.to_string())),
            }
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut cluster = Cluster { nodes: Vec::new(), db, flags, env };
        for i in 0..n {
            cluster.nodes.push(cluster.spawn(i).await);
        }
        Some(cluster)
    }

    pub async fn spawn(&self, i: usize) -> Binary {
        self.spawn_on(i, &self.db).await
    }

    /// Node `i` on `db` (the cluster's database, perhaps through a proxy).
    pub async fn spawn_on(&self, i: usize, db: &str) -> Binary {
        let name = format!("node-{i}");
        let mut flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        flags.extend(["--node-id", &name]);
        Binary::start_env(db, &flags, &self.env).await
    }

    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i].server
    }

    /// The prefix of the cluster's keys and channels in Redis.
    pub fn redis_prefix(&self) -> String {
        let i = self.flags.iter().position(|f| f == "--redis-prefix").expect("a prefix");
        self.flags[i + 1].clone()
    }
}

/// A failed test shows what its nodes said (warnings, errors, answers).
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for line in node.logs.lock().unwrap().iter() {
                if line.contains("\"WARN\"") || line.contains("\"ERROR\"") || line.contains("generation") {
                    eprintln!("node-{i}: {line}");
                }
            }
        }
    }
}

/// Says once per run, past the test harness's capture (a green run must
/// not be read as covering them), that the cluster tests were skipped.
fn skipped() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "cluster tests SKIPPED: set TEST_DATABASE_URL and TEST_REDIS_URL to run them (.ci/run does)"
        );
    });
}

/// The live thread's owner and epoch as node `i` sees them.
pub async fn owner(cluster: &Cluster, i: usize, thread: &str) -> (Value, Value) {
    let tid = thread.rsplit('/').next().unwrap();
    let node = cluster.node(i);
    let _ = node.client.get(format!("{}{thread}/messages", node.base)).send().await;
    let detail = node.get_json(&format!("/admin/threads/{tid}")).await;
    (detail["owner_node"].clone(), detail["epoch"].clone())
}

/// Reads `sse` until `n` deltas have come.
pub async fn deltas(sse: &mut impl crate::support::Events, n: usize) -> Vec<Ev> {
    let mut seen = Vec::new();
    while seen.iter().filter(|e: &&Ev| e.kind == "message.delta").count() < n {
        seen.push(sse.next_event().await.expect("the stream goes on"));
    }
    seen
}

#[actix_web::test]
async fn any_node_streams_any_thread_live_late_and_resumed_byte_exact() {
    let Some(cluster) = Cluster::start(3, None, &[]).await else { return };
    let thread = cluster.node(0).thread().await;
    // A tab on node 1 before the question, one on node 2 over WebSocket.
    let mut early = cluster.node(1).sse(&thread, None).await;
    assert_eq!(early.next().await.unwrap().kind, "ready");
    let mut ws = Ws::open(&cluster.node(2).base, &thread, None).await;
    assert_eq!(ws.next().await.unwrap().kind, "ready");
    let id = cluster.node(0).ask(&thread, "across nodes").await;
    let (owner_node, epoch) = owner(&cluster, 0, &thread).await;
    assert_eq!(owner_node, "node-0", "the answer runs where the question arrived");
    assert!(epoch.as_u64().unwrap() >= 1);

    // A tab on node 2 reads a little, goes away, and resumes on node 1.
    let mut leaving = cluster.node(2).sse(&thread, None).await;
    let seen = deltas(&mut leaving, 20).await;
    drop(leaving);
    let cursor = seen.iter().rev().find(|e| !e.id.is_empty()).unwrap().id.clone();
    let mut resumed = cluster.node(1).sse(&thread, Some(&cursor)).await;
    // A late joiner on node 2 mid-answer.
    let mut late = cluster.node(2).sse(&thread, None).await;

    let mut transcripts = Vec::new();
    for evs in [early.until("message.completed").await, ws.until("message.completed").await] {
        let mut t = Transcript::default();
        t.apply_all(&evs);
        transcripts.push(t);
    }
    let mut t = Transcript::default();
    t.apply_all(&seen);
    t.apply_all(&resumed.until("message.completed").await);
    transcripts.push(t);
    let mut t = Transcript::default();
    t.apply_all(&late.until("message.completed").await);
    transcripts.push(t);

    let stored = cluster.node(2).finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    for t in &transcripts {
        t.assert_matches(&stored);
        assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
    }
    // The same from every node's history.
    for i in 0..3 {
        assert_eq!(cluster.node(i).message(&thread, &id).await["content"], stored["content"], "node {i}");
    }
}

#[actix_web::test]
async fn questions_and_cancels_from_any_node_reach_the_one_owner() {
    let Some(cluster) = Cluster::start(3, None, &["--sim-chunks", "2000"]).await else { return };
    let thread = cluster.node(0).thread().await;
    let mut watch = cluster.node(0).sse(&thread, None).await;
    // Asked on node 1: the lease moves there with the idle thread.
    let id = cluster.node(1).ask(&thread, "run on node 1").await;
    assert_eq!(owner(&cluster, 2, &thread).await.0, "node-1");
    deltas(&mut watch, 5).await;
    // A second question anywhere meanwhile is busy, as on one node.
    for i in 0..3 {
        let r = cluster.node(i).client.post(format!("{}{thread}/messages", cluster.node(i).base));
        let r = r.json(&json!({"content": "me too"})).send().await.unwrap();
        assert_eq!(error_code(r).await, (409, "thread_busy".to_owned()), "node {i}");
    }
    // Cancelled from node 2: the owner on node 1 stops the answer.
    let r = cluster.node(2).client.post(format!("{}{thread}/cancel", cluster.node(2).base)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let done = watch.until("message.completed").await.pop().unwrap();
    assert_eq!(done.data["status"], "cancelled");
    let stored = cluster.node(0).finished(&thread, &id).await;
    assert_eq!(stored["status"], "cancelled");
    // The lease is let go: the next question may run anywhere, and it
    // goes on for many leases, renewed, with nobody taking it over.
    let next = cluster.node(2).ask(&thread, "now on node 2").await;
    assert_eq!(owner(&cluster, 0, &thread).await.0, "node-2");
    let mut evs = Vec::new();
    while evs.iter().filter(|e: &&Ev| e.kind == "message.delta").count() < 600 {
        let ev = watch.next().await.unwrap();
        assert_ne!(ev.kind, "message.completed", "ended early: {:?}", ev.data);
        evs.push(ev);
    }
    let r = cluster.node(0).client.post(format!("{}{thread}/cancel", cluster.node(0).base)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(cluster.node(1).finished(&thread, &next).await["status"], "cancelled");
}

/// With continuation off (`--continue-max-attempts 0`), an answer whose
/// owner is killed is ended `interrupted` by another node, with all it
/// sent: the behaviour before issue 28, which continuation off still
/// gives exactly. (With continuation on, the default, the answer goes on
/// instead: `continuation_cluster`.)
#[actix_web::test]
async fn when_the_owner_is_killed_another_node_ends_the_answer_with_all_it_sent() {
    let flags = ["--sim-chunks", "2000", "--continue-max-attempts", "0"];
    let Some(mut cluster) = Cluster::start(3, None, &flags).await else { return };
    let thread = cluster.node(0).thread().await;
    let mut on1 = cluster.node(1).sse(&thread, None).await;
    let mut on2 = Ws::open(&cluster.node(2).base, &thread, None).await;
    let id = cluster.node(0).ask(&thread, "die mid-answer").await;
    let seen1 = deltas(&mut on1, 30).await;
    let seen2 = deltas(&mut on2, 30).await;
    cluster.nodes[0].child.kill().unwrap();
    cluster.nodes[0].child.wait().unwrap();
    // Every surviving node's subscriber is told the answer ended.
    let mut t1 = Transcript::default();
    t1.apply_all(&seen1);
    t1.apply_all(&on1.until("message.completed").await);
    let mut t2 = Transcript::default();
    t2.apply_all(&seen2);
    t2.apply_all(&on2.until("message.completed").await);
    for t in [&t1, &t2] {
        assert_eq!(t.completed, vec![(id.clone(), "interrupted".to_owned())]);
    }
    let stored = cluster.node(1).finished(&thread, &id).await;
    assert_eq!(stored["status"], "interrupted");
    assert_eq!(stored["error"]["code"], "interrupted");
    // Everything any tab saw was kept, and a tab resuming on either node
    // gets the same bytes.
    for t in [&t1, &t2] {
        t.assert_matches(&stored);
    }
    let cursor = seen1.iter().rev().find(|e| !e.id.is_empty()).unwrap().id.clone();
    for i in [1, 2] {
        let mut t = Transcript::default();
        t.apply_all(&seen1);
        let mut again = cluster.node(i).sse(&thread, Some(&cursor)).await;
        t.apply_all(&again.until("message.completed").await);
        t.assert_matches(&stored);
    }
    // A tab that saw the end resumes from it on any node, over SSE or
    // WebSocket: the taker read the whole log, so that end is exact and
    // nothing comes again (no `cursor_ahead`, no second copy).
    let end = t1.last_id.clone().unwrap();
    assert!(end.ends_with(":1:0"), "the completion's cursor: {end}");
    let mut sse_resume = cluster.node(1).sse(&thread, Some(&end)).await;
    let mut ws_resume = Ws::open(&cluster.node(2).base, &thread, Some(&end)).await;
    // And the thread takes a new question.
    let next = cluster.node(2).ask(&thread, "after").await;
    let first_after_ready = |evs: Vec<Ev>| {
        evs.into_iter().skip(1).filter(|e| e.kind != "thread.presence").map(|e| e.kind).collect::<Vec<_>>()
    };
    assert_eq!(first_after_ready(sse_resume.until("message.created").await), ["message.created"]);
    assert_eq!(first_after_ready(ws_resume.until("message.created").await), ["message.created"]);
    assert_eq!(owner(&cluster, 1, &thread).await.0, "node-2");
    let r = cluster.node(1).client.post(format!("{}{thread}/cancel", cluster.node(1).base)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(cluster.node(1).finished(&thread, &next).await["status"], "cancelled");
}

/// An owner paused (SIGSTOP) past its lease loses it: the other node
/// takes the answer over and continues it (`owner_lost`). The old owner
/// wakes while the taker still streams: its writes are refused (it logs
/// `lease lost`) and it writes nothing over the taker's, so the answer
/// ends `complete` with exactly what the tab saw, and stays so.
#[actix_web::test]
async fn an_owner_paused_past_its_lease_cannot_write_when_it_wakes() {
    let Some(cluster) = Cluster::start(2, None, &["--sim-chunks", "600"]).await else { return };
    let thread = cluster.node(0).thread().await;
    let mut on1 = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "pause me").await;
    let seen = deltas(&mut on1, 20).await;
    signal(&cluster.nodes[0].child, "-STOP");
    // Node 1 takes the expired lease and goes on with the answer (what
    // its tab is told of that: `continuation_cluster`).
    eventually(|| async { (owner(&cluster, 1, &thread).await.0 == "node-1").then_some(()) }).await;
    let mut t = Transcript::default();
    t.apply_all(&seen);
    // The old owner wakes while node 1 streams: its writes are refused.
    signal(&cluster.nodes[0].child, "-CONT");
    eventually(|| async {
        let logs = cluster.nodes[0].logs.lock().unwrap().join("\n");
        logs.contains("lease lost").then_some(())
    })
    .await;
    let rest = on1.until("message.completed").await;
    assert!(rest.iter().all(|e| e.kind != "error"), "no error on the way: {rest:?}");
    t.apply_all(&rest);
    assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
    let taken = cluster.node(1).finished(&thread, &id).await;
    assert_eq!(taken["status"], "complete");
    assert_eq!(taken["continuations"], 1);
    t.assert_matches(&taken);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..2 {
        let after = cluster.node(i).message(&thread, &id).await;
        assert_eq!(after["status"], "complete", "no second writer (node {i})");
        assert_eq!(after["content"], taken["content"], "the text is what the taker stored (node {i})");
    }
}

/// A `redis-server` of the test's own, on a free port.
pub struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    pub fn start(port: Option<u16>) -> OwnRedis {
        let port =
            port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[actix_web::test]
async fn redis_killed_and_restarted_empty_mid_answer_loses_nothing() {
    let mut redis = OwnRedis::start(None);
    let Some(cluster) = Cluster::start(2, Some(&redis.url()), &["--sim-chunks", "600"]).await else { return };
    let thread = cluster.node(0).thread().await;
    let mut local = cluster.node(0).sse(&thread, None).await;
    let mut remote = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "through a redis outage").await;
    let mut seen_remote = deltas(&mut remote, 20).await;
    redis.kill();
    // The owner's own subscriber gets the whole answer.
    let mut t = Transcript::default();
    t.apply_all(&local.until("message.completed").await);
    assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
    // The other node's subscriber is told, resumably.
    loop {
        let ev = remote.next().await.expect("told before the stream ends");
        if ev.kind == "error" {
            assert_eq!(ev.data["code"], "unavailable");
            break;
        }
        seen_remote.push(ev);
    }
    let ready = cluster.node(1).client.get(format!("{}/readyz", cluster.node(1).base)).send().await.unwrap();
    assert_eq!(error_code(ready).await.0, 503, "readiness says why");
    // Redis comes back empty (no log of the answer): the database serves.
    let _redis = OwnRedis::start(Some(redis.port));
    eventually(|| async {
        let r = cluster.node(1).client.get(format!("{}/readyz", cluster.node(1).base)).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let stored = cluster.node(0).finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    t.assert_matches(&stored);
    let cursor = seen_remote.iter().rev().find(|e| !e.id.is_empty()).unwrap().id.clone();
    let mut again = cluster.node(1).sse(&thread, Some(&cursor)).await;
    let mut r = Transcript::default();
    r.apply_all(&seen_remote);
    r.apply_all(&again.until("message.completed").await);
    r.assert_matches(&stored);
}

#[actix_web::test]
async fn a_stream_token_minted_on_one_node_opens_the_stream_on_another() {
    const ADMIN: &str = "cluster-admin-token-long-enough";
    let Some(cluster) = Cluster::start(3, None, &["--admin-token", ADMIN]).await else { return };
    let node0 = cluster.node(0);
    let pid =
        node0.post_json_as(ADMIN, "/v1/projects", Some(json!({"name": "p"}))).await["id"].as_str().unwrap().to_owned();
    let t = node0.post_json_as(ADMIN, &format!("/v1/projects/{pid}/threads"), Some(json!({}))).await;
    let thread = format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap());
    let tok = node0.post_json_as(ADMIN, &format!("{thread}/stream-token"), None).await;
    let token = tok["token"].as_str().unwrap();
    let c = &node0.client;
    let base2 = &cluster.node(2).base;
    let mut sse = crate::support::Sse::open(c.get(format!("{base2}{thread}/events?token={token}"))).await;
    assert_eq!(sse.next().await.unwrap().kind, "ready");
    // Every node shows on every node, once its first heartbeat is written.
    let view = eventually(|| async {
        let r = cluster.node(2).client.get(format!("{base2}/admin/cluster")).bearer_auth(ADMIN).send().await.ok()?;
        let view: Value = r.json().await.ok()?;
        let nodes = view["nodes"].as_array()?;
        (nodes.len() == 3).then_some(view)
    })
    .await;
    assert_eq!(view["node_id"], "node-2");
    let names: Vec<&str> = view["nodes"].as_array().unwrap().iter().map(|n| n["node_id"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-0", "node-1", "node-2"]);
}

#[actix_web::test]
async fn a_node_that_started_many_threads_still_relays_an_owner_with_a_young_lease() {
    let Some(cluster) = Cluster::start(2, None, &["--sim-chunks", "40"]).await else { return };
    // Node 1 starts actors for other threads first, so its own counters
    // run ahead of the epoch of the lease the next answer's owner takes.
    let mut others = Vec::new();
    for _ in 0..4 {
        let other = cluster.node(0).thread().await;
        let mut sse = cluster.node(1).sse(&other, None).await;
        assert_eq!(sse.next().await.unwrap().kind, "ready");
        others.push(sse);
    }
    let thread = cluster.node(0).thread().await;
    let mut early = cluster.node(1).sse(&thread, None).await;
    assert_eq!(early.next().await.unwrap().kind, "ready");
    let id = cluster.node(0).ask(&thread, "a first lease").await;
    let (owner_node, epoch) = owner(&cluster, 0, &thread).await;
    assert_eq!((owner_node.as_str(), epoch.as_u64()), (Some("node-0"), Some(1)));
    let seen = deltas(&mut early, 5).await;
    let cursor = seen.iter().rev().find(|e| !e.id.is_empty()).unwrap().id.clone();
    let mut resumed = cluster.node(1).sse(&thread, Some(&cursor)).await;

    let stored = cluster.node(0).finished(&thread, &id).await;
    let mut whole = Transcript::default();
    whole.apply_all(&seen);
    whole.apply_all(&early.until("message.completed").await);
    whole.assert_matches(&stored);
    let mut rest = Transcript::default();
    rest.apply_all(&seen);
    rest.apply_all(&resumed.until("message.completed").await);
    rest.assert_matches(&stored);
    assert_eq!(rest.completed, vec![(id, "complete".to_owned())]);
}

/// An owner cut off from Postgres cannot renew its lease: it stops its
/// answer by itself, and the other node takes the expired lease and
/// continues the answer from the owner's log (`owner_lost`), in the same
/// block, to `complete`. Back on the database, the old owner writes
/// nothing over it.
#[actix_web::test]
async fn an_owner_cut_off_from_postgres_stops_and_another_node_ends_the_answer() {
    let Some(mut cluster) = Cluster::start(1, None, &["--sim-chunks", "600"]).await else { return };
    // Node 1 reaches Postgres through a proxy the test unplugs.
    let host_port = cluster.db.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    let plug = crate::outage::Plug::start(host_port.clone()).await;
    let proxied = cluster.db.replacen(&host_port, &format!("127.0.0.1:{}", plug.port), 1);
    let cut_off = cluster.spawn_on(1, &proxied).await;
    cluster.nodes.push(cut_off);
    let thread = cluster.node(0).thread().await;
    let mut watch = cluster.node(0).sse(&thread, None).await;
    let id = cluster.node(1).ask(&thread, "cut off mid-answer").await;
    assert_eq!(owner(&cluster, 0, &thread).await.0, "node-1");
    let mut t = Transcript::default();
    t.apply_all(&deltas(&mut watch, 30).await);

    plug.unplug();
    // The owner cannot renew: it stops its answer by itself, and the other
    // node takes the expired lease and goes on with the answer (what its
    // tab is told of that: `continuation_cluster`).
    eventually(|| async { (owner(&cluster, 0, &thread).await.0 == "node-0").then_some(()) }).await;
    let rest = watch.until("message.completed").await;
    assert!(rest.iter().all(|e| e.kind != "error"), "no error on the way: {rest:?}");
    t.apply_all(&rest);
    assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
    let generating = cluster.node(1).get_json("/admin/stats").await["threads"]["generating"].clone();
    assert_eq!(generating, 0, "the cut-off owner no longer generates");
    let stored = cluster.node(0).finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["continuations"], 1);
    t.assert_matches(&stored);

    // Back on the database, the old owner writes nothing over it.
    plug.plug_in();
    eventually(|| async {
        let r = cluster.node(1).client.get(format!("{}/readyz", cluster.node(1).base)).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let again = cluster.node(0).message(&thread, &id).await;
    assert_eq!(again["status"], "complete");
    assert_eq!(again["content"], stored["content"], "no second writer");
}

#[actix_web::test]
async fn a_chat_asked_on_one_node_resumes_on_another_as_the_same_ui_message() {
    use crate::chat::{parts, turn, UiStream};
    let Some(cluster) = Cluster::start(2, None, &["--sim-chunks", "120", "--sim-interval-ms", "15"]).await else {
        return;
    };
    let thread = cluster.node(0).thread().await;
    let (pid, tid) = {
        let mut parts = thread.trim_start_matches("/v1/projects/").split("/threads/");
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let (asker, other) = (cluster.node(0), cluster.node(1));
    let resp = asker.client.post(format!("{}/v1/projects/{pid}/chat", asker.base)).json(&turn(&tid, "spread")).send();
    let mut asked = UiStream::of(resp.await.unwrap());
    let mut seen = Vec::new();
    while seen.iter().filter(|c: &&Value| c["type"] == "text-delta").count() < 10 {
        seen.push(asked.next().await.unwrap());
    }
    // The other node mirrors the answer (it does not own it) and gives the
    // frames it relays their UI form itself.
    assert_eq!(owner(&cluster, 1, &thread).await.0, "node-0");
    let resumed = other.client.get(format!("{}/v1/projects/{pid}/chat/{tid}/stream", other.base)).send();
    let replayed = UiStream::of(resumed.await.unwrap()).rest().await;
    seen.extend(asked.rest().await);
    assert_eq!(replayed[0]["messageId"], seen[0]["messageId"]);
    assert_eq!(parts(&replayed), parts(&seen));
    let answer = eventually(|| async {
        let last = asker.messages(&thread).await.pop()?;
        (last["status"] == "complete").then_some(last)
    })
    .await;
    assert_eq!(parts(&replayed), [("text".to_owned(), answer["content"].as_str().unwrap().to_owned())]);
}
