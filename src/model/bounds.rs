//! What one model call may take, for every provider alike: a total time
//! and a number of bytes of output.
//!
//! A provider is trusted to stop at `max_tokens` and to end in time; a
//! broken or hostile one does neither (one streamed 107 MB for a
//! `max_tokens` of 1024, and every later question of its thread sent that
//! history upstream). `Bounded` wraps the configured HTTP provider, so the
//! Anthropic and OpenAI-compatible providers are held to the same limits
//! (the simulated one writes what its settings say, which is the
//! operator's choice), each counted per model call (`Provider::stream`): an
//! answer in several steps starts each call with a full allowance of
//! time, and the time between its calls counts for none of them.
//!
//! - Time: a call that has not ended `--upstream-call-timeout-ms` after it
//!   began (its first send, retries included) ends `upstream_timeout`.
//! - Output: what a call adds to the message (block text, tool input JSON,
//!   thinking signatures, tool call ids and names, and a fixed cost per
//!   block) may not pass `max_tokens` × `--upstream-bytes-per-token`, nor
//!   what `--max-answer-bytes` leaves the whole message after its earlier
//!   steps (`ModelRequest::answer_bytes`). The delta that crosses either
//!   is cut at a character boundary, so what fits is kept; then the call
//!   ends `upstream_error`, "answer too long".
//!
//! Past either limit the provider's stream is dropped at once, which
//! closes the upstream request.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;

use super::{FailureCode, ModelRequest, Provider, ProviderEvent, ProviderStream};
use crate::domain::Block;

/// What a block costs beyond its text, id, name and signature: about its
/// stored form's keys, so a stream of empty blocks is not free.
const BLOCK_BYTES: usize = 32;

/// The bytes `blocks` hold, as `Bounded` counts a call's output.
pub fn stored_bytes(blocks: &[Block]) -> usize {
    blocks
        .iter()
        .map(|b| {
            let extra = |s: &Option<String>| s.as_ref().map_or(0, String::len);
            BLOCK_BYTES + b.text.len() + extra(&b.id) + extra(&b.name) + extra(&b.signature)
        })
        .sum()
}

/// The limits of one model call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// The longest a call may take, from its first send.
    pub call_timeout: Duration,
    /// Bytes of output a call may add per token of its `max_tokens`.
    pub bytes_per_token: usize,
    /// Bytes a whole message may hold, across its steps.
    pub max_answer_bytes: usize,
}

impl CallLimits {
    /// What `request` may add, and the sentence that says which limit.
    fn allowance(&self, request: &ModelRequest) -> (usize, String) {
        let per_call = (request.max_tokens as usize).saturating_mul(self.bytes_per_token);
        let left = self.max_answer_bytes.saturating_sub(request.answer_bytes);
        if left < per_call {
            (left, format!("the message may hold {} bytes", self.max_answer_bytes))
        } else {
            let why = format!(
                "one model call may add {per_call} bytes ({} tokens at {} bytes each)",
                request.max_tokens, self.bytes_per_token
            );
            (per_call, why)
        }
    }
}

/// A provider held to `CallLimits`.
pub struct Bounded {
    inner: Arc<dyn Provider>,
    limits: CallLimits,
}

impl Bounded {
    pub fn new(inner: Arc<dyn Provider>, limits: CallLimits) -> Bounded {
        Bounded { inner, limits }
    }
}

impl Provider for Bounded {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn default_model(&self) -> &str {
        self.inner.default_model()
    }

    fn stream(&self, request: ModelRequest) -> ProviderStream {
        let (allowance, why) = self.limits.allowance(&request);
        let call_timeout = self.limits.call_timeout;
        let inner = self.inner.clone();
        Box::pin(async_stream::stream! {
            let mut meter = Meter { left: allowance };
            if allowance == 0 {
                // Nothing could be added: the provider is not even asked.
                yield too_long(&why);
                return;
            }
            // The call begins when its stream is first polled, which is
            // when an HTTP provider first sends.
            let deadline = tokio::time::Instant::now() + call_timeout;
            let mut events = inner.stream(request);
            loop {
                let event = match tokio::time::timeout_at(deadline, events.next()).await {
                    Ok(Some(event)) => event,
                    Ok(None) => return,
                    Err(_) => {
                        drop(events);
                        let message =
                            format!("the model call took longer than {} ms", call_timeout.as_millis());
                        yield ProviderEvent::Failed { code: FailureCode::UpstreamTimeout, message, cut: None };
                        return;
                    }
                };
                match meter.admit(event) {
                    Admitted::Whole(event) => yield event,
                    Admitted::Cut(kept) => {
                        drop(events);
                        if let Some(kept) = kept {
                            yield kept;
                        }
                        yield too_long(&why);
                        return;
                    }
                }
            }
        })
    }
}

fn too_long(why: &str) -> ProviderEvent {
    ProviderEvent::Failed { code: FailureCode::UpstreamError, message: format!("answer too long: {why}"), cut: None }
}

/// What one call may still add.
struct Meter {
    left: usize,
}

#[derive(Debug, PartialEq)]
enum Admitted {
    /// Within the allowance.
    Whole(ProviderEvent),
    /// Past it: what of the event fits, if anything. The call ends.
    Cut(Option<ProviderEvent>),
}

impl Meter {
    fn admit(&mut self, event: ProviderEvent) -> Admitted {
        let cost = match &event {
            ProviderEvent::Delta { text, .. } => text.len(),
            ProviderEvent::Signature { signature, .. } => signature.len(),
            ProviderEvent::BlockStart { id, name, .. } => {
                BLOCK_BYTES + id.as_ref().map_or(0, String::len) + name.as_ref().map_or(0, String::len)
            }
            _ => 0,
        };
        if cost <= self.left {
            self.left -= cost;
            return Admitted::Whole(event);
        }
        // Only text can be cut and still be true: half a signature would
        // be refused when sent back, half a block start is no block.
        let kept = match event {
            ProviderEvent::Delta { index, mut text } => {
                let mut end = self.left;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                (!text.is_empty()).then_some(ProviderEvent::Delta { index, text })
            }
            _ => None,
        };
        self.left = 0;
        Admitted::Cut(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BlockKind;
    use futures_util::stream;

    fn delta(text: &str) -> ProviderEvent {
        ProviderEvent::Delta { index: 0, text: text.into() }
    }

    #[test]
    fn the_delta_that_crosses_is_cut_at_a_character_boundary() {
        let mut meter = Meter { left: 10 };
        assert_eq!(meter.admit(delta("abcd")), Admitted::Whole(delta("abcd")));
        let usage = ProviderEvent::Usage { input_tokens: None, output_tokens: Some(9) };
        assert_eq!(meter.admit(usage.clone()), Admitted::Whole(usage), "usage costs nothing");
        // 6 bytes left: "ab" and one "é" (2 bytes) fit, half of the next does not.
        assert_eq!(meter.admit(delta("abéé€")), Admitted::Cut(Some(delta("abéé"))));
        let mut meter = Meter { left: 2 };
        assert_eq!(meter.admit(delta("€")), Admitted::Cut(None));
    }

    #[test]
    fn signatures_and_block_starts_are_never_cut() {
        let mut meter = Meter { left: BLOCK_BYTES + 3 };
        let start = ProviderEvent::BlockStart {
            index: 0,
            kind: BlockKind::ToolUse,
            id: Some("c1".into()),
            name: Some("f".into()),
        };
        assert_eq!(meter.admit(start.clone()), Admitted::Whole(start.clone()));
        let mut meter = Meter { left: 5 };
        let signature = ProviderEvent::Signature { index: 0, signature: "0123456789".into() };
        assert_eq!(meter.admit(signature), Admitted::Cut(None));
        assert_eq!(meter.admit(start), Admitted::Cut(None));
    }

    #[test]
    fn the_allowance_is_the_smaller_of_the_call_and_what_the_message_has_left() {
        let limits =
            CallLimits { call_timeout: Duration::from_secs(1), bytes_per_token: 32, max_answer_bytes: 100_000 };
        let mut request = ModelRequest {
            model: "m".into(),
            system: None,
            turns: vec![],
            max_tokens: 1000,
            answer_bytes: 0,
            tools: vec![],
            tool_choice: None,
            continuation: None,
        };
        assert_eq!(limits.allowance(&request).0, 32_000);
        request.answer_bytes = 90_000;
        let (left, why) = limits.allowance(&request);
        assert_eq!(left, 10_000);
        assert!(why.contains("100000"), "{why}");
        request.answer_bytes = 200_000;
        assert_eq!(limits.allowance(&request).0, 0);
        assert_eq!(stored_bytes(&[Block::text("héllo")]), BLOCK_BYTES + 6);
    }

    /// A provider that streams `events`, then never ends.
    struct Script(Vec<ProviderEvent>);

    impl Provider for Script {
        fn name(&self) -> &'static str {
            "script"
        }
        fn default_model(&self) -> &str {
            "script"
        }
        fn stream(&self, _: ModelRequest) -> ProviderStream {
            Box::pin(stream::iter(self.0.clone()).chain(stream::pending()))
        }
    }

    fn run(events: Vec<ProviderEvent>, limits: CallLimits, max_tokens: u32) -> Vec<ProviderEvent> {
        let provider = Bounded::new(Arc::new(Script(events)), limits);
        let request = ModelRequest {
            model: "m".into(),
            system: None,
            turns: vec![],
            max_tokens,
            answer_bytes: 0,
            tools: vec![],
            tool_choice: None,
            continuation: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(provider.stream(request).collect())
    }

    #[test]
    fn a_call_past_its_output_ends_too_long_with_what_fits() {
        let limits =
            CallLimits { call_timeout: Duration::from_secs(60), bytes_per_token: 4, max_answer_bytes: 1 << 20 };
        let start = ProviderEvent::BlockStart { index: 0, kind: BlockKind::Text, id: None, name: None };
        // 2 tokens × 4 bytes = 8 bytes, after the block's own cost... which
        // alone is more: the block start itself is refused.
        let out = run(vec![start.clone(), delta("x")], limits, 2);
        assert!(
            matches!(&out[..], [ProviderEvent::Failed { code: FailureCode::UpstreamError, message, .. }] if message.starts_with("answer too long"))
        );
        // 20 tokens: 80 bytes, 32 for the block, 48 of text.
        let out = run(vec![start.clone(), delta(&"a".repeat(40)), delta(&"b".repeat(40))], limits, 20);
        assert_eq!(out[..3], [start, delta(&"a".repeat(40)), delta(&"b".repeat(8))]);
        assert!(matches!(&out[3], ProviderEvent::Failed { message, .. } if message.contains("20 tokens at 4 bytes")));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_call_past_its_time_ends_upstream_timeout() {
        let limits =
            CallLimits { call_timeout: Duration::from_millis(50), bytes_per_token: 32, max_answer_bytes: 1 << 20 };
        let out = run(vec![ProviderEvent::Started { input_tokens: None }, delta("so far")], limits, 100);
        assert_eq!(out[..2], [ProviderEvent::Started { input_tokens: None }, delta("so far")]);
        assert!(
            matches!(&out[2], ProviderEvent::Failed { code: FailureCode::UpstreamTimeout, message, .. } if message.contains("50 ms"))
        );
    }
}
