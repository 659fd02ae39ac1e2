//! A step's tool calls and their results as both providers send them back
//! on the next call: the same rules for Anthropic and OpenAI-compatible
//! servers, so a conversation reads the same to either.
//!
//! - A call's input is the JSON object the model wrote; a call with no
//!   input text goes back as `{}`. One whose text is not an object (its
//!   stream was cut) goes back as `{}` too: both APIs refuse anything but
//!   an object, and that call was answered with an error result already
//!   (`domain::turn::calls_of_step`), which the model reads beside it.
//! - A result's text is stored as JSON (`Block::tool_result`: the output
//!   as JSON text, an error as a JSON string). The model reads a JSON
//!   string as the string itself (`"sunny"` goes as `sunny`, an error as
//!   its message), and any other JSON (objects, arrays, numbers) as its
//!   JSON text: what a tool would have printed.
//! - The tools go with a request only when it has some, and its
//!   `tool_choice` only with them (both APIs refuse a choice without
//!   tools): `attach_tools`, each provider spelling a tool and a choice
//!   its own way.

use std::borrow::Cow;

use serde_json::Value;

use super::ModelRequest;
use crate::domain::tools::{ToolChoice, ToolDef};

/// Adds the request's tools (as `tool` spells one) and its tool choice
/// (as `choice` does) to a provider's request `body`; nothing without
/// tools.
pub fn attach_tools(
    body: &mut Value,
    request: &ModelRequest,
    tool: fn(&ToolDef) -> Value,
    choice: fn(&ToolChoice) -> Value,
) {
    if request.tools.is_empty() {
        return;
    }
    body["tools"] = request.tools.iter().map(tool).collect();
    if let Some(c) = &request.tool_choice {
        body["tool_choice"] = choice(c);
    }
}

/// The input of a `tool_use` block with `text`, as a JSON object.
pub fn input_object(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// The input text of a `tool_use` block as OpenAI's `arguments` (a JSON
/// object's text): the model's own text when it is one, so the provider
/// sees exactly what it wrote, else `{}`.
pub fn arguments(text: &str) -> &str {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => text,
        _ => "{}",
    }
}

/// What the model reads of a `tool_result` block's `text`: a JSON string
/// unquoted, other JSON as it is (text that is not JSON, which the service
/// never stores, as it is too).
pub fn result_text(text: &str) -> Cow<'_, str> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => Cow::Owned(s),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_objects_and_results_read_as_a_tool_prints_them() {
        assert_eq!(input_object(r#"{"city": "Paris"}"#), serde_json::json!({"city": "Paris"}));
        for not_an_object in ["", r#"{"city": "Pa"#, "[1]", "3", "null"] {
            assert_eq!(input_object(not_an_object), serde_json::json!({}), "{not_an_object:?}");
            assert_eq!(arguments(not_an_object), "{}", "{not_an_object:?}");
        }
        assert_eq!(arguments(r#"{"city": "Paris"}"#), r#"{"city": "Paris"}"#, "the model's own text");
        assert_eq!(result_text(r#""sunny, 21 °C""#), "sunny, 21 °C");
        assert_eq!(result_text(r#""a \"quoted\"\nline""#), "a \"quoted\"\nline");
        assert_eq!(result_text(r#"{"temp":21}"#), r#"{"temp":21}"#);
        assert_eq!(result_text("[1,2]"), "[1,2]");
        assert_eq!(result_text("42"), "42");
        assert_eq!(result_text("not json"), "not json");
    }
}

/// A conversation with an answer in two steps, and tools, for both
/// providers' tests of what they send.
#[cfg(test)]
pub mod fixtures {
    use serde_json::json;

    use crate::{
        domain::{
            tools::{ToolChoice, ToolDef},
            Block, BlockKind, Role,
        },
        model::{ChatTurn, ModelRequest},
    };

    pub fn weather_tools() -> Vec<ToolDef> {
        use crate::domain::tools::{Approval, Run};
        let city = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        vec![
            ToolDef {
                name: "get_weather".into(),
                description: Some("The weather in a city".into()),
                input_schema: city,
                approval: Approval::Always,
                run: Run::Url("https://tools.test/weather".into()),
            },
            ToolDef {
                name: "get_time".into(),
                description: None,
                input_schema: json!({"type": "object"}),
                approval: Approval::Never,
                run: Run::Client,
            },
        ]
    }

    /// A question, an answer in two steps (text and two calls, their
    /// results, then text), and, when `then` is given, the next question.
    pub fn two_steps(then: Option<&str>) -> Vec<ChatTurn> {
        let call = |id: &str, name: &str, input: &str| Block {
            id: Some(id.into()),
            name: Some(name.into()),
            ..Block { kind: BlockKind::ToolUse, ..Block::text(input) }
        };
        let answer = vec![
            Block::text("Let me check."),
            call("toolu_1", "get_weather", r#"{"city": "Paris"}"#),
            call("toolu_2", "get_time", r#"{"tz": "Eur"#),
            Block::tool_result("toolu_1", r#""sunny, 21 °C""#.into(), false),
            Block::tool_result("toolu_2", crate::domain::turn::error_text("input cut off"), true),
            Block::text("Sunny."),
        ];
        let mut turns = vec![ChatTurn { role: Role::User, blocks: vec![Block::text("weather?")] }];
        turns.extend(
            crate::domain::turn::as_turns(Role::Assistant, &answer)
                .into_iter()
                .map(|(role, blocks)| ChatTurn { role, blocks }),
        );
        if let Some(question) = then {
            turns.push(ChatTurn { role: Role::User, blocks: vec![Block::text(question)] });
        }
        turns
    }

    pub fn request(turns: Vec<ChatTurn>, tools: Vec<ToolDef>, choice: Option<ToolChoice>) -> ModelRequest {
        ModelRequest {
            model: "m".into(),
            system: None,
            turns,
            max_tokens: 10,
            answer_bytes: 0,
            tools,
            tool_choice: choice,
            continuation: None,
        }
    }
}
