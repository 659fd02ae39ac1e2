//! The provider seam: one trait, one stream of provider events. A thread
//! actor builds a `ModelRequest` from its conversation and consumes the
//! stream; it never knows which provider answers.

pub mod anthropic;
pub mod bounds;
mod calls;
pub mod client;
pub mod openai;
pub mod simulated;
mod sse;
pub mod upstream;

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::Stream;

pub use crate::domain::provider_event::{FailureCode, ProviderEvent};
use crate::{
    config::{ProviderKind, ProviderSettings},
    domain::{Block, Role},
    metrics::Metrics,
};

/// One turn of the conversation sent upstream.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    pub role: Role,
    pub blocks: Vec<Block>,
}

/// What a provider needs to answer.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    pub model: String,
    pub system: Option<String>,
    pub turns: Vec<ChatTurn>,
    pub max_tokens: u32,
    /// What the message being answered holds already, in
    /// `bounds::stored_bytes` (its earlier steps; 0 for a first call):
    /// `--max-answer-bytes` bounds the whole message.
    pub answer_bytes: usize,
    /// The tools the model may call (none: it is not told of any).
    pub tools: Vec<crate::domain::tools::ToolDef>,
    pub tool_choice: Option<crate::domain::tools::ToolChoice>,
    /// A continuation: the last turn is the partial answer of a cut
    /// answer, which the model is asked to go on from, in this form
    /// (`Auto`: the provider chooses by model). `None`: a plain request.
    pub continuation: Option<crate::domain::continuation::FormSetting>,
}

pub type ProviderStream = Pin<Box<dyn Stream<Item = ProviderEvent> + Send>>;

/// A model provider.
pub trait Provider: Send + Sync + 'static {
    /// Short name for logs and stats.
    fn name(&self) -> &'static str;
    /// The model used when neither the request nor the thread names one.
    fn default_model(&self) -> &str;
    /// Starts answering. Dropping the stream cancels the request upstream.
    fn stream(&self, request: ModelRequest) -> ProviderStream;
}

/// Builds the configured provider, held to the call limits
/// (`bounds::Bounded`).
pub fn from_settings(settings: &ProviderSettings, metrics: &Metrics) -> anyhow::Result<Arc<dyn Provider>> {
    let extra_roots = match &settings.provider_ca_file {
        Some(path) => trusted_roots(path)?,
        None => Vec::new(),
    };
    let client = Arc::new(client::ProviderClient::new(settings, &extra_roots)?);
    let policy = upstream::UpstreamPolicy {
        client,
        attempts: settings.upstream_attempts.max(1),
        min_delay: Duration::from_millis(settings.upstream_retry_min_ms),
        max_delay: Duration::from_millis(settings.upstream_retry_max_ms.max(settings.upstream_retry_min_ms)),
        stall: Duration::from_millis(settings.upstream_stall_ms.max(1)),
        head_timeout: Duration::from_millis(settings.upstream_head_timeout_ms.max(1)),
        max_event_bytes: settings.upstream_max_event_bytes.max(1),
        first_byte: metrics.upstream_first_byte_seconds.clone(),
    };
    let limits = bounds::CallLimits {
        call_timeout: Duration::from_millis(settings.upstream_call_timeout_ms.max(1)),
        bytes_per_token: settings.upstream_bytes_per_token.max(1),
        max_answer_bytes: settings.max_answer_bytes,
    };
    let provider: Arc<dyn Provider> = match settings.kind() {
        ProviderKind::Anthropic => {
            let key = settings
                .anthropic_api_key
                .expose()
                .ok_or_else(|| anyhow::anyhow!("--provider anthropic needs ANTHROPIC_API_KEY in the environment"))?;
            let config = anthropic::AnthropicConfig {
                base_url: settings.anthropic_base_url.clone(),
                api_key: key.to_owned(),
                model: settings.model.clone(),
                policy,
                unknown_events: metrics.upstream_unknown_events.clone(),
            };
            Arc::new(anthropic::Anthropic::new(config))
        }
        ProviderKind::Openai => {
            let base = settings.openai_base_url.as_deref().ok_or_else(|| {
                anyhow::anyhow!("--provider openai needs OPENAI_BASE_URL (e.g. http://127.0.0.1:11434/v1)")
            })?;
            let key = settings.openai_api_key.expose().map(str::to_owned);
            Arc::new(openai::OpenAi::new(base, key, settings.model.clone(), policy))
        }
        // The simulated model writes what its settings say, no more: its
        // size is the operator's choice (benchmarks stream megabytes), so
        // the limits against a provider that misbehaves do not apply.
        ProviderKind::Simulated => return Ok(Arc::new(simulated::Simulated::new(settings))),
    };
    Ok(Arc::new(bounds::Bounded::new(provider, limits)))
}

/// The certificates of `--provider-ca-file`; a file that cannot be read or
/// holds none stops the start with its name.
fn trusted_roots(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read --provider-ca-file {}: {e}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("--provider-ca-file {} is not PEM certificates: {e}", path.display()))?;
    anyhow::ensure!(!roots.is_empty(), "--provider-ca-file {} holds no certificate", path.display());
    Ok(roots)
}
