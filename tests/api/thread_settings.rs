//! PATCH of a thread: its title, system prompt, model and tools change;
//! every subscriber hears `thread.updated` (on every node, in cluster
//! mode), the next answer is made with the new settings, and tools cannot
//! change while an answer awaits input.

use serde_json::{json, Value};

use crate::{
    fake_upstream::FakeUpstream,
    providers::{harness, Harness},
    support::Events as _,
    tools::{calls_answer, text_answer},
};

async fn patch(h: &Harness, thread: &str, body: Value) -> (u16, Value) {
    let r = h.client.patch(thread).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn new_thread(h: &Harness, body: Value) -> String {
    let url = format!("{}/v1/projects/{}/threads", h.base, h.pid);
    let t: Value = h.client.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
    format!("{url}/{}", t["id"].as_str().unwrap())
}

/// The SSE events of `thread`, as JSON.
async fn events(h: &Harness, thread: &str) -> impl futures_util::Stream<Item = Value> + Unpin {
    use futures_util::StreamExt;
    let resp = h.client.get(format!("{thread}/events")).send().await.unwrap();
    Box::pin(
        eventsource_stream::Eventsource::eventsource(resp.bytes_stream())
            .filter_map(|e| async move { e.ok().and_then(|e| serde_json::from_str::<Value>(&e.data).ok()) }),
    )
}

async fn until(stream: &mut (impl futures_util::Stream<Item = Value> + Unpin), kind: &str) -> Value {
    use futures_util::StreamExt;
    loop {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on");
        if ev["type"] == kind {
            return ev;
        }
    }
}

#[actix_web::test]
async fn a_patch_changes_the_thread_tells_every_tab_and_the_next_answer_uses_it() {
    let h = harness("anthropic", vec![text_answer("ok")], &[]).await;
    let thread = new_thread(&h, json!({"title": "old", "system": "be brief"})).await;
    let mut tab = events(&h, &thread).await;
    until(&mut tab, "ready").await;
    let change = json!({
        "title": "Weather",
        "system": "be kind",
        "tools": [{"name": "look", "input_schema": {"type": "object"}, "description": "looks"}],
        "tool_choice": {"type": "auto"},
    });
    let (status, body) = patch(&h, &thread, change).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["title"].as_str(), body["system"].as_str()), (Some("Weather"), Some("be kind")));
    assert_eq!(body["tools"][0]["name"], "look");
    assert_eq!(body["status"], "idle");
    let told = until(&mut tab, "thread.updated").await;
    assert_eq!(told["thread"]["title"], "Weather");
    assert_eq!(told["thread"]["tools"][0]["name"], "look");
    let got: Value = h.client.get(&thread).send().await.unwrap().json().await.unwrap();
    assert_eq!((got["title"].as_str(), got["tool_choice"]["type"].as_str()), (Some("Weather"), Some("auto")));
    assert!(got["updated_at"].as_str() > got["created_at"].as_str());

    // The next answer is made with them.
    let url = format!("{thread}/messages");
    assert_eq!(h.client.post(&url).json(&json!({"content": "hi"})).send().await.unwrap().status(), 202);
    until(&mut tab, "message.completed").await;
    let sent = h.upstream.requests().pop().unwrap().body;
    assert_eq!(sent["system"], "be kind");
    assert_eq!(sent["tools"][0]["name"], "look");
    assert_eq!(sent["tool_choice"]["type"], "auto");

    // `null` clears what may be absent; what is not given stays.
    let (status, body) = patch(&h, &thread, json!({"title": null, "tool_choice": null})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["title"].clone(), body["tool_choice"].clone()), (Value::Null, Value::Null));
    assert_eq!(body["system"], "be kind");
}

#[actix_web::test]
async fn tools_cannot_change_while_an_answer_awaits_input_but_the_title_can() {
    let replies = vec![calls_answer("Looking.", &[("toolu_1", "look", "{}")]), text_answer("Done.")];
    let h = harness("anthropic", replies, &[]).await;
    let thread = new_thread(&h, json!({"tools": [{"name": "look", "input_schema": {"type": "object"}}]})).await;
    let mut tab = events(&h, &thread).await;
    until(&mut tab, "ready").await;
    let url = format!("{thread}/messages");
    h.client.post(&url).json(&json!({"content": "look"})).send().await.unwrap();
    until(&mut tab, "message.awaiting").await;
    let (status, body) = patch(&h, &thread, json!({"tools": []})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("thread_busy")));
    let (status, body) = patch(&h, &thread, json!({"title": "Still looking"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "awaiting_input");
    assert_eq!(until(&mut tab, "thread.updated").await["thread"]["status"], "awaiting_input");
    // The same tools again change nothing of what the answer may call.
    let same = json!({"tools": [{"name": "look", "input_schema": {"type": "object"}}]});
    assert_eq!(patch(&h, &thread, same).await.0, 200);
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": 1}]});
    assert_eq!(h.client.post(format!("{thread}/tool-results")).json(&result).send().await.unwrap().status(), 200);
    until(&mut tab, "message.completed").await;
    assert_eq!(patch(&h, &thread, json!({"tools": []})).await.0, 200, "free again");
}

#[actix_web::test]
async fn a_bad_patch_is_refused_whole() {
    let h = harness("anthropic", vec![text_answer("x")], &[]).await;
    let thread = new_thread(&h, json!({"title": "kept"})).await;
    for body in [
        json!({"colour": "red"}),
        json!({"title": "x".repeat(201)}),
        json!({"model": " "}),
        json!({"tools": [{"name": "bad name", "input_schema": {}}]}),
        json!({"tool_choice": {"type": "tool", "name": "missing"}}),
        json!({"mcp_servers": ["nowhere"]}),
        json!({"title": "new", "tools": [{"name": "a", "input_schema": {}}, {"name": "a", "input_schema": {}}]}),
    ] {
        let r = h.client.patch(&thread).json(&body).send().await.unwrap();
        let (status, code) = crate::support::error_code(r).await;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{body}");
    }
    let got: Value = h.client.get(&thread).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["title"], "kept", "nothing of a refused patch was written");
    // Another project's thread, or none: 404.
    let other: Value = h
        .client
        .post(format!("{}/v1/projects", h.base))
        .json(&json!({"name": "o"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let elsewhere = thread.replace(&h.pid, other["id"].as_str().unwrap());
    let (status, code) =
        crate::support::error_code(h.client.patch(&elsewhere).json(&json!({"title": "x"})).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[actix_web::test]
async fn in_cluster_mode_every_node_hears_a_patch_and_answers_with_it() {
    let upstream = FakeUpstream::start(vec![text_answer("ok")]).await;
    let flags = ["--provider", "anthropic", "--anthropic-base-url", &upstream.url];
    let Some(cluster) = crate::cluster::Cluster::start_env(2, None, &flags, &[("ANTHROPIC_API_KEY", "sk-test")]).await
    else {
        return;
    };
    let thread = cluster.node(0).thread().await;
    let mut tab1 = cluster.node(1).sse(&thread, None).await;
    let node0 = cluster.node(0);
    let r = node0.client.patch(format!("{}{thread}", node0.base)).json(&json!({"system": "speak French"})).send();
    assert_eq!(r.await.unwrap().status(), 200);
    let told = tab1.until("thread.updated").await.pop().unwrap();
    assert_eq!(told.data["thread"]["system"], "speak French");
    // Node 1's next answer is made with the new prompt.
    let id = cluster.node(1).ask(&thread, "hi").await;
    assert_eq!(cluster.node(1).finished(&thread, &id).await["status"], "complete");
    assert_eq!(upstream.requests().pop().unwrap().body["system"], "speak French");
}

/// PATCHes racing an operator's stop of the thread's actor and then the
/// thread's deletion are each answered 200 or 404, never a 5xx: the first
/// actor stops under one PATCH, the one started for it stops for the
/// deletion, and the PATCH finds the thread gone.
#[actix_web::test]
async fn patches_racing_a_stop_and_a_delete_are_answered_200_or_404_never_a_server_error() {
    let h = harness("anthropic", vec![], &[]).await;
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..40u32 {
        let thread = new_thread(&h, json!({"title": "doomed"})).await;
        let tid = thread.rsplit('/').next().unwrap().to_owned();
        // The actor is live (as it is for a tab's thread) before the race.
        assert_eq!(patch(&h, &thread, json!({"title": "warm"})).await.0, 200);
        // The stop and the deletion leave a little later each round, so
        // that some rounds land them inside the PATCHes.
        let delay = std::time::Duration::from_micros(100 * u64::from(round % 20));
        let change = json!({"title": format!("round {round}"), "system": "", "tools": []});
        let patches = futures_util::future::join_all((0..4).map(|_| patch(&h, &thread, change.clone())));
        let admin = format!("{}/admin/threads/{tid}", h.base);
        let (patched, stopped, deleted) = tokio::join!(
            patches,
            async {
                tokio::time::sleep(delay).await;
                h.client.delete(&admin).send().await.unwrap().status().as_u16()
            },
            async {
                tokio::time::sleep(delay * 2).await;
                h.client.delete(&thread).send().await.unwrap().status().as_u16()
            }
        );
        assert!(stopped == 204 || stopped == 404, "round {round}: the operator's stop answered {stopped}");
        assert_eq!(deleted, 204, "round {round}: the deletion goes through");
        for (status, body) in patched {
            assert!(status == 200 || status == 404, "round {round}: PATCH answered {status} {body}");
            if status == 404 {
                assert_eq!(body["error"]["code"], "not_found", "{body}");
            }
            *seen.entry(status).or_insert(0) += 1;
        }
        assert_eq!(h.client.get(&thread).send().await.unwrap().status().as_u16(), 404);
    }
    eprintln!("PATCH outcomes while racing a stop and a DELETE: {seen:?}");
    // Every actor started for a deleted thread finds it gone and stops:
    // none is left loading when the server goes (a database call still in
    // flight on an actor thread as it stops would abort the test process).
    let stats = format!("{}/admin/stats", h.base);
    crate::support::eventually(|| async {
        let s: Value = h.client.get(&stats).send().await.ok()?.json().await.ok()?;
        (s["threads"]["live"] == 0).then_some(())
    })
    .await;
}
