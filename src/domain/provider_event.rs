//! What a model provider's stream yields, as plain data: the conversation
//! model (`domain::conversation`) applies these, whichever provider
//! (`model/`) produced them.

use super::{continuation::Cut, BlockKind};

/// Machine-readable reason a generation failed upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The upstream refused, erred or dropped the stream.
    UpstreamError,
    /// The upstream sent nothing for too long.
    UpstreamTimeout,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::UpstreamError => "upstream_error",
            FailureCode::UpstreamTimeout => "upstream_timeout",
        }
    }
}

/// What a provider's stream yields, in order. A stream that ends without
/// `Stop` or `Failed` was cut off.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// The upstream accepted the request (input usage when it tells it).
    Started { input_tokens: Option<u64> },
    /// Content block `index` begins.
    BlockStart { index: usize, kind: BlockKind, id: Option<String>, name: Option<String> },
    /// Text appended to block `index`.
    Delta { index: usize, text: String },
    /// A thinking block's signature (kept, never shown).
    Signature { index: usize, signature: String },
    /// Usage so far; output tokens are cumulative.
    Usage { input_tokens: Option<u64>, output_tokens: Option<u64> },
    /// Why the model stopped, known before the stream's end.
    StopReason { stop_reason: String },
    /// The answer ended normally (with its stop reason, if not told before).
    Stop { stop_reason: Option<String> },
    /// The answer ended in a fault; text so far is kept. `cut`: the
    /// provider cut it short (a drop, an error event after its 200, a
    /// stall), so it may be continued; `None` for a limit, a refusal or a
    /// stream that broke the protocol.
    Failed { code: FailureCode, message: String, cut: Option<Cut> },
}
