//! Webhooks (API.md, "Notifications"), black-box: a real server (or the
//! real binary) with the outbound guard open to loopback, and local
//! receivers (`FakeUpstream`) that record what they are sent. A project's
//! webhooks are added (their secret shown once), listed and removed, bad
//! input gets 400 and unknown ones 404; an answer that ends is delivered,
//! signed, with the contract's body; a receiver that fails is tried again
//! with backoff, then the delivery is `failed`, and the retry route sends
//! it again; a receiver that never answers does not hold up another's
//! deliveries; a `kill -9` after the commit loses no notification; a
//! `when: unwatched` webhook is not sent while someone watches the thread.
//! With three nodes (needs `TEST_DATABASE_URL` and `TEST_REDIS_URL`) each
//! delivery is sent once, by one node; a row another writer makes due is
//! sent when Postgres announces it and not before; a node that dies
//! mid-delivery leaves it to another once its lease ends.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    binary::{signal, Binary},
    cluster::Cluster,
    fake_upstream::{FakeUpstream, Reply},
    support::{database_url, error_code, eventually, Server},
};

fn status(code: u16) -> Reply {
    Reply::Status { code, body: "{}".into(), retry_after: None }
}

/// A project of `server` and a thread of it: (pid, thread path).
async fn project(server: &Server) -> (String, String) {
    let thread = server.thread().await;
    let pid = thread.split('/').nth(3).unwrap().to_owned();
    (pid, thread)
}

/// Adds a webhook; the 201's body.
async fn add(server: &Server, pid: &str, body: Value) -> Value {
    let r = server.client.post(format!("{}/v1/projects/{pid}/webhooks", server.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn deliveries(server: &Server, pid: &str, hook: &str) -> Vec<Value> {
    let page = server.get_json(&format!("/v1/projects/{pid}/webhooks/{hook}/deliveries")).await;
    page["data"].as_array().unwrap_or_else(|| panic!("{page}")).clone()
}

/// Waits until `receiver` has been sent `n` requests; them.
async fn hits(receiver: &FakeUpstream, n: usize) -> Vec<crate::fake_upstream::Recorded> {
    eventually(|| async {
        let r = receiver.requests();
        (r.len() >= n).then_some(r)
    })
    .await
}

#[actix_web::test]
async fn webhooks_are_added_listed_and_removed_and_bad_input_is_refused() {
    let server = Server::temp(&["--allow-private-urls"]).await;
    let (pid, _) = project(&server).await;
    let created = add(&server, &pid, json!({"url": "http://127.0.0.1:9/hook", "events": ["message.completed"]})).await;
    assert_eq!(created["url"], "http://127.0.0.1:9/hook");
    assert_eq!(created["events"], json!(["message.completed"]));
    assert_eq!(created["when"], "always");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let id = created["id"].as_str().unwrap();
    let second = add(
        &server,
        &pid,
        json!({"url": "http://127.0.0.1:9/b", "events": ["message.awaiting", "message.completed"], "when": "unwatched"}),
    )
    .await;
    assert_eq!(second["when"], "unwatched");

    let list = server.get_json(&format!("/v1/projects/{pid}/webhooks")).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], id);
    assert!(data.iter().all(|w| w.get("secret").is_none()), "no secret in a list: {list}");

    let url = format!("{}/v1/projects/{pid}/webhooks", server.base);
    for bad in [
        json!({"url": "http://127.0.0.1:9/h", "events": ["message.started"]}),
        json!({"url": "http://127.0.0.1:9/h", "events": []}),
        json!({"url": "http://127.0.0.1:9/h"}),
        json!({"url": "http://127.0.0.1:9/h", "events": ["message.completed"], "when": "sometimes"}),
        json!({"url": "not a url", "events": ["message.completed"]}),
        json!({"url": "ftp://example.com/h", "events": ["message.completed"]}),
    ] {
        let r = server.client.post(&url).json(&bad).send().await.unwrap();
        assert_eq!(error_code(r).await, (400, "bad_request".to_owned()), "{bad}");
    }

    let delete = |id: String| server.client.delete(format!("{url}/{id}")).send();
    assert_eq!(delete(id.to_owned()).await.unwrap().status(), 204);
    assert_eq!(error_code(delete(id.to_owned()).await.unwrap()).await, (404, "not_found".to_owned()));
    let gone = server.client.get(format!("{url}/{id}/deliveries")).send().await.unwrap();
    assert_eq!(error_code(gone).await.0, 404);
    let unknown = uuid::Uuid::now_v7();
    let r = server.client.post(format!("{url}/{}/deliveries/{unknown}/retry", second["id"].as_str().unwrap())).send();
    assert_eq!(error_code(r.await.unwrap()).await.0, 404);
    assert_eq!(server.get_json(&format!("/v1/projects/{pid}/webhooks")).await["data"].as_array().unwrap().len(), 1);

    // Without --allow-private-urls, an inside address or plain http is
    // refused by the outbound guard.
    let guarded = Server::temp(&[]).await;
    let (pid, _) = project(&guarded).await;
    for url in ["https://127.0.0.1/h", "https://169.254.169.254/latest", "https://10.1.2.3/h", "http://example.com/h"] {
        let r = guarded
            .client
            .post(format!("{}/v1/projects/{pid}/webhooks", guarded.base))
            .json(&json!({"url": url, "events": ["message.completed"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (400, "bad_request".to_owned()), "{url}");
    }
}

#[actix_web::test]
async fn an_answer_that_ends_is_delivered_once_signed_with_the_contracts_body() {
    let receiver = FakeUpstream::start(vec![status(204)]).await;
    let server = Server::temp(&["--allow-private-urls"]).await;
    let (pid, thread) = project(&server).await;
    let hook =
        add(&server, &pid, json!({"url": format!("{}/hook", receiver.url), "events": ["message.completed"]})).await;
    let (hook_id, secret) = (hook["id"].as_str().unwrap(), hook["secret"].as_str().unwrap());

    let id = server.ask(&thread, "hello").await;
    let message = server.ended(&thread, &id).await;
    let sent = hits(&receiver, 1).await;
    let request = &sent[0];
    assert_eq!(request.path, "/hook");
    let body = &request.body;
    assert_eq!(body["type"], "message.completed");
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok(), "{body}");
    let data = &body["data"];
    assert_eq!(data["project_id"], pid);
    assert_eq!(data["thread_id"], thread.rsplit('/').next().unwrap());
    assert_eq!(data["message_id"], id);
    assert_eq!(data["status"], "complete");
    assert_eq!(data["stop_reason"], message["stop_reason"]);
    assert_eq!(data["usage"], message["usage"]);
    assert_eq!(data["error"], Value::Null);
    let content = message["content"].as_str().unwrap();
    let preview: String = content.chars().take(200).collect();
    assert_eq!(data["preview"], preview);
    assert!(data.get("pending").is_none());

    // Standard Webhooks headers, signed with the webhook's secret.
    let webhook_id = request.header("webhook-id").unwrap();
    let timestamp: i64 = request.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let expected = convo::signing::signature(&[secret.to_owned()], webhook_id, timestamp, body.to_string().as_bytes());
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));

    let list = eventually(|| async {
        let list = deliveries(&server, &pid, hook_id).await;
        (list.first().is_some_and(|d| d["status"] == "delivered")).then_some(list)
    })
    .await;
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(
        (d["type"].as_str(), d["attempts"].as_u64(), d["last_status_code"].as_u64()),
        (Some("message.completed"), Some(1), Some(204))
    );
    assert_eq!(d["event_id"], webhook_id);
    assert_eq!(d["next_attempt_at"], Value::Null);
    let detail = server
        .get_json(&format!("/v1/projects/{pid}/webhooks/{hook_id}/deliveries/{}", d["id"].as_str().unwrap()))
        .await;
    let log = detail["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0]["status_code"].as_u64(), &log[0]["error"]), (Some(204), &Value::Null));

    // Another answer: another event; a webhook deleted gets nothing more.
    let second = server.ask(&thread, "again").await;
    server.ended(&thread, &second).await;
    let sent = hits(&receiver, 2).await;
    assert_ne!(sent[1].header("webhook-id"), Some(webhook_id));
    assert_eq!(sent[1].body["data"]["message_id"], second);
    eventually(|| async {
        let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
        metrics.contains("convo_notifications_sent_total 2").then_some(())
    })
    .await;
    server.client.delete(format!("{}/v1/projects/{pid}/webhooks/{hook_id}", server.base)).send().await.unwrap();
    let third = server.ask(&thread, "and again").await;
    server.ended(&thread, &third).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 2, "a removed webhook is sent nothing");
}

#[actix_web::test]
async fn a_failing_receiver_is_retried_with_backoff_then_failed_and_the_retry_route_sends_again() {
    let receiver = FakeUpstream::start(vec![status(500), status(503), status(429), status(200)]).await;
    let server = Server::temp(&[
        "--allow-private-urls",
        "--notify-max-attempts",
        "3",
        "--notify-retry-min-ms",
        "200",
        "--notify-retry-max-ms",
        "400",
    ])
    .await;
    let (pid, thread) = project(&server).await;
    let hook = add(&server, &pid, json!({"url": receiver.url, "events": ["message.completed"]})).await;
    let hook_id = hook["id"].as_str().unwrap();
    let id = server.ask(&thread, "hello").await;
    server.ended(&thread, &id).await;

    let failed = eventually(|| async {
        let list = deliveries(&server, &pid, hook_id).await;
        (list.first().is_some_and(|d| d["status"] == "failed")).then_some(list)
    })
    .await;
    let d = &failed[0];
    assert_eq!((d["attempts"].as_u64(), d["last_status_code"].as_u64()), (Some(3), Some(429)));
    let sent = receiver.requests();
    assert_eq!(sent.len(), 3);
    let ids: Vec<_> = sent.iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one webhook-id on every attempt: {ids:?}");
    assert_eq!(ids[0], d["event_id"]);
    // Backoff: at least half of 200 ms, then of 400 ms (jitter).
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(100) && gaps[1] >= Duration::from_millis(200), "{gaps:?}");
    let did = d["id"].as_str().unwrap();
    let detail = server.get_json(&format!("/v1/projects/{pid}/webhooks/{hook_id}/deliveries/{did}")).await;
    let codes: Vec<_> = detail["attempt_log"].as_array().unwrap().iter().map(|a| a["status_code"].as_u64()).collect();
    assert_eq!(codes, [Some(500), Some(503), Some(429)]);
    assert!(detail["attempt_log"][0]["error"].as_str().unwrap().contains("500"));
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("convo_notifications_retried_total 2"), "{metrics}");
    assert!(metrics.contains("convo_notifications_failed_total 1"), "{metrics}");

    // The retry route sends it again now (the receiver takes it).
    let started = Instant::now();
    let r = server
        .client
        .post(format!("{}/v1/projects/{pid}/webhooks/{hook_id}/deliveries/{did}/retry", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let sent = hits(&receiver, 4).await;
    assert!(started.elapsed() < Duration::from_secs(2), "sent at once");
    assert_eq!(sent[3].header("webhook-id").unwrap(), ids[0]);
    let done = eventually(|| async {
        let d = server.get_json(&format!("/v1/projects/{pid}/webhooks/{hook_id}/deliveries/{did}")).await;
        (d["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!((done["attempts"].as_u64(), done["last_status_code"].as_u64()), (Some(4), Some(200)));
    let stats = server.get_json("/admin/stats").await;
    assert_eq!(stats["outbox"]["depth"], 0, "{stats}");
}

#[actix_web::test]
async fn a_receiver_that_never_answers_holds_up_no_other_delivery_nor_the_answers() {
    let dead = FakeUpstream::start(vec![Reply::Silent]).await;
    let live = FakeUpstream::start(vec![status(200)]).await;
    // Four slots, at most two to one target: the dead receiver's
    // deliveries never take them all.
    let flags = ["--allow-private-urls", "--notify-timeout-ms", "20000", "--notify-concurrency", "4"];
    let server = Server::temp(&[&flags[..], &["--notify-per-target", "2"]].concat()).await;
    let (pid, thread) = project(&server).await;
    let events = json!(["message.completed"]);
    add(&server, &pid, json!({"url": dead.url, "events": events})).await;
    add(&server, &pid, json!({"url": live.url, "events": events})).await;
    let started = Instant::now();
    for n in 1..=5 {
        let id = server.ask(&thread, &format!("question {n}")).await;
        server.ended(&thread, &id).await;
        let sent = hits(&live, n).await;
        assert_eq!(sent[n - 1].body["data"]["message_id"], id);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // The dead receiver holds two attempts open meanwhile; its other
    // three deliveries wait for a slot of its share.
    hits(&dead, 2).await;
    eventually(|| async {
        let stats = server.get_json("/admin/stats").await;
        (stats["outbox"]["depth"] == 5 && stats["outbox"]["in_flight"] == 2).then_some(())
    })
    .await;
    assert_eq!(dead.requests().len(), 2);
}

/// The binary is killed (-9) while its receiver holds the delivery open:
/// the outbox row committed with the answer is sent again after a restart.
#[actix_web::test]
async fn a_kill_9_after_the_commit_loses_no_notification() {
    let receiver = FakeUpstream::start(vec![Reply::Silent, status(200)]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let flags = ["--allow-private-urls"];
    let bin = Binary::start(&db, &flags).await;
    let (pid, thread) = project(&bin.server).await;
    let hook = add(&bin.server, &pid, json!({"url": receiver.url, "events": ["message.completed"]})).await;
    let id = bin.server.ask(&thread, "hello").await;
    bin.server.ended(&thread, &id).await;
    let first = hits(&receiver, 1).await;
    signal(&bin.child, "-KILL");
    drop(bin);

    let bin = Binary::start(&db, &flags).await;
    let sent = hits(&receiver, 2).await;
    assert_eq!(sent[1].header("webhook-id"), first[0].header("webhook-id"), "the same event again");
    assert_eq!(sent[1].body["data"]["message_id"], id);
    let hook_id = hook["id"].as_str().unwrap();
    let list = eventually(|| async {
        let list = deliveries(&bin.server, &pid, hook_id).await;
        (list.first().is_some_and(|d| d["status"] == "delivered")).then_some(list)
    })
    .await;
    assert_eq!(list.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 2, "sent once more, not again and again");
}

/// An answer still streaming when the process is killed (-9) becomes
/// `interrupted` at the next start, and that is announced too.
#[actix_web::test]
async fn an_answer_cut_off_by_a_kill_9_is_announced_interrupted_after_the_restart() {
    let receiver = FakeUpstream::start(vec![status(200)]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let bin = Binary::start(&db, &["--allow-private-urls", "--sim-chunks", "500", "--sim-interval-ms", "20"]).await;
    let (pid, thread) = project(&bin.server).await;
    add(&bin.server, &pid, json!({"url": receiver.url, "events": ["message.completed"]})).await;
    let id = bin.server.ask(&thread, "a long one").await;
    eventually(|| async {
        let m = bin.server.message(&thread, &id).await;
        (m["status"] == "streaming" && m["content"].as_str().is_some_and(|c| !c.is_empty())).then_some(())
    })
    .await;
    signal(&bin.child, "-KILL");
    drop(bin);
    assert!(receiver.requests().is_empty(), "nothing ended before the kill");

    let bin = Binary::start(&db, &["--allow-private-urls", "--continue-max-attempts", "0"]).await;
    let sent = hits(&receiver, 1).await;
    let data = &sent[0].body["data"];
    assert_eq!(sent[0].body["type"], "message.completed");
    assert_eq!(data["message_id"], id);
    assert_eq!(data["status"], "interrupted");
    assert!(data["error"]["code"].is_string(), "{data}");
    let message = bin.server.message(&thread, &id).await;
    assert_eq!(message["status"], "interrupted");
    let preview: String = message["content"].as_str().unwrap().chars().take(200).collect();
    assert_eq!(data["preview"], preview);
}

#[actix_web::test]
async fn an_unwatched_webhook_is_not_sent_while_someone_watches_the_thread() {
    let receiver = FakeUpstream::start(vec![status(200)]).await;
    let always = FakeUpstream::start(vec![status(200)]).await;
    let server = Server::temp(&["--allow-private-urls", "--notify-unwatched-delay-ms", "400"]).await;
    let (pid, thread) = project(&server).await;
    let hook =
        add(&server, &pid, json!({"url": receiver.url, "events": ["message.completed"], "when": "unwatched"})).await;
    add(&server, &pid, json!({"url": always.url, "events": ["message.completed"]})).await;

    // Watched: nothing is sent (and the delivery is dropped).
    let sse = server.sse(&thread, None).await;
    eventually(|| async {
        let stats = server.get_json("/admin/stats").await;
        (stats["subscribers"]["total"] == 1).then_some(())
    })
    .await;
    let id = server.ask(&thread, "watched").await;
    server.ended(&thread, &id).await;
    hits(&always, 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(receiver.requests().is_empty(), "sent while watched");
    assert!(deliveries(&server, &pid, hook["id"].as_str().unwrap()).await.is_empty());

    // Nobody watches: sent after the delay, not before.
    drop(sse);
    eventually(|| async {
        let stats = server.get_json("/admin/stats").await;
        (stats["subscribers"]["total"] == 0).then_some(())
    })
    .await;
    let asked = Instant::now();
    let id = server.ask(&thread, "unwatched").await;
    let sent = hits(&receiver, 1).await;
    assert!(asked.elapsed() >= Duration::from_millis(400), "{:?}", asked.elapsed());
    assert_eq!(sent[0].body["data"]["message_id"], id);
}

/// Three nodes: every answer's delivery is sent once, by one of them; a
/// delivery made due by another writer is sent as soon as it is announced
/// (Postgres NOTIFY) and not before: nothing polls.
#[actix_web::test]
async fn in_a_cluster_each_delivery_is_sent_once_and_notify_wakes_the_senders() {
    let Some(cluster) = Cluster::start(3, None, &["--sim-chunks", "5", "--allow-private-urls"]).await else { return };
    let receiver = FakeUpstream::start(vec![status(200)]).await;
    let (pid, _) = project(cluster.node(0)).await;
    let hook = add(cluster.node(0), &pid, json!({"url": receiver.url, "events": ["message.completed"]})).await;
    let hook_id = hook["id"].as_str().unwrap();
    let mut asked = Vec::new();
    for i in 0..6 {
        let node = cluster.node(i % 3);
        let t = node.post_json(&format!("/v1/projects/{pid}/threads"), json!({})).await;
        let thread = format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap());
        asked.push(node.ask(&thread, &format!("question {i}")).await);
    }
    hits(&receiver, 6).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = receiver.requests();
    assert_eq!(sent.len(), 6, "each delivery once");
    let mut ids: Vec<&str> = sent.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "one request per event");
    let mut messages: Vec<String> =
        sent.iter().map(|r| r.body["data"]["message_id"].as_str().unwrap().to_owned()).collect();
    messages.sort();
    asked.sort();
    assert_eq!(messages, asked);

    // Made due by another writer, unannounced: nobody sends it.
    let list = eventually(|| async {
        let list = deliveries(cluster.node(1), &pid, hook_id).await;
        (list.len() == 6 && list.iter().all(|d| d["status"] == "delivered")).then_some(list)
    })
    .await;
    let (did, event_id) = (list[0]["id"].as_str().unwrap(), list[0]["event_id"].as_str().unwrap());
    use sea_orm::ConnectionTrait as _;
    let db = sea_orm::Database::connect(&cluster.db).await.unwrap();
    db.execute_unprepared(&format!(
        "UPDATE notification_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = '{did}'"
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests().len(), 6, "no node polls the outbox");
    // Announced: sent at once, by one node.
    let announced = Instant::now();
    db.execute_unprepared("NOTIFY convo_outbox").await.unwrap();
    let sent = hits(&receiver, 7).await;
    assert!(announced.elapsed() < Duration::from_secs(2), "{:?}", announced.elapsed());
    assert_eq!(sent[6].header("webhook-id"), Some(event_id));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 7, "sent by one node");
}

/// The node sending a delivery is killed mid-request: another sends it
/// once the claim's lease (time-out + 5 s) is over, with the same id.
#[actix_web::test]
async fn in_a_cluster_a_delivery_whose_sender_dies_is_sent_by_another_after_the_lease() {
    // (A flag without a value last: `Cluster` reads the others in pairs.)
    let flags = ["--sim-chunks", "5", "--notify-timeout-ms", "4000", "--allow-private-urls"];
    let Some(mut cluster) = Cluster::start(3, None, &flags).await else { return };
    let receiver = FakeUpstream::start(vec![Reply::Silent, status(200)]).await;
    let (pid, thread) = project(cluster.node(0)).await;
    let hook = add(cluster.node(0), &pid, json!({"url": receiver.url, "events": ["message.completed"]})).await;
    let id = cluster.node(0).ask(&thread, "hello").await;
    let first = hits(&receiver, 1).await;
    let died = Instant::now();
    let sender = eventually(|| async {
        for (i, node) in cluster.nodes.iter().enumerate() {
            if node.server.get_json("/admin/stats").await["outbox"]["in_flight"] == 1 {
                return Some(i);
            }
        }
        None
    })
    .await;
    signal(&cluster.nodes[sender].child, "-KILL");
    let _ = cluster.nodes[sender].child.wait();
    let sent = hits(&receiver, 2).await;
    assert!(died.elapsed() >= Duration::from_secs(5), "not before the lease: {:?}", died.elapsed());
    assert_eq!(sent[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(sent[1].body["data"]["message_id"], id);
    let alive = cluster.node((sender + 1) % 3);
    let hook_id = hook["id"].as_str().unwrap();
    eventually(|| async {
        let list = deliveries(alive, &pid, hook_id).await;
        (list.len() == 1 && list[0]["status"] == "delivered").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 2);
}
