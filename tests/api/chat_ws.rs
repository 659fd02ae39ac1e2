//! The AI SDK's `WebSocketChatTransport` protocol at `…/chat/ws`, spoken
//! frame by frame: chunks numbered from 0 without gaps and `end`, several
//! chats at once on one socket, a resume after `lastSequence` that gets
//! exactly the chunks after it, `no-active` when idle, `abort` cancelling
//! the answer upstream, refusals as `error` frames, and a frame that is
//! not the protocol's closing the socket. (The SDK's own transport drives
//! it in `tests/aisdk`.)

use serde_json::{json, Value};

use crate::support::{Server, Ws};

/// A chat WebSocket: the protocol's frames over the suite's `Ws`.
pub struct ChatWs {
    ws: Ws,
}

impl ChatWs {
    async fn open(server: &Server, pid: &str) -> ChatWs {
        ChatWs::connect(&format!("{}/v1/projects/{pid}/chat/ws", server.base.replace("http://", "ws://"))).await
    }

    pub async fn connect(url: &str) -> ChatWs {
        ChatWs { ws: Ws::connect(url).await }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(frame).await;
    }

    /// The next text frame; `None` once closed (its close frame kept).
    async fn next(&mut self) -> Result<Value, Option<(u16, String)>> {
        self.ws.next_json().await
    }

    /// Frames until request `id` ends (`end`, `error` or `no-active`),
    /// checking that its chunks are numbered from `first` without a gap;
    /// frames of other requests go to `others`.
    pub async fn request(&mut self, id: &str, first: u64, others: &mut Vec<Value>) -> (Vec<Value>, Value) {
        let mut chunks = Vec::new();
        loop {
            let frame = self.next().await.expect("the socket stays open");
            if frame["requestId"] != id {
                others.push(frame);
                continue;
            }
            match frame["type"].as_str().unwrap() {
                "chunk" => {
                    assert_eq!(frame["sequence"], first + chunks.len() as u64, "numbered without gaps: {frame}");
                    chunks.push(frame["chunk"].clone());
                }
                "start" => assert!(chunks.is_empty(), "start comes first"),
                _ => return (chunks, frame),
            }
        }
    }
}

fn send(request: &str, chat: &str, text: &str) -> Value {
    json!({"type": "send", "requestId": request, "id": chat, "trigger": "submit-message", "messageId": null,
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": text}]}],
        "headers": {}, "body": {}, "metadata": null})
}

fn resume(request: &str, chat: &str, last: Option<u64>) -> Value {
    let mut frame =
        json!({"type": "resume", "requestId": request, "id": chat, "headers": {}, "body": {}, "metadata": null});
    if let Some(last) = last {
        frame["lastSequence"] = last.into();
    }
    frame
}

/// The text parts rebuilt from chunks.
fn text_of(chunks: &[Value]) -> String {
    chunks.iter().filter(|c| c["type"] == "text-delta").map(|c| c["delta"].as_str().unwrap()).collect()
}

async fn project(server: &Server) -> String {
    server.post_json("/v1/projects", json!({"name": "ws"})).await["id"].as_str().unwrap().to_owned()
}

/// The last answer of the chat whose thread is titled `title` (its first
/// question), once it ended.
async fn answer_of(server: &Server, pid: &str, title: &str) -> Value {
    let threads = server.get_json(&format!("/v1/projects/{pid}/threads")).await;
    let thread = threads["data"].as_array().unwrap().iter().find(|t| t["title"] == title).expect("the chat's thread");
    let thread = format!("/v1/projects/{pid}/threads/{}", thread["id"].as_str().unwrap());
    let id = server.messages(&thread).await.pop().unwrap()["id"].as_str().unwrap().to_owned();
    server.finished(&thread, &id).await
}

#[actix_web::test]
async fn two_chats_stream_at_once_on_one_socket_each_numbered_from_zero() {
    let server = Server::temp(&["--sim-interval-ms", "5", "--sim-chunks", "30"]).await;
    let pid = project(&server).await;
    let mut ws = ChatWs::open(&server, &pid).await;
    ws.send(send("r1", "chat-a", "first chat")).await;
    ws.send(send("r2", "chat-b", "second chat")).await;
    // Frames of both requests come interleaved; each is numbered alone.
    let mut chunks: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let mut ended = 0;
    while ended < 2 {
        let frame = ws.next().await.unwrap();
        let of = chunks.entry(frame["requestId"].as_str().unwrap().to_owned()).or_default();
        match frame["type"].as_str().unwrap() {
            "chunk" => {
                assert_eq!(frame["sequence"], of.len() as u64, "{frame}");
                of.push(frame["chunk"].clone());
            }
            "end" => ended += 1,
            other => panic!("unexpected {other}: {frame}"),
        }
    }
    let (a, b) = (&chunks["r1"], &chunks["r2"]);
    assert_eq!(a[0]["type"], "start");
    assert_eq!(a.last().unwrap()["type"], "finish");
    assert_eq!(text_of(a), answer_of(&server, &pid, "first chat").await["content"].as_str().unwrap());
    assert_eq!(text_of(b), answer_of(&server, &pid, "second chat").await["content"].as_str().unwrap());
}

#[actix_web::test]
async fn a_resume_after_last_sequence_gets_exactly_the_chunks_after_it() {
    let server = Server::temp(&["--sim-interval-ms", "25", "--sim-chunks", "40"]).await;
    let pid = project(&server).await;
    let mut first = ChatWs::open(&server, &pid).await;
    first.send(send("s", "resumable", "go")).await;
    let mut seen = Vec::new();
    while seen.iter().filter(|c: &&Value| c["type"] == "text-delta").count() < 5 {
        let frame = first.next().await.unwrap();
        assert_eq!(frame["sequence"], seen.len() as u64);
        seen.push(frame["chunk"].clone());
    }
    drop(first);
    let last = seen.len() as u64 - 1;
    let mut second = ChatWs::open(&server, &pid).await;
    second.send(resume("after", "resumable", Some(last))).await;
    second.send(resume("whole", "resumable", None)).await;
    let mut others = Vec::new();
    let (after, end) = second.request("after", last + 1, &mut others).await;
    assert_eq!(end["type"], "end");
    let mut whole = others.iter().filter(|f| f["type"] == "chunk").map(|f| f["chunk"].clone()).collect::<Vec<_>>();
    let (rest, _) = second.request("whole", whole.len() as u64, &mut Vec::new()).await;
    whole.extend(rest);
    seen.extend(after);
    assert_eq!(seen, whole, "the chunks before and after lastSequence are the answer's, once each");
    assert_eq!(whole.last().unwrap()["type"], "finish", "the resumed stream ran to the answer's end");
    let answer = answer_of(&server, &pid, "go").await;
    assert_eq!(answer["status"], "complete", "closing the first socket did not stop the answer");
    assert_eq!(text_of(&whole), answer["content"].as_str().unwrap());
}

#[actix_web::test]
async fn resume_when_idle_is_no_active_and_abort_cancels_the_answer_upstream() {
    let server = Server::temp(&["--sim-interval-ms", "25", "--sim-chunks", "80"]).await;
    let pid = project(&server).await;
    let mut ws = ChatWs::open(&server, &pid).await;
    ws.send(resume("idle", "nothing-yet", None)).await;
    assert_eq!(ws.next().await.unwrap(), json!({"type": "no-active", "requestId": "idle"}));

    ws.send(send("long", "stopped", "talk a lot")).await;
    let mut chunks = Vec::new();
    while chunks.iter().filter(|c: &&Value| c["type"] == "text-delta").count() < 2 {
        chunks.push(ws.next().await.unwrap()["chunk"].clone());
    }
    ws.send(json!({"type": "abort", "requestId": "long"})).await;
    let answer = answer_of(&server, &pid, "talk a lot").await;
    assert_eq!(answer["status"], "cancelled", "the user's Stop stops the answer itself");
    ws.send(resume("later", "stopped", None)).await;
    let after = loop {
        let frame = ws.next().await.unwrap();
        if frame["requestId"] == "later" {
            break frame;
        }
        assert_eq!(frame["requestId"], "long", "only the aborted request's frames already on their way");
    };
    assert_eq!(after, json!({"type": "no-active", "requestId": "later"}));
}

#[actix_web::test]
async fn refusals_are_error_frames_and_a_frame_outside_the_protocol_closes_the_socket() {
    let server = Server::temp(&["--sim-interval-ms", "30", "--sim-chunks", "60"]).await;
    let pid = project(&server).await;
    let mut ws = ChatWs::open(&server, &pid).await;
    let blank = send("blank", "c", "   ");
    ws.send(blank).await;
    let refused = ws.next().await.unwrap();
    assert_eq!((refused["type"].as_str(), refused["requestId"].as_str()), (Some("error"), Some("blank")));
    ws.send(json!({"type": "send", "requestId": "bad"})).await;
    let refused = ws.next().await.unwrap();
    assert_eq!((refused["type"].as_str(), refused["requestId"].as_str()), (Some("error"), Some("bad")));
    ws.send(send("one", "busy-chat", "first")).await;
    ws.send(send("two", "busy-chat", "second")).await;
    let busy = loop {
        let frame = ws.next().await.unwrap();
        if frame["requestId"] == "two" {
            break frame;
        }
    };
    assert_eq!(busy["type"], "error");
    assert!(busy["errorText"].as_str().unwrap().contains("already running"), "{busy}");
    ws.send(json!({"hello": "there"})).await;
    let closed = loop {
        match ws.next().await {
            Ok(_) => continue,
            Err(close) => break close,
        }
    };
    assert_eq!(closed.map(|c| c.0), Some(1008));
}

#[actix_web::test]
async fn the_handshake_says_who_calls_and_a_stream_token_opens_its_own_threads_chat_only() {
    use crate::access::ADMIN;
    let server = Server::temp(&["--admin-token", ADMIN]).await;
    let c = &server.client;
    let pid =
        server.post_json_as(ADMIN, "/v1/projects", Some(json!({"name": "p"}))).await["id"].as_str().unwrap().to_owned();
    let threads = format!("/v1/projects/{pid}/threads");
    let mine = server.post_json_as(ADMIN, &threads, Some(json!({}))).await["id"].as_str().unwrap().to_owned();
    let other = server.post_json_as(ADMIN, &threads, Some(json!({}))).await["id"].as_str().unwrap().to_owned();
    let token = server.post_json_as(ADMIN, &format!("{threads}/{mine}/stream-token"), None).await;
    let token = token["token"].as_str().unwrap();
    let url = format!("{}/v1/projects/{pid}/chat/ws", server.base.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("no credentials, yet: {:?}", other.map(|(_, r)| r.status())),
    }
    let mut ws = ChatWs::connect(&format!("{url}?token={token}")).await;
    ws.send(send("elsewhere", &other, "not mine")).await;
    let refused = ws.next().await.unwrap();
    assert_eq!((refused["type"].as_str(), refused["requestId"].as_str()), (Some("error"), Some("elsewhere")));
    ws.send(send("new", "a-new-chat", "not mine either")).await;
    assert_eq!(ws.next().await.unwrap()["type"], "error", "a token makes no thread");
    ws.send(send("own", &mine, "mine")).await;
    let (chunks, end) = ws.request("own", 0, &mut Vec::new()).await;
    assert_eq!(end["type"], "end");
    assert_eq!(chunks.last().unwrap()["type"], "finish");
    let history: Value = c
        .get(format!("{}/v1/projects/{pid}/threads/{other}/messages", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["data"].as_array().unwrap().len(), 0, "nothing reached the other thread");
    let threads: Value = c
        .get(format!("{}/v1/projects/{pid}/threads", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(threads["data"].as_array().unwrap().len(), 2, "a stream token made no thread for a new chat id");
}

#[actix_web::test]
async fn a_socket_holds_at_most_sixteen_requests_and_a_request_id_once() {
    let server = Server::temp(&["--sim-interval-ms", "50", "--sim-chunks", "200"]).await;
    let pid = project(&server).await;
    let mut ws = ChatWs::open(&server, &pid).await;
    ws.send(send("asker", "crowded", "talk for a while")).await;
    while ws.next().await.unwrap()["requestId"] != "asker" {}
    // Fifteen more requests follow the same answer: sixteen in all.
    for i in 0..15 {
        ws.send(resume(&format!("r{i}"), "crowded", None)).await;
    }
    ws.send(resume("one-too-many", "crowded", None)).await;
    ws.send(resume("r0", "crowded", None)).await;
    let mut refused = std::collections::HashMap::new();
    while refused.len() < 2 {
        let frame = ws.next().await.unwrap();
        if frame["type"] == "error" {
            let id = frame["requestId"].as_str().unwrap().to_owned();
            assert!(id == "one-too-many" || id == "r0", "only the two extra requests are refused: {frame}");
            refused.insert(id, frame["errorText"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(refused["one-too-many"].contains("too many requests"), "{refused:?}");
    assert!(refused["r0"].contains("in use"), "{refused:?}");
}

/// Deleting a chat's thread mid-answer ends its request once: the
/// answer's `abort` chunk and `end`, and no `error` frame after it.
#[actix_web::test]
async fn deleting_the_thread_mid_answer_ends_the_request_once() {
    let server = Server::temp(&["--sim-interval-ms", "20", "--sim-chunks", "200"]).await;
    let pid = project(&server).await;
    let mut ws = ChatWs::open(&server, &pid).await;
    ws.send(send("r1", "doomed-ws", "go")).await;
    let (mut deltas, mut seen) = (0, 0);
    while deltas < 3 {
        let frame = ws.next().await.expect("open");
        deltas += usize::from(frame["chunk"]["type"] == "text-delta");
        seen += 1;
    }
    let threads = server.get_json(&format!("/v1/projects/{pid}/threads")).await;
    let tid = threads["data"][0]["id"].as_str().unwrap().to_owned();
    let r = server.client.delete(format!("{}/v1/projects/{pid}/threads/{tid}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (chunks, end) = ws.request("r1", seen, &mut Vec::new()).await;
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(chunks.last().unwrap()["type"], "abort");
    // Nothing more for the request: the socket's next frame answers the
    // next request (an unknown chat has nothing running).
    ws.send(resume("r2", "never-used", None)).await;
    let next = ws.next().await.expect("open");
    assert_eq!((next["requestId"].as_str(), next["type"].as_str()), (Some("r2"), Some("no-active")), "{next}");
}
