//! What operators see: admin stats, the actor table, /metrics, health,
//! and group commit keeping transactions far below chunks.

use std::collections::HashMap;

use serde_json::Value;

use crate::support::{eventually, Events as _, Server, Ws};

pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} in:\n{text}"))
}

async fn subscribers(server: &Server) -> (u64, u64, u64) {
    let s = server.get_json("/admin/stats").await;
    (
        s["subscribers"]["sse"].as_u64().unwrap(),
        s["subscribers"]["ws"].as_u64().unwrap(),
        s["threads"]["live"].as_u64().unwrap(),
    )
}

#[actix_web::test]
async fn stats_and_metrics_follow_subscribers_and_actors_up_and_down() {
    let server = Server::temp(&["--idle-timeout-ms", "300"]).await;
    let thread = server.thread().await;
    assert_eq!(subscribers(&server).await, (0, 0, 0));

    let mut a = server.sse(&thread, None).await;
    let mut b = server.sse(&thread, None).await;
    let mut w = Ws::open(&server.base, &thread, None).await;
    a.next().await;
    b.next().await;
    w.next().await;
    assert_eq!(subscribers(&server).await, (2, 1, 1));
    let text = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "convo_subscribers{transport=\"sse\"}"), 2.0);
    assert_eq!(metric(&text, "convo_subscribers{transport=\"ws\"}"), 1.0);
    assert_eq!(metric(&text, "convo_threads_live"), 1.0);

    let rows = server.get_json("/admin/threads").await;
    let row = &rows["data"][0];
    assert_eq!(row["subscribers"], 3);
    assert_eq!(row["generating"], false);
    let tid = thread.rsplit('/').next().unwrap();
    assert_eq!(row["thread_id"], tid);
    let detail = server.get_json(&format!("/admin/threads/{tid}")).await;
    assert_eq!(detail["subscribers"], 3);

    drop(a);
    drop(w);
    eventually(|| async { (subscribers(&server).await == (1, 0, 1)).then_some(()) }).await;
    drop(b);
    // No subscribers and no generation: the actor stops after its idle timeout.
    eventually(|| async { (subscribers(&server).await == (0, 0, 0)).then_some(()) }).await;
    let text = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "convo_threads_live"), 0.0);
    assert_eq!(server.client.get(format!("{}/admin/threads/{tid}", server.base)).send().await.unwrap().status(), 404);
}

#[actix_web::test]
async fn chunks_are_counted_in_and_out() {
    let server = Server::temp(&["--sim-chunks", "25"]).await;
    let thread = server.thread().await;
    let mut a = server.sse(&thread, None).await;
    let mut b = server.sse(&thread, None).await;
    let id = server.ask(&thread, "count").await;
    a.until("message.completed").await;
    b.until("message.completed").await;
    server.finished(&thread, &id).await;
    let s = server.get_json("/admin/stats").await;
    assert_eq!(s["chunks"]["in"], 25);
    assert_eq!(s["chunks"]["out"], 50);
    let text = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "convo_chunks_in_total"), 25.0);
    assert!(text.contains("convo_persistence_batch_seconds_bucket"));
}

#[actix_web::test]
async fn a_200_chunk_generation_is_written_in_a_few_transactions() {
    let server = Server::temp(&["--sim-chunks", "200", "--sim-interval-ms", "1", "--flush-interval-ms", "50"]).await;
    let thread = server.thread().await;
    let before = server.get_json("/admin/stats").await["persistence"]["transactions"].as_u64().unwrap();
    let started = std::time::Instant::now();
    let id = server.ask(&thread, "many chunks").await;
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["content"].as_str().unwrap().chars().count(), 200 * 8);
    // The final state is committed, not only held by the actor.
    let stats = eventually(|| async {
        let s = server.get_json("/admin/stats").await;
        (s["persistence"]["queue_depth"] == 0).then_some(s)
    })
    .await;
    let after = stats["persistence"]["transactions"].as_u64().unwrap();
    let used = after - before;
    assert!(used >= 2, "the insert and the final state were written");
    // One per flush interval at most (plus the insert and the final
    // write), however long a loaded machine took: never one per chunk.
    let intervals = (started.elapsed().as_millis() / 50) as u64;
    assert!(used <= intervals + 4 && used < 200, "200 chunks took {used} transactions in {intervals} intervals");
    assert!(stats["persistence"]["rows"].as_u64().unwrap() >= 3);
}

#[actix_web::test]
async fn an_operator_can_stop_a_live_thread_actor() {
    let server = Server::temp(&["--sim-chunks", "500", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let tid = thread.rsplit('/').next().unwrap().to_owned();
    let mut sse = server.sse(&thread, None).await;
    let id = server.ask(&thread, "stop me").await;
    sse.until("message.delta").await;
    let detail = server.get_json(&format!("/admin/threads/{tid}")).await;
    assert_eq!(detail["generating"], true);
    assert_eq!(detail["active_message_id"], id.as_str());
    let r = server.client.delete(format!("{}/admin/threads/{tid}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let evs = sse.until("error").await;
    assert_eq!(evs.last().unwrap().data["code"], "thread_stopped");
    let completed: Vec<&Value> = evs.iter().filter(|e| e.kind == "message.completed").map(|e| &e.data).collect();
    assert_eq!(completed[0]["status"], "cancelled");
    assert_eq!(server.finished(&thread, &id).await["status"], "cancelled");
}

#[actix_web::test]
async fn health_and_readiness() {
    let server = Server::temp(&[]).await;
    let mut seen = HashMap::new();
    for path in ["/healthz", "/readyz"] {
        seen.insert(path, server.client.get(format!("{}{path}", server.base)).send().await.unwrap().status().as_u16());
    }
    assert_eq!(seen["/healthz"], 200);
    assert_eq!(seen["/readyz"], 200);
}
