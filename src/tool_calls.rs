//! Calls of the tools the service runs itself: a tool at a URL
//! (`run: {"url"}`), or a tool of a project's MCP server (`run: {"mcp"}`,
//! and the tools of a thread's `mcp_servers`, through `mcp_client`). A
//! call at a URL is a POST of
//! `{project_id, thread_id, message_id, tool_call_id, name, input}` to the
//! tool's endpoint, through the outbound guard, signed in the Standard
//! Webhooks format with the project's tool secret. `webhook-id` is
//! `<message_id>.<tool_call_id>`, the same on every attempt and after a
//! take-over, so the receiver can drop repeats (delivery is at least once).
//!
//! A 2xx `{"output": …}` or `{"error": "…"}` is the call's result.
//! Time-outs (`--tool-timeout-ms` per attempt), connection errors, 429 and
//! 5xx are tried again with exponential backoff and jitter, up to
//! `--tool-max-attempts`; then, and for anything else (a refused address, a
//! redirect, another 4xx, a body past the cap or not one of the two
//! forms), the result is an error the model is told. A call always ends in
//! a result: this never fails.

use std::{sync::Arc, time::Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{config::OutboundSettings, metrics::Metrics, outbound, store::Store};

/// One call to make.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub project_id: Uuid,
    pub thread_id: Uuid,
    pub message_id: Uuid,
    pub tool_call_id: String,
    pub name: String,
    pub input: Value,
    pub target: Target,
}

/// Where a call goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A signed POST to this URL.
    Url(String),
    /// `tool` of the project's MCP server `server`.
    Mcp { server: String, tool: String },
    /// Nowhere: the tool is gone from the answer's tools.
    Gone,
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Url(_) => "url",
            Target::Mcp { .. } => "mcp",
            Target::Gone => "none",
        }
    }
}

impl ToolCall {
    /// Its `webhook-id`: the same for every attempt of this call.
    pub fn webhook_id(&self) -> String {
        format!("{}.{}", self.message_id, self.tool_call_id)
    }
}

/// How long a turn's start waits for an MCP server's listing.
pub const TURN_LISTING: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes the calls (one per process, shared by the thread actors).
pub struct ToolCaller {
    client: reqwest::Client,
    guard: outbound::Guard,
    settings: OutboundSettings,
    store: Store,
    metrics: Arc<Metrics>,
    mcp: crate::mcp_client::McpClient,
}

/// What a call came to: the tool's answer (its output, or the error it
/// gave), or why there is none (a failure: the endpoint failed, timed out,
/// was refused or answered nonsense).
type Outcome = Result<Result<Value, String>, String>;

/// What one attempt came to.
enum Attempt {
    Done(Outcome),
    /// Worth trying again; why, if it is the last.
    Again(String),
}

impl ToolCaller {
    pub fn new(settings: &OutboundSettings, store: Store, metrics: Arc<Metrics>) -> ToolCaller {
        let guard = settings.guard();
        ToolCaller {
            client: guard.client(settings.tool_timeout()),
            guard,
            settings: settings.clone(),
            store,
            metrics,
            mcp: crate::mcp_client::McpClient::new(guard, settings.tool_timeout(), settings.tool_max_response_bytes),
        }
    }

    /// The tools the project's MCP `server` lists (cached briefly).
    pub async fn mcp_tools(
        &self,
        project_id: Uuid,
        server: &crate::domain::mcp::McpServer,
    ) -> Result<Vec<crate::domain::mcp::ListedTool>, String> {
        self.mcp.tools(project_id, server).await
    }

    /// The tools a turn of a thread with MCP `servers` is offered: each
    /// server's, as `<server>_<tool>`, listed at once (each within
    /// `TURN_LISTING`, as the question waits for them; a server's last
    /// listing stands in when it does not answer now). A server that is
    /// gone or has never answered offers none (logged); the turn goes on
    /// with the others.
    pub async fn offered_mcp_tools(&self, project_id: Uuid, servers: &[String]) -> Vec<crate::domain::tools::ToolDef> {
        let listings = servers.iter().map(|name| async move {
            let server = match self.store.mcp_server(project_id, name).await {
                Ok(Some(server)) => server,
                Ok(None) => {
                    tracing::warn!(%project_id, server = %name, "a thread names an MCP server the project no longer has");
                    return Vec::new();
                }
                Err(e) => {
                    tracing::warn!(%project_id, server = %name, error.message = %e, "an MCP server could not be read");
                    return Vec::new();
                }
            };
            match self.mcp.tools_for_turn(project_id, &server, TURN_LISTING).await {
                Ok(tools) => crate::domain::mcp::offered(name, &tools),
                Err(e) => {
                    tracing::warn!(%project_id, server = %name, error.message = %e,
                        "an MCP server's tools could not be listed; this turn is not offered them");
                    Vec::new()
                }
            }
        });
        futures_util::future::join_all(listings).await.into_iter().flatten().collect()
    }

    /// Makes `call` and gives its result: the output, or the error the
    /// model is told.
    pub async fn call(&self, call: &ToolCall) -> Result<Value, String> {
        let kind = call.target.kind();
        self.metrics.tool_calls.with_label_values(&[kind]).inc();
        let started = Instant::now();
        let outcome = self.attempts(call).await;
        self.metrics.tool_call_seconds.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(answer) => answer,
            Err(why) => {
                self.metrics.tool_call_failures.with_label_values(&[kind]).inc();
                tracing::warn!(thread_id = %call.thread_id, message_id = %call.message_id, tool_call_id = %call.tool_call_id,
                    tool = %call.name, error.message = %why, "a tool call the service made failed");
                Err(why)
            }
        }
    }

    async fn attempts(&self, call: &ToolCall) -> Outcome {
        let url = match &call.target {
            Target::Url(url) => url,
            Target::Mcp { server, tool } => return self.mcp_attempts(call, server, tool).await,
            Target::Gone => return Err("not called: the tool is no longer offered".into()),
        };
        // Judged again at call time: the setting may have changed since
        // the tool was defined.
        let url = self.guard.check_url(url).map_err(|refused| format!("not called: {refused}"))?;
        let body = serde_json::to_vec(&json!({
            "project_id": call.project_id,
            "thread_id": call.thread_id,
            "message_id": call.message_id,
            "tool_call_id": call.tool_call_id,
            "name": call.name,
            "input": call.input,
        }))
        .expect("JSON values serialize");
        self.retried(call, || self.attempt(call, &url, &body)).await
    }

    /// A call of `tool` on the project's MCP server `server` (read again
    /// for each call: its headers may have changed).
    async fn mcp_attempts(&self, call: &ToolCall, server: &str, tool: &str) -> Outcome {
        let found = self.store.mcp_server(call.project_id, server).await;
        let server = match found {
            Ok(Some(server)) => server,
            Ok(None) => return Err(format!("not called: the project has no MCP server {server:?} any more")),
            Err(e) => return Err(format!("the MCP server could not be read: {e}")),
        };
        self.retried(call, || async {
            match self.mcp.call(&server, tool, &call.input).await {
                Ok(answer) => Attempt::Done(Ok(answer)),
                Err(crate::mcp_client::CallError::Final(why)) => Attempt::Done(Err(why)),
                Err(crate::mcp_client::CallError::Again(why)) => Attempt::Again(why),
            }
        })
        .await
    }

    /// Runs `attempt` until it is done, waiting with exponential backoff
    /// and jitter between attempts, at most `--tool-max-attempts` times.
    async fn retried<F, Fut>(&self, call: &ToolCall, mut attempt: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt>,
    {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(self.settings.tool_retry_min_ms))
            .with_max_delay(self.settings.tool_timeout())
            .with_max_times(self.settings.tool_max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build();
        loop {
            let why = match attempt().await {
                Attempt::Done(result) => return result,
                Attempt::Again(why) => why,
            };
            match delays.next() {
                Some(delay) => {
                    self.metrics.tool_call_retries.with_label_values(&[call.target.kind()]).inc();
                    tracing::info!(tool_call_id = %call.tool_call_id, error.message = %why, delay_ms = delay.as_millis() as u64,
                        "a tool call is tried again");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(why),
            }
        }
    }

    async fn attempt(&self, call: &ToolCall, url: &reqwest::Url, body: &[u8]) -> Attempt {
        // The secrets are read for each attempt: a rotation meanwhile signs
        // with both.
        let secrets = match self.store.tool_secrets(call.project_id).await {
            Ok(secrets) if secrets.is_empty() => {
                return Attempt::Done(Err("not called: the project has no tool secret to sign it".into()))
            }
            Ok(secrets) => secrets,
            Err(e) => return Attempt::Again(format!("the tool secret could not be read: {e}")),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(url.clone())
            .timeout(self.settings.tool_timeout())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in crate::signing::headers(&secrets, &call.webhook_id(), timestamp, body) {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return match outbound::refusal_of(&e) {
                    Some(refused) => Attempt::Done(Err(format!("not called: {refused}"))),
                    None if e.is_timeout() => Attempt::Again("the tool's endpoint did not answer in time".into()),
                    None => Attempt::Again(format!("the tool's endpoint could not be reached: {e}")),
                }
            }
        };
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Again(format!("the tool's endpoint answered {status}"));
        }
        if status.is_redirection() {
            return Attempt::Done(Err(format!("the tool's endpoint answered {status}; redirects are not followed")));
        }
        if !status.is_success() {
            return Attempt::Done(Err(format!("the tool's endpoint answered {status}")));
        }
        let bytes = match outbound::read_capped(response, self.settings.tool_max_response_bytes).await {
            Ok(bytes) => bytes,
            Err(outbound::BodyError::TooLarge(cap)) => {
                return Attempt::Done(Err(format!("the tool's answer is larger than {cap} bytes")))
            }
            Err(outbound::BodyError::Read(e)) if e.is_timeout() => {
                return Attempt::Again("the tool's endpoint did not answer in time".into())
            }
            Err(e) => return Attempt::Again(e.to_string()),
        };
        Attempt::Done(result_of(&bytes).map_err(|why| why.to_owned()))
    }
}

/// The tool's answer in a 2xx body: `{"output": …}` (not null) or
/// `{"error": "…"}`, exactly one of the two; anything else is a failure.
fn result_of(body: &[u8]) -> Result<Result<Value, String>, &'static str> {
    let malformed = "the tool's endpoint answered with neither {\"output\"} nor {\"error\"}";
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else { return Err(malformed) };
    match (fields.remove("output"), fields.remove("error")) {
        (Some(output), None) if !output.is_null() => Ok(Ok(output)),
        (None, Some(Value::String(error))) => Ok(Err(error)),
        _ => Err(malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_an_output_or_an_error_and_nothing_else() {
        assert_eq!(result_of(br#"{"output": {"temp": 21}}"#), Ok(Ok(json!({"temp": 21}))));
        assert_eq!(result_of(br#"{"output": "sunny"}"#), Ok(Ok(json!("sunny"))));
        assert_eq!(result_of(br#"{"error": "no such city"}"#), Ok(Err("no such city".into())));
        for bad in [
            &br#"{"output": null}"#[..],
            br#"{"output": 1, "error": "x"}"#,
            br#"{}"#,
            b"[1]",
            b"not json",
            br#"{"error": 5}"#,
        ] {
            assert!(result_of(bad).unwrap_err().contains("neither"), "{}", String::from_utf8_lossy(bad));
        }
    }
}
