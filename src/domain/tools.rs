//! Tools a model may call, as the contract defines them (API.md, "Tools
//! and answers in several steps"): a definition (`ToolDef`: name,
//! description, JSON Schema of its input, whether a person approves each
//! call, who runs it), a thread's choice of tool (`ToolChoice`), and the
//! checks a definition passes before it is stored or sent upstream.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// At most this many tools in one request (a thread's and a question's
/// together).
pub const MAX_TOOLS: usize = 128;
/// The largest `input_schema`, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The longest tool name (the contract's `^[a-zA-Z0-9_-]{1,64}$`).
pub const MAX_NAME: usize = 64;

/// One tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    /// `^[a-zA-Z0-9_-]{1,64}$`, unique among a request's tools.
    #[schema(pattern = r"^[a-zA-Z0-9_-]{1,64}$")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema object (at most 64 KiB) for the call's input.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// Whether a person approves each call before it runs or is answered.
    #[serde(default)]
    pub approval: Approval,
    /// Who answers a call: `"client"` (default), `{"url": …}` or
    /// `{"mcp": …}`.
    #[serde(default)]
    #[schema(schema_with = run_schema)]
    pub run: Run,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Calls go on at once.
    #[default]
    Never,
    /// Each call waits for a person's decision (`approvals`).
    Always,
}

/// Who answers a call: a tab or the application (`"client"`), or the
/// service itself, by calling an endpoint (`{"url"}`) or an MCP server's
/// tool (`{"mcp"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Run {
    #[default]
    Client,
    Url(String),
    /// A tool of that server: `tool` (its name there), or by default the
    /// definition's own name.
    Mcp {
        server: String,
        tool: Option<String>,
    },
}

/// `run`'s three forms: `"client"`, `{"url"}` and `{"mcp", "tool"?}`,
/// each object with no other field.
fn run_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
    let client = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["client"]));
    let url = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "url",
            ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::Custom("uri".into()))),
        )
        .required("url")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let mcp = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("mcp", ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[a-zA-Z0-9_-]{1,32}$")))
        .property(
            "tool",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(200))
                .pattern(Some(r"^[^\x00]*$")),
        )
        .required("mcp")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    Schema::OneOf(
        OneOfBuilder::new()
            .item(client)
            .item(url)
            .item(mcp)
            .description(Some(
                "Who answers a call: \"client\" (a tab or the application); {\"url\"}: the service POSTs \
             the call there, signed with the project's tool secret (https, and no inside address, unless \
             --allow-private-urls); {\"mcp\", \"tool\"?}: the service calls that tool (by default the \
             definition's name) of the project's MCP server.",
            ))
            .build(),
    )
}

impl Serialize for Run {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Run::Client => s.serialize_str("client"),
            Run::Url(url) => serde_json::json!({ "url": url }).serialize(s),
            Run::Mcp { server, tool: None } => serde_json::json!({ "mcp": server }).serialize(s),
            Run::Mcp { server, tool: Some(tool) } => serde_json::json!({ "mcp": server, "tool": tool }).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Run {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Each object form exactly: an unknown field is refused, not
        // dropped (a typo would otherwise change who runs the tool).
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Url {
            url: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Mcp {
            mcp: String,
            #[serde(default)]
            tool: Option<String>,
        }
        let wrong = || D::Error::custom("run must be \"client\", {\"url\"} or {\"mcp\", \"tool\"?}");
        match Value::deserialize(d)? {
            Value::String(name) if name == "client" => Ok(Run::Client),
            Value::Object(fields) if fields.contains_key("url") => {
                let Url { url } = serde_json::from_value(Value::Object(fields)).map_err(D::Error::custom)?;
                Ok(Run::Url(url))
            }
            Value::Object(fields) if fields.contains_key("mcp") => {
                let Mcp { mcp, tool } = serde_json::from_value(Value::Object(fields)).map_err(D::Error::custom)?;
                Ok(Run::Mcp { server: mcp, tool })
            }
            _ => Err(wrong()),
        }
    }
}

/// Which tool the model must (or may) call, as Anthropic's API names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolChoice {
    /// The model decides (the default).
    Auto,
    /// The model must call some tool.
    Any,
    /// The model must call this one.
    Tool { name: String },
    /// The model may call none.
    None,
}

/// Why a set of tool definitions is refused (a 400 with this sentence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTools(pub String);

/// The longest MCP server name (so that `<server>_` leaves room for a
/// tool's name).
pub const MAX_SERVER_NAME: usize = 32;

/// Whether `name` may name an MCP server: `^[a-zA-Z0-9_-]{1,32}$`.
pub fn valid_server_name(name: &str) -> bool {
    name.len() <= MAX_SERVER_NAME && valid_name(name)
}

/// Whether `name` is a valid tool name.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `tools` (and `choice`, against them) as one request's set: names
/// valid and unique, at most `MAX_TOOLS`, each schema a JSON object of at
/// most `MAX_SCHEMA_BYTES`, a `run: {url}` an http(s) URL.
pub fn check(tools: &[ToolDef], choice: Option<&ToolChoice>) -> Result<(), BadTools> {
    if tools.len() > MAX_TOOLS {
        return Err(BadTools(format!("at most {MAX_TOOLS} tools, not {}", tools.len())));
    }
    let mut names = std::collections::HashSet::new();
    for tool in tools {
        if !valid_name(&tool.name) {
            return Err(BadTools(format!("tool name {:?} must match ^[a-zA-Z0-9_-]{{1,64}}$", tool.name)));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(BadTools(format!("tool name {:?} is used twice", tool.name)));
        }
        if !tool.input_schema.is_object() {
            return Err(BadTools(format!("tool {:?}: input_schema must be a JSON Schema object", tool.name)));
        }
        let size = serde_json::to_string(&tool.input_schema).map_or(usize::MAX, |s| s.len());
        if size > MAX_SCHEMA_BYTES {
            return Err(BadTools(format!(
                "tool {:?}: input_schema is {size} bytes, at most {MAX_SCHEMA_BYTES}",
                tool.name
            )));
        }
        if let Run::Url(url) = &tool.run {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(BadTools(format!("tool {:?}: run.url must be an http(s) URL", tool.name)));
            }
        }
        if let Run::Mcp { server, tool: name } = &tool.run {
            if !valid_server_name(server) {
                return Err(BadTools(format!("tool {:?}: run.mcp must name an MCP server", tool.name)));
            }
            if name.as_ref().is_some_and(|n| n.is_empty() || n.len() > 200 || n.contains('\0')) {
                return Err(BadTools(format!("tool {:?}: run.tool must name a tool of the server", tool.name)));
            }
        }
    }
    if let Some(ToolChoice::Tool { name }) = choice {
        if !names.contains(name.as_str()) {
            return Err(BadTools(format!("tool_choice names {name:?}, which is not one of the tools")));
        }
    }
    Ok(())
}

/// A thread's tools with a question's own: the question's replace the
/// thread's of the same name.
pub fn merged(thread: &[ToolDef], question: &[ToolDef]) -> Vec<ToolDef> {
    let mut all: Vec<ToolDef> = thread.iter().filter(|t| !question.iter().any(|q| q.name == t.name)).cloned().collect();
    all.extend(question.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(name: &str) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: None,
            input_schema: json!({"type": "object"}),
            approval: Approval::Never,
            run: Run::Client,
        }
    }

    #[test]
    fn definitions_read_as_the_contract_writes_them() {
        let t: ToolDef = serde_json::from_value(json!({
            "name": "get_weather", "input_schema": {"type": "object"}, "approval": "always"
        }))
        .unwrap();
        assert_eq!((t.approval, t.run.clone()), (Approval::Always, Run::Client));
        let u: ToolDef =
            serde_json::from_value(json!({"name": "a", "input_schema": {}, "run": {"url": "https://x.test/t"}}))
                .unwrap();
        assert_eq!(u.run, Run::Url("https://x.test/t".into()));
        let c: ToolDef = serde_json::from_value(json!({"name": "a", "input_schema": {}, "run": "client"})).unwrap();
        assert_eq!(c.run, Run::Client);
        assert_eq!(serde_json::to_value(&c).unwrap()["run"], "client");
        assert!(serde_json::from_value::<ToolDef>(json!({"name": "a", "input_schema": {}, "run": "server"})).is_err());
        assert!(serde_json::from_value::<ToolDef>(json!({"name": "a", "input_schema": {}, "extra": 1})).is_err());
        let m: ToolDef =
            serde_json::from_value(json!({"name": "a", "input_schema": {}, "run": {"mcp": "calc", "tool": "add"}}))
                .unwrap();
        assert_eq!(m.run, Run::Mcp { server: "calc".into(), tool: Some("add".into()) });
        assert_eq!(serde_json::to_value(&m).unwrap()["run"], json!({"mcp": "calc", "tool": "add"}));
        // Each object form exactly: an unknown field or a mix is refused.
        for run in [
            json!({"url": "https://x.test", "x": 1}),
            json!({"mcp": "c", "url": "https://x.test"}),
            json!({}),
            json!(1),
        ] {
            let def = json!({"name": "a", "input_schema": {}, "run": run});
            assert!(serde_json::from_value::<ToolDef>(def).is_err(), "{run}");
        }
        let choice: ToolChoice = serde_json::from_value(json!({"type": "tool", "name": "a"})).unwrap();
        assert_eq!(choice, ToolChoice::Tool { name: "a".into() });
    }

    #[test]
    fn a_set_of_tools_is_checked_whole() {
        assert!(check(&[tool("a"), tool("b-c_9")], None).is_ok());
        assert!(check(&[tool("")], None).is_err());
        assert!(check(&[tool("a b")], None).is_err());
        assert!(check(&[tool(&"x".repeat(65))], None).is_err());
        assert!(check(&[tool("a"), tool("a")], None).unwrap_err().0.contains("twice"));
        let many: Vec<ToolDef> = (0..=MAX_TOOLS).map(|i| tool(&format!("t{i}"))).collect();
        assert!(check(&many, None).is_err());
        let mut big = tool("big");
        big.input_schema = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(check(&[big], None).is_err());
        let mut not_object = tool("n");
        not_object.input_schema = json!([1]);
        assert!(check(&[not_object], None).is_err());
        assert!(check(&[tool("a")], Some(&ToolChoice::Tool { name: "b".into() })).is_err());
        assert!(check(&[tool("a")], Some(&ToolChoice::Tool { name: "a".into() })).is_ok());
    }

    #[test]
    fn a_questions_tools_replace_the_threads_of_the_same_name() {
        let mut mine = tool("a");
        mine.description = Some("mine".into());
        let all = merged(&[tool("a"), tool("b")], &[mine.clone()]);
        assert_eq!(all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(all[1], mine);
    }
}
