//! A message's content block: an append-only text of one kind (text,
//! thinking, a tool call's input, a call's result). A leaf of the domain:
//! messages (`resources`), events and the step logic (`turn`) all build on
//! it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    Text,
    Thinking,
    ToolUse,
    /// A call's result (its output as JSON text, or its error).
    ToolResult,
}

/// One content block: an append-only text of one kind. For `tool_use` the
/// text is the tool's JSON input and `id`/`name` name the call; for
/// `tool_result` the text is the output (or the error) of the call
/// `tool_use_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub kind: BlockKind,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Thinking signature from the provider: stored and sent back upstream,
    /// never shown to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl Block {
    pub fn new(kind: BlockKind) -> Self {
        Block { kind, text: String::new(), id: None, name: None, signature: None, tool_use_id: None, is_error: false }
    }

    /// The result of call `tool_use_id`.
    pub fn tool_result(tool_use_id: &str, text: String, is_error: bool) -> Self {
        Block { tool_use_id: Some(tool_use_id.to_owned()), text, is_error, ..Block::new(BlockKind::ToolResult) }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Block { text: text.into(), ..Block::new(BlockKind::Text) }
    }
}
