//! Real MCP servers for the tests, built with the official Rust SDK
//! (`rmcp`) and served over Streamable HTTP on 127.0.0.1, port 0: tools
//! `add` (structured output), `echo` (text), `fail` (an error result) and
//! `slow` (answers after 5 s). Each records the `Authorization` header of
//! every request; `stop` drops the server and every open connection, as a
//! server that disappears.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig},
    schemars, tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ErrorData, Json, ServerHandler,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Sum {
    sum: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// What to say back.
    text: String,
}

#[derive(Debug, Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
    calls: Calls,
}

type Calls = Arc<Mutex<Vec<String>>>;

#[tool_router]
impl Tools {
    /// Adds two integers.
    #[tool]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Json<Sum> {
        self.calls.lock().unwrap().push("add".into());
        Json(Sum { sum: a + b })
    }

    /// Says the text back.
    #[tool]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        self.calls.lock().unwrap().push("echo".into());
        text
    }

    /// Always reports an error.
    #[tool]
    async fn fail(&self) -> Result<CallToolResult, ErrorData> {
        self.calls.lock().unwrap().push("fail".into());
        Ok(CallToolResult::error(vec![ContentBlock::text("it broke")]))
    }

    /// Answers after five seconds.
    #[tool]
    async fn slow(&self) -> Result<CallToolResult, ErrorData> {
        self.calls.lock().unwrap().push("slow".into());
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(CallToolResult::success(vec![ContentBlock::text("done at last")]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A running MCP server.
pub struct McpServer {
    /// Its endpoint (`http://127.0.0.1:…/mcp`).
    pub url: String,
    /// The `Authorization` of each request it got.
    pub authorizations: Arc<Mutex<Vec<Option<String>>>>,
    /// The tools it ran, in order.
    pub calls: Calls,
    task: tokio::task::JoinHandle<()>,
}

async fn record(State(seen): State<Arc<Mutex<Vec<Option<String>>>>>, req: Request, next: Next) -> Response {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    seen.lock().unwrap().push(auth);
    next.run(req).await
}

impl McpServer {
    pub async fn start() -> McpServer {
        let authorizations: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let calls: Calls = Arc::default();
        let made = calls.clone();
        let service: StreamableHttpService<Tools, LocalSessionManager> = StreamableHttpService::new(
            move || Ok(Tools { tool_router: Tools::tool_router(), calls: made.clone() }),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let router = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(authorizations.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        // Its own accept loop: aborting it drops every connection too.
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        McpServer { url, authorizations, calls, task }
    }

    /// The server disappears: its listener and every connection close.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}
