//! One node: an answer cut by `kill -9` is continued when the service
//! starts again (issue 28 item 4), unless it is too old or out of budget.
//!
//! The simulated provider streams a slow answer; checkpoints are a second
//! apart, so the kill comes well after one checkpoint holding text and
//! well before the next: a tab has then seen past the stored text. The
//! continuation's text opens a block of its own after the stored ones (the
//! simulated provider ignores the partial answer, so what it adds is not a
//! fixed text): tabs are compared with the stored final message.

use serde_json::Value;

use crate::{
    binary::Binary,
    support::{database_url, Ev, Events as _, Sse, Transcript},
};

/// A slow answer (600 chunks, about 4 s) and a checkpoint a second.
const SLOW: &[&str] = &["--sim-chunks", "600", "--sim-interval-ms", "5", "--flush-interval-ms", "1000"];

/// What a tab saw of an answer before the node running it was killed.
struct Crashed {
    thread: String,
    id: String,
    /// Every event the tab got, in order, up to the kill.
    seen: Vec<Ev>,
}

impl Crashed {
    /// The tab's transcript of everything it saw.
    fn transcript(&self) -> Transcript {
        let mut t = Transcript::default();
        t.apply_all(&self.seen);
        t
    }

    /// The last cursor the tab got.
    fn cursor(&self) -> String {
        self.seen.iter().rev().find(|e| !e.id.is_empty()).unwrap().id.clone()
    }
}

fn transactions(stats: &Value) -> u64 {
    stats["persistence"]["transactions"].as_u64().unwrap()
}

/// Waits, while `sse` is read into `seen` (so the tab keeps up with the
/// answer), until `until` transactions have committed and nothing is
/// queued (checkpoints of the running answer, which are the only writes
/// then). Then reads `more` deltas past them.
async fn past_a_checkpoint(bin: &Binary, sse: &mut Sse, seen: &mut Vec<Ev>, until: u64, more: usize) {
    loop {
        for _ in 0..10 {
            let ev = sse.next().await.unwrap();
            assert_ne!(ev.kind, "message.completed", "the answer is still streaming: make it slower");
            seen.push(ev);
        }
        let s = bin.server.get_json("/admin/stats").await;
        if transactions(&s) >= until && s["persistence"]["queue_depth"] == 0 {
            break;
        }
    }
    let mut deltas = 0;
    while deltas < more {
        let ev = sse.next().await.unwrap();
        assert_ne!(ev.kind, "message.completed", "the answer is still streaming: make it slower");
        deltas += (ev.kind == "message.delta") as usize;
        seen.push(ev);
    }
}

/// Asks a question on a node started with `flags`, with a tab open; once
/// a checkpoint holding text has committed, and the tab has seen a few
/// deltas past it, the node is killed (`kill -9`).
async fn crash_mid_answer(db: &str, flags: &[&str]) -> Crashed {
    let mut bin = Binary::start(db, flags).await;
    let thread = bin.server.thread().await;
    let mut sse = bin.server.sse(&thread, None).await;
    let id = bin.server.ask(&thread, "a long answer, please").await;
    // The question and its answer are committed before the POST returns;
    // the next transaction is the answer's first checkpoint, which holds
    // text (the answer streams from its start).
    let mark = transactions(&bin.server.get_json("/admin/stats").await);
    let mut seen = Vec::new();
    past_a_checkpoint(&bin, &mut sse, &mut seen, mark + 1, 10).await;
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    Crashed { thread, id, seen }
}

fn blocks(message: &Value) -> &Vec<Value> {
    message["blocks"].as_array().unwrap()
}

fn text(message: &Value, block: usize) -> &str {
    blocks(message)[block]["text"].as_str().unwrap()
}

/// The offset of a cursor `<message>:<block>:<offset>` in block 0.
fn offset_in_block_0(cursor: &str) -> usize {
    let parts: Vec<&str> = cursor.split(':').collect();
    assert_eq!(parts[1], "0", "a cursor in block 0: {cursor}");
    parts[2].parse().unwrap()
}

/// What was stored at the kill (block 0, all the answer had: no thinking)
/// is a strict prefix of what the tab saw, so the tab's cursor lies past
/// the stored text; the final message keeps that block as stored and
/// holds the continuation after it, in blocks of its own.
fn check_blocks(crashed: &Crashed, at_restart: &Value, last: &Value) {
    let stored = text(at_restart, 0);
    let saw = crashed.transcript().blocks[&(crashed.id.clone(), 0)].clone();
    assert!(!stored.is_empty(), "a checkpoint with text was committed before the kill");
    assert!(saw.starts_with(stored), "the stored text is what the tab saw, cut at the checkpoint");
    assert!(offset_in_block_0(&crashed.cursor()) > stored.len(), "the tab's cursor lies past the stored text");
    assert_eq!(text(last, 0), stored, "the stored block keeps its stored text");
    assert!(blocks(last).len() >= 2, "the continuation opened a block after the stored one: {last}");
    for b in &blocks(last)[1..] {
        assert_eq!(b["kind"], "text");
    }
    assert!(!text(last, blocks(last).len() - 1).is_empty(), "the continuation added text");
}

/// After `kill -9` mid-answer, the restarted node continues the answer by
/// itself, with no client connected: it ends `complete`, continued once,
/// the stored block as it was and the new text in a block after it; the
/// node counts the continuation in `/metrics`.
#[actix_web::test]
async fn a_crash_cut_answer_goes_on_at_restart_with_no_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let crashed = crash_mid_answer(&db, SLOW).await;

    let bin = Binary::start(&db, SLOW).await;
    let at_restart = bin.server.message(&crashed.thread, &crashed.id).await;
    let last = bin.server.finished(&crashed.thread, &crashed.id).await;
    assert_eq!(last["status"], "complete", "{last}");
    assert_eq!(last["continuations"], 1);
    assert!(last["error"].is_null(), "{last}");
    check_blocks(&crashed, &at_restart, &last);
    let messages = bin.server.messages(&crashed.thread).await;
    assert_eq!(messages.len(), 2, "the question and its one answer");

    let metrics = bin.server.client.get(format!("{}/metrics", bin.server.base)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("convo_continuations_total")
            && l.contains("reason=\"restart\"")
            && l.contains("outcome=\"continued\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );

    // The thread takes the next question.
    let next = bin.server.ask(&crashed.thread, "and now?").await;
    assert_eq!(bin.server.finished(&crashed.thread, &next).await["status"], "complete");
}

/// Tabs that come back after the restart: one whose last cursor lies past
/// the stored text gets `cursor_ahead`, then the message rebuilt from its
/// start and the continuation, and ends with exactly the stored final
/// message; one resuming at a cursor within the stored text gets exactly
/// the rest (the stored text after its cursor, then the continuation's
/// block). A tab with no cursor that joins while the answer still runs
/// gets it whole too (whether it joins in time is not asserted).
#[actix_web::test]
async fn after_a_crash_tabs_resume_the_continued_answer_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let crashed = crash_mid_answer(&db, SLOW).await;
    let id = crashed.id.clone();

    let bin = Binary::start(&db, SLOW).await;
    let mut fresh = bin.server.sse(&crashed.thread, None).await;
    let ready = fresh.next().await.unwrap();
    assert_eq!(ready.kind, "ready");
    // Streaming after `ready`: it was when the tab's replay was taken.
    let joined_while_running = bin.server.message(&crashed.thread, &id).await["status"] == "streaming";
    let at_restart = bin.server.message(&crashed.thread, &id).await;

    // A tab whose cursor lies past the stored text.
    let mut ahead = bin.server.sse(&crashed.thread, Some(&crashed.cursor())).await;
    let rest = ahead.until("message.completed").await;
    let kinds: Vec<&str> = rest.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[..2], ["ready", "error"], "{kinds:?}");
    assert_eq!(rest[1].data["code"], "cursor_ahead");
    assert_eq!(rest[2].kind, "message.block", "the message again, from its first block: {kinds:?}");
    assert_eq!((rest[2].data["block"].as_u64(), rest[3].data["offset"].as_u64()), (Some(0), Some(0)));
    assert_eq!(rest.last().unwrap().data["message_id"], id.as_str());
    assert_eq!(rest.last().unwrap().data["status"], "complete");

    let last = bin.server.message(&crashed.thread, &id).await;
    assert_eq!(last["status"], "complete");
    assert_eq!(last["continuations"], 1);
    check_blocks(&crashed, &at_restart, &last);
    // The client drops what it showed of the message and rebuilds it.
    let mut rebuilt = Transcript::default();
    rebuilt.apply_all(&rest[2..]);
    rebuilt.assert_matches(&last);
    let shown = |t: &Transcript| t.blocks.keys().filter(|(m, _)| *m == id).count();
    assert_eq!(shown(&rebuilt), blocks(&last).len(), "no block beyond the stored message's");

    // A tab resuming within the stored text: the last cursor it got at or
    // before the stored end.
    let stored_end = text(&at_restart, 0).len();
    let upto = crashed
        .seen
        .iter()
        .rposition(|e| e.kind == "message.delta" && offset_in_block_0(&e.id) <= stored_end)
        .expect("a delta within the stored text");
    let mut t = Transcript::default();
    t.apply_all(&crashed.seen[..=upto]);
    let mut resumed = bin.server.sse(&crashed.thread, Some(&crashed.seen[upto].id)).await;
    let rest = resumed.until("message.completed").await;
    assert_eq!(rest[0].kind, "ready");
    assert!(rest.iter().all(|e| e.kind != "error"), "{rest:?}");
    // Deltas continue each block at its offset (checked by `apply`).
    t.apply_all(&rest);
    t.assert_matches(&last);
    assert_eq!(shown(&t), blocks(&last).len(), "no block beyond the stored message's");
    assert_eq!(t.completed, [(id.clone(), "complete".to_owned())]);

    // The tab with no cursor.
    if joined_while_running {
        let rest = fresh.until("message.completed").await;
        assert!(rest.iter().any(|e| e.kind == "message.started" && e.data["message_id"] == id.as_str()), "{rest:?}");
        for continued in rest.iter().filter(|e| e.kind == "message.continued") {
            assert_eq!(
                (continued.data["attempt"].as_u64(), continued.data["reason"].as_str()),
                (Some(1), Some("restart"))
            );
        }
        let mut t = Transcript::default();
        t.apply_all(&rest);
        t.assert_matches(&last);
        assert_eq!(t.completed, [(id.clone(), "complete".to_owned())]);
    }
}

/// An answer cut longer ago than `--continue-max-age-ms` is not continued
/// at restart: it ends `interrupted` as before issue 28, with its stored
/// text, never continued.
#[actix_web::test]
async fn an_answer_cut_longer_ago_than_the_max_age_ends_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let crashed = crash_mid_answer(&db, SLOW).await;

    let too_old = [SLOW, &["--continue-max-age-ms", "1"]].concat();
    let bin = Binary::start(&db, &too_old).await;
    let last = bin.server.finished(&crashed.thread, &crashed.id).await;
    assert_eq!(last["status"], "interrupted", "{last}");
    assert_eq!(last["error"]["code"], "interrupted");
    assert_eq!(last["continuations"], 0);
    assert_eq!(blocks(&last).len(), 1, "nothing added: {last}");
    let saw = crashed.transcript().blocks[&(crashed.id.clone(), 0)].clone();
    assert!(!text(&last, 0).is_empty() && saw.starts_with(text(&last, 0)), "the stored text, kept");
    // And a tab that was past it is told so, then given the stored message.
    let mut ahead = bin.server.sse(&crashed.thread, Some(&crashed.cursor())).await;
    let rest = ahead.until("message.completed").await;
    assert_eq!(rest[1].data["code"], "cursor_ahead", "{rest:?}");
    assert!(rest.iter().all(|e| e.kind != "message.continued"));
    let mut t = Transcript::default();
    t.apply_all(&rest[2..]);
    t.assert_matches(&last);
    assert_eq!(rest.last().unwrap().data["status"], "interrupted");
}

/// With `--continue-max-attempts 1`, an answer killed twice (the second
/// time while its one continuation ran) is not continued again: the
/// second restart ends it `interrupted`, continued once, with the text
/// its continuation had stored kept.
#[actix_web::test]
async fn a_second_crash_after_the_one_continuation_allowed_ends_the_answer_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    // Long enough that neither the answer nor its continuation ends here.
    let flags = [
        "--sim-chunks",
        "2000",
        "--sim-interval-ms",
        "5",
        "--flush-interval-ms",
        "1000",
        "--continue-max-attempts",
        "1",
    ];
    let crashed = crash_mid_answer(&db, &flags).await;

    // The first restart continues it; a tab follows until the
    // continuation's own block streams, then two more transactions commit:
    // checkpoints holding the continuation's text (the one storing
    // `continuations`, sent as it began, may be the first).
    let mut bin = Binary::start(&db, &flags).await;
    let mut sse = bin.server.sse(&crashed.thread, None).await;
    let mut seen = Vec::new();
    loop {
        let ev = sse.next().await.unwrap();
        assert_ne!(ev.kind, "message.completed", "the continuation is still streaming");
        let in_new_block = ev.kind == "message.delta" && ev.data["block"].as_u64() >= Some(1);
        seen.push(ev);
        if in_new_block {
            break;
        }
    }
    let mark = transactions(&bin.server.get_json("/admin/stats").await);
    past_a_checkpoint(&bin, &mut sse, &mut seen, mark + 2, 5).await;
    let streaming = bin.server.message(&crashed.thread, &crashed.id).await;
    assert_eq!((streaming["status"].as_str(), streaming["continuations"].as_u64()), (Some("streaming"), Some(1)));
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();

    // (Shorter answers for the new question below; the cut one is not
    // asked again.)
    let bin = Binary::start(&db, &[SLOW, &["--continue-max-attempts", "1"]].concat()).await;
    let last = bin.server.finished(&crashed.thread, &crashed.id).await;
    assert_eq!(last["status"], "interrupted", "{last}");
    assert_eq!(last["error"]["code"], "interrupted");
    assert_eq!(last["continuations"], 1, "the one continuation taken, none more");
    assert_eq!(blocks(&last).len(), 2, "the stored block and the continuation's: {last}");
    assert!(!text(&last, 1).is_empty(), "the continuation's checkpointed text is kept");
    let saw = crashed.transcript().blocks[&(crashed.id.clone(), 0)].clone();
    assert!(saw.starts_with(text(&last, 0)), "the first run's stored text, as it was");
    // It stays so: the thread takes a new question, and that is answered.
    let next = bin.server.ask(&crashed.thread, "again").await;
    assert_eq!(bin.server.finished(&crashed.thread, &next).await["status"], "complete");
    let again = bin.server.message(&crashed.thread, &crashed.id).await;
    assert_eq!((again["status"].as_str(), again["continuations"].as_u64()), (Some("interrupted"), Some(1)));
}

/// The metric of a crash's answer not continued at restart: counted with
/// reason `restart` and why (`too_old` here), as every other refusal is.
#[actix_web::test]
async fn an_answer_too_old_to_continue_at_restart_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let crashed = crash_mid_answer(&db, SLOW).await;
    let bin = Binary::start(&db, &[SLOW, &["--continue-max-age-ms", "1"]].concat()).await;
    assert_eq!(bin.server.finished(&crashed.thread, &crashed.id).await["status"], "interrupted");
    let metrics = bin.server.client.get(format!("{}/metrics", bin.server.base)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("convo_continuations_total")
            && l.contains("reason=\"restart\"")
            && l.contains("outcome=\"too_old\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
}

/// A tab that saw into a block the crash lost entirely (the text block
/// after a stored thinking block) has a cursor at a block index the
/// continuation then fills with other bytes (here the retried thinking):
/// it must still get `cursor_ahead` and the message rebuilt, never the
/// new block's bytes from its old offset.
#[actix_web::test]
async fn after_a_crash_a_cursor_in_a_block_never_stored_gets_cursor_ahead_once_continued() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    // Thinking for about 3 s (checkpoints store it), then text: the kill
    // comes a few deltas into the text, most likely before the next
    // checkpoint (if one stored some text, the cursor is past a block's
    // stored end: `cursor_ahead` too).
    let flags = ["--sim-chunks", "2000", "--sim-interval-ms", "5", "--flush-interval-ms", "1000", "--sim-thinking"];
    let mut bin = Binary::start(&db, &flags).await;
    let thread = bin.server.thread().await;
    let mut sse = bin.server.sse(&thread, None).await;
    let id = bin.server.ask(&thread, "think first").await;
    let mut seen = Vec::new();
    while seen.iter().filter(|e: &&Ev| e.kind == "message.delta" && e.data["block"] == 1).count() < 3 {
        let ev = sse.next().await.unwrap();
        assert_ne!(ev.kind, "message.completed");
        seen.push(ev);
    }
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    let cursor = seen.last().unwrap().id.clone();
    let mut before = Transcript::default();
    before.apply_all(&seen);
    assert_eq!(before.kinds[&(id.clone(), 1)], "text");

    // A shorter answer for the continuation (a plain retry: thinking
    // without its signature is not sent back), over by the time the tab
    // comes back.
    let restart = ["--sim-chunks", "400", "--sim-interval-ms", "5", "--flush-interval-ms", "1000", "--sim-thinking"];
    let bin = Binary::start(&db, &restart).await;
    let last = bin.server.finished(&thread, &id).await;
    assert_eq!((last["status"].as_str(), last["continuations"].as_u64()), (Some("complete"), Some(1)));
    let mut again = bin.server.sse(&thread, Some(&cursor)).await;
    let mut rest = vec![again.next().await.unwrap()];
    while rest.last().unwrap().kind != "message.completed" {
        match tokio::time::timeout(std::time::Duration::from_secs(3), again.next()).await {
            Ok(Some(ev)) => rest.push(ev),
            _ => panic!("no message.completed after {rest:?}"),
        }
    }
    let kinds: Vec<&str> = rest.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[..2], ["ready", "error"], "{rest:?}");
    assert_eq!(rest[1].data["code"], "cursor_ahead");
    let mut t = Transcript::default();
    t.apply_all(&rest[2..]);
    t.assert_matches(&last);
    for (i, b) in blocks(&last).iter().enumerate() {
        assert_eq!(t.kinds[&(id.clone(), i as u64)], b["kind"].as_str().unwrap(), "block {i}'s kind");
    }
}
