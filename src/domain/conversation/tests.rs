//! The conversation model alone: applying provider events, replay after
//! every kind of cursor, and a property test that any cursor a subscriber
//! was given, plus the replay after it, rebuilds every block byte for byte.

use std::collections::HashMap;

use chrono::Utc;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::domain::{codes::StreamCode, BlockKind};

fn started(thread: Uuid) -> (Conversation, Asked) {
    let mut c = Conversation::new(thread, Vec::new());
    let asked = c.ask("question".into(), "m".into(), crate::domain::new_id(), Utc::now());
    (c, asked)
}

fn text(index: usize, t: &str) -> ProviderEvent {
    ProviderEvent::Delta { index, text: t.into() }
}

fn block(index: usize, kind: BlockKind) -> ProviderEvent {
    let (id, name) = match kind {
        BlockKind::ToolUse => (Some("toolu_1".to_owned()), Some("lookup".to_owned())),
        _ => (None, None),
    };
    ProviderEvent::BlockStart { index, kind, id, name }
}

/// Blocks rebuilt from events the way a client does: each delta must start
/// where its block's text ends. After `cursor_ahead` the next message named
/// is rebuilt from scratch: what was shown of it is dropped first.
#[derive(Default, Debug)]
struct Client {
    blocks: HashMap<(Uuid, usize), String>,
    reset_next: bool,
}

impl Client {
    fn see(&mut self, e: &Event) {
        use crate::domain::codes::ErrorCode;
        if let Event::Error { code: ErrorCode::Stream(StreamCode::CursorAhead), .. } = e {
            self.reset_next = true;
            return;
        }
        let message = match e {
            Event::MessageBlock { message_id, .. } | Event::MessageDelta { message_id, .. } => Some(*message_id),
            Event::MessageCompleted { message_id, .. } => Some(*message_id),
            _ => None,
        };
        if let Some(id) = message.filter(|_| std::mem::take(&mut self.reset_next)) {
            self.blocks.retain(|(m, _), _| *m != id);
        }
        if let Event::MessageDelta { message_id, block, offset, text, .. } = e {
            let t = self.blocks.entry((*message_id, *block)).or_default();
            assert_eq!(*offset, t.len(), "a delta continues its block exactly");
            t.push_str(text);
        }
    }

    fn text(&self, id: Uuid, block: usize) -> &str {
        self.blocks.get(&(id, block)).map_or("", String::as_str)
    }
}

#[test]
fn provider_events_become_blocks_and_contract_events() {
    let (mut c, asked) = started(Uuid::nil());
    assert_eq!(asked.events.iter().map(Event::kind).collect::<Vec<_>>().len(), 2);
    let id = asked.assistant.id;
    assert_eq!(c.apply(block(0, BlockKind::Thinking)).events.len(), 1);
    let delta = c.apply(text(0, "é1"));
    assert!(delta.changed);
    match &delta.events[..] {
        [Event::MessageDelta { offset: 0, cursor: Some(cur), .. }] => assert_eq!(*cur, Cursor::new(id, 0, 3)),
        other => panic!("{other:?}"),
    }
    assert!(c.apply(text(0, "")).events.is_empty(), "an empty delta is nothing");
    assert_eq!(c.apply(ProviderEvent::Stop { stop_reason: Some("end_turn".into()) }).ended, Some(Ending::Complete));
    let (done, completed) = c.finish(MessageStatus::Complete, None, Utc::now()).unwrap();
    assert_eq!(done.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(completed.cursor(), Some(Cursor::new(id, 1, 0)));
    assert!(c.running().is_none());
    assert_eq!(c.head(), Some(Cursor::new(id, 1, 0)));
}

#[test]
fn a_block_out_of_order_or_unknown_fails_the_answer() {
    let (mut c, _) = started(Uuid::nil());
    assert!(matches!(c.apply(block(1, BlockKind::Text)).ended, Some(Ending::Failed { .. })));
    assert!(matches!(c.apply(text(3, "x")).ended, Some(Ending::Failed { .. })));
    c.apply(block(0, BlockKind::Thinking));
    c.apply(block(1, BlockKind::Text));
    let earlier = c.apply(text(0, "late"));
    assert!(
        matches!(&earlier.ended, Some(Ending::Failed { message, .. }) if message.contains("after block 1 began")),
        "text for an earlier block could never be resumed: {earlier:?}"
    );
}

fn tool(index: usize, id: Option<&str>) -> ProviderEvent {
    ProviderEvent::BlockStart { index, kind: BlockKind::ToolUse, id: id.map(str::to_owned), name: Some("f".into()) }
}

/// The id a `message.block` event names.
fn block_id(applied: &Applied) -> String {
    match &applied.events[..] {
        [Event::MessageBlock { id: Some(id), .. }] => id.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tool_calls_without_an_id_or_with_a_used_one_get_their_own() {
    let (mut c, _) = started(Uuid::nil());
    assert_eq!(block_id(&c.apply(tool(0, Some("toolu_1")))), "toolu_1", "a new id is kept");
    let missing = block_id(&c.apply(tool(1, None)));
    let empty = block_id(&c.apply(tool(2, Some(""))));
    let again = block_id(&c.apply(tool(3, Some("toolu_1"))));
    let ids = [missing.as_str(), empty.as_str(), again.as_str()];
    for id in ids {
        let uuid = id.strip_prefix("call_").unwrap_or_else(|| panic!("{id}"));
        assert!(Uuid::parse_str(uuid).is_ok(), "{id}");
    }
    assert!(missing != empty && empty != again && missing != again);
    c.apply(ProviderEvent::Stop { stop_reason: None });
    let (message, _) = c.finish(MessageStatus::Complete, None, Utc::now()).unwrap();
    let stored: Vec<_> = message.blocks.iter().map(|b| b.id.clone().unwrap()).collect();
    assert_eq!(stored, ["toolu_1", missing.as_str(), empty.as_str(), again.as_str()]);

    // Unique within the thread: a later answer may not reuse any of them.
    c.ask("again".into(), "m".into(), crate::domain::new_id(), Utc::now());
    let reused = block_id(&c.apply(tool(0, Some(&missing))));
    assert!(reused.starts_with("call_") && reused != missing);
    assert_eq!(block_id(&c.apply(tool(1, Some("toolu_2")))), "toolu_2");
}

#[test]
fn a_mirror_keeps_the_ids_the_owner_chose() {
    let (mut owner, asked) = started(Uuid::nil());
    let mut published = asked.events.clone();
    for e in
        [tool(0, None), tool(1, Some("toolu_1")), tool(2, Some("toolu_1")), ProviderEvent::Stop { stop_reason: None }]
    {
        let applied = owner.apply(e);
        published.extend(applied.events);
    }
    published.push(owner.finish(MessageStatus::Complete, None, Utc::now()).unwrap().1);
    let mut mirror = Conversation::new(Uuid::nil(), Vec::new());
    for e in &published {
        mirror.mirror(e, Utc::now()).unwrap();
    }
    let ids = |c: &Conversation| c.messages()[1].blocks.iter().map(|b| b.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&mirror), ids(&owner));
}

#[test]
fn replays_for_every_kind_of_cursor() {
    let (mut c, asked) = started(Uuid::nil());
    let id = asked.assistant.id;
    c.apply(block(0, BlockKind::Text));
    c.apply(text(0, "héllo"));
    // Fresh while running: the answer so far, whole.
    let fresh = c.replay(Resume::Fresh);
    assert_eq!(fresh.notice, None);
    assert_eq!(fresh.cursor, Some(Cursor::new(asked.user.id, 1, 0)), "ready stands after the settled messages");
    assert_eq!(fresh.events.len(), 3, "started, block, delta");
    // Inside a character, unknown, malformed: cursor_invalid, then fresh.
    for from in
        [Resume::At(Cursor::new(id, 0, 2)), Resume::At(Cursor::new(Uuid::from_u128(9), 0, 0)), Resume::Malformed]
    {
        let r = c.replay(from);
        assert_eq!(r.notice, Some(StreamCode::CursorInvalid), "{from:?}");
        assert_eq!(r.events, fresh.events);
    }
    // In the middle: the rest of the block.
    let mid = c.replay(Resume::At(Cursor::new(id, 0, 3)));
    assert_eq!(mid.notice, None);
    assert!(matches!(&mid.events[..], [Event::MessageDelta { offset: 3, text, .. }] if text == "llo"));
    c.finish(MessageStatus::Interrupted, Some(MessageError::interrupted()), Utc::now());
    // Past the stored text, or at a block never stored: cursor_ahead and
    // the message again from its start.
    for ahead in [Cursor::new(id, 0, 99), Cursor::new(id, 1, 5), Cursor::new(id, 2, 0)] {
        let r = c.replay(Resume::At(ahead));
        assert_eq!(r.notice, Some(StreamCode::CursorAhead), "{ahead}");
        assert_eq!(r.cursor, Some(Cursor::new(asked.user.id, 1, 0)));
        let kinds: Vec<_> = r.events.iter().map(|e| e.kind().as_str()).collect();
        assert_eq!(kinds, ["message.block", "message.delta", "message.completed"], "{ahead}");
    }
    // At the end of a message interrupted with all its text (a graceful
    // stop, a take-over with the whole log): nothing left, no notice.
    let end = c.replay(Resume::At(Cursor::new(id, 1, 0)));
    assert_eq!((end.notice, end.events.len()), (None, 0));
    // At the end of an interrupted message whose tail is unknown (its log
    // was lost): whether what the client saw is stored cannot be told,
    // so the message comes again.
    let (mut lost, asked) = started(Uuid::nil());
    lost.apply(block(0, BlockKind::Text));
    lost.apply(text(0, "partial"));
    lost.tail_unknown();
    let (ended, _) = lost.finish(MessageStatus::Interrupted, Some(MessageError::interrupted()), Utc::now()).unwrap();
    assert!(!ended.exact_end);
    let at_end = Cursor::new(asked.assistant.id, 1, 0);
    assert_eq!(lost.replay(Resume::At(at_end)).notice, Some(StreamCode::CursorAhead));
    // And so does one loaded as a crash left it (`exact_end` false).
    let reloaded = Conversation::new(Uuid::nil(), lost.messages().to_vec());
    assert_eq!(reloaded.replay(Resume::At(at_end)).notice, Some(StreamCode::CursorAhead));
    // At the end of a complete one: nothing left.
    let (mut done, asked) = started(Uuid::nil());
    done.apply(block(0, BlockKind::Text));
    done.finish(MessageStatus::Complete, None, Utc::now());
    let end = done.replay(Resume::At(Cursor::new(asked.assistant.id, 1, 0)));
    assert_eq!((end.notice, end.events.len()), (None, 0));
}

#[test]
fn a_cursor_into_an_empty_stored_block_resets_it_with_an_empty_delta() {
    let mut c = Conversation::new(Uuid::nil(), Vec::new());
    let asked = c.ask("q".into(), "m".into(), crate::domain::new_id(), Utc::now());
    c.apply(block(0, BlockKind::Text));
    c.finish(MessageStatus::Interrupted, None, Utc::now());
    let r = c.replay(Resume::At(Cursor::new(asked.assistant.id, 0, 10)));
    assert!(matches!(&r.events[1], Event::MessageDelta { offset: 0, text, .. } if text.is_empty()));
}

#[test]
fn catch_up_without_a_cursor_sends_everything() {
    let (mut c, _) = started(Uuid::nil());
    c.apply(block(0, BlockKind::Text));
    c.apply(text(0, "x"));
    let kinds: Vec<_> = c.catch_up(None).iter().map(|e| e.kind().as_str()).collect();
    assert_eq!(kinds, ["message.created", "message.started", "message.block", "message.delta"]);
}

/// Text with multi-byte characters of every width.
fn some_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("é"), Just("日本"), Just("🙂"), Just(" "), Just("{\"k\":1}")],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid provider answer: blocks in order, each block's deltas before
/// the next block begins.
fn answer() -> impl Strategy<Value = Vec<ProviderEvent>> {
    let kind = prop_oneof![Just(BlockKind::Text), Just(BlockKind::Thinking), Just(BlockKind::ToolUse)];
    proptest::collection::vec((kind, proptest::collection::vec(some_text(), 0..6)), 1..4).prop_map(|blocks| {
        let mut events = vec![ProviderEvent::Started { input_tokens: Some(3) }];
        for (i, (kind, deltas)) in blocks.into_iter().enumerate() {
            events.push(block(i, kind));
            for t in deltas {
                events.push(text(i, &t));
            }
        }
        events.push(ProviderEvent::Stop { stop_reason: Some("end_turn".into()) });
        events
    })
}

proptest! {
    /// Whatever the answer and wherever a subscriber stopped (any cursor
    /// it was given, while the answer ran or after), the events it got,
    /// then the replay after its cursor, then what is published later,
    /// rebuild every block byte for byte: no byte repeated or skipped, no
    /// character split.
    #[test]
    fn any_cursor_plus_its_replay_rebuilds_every_block(events in answer(), stop in any::<prop::sample::Index>(), when in any::<prop::sample::Index>()) {
        let (mut c, asked) = started(Uuid::nil());
        let mut published = asked.events.clone();
        // Replays taken while the answer runs: (index into `published` of
        // the subscriber's last event, its replay, events published after).
        let mut snapshots = Vec::new();
        let at_step = when.index(events.len());
        for (step, e) in events.into_iter().enumerate() {
            let applied = c.apply(e);
            published.extend(applied.events);
            if applied.ended.is_some() {
                published.push(c.finish(MessageStatus::Complete, None, Utc::now()).unwrap().1);
            }
            if step == at_step {
                let positions: Vec<usize> = (0..published.len()).filter(|&i| published[i].kind().is_position()).collect();
                let i = positions[stop.index(positions.len())];
                let replay = c.replay(Resume::At(published[i].cursor().unwrap()));
                snapshots.push((i, replay, published.len()));
            }
        }
        let final_blocks = c.messages()[1].blocks.clone();
        for (i, replay, published_then) in snapshots {
            prop_assert_eq!(replay.notice, None);
            let mut client = Client::default();
            published[..=i].iter().for_each(|e| client.see(e));
            replay.events.iter().for_each(|e| client.see(e));
            published[published_then..].iter().for_each(|e| client.see(e));
            for (b, blk) in final_blocks.iter().enumerate() {
                prop_assert_eq!(client.text(asked.assistant.id, b), blk.text.as_str(), "block {}", b);
            }
        }
    }

    /// A client that saw more than was stored (a crash lost the tail) and
    /// resumes from its cursor ends with exactly the stored text.
    #[test]
    fn a_cursor_past_the_stored_text_ends_with_exactly_the_stored_text(events in answer(), cut in any::<prop::sample::Index>()) {
        let (mut seen, asked) = started(Uuid::nil());
        let mut published = asked.events.clone();
        // The answer as it stood after each provider event: what a
        // checkpoint could have stored before the crash.
        let mut states = vec![seen.messages()[1].clone()];
        for e in events {
            published.extend(seen.apply(e).events);
            states.push(seen.messages()[1].clone());
        }
        let mut stored = states[cut.index(states.len())].clone();
        stored.status = MessageStatus::Interrupted;
        let after_crash = Conversation::new(Uuid::nil(), vec![seen.messages()[0].clone(), stored.clone()]);
        let cursor = published.iter().rev().find(|e| e.kind().is_position()).unwrap().cursor().unwrap();
        let replay = after_crash.replay(Resume::At(cursor));
        let mut client = Client::default();
        published.iter().for_each(|e| client.see(e));
        if let Some(notice) = replay.notice {
            client.see(&Event::error(Uuid::nil(), None, notice, notice.message()));
        }
        replay.events.iter().for_each(|e| client.see(e));
        for (b, blk) in stored.blocks.iter().enumerate() {
            prop_assert_eq!(client.text(stored.id, b), blk.text.as_str());
        }
        for b in stored.blocks.len()..8 {
            prop_assert_eq!(client.text(stored.id, b), "", "a block that was not stored is gone");
        }
    }
}

/// The owner's events, applied by another node in a shuffled, repeated
/// way, as the log and the live channel deliver them.
fn mirrored(published: &[Event], repeat_every: usize) -> Result<Conversation, Gap> {
    let mut mirror = Conversation::new(Uuid::nil(), Vec::new());
    for (i, e) in published.iter().enumerate() {
        mirror.mirror(e, Utc::now())?;
        if repeat_every > 0 && i % repeat_every == 0 {
            // The same frame again, and an older one: no change.
            assert_eq!(mirror.mirror(e, Utc::now()), Ok(false));
            assert_eq!(mirror.mirror(&published[i / 2], Utc::now()), Ok(false));
        }
    }
    Ok(mirror)
}

#[test]
fn a_mirror_refuses_what_would_leave_a_hole() {
    let (mut c, asked) = started(Uuid::nil());
    let mut published = asked.events.clone();
    published.extend(c.apply(block(0, BlockKind::Text)).events);
    published.extend(c.apply(text(0, "abc")).events);
    published.extend(c.apply(text(0, "déf")).events);
    let mut mirror = Conversation::new(Uuid::nil(), Vec::new());
    assert_eq!(mirror.mirror(&published[1], Utc::now()), Err(Gap), "started before its question");
    for e in &published[..3] {
        mirror.mirror(e, Utc::now()).unwrap();
    }
    assert_eq!(mirror.mirror(&published[4], Utc::now()), Err(Gap), "a delta past the text held");
    // A delta overlapping what is held adds only its new part.
    let overlap = Event::MessageDelta {
        thread_id: Uuid::nil(),
        cursor: None,
        message_id: asked.assistant.id,
        block: 0,
        offset: 0,
        text: "abcdé".into(),
    };
    assert_eq!(mirror.mirror(&overlap, Utc::now()), Ok(true));
    assert_eq!(mirror.mirror(&published[4], Utc::now()), Ok(true));
    assert_eq!(mirror.messages()[1].blocks[0].text, "abcdéf");
}

proptest! {
    /// A node mirroring the owner's events (with repeats) holds the same
    /// messages, byte for byte, and replays the same to its subscribers.
    #[test]
    fn a_mirror_holds_what_the_owner_holds(events in answer(), repeat_every in 0usize..4) {
        let (mut owner, asked) = started(Uuid::nil());
        let mut published = asked.events.clone();
        for e in events {
            let applied = owner.apply(e);
            published.extend(applied.events);
            if applied.ended.is_some() {
                published.push(owner.finish(MessageStatus::Complete, None, Utc::now()).unwrap().1);
            }
        }
        let mirror = mirrored(&published, repeat_every).unwrap();
        prop_assert_eq!(mirror.messages().len(), owner.messages().len());
        for (m, o) in mirror.messages().iter().zip(owner.messages()) {
            prop_assert_eq!(&m.blocks.iter().map(|b| (b.kind, b.text.as_str())).collect::<Vec<_>>(),
                &o.blocks.iter().map(|b| (b.kind, b.text.as_str())).collect::<Vec<_>>());
            prop_assert_eq!(m.status, o.status);
        }
        prop_assert_eq!(mirror.replay(Resume::Fresh).events.len(), owner.replay(Resume::Fresh).events.len());
        // …and numbers the answer's UI chunks as the owner does.
        let whole = |c: &Conversation| -> Vec<(u64, bytes::Bytes)> {
            let from = Resume::At(crate::domain::event::end_cursor(&asked.user));
            c.replay(from).events.iter().flat_map(|e| ui_pieces(c, e)).map(|p| (p.seq, p.json)).collect()
        };
        prop_assert_eq!(whole(&mirror), whole(&owner));
    }
}

/// An answer's UI chunks as the AI SDK's WebSocket client takes them:
/// numbers it has seen are skipped, a gap is an error.
fn take_numbered(client: &mut Vec<bytes::Bytes>, pieces: Vec<crate::domain::ui_stream::Piece>) {
    for piece in pieces {
        if (piece.seq as usize) < client.len() {
            continue;
        }
        assert_eq!(piece.seq as usize, client.len(), "no gap in the numbers");
        client.push(piece.json);
    }
}

fn ui_pieces(c: &Conversation, e: &Event) -> Vec<crate::domain::ui_stream::Piece> {
    crate::domain::ui_stream::pieces(e, &c.ui_context(e), true)
}

proptest! {
    /// The UI chunks of an answer are numbered from 0 without gaps as they
    /// are published, and a client that stopped anywhere, then took the
    /// replay after its cursor and what was published later, holds
    /// exactly the chunks of the answer as published, in their numbers:
    /// replayed text is split at the deltas it was published in.
    #[test]
    fn ui_chunks_are_numbered_alike_however_they_reach_a_client(events in answer(), stop in any::<prop::sample::Index>(), when in any::<prop::sample::Index>()) {
        let (mut c, asked) = started(Uuid::nil());
        let mut published = asked.events.clone();
        let mut live: Vec<Vec<crate::domain::ui_stream::Piece>> = asked.events.iter().map(|e| ui_pieces(&c, e)).collect();
        let mut snapshot = None;
        let at_step = when.index(events.len());
        for (step, e) in events.into_iter().enumerate() {
            let applied = c.apply(e);
            let mut now = applied.events;
            if applied.ended.is_some() {
                now.push(c.finish(MessageStatus::Complete, None, Utc::now()).unwrap().1);
            }
            for e in now {
                live.push(ui_pieces(&c, &e));
                published.push(e);
            }
            if step == at_step {
                let positions: Vec<usize> = (0..published.len()).filter(|&i| published[i].kind().is_position()).collect();
                let i = positions[stop.index(positions.len())];
                let replay = c.replay(Resume::At(published[i].cursor().unwrap()));
                let replayed: Vec<_> = replay.events.iter().flat_map(|e| ui_pieces(&c, e)).collect();
                snapshot = Some((i, replayed, published.len()));
            }
        }
        let all: Vec<bytes::Bytes> = live.iter().flatten().map(|p| p.json.clone()).collect();
        let numbers: Vec<u64> = live.iter().flatten().map(|p| p.seq).collect();
        prop_assert_eq!(numbers, (0..all.len() as u64).collect::<Vec<_>>());
        let (i, replayed, published_then) = snapshot.unwrap();
        let mut client = Vec::new();
        live[..=i].iter().for_each(|p| take_numbered(&mut client, p.clone()));
        take_numbered(&mut client, replayed);
        live[published_then..].iter().for_each(|p| take_numbered(&mut client, p.clone()));
        prop_assert_eq!(client, all);
        // A client that saw nothing takes the whole answer from its start.
        let mut fresh = Vec::new();
        let whole = c.replay(Resume::At(crate::domain::event::end_cursor(&asked.user)));
        take_numbered(&mut fresh, whole.events.iter().flat_map(|e| ui_pieces(&c, e)).collect());
        let all_again: Vec<bytes::Bytes> = live.iter().flatten().map(|p| p.json.clone()).collect();
        prop_assert_eq!(fresh, all_again);
    }
}

/// A fresh subscriber that joins while an answer awaits input gets that
/// answer whole, ending in its `message.awaiting`, from just before it (as
/// one that joins a running answer gets it so far): a tab opened then is
/// told what waits.
#[test]
fn a_fresh_replay_while_an_answer_awaits_ends_with_what_waits() {
    let (mut c, asked) = started(Uuid::nil());
    c.apply(block(0, BlockKind::Text));
    c.apply(text(0, "Looking."));
    c.apply(tool(1, Some("toolu_a")));
    c.apply(ProviderEvent::Delta { index: 1, text: "{}".into() });
    c.apply(ProviderEvent::Stop { stop_reason: Some("tool_use".into()) });
    let tools = vec![crate::domain::tools::ToolDef {
        name: "f".into(),
        description: None,
        input_schema: serde_json::json!({"type": "object"}),
        approval: crate::domain::tools::Approval::Always,
        run: crate::domain::tools::Run::Client,
    }];
    let calls = c.step_calls(&tools).expect("the step made a call");
    c.await_input(calls).expect("the answer awaits");
    let fresh = c.replay(Resume::Fresh);
    assert_eq!(fresh.cursor, Some(Cursor::new(asked.user.id, 1, 0)), "ready stands before the awaiting answer");
    let kinds: Vec<&str> = fresh.events.iter().map(|e| e.kind().as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message.started"), "{kinds:?}");
    match fresh.events.last() {
        Some(Event::MessageAwaiting { pending, .. }) => assert_eq!(pending[0].tool_call_id, "toolu_a"),
        other => panic!("the replay ends with what waits, not {other:?}"),
    }
    let mut client = Client::default();
    fresh.events.iter().for_each(|e| client.see(e));
    assert_eq!(client.blocks[&(asked.assistant.id, 0)], "Looking.", "the answer's text whole");
}

/// An answer with `t` as its text, ended `status`.
fn answered(c: &mut Conversation, t: &str, status: MessageStatus) {
    c.apply(block(0, BlockKind::Text));
    c.apply(text(0, t));
    c.finish(status, None, Utc::now()).unwrap();
}

/// The text of each message the model is shown, in order.
fn context_texts(c: &Conversation) -> Vec<String> {
    c.context().iter().map(|m| m.blocks.iter().map(|b| b.text.as_str()).collect()).collect()
}

#[test]
fn a_regenerate_answers_the_newest_question_again_and_the_model_sees_only_the_newest_answer() {
    let mut c = Conversation::new(Uuid::nil(), Vec::new());
    assert!(c.ask_again("m".into(), crate::domain::new_id(), Utc::now()).is_none(), "no question to ask");
    let first = c.ask("one".into(), "m".into(), crate::domain::new_id(), Utc::now());
    answered(&mut c, "first answer", MessageStatus::Complete);
    let second = c.ask("two".into(), "m".into(), crate::domain::new_id(), Utc::now());
    answered(&mut c, "cut", MessageStatus::Cancelled);

    let again = c.ask_again("m2".into(), crate::domain::new_id(), Utc::now()).unwrap();
    assert_eq!(again.user.id, second.user.id, "the newest question, as it is");
    assert_eq!(again.assistant.position, 4, "after the earlier answer, which stays");
    assert_eq!(again.assistant.model.as_deref(), Some("m2"));
    assert!(matches!(&again.events[..], [Event::MessageStarted { .. }]), "only the answer is announced");
    assert_eq!(c.running().map(|m| m.id), Some(again.assistant.id));
    // While it runs, the model sees the thread up to the question.
    assert_eq!(context_texts(&c), ["one", "first answer", "two"]);
    answered(&mut c, "second try", MessageStatus::Complete);
    assert_eq!(c.messages().len(), 5);
    // Later, the newest answer stands for the question's earlier ones.
    c.ask("three".into(), "m".into(), crate::domain::new_id(), Utc::now());
    assert_eq!(context_texts(&c), ["one", "first answer", "two", "second try", "three"]);
    assert_ne!(first.user.id, second.user.id);
}

#[test]
fn a_regenerate_that_could_not_be_stored_is_forgotten_without_its_question() {
    let (mut c, asked) = started(Uuid::nil());
    answered(&mut c, "answer", MessageStatus::Failed);
    let again = c.ask_again("m".into(), crate::domain::new_id(), Utc::now()).unwrap();
    c.finish(MessageStatus::Failed, None, Utc::now());
    c.forget(again.assistant.id);
    let ids: Vec<Uuid> = c.messages().iter().map(|m| m.id).collect();
    assert_eq!(ids, [asked.user.id, asked.assistant.id], "the stored question and answer stay");
    // A question's own answer is forgotten with its question.
    let next = c.ask("next".into(), "m".into(), crate::domain::new_id(), Utc::now());
    c.finish(MessageStatus::Failed, None, Utc::now());
    c.forget(next.assistant.id);
    assert_eq!(c.messages().len(), 2);
}

#[test]
fn a_mirror_takes_a_regenerates_answer_after_the_earlier_one() {
    let (mut owner, asked) = started(Uuid::nil());
    answered(&mut owner, "first", MessageStatus::Complete);
    let mut mirror = Conversation::new(Uuid::nil(), owner.messages().to_vec());
    let again = owner.ask_again("m".into(), crate::domain::new_id(), Utc::now()).unwrap();
    assert_eq!(mirror.mirror(&again.events[0], Utc::now()), Ok(true));
    let running = mirror.running().expect("the mirror runs it");
    assert_eq!((running.id, running.position), (again.assistant.id, 2));
    assert_eq!(mirror.messages()[0].id, asked.user.id);
}

/// A cut answer continued in its block: a subscriber catching up from any
/// position before the cut (or fresh) is told `message.continued` once, at
/// the cut, with the text on both sides exact; one past the cut is not
/// told again.
#[test]
fn a_catch_up_across_a_continuation_tells_it_once_at_its_place() {
    let (mut c, asked) = started(Uuid::nil());
    let id = asked.assistant.id;
    c.apply(block(0, BlockKind::Text));
    c.apply(text(0, "Hello, wor"));
    let continued = c.continue_cut(1, crate::domain::continuation::Cut::ConnectionLost, false).unwrap();
    c.apply(block(0, BlockKind::Text));
    c.apply(text(0, "ld! And more."));
    assert_eq!(c.running().unwrap().blocks[0].text, "Hello, world! And more.");
    let at = continued.cursor().unwrap();
    assert_eq!((at.block, at.offset), (0, 10));
    for from in [None, Some(Cursor::new(id, 0, 0)), Some(Cursor::new(id, 0, 3)), Some(at)] {
        let events = c.catch_up(from);
        let told: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::MessageContinued { .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(told.len(), 1, "from {from:?}: {events:?}");
        let text_of = |es: &[Event]| -> String {
            es.iter()
                .filter_map(|e| if let Event::MessageDelta { text, .. } = e { Some(text.as_str()) } else { None })
                .collect()
        };
        let start = from.map_or(0, |f| f.offset);
        assert_eq!(text_of(&events[..told[0]]), "Hello, wor"[start.min(10)..], "from {from:?}");
        assert_eq!(text_of(&events[told[0]..]), "ld! And more.");
        let mut client = Client::default();
        if let Some(f) = from {
            client.blocks.insert((id, 0), "Hello, wor"[..f.offset].to_owned());
        }
        events.iter().for_each(|e| client.see(e));
        assert_eq!(client.blocks[&(id, 0)], "Hello, world! And more.");
    }
    let past = c.catch_up(Some(Cursor::new(id, 0, 12)));
    assert!(!past.iter().any(|e| matches!(e, Event::MessageContinued { .. })), "{past:?}");
}
