//! The simulated provider: a deterministic reply streamed at a set pace.
//! It needs no network, which makes it the default and the tests' model.
//! The text mixes ASCII with two-, three- and four-byte UTF-8 characters so
//! byte offsets are exercised on every run.

use std::time::Duration;

use futures_util::{stream, StreamExt};

use super::{ModelRequest, Provider, ProviderEvent, ProviderStream};
use crate::{config::ProviderSettings, domain::BlockKind};

const WORDS: &[&str] = &[
    "stream",
    "façade",
    "naïve",
    "日本語",
    "🚀",
    "Ωmega",
    "actor",
    "délai",
    "chunk",
    "数据",
    "zero",
    "polling",
    "über",
    "résumé",
    "—",
    "🙂",
    "byte",
    "exact",
];

pub struct Simulated {
    chunks: usize,
    chunk_chars: usize,
    interval: Duration,
    thinking: bool,
    model: String,
}

impl Simulated {
    pub fn new(settings: &ProviderSettings) -> Self {
        Simulated {
            chunks: settings.sim_chunks.max(1),
            chunk_chars: settings.sim_chunk_chars.max(1),
            interval: Duration::from_millis(settings.sim_interval_ms),
            thinking: settings.sim_thinking,
            model: settings.model.clone().unwrap_or_else(|| "simulated".to_owned()),
        }
    }
}

/// Deterministic text of `chars` characters, seeded by `seed`.
fn text_of(seed: u64, chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut i = seed as usize;
    while count < chars {
        if count > 0 {
            out.push(' ');
            count += 1;
        }
        let word = WORDS[i % WORDS.len()];
        out.push_str(word);
        count += word.chars().count();
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    out.chars().take(chars).collect()
}

/// Splits `text` into pieces of `n` characters (never inside a character).
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn seed_of(request: &ModelRequest) -> u64 {
    // FNV-1a over the last turn's text: same question, same answer.
    let mut h: u64 = 0xcbf29ce484222325;
    for block in request.turns.last().map(|t| t.blocks.as_slice()).unwrap_or_default() {
        for b in block.text.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    h % 1000
}

impl Provider for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    fn stream(&self, request: ModelRequest) -> ProviderStream {
        let seed = seed_of(&request);
        let input_tokens: usize =
            request.turns.iter().flat_map(|t| &t.blocks).map(|b| b.text.split_whitespace().count()).sum();
        let mut events = vec![ProviderEvent::Started { input_tokens: Some(input_tokens as u64) }];
        let mut paced = Vec::new();
        let mut index = 0;
        if self.thinking {
            events.push(ProviderEvent::BlockStart { index, kind: BlockKind::Thinking, id: None, name: None });
            let thought = text_of(seed + 1, (self.chunks / 4).max(2) * self.chunk_chars);
            paced.extend(pieces(&thought, self.chunk_chars).into_iter().map(|t| (index, t)));
            paced.push((usize::MAX, String::new()));
            index += 1;
        }
        let answer = text_of(seed, self.chunks * self.chunk_chars);
        paced.extend(pieces(&answer, self.chunk_chars).into_iter().map(|t| (index, t)));
        let output_tokens = paced.len() as u64;
        let interval = self.interval;
        let text_index = index;

        // Each paced piece waits one interval: the upstream's own pace.
        // Output usage grows with every piece, so a cancelled or failed
        // answer still has its usage so far.
        let body = stream::iter(paced.into_iter().enumerate())
            .then(move |(n, (i, text))| async move {
                tokio::time::sleep(interval).await;
                if i == usize::MAX {
                    vec![ProviderEvent::BlockStart { index: text_index, kind: BlockKind::Text, id: None, name: None }]
                } else {
                    vec![
                        ProviderEvent::Delta { index: i, text },
                        ProviderEvent::Usage { input_tokens: None, output_tokens: Some(n as u64 + 1) },
                    ]
                }
            })
            .flat_map(stream::iter);
        let first_text_block = if self.thinking {
            vec![]
        } else {
            vec![ProviderEvent::BlockStart { index: 0, kind: BlockKind::Text, id: None, name: None }]
        };
        let tail = vec![
            ProviderEvent::Usage { input_tokens: None, output_tokens: Some(output_tokens) },
            ProviderEvent::StopReason { stop_reason: "end_turn".to_owned() },
            ProviderEvent::Stop { stop_reason: None },
        ];
        events.extend(first_text_block);
        Box::pin(stream::iter(events).chain(body).chain(stream::iter(tail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_exact_length_and_multibyte_characters() {
        let t = text_of(3, 200);
        assert_eq!(t.chars().count(), 200);
        assert!(t.len() > 200, "expected multi-byte characters");
        let p = pieces(&t, 7);
        assert_eq!(p.concat(), t);
    }
}
