//! The Anthropic Messages API, streamed (`stream: true`) over reqwest.
//!
//! Every event of the protocol is handled: `message_start` (input usage),
//! `content_block_start` / `_delta` / `_stop` for text (`text_delta`),
//! thinking (`thinking_delta`, `signature_delta` kept apart from the text)
//! and tool_use (`input_json_delta`, with the block's `id` and `name`),
//! `message_delta` (stop reason, cumulative output usage), `message_stop`,
//! any number of `ping`s, `error` (also after HTTP 200), and unknown event
//! types (counted and logged at debug, then ignored).
//!
//! Before the first content event, refusals worth retrying (429, 5xx, 529,
//! connection errors, a stream cut before content) are retried with
//! backoff; after it, never: a retry would be a different answer.
//!
//! Tools go as the API defines them: `tools` (`name`, `description`,
//! `input_schema`; who runs a tool and whether a person approves its calls
//! are the service's business, never sent) and `tool_choice`, both only
//! when the request has tools. An answer in several steps goes back as its
//! turns (`domain::turn::as_turns`): each step's `tool_use` blocks in the
//! assistant's turn, their `tool_result` blocks in the user's turn after
//! it, first in that turn's content as the API requires (a question asked
//! after them is merged in behind them).
//!
//! A continuation (`ModelRequest::continuation`, its last turn the partial
//! answer) goes as a prefill (the partial answer last, trailing whitespace
//! trimmed, which the model goes on from) up to Claude 4.5, and as the
//! partial answer followed by `continuation::INSTRUCTION` from Claude 4.6
//! on, with extended thinking on, or for a model name this file does not
//! recognise (`continuation_form`, `claude_version`): those refuse a prefill.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    calls,
    upstream::{self, Step, UpstreamPolicy},
    ChatTurn, ModelRequest, Provider, ProviderEvent, ProviderStream,
};
use crate::domain::{
    continuation::{Form, FormSetting, INSTRUCTION},
    tools::{ToolChoice, ToolDef},
    BlockKind, Role,
};

pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
const API_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    api_key: String,
    model: String,
    policy: UpstreamPolicy,
    unknown_events: prometheus::IntCounter,
}

/// How to reach the Anthropic API.
pub struct AnthropicConfig {
    pub base_url: String,
    pub api_key: String,
    pub model: Option<String>,
    pub policy: UpstreamPolicy,
    /// Counts event types this client does not know.
    pub unknown_events: prometheus::IntCounter,
}

impl Anthropic {
    pub fn new(config: AnthropicConfig) -> Self {
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        let model = config.model.unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let inner =
            Inner { url, api_key: config.api_key, model, policy: config.policy, unknown_events: config.unknown_events };
        Anthropic { inner: Arc::new(inner) }
    }
}

/// The request body: the conversation in order, consecutive turns of one
/// role merged (the API wants them alternating), assistant blocks sent back
/// as the content they were, and the tools the model may call. A
/// continuation ends in the form `continuation_form` chooses; one whose
/// partial answer sends nothing (cut inside its first thinking block, or
/// whitespace alone) is the plain request again.
pub fn request_body(request: &ModelRequest) -> Value {
    let tools = !request.tools.is_empty();
    let mut turns = request.turns.as_slice();
    let mut partial = None;
    if let (Some(setting), Some((last, before))) = (request.continuation, turns.split_last()) {
        if last.role == Role::Assistant {
            if says_nothing(&content_of(last, tools)) {
                turns = before;
            } else {
                partial = Some(setting);
            }
        }
    }
    let mut messages: Vec<Value> = Vec::new();
    let mut last_role = None;
    for turn in turns {
        let content = content_of(turn, tools);
        if content.is_empty() {
            continue;
        }
        if last_role == Some(turn.role) {
            if let Some(Value::Array(prev)) = messages.last_mut().and_then(|m| m.get_mut("content")) {
                prev.extend(content);
                continue;
            }
        }
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        messages.push(json!({ "role": role, "content": content }));
        last_role = Some(turn.role);
    }
    if let Some(setting) = partial {
        match continuation_form(setting, &request.model, &request.turns) {
            Form::Prefill => trim_prefill(&mut messages),
            Form::Instruction => {
                messages.push(json!({ "role": "user", "content": [{ "type": "text", "text": INSTRUCTION }] }))
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body["system"] = json!(system);
    }
    calls::attach_tools(&mut body, request, tool_of, choice_of);
    body
}

/// The form of a continuation of `turns` (the last the partial answer):
/// the setting's, or under `Auto` a prefill only where the API takes one:
/// a Claude model before 4.6 without extended thinking (a thinking block
/// in the partial answer says it is on; one in an earlier turn is taken to
/// say so too, as a step after tool results may have none of its own). A
/// name that is no Claude name this knows gets the instruction, which
/// every model takes.
pub fn continuation_form(setting: FormSetting, model: &str, turns: &[ChatTurn]) -> Form {
    match setting {
        FormSetting::Prefill => Form::Prefill,
        FormSetting::Instruction => Form::Instruction,
        FormSetting::Auto => {
            let thinking = turns.iter().flat_map(|t| &t.blocks).any(|b| b.kind == BlockKind::Thinking);
            match claude_version(model) {
                Some(version) if version < (4, 6) && !thinking => Form::Prefill,
                _ => Form::Instruction,
            }
        }
    }
}

/// The (major, minor) version of a Claude model name, either form:
/// `claude-<family>-<major>[-<minor>][-<suffix>]` (`claude-sonnet-4-5`,
/// `claude-opus-4-20250514`, `claude-sonnet-5`) or
/// `claude-<major>[-<minor>]-<family>[-<suffix>]` (`claude-3-7-sonnet-20250219`),
/// where the family is opus, sonnet or haiku and the suffix an 8-digit
/// date or `latest` (an 8-digit part is a date, never a minor). `None` for
/// any other name.
pub fn claude_version(model: &str) -> Option<(u32, u32)> {
    fn number(part: &str) -> Option<u32> {
        let short = (1..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        if short {
            part.parse().ok()
        } else {
            None
        }
    }
    fn family(part: &str) -> bool {
        matches!(part, "opus" | "sonnet" | "haiku")
    }
    fn suffix(part: &str) -> bool {
        part == "latest" || (part.len() == 8 && part.bytes().all(|b| b.is_ascii_digit()))
    }
    let mut parts: Vec<&str> = model.strip_prefix("claude-")?.split('-').collect();
    if parts.last().is_some_and(|p| suffix(p)) {
        parts.pop();
    }
    match parts.as_slice() {
        [f, major] if family(f) => Some((number(major)?, 0)),
        [f, major, minor] if family(f) => Some((number(major)?, number(minor)?)),
        [major, f] if family(f) => Some((number(major)?, 0)),
        [major, minor, f] if family(f) => Some((number(major)?, number(minor)?)),
        _ => None,
    }
}

/// Content with nothing to go on from: no block but text of whitespace
/// alone (the API refuses such text).
fn says_nothing(content: &[Value]) -> bool {
    content.iter().all(|c| c["type"] == "text" && c["text"].as_str().unwrap_or_default().trim().is_empty())
}

/// A prefill's last content may not end in whitespace (the API refuses
/// it): the last text block of the last message is trimmed, and dropped if
/// nothing is left; a message left empty is dropped too.
fn trim_prefill(messages: &mut Vec<Value>) {
    let Some(Value::Array(content)) = messages.last_mut().and_then(|m| m.get_mut("content")) else {
        return;
    };
    let Some(at) = content.iter().rposition(|c| c["type"] == "text") else {
        return;
    };
    let trimmed = content[at]["text"].as_str().unwrap_or_default().trim_end().to_owned();
    if trimmed.is_empty() {
        content.remove(at);
    } else {
        content[at]["text"] = json!(trimmed);
    }
    if content.is_empty() {
        messages.pop();
    }
}

/// A tool as the API defines one: only what the model is told.
fn tool_of(tool: &ToolDef) -> Value {
    let mut t = json!({ "name": tool.name, "input_schema": tool.input_schema });
    if let Some(description) = &tool.description {
        t["description"] = json!(description);
    }
    t
}

/// The contract's choice is Anthropic's; spelled out here all the same, so
/// a change to the contract's form cannot change what is sent.
fn choice_of(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!({ "type": "auto" }),
        ToolChoice::Any => json!({ "type": "any" }),
        ToolChoice::Tool { name } => json!({ "type": "tool", "name": name }),
        ToolChoice::None => json!({ "type": "none" }),
    }
}

/// A turn's blocks as content. `tools`: the request offers tools; without
/// any, the API refuses `tool_use` and `tool_result` blocks (a thread whose
/// tools were taken away), so past calls and results are told as text.
fn content_of(turn: &ChatTurn, tools: bool) -> Vec<Value> {
    turn.blocks
        .iter()
        .filter_map(|b| match b.kind {
            BlockKind::Text if !b.text.is_empty() => Some(json!({ "type": "text", "text": b.text })),
            BlockKind::ToolUse if !tools => {
                let name = b.name.as_deref().unwrap_or_default();
                Some(json!({ "type": "text", "text": format!("[called the tool {name} with {}]", calls::input_object(&b.text)) }))
            }
            BlockKind::ToolResult if !tools => {
                let text = calls::result_text(&b.text);
                let what = if b.is_error { "failed" } else { "answered" };
                Some(json!({ "type": "text", "text": format!("[the tool {what}: {text}]") }))
            }
            // A thinking block can only be sent back with its signature.
            BlockKind::Thinking => {
                b.signature.as_ref().map(|sig| json!({ "type": "thinking", "thinking": b.text, "signature": sig }))
            }
            BlockKind::ToolUse => Some(json!({
                "type": "tool_use",
                "id": b.id,
                "name": b.name,
                "input": calls::input_object(&b.text),
            })),
            BlockKind::ToolResult => {
                let mut r = json!({ "type": "tool_result", "tool_use_id": b.tool_use_id });
                // `content` is optional: an empty one is left out (the API
                // refuses empty text blocks, and may read "" as one).
                let text = calls::result_text(&b.text);
                if !text.is_empty() {
                    r["content"] = json!(text);
                }
                if b.is_error {
                    r["is_error"] = json!(true);
                }
                Some(r)
            }
            _ => None,
        })
        .collect()
}

/// Interprets one event. `content` says whether content began already.
fn interpret(name: &str, data: &str) -> Step {
    let v: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(_) if name == "ping" => return Step::Emit(vec![]),
        Err(e) => return Step::Fail(format!("unreadable `{name}` event: {e}")),
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or(name);
    let index = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let num = |p: &str| v.pointer(p).and_then(Value::as_u64);
    match kind {
        "message_start" => {
            Step::Emit(vec![ProviderEvent::Started { input_tokens: num("/message/usage/input_tokens") }])
        }
        "content_block_start" => {
            let block_kind = match text("/content_block/type").as_deref() {
                Some("text") => BlockKind::Text,
                Some("thinking") | Some("redacted_thinking") => BlockKind::Thinking,
                Some("tool_use") | Some("server_tool_use") => BlockKind::ToolUse,
                other => return Step::Fail(format!("unsupported content block type {other:?}")),
            };
            let mut out = vec![ProviderEvent::BlockStart {
                index,
                kind: block_kind,
                id: text("/content_block/id"),
                name: text("/content_block/name"),
            }];
            // A block may start with text already in it.
            if let Some(t) = text("/content_block/text").filter(|t| !t.is_empty()) {
                out.push(ProviderEvent::Delta { index, text: t });
            }
            Step::Emit(out)
        }
        "content_block_delta" => match text("/delta/type").as_deref() {
            Some("text_delta") => {
                Step::Emit(vec![ProviderEvent::Delta { index, text: text("/delta/text").unwrap_or_default() }])
            }
            Some("thinking_delta") => {
                Step::Emit(vec![ProviderEvent::Delta { index, text: text("/delta/thinking").unwrap_or_default() }])
            }
            Some("input_json_delta") => {
                Step::Emit(vec![ProviderEvent::Delta { index, text: text("/delta/partial_json").unwrap_or_default() }])
            }
            Some("signature_delta") => Step::Emit(vec![ProviderEvent::Signature {
                index,
                signature: text("/delta/signature").unwrap_or_default(),
            }]),
            other => {
                tracing::debug!(delta_type = ?other, "ignoring unknown delta type");
                Step::Emit(vec![])
            }
        },
        "content_block_stop" | "ping" => Step::Emit(vec![]),
        "message_delta" => {
            let mut out = vec![ProviderEvent::Usage {
                input_tokens: num("/usage/input_tokens"),
                output_tokens: num("/usage/output_tokens"),
            }];
            if let Some(reason) = text("/delta/stop_reason") {
                out.push(ProviderEvent::StopReason { stop_reason: reason });
            }
            Step::Emit(out)
        }
        "message_stop" => Step::Done,
        "error" => {
            let etype = text("/error/type").unwrap_or_else(|| "error".into());
            let message = text("/error/message").unwrap_or_default();
            let said = format!("model provider error ({etype}): {message}");
            // A fault of the provider's (overloaded, its own error, a
            // time-out) may pass; a request it finds wrong would fail again.
            match etype.as_str() {
                "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error" => Step::ProviderError(said),
                _ => Step::Fail(said),
            }
        }
        other => {
            tracing::debug!(event = other, "ignoring unknown upstream event type");
            Step::Unknown
        }
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn default_model(&self) -> &str {
        &self.inner.model
    }

    fn stream(&self, request: ModelRequest) -> ProviderStream {
        let inner = self.inner.clone();
        let body = request_body(&request);
        let protocol = Messages { unknown_events: inner.unknown_events.clone() };
        let policy = inner.policy.clone();
        let make = move |client: &reqwest::Client| {
            client
                .post(&inner.url)
                .header("x-api-key", &inner.api_key)
                .header("anthropic-version", API_VERSION)
                .header("accept", "text/event-stream")
                .json(&body)
        };
        upstream::stream_answer(policy, make, protocol)
    }
}

/// The Messages streaming protocol, for `upstream::stream_answer`.
struct Messages {
    unknown_events: prometheus::IntCounter,
}

impl upstream::Protocol for Messages {
    fn begin(&mut self) -> Vec<ProviderEvent> {
        Vec::new()
    }

    fn read(&mut self, event: &eventsource_stream::Event) -> Step {
        let step = interpret(&event.event, &event.data);
        if matches!(step, Step::Unknown) {
            self.unknown_events.inc();
        }
        step
    }

    fn closed(&self) -> Result<(), &'static str> {
        Err("message_stop")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::Block,
        model::calls::fixtures::{request, two_steps, weather_tools},
    };
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    use proptest::prelude::*;

    /// A whole answer as the upstream writes it: pings, a multi-line data
    /// field, multi-byte text, thinking with a signature.
    fn transcript() -> String {
        [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7}}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm… 🤔\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\r\ndata: \"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüße, 世界\"}}\n\n",
            ": a comment line\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ]
        .concat()
    }

    /// Decodes bytes delivered in these pieces into provider events.
    fn decode(pieces: Vec<Vec<u8>>) -> (Vec<ProviderEvent>, bool) {
        let chunks = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::convert::Infallible>));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let events = runtime.block_on(chunks.eventsource().collect::<Vec<_>>());
        let mut out = Vec::new();
        let mut done = false;
        for ev in events {
            let ev = ev.expect("well-formed stream");
            match interpret(&ev.event, &ev.data) {
                Step::Emit(e) => out.extend(e),
                Step::Done => done = true,
                Step::Unknown | Step::Fail(_) | Step::ProviderError(_) => panic!("unexpected {}", ev.event),
            }
        }
        (out, done)
    }

    proptest! {
        /// However TCP splits the bytes, the same events come out.
        #[test]
        fn any_split_of_the_stream_decodes_the_same(cuts in proptest::collection::vec(0usize..2000, 0..40)) {
            let bytes = transcript().into_bytes();
            let whole = decode(vec![bytes.clone()]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut from = 0;
            for c in cuts {
                pieces.push(bytes[from..c].to_vec());
                from = c;
            }
            pieces.push(bytes[from..].to_vec());
            prop_assert_eq!(decode(pieces), whole);
        }
    }

    #[test]
    fn the_transcript_decodes_to_blocks_usage_and_stop() {
        let (events, done) = decode(vec![transcript().into_bytes()]);
        assert!(done);
        assert!(events.contains(&ProviderEvent::Delta { index: 1, text: "Grüße, 世界".into() }));
        assert!(events.contains(&ProviderEvent::Signature { index: 0, signature: "c2ln".into() }));
        assert!(events.contains(&ProviderEvent::Started { input_tokens: Some(7) }));
        assert!(events.contains(&ProviderEvent::StopReason { stop_reason: "end_turn".into() }));
    }

    #[test]
    fn body_merges_turns_and_sends_blocks_back() {
        let thinking = Block { signature: Some("sig".into()), ..Block::text("hmm") };
        let thinking = Block { kind: BlockKind::Thinking, ..thinking };
        let request = ModelRequest {
            model: "m".into(),
            system: Some("be brief".into()),
            turns: vec![
                ChatTurn { role: Role::User, blocks: vec![Block::text("a")] },
                ChatTurn { role: Role::User, blocks: vec![Block::text("b")] },
                ChatTurn { role: Role::Assistant, blocks: vec![thinking, Block::text("c")] },
                ChatTurn { role: Role::User, blocks: vec![Block::text("d")] },
            ],
            max_tokens: 10,
            answer_bytes: 0,
            tools: vec![],
            tool_choice: None,
            continuation: None,
        };
        let body = request_body(&request);
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["stream"], true);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(messages[1]["content"][0]["type"], "thinking");
        assert_eq!(messages[1]["content"][0]["signature"], "sig");
        assert_eq!(messages[2]["content"][0]["text"], "d");
    }

    #[test]
    fn tools_go_as_the_api_defines_them_and_only_with_tools() {
        let body = request_body(&request(two_steps(None), weather_tools(), Some(ToolChoice::Any)));
        assert_eq!(
            body["tools"],
            json!([
                {"name": "get_weather", "description": "The weather in a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "get_time", "input_schema": {"type": "object"}},
            ]),
            "approval and run are the service's own"
        );
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        for (choice, sent) in [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::Tool { name: "get_time".into() }, json!({"type": "tool", "name": "get_time"})),
            (ToolChoice::None, json!({"type": "none"})),
        ] {
            assert_eq!(request_body(&request(vec![], weather_tools(), Some(choice)))["tool_choice"], sent);
        }
        assert!(request_body(&request(vec![], weather_tools(), None)).get("tool_choice").is_none());
        let none = request_body(&request(vec![], vec![], Some(ToolChoice::Auto)));
        assert!(none.get("tools").is_none() && none.get("tool_choice").is_none());
    }

    #[test]
    fn a_steps_calls_and_results_go_back_as_turns_results_first() {
        let body = request_body(&request(two_steps(Some("and tomorrow?")), weather_tools(), None));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    // Its input was cut: an object all the same.
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 °C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "input cut off", "is_error": true},
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]},
                {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]},
            ])
        );

        // The next step of a running answer: its results end the turns.
        let mut step = two_steps(None);
        step.pop();
        let body = request_body(&request(step, weather_tools(), None));
        let last = body["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "user");
        assert_eq!(last["content"][0]["type"], "tool_result");

        // An answer that ended on results (cancelled while awaiting), then
        // a question: one user turn, the results first, as the API wants.
        let mut cut = two_steps(None);
        cut.pop();
        cut.push(ChatTurn { role: Role::User, blocks: vec![Block::text("never mind")] });
        let body = request_body(&request(cut, weather_tools(), None));
        let last = body["messages"].as_array().unwrap().last().unwrap().clone();
        let kinds: Vec<&str> =
            last["content"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!((last["role"].as_str(), kinds), (Some("user"), vec!["tool_result", "tool_result", "text"]));
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn an_empty_result_sends_no_content() {
        let turns = vec![ChatTurn { role: Role::User, blocks: vec![Block::tool_result("t", String::new(), false)] }];
        let body = request_body(&request(turns, weather_tools(), None));
        assert_eq!(body["messages"][0]["content"][0], json!({"type": "tool_result", "tool_use_id": "t"}));
    }

    #[test]
    fn without_tools_past_calls_and_results_are_told_as_text() {
        // A thread whose tools were taken away: the API refuses tool
        // blocks in a request that defines no tools.
        let body = request_body(&request(two_steps(None), vec![], None));
        assert!(body.get("tools").is_none());
        let types: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["content"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()))
            .collect();
        assert!(types.iter().all(|t| *t == "text"), "{types:?}");
        let said = body["messages"].to_string();
        assert!(said.contains("[called the tool get_weather"), "{said}");
    }

    fn thinking(text: &str, signature: Option<&str>) -> Block {
        Block { kind: BlockKind::Thinking, signature: signature.map(str::to_owned), ..Block::text(text) }
    }

    /// A question and the partial answer `blocks`, continued as `setting`.
    fn continued(model: &str, setting: FormSetting, blocks: Vec<Block>) -> ModelRequest {
        let turns = vec![
            ChatTurn { role: Role::User, blocks: vec![Block::text("Tell me a story.")] },
            ChatTurn { role: Role::Assistant, blocks },
        ];
        ModelRequest { model: model.into(), continuation: Some(setting), ..request(turns, vec![], None) }
    }

    #[test]
    fn claude_model_names_parse_to_their_versions() {
        for (name, version) in [
            ("claude-sonnet-4-5", Some((4, 5))),
            ("claude-sonnet-4-5-20250929", Some((4, 5))),
            ("claude-opus-4-1-20250805", Some((4, 1))),
            ("claude-opus-4-20250514", Some((4, 0))),
            ("claude-opus-4-6", Some((4, 6))),
            ("claude-sonnet-5", Some((5, 0))),
            ("claude-3-7-sonnet-20250219", Some((3, 7))),
            ("claude-3-5-haiku-latest", Some((3, 5))),
            ("claude-3-opus-20240229", Some((3, 0))),
            ("claude-haiku-4-5", Some((4, 5))),
            ("claude-sonnet-4-5-latest", Some((4, 5))),
            ("claude-opus-10-2", Some((10, 2))),
            ("m", None),
            ("gpt-4o", None),
            ("claude", None),
            ("claude-sonnet", None),
            ("claude-sonnet-latest", None),
            ("claude-poet-4-5", None),
            ("claude-sonnet-4-5-6", None),
            ("claude-sonnet-20250929", None),
            ("claude-sonnet-4-5-2025", None),
            ("us.anthropic.claude-sonnet-4-5", None),
            ("claude-2.1", None),
        ] {
            assert_eq!(claude_version(name), version, "{name}");
        }
    }

    #[test]
    fn auto_prefills_up_to_claude_4_5_and_instructs_from_4_6_or_for_unknown_names() {
        let partial = [ChatTurn { role: Role::Assistant, blocks: vec![Block::text("Once upon")] }];
        for (model, form) in [
            ("claude-3-7-sonnet-20250219", Form::Prefill),
            ("claude-3-5-haiku-latest", Form::Prefill),
            ("claude-opus-4-20250514", Form::Prefill),
            ("claude-opus-4-1-20250805", Form::Prefill),
            ("claude-sonnet-4-5-20250929", Form::Prefill),
            ("claude-haiku-4-5", Form::Prefill),
            ("claude-opus-4-6", Form::Instruction),
            ("claude-sonnet-4-7-20260101", Form::Instruction),
            ("claude-sonnet-5", Form::Instruction),
            ("some-proxy-model", Form::Instruction),
        ] {
            assert_eq!(continuation_form(FormSetting::Auto, model, &partial), form, "{model}");
        }
    }

    #[test]
    fn auto_instructs_any_model_with_thinking_on() {
        for signature in [Some("sig"), None] {
            let partial = [ChatTurn {
                role: Role::Assistant,
                blocks: vec![thinking("hmm", signature), Block::text("Once upon")],
            }];
            assert_eq!(continuation_form(FormSetting::Auto, "claude-3-7-sonnet-20250219", &partial), Form::Instruction);
        }
        // A step after tool results, with no thinking of its own: an
        // earlier step's thinking says it is on.
        let mut steps = two_steps(None);
        steps[1].blocks.insert(0, thinking("hmm", Some("sig")));
        steps.push(ChatTurn { role: Role::Assistant, blocks: vec![Block::text("Sun")] });
        assert_eq!(continuation_form(FormSetting::Auto, "claude-sonnet-4-5", &steps), Form::Instruction);
        steps[1].blocks.remove(0);
        assert_eq!(continuation_form(FormSetting::Auto, "claude-sonnet-4-5", &steps), Form::Prefill);
    }

    #[test]
    fn forced_settings_override_the_model() {
        let partial = [ChatTurn { role: Role::Assistant, blocks: vec![thinking("hmm", Some("s")), Block::text("x")] }];
        assert_eq!(continuation_form(FormSetting::Prefill, "claude-opus-4-6", &partial), Form::Prefill);
        assert_eq!(continuation_form(FormSetting::Instruction, "claude-3-5-haiku-latest", &partial), Form::Instruction);
        let body = request_body(&continued("claude-opus-4-6", FormSetting::Prefill, vec![Block::text("Once ")]));
        assert_eq!(body["messages"].as_array().unwrap().last().unwrap()["role"], "assistant");
        let body = request_body(&continued("claude-haiku-4-5", FormSetting::Instruction, vec![Block::text("Once ")]));
        assert_eq!(body["messages"][2], json!({"role": "user", "content": [{"type": "text", "text": INSTRUCTION}]}));
    }

    #[test]
    fn a_prefill_ends_on_the_partial_answer_its_trailing_whitespace_trimmed() {
        let body =
            request_body(&continued("claude-sonnet-4-5", FormSetting::Auto, vec![Block::text("Once upon a \n\t ")]));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Tell me a story."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Once upon a"}]},
            ])
        );
        // A last text block of whitespace alone is dropped; the text before
        // it is left as it was.
        let blocks = vec![Block::text("Once upon a "), Block::text(" \n")];
        let body = request_body(&continued("claude-sonnet-4-5", FormSetting::Prefill, blocks));
        assert_eq!(body["messages"][1]["content"], json!([{"type": "text", "text": "Once upon a "}]));
        // Whitespace alone: nothing to go on from, the plain request.
        let body = request_body(&continued("claude-sonnet-4-5", FormSetting::Prefill, vec![Block::text("  ")]));
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_instruction_follows_the_partial_answer_as_it_is() {
        let body = request_body(&continued("claude-opus-4-6", FormSetting::Auto, vec![Block::text("Once upon a ")]));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Tell me a story."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Once upon a "}]},
                {"role": "user", "content": [{"type": "text", "text": INSTRUCTION}]},
            ])
        );
    }

    #[test]
    fn a_continuation_sends_signed_thinking_back_byte_exact_and_drops_a_partial_one() {
        let said = "Let me think… 🤔\n  \"quoted\"\n";
        let blocks = vec![
            thinking(said, Some("EqQBCgIYAhIM+/sig==")),
            Block::text("Once upon a "),
            thinking("half a thou", None),
        ];
        let body = request_body(&continued("claude-sonnet-4-5", FormSetting::Auto, blocks));
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "thinking", "thinking": said, "signature": "EqQBCgIYAhIM+/sig=="},
                {"type": "text", "text": "Once upon a "},
            ]})
        );
        assert_eq!(body["messages"][2]["content"][0]["text"], INSTRUCTION, "thinking is on");
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_partial_answer_cut_in_its_first_thinking_is_the_plain_request_again() {
        let plain = request_body(&ModelRequest {
            model: "claude-sonnet-4-5".into(),
            ..request(vec![ChatTurn { role: Role::User, blocks: vec![Block::text("Tell me a story.")] }], vec![], None)
        });
        for setting in [FormSetting::Auto, FormSetting::Prefill, FormSetting::Instruction] {
            let body = request_body(&continued("claude-sonnet-4-5", setting, vec![thinking("half a thou", None)]));
            assert_eq!(body, plain, "{setting:?}");
        }
    }

    #[test]
    fn a_continuation_after_tool_results_is_sent_as_usual() {
        let mut step = two_steps(None);
        step.pop();
        let plain = request(step, weather_tools(), None);
        for setting in [FormSetting::Auto, FormSetting::Prefill, FormSetting::Instruction] {
            let body = request_body(&ModelRequest { continuation: Some(setting), ..plain.clone() });
            assert_eq!(body, request_body(&plain), "{setting:?}");
        }
    }
}
