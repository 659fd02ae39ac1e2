//! What a client posts to answer an answer's calls, in the forms the REST
//! routes (`tool-results`, `approvals`) and the `/ws` frames
//! (`tool_results`, `approval`) share, checked once into the step logic's
//! `Answer`s.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    input::{self, InputError},
    turn::Answer,
};

/// At most this many results in one request (a step has at most as many
/// calls as its model made; this bounds the work of one request).
pub const MAX_RESULTS: usize = 128;

/// The longest reason a person may give with a decision, in bytes.
pub const MAX_REASON_BYTES: usize = 2000;

/// One call's result: its `output` (any JSON), or its `error`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    #[schema(min_length = 1, max_length = 200)]
    pub tool_call_id: String,
    /// The tool's output, as JSON.
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    /// The tool failed: its message.
    pub error: Option<String>,
}

/// Results as `Answer`s: 1 to `MAX_RESULTS`, each an output or an error.
pub fn results(results: Vec<ToolResult>) -> Result<Vec<(String, Answer)>, InputError> {
    if results.is_empty() || results.len() > MAX_RESULTS {
        return Err(InputError::bad_request(format!("`results` holds 1 to {MAX_RESULTS} results")));
    }
    results
        .into_iter()
        .map(|r| {
            input::label("tool_call_id", Some(&r.tool_call_id))?;
            let output = match (r.output, r.error) {
                (Some(output), None) => Ok(output),
                (None, Some(error)) => Err(error),
                _ => {
                    let message = format!("result {:?}: give `output` or `error`", r.tool_call_id);
                    return Err(InputError::bad_request(message));
                }
            };
            Ok((r.tool_call_id, Answer::Result { output }))
        })
        .collect()
}

/// A person's decision as an `Answer`.
pub fn decision(tool_call_id: String, approved: bool, reason: Option<String>) -> Result<(String, Answer), InputError> {
    input::label("tool_call_id", Some(&tool_call_id))?;
    if let Some(reason) = &reason {
        input::text("reason", reason, MAX_REASON_BYTES)?;
    }
    Ok((tool_call_id, Answer::Decision { approved, reason }))
}
