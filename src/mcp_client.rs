//! The service as an MCP client (the official Rust SDK, `rmcp`, over
//! Streamable HTTP), for the tools of a project's MCP servers: listing a
//! server's tools (cached for `LIST_TTL` per project and server, so a turn
//! does not wait on every server each time) and calling one. Every request
//! goes through the outbound guard (its resolver judges every address on
//! connect; no proxy, no redirects) with the server's stored headers.
//!
//! One session per operation: connect, initialize, list or call, close.
//! Each is bounded by `--tool-timeout-ms`; the SDK's own reconnection of
//! a dropped stream is off, so a server that disappears mid-call fails the
//! attempt (the caller tries again, `tool_calls`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use rmcp::{
    model::{CallToolRequestParams, CallToolResult},
    service::{RoleClient, RunningService},
    transport::{
        common::client_side_sse::NeverRetry,
        streamable_http_client::{StreamableHttpClientTransport, StreamableHttpClientTransportConfig},
    },
    ServiceExt,
};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    domain::mcp::{ListedTool, McpServer},
    outbound::Guard,
};

/// How long a server's listed tools are used before it is asked again.
pub const LIST_TTL: Duration = Duration::from_secs(30);

/// Why a call has no answer.
#[derive(Debug)]
pub enum CallError {
    /// Worth trying again (the server could not be reached, timed out or
    /// went away).
    Again(String),
    /// Not (refused by the guard, a protocol error such as an unknown
    /// tool, an answer over the cap).
    Final(String),
}

struct Listed {
    url: String,
    headers: BTreeMap<String, String>,
    at: Instant,
    tools: Vec<ListedTool>,
}

pub struct McpClient {
    guard: Guard,
    http: reqwest013::Client,
    timeout: Duration,
    max_bytes: usize,
    listed: Mutex<HashMap<(Uuid, String), Listed>>,
}

type Session = RunningService<RoleClient, ()>;

impl McpClient {
    pub fn new(guard: Guard, timeout: Duration, max_bytes: usize) -> McpClient {
        // reqwest 0.13 without a crypto provider of its own takes the
        // process's: ring, as everywhere else in the service.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        McpClient { guard, http: guard.client_013(timeout), timeout, max_bytes, listed: Mutex::new(HashMap::new()) }
    }

    /// The tools `server` of `project_id` lists (cached for `LIST_TTL`, and
    /// asked again when the server's URL or headers changed).
    pub async fn tools(&self, project_id: Uuid, server: &McpServer) -> Result<Vec<ListedTool>, String> {
        self.listing(project_id, server, self.timeout, false).await
    }

    /// As `tools`, for a turn that starts: the server is asked for at most
    /// `patience`, and when it does not answer (in time) its last listing
    /// stands in, however old, if it has one.
    pub async fn tools_for_turn(
        &self,
        project_id: Uuid,
        server: &McpServer,
        patience: Duration,
    ) -> Result<Vec<ListedTool>, String> {
        self.listing(project_id, server, patience, true).await
    }

    async fn listing(
        &self,
        project_id: Uuid,
        server: &McpServer,
        patience: Duration,
        stale_ok: bool,
    ) -> Result<Vec<ListedTool>, String> {
        let key = (project_id, server.name.clone());
        let known = self
            .listed
            .lock()
            .expect("not poisoned")
            .get(&key)
            .filter(|hit| hit.url == server.url && hit.headers == server.headers)
            .map(|hit| (hit.at.elapsed() < LIST_TTL, hit.tools.clone()));
        if let Some((true, tools)) = known {
            return Ok(tools);
        }
        let listed = match tokio::time::timeout(patience, self.list(server)).await {
            Ok(listed) => listed,
            Err(_) => Err("tools/list did not answer in time".into()),
        };
        match (listed, known) {
            (Ok(tools), _) => {
                let (url, headers) = (server.url.clone(), server.headers.clone());
                let entry = Listed { url, headers, at: Instant::now(), tools: tools.clone() };
                self.listed.lock().expect("not poisoned").insert(key, entry);
                Ok(tools)
            }
            (Err(e), Some((_, stale))) if stale_ok => {
                tracing::warn!(%project_id, server = %server.name, error.message = %e,
                    "an MCP server could not be listed; its last listing stands in");
                Ok(stale)
            }
            (Err(e), _) => Err(e),
        }
    }

    async fn list(&self, server: &McpServer) -> Result<Vec<ListedTool>, String> {
        let session = self.connect(server).await.map_err(|e| match e {
            CallError::Again(why) | CallError::Final(why) => why,
        })?;
        let listed = tokio::time::timeout(self.timeout, session.list_all_tools()).await;
        let _ = session.cancel().await;
        let tools = match listed {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => return Err(format!("tools/list failed: {e}")),
            Err(_) => return Err("tools/list did not answer in time".into()),
        };
        Ok(tools
            .into_iter()
            .map(|t| ListedTool {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Calls `tool` of `server` with `input`: the tool's answer (its
    /// output, or the error it reported), or why there is none.
    pub async fn call(
        &self,
        server: &McpServer,
        tool: &str,
        input: &Value,
    ) -> Result<Result<Value, String>, CallError> {
        let arguments = match input {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let session = self.connect(server).await?;
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let called = tokio::time::timeout(self.timeout, session.call_tool(params)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), session.cancel()).await;
        match called {
            Ok(Ok(result)) => self.answer_of(result),
            Ok(Err(rmcp::ServiceError::McpError(e))) => {
                Err(CallError::Final(format!("the MCP server refused the call: {}", e.message)))
            }
            Ok(Err(e)) => Err(CallError::Again(format!("the MCP server went away during the call: {e}"))),
            Err(_) => Err(CallError::Again("the MCP server did not answer in time".into())),
        }
    }

    /// A `tools/call` result as the call's answer: `isError` makes it an
    /// error (its text); otherwise its structured content, or its text.
    fn answer_of(&self, result: CallToolResult) -> Result<Result<Value, String>, CallError> {
        let text: Vec<&str> = result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect();
        let text = text.join("\n");
        let answer = if result.is_error == Some(true) {
            Err(if text.is_empty() { "the tool reported an error".to_owned() } else { text })
        } else if let Some(structured) = result.structured_content {
            Ok(structured)
        } else {
            Ok(Value::String(text))
        };
        let size = match &answer {
            Ok(value) => serde_json::to_string(value).map_or(usize::MAX, |s| s.len()),
            Err(text) => text.len(),
        };
        if size > self.max_bytes {
            return Err(CallError::Final(format!("the MCP tool's answer is larger than {} bytes", self.max_bytes)));
        }
        Ok(answer)
    }

    /// A session with `server`: its URL judged by the guard now, then
    /// connected and initialized within the time-out.
    async fn connect(&self, server: &McpServer) -> Result<Session, CallError> {
        self.guard
            .check_url_resolved(&server.url)
            .await
            .map_err(|refused| CallError::Final(format!("not called: {refused}")))?;
        let headers: HashMap<reqwest013::header::HeaderName, reqwest013::header::HeaderValue> = server
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = reqwest013::header::HeaderName::from_bytes(k.as_bytes()).ok()?;
                let value = reqwest013::header::HeaderValue::from_str(v).ok()?;
                Some((name, value))
            })
            .collect();
        let mut config = StreamableHttpClientTransportConfig::with_uri(server.url.clone()).custom_headers(headers);
        config.retry_config = std::sync::Arc::new(NeverRetry::default());
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        match tokio::time::timeout(self.timeout, ().serve(transport)).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(e)) => Err(CallError::Again(format!("the MCP server could not be reached: {e}"))),
            Err(_) => Err(CallError::Again("the MCP server did not answer in time".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint that accepts connections and never answers.
    async fn silent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        url
    }

    fn server(url: String) -> McpServer {
        McpServer { name: "s".into(), url, headers: BTreeMap::new(), created_at: chrono::Utc::now() }
    }

    fn tool(name: &str) -> ListedTool {
        ListedTool { name: name.into(), description: None, input_schema: serde_json::json!({"type": "object"}) }
    }

    #[tokio::test]
    async fn a_turn_waits_for_a_silent_server_no_longer_than_its_patience_then_takes_its_last_listing() {
        let client = McpClient::new(Guard { allow_private: true }, Duration::from_secs(30), 1 << 20);
        let server = server(silent().await);
        let project = Uuid::nil();
        let patience = Duration::from_millis(300);
        let started = Instant::now();
        let never = client.tools_for_turn(project, &server, patience).await;
        assert!(never.unwrap_err().contains("in time"));
        assert!(started.elapsed() < Duration::from_secs(3), "waited {:?}", started.elapsed());
        // Listed once, long ago: that listing stands in for a turn, not for
        // a definition.
        let old = Instant::now().checked_sub(LIST_TTL * 2).unwrap_or_else(Instant::now);
        let listed = Listed { url: server.url.clone(), headers: BTreeMap::new(), at: old, tools: vec![tool("add")] };
        client.listed.lock().unwrap().insert((project, server.name.clone()), listed);
        let stale = client.tools_for_turn(project, &server, patience).await.unwrap();
        assert_eq!(stale, vec![tool("add")]);
        let strict = McpClient { timeout: patience, ..client };
        assert!(strict.tools(project, &server).await.is_err(), "a definition needs the server's answer");
        // A listing of another URL is not this server's.
        let moved = McpServer { url: format!("{}x", server.url), ..server.clone() };
        assert!(strict.tools_for_turn(project, &moved, patience).await.is_err());
    }
}
