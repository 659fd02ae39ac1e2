//! Checks on text a client sends, shared by every way in (REST, the seed
//! route, WebSocket `send` frames): what the contract refuses, and what
//! no database can store (a NUL character, which Postgres rejects). Each
//! refusal is an `InputError` with its contract code; `error.rs` turns it
//! into an HTTP answer.

use super::codes::Code;

/// A refused input: its contract code and the sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: Code,
    pub message: String,
}

impl InputError {
    pub fn bad_request(message: impl Into<String>) -> InputError {
        InputError { code: Code::BadRequest, message: message.into() }
    }
}

/// Largest `name`, `title` or `model`, in characters (as JSON Schema's
/// `maxLength` counts).
pub const MAX_LABEL_CHARS: usize = 200;

fn no_nul(field: &str, value: &str) -> Result<(), InputError> {
    match value.contains('\0') {
        true => Err(InputError::bad_request(format!("`{field}` must not contain NUL characters"))),
        false => Ok(()),
    }
}

/// A body-sized text: no NUL, at most `max_bytes` (413 past it).
pub fn text(field: &str, value: &str, max_bytes: usize) -> Result<(), InputError> {
    no_nul(field, value)?;
    if value.len() > max_bytes {
        return Err(InputError {
            code: Code::PayloadTooLarge,
            message: format!("`{field}` is larger than {max_bytes} bytes"),
        });
    }
    Ok(())
}

/// A short label: optional, no NUL, at most `MAX_LABEL_CHARS` (400 past it).
pub fn label(field: &str, value: Option<&str>) -> Result<(), InputError> {
    let Some(value) = value else { return Ok(()) };
    no_nul(field, value)?;
    if value.chars().count() > MAX_LABEL_CHARS {
        return Err(InputError::bad_request(format!("`{field}` is longer than {MAX_LABEL_CHARS} characters")));
    }
    Ok(())
}

/// A model name: optional, but not blank when given (a provider would
/// answer it with an error after the message was stored), and a label.
pub fn model(value: Option<&str>) -> Result<(), InputError> {
    if value.is_some_and(|m| m.trim().is_empty()) {
        return Err(InputError::bad_request("`model` must not be empty"));
    }
    label("model", value)
}

/// A new message: non-blank content within the size limit, a sane model
/// name, and `max_tokens` between 1 and the cap.
pub fn message(
    content: &str,
    model: Option<&str>,
    max_tokens: Option<u32>,
    max_content_bytes: usize,
    max_tokens_cap: u32,
) -> Result<(), InputError> {
    if content.trim().is_empty() {
        return Err(InputError::bad_request("`content` must not be empty"));
    }
    text("content", content, max_content_bytes)?;
    answer_options(model, max_tokens, max_tokens_cap)
}

/// What a question (or a regenerate) may say of its answer: a sane model
/// name, and `max_tokens` between 1 and the cap.
pub fn answer_options(model: Option<&str>, max_tokens: Option<u32>, max_tokens_cap: u32) -> Result<(), InputError> {
    self::model(model)?;
    match max_tokens {
        Some(0) => Err(InputError::bad_request("`max_tokens` must be at least 1")),
        Some(n) if n > max_tokens_cap => {
            Err(InputError::bad_request(format!("`max_tokens` must be at most {max_tokens_cap}")))
        }
        _ => Ok(()),
    }
}

/// Deserializes a field that may be left out (with `#[serde(default)]`)
/// but is never `null` when given: its schema says a value of its type,
/// so `null` is refused as the schema refuses it.
pub fn not_null<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Deserializes an optional count that JSON may write as `7` or `7.0`
/// (the same number to JSON Schema), refusing fractions, negatives and
/// values past `u32`.
pub fn whole_u32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    use serde::{de::Error, Deserialize};
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    if let Some(n) = number.as_u64() {
        return u32::try_from(n).map(Some).map_err(|_| D::Error::custom(format!("{n} is too large")));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f) => Ok(Some(f as u32)),
        _ => Err(D::Error::custom(format!("expected a whole number from 0 to {}, got {number}", u32::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nul_blank_oversized_and_out_of_range() {
        assert!(message("hi", Some("m"), Some(10), 100, 100).is_ok());
        assert_eq!(message("a\0b", None, None, 100, 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(message("  ", None, None, 100, 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(message(&"x".repeat(101), None, None, 100, 100).unwrap_err().code, Code::PayloadTooLarge);
        assert_eq!(message("hi", None, Some(101), 100, 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(message("hi", Some(&"m".repeat(201)), None, 100, 100).unwrap_err().code, Code::BadRequest);
        assert!(label("title", Some(&"é".repeat(200))).is_ok(), "labels count characters, not bytes");
        for blank in ["", "  "] {
            assert_eq!(message("hi", Some(blank), None, 100, 100).unwrap_err().code, Code::BadRequest, "{blank:?}");
        }
    }

    #[derive(serde::Deserialize)]
    struct Count {
        #[serde(default, deserialize_with = "whole_u32")]
        n: Option<u32>,
    }

    #[derive(serde::Deserialize)]
    struct Text {
        #[serde(default, deserialize_with = "not_null")]
        t: Option<String>,
    }

    #[test]
    fn a_field_left_out_is_none_but_null_is_refused() {
        let parse = |s: &str| serde_json::from_str::<Text>(s).map(|t| t.t).ok();
        assert_eq!(parse(r#"{"t": "x"}"#), Some(Some("x".to_owned())));
        assert_eq!(parse(r#"{}"#), Some(None));
        assert_eq!(parse(r#"{"t": null}"#), None);
    }

    #[test]
    fn whole_numbers_are_accepted_in_either_json_spelling() {
        let parse = |s: &str| serde_json::from_str::<Count>(s).map(|c| c.n).ok();
        assert_eq!(parse(r#"{"n": 7}"#), Some(Some(7)));
        assert_eq!(parse(r#"{"n": 7.0}"#), Some(Some(7)));
        assert_eq!(parse(r#"{"n": null}"#), Some(None));
        assert_eq!(parse(r#"{}"#), Some(None));
        for bad in [r#"{"n": 7.5}"#, r#"{"n": -1}"#, r#"{"n": 5000000000}"#, r#"{"n": "7"}"#] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
