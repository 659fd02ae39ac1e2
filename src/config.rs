//! Settings: one struct, parsed by clap, every flag with an environment
//! variable (the flag wins). `convo --help` documents them all.
//!
//! The struct is passed explicitly to `Application::build`; nothing reads
//! the environment after start-up.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, ValueEnum};

/// Every setting of the service, grouped by concern.
#[derive(Debug, Clone, Parser)]
#[command(name = "convo", version, about = "Streams LLM conversations to many subscribers over SSE and WebSocket")]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub provider: ProviderSettings,
    #[command(flatten)]
    pub streaming: StreamingSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    #[command(flatten)]
    pub cluster: ClusterSettings,
    #[command(flatten)]
    pub outbound: OutboundSettings,
    #[command(flatten)]
    pub notify: NotifySettings,
    #[command(flatten)]
    pub push: PushSettings,
    #[command(flatten)]
    pub continuing: ContinueSettings,
}

/// Answers cut short that finish anyway (`domain::continuation`).
#[derive(Debug, Clone, Args)]
pub struct ContinueSettings {
    /// Continuations one cut answer may take (a provider drop, a crash, a
    /// node's death); 0: never continue a cut answer.
    #[arg(long, env = "CONTINUE_MAX_ATTEMPTS", default_value_t = 2)]
    pub continue_max_attempts: u32,
    /// An answer cut longer ago than this (a restart after a long outage)
    /// ends `interrupted` instead.
    #[arg(long, env = "CONTINUE_MAX_AGE_MS", default_value_t = 600_000)]
    pub continue_max_age_ms: u64,
    /// How the partial answer is given back to the model: `auto` (by
    /// provider and model), `prefill` (as the last assistant message) or
    /// `instruction` (followed by a user message asking it to go on).
    #[arg(long, env = "CONTINUE_FORM", value_enum, default_value_t = ContinueForm::Auto)]
    pub continue_form: ContinueForm,
}

impl ContinueSettings {
    pub fn budget(&self) -> crate::domain::continuation::Budget {
        crate::domain::continuation::Budget {
            max_attempts: self.continue_max_attempts,
            max_age: Duration::from_millis(self.continue_max_age_ms),
        }
    }

    pub fn form(&self) -> crate::domain::continuation::FormSetting {
        use crate::domain::continuation::FormSetting;
        match self.continue_form {
            ContinueForm::Auto => FormSetting::Auto,
            ContinueForm::Prefill => FormSetting::Prefill,
            ContinueForm::Instruction => FormSetting::Instruction,
        }
    }
}

/// `--continue-form`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContinueForm {
    Auto,
    Prefill,
    Instruction,
}

/// Web Push to browsers (`notify::push`): off until `--vapid-subject` is
/// set.
#[derive(Debug, Clone, Args)]
pub struct PushSettings {
    /// Who runs this service, told to push services with every push
    /// (RFC 8292 `sub`): a `mailto:` or `https:` URL. Web Push is off
    /// (its routes answer 404) until it is set.
    #[arg(long, env = "VAPID_SUBJECT", value_parser = parse_vapid_subject)]
    pub vapid_subject: Option<String>,
    /// The VAPID private key: base64url of the 32-byte P-256 scalar
    /// (`openssl ecparam -name prime256v1 -genkey`, its private part).
    /// Default: one generated once and kept in the database, the same on
    /// every node and across restarts.
    #[arg(long, env = "VAPID_PRIVATE_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub vapid_private_key: Option<Secret>,
    /// How long a push service keeps a push for a browser that is offline
    /// (the `TTL` header), in seconds.
    #[arg(long, env = "PUSH_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u32).range(0..=2_419_200))]
    pub push_ttl_secs: u32,
}

fn parse_vapid_subject(value: &str) -> Result<String, String> {
    let valid = match url::Url::parse(value) {
        Ok(url) if url.scheme() == "mailto" => url.path().contains('@'),
        Ok(url) if url.scheme() == "https" => url.host().is_some(),
        _ => false,
    };
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be a mailto: address or an https: URL (RFC 8292)".into())
    }
}

/// Calls the service makes on a project's behalf: tools it runs itself
/// (`run: {url}`), through the one outbound guard (`crate::outbound`).
#[derive(Debug, Clone, Args)]
pub struct OutboundSettings {
    /// Lets the service call loopback, private, link-local and other inside
    /// addresses, and plain http (tests, private networks).
    #[arg(long, env = "ALLOW_PRIVATE_URLS", default_value_t = false)]
    pub allow_private_urls: bool,
    /// How long one attempt of a tool call may take, connecting included.
    #[arg(long, env = "TOOL_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tool_timeout_ms: u64,
    /// Attempts of one tool call (time-outs, connection errors and 5xx are
    /// tried again, with exponential backoff); then its result is an error.
    #[arg(long, env = "TOOL_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub tool_max_attempts: u32,
    /// The first wait before a tool call is tried again (doubled each time,
    /// with jitter).
    #[arg(long, env = "TOOL_RETRY_MIN_MS", default_value_t = 500)]
    pub tool_retry_min_ms: u64,
    /// The largest response body read from a tool's endpoint.
    #[arg(long, env = "TOOL_MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    pub tool_max_response_bytes: usize,
}

impl OutboundSettings {
    pub fn guard(&self) -> crate::outbound::Guard {
        crate::outbound::Guard { allow_private: self.allow_private_urls }
    }

    pub fn tool_timeout(&self) -> Duration {
        Duration::from_millis(self.tool_timeout_ms)
    }
}

/// Notifications (webhooks, Web Push): how they are sent and retried.
#[derive(Debug, Clone, Args)]
pub struct NotifySettings {
    /// Attempts of one delivery before it is `failed` (a 2xx delivers;
    /// anything else, or no answer in time, is tried again).
    #[arg(long, env = "NOTIFY_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub notify_max_attempts: u32,
    /// The wait before a delivery's second attempt; each later one doubles
    /// (with jitter), up to `--notify-retry-max-ms`. The defaults span
    /// about a day.
    #[arg(long, env = "NOTIFY_RETRY_MIN_MS", default_value_t = 60_000)]
    pub notify_retry_min_ms: u64,
    /// The longest wait between two attempts.
    #[arg(long, env = "NOTIFY_RETRY_MAX_MS", default_value_t = 12 * 3_600_000)]
    pub notify_retry_max_ms: u64,
    /// How long one attempt may take, connecting included.
    #[arg(long, env = "NOTIFY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub notify_timeout_ms: u64,
    /// The most of a receiver's answer read (the rest is not).
    #[arg(long, env = "NOTIFY_MAX_RESPONSE_BYTES", default_value_t = 64 * 1024)]
    pub notify_max_response_bytes: usize,
    /// Deliveries sent at once by this node (a slow receiver holds one).
    #[arg(long, env = "NOTIFY_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub notify_concurrency: u64,
    /// Of those, at most this many to one target (a webhook, a push
    /// subscription): a dead receiver with many deliveries due never
    /// takes every slot.
    #[arg(long, env = "NOTIFY_PER_TARGET", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub notify_per_target: u64,
    /// A `when: unwatched` webhook is sent only if, this long after its
    /// event, no subscriber on any node watches the thread.
    #[arg(long, env = "NOTIFY_UNWATCHED_DELAY_MS", default_value_t = 30_000)]
    pub notify_unwatched_delay_ms: u64,
    /// Deliveries that ended (delivered or failed) are kept this long in
    /// the delivery log, then forgotten with their events.
    #[arg(long, env = "NOTIFY_RETENTION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..))]
    pub notify_retention_hours: u64,
}

impl NotifySettings {
    pub fn backoff(&self) -> crate::notify::Backoff {
        crate::notify::Backoff {
            min: Duration::from_millis(self.notify_retry_min_ms),
            max: Duration::from_millis(self.notify_retry_max_ms),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.notify_timeout_ms)
    }

    pub fn unwatched_delay(&self) -> Duration {
        Duration::from_millis(self.notify_unwatched_delay_ms)
    }
}

/// This process among others that share a database (cluster mode: set
/// `--redis-url`).
#[derive(Debug, Clone, Args)]
pub struct ClusterSettings {
    /// Redis of the cluster: turns cluster mode on (needs Postgres and
    /// `--stream-token-secret`). Without it the service is one node.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's name (default: generated, unique per process start).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// How long a thread's lease lasts unrenewed: an owner that dies is
    /// replaced within about this long.
    #[arg(long, env = "LEASE_MS", default_value_t = 3_000)]
    pub lease_ms: u64,
    /// Prefix of every Redis key and channel, so deployments (and tests)
    /// can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "convo")]
    pub redis_prefix: String,
    /// The secret that signs stream tokens, the same on every node so a
    /// token minted on one works on all (default: random per process;
    /// required in cluster mode).
    #[arg(long, env = "STREAM_TOKEN_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub stream_token_secret: Option<Secret>,
}

impl ClusterSettings {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(100))
    }

    /// The configured node id, or a fresh one.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| format!("node-{}", uuid::Uuid::now_v7().simple()))
    }
}

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Largest message `content`, in bytes (413 above).
    #[arg(long, env = "MAX_CONTENT_BYTES", default_value_t = 100_000)]
    pub max_content_bytes: usize,
    /// Largest `max_tokens` a request may ask for (400 above).
    #[arg(long, env = "MAX_TOKENS_CAP", default_value_t = 64_000)]
    pub max_tokens_cap: u32,
    /// New messages per project per minute (429 with Retry-After above); 0: no limit.
    #[arg(long, env = "POSTS_PER_MINUTE", default_value_t = 600)]
    pub posts_per_minute: u32,
    /// Generations running at once per project (429 above); 0: no limit.
    #[arg(long, env = "MAX_GENERATIONS_PER_PROJECT", default_value_t = 256)]
    pub max_generations_per_project: usize,
    /// Generations running at once on this node: the upstream is never
    /// called more often than this at once (503 above); 0: no limit.
    #[arg(long, env = "MAX_GENERATIONS", default_value_t = 1_024)]
    pub max_generations: usize,
    /// Open SSE/WebSocket streams per project key, stream tokens minted
    /// with it included (429 above); 0: no limit. The admin token is not limited.
    #[arg(long, env = "MAX_CONNECTIONS_PER_KEY", default_value_t = 1_000)]
    pub max_connections_per_key: usize,
    /// A request body must arrive within this time once its headers have (408).
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Live subscribers per thread (429 above); 0: no limit.
    #[arg(long, env = "MAX_SUBSCRIBERS_PER_THREAD", default_value_t = 1_000)]
    pub max_subscribers_per_thread: usize,
    /// A client must send its request headers within this time (408).
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_timeout_ms: u64,
    /// Bytes all WebSocket clients together may hold: their unfinished
    /// messages, and the read buffers their bursts grew (a socket past it is
    /// closed with 1013, try again later); 0: no limit.
    #[arg(long, env = "MAX_WS_PENDING_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_ws_pending_bytes: usize,
    /// HTTP/2 (over TLS): streams one connection may have open at once,
    /// advertised as SETTINGS_MAX_CONCURRENT_STREAMS; a stream past it is
    /// refused (RST_STREAM REFUSED_STREAM).
    #[arg(long, env = "H2_MAX_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_streams: u32,
    /// HTTP/2 (over TLS): response bytes queued per stream while the
    /// connection cannot send them; past it the response waits (SSE and
    /// the seed route then fall behind, like on a full socket).
    #[arg(long, env = "H2_SEND_BUFFER", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_send_buffer: u32,
    /// Model calls one answer may take (steps of tool calls); past it the
    /// answer ends `complete` with `stop_reason` `max_steps`.
    #[arg(long, env = "MAX_STEPS", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_steps: u16,
}

#[derive(Debug, Clone, Args)]
pub struct HttpSettings {
    /// Address to listen on (`host:port`; port 0 picks a free port).
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Connections the kernel queues for accepting (capped by
    /// `net.core.somaxconn`): room for a burst of reconnects.
    #[arg(long, env = "LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,
    #[command(flatten)]
    pub tls: TlsSettings,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Admin token: needed for /admin/* and project creation, and enables
    /// project keys on /v1. Without it the service runs open (loopback only).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub admin_token: Option<Secret>,
    /// Allow open mode (no admin token) on a non-loopback address.
    #[arg(long, env = "ALLOW_OPEN", default_value_t = false)]
    pub allow_open: bool,
    /// Browser origins allowed to call the API (CORS) and open WebSockets,
    /// comma-separated (`https://app.example.com,http://localhost:3000`);
    /// `*` allows any origin, without credentials. Requests without an
    /// `Origin` header (non-browser clients) are not affected.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Addresses of reverse proxies whose `Forwarded` / `X-Forwarded-Host`
    /// headers are believed, comma-separated (default: none; a request's
    /// own `Host` decides).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Lifetime of thread-scoped stream tokens, in seconds.
    #[arg(long, env = "STREAM_TOKEN_TTL_SECS", default_value_t = 300)]
    pub stream_token_ttl_secs: u64,
    /// Time a graceful shutdown may take, from the signal to the exit:
    /// running answers go on until this less `--shutdown-reserve-ms`, then
    /// what is left ends `interrupted` and readers drain. Set it below the
    /// time your orchestrator waits before it kills the process.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// The end of a graceful shutdown kept for ending what still runs and
    /// for readers to drain their closing events.
    #[arg(long, env = "SHUTDOWN_RESERVE_MS", default_value_t = 2_000)]
    pub shutdown_reserve_ms: u64,
    /// Kernel send buffer per connection, in bytes (0: the kernel's autotuning, up to megabytes).
    /// A small one bounds memory per subscriber and makes a stalled reader felt at once.
    #[arg(long, env = "SOCKET_SEND_BUFFER", default_value_t = 0)]
    pub socket_send_buffer: usize,
    /// Set TCP_NODELAY on accepted connections (each write its own packet).
    #[arg(long, env = "TCP_NODELAY", default_value_t = false)]
    pub tcp_nodelay: bool,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// Database URL (`sqlite://path?mode=rwc` or `postgres://...`); default: SQLite in `--data-dir`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder for the default SQLite database file.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Group-commit interval: at most one write transaction per interval.
    #[arg(long, env = "FLUSH_INTERVAL_MS", default_value_t = 50)]
    pub flush_interval_ms: u64,
    /// Largest number of pooled database connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// Pooled database connections opened at start-up and kept (the start
    /// fails if they cannot be opened; idle ones beyond these close).
    #[arg(long, env = "DB_MIN_CONNECTIONS", default_value_t = 2)]
    pub db_min_connections: u32,
}

/// How the provider's HTTP version is chosen (see `model::client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderHttp {
    /// Negotiate (ALPN) until an answer comes over HTTP/2, then HTTP/2
    /// only, negotiating again if that fails.
    Auto,
    /// Always negotiate: HTTP/2 when TLS agrees on it, else HTTP/1.1.
    Negotiate,
    /// HTTP/2 only (prior knowledge over plain HTTP).
    Http2,
}

/// Which model provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The Anthropic Messages API (needs `ANTHROPIC_API_KEY`).
    Anthropic,
    /// An OpenAI-compatible chat completions server (vLLM, llama.cpp, Ollama, ...).
    Openai,
    /// Deterministic text at a set pace; needs no network.
    Simulated,
}

/// A secret read from the environment: never printed, not even by `Debug`.
#[derive(Clone, Default)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Some(value.into()))
    }
    pub fn from_env(name: &str) -> Secret {
        Secret(std::env::var(name).ok().filter(|v| !v.is_empty()))
    }
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.len() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(Secret::new(value))
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Secret(***)" } else { "Secret(None)" })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ProviderSettings {
    /// Model provider (default: `anthropic` when ANTHROPIC_API_KEY is set, else `simulated`).
    #[arg(long, env = "PROVIDER", value_enum)]
    pub provider: Option<ProviderKind>,
    /// Anthropic API key: from the environment only (ANTHROPIC_API_KEY), never logged.
    #[arg(skip = Secret::from_env("ANTHROPIC_API_KEY"))]
    pub anthropic_api_key: Secret,
    /// Base URL of the Anthropic API.
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com")]
    pub anthropic_base_url: String,
    /// OpenAI-compatible API key: from the environment only (OPENAI_API_KEY), never logged.
    #[arg(skip = Secret::from_env("OPENAI_API_KEY"))]
    pub openai_api_key: Secret,
    /// Base URL of an OpenAI-compatible API, up to `/v1` (e.g. `http://127.0.0.1:11434/v1`).
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// Attempts per request while the upstream refuses before the answer starts (1 = no retry).
    #[arg(long, env = "UPSTREAM_ATTEMPTS", default_value_t = 4)]
    pub upstream_attempts: usize,
    /// First retry delay; later ones double, with jitter.
    #[arg(long, env = "UPSTREAM_RETRY_MIN_MS", default_value_t = 500)]
    pub upstream_retry_min_ms: u64,
    /// Longest retry delay.
    #[arg(long, env = "UPSTREAM_RETRY_MAX_MS", default_value_t = 8_000)]
    pub upstream_retry_max_ms: u64,
    /// An answer with no whole event (a ping counts; a byte does not) for
    /// this long fails with `upstream_timeout`.
    #[arg(long, env = "UPSTREAM_STALL_MS", default_value_t = 60_000)]
    pub upstream_stall_ms: u64,
    /// Time to connect to the upstream.
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_connect_timeout_ms: u64,
    /// Time from sending a request to its response head (and again for
    /// reading an error body); past it the attempt is retried like a
    /// refused connection, then the answer fails with `upstream_timeout`.
    #[arg(long, env = "UPSTREAM_HEAD_TIMEOUT_MS", default_value_t = 60_000)]
    pub upstream_head_timeout_ms: u64,
    /// The longest one model call may take, from its first send (retries
    /// included); past it the answer fails with `upstream_timeout`, text kept.
    #[arg(long, env = "UPSTREAM_CALL_TIMEOUT_MS", default_value_t = 1_800_000)]
    pub upstream_call_timeout_ms: u64,
    /// Largest SSE event from the upstream, in bytes; a larger one fails
    /// the answer with `upstream_error`, text kept.
    #[arg(long, env = "UPSTREAM_MAX_EVENT_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub upstream_max_event_bytes: usize,
    /// Bytes of output one model call may add per token of its `max_tokens`
    /// (past it: `upstream_error`, "answer too long", what fits kept).
    #[arg(long, env = "UPSTREAM_BYTES_PER_TOKEN", default_value_t = 32)]
    pub upstream_bytes_per_token: usize,
    /// Bytes one assistant message may hold, all its model calls together
    /// (past it: `upstream_error`, "answer too long", what fits kept).
    #[arg(long, env = "MAX_ANSWER_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_answer_bytes: usize,
    /// PEM file of certificates the provider's HTTPS is also trusted by
    /// (beside the public roots): a gateway or proxy with a private CA.
    #[arg(long, env = "PROVIDER_CA_FILE")]
    pub provider_ca_file: Option<std::path::PathBuf>,
    /// The provider's HTTP version: `auto`, `negotiate` or `http2` (see README, Models).
    #[arg(long, env = "PROVIDER_HTTP", value_enum, default_value_t = ProviderHttp::Auto)]
    pub provider_http: ProviderHttp,
    /// Default model name when neither the thread nor the request names one.
    #[arg(long, env = "MODEL")]
    pub model: Option<String>,
    /// Default `max_tokens` for a generation.
    #[arg(long, env = "MAX_TOKENS", default_value_t = 1024)]
    pub max_tokens: u32,
    /// Simulated provider: number of text chunks per reply.
    #[arg(long, env = "SIM_CHUNKS", default_value_t = 40)]
    pub sim_chunks: usize,
    /// Simulated provider: characters per chunk.
    #[arg(long, env = "SIM_CHUNK_CHARS", default_value_t = 8)]
    pub sim_chunk_chars: usize,
    /// Simulated provider: pause between chunks.
    #[arg(long, env = "SIM_INTERVAL_MS", default_value_t = 25)]
    pub sim_interval_ms: u64,
    /// Simulated provider: stream a thinking block before the text.
    #[arg(long, env = "SIM_THINKING", default_value_t = false)]
    pub sim_thinking: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StreamingSettings {
    /// Heartbeat period while a subscription is idle (SSE comment or WS ping).
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// A thread actor with no subscribers and no generation stops after this.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Frames kept per thread for subscribers that fall behind; past it they catch up with one coalesced delta.
    #[arg(long, env = "BROADCAST_CAPACITY", default_value_t = 256)]
    pub broadcast_capacity: usize,
    /// Arbiters (threads) that run thread actors (default: half the cores, at least one).
    #[arg(long, env = "ACTOR_ARBITERS")]
    pub actor_arbiters: Option<usize>,
    /// A WebSocket peer that sends nothing (not even a pong) for this long is closed as dead.
    #[arg(long, env = "WS_TIMEOUT_MS", default_value_t = 45_000)]
    pub ws_timeout_ms: u64,
    /// A subscriber whose socket accepts nothing for this long while frames wait is closed (`slow_consumer`).
    #[arg(long, env = "SLOW_CONSUMER_MS", default_value_t = 30_000)]
    pub slow_consumer_ms: u64,
    /// SSE `retry:` hint sent to browsers, in milliseconds.
    #[arg(long, env = "SSE_RETRY_MS", default_value_t = 1_000)]
    pub sse_retry_ms: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct TelemetrySettings {
    /// Log format (default: `pretty` on a terminal, `json` otherwise).
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in `tracing` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

impl DatabaseSettings {
    /// The URL to connect to: the configured one, or the default SQLite file.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("convo.db").display()),
        }
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms.max(1))
    }
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Openai => "openai",
            ProviderKind::Simulated => "simulated",
        }
    }
}

impl ProviderSettings {
    pub fn kind(&self) -> ProviderKind {
        match self.provider {
            Some(kind) => kind,
            None if self.anthropic_api_key.expose().is_some() => ProviderKind::Anthropic,
            None => ProviderKind::Simulated,
        }
    }
}

impl StreamingSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// HTTPS: both set, the service speaks TLS with HTTP/2 (ALPN `h2`, and
/// `http/1.1` for clients without it); neither, plain HTTP/1.1. Browsers
/// open at most six HTTP/1.1 connections per host, while HTTP/2 carries
/// any number of streams on one.
#[derive(Debug, Clone, Args)]
pub struct TlsSettings {
    /// PEM file with the certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1); needs `--tls-cert`.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}
