//! Web Push (RFC 8030) to browsers that subscribed with `pushManager`:
//! the service's VAPID identity and one encrypted push per attempt.
//!
//! - **VAPID** (RFC 8292): a P-256 key pair, from `--vapid-private-key` or
//!   generated once and kept in the database (the same on every node and
//!   across restarts: browsers subscribed with its public key), and the
//!   operator's `--vapid-subject`. Each push carries
//!   `Authorization: vapid t=<JWT>, k=<public key>`, the JWT signed ES256
//!   with `aud` the endpoint's origin, `exp` 12 hours on, `sub` the
//!   subject. Push is off (no `Push`) until a subject is set.
//! - **Encryption** (RFC 8291 `aes128gcm`): by the `web-push-native` crate
//!   (RustCrypto), to the browser's `p256dh` key and `auth` secret.
//! - **Payload**: the notification's `data`, cut to fit the 4096 bytes a
//!   push service must accept once encrypted (`fit`): `pending` goes
//!   first, then `preview` is shortened.
//! - **Sending**: through the outbound guard's client (no inside address
//!   unless `--allow-private-urls`, no redirect, no proxy), with `TTL` and
//!   `Content-Encoding: aes128gcm`. 2xx is delivered; 404 and 410 mean the
//!   browser unsubscribed, and the subscription is removed; anything else
//!   is tried again by the sender (`PushChannel`).

use std::{sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use futures_util::{future::LocalBoxFuture, FutureExt};
use p256::{
    ecdsa::{signature::Signer, Signature, SigningKey},
    elliptic_curve::sec1::ToEncodedPoint,
    PublicKey, SecretKey,
};
use reqwest::{header, StatusCode, Url};
use serde_json::Value;

use crate::{
    config::Settings,
    outbound::{self, Guard},
    store::{PushSubscription, Store},
};

/// The largest body a push service must accept (RFC 8291 §4).
const MAX_BODY: usize = 4096;
/// What `aes128gcm` adds to the plaintext of one record: the header (salt
/// 16, record size 4, key id length 1, key id 65), the padding delimiter
/// and the AEAD tag.
const OVERHEAD: usize = 16 + 4 + 1 + 65 + 1 + 16;
/// The largest plaintext that fits in one push.
pub const MAX_PLAINTEXT: usize = MAX_BODY - OVERHEAD;
/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
const JWT_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most of a push service's answer read (for its error text).
const MAX_ANSWER: usize = 4096;

/// Why a key or a subscription's keys are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the VAPID private key must be base64url of a P-256 private scalar (32 bytes)")]
    Private,
    #[error("`keys.p256dh` must be base64url of a 65-byte uncompressed P-256 point")]
    P256dh,
    #[error("`keys.auth` must be base64url of 16 bytes")]
    Auth,
}

/// base64url, with or without padding (browsers send none; some
/// libraries pad).
fn decode(text: &str) -> Option<Vec<u8>> {
    B64.decode(text.trim_end_matches('=')).ok()
}

/// A browser's `p256dh` key: an uncompressed point on P-256.
pub fn browser_key(p256dh: &str) -> Result<PublicKey, KeyError> {
    let bytes = decode(p256dh).ok_or(KeyError::P256dh)?;
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(KeyError::P256dh);
    }
    PublicKey::from_sec1_bytes(&bytes).map_err(|_| KeyError::P256dh)
}

/// A browser's `auth` secret: 16 bytes.
pub fn browser_auth(auth: &str) -> Result<[u8; 16], KeyError> {
    decode(auth).and_then(|b| <[u8; 16]>::try_from(b).ok()).ok_or(KeyError::Auth)
}

/// The service's VAPID identity.
pub struct Vapid {
    key: SigningKey,
    /// The public key, base64url of the uncompressed point (65 bytes).
    public: String,
    subject: String,
}

impl Vapid {
    /// From a private key (base64url of the scalar) and the subject.
    pub fn new(private: &str, subject: &str) -> Result<Vapid, KeyError> {
        let bytes = decode(private).ok_or(KeyError::Private)?;
        if bytes.is_empty() || bytes.len() > 32 {
            return Err(KeyError::Private);
        }
        // (A scalar with leading zero bytes may come without them.)
        let mut scalar = [0u8; 32];
        scalar[32 - bytes.len()..].copy_from_slice(&bytes);
        let secret = SecretKey::from_slice(&scalar).map_err(|_| KeyError::Private)?;
        let public = B64.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(Vapid { key: SigningKey::from(secret), public, subject: subject.to_owned() })
    }

    /// A new private key, base64url.
    pub fn generate() -> anyhow::Result<String> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the VAPID key: {e}"))?;
            // (A scalar of zero or past the group order: about 2^-32; draw again.)
            if SecretKey::from_slice(&bytes).is_ok() {
                return Ok(B64.encode(bytes));
            }
        }
    }

    /// The public key browsers subscribe with (`applicationServerKey`).
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header of a push to `endpoint`, valid from
    /// `now` (seconds since the epoch) for `JWT_LIFETIME`.
    pub fn authorization(&self, endpoint: &Url, now: i64) -> String {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": now + JWT_LIFETIME.as_secs() as i64,
            "sub": self.subject,
        });
        let claims = B64.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        // ES256: the signature is r and s, 32 bytes each (RFC 7518 §3.4).
        let signature: Signature = self.key.sign(signed.as_bytes());
        format!("vapid t={signed}.{}, k={}", B64.encode(signature.to_bytes()), self.public)
    }
}

/// `data` as the JSON a push carries, cut to `limit` bytes: without
/// `pending`, then with a shorter `preview` (and `error` message), so a
/// notification always says which message of which thread it is about.
pub fn fit(data: &Value, limit: usize) -> Vec<u8> {
    let body = serde_json::to_vec(data).expect("JSON serializes");
    if body.len() <= limit {
        return body;
    }
    let mut data = data.clone();
    if let Some(o) = data.as_object_mut() {
        o.remove("pending");
    }
    for field in ["preview", "error"] {
        let body = serde_json::to_vec(&data).expect("JSON serializes");
        if body.len() <= limit {
            return body;
        }
        shorten(&mut data, field, body.len() - limit);
    }
    let body = serde_json::to_vec(&data).expect("JSON serializes");
    if body.len() <= limit {
        return body;
    }
    // Only ids and the status are left (nothing else can be that large).
    let mut kept = serde_json::Map::new();
    for key in ["project_id", "thread_id", "message_id", "status", "stop_reason"] {
        if let Some(v) = data.get(key) {
            kept.insert(key.to_owned(), v.clone());
        }
    }
    serde_json::to_vec(&kept).expect("JSON serializes")
}

/// Cuts at least `excess` bytes (as JSON) off the text of `data[field]`
/// (or of its `message`), at a character boundary, ending it with `…`.
fn shorten(data: &mut Value, field: &str, excess: usize) {
    let text = match data.get_mut(field) {
        Some(Value::String(s)) => s,
        Some(Value::Object(o)) => match o.get_mut("message") {
            Some(Value::String(s)) => s,
            _ => return,
        },
        _ => return,
    };
    // A character costs at most 6 bytes of JSON (`\uXXXX`) and at least 1;
    // cut by its JSON length from the end until `excess` (and the 3 of
    // `…`) is gone.
    let mut cut = 0usize;
    let mut keep = text.len();
    for (i, c) in text.char_indices().rev() {
        if cut >= excess + 3 {
            break;
        }
        cut += serde_json::to_string(&c).map_or(6, |s| s.len() - 2);
        keep = i;
    }
    text.truncate(keep);
    text.push('…');
}

/// What one push attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The push service took it (2xx).
    Delivered { status_code: u16 },
    /// Not taken; worth trying again (5xx, 429, time-outs, refusals of a
    /// request it may take later).
    Retry { status_code: Option<u16>, error: String },
    /// The subscription is gone (404 or 410): never send to it again.
    Gone { status_code: u16 },
}

/// Web Push, when it is on (`--vapid-subject`).
pub struct Push {
    vapid: Vapid,
    client: reqwest::Client,
    guard: Guard,
    /// One attempt's whole time (`--notify-timeout-ms`).
    timeout: Duration,
    ttl: u32,
}

impl Push {
    /// Push as configured: `None` without a subject. Without
    /// `--vapid-private-key`, the key is the one the database keeps (the
    /// first node to start with push on generates it).
    pub async fn start(settings: &Settings, store: &Store) -> anyhow::Result<Option<Arc<Push>>> {
        let (push, timeout) = (&settings.push, settings.notify.timeout());
        let configured = push.vapid_private_key.as_ref().and_then(|k| k.expose());
        if let Some(key) = configured {
            Vapid::new(key, "").map_err(|e| anyhow::anyhow!("--vapid-private-key: {e}"))?;
        }
        let Some(subject) = push.vapid_subject.as_deref() else { return Ok(None) };
        let private = match configured {
            Some(key) => key.to_owned(),
            None => store.vapid_private_key_or(&Vapid::generate()?).await?,
        };
        let vapid = Vapid::new(&private, subject).map_err(|e| anyhow::anyhow!("the stored VAPID key: {e}"))?;
        let guard = settings.outbound.guard();
        let client = guard.client(timeout);
        Ok(Some(Arc::new(Push { vapid, client, guard, timeout, ttl: push.push_ttl_secs })))
    }

    /// The VAPID public key (base64url, uncompressed P-256 point).
    pub fn public_key(&self) -> &str {
        self.vapid.public_key()
    }

    /// Sends `data` (a notification's `data`, cut to fit) to one
    /// subscription, encrypted to its keys, with the VAPID header.
    pub async fn send(&self, subscription: &PushSubscription, data: &Value) -> Outcome {
        let retry = |error: String| Outcome::Retry { status_code: None, error };
        let endpoint = match self.guard.check_url(&subscription.endpoint) {
            Ok(url) => url,
            Err(refused) => return retry(refused.to_string()),
        };
        let (key, auth) = match (browser_key(&subscription.p256dh), browser_auth(&subscription.auth)) {
            (Ok(key), Ok(auth)) => (key, auth),
            (Err(e), _) | (_, Err(e)) => return retry(e.to_string()),
        };
        let plaintext = fit(data, MAX_PLAINTEXT);
        let auth = web_push_native::Auth::clone_from_slice(&auth);
        let body = match web_push_native::encrypt(plaintext, &key, &auth) {
            Ok(body) => body,
            Err(e) => return retry(format!("the push could not be encrypted: {e}")),
        };
        let request = self
            .client
            .post(endpoint.clone())
            .timeout(self.timeout)
            .header("TTL", self.ttl)
            .header(header::CONTENT_ENCODING, "aes128gcm")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::AUTHORIZATION, self.vapid.authorization(&endpoint, chrono::Utc::now().timestamp()))
            .body(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return retry(outbound::refusal_of(&e).unwrap_or_else(|| e.without_url().to_string())),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered { status_code: status.as_u16() };
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Outcome::Gone { status_code: status.as_u16() };
        }
        let text = match outbound::read_capped(response, MAX_ANSWER).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>(),
            Err(_) => String::new(),
        };
        let error = match text.trim() {
            "" => format!("the push service answered {status}"),
            text => format!("the push service answered {status}: {text}"),
        };
        Outcome::Retry { status_code: Some(status.as_u16()), error }
    }
}

/// Web Push as the sender's channel for push deliveries: the delivery's
/// target is a subscription; 404 and 410 remove it.
pub struct PushChannel {
    pub push: Arc<Push>,
    pub store: Store,
}

impl super::Channel for PushChannel {
    fn send<'a>(&'a self, delivery: &'a super::Delivery) -> LocalBoxFuture<'a, super::Sent> {
        async move {
            let subscription = match self.store.push_subscription_by_id(delivery.target_id).await {
                Ok(Some(subscription)) => subscription,
                Ok(None) => return super::Sent::Gone,
                Err(e) => return super::Sent::Failed { status_code: None, error: e.to_string() },
            };
            let body: Value = serde_json::from_str(&delivery.payload).unwrap_or(Value::Null);
            let data = body.get("data").cloned().unwrap_or(body);
            match self.push.send(&subscription, &data).await {
                Outcome::Delivered { status_code } => super::Sent::Delivered { status_code },
                Outcome::Retry { status_code, error } => super::Sent::Failed { status_code, error },
                Outcome::Gone { status_code } => {
                    if let Err(e) = self.store.remove_push_subscription(subscription.id).await {
                        tracing::warn!(error = %e, "a gone push subscription could not be removed");
                    }
                    tracing::info!(subscription = %subscription.id, status_code, "a push subscription is gone");
                    super::Sent::Gone
                }
            }
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vapid_header_is_an_es256_jwt_for_the_endpoints_origin() {
        use p256::ecdsa::{signature::Verifier, VerifyingKey};
        let vapid = Vapid::new(&Vapid::generate().unwrap(), "mailto:ops@example.com").unwrap();
        let url = Url::parse("https://push.example.net:8443/send/abc?x=1").unwrap();
        let header = vapid.authorization(&url, 1_000);
        let (t, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(k, vapid.public_key());
        assert_eq!(decode(k).unwrap().len(), 65);
        let (signed, signature) = t.rsplit_once('.').unwrap();
        let (_, claims) = signed.split_once('.').unwrap();
        let claims: Value = serde_json::from_slice(&decode(claims).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 1_000 + 12 * 3600);
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let key = VerifyingKey::from_sec1_bytes(&decode(k).unwrap()).unwrap();
        let signature = Signature::from_slice(&decode(signature).unwrap()).unwrap();
        assert!(key.verify(signed.as_bytes(), &signature).is_ok());
    }

    #[test]
    fn keys_of_the_wrong_size_or_form_are_refused() {
        let point = SecretKey::from_slice(&[7u8; 32]).unwrap().public_key();
        let good = B64.encode(point.to_encoded_point(false).as_bytes());
        assert!(browser_key(&good).is_ok());
        assert!(browser_key(&format!("{good}=")).is_ok(), "padding is accepted");
        let compressed = B64.encode(point.to_encoded_point(true).as_bytes());
        assert_eq!(browser_key(&compressed), Err(KeyError::P256dh));
        let mut off_curve = decode(&good).unwrap();
        off_curve[64] ^= 1;
        assert_eq!(browser_key(&B64.encode(off_curve)), Err(KeyError::P256dh));
        assert_eq!(browser_key("not base64!"), Err(KeyError::P256dh));
        assert!(browser_auth(&B64.encode([1u8; 16])).is_ok());
        assert_eq!(browser_auth(&B64.encode([1u8; 15])), Err(KeyError::Auth));
        assert_eq!(Vapid::new(&B64.encode([0u8; 32]), "mailto:a@b").err(), Some(KeyError::Private));
        assert_eq!(Vapid::new(&B64.encode([1u8; 33]), "mailto:a@b").err(), Some(KeyError::Private));
        let short = Vapid::new(&B64.encode([1u8; 31]), "").unwrap();
        let mut padded = [1u8; 32];
        padded[0] = 0;
        assert_eq!(short.public_key(), Vapid::new(&B64.encode(padded), "").unwrap().public_key());
    }

    #[test]
    fn a_large_payload_loses_pending_then_preview_and_keeps_its_ids() {
        let data = serde_json::json!({
            "project_id": "p", "thread_id": "t", "message_id": "m", "status": "awaiting_input",
            "stop_reason": null, "usage": {"input_tokens": 1, "output_tokens": 2}, "error": null,
            "pending": [{"tool_call_id": "c", "input": "x".repeat(3000)}],
            "preview": "é\"\u{1}".repeat(300),
        });
        let small = fit(&data, 100_000);
        assert_eq!(serde_json::from_slice::<Value>(&small).unwrap(), data);

        let body = fit(&data, MAX_PLAINTEXT);
        assert!(body.len() <= MAX_PLAINTEXT, "{}", body.len());
        let cut: Value = serde_json::from_slice(&body).unwrap();
        assert!(cut.get("pending").is_none());
        assert_eq!(cut["preview"], data["preview"], "the preview fits once pending is gone");

        let body = fit(&data, 600);
        assert!(body.len() <= 600 && body.len() > 500, "{}", body.len());
        let cut: Value = serde_json::from_slice(&body).unwrap();
        let preview = cut["preview"].as_str().unwrap();
        assert!(preview.ends_with('…') && data["preview"].as_str().unwrap().starts_with(&preview[..preview.len() - 3]));
        assert_eq!((cut["message_id"].as_str(), cut["usage"]["output_tokens"].as_u64()), (Some("m"), Some(2)));

        let tiny = fit(&data, 40);
        let cut: Value = serde_json::from_slice(&tiny).unwrap();
        assert_eq!(cut["message_id"], "m");
    }
}
