//! OpenAI-compatible chat completions, streamed: what vLLM, llama.cpp's
//! server and Ollama speak, so the service can run on a local model.
//!
//! Reads `choices[].delta.content` (a text block), `delta.reasoning_content`
//! or `delta.reasoning` (a thinking block, as reasoning servers send it),
//! `delta.tool_calls` (one tool_use block per call index, its arguments as
//! the block's text), `finish_reason`, the final usage chunk (with empty or
//! null `choices`), `data: [DONE]`, and error chunks, which always fail the
//! answer. Retries follow the same rules as the Anthropic provider.

use std::{collections::HashMap, sync::Arc};

use serde_json::{json, Value};

use super::{
    upstream::{self, Step, UpstreamPolicy},
    ModelRequest, Provider, ProviderEvent, ProviderStream,
};
use crate::domain::{BlockKind, Role};

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

pub fn request_body(request: &ModelRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for turn in &request.turns {
        let text: String = turn.blocks.iter().filter(|b| b.kind == BlockKind::Text).map(|b| b.text.as_str()).collect();
        match turn.role {
            Role::User => messages.push(json!({ "role": "user", "content": text })),
            Role::Assistant => {
                let calls: Vec<Value> = turn
                    .blocks
                    .iter()
                    .filter(|b| b.kind == BlockKind::ToolUse)
                    .map(|b| json!({ "id": b.id, "type": "function", "function": { "name": b.name, "arguments": b.text } }))
                    .collect();
                let mut m = json!({ "role": "assistant", "content": text });
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                messages.push(m);
            }
        }
    }
    json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": true,
        "stream_options": { "include_usage": true },
    })
}

/// Maps the chunks' implicit blocks onto our numbered blocks.
#[derive(Default)]
/// The answer's blocks so far. Blocks are a log: text goes to the last
/// one, so reasoning or content that comes back after another block began
/// opens a new block of its kind (the text blocks joined are the same
/// `content`).
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
        return Step::Fail(format!("model provider error: {message}"));
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
        assert!(matches!(interpret(r#"{"error":{"message":"boom"}}"#, &mut blocks, &mut finished), Step::Fail(_)));
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
}
