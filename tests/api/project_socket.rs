//! The project socket (`GET /v1/projects/{pid}/ws`, API.md "A socket for
//! many threads"), tried as a client: many threads' answers on one
//! connection, each byte-identical to what is stored; each thread resumed
//! from its own cursor after a reconnect; unsubscribe; a thread's own
//! frames with its `thread_id`; bad frames, unknown and deleted threads
//! ending one subscription (`unsubscribed`) while the others go on; and
//! who may follow what in secured mode.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::support::{Ev, Server, Transcript, Ws};

/// A project socket of `server` at `project` (`/v1/projects/{pid}`).
async fn socket(server: &Server, project: &str, query: &str) -> Ws {
    Ws::connect(&format!("{}{project}/ws{query}", server.base.replace("http://", "ws://"))).await
}

fn project_of(thread: &str) -> String {
    thread.split("/threads/").next().unwrap().to_owned()
}

fn id_of(thread: &str) -> String {
    thread.rsplit('/').next().unwrap().to_owned()
}

/// A new thread of `project`: its path.
async fn new_thread(server: &Server, project: &str) -> String {
    let t = server.post_json(&format!("{project}/threads"), json!({})).await;
    format!("{project}/threads/{}", t["id"].as_str().unwrap())
}

/// The first event of `kind` for `thread_id`, among those read already
/// (while waiting for another thread's) or else the next.
async fn seen_or_next(ws: &mut Ws, by_thread: &mut HashMap<String, Vec<Ev>>, thread_id: &str, kind: &str) -> Ev {
    let read = by_thread.get(thread_id).and_then(|evs| evs.iter().find(|e| e.kind == kind));
    match read {
        Some(ev) => ev.clone(),
        None => until_for(ws, by_thread, thread_id, kind).await,
    }
}

/// The next event for `thread_id` that is of `kind`, with the events of
/// every thread read meanwhile kept by thread.
async fn until_for(ws: &mut Ws, by_thread: &mut HashMap<String, Vec<Ev>>, thread_id: &str, kind: &str) -> Ev {
    loop {
        let ev = ws.next().await.unwrap_or_else(|| panic!("socket closed before {kind} of {thread_id}"));
        let of = ev.data["thread_id"].as_str().unwrap_or("").to_owned();
        by_thread.entry(of.clone()).or_default().push(ev.clone());
        if of == thread_id && ev.kind == kind {
            return ev;
        }
    }
}

#[actix_web::test]
async fn one_socket_streams_many_threads_each_byte_for_byte() {
    let server = Server::temp(&["--sim-chunks", "60", "--sim-interval-ms", "5"]).await;
    let first = server.thread().await;
    let project = project_of(&first);
    let mut threads = vec![first];
    for _ in 0..4 {
        threads.push(new_thread(&server, &project).await);
    }
    let mut ws = socket(&server, &project, "").await;
    let mut seen = HashMap::new();
    for t in &threads {
        ws.send(json!({"type": "subscribe", "thread_id": id_of(t)})).await;
        let ready = until_for(&mut ws, &mut seen, &id_of(t), "ready").await;
        assert_eq!(ready.data["status"], "idle");
    }
    let mut answers = HashMap::new();
    for t in &threads {
        answers.insert(id_of(t), server.ask(t, &format!("question for {t}")).await);
    }
    for t in &threads {
        seen_or_next(&mut ws, &mut seen, &id_of(t), "message.completed").await;
    }
    for t in &threads {
        let events = &seen[&id_of(t)];
        assert!(events.iter().all(|e| e.data["thread_id"] == id_of(t)), "every event names its thread");
        let mut transcript = Transcript::default();
        transcript.apply_all(events);
        let stored = server.finished(t, &answers[&id_of(t)]).await;
        assert!(!stored["content"].as_str().unwrap().is_empty());
        transcript.assert_matches(&stored);
        assert_eq!(transcript.completed, vec![(answers[&id_of(t)].clone(), "complete".to_owned())]);
    }
}

#[actix_web::test]
async fn each_thread_resumes_from_its_own_cursor_on_a_new_socket() {
    let server = Server::temp(&["--sim-chunks", "300", "--sim-interval-ms", "5"]).await;
    let a = server.thread().await;
    let project = project_of(&a);
    let b = new_thread(&server, &project).await;
    let mut ws = socket(&server, &project, "").await;
    let mut seen = HashMap::new();
    for t in [&a, &b] {
        ws.send(json!({"type": "subscribe", "thread_id": id_of(t)})).await;
        until_for(&mut ws, &mut seen, &id_of(t), "ready").await;
    }
    let answer_a = server.ask(&a, "long one").await;
    let answer_b = server.ask(&b, "another long one").await;
    for t in [&a, &b] {
        seen_or_next(&mut ws, &mut seen, &id_of(t), "message.delta").await;
    }
    drop(ws);

    // A new socket, each thread from the last cursor it saw.
    let cursor_of = |t: &str, seen: &HashMap<String, Vec<Ev>>| {
        seen[&id_of(t)].iter().rev().find(|e| !e.id.is_empty()).map(|e| e.id.clone()).unwrap()
    };
    let mut ws = socket(&server, &project, "").await;
    for t in [&a, &b] {
        let cursor = cursor_of(t, &seen);
        ws.send(json!({"type": "subscribe", "thread_id": id_of(t), "cursor": cursor})).await;
    }
    for (t, answer) in [(&a, &answer_a), (&b, &answer_b)] {
        seen_or_next(&mut ws, &mut seen, &id_of(t), "message.completed").await;
        let mut transcript = Transcript::default();
        // Before and after the reconnect together: a delta that repeated
        // or skipped a byte fails `apply`.
        transcript.apply_all(&seen[&id_of(t)]);
        transcript.assert_matches(&server.finished(t, answer).await);
    }
}

#[actix_web::test]
async fn unsubscribe_stops_one_thread_and_thread_frames_go_to_their_thread() {
    let server = Server::temp(&["--sim-chunks", "400", "--sim-interval-ms", "10"]).await;
    let a = server.thread().await;
    let project = project_of(&a);
    let b = new_thread(&server, &project).await;
    let mut ws = socket(&server, &project, "").await;
    let mut seen = HashMap::new();

    // A thread's frame before its subscription: an error naming it.
    ws.send(json!({"type": "send", "thread_id": id_of(&a), "content": "too early"})).await;
    let early = until_for(&mut ws, &mut seen, &id_of(&a), "error").await;
    assert_eq!(early.data["code"], "bad_request");

    for t in [&a, &b] {
        ws.send(json!({"type": "subscribe", "thread_id": id_of(t)})).await;
        until_for(&mut ws, &mut seen, &id_of(t), "ready").await;
    }
    // `send` and `cancel` with a thread_id drive that thread only.
    ws.send(json!({"type": "send", "thread_id": id_of(&a), "content": "over the project socket"})).await;
    let created = until_for(&mut ws, &mut seen, &id_of(&a), "message.created").await;
    assert_eq!(created.data["message"]["content"], "over the project socket");
    until_for(&mut ws, &mut seen, &id_of(&a), "message.delta").await;
    ws.send(json!({"type": "cancel", "thread_id": id_of(&b)})).await;
    let not_b = until_for(&mut ws, &mut seen, &id_of(&b), "error").await;
    assert_eq!(not_b.data["code"], "not_generating", "b runs nothing; a's answer goes on");
    ws.send(json!({"type": "cancel", "thread_id": id_of(&a)})).await;
    let done = until_for(&mut ws, &mut seen, &id_of(&a), "message.completed").await;
    assert_eq!(done.data["status"], "cancelled");

    // Unsubscribed from a: b's answer arrives, nothing more of a.
    ws.send(json!({"type": "unsubscribe", "thread_id": id_of(&a)})).await;
    // Frames are taken in order: once this one's answer is back, the
    // unsubscribe was done.
    ws.send_text("{}").await;
    until_for(&mut ws, &mut seen, "", "error").await;
    let question = server.ask(&b, "b goes on").await;
    let asked_a = server.ask(&a, "nobody here listens").await;
    seen.clear();
    until_for(&mut ws, &mut seen, &id_of(&b), "message.completed").await;
    let of_a: Vec<&Ev> = seen.get(&id_of(&a)).map(|v| v.iter().collect()).unwrap_or_default();
    assert!(of_a.iter().all(|e| e.data["message_id"] != asked_a.as_str()), "a's new answer was not sent: {of_a:?}");
    let mut transcript = Transcript::default();
    transcript.apply_all(&seen[&id_of(&b)]);
    transcript.assert_matches(&server.finished(&b, &question).await);
}

#[actix_web::test]
async fn bad_frames_and_refused_subscriptions_leave_the_socket_and_its_threads_alone() {
    let server = Server::temp(&[]).await;
    let a = server.thread().await;
    let project = project_of(&a);
    let elsewhere = server.thread().await;
    let doomed = new_thread(&server, &project).await;
    let mut ws = socket(&server, &project, "").await;
    let mut seen = HashMap::new();
    for t in [&a, &doomed] {
        ws.send(json!({"type": "subscribe", "thread_id": id_of(t)})).await;
        until_for(&mut ws, &mut seen, &id_of(t), "ready").await;
    }

    for bad in ["{not json", r#"{"type": "dance"}"#, r#"{"type": "cancel"}"#, r#"{"type": "subscribe"}"#, "[]"] {
        ws.send_text(bad).await;
        let error = ws.next().await.unwrap();
        assert_eq!((error.kind.as_str(), &error.data["code"]), ("error", &json!("bad_request")), "{bad}");
        assert!(error.data["thread_id"].is_null(), "{bad}: names no thread");
    }

    // A thread of another project, and one that does not exist: refused,
    // each with its error and then `unsubscribed`.
    for t in [id_of(&elsewhere), uuid::Uuid::now_v7().to_string()] {
        ws.send(json!({"type": "subscribe", "thread_id": t})).await;
        let error = until_for(&mut ws, &mut seen, &t, "error").await;
        assert_eq!(error.data["code"], "not_found");
        let ended = ws.next().await.unwrap();
        assert_eq!((ended.kind.as_str(), &ended.data["thread_id"]), ("unsubscribed", &json!(t)));
    }

    // A deleted thread ends its own subscription only.
    let r = server.client.delete(format!("{}{doomed}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let error = until_for(&mut ws, &mut seen, &id_of(&doomed), "error").await;
    assert_eq!(error.data["code"], "thread_deleted");
    let ended = until_for(&mut ws, &mut seen, &id_of(&doomed), "unsubscribed").await;
    assert_eq!(ended.data["code"], "thread_deleted");

    let answer = server.ask(&a, "still here?").await;
    seen.clear();
    until_for(&mut ws, &mut seen, &id_of(&a), "message.completed").await;
    let mut transcript = Transcript::default();
    transcript.apply_all(&seen[&id_of(&a)]);
    transcript.assert_matches(&server.finished(&a, &answer).await);
}

#[actix_web::test]
async fn in_secured_mode_a_socket_follows_what_its_credentials_open() {
    const ADMIN: &str = crate::access::ADMIN;
    let server = Server::temp(&["--admin-token", ADMIN]).await;
    let p = post(&server, "/v1/projects", ADMIN, Some(json!({"name": "s"}))).await;
    let project = format!("/v1/projects/{}", p["id"].as_str().unwrap());
    let keys = format!("/admin{}/keys", &project[3..]);
    let key = post(&server, &keys, ADMIN, None).await["key"].as_str().unwrap().to_owned();
    let mut threads = Vec::new();
    for _ in 0..2 {
        let t = post(&server, &format!("{project}/threads"), &key, Some(json!({}))).await;
        threads.push(format!("{project}/threads/{}", t["id"].as_str().unwrap()));
    }
    let (a, b) = (threads[0].clone(), threads[1].clone());
    let token_of = |t: &str| format!("{t}/stream-token");
    let token_a = post(&server, &token_of(&a), &key, None).await["token"].as_str().unwrap().to_owned();
    let token_b = post(&server, &token_of(&b), &key, None).await["token"].as_str().unwrap().to_owned();

    // No credential: no socket.
    let url = format!("{}{project}/ws", server.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(&url).await.is_err(), "refused without a credential");

    // A's token opens a socket and a; b needs its own token.
    let mut ws = socket(&server, &project, &format!("?token={token_a}")).await;
    let mut seen = HashMap::new();
    ws.send(json!({"type": "subscribe", "thread_id": id_of(&a)})).await;
    until_for(&mut ws, &mut seen, &id_of(&a), "ready").await;
    ws.send(json!({"type": "subscribe", "thread_id": id_of(&b)})).await;
    let refused = until_for(&mut ws, &mut seen, &id_of(&b), "error").await;
    assert_eq!(refused.data["code"], "unauthorized");
    until_for(&mut ws, &mut seen, &id_of(&b), "unsubscribed").await;
    ws.send(json!({"type": "subscribe", "thread_id": id_of(&b), "token": token_a})).await;
    assert_eq!(until_for(&mut ws, &mut seen, &id_of(&b), "error").await.data["code"], "unauthorized", "not b's token");
    ws.send(json!({"type": "subscribe", "thread_id": id_of(&b), "token": token_b})).await;
    until_for(&mut ws, &mut seen, &id_of(&b), "ready").await;

    // A stream token of another project's thread opens no socket here.
    let q = post(&server, "/v1/projects", ADMIN, Some(json!({"name": "other"}))).await;
    let other_project = format!("/v1/projects/{}", q["id"].as_str().unwrap());
    let url = format!("{}{other_project}/ws?token={token_a}", server.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(&url).await.is_err(), "a token opens its own project's socket only");

    // The project's key (a header, as a server-side client sends it)
    // opens every thread without tokens.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.replace(&other_project, &project).split('?').next().unwrap().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (raw, _) = tokio_tungstenite::connect_async(request).await.expect("a key opens the socket");
    let mut ws = Ws { socket: raw };
    for t in [&a, &b] {
        ws.send(json!({"type": "subscribe", "thread_id": id_of(t)})).await;
        until_for(&mut ws, &mut seen, &id_of(t), "ready").await;
    }
}

/// POST `body` (or nothing) to `path` with `bearer`: the answer's JSON.
async fn post(server: &Server, path: &str, bearer: &str, body: Option<Value>) -> Value {
    let req = server.client.post(format!("{}{path}", server.base)).bearer_auth(bearer);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    req.send().await.unwrap().json::<Value>().await.unwrap()
}
