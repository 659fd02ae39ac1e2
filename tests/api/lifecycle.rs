//! The real binary under `kill -9` and SIGTERM: what a client was promised
//! survives, and the service comes back ready for the next message.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    binary::Binary,
    support::{database_url, Events as _, Transcript},
};

const SLOW: &[&str] = &["--sim-chunks", "400", "--sim-interval-ms", "10", "--flush-interval-ms", "20"];

/// With continuations off (`--continue-max-attempts 0` at restart: the
/// behaviour before issue 28), an answer cut by `kill -9` ends
/// `interrupted` at restart with its checkpointed text kept. (With them on,
/// the default, it goes on: `continuation_restart.rs`.)
#[actix_web::test]
async fn kill_9_mid_generation_leaves_an_interrupted_message_and_a_usable_thread() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut bin = Binary::start(&db, SLOW).await;
    let thread = bin.server.thread().await;
    let mut sse = bin.server.sse(&thread, None).await;
    let id = bin.server.ask(&thread, "will you survive?").await;
    let mut seen = Transcript::default();
    let mut deltas = 0;
    while deltas < 30 {
        let ev = sse.next().await.unwrap();
        deltas += (ev.kind == "message.delta") as usize;
        seen.apply(&ev);
    }
    // A checkpoint holding text is committed before the kill: two more
    // transactions after the 30th delta, however slow the disk.
    let transactions = |s: Value| s["persistence"]["transactions"].as_u64().unwrap();
    let mark = transactions(bin.server.get_json("/admin/stats").await);
    crate::support::eventually(|| async {
        let s = bin.server.get_json("/admin/stats").await;
        (s["persistence"]["queue_depth"] == 0 && transactions(s.clone()) >= mark + 2).then_some(())
    })
    .await;
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    while let Some(ev) = sse.try_next().await {
        seen.apply(&ev);
    }

    let bin = Binary::start(&db, &["--continue-max-attempts", "0"]).await;
    let messages = bin.server.messages(&thread).await;
    assert_eq!(messages.len(), 2, "the accepted user message and its answer");
    assert_eq!(messages[0]["content"], "will you survive?");
    let answer = &messages[1];
    assert_eq!(answer["id"], id);
    assert_eq!(answer["status"], "interrupted");
    assert_eq!(answer["error"]["code"], "interrupted");
    assert_eq!(answer["error"]["message"], "the service stopped while this message streamed");
    let stored = answer["content"].as_str().unwrap();
    let streamed = seen.blocks.get(&(id.clone(), 0)).unwrap();
    assert!(!stored.is_empty(), "a checkpoint was written");
    assert!(
        streamed.starts_with(stored) || stored.starts_with(streamed.as_str()),
        "the checkpoint is the streamed text, at most a flush interval behind"
    );
    // The thread takes a new message and answers it.
    let next = bin.server.ask(&thread, "again").await;
    assert_eq!(bin.server.finished(&thread, &next).await["status"], "complete");
    let mut bin = bin;
    bin.child.kill().unwrap();
}

#[actix_web::test]
async fn keys_and_tokens_never_reach_the_logs() {
    use crate::access::ADMIN;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut bin = Binary::start(&db, &["--admin-token", ADMIN, "--log-filter", "debug"]).await;
    let (c, base) = (bin.server.client.clone(), bin.server.base.clone());
    let (pid, key) = bin.server.project_with_key(ADMIN).await;
    let t = bin.server.post_json_as(&key, &format!("/v1/projects/{pid}/threads"), Some(json!({}))).await;
    let thread = format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap());
    let tok = bin.server.post_json_as(&key, &format!("{thread}/stream-token"), None).await;
    let token = tok["token"].as_str().unwrap().to_owned();
    let mut sse = crate::support::Sse::open(c.get(format!("{base}{thread}/events?token={token}"))).await;
    assert_eq!(sse.next().await.unwrap().kind, "ready");
    // Refusals are logged too: they must not echo what was sent.
    let _ = c.get(format!("{base}{thread}")).bearer_auth("ck_not-a-real-key-but-secret").send().await;
    let _ = c.get(format!("{base}{thread}/events?token=forged.{token}")).send().await;
    drop(sse);
    // Nor do metrics, stats or error bodies.
    let mut exposed = vec![c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap()];
    exposed.push(c.get(format!("{base}/admin/stats")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap());
    exposed.push(
        c.get(format!("{base}{thread}"))
            .bearer_auth("ck_not-a-real-key-but-secret")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    exposed
        .push(c.get(format!("{base}{thread}/events?token=forged.{token}")).send().await.unwrap().text().await.unwrap());
    exposed.push(c.get(format!("{base}{thread}/messages?token={token}")).send().await.unwrap().text().await.unwrap());
    for text in &exposed {
        for secret in [ADMIN, key.as_str(), token.as_str(), "ck_not-a-real-key-but-secret"] {
            assert!(!text.contains(secret), "a secret in an answer: {text}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.child.kill().unwrap();
    let _ = bin.child.wait();
    let logs = bin.logs.lock().unwrap().join("\n");
    assert!(logs.lines().count() > 5, "the run logged something");
    for secret in [ADMIN, key.as_str(), token.as_str(), "ck_not-a-real-key-but-secret"] {
        let leak: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).take(2).collect();
        assert!(leak.is_empty(), "a secret reached the logs: {leak:?}");
    }
}

/// After `kill -9`, a tab's cursor may lie past what was stored (up to a
/// flush interval of text is lost, as documented). Resuming from it gets
/// `cursor_ahead`, then the message again from its start and its
/// `message.completed`: a client that rebuilds the message from those ends
/// with exactly the stored text. Both ways a cursor can be ahead: past a
/// block's stored end, and at a block that was never stored. Continuations
/// are off at restart (`--continue-max-attempts 0`, the behaviour before
/// issue 28), so the stored message is the whole answer, `interrupted`; the
/// same with the answer continued is in `continuation_restart.rs`.
#[actix_web::test]
async fn a_cursor_past_the_stored_text_after_a_crash_gets_cursor_ahead_and_the_stored_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    // Checkpoints far apart: a kill loses the text since the insert.
    let slow = ["--sim-chunks", "400", "--sim-interval-ms", "10", "--flush-interval-ms", "60000", "--sim-thinking"];
    for stop_at in ["past a block's end", "at a block never stored"] {
        let mut bin = Binary::start(&db, &slow).await;
        let thread = bin.server.thread().await;
        let mut sse = bin.server.sse(&thread, None).await;
        let id = bin.server.ask(&thread, "crash now").await;
        let mut seen = Vec::new();
        loop {
            let ev = sse.next().await.unwrap();
            let block = ev.data["block"].as_u64();
            let done = match stop_at {
                "past a block's end" => ev.kind == "message.delta" && seen.len() > 10,
                _ => ev.kind == "message.block" && block == Some(1),
            };
            seen.push(ev);
            if done {
                break;
            }
        }
        bin.child.kill().unwrap();
        bin.child.wait().unwrap();
        let cursor = seen.last().unwrap().id.clone();

        let mut bin = Binary::start(&db, &["--continue-max-attempts", "0"]).await;
        let stored = bin.server.message(&thread, &id).await;
        assert_eq!(stored["status"], "interrupted");
        assert_eq!(stored["error"]["code"], "interrupted", "{stop_at}");
        let mut again = bin.server.sse(&thread, Some(&cursor)).await;
        let rest = again.until("message.completed").await;
        let kinds: Vec<&str> = rest.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds[..2], ["ready", "error"], "{stop_at}: {kinds:?}");
        assert_eq!(rest[1].data["code"], "cursor_ahead", "{stop_at}");
        // The client drops what it showed of the message and rebuilds it.
        let mut t = Transcript::default();
        t.apply_all(&rest[2..]);
        t.assert_matches(&stored);
        let blocks = stored["blocks"].as_array().unwrap().len();
        let announced = rest.iter().filter(|e| e.kind == "message.block").count();
        assert_eq!(announced, blocks, "{stop_at}: every stored block, and no other, is announced again");
        assert_eq!(rest.last().unwrap().data["status"], "interrupted");
        bin.child.kill().unwrap();
    }
}
