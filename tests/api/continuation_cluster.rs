//! Cluster mode: an answer whose owner node dies, or stops for a deploy,
//! is continued by another node in the same message (issue 28 item 4).
//!
//! Real service processes on one Postgres database and one Redis (see
//! `cluster`), the simulated provider streaming slow answers. It ignores
//! the partial answer, so a continuation streams its text again from the
//! start, appended to the cut block (the seam may cut an overlap): what a
//! tab saw is compared with the stored final message, never with a fixed
//! text. The owner's log in Redis is there at each take-over, so the text
//! goes on in the same block and every cursor stays valid.
//!
//! With continuation off (`--continue-max-attempts 0`), a killed owner's
//! answer ends `interrupted` as before; this is guarded by
//! `cluster::when_the_owner_is_killed_another_node_ends_the_answer_with_all_it_sent`.
//!
//! A tab on the node that takes the thread over is not yet told
//! `message.continued` (its text is whole and exact): the ignored
//! `a_tab_on_the_node_that_takes_over_is_told_the_answer_goes_on` shows it.

use std::time::Duration;

use serde_json::Value;

use crate::{
    binary::signal,
    cluster::{deltas, owner, Cluster},
    support::{eventually, Ev, Events as _, Transcript, Ws},
};

/// About six seconds an answer: it is still streaming well after a lease
/// (one second) has run out.
const SLOW: &[&str] = &["--sim-chunks", "600", "--sim-interval-ms", "10"];

/// A deploy's grace: the running answers are handed over a second after
/// SIGTERM, long before they end.
const DEPLOY: &[&str] = &["--shutdown-grace-ms", "1500", "--shutdown-reserve-ms", "500"];

fn flags(extra: &[&'static str]) -> Vec<&'static str> {
    SLOW.iter().chain(extra).copied().collect()
}

/// The sum of `convo_continuations_total` for `reason` and `outcome` in a
/// Prometheus text page (labels in any order; 0 when absent).
fn continuations(metrics: &str, reason: &str, outcome: &str) -> f64 {
    let (reason, outcome) = (format!("reason=\"{reason}\""), format!("outcome=\"{outcome}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with("convo_continuations_total{") && l.contains(&reason) && l.contains(&outcome))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().expect("a sample's value"))
        .sum()
}

async fn metrics(cluster: &Cluster, i: usize) -> String {
    let node = cluster.node(i);
    node.client.get(format!("{}/metrics", node.base)).send().await.unwrap().text().await.unwrap()
}

/// Node `i`'s exit code, once it has exited (within 15 s).
async fn exit_code(cluster: &mut Cluster, i: usize) -> Option<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = cluster.nodes[i].child.try_wait().unwrap() {
            return status.code();
        }
        assert!(std::time::Instant::now() < deadline, "node {i} exits");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last cursor among `evs`.
fn cursor(evs: &[Ev]) -> String {
    evs.iter().rev().find(|e| !e.id.is_empty()).expect("a cursor").id.clone()
}

/// The block of the last delta among `evs`.
fn last_block(evs: &[Ev]) -> u64 {
    evs.iter().rev().find(|e| e.kind == "message.delta").expect("a delta").data["block"].as_u64().unwrap()
}

/// Checks the events a tab got from a cut on: deltas of `id` after the
/// cut, all in `block` (the cut one: no new block), then
/// `message.completed`; no error on the way (no `cursor_ahead`). `told`:
/// among them, before those deltas, exactly one `message.continued` of
/// `id` (attempt 1, `reason`).
fn check_continued(evs: &[Ev], id: &str, reason: &str, block: u64, told: bool) {
    assert!(evs.iter().all(|e| e.kind != "error"), "no error on the way: {evs:?}");
    assert!(evs.iter().all(|e| e.kind != "message.block"), "no new block: {evs:?}");
    assert_eq!(evs.last().unwrap().kind, "message.completed");
    let deltas: Vec<&Ev> = evs.iter().filter(|e| e.kind == "message.delta").collect();
    assert!(!deltas.is_empty(), "more text follows the cut");
    for d in deltas {
        assert_eq!(d.data["message_id"], id);
        assert_eq!(d.data["block"], block, "the text goes on in the cut block: {:?}", d.data);
    }
    if !told {
        return;
    }
    let others: Vec<(&str, &Value)> =
        evs.iter().filter(|e| e.kind != "message.delta").map(|e| (e.kind.as_str(), &e.data)).collect();
    let continued: Vec<usize> =
        evs.iter().enumerate().filter(|(_, e)| e.kind == "message.continued").map(|(i, _)| i).collect();
    assert_eq!(continued.len(), 1, "told once that the answer goes on; the events but deltas: {others:?}");
    let data = &evs[continued[0]].data;
    assert_eq!(data["message_id"], id);
    assert_eq!((data["reason"].as_str(), data["attempt"].as_u64()), (Some(reason), Some(1)), "{data}");
    let after = evs[continued[0]..].iter().filter(|e| e.kind == "message.delta").count();
    assert!(after > 0, "more deltas follow `message.continued`: {others:?}");
}

/// The stored answer, once ended: `complete`, continued once, its blocks
/// those it had when it was cut.
async fn check_stored(cluster: &Cluster, i: usize, thread: &str, id: &str, block: u64) -> Value {
    let stored = cluster.node(i).finished(thread, id).await;
    assert_eq!(stored["status"], "complete", "{stored}");
    assert_eq!(stored["continuations"], 1, "{stored}");
    assert!(stored["error"].is_null(), "{stored}");
    assert_eq!(stored["blocks"].as_array().unwrap().len() as u64, block + 1, "no block was added: {stored}");
    stored
}

/// The surviving node (1 or 2) that took the thread over from node 0, as
/// node 1 sees the lease while the answer goes on.
async fn taker(cluster: &Cluster, thread: &str) -> usize {
    eventually(|| async {
        match owner(cluster, 1, thread).await.0.as_str() {
            Some("node-1") => Some(1),
            Some("node-2") => Some(2),
            _ => None,
        }
    })
    .await
}

/// Three nodes; the owner is killed (`kill -9`) mid-answer. A node that
/// mirrors the thread takes its expired lease and continues the answer
/// from the owner's log: the tab on the other surviving node sees
/// `message.continued` (`owner_lost`, attempt 1), more text in the same
/// block, and the answer end `complete`; every tab's text is byte for
/// byte as stored, continued once. A tab that left before the kill
/// resumes from its cursor on a surviving node exactly (no
/// `cursor_ahead`, nothing repeated), whether it comes back before the
/// take-over or after the end. The node that continued counts it in
/// `/metrics`, and the other does not.
#[actix_web::test]
async fn when_the_owner_is_killed_another_node_continues_the_answer_in_the_same_block() {
    let Some(mut cluster) = Cluster::start(3, None, SLOW).await else { return };
    let thread = cluster.node(0).thread().await;
    let mut on1 = cluster.node(1).sse(&thread, None).await;
    let mut on2 = Ws::open(&cluster.node(2).base, &thread, None).await;
    let mut leaving = Ws::open(&cluster.node(2).base, &thread, None).await;
    let id = cluster.node(0).ask(&thread, "die mid-answer").await;
    assert_eq!(owner(&cluster, 1, &thread).await.0, "node-0");
    let left = deltas(&mut leaving, 10).await;
    drop(leaving);
    let before1 = deltas(&mut on1, 30).await;
    let before2 = deltas(&mut on2, 30).await;
    let block = last_block(&before1);
    cluster.nodes[0].child.kill().unwrap();
    cluster.nodes[0].child.wait().unwrap();
    // Back at once, before any node took over, on node 2.
    let mut back_early = cluster.node(2).sse(&thread, Some(&cursor(&left))).await;
    let taker = taker(&cluster, &thread).await;

    let after1 = on1.until("message.completed").await;
    let after2 = on2.until("message.completed").await;
    // The taker's own tabs are not asserted to be told: see
    // `a_tab_on_the_node_that_takes_over_is_told_the_answer_goes_on`.
    check_continued(&after1, &id, "owner_lost", block, taker != 1);
    check_continued(&after2, &id, "owner_lost", block, taker != 2);
    let stored = check_stored(&cluster, 1, &thread, &id, block).await;
    for (before, after) in [(&before1, &after1), (&before2, &after2)] {
        let mut t = Transcript::default();
        t.apply_all(before);
        let cut = t.blocks[&(id.clone(), block)].len();
        t.apply_all(after);
        assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
        t.assert_matches(&stored);
        assert!(t.blocks[&(id.clone(), block)].len() > cut, "the continuation added text");
    }

    // The tab that came back before the take-over, on node 2.
    let mut early = Transcript::default();
    early.apply_all(&left);
    let evs = back_early.until("message.completed").await;
    check_continued(&evs, &id, "owner_lost", block, taker != 2);
    early.apply_all(&evs);
    early.assert_matches(&stored);
    assert_eq!(early.completed, vec![(id.clone(), "complete".to_owned())]);
    // One that comes back after the end, on node 1 over WebSocket.
    let mut late = Transcript::default();
    late.apply_all(&left);
    let mut back_late = Ws::open(&cluster.node(1).base, &thread, Some(&cursor(&left))).await;
    let evs = back_late.until("message.completed").await;
    check_continued(&evs, &id, "owner_lost", block, false);
    late.apply_all(&evs);
    late.assert_matches(&stored);

    let counted = continuations(&metrics(&cluster, taker).await, "owner_lost", "continued");
    assert_eq!(counted, 1.0, "node-{taker} counts the continuation");
    let other = 3 - taker;
    assert_eq!(continuations(&metrics(&cluster, other).await, "owner_lost", "continued"), 0.0, "node-{other}");
}

/// Two nodes; the owner is killed mid-answer, so the other node takes the
/// thread over: its own tab, live all along, is told the answer goes on
/// (`message.continued`, `owner_lost`), as every subscriber is.
#[actix_web::test]
async fn a_tab_on_the_node_that_takes_over_is_told_the_answer_goes_on() {
    let Some(mut cluster) = Cluster::start(2, None, SLOW).await else { return };
    let thread = cluster.node(0).thread().await;
    let mut on1 = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "die mid-answer").await;
    let before = deltas(&mut on1, 30).await;
    let block = last_block(&before);
    cluster.nodes[0].child.kill().unwrap();
    cluster.nodes[0].child.wait().unwrap();
    let after = on1.until("message.completed").await;
    check_continued(&after, &id, "owner_lost", block, true);
    let mut t = Transcript::default();
    t.apply_all(&before);
    t.apply_all(&after);
    t.assert_matches(&check_stored(&cluster, 1, &thread, &id, block).await);
}

/// A deploy: SIGTERM to the node running two answers, with a grace far
/// shorter than they are. At the end of the grace each is handed over
/// (stored as it is, its lease let go) and another node continues it
/// (`handoff`): the one tabs on the other nodes watch, where the tab on
/// the node that did not take it over sees `message.continued` and the
/// answer end `complete`, and every tab's text is byte-exact; and one
/// nobody watches, which a node's sweeper finds. A tab on the stopping
/// node is told `shutting_down` and resumes from its cursor on another
/// node exactly. The stopped node exits 0.
#[actix_web::test]
async fn a_deploy_hands_its_running_answers_over_and_another_node_continues_them() {
    let Some(mut cluster) = Cluster::start(3, None, &flags(DEPLOY)).await else { return };
    let watched = cluster.node(0).thread().await;
    let mut on1 = cluster.node(1).sse(&watched, None).await;
    let mut on2 = Ws::open(&cluster.node(2).base, &watched, None).await;
    let mut on0 = cluster.node(0).sse(&watched, None).await;
    let id = cluster.node(0).ask(&watched, "a long answer across a deploy").await;
    let unwatched = cluster.node(0).thread().await;
    let other_id = cluster.node(0).ask(&unwatched, "nobody watches this one").await;
    let before1 = deltas(&mut on1, 20).await;
    let before2 = deltas(&mut on2, 20).await;
    let block = last_block(&before1);
    let mut t0 = Transcript::default();
    t0.apply_all(&deltas(&mut on0, 20).await);
    signal(&cluster.nodes[0].child, "-TERM");

    // The stopping node's tab is told, with a cursor to resume from.
    let closing = loop {
        let ev = on0.try_next().await.expect("told before the stream ends");
        if ev.kind == "error" {
            break ev;
        }
        assert_ne!(ev.kind, "message.completed", "the answer is handed over, not ended: {:?}", ev.data);
        t0.apply(&ev);
    };
    assert_eq!(closing.data["code"], "shutting_down");
    assert_eq!(closing.data["cursor"].as_str(), t0.last_id.as_deref(), "the error's cursor is where it stopped");
    let taker = taker(&cluster, &watched).await;

    let after1 = on1.until("message.completed").await;
    let after2 = on2.until("message.completed").await;
    check_continued(&after1, &id, "handoff", block, taker != 1);
    check_continued(&after2, &id, "handoff", block, taker != 2);
    let stored = check_stored(&cluster, 1, &watched, &id, block).await;
    for (before, after) in [(&before1, &after1), (&before2, &after2)] {
        let mut t = Transcript::default();
        t.apply_all(before);
        t.apply_all(after);
        assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
        t.assert_matches(&stored);
    }

    let other_node = 3 - taker;
    let mut resumed = cluster.node(other_node).sse(&watched, t0.last_id.as_deref()).await;
    let evs = resumed.until("message.completed").await;
    check_continued(&evs, &id, "handoff", block, false);
    t0.apply_all(&evs);
    t0.assert_matches(&stored);
    assert_eq!(t0.completed, vec![(id.clone(), "complete".to_owned())]);

    // The answer nobody watched was found and continued too.
    let other = cluster.node(2).finished(&unwatched, &other_id).await;
    assert_eq!(other["status"], "complete", "{other}");
    assert_eq!(other["continuations"], 1, "{other}");

    assert_eq!(exit_code(&mut cluster, 0).await, Some(0), "the stopped node exits 0");
    let mut handed = 0.0;
    for i in [1, 2] {
        handed += continuations(&metrics(&cluster, i).await, "handoff", "continued");
    }
    assert_eq!(handed, 2.0, "the two answers handed over were continued, each once");
}

/// With continuation off, a deploy's answer still running at the end of
/// the grace is not handed over: it ends `interrupted` with all it sent,
/// as before, and the node exits 0.
#[actix_web::test]
async fn with_continuation_off_a_deploy_ends_its_running_answer_interrupted() {
    let Some(mut cluster) =
        Cluster::start(2, None, &flags(&[DEPLOY, &["--continue-max-attempts", "0"]].concat())).await
    else {
        return;
    };
    let thread = cluster.node(0).thread().await;
    let mut on1 = cluster.node(1).sse(&thread, None).await;
    let id = cluster.node(0).ask(&thread, "cut by a deploy").await;
    let mut t = Transcript::default();
    t.apply_all(&deltas(&mut on1, 20).await);
    signal(&cluster.nodes[0].child, "-TERM");
    let evs = on1.until("message.completed").await;
    assert!(evs.iter().all(|e| e.kind != "message.continued"), "not continued: {evs:?}");
    t.apply_all(&evs);
    assert_eq!(t.completed, vec![(id.clone(), "interrupted".to_owned())]);
    let stored = cluster.node(1).finished(&thread, &id).await;
    assert_eq!(stored["status"], "interrupted");
    assert_eq!(stored["error"]["code"], "interrupted");
    assert_eq!(stored["continuations"], 0);
    t.assert_matches(&stored);
    assert_eq!(exit_code(&mut cluster, 0).await, Some(0), "the stopped node exits 0");
    // Nobody took it over afterwards.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = cluster.node(1).message(&thread, &id).await;
    assert_eq!(again["status"], "interrupted");
    assert_eq!(again["content"], stored["content"]);
}
