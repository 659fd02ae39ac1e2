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

/// One call's result: its `output` (any JSON), or its `error`. Parsed as
/// one struct so that giving both, or neither, is told in a sentence;
/// described (`ToSchema` below) as the two shapes that are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    pub tool_call_id: String,
    /// The tool's output, as JSON.
    pub output: Option<Value>,
    /// The tool failed: its message.
    pub error: Option<String>,
}

/// `{tool_call_id, output}` or `{tool_call_id, error}`, nothing else.
impl utoipa::PartialSchema for ToolResult {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type};
        let shape = |field: &str, value: ObjectBuilder, about: &str| {
            let id = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(200));
            let id = id.pattern(Some(r"^[^\x00]*$"));
            ObjectBuilder::new()
                .property("tool_call_id", id)
                .property(field, value.description(Some(about)))
                .required("tool_call_id")
                .required(field)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        // Any JSON but `null` (which reads as no output).
        let json = [Type::Object, Type::Array, Type::String, Type::Number, Type::Boolean];
        let any = ObjectBuilder::new().schema_type(SchemaType::Array(json.into()));
        let output = shape("output", any, "The tool's output, as JSON (not null)");
        let error = shape("error", ObjectBuilder::new().schema_type(Type::String), "The tool failed: its message");
        OneOfBuilder::new()
            .item(output)
            .item(error)
            .description(Some("One call's result: its `output`, or its `error`"))
            .into()
    }
}

impl ToSchema for ToolResult {}

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
