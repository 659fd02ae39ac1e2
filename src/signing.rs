//! Signatures in the Standard Webhooks format, for every request the
//! service sends on a project's behalf (tool calls now, notifications
//! later): headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`, `v1,<base64 of HMAC-SHA256 over
//! "<id>.<timestamp>.<body>">`, one per secret, space-separated (during a
//! rotation both the new and the old secret sign). A secret is
//! `whsec_<base64 of 32 random bytes>`; the HMAC key is those bytes.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret.
pub const PREFIX: &str = "whsec_";

/// A new signing secret (`whsec_…`).
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).expect("the OS gives random bytes");
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key of a secret, if it is one.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()
}

/// The `webhook-signature` value of `body` sent as `id` at `timestamp`,
/// signed by each of `secrets` (newest first; a malformed one is skipped).
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| key_of(secret))
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three headers of a signed request.
pub fn headers(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature(secrets, id, timestamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_has_the_prefix_and_32_bytes() {
        let secret = new_secret();
        assert!(secret.starts_with(PREFIX));
        assert_eq!(key_of(&secret).unwrap().len(), 32);
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn the_formats_published_example_is_reproduced() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let sig = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn each_secret_signs_and_a_change_of_any_part_changes_the_signature() {
        let (a, b) = (new_secret(), new_secret());
        let both = signature(&[a.clone(), b.clone()], "msg_1", 1_700_000_000, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(std::slice::from_ref(&a), "msg_1", 1_700_000_000, b"{}"));
        assert_eq!(parts[1], signature(std::slice::from_ref(&b), "msg_1", 1_700_000_000, b"{}"));
        assert!(parts[0].starts_with("v1,"));
        let one = [a];
        assert_ne!(signature(&one, "msg_2", 1_700_000_000, b"{}"), parts[0]);
        assert_ne!(signature(&one, "msg_1", 1_700_000_001, b"{}"), parts[0]);
        assert_ne!(signature(&one, "msg_1", 1_700_000_000, b"{ }"), parts[0]);
        assert_eq!(signature(&["nope".into()], "msg_1", 1, b""), "");
    }
}
