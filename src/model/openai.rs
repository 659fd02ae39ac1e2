//! OpenAI-compatible chat completions, streamed: what vLLM, llama.cpp's
//! server and Ollama speak, so the service can run on a local model.
//!
//! Reads `choices[].delta.content` (a text block), `delta.reasoning_content`
//! or `delta.reasoning` (a thinking block, as reasoning servers send it),
//! `delta.tool_calls` (one tool_use block per call index, its arguments as
//! the block's text), `finish_reason`, the final usage chunk (with empty or
//! null `choices`), `data: [DONE]`, and error chunks, which always fail the
//! answer. Retries follow the same rules as the Anthropic provider.
//!
//! Tools go as `tools` (`{type: "function", function: {name, description,
//! parameters}}`) and `tool_choice` (`auto`, `required`, one function,
//! `none`), only when the request has tools. A step's calls go back as the
//! assistant message's `tool_calls` (their `arguments` the JSON text the
//! model wrote), and each result as a `role: tool` message right after it
//! (see `calls` for what its `content` reads). The API has no error flag on
//! a result: an error's content is `Error: <message>`, so the model can
//! tell it from an output.
//!
//! A continuation (`ModelRequest::continuation`, its last turn the partial
//! answer) goes as a prefill under `Auto`: the partial answer as the last
//! `role: assistant` message, trailing whitespace trimmed, no other
//! parameter; as `Instruction`, that message as it is and a `role: user`
//! message of `continuation::INSTRUCTION` after it. A partial answer with
//! no text and no call is not sent: the plain request again.

use std::{collections::HashMap, sync::Arc};

use serde_json::{json, Value};

use super::{
    calls,
    upstream::{self, Step, UpstreamPolicy},
    ModelRequest, Provider, ProviderEvent, ProviderStream,
};
use crate::domain::{
    continuation::{Form, FormSetting, INSTRUCTION},
    tools::{ToolChoice, ToolDef},
    Block, BlockKind, Role,
};

pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

pub struct OpenAi {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    api_key: Option<String>,
    model: String,
    policy: UpstreamPolicy,
}

impl OpenAi {
    pub fn new(base_url: &str, api_key: Option<String>, model: Option<String>, policy: UpstreamPolicy) -> Self {
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let model = model.unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        OpenAi { inner: Arc::new(Inner { url, api_key, model, policy }) }
    }
}

/// The request body: the system prompt, then each turn as the chat
/// messages it is, and the tools the model may call.
pub fn request_body(request: &ModelRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for turn in &request.turns {
        let text: String = turn.blocks.iter().filter(|b| b.kind == BlockKind::Text).map(|b| b.text.as_str()).collect();
        match turn.role {
            Role::User => {
                // Results answer the calls of the assistant message just
                // before them, so they come first; a question asked after
                // them follows as a user message of its own.
                let results: Vec<Value> =
                    turn.blocks.iter().filter(|b| b.kind == BlockKind::ToolResult).map(tool_message).collect();
                let only_results = !results.is_empty() && text.is_empty();
                messages.extend(results);
                if !only_results {
                    messages.push(json!({ "role": "user", "content": text }));
                }
            }
            Role::Assistant => {
                let tool_calls: Vec<Value> = turn
                    .blocks
                    .iter()
                    .filter(|b| b.kind == BlockKind::ToolUse)
                    .map(|b| {
                        let arguments = calls::arguments(&b.text);
                        json!({ "id": b.id, "type": "function", "function": { "name": b.name, "arguments": arguments } })
                    })
                    .collect();
                let mut m = json!({ "role": "assistant", "content": text });
                if !tool_calls.is_empty() {
                    // A message of calls alone has no content (null, as
                    // the API itself answers it), not an empty text.
                    if text.is_empty() {
                        m["content"] = Value::Null;
                    }
                    m["tool_calls"] = Value::Array(tool_calls);
                }
                messages.push(m);
            }
        }
    }
    if let Some(setting) =
        request.continuation.filter(|_| request.turns.last().is_some_and(|t| t.role == Role::Assistant))
    {
        continue_from(&mut messages, continuation_form(setting));
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    calls::attach_tools(&mut body, request, tool_of, choice_of);
    body
}

/// The form of a continuation: the setting's; `Auto` is a prefill, which
/// OpenAI-compatible servers take (the chat template goes on from a last
/// assistant message).
pub fn continuation_form(setting: FormSetting) -> Form {
    match setting {
        FormSetting::Auto | FormSetting::Prefill => Form::Prefill,
        FormSetting::Instruction => Form::Instruction,
    }
}

/// Ends `messages`, whose last is the partial answer's assistant message,
/// in `form`: trimmed of trailing whitespace (a prefill), or followed by
/// the instruction. A partial answer with no text (or whitespace alone) and
/// no call is dropped, and nothing added: the plain request.
fn continue_from(messages: &mut Vec<Value>, form: Form) {
    let Some(last) = messages.last_mut() else {
        return;
    };
    let calls = last.get("tool_calls").is_some();
    let text = last["content"].as_str().unwrap_or_default().trim_end().to_owned();
    if text.is_empty() && !calls {
        messages.pop();
        return;
    }
    if form == Form::Prefill {
        // Calls alone have no content (null), as in any request.
        last["content"] = if text.is_empty() { Value::Null } else { json!(text) };
    }
    if form == Form::Instruction {
        messages.push(json!({ "role": "user", "content": INSTRUCTION }));
    }
}

/// A tool as a function the model may call: only what the model is told.
fn tool_of(tool: &ToolDef) -> Value {
    let mut function = json!({ "name": tool.name, "parameters": tool.input_schema });
    if let Some(description) = &tool.description {
        function["description"] = json!(description);
    }
    json!({ "type": "function", "function": function })
}

/// The contract's choice (Anthropic's words) in the chat API's.
fn choice_of(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Any => json!("required"),
        ToolChoice::Tool { name } => json!({ "type": "function", "function": { "name": name } }),
        ToolChoice::None => json!("none"),
    }
}

/// A `tool_result` block as the `role: tool` message that answers its call.
fn tool_message(b: &Block) -> Value {
    let text = calls::result_text(&b.text);
    let content = if b.is_error { format!("Error: {text}") } else { text.into_owned() };
    json!({ "role": "tool", "tool_call_id": b.tool_use_id, "content": content })
}

/// Maps the chunks' implicit blocks onto our numbered blocks: the answer's
/// blocks so far. Blocks are a log: text goes to the last one, so reasoning
/// or content that comes back after another block began opens a new block
/// of its kind (the text blocks joined are the same `content`). A call's
/// arguments are not moved: fragments of a call after a later block began
/// go to the call's own block, and the conversation fails the answer
/// (`domain::conversation`), rather than a call's input be split.
#[derive(Default)]
struct Blocks {
    count: usize,
    text: Option<usize>,
    thinking: Option<usize>,
    /// Per call index: its block and the id the call came with.
    tools: HashMap<u64, (usize, Option<String>)>,
}

impl Blocks {
    fn open(
        &mut self,
        kind: BlockKind,
        id: Option<String>,
        name: Option<String>,
        out: &mut Vec<ProviderEvent>,
    ) -> usize {
        let index = self.count;
        self.count += 1;
        out.push(ProviderEvent::BlockStart { index, kind, id, name });
        index
    }
}

fn interpret(data: &str, blocks: &mut Blocks, finished: &mut bool) -> Step {
    if data.trim() == "[DONE]" {
        return Step::Done;
    }
    let v: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => return Step::Fail(format!("unreadable chunk: {e}")),
    };
    if let Some(err) = v.get("error") {
        let message = err.get("message").and_then(Value::as_str).unwrap_or("unknown error");
        return Step::ProviderError(format!("model provider error: {message}"));
    }
    let mut out = Vec::new();
    if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
        out.push(ProviderEvent::Usage {
            input_tokens: usage.get("prompt_tokens").and_then(Value::as_u64),
            output_tokens: usage.get("completion_tokens").and_then(Value::as_u64),
        });
    }
    let choices = v.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for choice in choices.iter().filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0) {
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        let reasoning = delta.get("reasoning_content").or_else(|| delta.get("reasoning")).and_then(Value::as_str);
        if let Some(t) = reasoning.filter(|t| !t.is_empty()) {
            let index = match blocks.thinking {
                Some(i) if i + 1 == blocks.count => i,
                _ => {
                    let i = blocks.open(BlockKind::Thinking, None, None, &mut out);
                    blocks.thinking = Some(i);
                    i
                }
            };
            out.push(ProviderEvent::Delta { index, text: t.to_owned() });
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = match blocks.text {
                Some(i) if i + 1 == blocks.count => i,
                _ => {
                    let i = blocks.open(BlockKind::Text, None, None, &mut out);
                    blocks.text = Some(i);
                    i
                }
            };
            out.push(ProviderEvent::Delta { index, text: t.to_owned() });
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            // A call is its `index`; its id comes with its first delta
            // (an id is not required: the conversation gives a call
            // without one an id of its own). Servers that send each call
            // whole, all at index 0 (or with none), tell them apart only
            // by id: another id at a known index is another call.
            let key = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let id = call.get("id").and_then(Value::as_str).filter(|id| !id.is_empty());
            let index = match blocks.tools.get(&key) {
                Some((i, known)) if id.is_none() || id == known.as_deref() => *i,
                _ => {
                    let id = id.map(str::to_owned);
                    let name = call.pointer("/function/name").and_then(Value::as_str).map(str::to_owned);
                    let i = blocks.open(BlockKind::ToolUse, id.clone(), name, &mut out);
                    blocks.tools.insert(key, (i, id));
                    i
                }
            };
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                out.push(ProviderEvent::Delta { index, text: args.to_owned() });
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            *finished = true;
            out.push(ProviderEvent::StopReason { stop_reason: reason.to_owned() });
        }
    }
    Step::Emit(out)
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn default_model(&self) -> &str {
        &self.inner.model
    }

    fn stream(&self, request: ModelRequest) -> ProviderStream {
        let inner = self.inner.clone();
        let body = request_body(&request);
        let policy = inner.policy.clone();
        let make = move |client: &reqwest::Client| {
            let http = client.post(&inner.url).header("accept", "text/event-stream").json(&body);
            match &inner.api_key {
                Some(key) => http.bearer_auth(key),
                None => http,
            }
        };
        upstream::stream_answer(policy, make, ChatCompletions::default())
    }
}

/// The chat-completions streaming protocol, for `upstream::stream_answer`.
#[derive(Default)]
struct ChatCompletions {
    blocks: Blocks,
    /// A finish reason arrived.
    finished: bool,
}

impl upstream::Protocol for ChatCompletions {
    fn begin(&mut self) -> Vec<ProviderEvent> {
        *self = ChatCompletions::default();
        vec![ProviderEvent::Started { input_tokens: None }]
    }

    fn read(&mut self, event: &eventsource_stream::Event) -> Step {
        interpret(&event.data, &mut self.blocks, &mut self.finished)
    }

    /// Some servers close after the finish reason without `[DONE]`: the
    /// answer itself is whole then.
    fn closed(&self) -> Result<(), &'static str> {
        if self.finished {
            Ok(())
        } else {
            Err("[DONE]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        calls::fixtures::{request, two_steps, weather_tools},
        ChatTurn,
    };

    #[test]
    fn chunks_map_to_blocks_in_order() {
        let mut blocks = Blocks::default();
        let mut finished = false;
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hé"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":null,"usage":{"prompt_tokens":3,"completion_tokens":5}}"#,
        ];
        let mut events = Vec::new();
        for c in chunks {
            match interpret(c, &mut blocks, &mut finished) {
                Step::Emit(out) => events.extend(out),
                _ => panic!("unexpected step for {c}"),
            }
        }
        assert!(finished);
        assert_eq!(events[0], ProviderEvent::BlockStart { index: 0, kind: BlockKind::Text, id: None, name: None });
        assert_eq!(events[1], ProviderEvent::Delta { index: 0, text: "Hé".into() });
        assert!(matches!(&events[2], ProviderEvent::BlockStart { index: 1, kind: BlockKind::ToolUse, .. }));
        assert!(events.contains(&ProviderEvent::Usage { input_tokens: Some(3), output_tokens: Some(5) }));
        assert!(matches!(
            interpret(r#"{"error":{"message":"boom"}}"#, &mut blocks, &mut finished),
            Step::ProviderError(_)
        ));
        assert!(matches!(interpret("[DONE]", &mut blocks, &mut finished), Step::Done));
    }

    #[test]
    fn whole_calls_at_one_index_are_told_apart_by_id() {
        let mut blocks = Blocks::default();
        let mut finished = false;
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"[1]"}}]}}]}"#,
            // No id: the call at that index goes on.
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" "}}]}}]}"#,
        ];
        let mut events = Vec::new();
        for c in chunks {
            match interpret(c, &mut blocks, &mut finished) {
                Step::Emit(out) => events.extend(out),
                _ => panic!("unexpected step for {c}"),
            }
        }
        let starts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::BlockStart { index, id, .. } => Some((*index, id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [(0, Some("a".to_owned())), (1, Some("b".to_owned()))]);
        assert_eq!(events.last(), Some(&ProviderEvent::Delta { index: 1, text: " ".into() }));
        assert!(matches!(interpret("[DONE]", &mut blocks, &mut finished), Step::Done));
    }

    #[test]
    fn tools_go_as_functions_and_only_with_tools() {
        let body = request_body(&request(vec![], weather_tools(), Some(ToolChoice::Any)));
        assert_eq!(
            body["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
            ]),
            "approval and run are the service's own"
        );
        assert_eq!(body["tool_choice"], "required");
        for (choice, sent) in [
            (ToolChoice::Auto, json!("auto")),
            (
                ToolChoice::Tool { name: "get_time".into() },
                json!({"type": "function", "function": {"name": "get_time"}}),
            ),
            (ToolChoice::None, json!("none")),
        ] {
            assert_eq!(request_body(&request(vec![], weather_tools(), Some(choice)))["tool_choice"], sent);
        }
        assert!(request_body(&request(vec![], weather_tools(), None)).get("tool_choice").is_none());
        let none = request_body(&request(vec![], vec![], Some(ToolChoice::Auto)));
        assert!(none.get("tools").is_none() && none.get("tool_choice").is_none());
    }

    #[test]
    fn a_steps_calls_and_results_go_back_as_tool_calls_and_tool_messages() {
        let body = request_body(&request(two_steps(Some("and tomorrow?")), weather_tools(), None));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                    // Its input was cut: an object all the same.
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21 °C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: input cut off"},
                {"role": "assistant", "content": "Sunny."},
                {"role": "user", "content": "and tomorrow?"},
            ])
        );

        // Calls with no text: no content.
        let mut calls_only = two_steps(None);
        calls_only[1].blocks.remove(0);
        let body = request_body(&request(calls_only, vec![], None));
        assert_eq!(body["messages"][1]["content"], Value::Null);
        assert_eq!(body["messages"][1]["tool_calls"].as_array().unwrap().len(), 2);

        // Results and a question in one turn: the results first.
        let mut merged = two_steps(None);
        merged.pop();
        merged[2].blocks.push(Block::text("never mind"));
        let body = request_body(&request(merged, vec![], None));
        let roles: Vec<&str> =
            body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "tool", "user"]);
        assert_eq!(body["messages"][4]["content"], "never mind");
    }

    /// Parallel calls as OpenAI streams them: each call's first fragment
    /// has its id, type and name with empty arguments, the rest only
    /// `arguments`, cut anywhere (here inside keys and strings).
    #[test]
    fn parallel_calls_stream_as_one_block_each() {
        let mut blocks = Blocks::default();
        let mut finished = false;
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Par"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"is\"}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut events = Vec::new();
        for c in chunks {
            match interpret(c, &mut blocks, &mut finished) {
                Step::Emit(out) => events.extend(out),
                _ => panic!("unexpected step for {c}"),
            }
        }
        let start = |index, id: &str, name: &str| ProviderEvent::BlockStart {
            index,
            kind: BlockKind::ToolUse,
            id: Some(id.into()),
            name: Some(name.into()),
        };
        let delta = |index, text: &str| ProviderEvent::Delta { index, text: text.into() };
        assert_eq!(
            events,
            [
                start(0, "call_a", "get_weather"),
                delta(0, "{\"ci"),
                delta(0, "ty\": \"Par"),
                delta(0, "is\"}"),
                start(1, "call_b", "get_time"),
                delta(1, "{}"),
                ProviderEvent::StopReason { stop_reason: "tool_calls".into() },
            ]
        );
        // A fragment of the first call after the second began goes to the
        // first call's block, which the conversation refuses: the answer
        // fails rather than a call's input be split.
        let late = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" "}}]}}]}"#;
        match interpret(late, &mut blocks, &mut finished) {
            Step::Emit(out) => assert_eq!(out, [delta(0, " ")]),
            _ => panic!("a delta"),
        }
    }

    /// A question and the partial answer `blocks`, continued as `setting`.
    fn continued(setting: FormSetting, blocks: Vec<Block>) -> ModelRequest {
        let turns = vec![
            ChatTurn { role: Role::User, blocks: vec![Block::text("Tell me a story.")] },
            ChatTurn { role: Role::Assistant, blocks },
        ];
        ModelRequest { continuation: Some(setting), ..request(turns, vec![], None) }
    }

    #[test]
    fn the_settings_forms_auto_a_prefill() {
        assert_eq!(continuation_form(FormSetting::Auto), Form::Prefill);
        assert_eq!(continuation_form(FormSetting::Prefill), Form::Prefill);
        assert_eq!(continuation_form(FormSetting::Instruction), Form::Instruction);
    }

    #[test]
    fn a_prefill_ends_on_the_partial_answer_trimmed_with_no_other_parameter() {
        let thought = Block { kind: BlockKind::Thinking, ..Block::text("hmm") };
        for setting in [FormSetting::Auto, FormSetting::Prefill] {
            let body = request_body(&continued(setting, vec![thought.clone(), Block::text("Once upon a \n ")]));
            assert_eq!(
                body["messages"],
                json!([
                    {"role": "user", "content": "Tell me a story."},
                    {"role": "assistant", "content": "Once upon a"},
                ])
            );
            let plain = request_body(&request(vec![], vec![], None));
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&body), keys(&plain), "no extra parameter");
        }
    }

    #[test]
    fn an_instruction_follows_the_partial_answer_as_it_is() {
        let body = request_body(&continued(FormSetting::Instruction, vec![Block::text("Once upon a ")]));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "Tell me a story."},
                {"role": "assistant", "content": "Once upon a "},
                {"role": "user", "content": INSTRUCTION},
            ])
        );
    }

    #[test]
    fn a_partial_answer_with_nothing_to_go_on_from_is_the_plain_request_again() {
        let plain = request_body(&request(
            vec![ChatTurn { role: Role::User, blocks: vec![Block::text("Tell me a story.")] }],
            vec![],
            None,
        ));
        let thought = Block { kind: BlockKind::Thinking, ..Block::text("half a thou") };
        for setting in [FormSetting::Auto, FormSetting::Prefill, FormSetting::Instruction] {
            for blocks in [vec![thought.clone()], vec![Block::text(" \n")], vec![]] {
                assert_eq!(request_body(&continued(setting, blocks.clone())), plain, "{setting:?} {blocks:?}");
            }
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
