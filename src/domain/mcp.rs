//! MCP servers as the contract defines them (API.md, "Tools and answers in
//! several steps"): a project's named server (its Streamable HTTP URL and
//! the headers sent to it, which are never shown again), and how its tools
//! are offered to a thread's model: each named `<server>_<tool>`, cut to
//! the tool name rule, and checked as one set with the thread's own tools.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

pub use super::tools::{valid_server_name, MAX_SERVER_NAME};
use super::tools::{Approval, Run, ToolDef, MAX_NAME};
/// At most this many headers per server.
pub const MAX_HEADERS: usize = 16;
/// The longest header value.
pub const MAX_HEADER_VALUE: usize = 4096;

/// A project's MCP server, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServer {
    pub name: String,
    pub url: String,
    /// Sent with every request to the server; never shown.
    pub headers: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// A server as the API shows it: the names of its headers, not their
/// values.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct McpServerView {
    pub name: String,
    pub url: String,
    pub header_names: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&McpServer> for McpServerView {
    fn from(s: &McpServer) -> Self {
        McpServerView {
            name: s.name.clone(),
            url: s.url.clone(),
            header_names: s.headers.keys().cloned().collect(),
            created_at: s.created_at,
        }
    }
}

/// A tool a server lists, as the model is offered it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTool {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Value,
}

/// The name a server's tool is offered under: `<server>_<tool>`, every
/// character the name rule does not allow made `_`, cut to 64 bytes.
pub fn offered_name(server: &str, tool: &str) -> String {
    let mut name: String = format!("{server}_{tool}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    name.truncate(MAX_NAME);
    name
}

/// The definitions a thread's model is offered for `server`'s `tools`:
/// each runs on that server under the tool's own name.
pub fn offered(server: &str, tools: &[ListedTool]) -> Vec<ToolDef> {
    tools
        .iter()
        .map(|t| ToolDef {
            name: offered_name(server, &t.name),
            description: t.description.clone(),
            input_schema: if t.input_schema.is_object() {
                t.input_schema.clone()
            } else {
                serde_json::json!({"type": "object"})
            },
            approval: Approval::Never,
            run: Run::Mcp { server: server.to_owned(), tool: Some(t.name.clone()) },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tools::valid_name;

    #[test]
    fn a_servers_tool_is_offered_under_a_valid_name_that_runs_it_by_its_own() {
        assert_eq!(offered_name("calc", "add"), "calc_add");
        assert_eq!(offered_name("fs", "read.file/v2"), "fs_read_file_v2");
        let long = offered_name("s", &"t".repeat(100));
        assert_eq!(long.len(), MAX_NAME);
        assert!(valid_name(&long));
        let listed = [ListedTool { name: "read.file".into(), description: None, input_schema: Value::Null }];
        let defs = offered("fs", &listed);
        assert_eq!(defs[0].name, "fs_read_file");
        assert_eq!(defs[0].run, Run::Mcp { server: "fs".into(), tool: Some("read.file".into()) });
        assert!(defs[0].input_schema.is_object(), "a schema that is not an object becomes an empty object schema");
        assert!(valid_server_name("calc-2") && !valid_server_name(&"s".repeat(33)) && !valid_server_name("a b"));
    }
}
