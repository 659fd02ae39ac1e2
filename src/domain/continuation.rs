//! Answers cut short that finish anyway, as plain rules: why an answer was
//! cut (`Cut`), whether it may be continued (`Budget`), in which form the
//! model is asked to go on (`Form`, chosen per provider and model), and
//! the seam where the new text meets the old (`Seam`: a continuation that
//! starts by repeating the end of the partial text has that overlap cut
//! before anything is published).

use std::time::Duration;

/// Why an answer was cut, as `message.continued`'s `reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cut {
    /// The provider sent an error event after its 200 (overloaded, an
    /// internal error).
    ProviderError,
    /// The connection to the provider broke, or its stream ended without
    /// its end marker.
    ConnectionLost,
    /// The provider sent nothing for `--upstream-stall-ms`.
    Stalled,
    /// The process stopped without a word (`kill -9`, a crash); found
    /// streaming when it started again.
    Restart,
    /// Cluster mode: the node running it died (its lease expired).
    OwnerLost,
    /// Cluster mode: the node running it stopped for a deploy and handed
    /// it over at the end of its grace.
    Handoff,
}

impl Cut {
    pub const ALL: [Cut; 6] =
        [Cut::ProviderError, Cut::ConnectionLost, Cut::Stalled, Cut::Restart, Cut::OwnerLost, Cut::Handoff];

    pub fn as_str(self) -> &'static str {
        match self {
            Cut::ProviderError => "provider_error",
            Cut::ConnectionLost => "connection_lost",
            Cut::Stalled => "stalled",
            Cut::Restart => "restart",
            Cut::OwnerLost => "owner_lost",
            Cut::Handoff => "handoff",
        }
    }

    pub fn parse(s: &str) -> Option<Cut> {
        Cut::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What a cut answer may still take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Continuations one answer may take (0: never continued).
    pub max_attempts: u32,
    /// An answer cut longer ago than this is not continued.
    pub max_age: Duration,
}

/// Why a cut answer is not continued (a metric's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Continuations are off (`--continue-max-attempts 0`).
    Off,
    /// It took every continuation it may.
    Spent,
    /// It was cut too long ago.
    TooOld,
    /// The model call that was cut added nothing: asking again would
    /// most likely fail the same way.
    NoProgress,
    /// The generation caps are reached (after a crash or a take-over,
    /// where no slot is held).
    AtCapacity,
    /// Its thread's actor is stopping (a shutdown, a hand-over): it starts
    /// no model call, and the answer ends as the stop says.
    Stopping,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Off => "off",
            Refused::Spent => "budget_spent",
            Refused::TooOld => "too_old",
            Refused::NoProgress => "no_progress",
            Refused::AtCapacity => "at_capacity",
            Refused::Stopping => "stopping",
        }
    }
}

impl Budget {
    /// Whether an answer that took `taken` continuations, cut `age` ago,
    /// may take one more; the attempt's number (from 1) if so.
    pub fn next(&self, taken: u32, age: Duration) -> Result<u32, Refused> {
        if self.max_attempts == 0 {
            return Err(Refused::Off);
        }
        if taken >= self.max_attempts {
            return Err(Refused::Spent);
        }
        if age > self.max_age {
            return Err(Refused::TooOld);
        }
        Ok(taken + 1)
    }
}

/// How the partial answer is given back to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As the last assistant message, which the model goes on from
    /// (trailing whitespace trimmed: the APIs refuse it).
    Prefill,
    /// As an assistant message followed by a short user message, never
    /// stored, asking the model to go on (`INSTRUCTION`).
    Instruction,
}

/// The operator's choice of form (`--continue-form`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormSetting {
    /// By provider and model (`model::anthropic`, `model::openai`).
    #[default]
    Auto,
    Prefill,
    Instruction,
}

/// The user message of `Form::Instruction`.
pub const INSTRUCTION: &str = "Your previous answer was cut off. Continue it exactly where you stopped, \
without repeating anything you already wrote and without any preamble.";

/// How many bytes at the end of the partial text a continuation's start is
/// compared with.
pub const SEAM_WINDOW: usize = 512;

/// An overlap shorter than this is taken for a coincidence (unless it is
/// whitespace alone): "Hel" then "llo" is "Hello"... or "Helllo".
pub const SEAM_MIN: usize = 8;

/// The seam of a continued text block: the new text is held until it is
/// clear whether it starts by repeating the partial text's end; then that
/// overlap is cut and the rest passes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seam {
    /// The last `SEAM_WINDOW` bytes (or fewer) of the partial text.
    tail: String,
    /// New text held so far.
    held: String,
    /// The overlap is decided: text passes through.
    open: bool,
}

impl Seam {
    /// A seam after `partial` (the text of the block the continuation goes
    /// on from).
    pub fn after(partial: &str) -> Seam {
        let mut start = partial.len().saturating_sub(SEAM_WINDOW);
        while !partial.is_char_boundary(start) {
            start += 1;
        }
        Seam { tail: partial[start..].to_owned(), held: String::new(), open: partial.is_empty() }
    }

    /// Takes `text` of the continuation: what may be published now (empty
    /// while it is held).
    pub fn feed(&mut self, text: &str) -> String {
        if self.open {
            return text.to_owned();
        }
        self.held.push_str(text);
        // Held while the new text could still be the start of a repeat of
        // the tail's end: it occurs in the tail, with more of the tail after.
        let could_grow = (0..self.tail.len())
            .filter(|&i| self.tail.is_char_boundary(i))
            .any(|i| self.tail[i..].len() > self.held.len() && self.tail[i..].starts_with(&self.held));
        if could_grow && self.held.len() < SEAM_WINDOW {
            return String::new();
        }
        self.release()
    }

    /// The continuation's block ended (or the stream did): what is still
    /// held, its overlap cut.
    pub fn release(&mut self) -> String {
        if self.open {
            return String::new();
        }
        self.open = true;
        let held = std::mem::take(&mut self.held);
        let cut = overlap(&self.tail, &held);
        held[cut..].to_owned()
    }

    /// Text is held back now.
    pub fn holding(&self) -> bool {
        !self.open && !self.held.is_empty()
    }
}

/// The length of the longest end of `tail` that `new` starts with, if it
/// is long enough to be a repeat rather than a coincidence (`SEAM_MIN`, or
/// whitespace alone); 0 otherwise.
pub fn overlap(tail: &str, new: &str) -> usize {
    let longest = (1..=tail.len().min(new.len()))
        .rev()
        .filter(|&k| tail.is_char_boundary(tail.len() - k) && new.is_char_boundary(k))
        .find(|&k| tail.as_bytes()[tail.len() - k..] == new.as_bytes()[..k]);
    match longest {
        Some(k) if k >= SEAM_MIN || new[..k].chars().all(char::is_whitespace) => k,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(partial: &str, pieces: &[&str]) -> String {
        let mut seam = Seam::after(partial);
        let mut out: String = pieces.iter().map(|p| seam.feed(p)).collect();
        out.push_str(&seam.release());
        out
    }

    #[test]
    fn a_repeated_end_is_cut_once_whatever_the_pieces() {
        let partial = "The quick brown fox jumps over the lazy";
        let cont = "over the lazy dog. The end.";
        for cut in 0..cont.len() {
            let (a, b) = cont.split_at(cut);
            assert_eq!(through(partial, &[a, b]), " dog. The end.", "split at {cut}");
        }
    }

    #[test]
    fn a_short_coincidence_is_kept_and_whitespace_is_not_doubled() {
        assert_eq!(through("Hel", &["l", "o"]), "lo");
        assert_eq!(through("Hello ", &[" world"]), "world");
        assert_eq!(through("Hello", &[" world"]), " world");
        assert_eq!(through("", &["anything"]), "anything");
    }

    #[test]
    fn text_that_is_no_repeat_passes_at_once() {
        let mut seam = Seam::after("abc def ghi");
        assert_eq!(seam.feed("xyz"), "xyz");
        assert_eq!(seam.feed(" more"), " more");
        assert!(!seam.holding());
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        assert_eq!(through("naïve café au lait", &["café au lait, s'il vous plaît"]), ", s'il vous plaît");
        assert_eq!(through("🤔🤔🤔", &["🤔!"]), "🤔!");
    }

    #[test]
    fn the_budget_counts_attempts_and_age() {
        let b = Budget { max_attempts: 2, max_age: Duration::from_secs(600) };
        assert_eq!(b.next(0, Duration::ZERO), Ok(1));
        assert_eq!(b.next(1, Duration::ZERO), Ok(2));
        assert_eq!(b.next(2, Duration::ZERO), Err(Refused::Spent));
        assert_eq!(b.next(0, Duration::from_secs(601)), Err(Refused::TooOld));
        assert_eq!(Budget { max_attempts: 0, ..b }.next(0, Duration::ZERO), Err(Refused::Off));
    }

    #[test]
    fn reasons_round_trip() {
        for c in Cut::ALL {
            assert_eq!(Cut::parse(c.as_str()), Some(c));
        }
    }
}
