//! Access control: who is calling, and may they touch this.
//!
//! - With no admin token configured the service is open (and refuses to
//!   start so on a non-loopback address unless `--allow-open`).
//! - The admin token (`Authorization: Bearer`) opens everything.
//! - A project key opens that project's routes only; any other project's
//!   resources answer 404, exactly like ones that do not exist.
//! - A stream token (`?token=`), signed by this server, opens the
//!   `/events` and `/ws` of one thread until it expires. Browsers cannot set
//!   headers on EventSource or WebSocket, and long-lived keys do not belong
//!   in URLs.
//!
//! Keys and tokens are compared as hashes or HMACs and never logged.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web, HttpMessage,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use crate::{
    capacity::Credential,
    error::{ApiError, Code},
};

type HmacSha256 = Hmac<Sha256>;

/// The access settings of a running service.
pub struct Auth {
    admin_hash: Option<[u8; 32]>,
    signing_key: [u8; 32],
    pub stream_token_ttl: std::time::Duration,
}

/// Who is calling. Handlers find it in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Open mode: no admin token is configured.
    Open,
    Admin,
    Project {
        project: Uuid,
        credential: Credential,
    },
    /// A stream token for this thread; its streams count against
    /// `credential` (the minting key's, or the token's own when the admin
    /// minted it; none in tokens minted before this rule).
    Stream {
        thread: Uuid,
        credential: Option<Credential>,
    },
}

impl Caller {
    /// The credential whose connections count together, if limited.
    pub fn credential(&self) -> Option<Credential> {
        match self {
            Caller::Project { credential, .. } => Some(*credential),
            Caller::Stream { credential, .. } => *credential,
            Caller::Open | Caller::Admin => None,
        }
    }
}

/// The caller `project_access` found for this request.
pub fn caller_of(req: &actix_web::HttpRequest) -> Option<Caller> {
    req.extensions().get::<Caller>().copied()
}

/// The credential a request's streams count against.
pub fn credential_of_request(req: &actix_web::HttpRequest) -> Option<Credential> {
    caller_of(req).and_then(|c| c.credential())
}

fn credential_of(key_hash: &[u8; 32]) -> Credential {
    let mut id = [0u8; 8];
    id.copy_from_slice(&key_hash[..8]);
    id
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The stored form of a project key.
pub fn key_hash(key: &str) -> String {
    hex(&sha256(key.as_bytes()))
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| ApiError::internal(&e))?;
    Ok(buf)
}

/// A new project key: shown once, stored as its hash.
pub fn new_key() -> Result<String, ApiError> {
    Ok(format!("ck_{}", B64.encode(random_bytes::<24>()?)))
}

fn unauthorized(message: &str) -> actix_web::Error {
    ApiError::new(Code::Unauthorized, message).into()
}

impl Auth {
    /// `secret`: what signs stream tokens (the same on every node of a
    /// cluster); random per process without one.
    pub fn new(
        admin_token: Option<&str>,
        stream_token_ttl: std::time::Duration,
        secret: Option<&str>,
    ) -> anyhow::Result<Auth> {
        let mut signing_key = [0u8; 32];
        match secret {
            Some(secret) => signing_key = sha256(format!("convo stream tokens\0{secret}").as_bytes()),
            None => getrandom::getrandom(&mut signing_key)
                .map_err(|e| anyhow::anyhow!("no randomness for the token key: {e}"))?,
        }
        Ok(Auth { admin_hash: admin_token.map(|t| sha256(t.as_bytes())), signing_key, stream_token_ttl })
    }

    pub fn is_open(&self) -> bool {
        self.admin_hash.is_none()
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        // expect: HMAC accepts keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.signing_key).expect("any key length");
        mac.update(payload);
        mac
    }

    /// A token for one thread's streams, minted by `caller`; its expiry
    /// time. The token carries the minting key's credential, so its
    /// connections count against that key. One minted with the admin token
    /// (which is not limited itself) gets a credential of its own, so each
    /// such token, handed to a browser, holds at most
    /// `--max-connections-per-key` streams.
    pub fn stream_token(
        &self,
        thread_id: Uuid,
        caller: &Caller,
    ) -> Result<(String, chrono::DateTime<chrono::Utc>), ApiError> {
        let expires = chrono::Utc::now() + self.stream_token_ttl;
        let mut payload = thread_id.as_bytes().to_vec();
        // Milliseconds: whole seconds would cut up to a second off the TTL.
        payload.extend_from_slice(&expires.timestamp_millis().to_be_bytes());
        let credential = match caller.credential() {
            Some(credential) => credential,
            None => random_bytes::<8>()?,
        };
        payload.extend_from_slice(&credential);
        let tag = self.mac(&payload).finalize().into_bytes();
        Ok((format!("{}.{}", B64.encode(&payload), B64.encode(tag)), expires))
    }

    /// Whether `token` is a valid, unexpired stream token of `thread` (a
    /// project socket's `subscribe` frame carries one in secured mode).
    pub fn token_opens(&self, token: &str, thread: Uuid) -> bool {
        matches!(self.verify_stream_token(token), Some(Caller::Stream { thread: t, .. }) if t == thread)
    }

    /// What a valid, unexpired stream token opens.
    fn verify_stream_token(&self, token: &str) -> Option<Caller> {
        let (payload, tag) = token.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let tag = B64.decode(tag).ok()?;
        self.mac(&payload).verify_slice(&tag).ok()?;
        let (id, rest) = payload.split_at_checked(16)?;
        let (expires, credential) = rest.split_at_checked(8)?;
        let expires = i64::from_be_bytes(expires.try_into().ok()?);
        let credential = match credential.len() {
            0 => None,
            _ => Some(credential.try_into().ok()?),
        };
        let thread = Uuid::from_slice(id).ok()?;
        (expires > chrono::Utc::now().timestamp_millis()).then_some(Caller::Stream { thread, credential })
    }

    async fn caller(&self, req: &ServiceRequest, state: &AppState) -> Result<Caller, actix_web::Error> {
        let Some(admin_hash) = &self.admin_hash else { return Ok(Caller::Open) };
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            if bool::from(sha256(token.as_bytes()).ct_eq(admin_hash)) {
                return Ok(Caller::Admin);
            }
            let hash = sha256(token.as_bytes());
            return match state.store.project_of_key(&hex(&hash)).await.map_err(ApiError::from)? {
                Some(project) => Ok(Caller::Project { project, credential: credential_of(&hash) }),
                None => Err(unauthorized("the key is not valid")),
            };
        }
        let token = web::Query::<TokenQuery>::from_query(req.query_string()).ok().and_then(|q| q.0.token);
        match token {
            Some(t) => {
                self.verify_stream_token(&t).ok_or_else(|| unauthorized("the stream token is not valid or has expired"))
            }
            None => Err(unauthorized("send `Authorization: Bearer <key>`")),
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

pub(super) fn state_of(req: &ServiceRequest) -> Result<web::Data<AppState>, actix_web::Error> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| ApiError::new(Code::Internal, "no state").into())
}

/// `/v1/projects/{pid}/…` and the seed route: the project's key or the
/// admin token.
pub async fn project_access(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let caller = project_caller(&req, Tokens::Refused).await?;
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// A thread's streams (`Kind::Stream` in the route table: `/events`,
/// `/ws`): as `project_access`, or a stream token of thread `{tid}`.
pub async fn stream_access(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let caller = project_caller(&req, Tokens::OfTid).await?;
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// A chat's streams (`/chat/{id}/stream`, `/chat/ws`): as `stream_access`,
/// but the route names a chat, not a thread, so the handler refuses a
/// token of another thread once it knows the chat's
/// (`chat::token_opens`).
pub async fn chat_stream_access(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let caller = project_caller(&req, Tokens::CheckedByHandler).await?;
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// Which stream tokens a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokens {
    Refused,
    /// Those of thread `{tid}`.
    OfTid,
    /// Any; the handler checks the thread.
    CheckedByHandler,
}

/// Who calls a project route, if they may; `tokens` says which stream
/// tokens open it.
async fn project_caller(req: &ServiceRequest, tokens: Tokens) -> Result<Caller, actix_web::Error> {
    let state = state_of(req)?;
    let caller = state.auth.caller(req, &state).await?;
    let id = |name: &str| req.match_info().get(name).and_then(|v| Uuid::try_parse(v).ok());
    let allowed = match caller {
        Caller::Open | Caller::Admin => true,
        // A `{pid}` that is not an id opens nothing (fail closed).
        Caller::Project { project, .. } => Some(project) == id("pid"),
        Caller::Stream { thread, .. } => {
            let opens = match tokens {
                Tokens::Refused => false,
                Tokens::OfTid => id("tid") == Some(thread),
                Tokens::CheckedByHandler => true,
            };
            if !opens {
                return Err(unauthorized("a stream token opens only its thread's /events and /ws"));
            }
            true
        }
    };
    if !allowed {
        // Another project's resources look exactly like missing ones.
        return Err(ApiError::not_found("project").into());
    }
    Ok(caller)
}

/// `/admin/*` and project creation: the admin token (or open mode).
pub async fn admin_only(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state_of(&req)?;
    match state.auth.caller(&req, &state).await? {
        Caller::Open | Caller::Admin => next.call(req).await,
        _ => Err(unauthorized("this route needs the admin token")),
    }
}

/// Open mode answers loopback names only: a web page whose own name a
/// rebinding DNS points at 127.0.0.1 sends its own `Host`, and is refused
/// (403) instead of reaching an unauthenticated API. The name is the
/// request's own `Host` (or HTTP/2 authority); `Forwarded` and
/// `X-Forwarded-Host` count only from a `--trusted-proxies` address, where
/// they name the host the browser asked for. With `--allow-open` on a
/// public address, the operator chose the network; any `Host` goes.
pub async fn open_mode_host(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state_of(&req)?;
    if state.auth.is_open() && !state.deps.settings.http.allow_open {
        let trusted = &state.deps.settings.http.trusted_proxies;
        let from_proxy = req.peer_addr().is_some_and(|peer| trusted.contains(&peer.ip()));
        let forwarded = if from_proxy { forwarded_host(req.headers()) } else { None };
        let own = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
        let host = forwarded.or(own).or_else(|| req.uri().authority().map(|a| a.to_string())).unwrap_or_default();
        if !is_loopback_host(&host) {
            return Err(ApiError::new(Code::Forbidden, "open mode answers only loopback host names").into());
        }
    }
    next.call(req).await
}

/// The host a proxy says the client asked for: `host=` of the first
/// `Forwarded` element, else the first `X-Forwarded-Host`.
fn forwarded_host(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    let forwarded = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()).and_then(|v| {
        let first = v.split(',').next()?;
        first.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            key.trim().eq_ignore_ascii_case("host").then(|| value.trim().trim_matches('"').to_owned())
        })
    });
    forwarded.or_else(|| {
        let value = headers.get("x-forwarded-host")?.to_str().ok()?;
        Some(value.split(',').next()?.trim().to_owned())
    })
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_proxys_forwarded_host_is_read_from_either_header() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        let map = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            m
        };
        let host = |pairs: &[(&str, &str)]| super::forwarded_host(&map(pairs));
        assert_eq!(
            host(&[("forwarded", "for=1.2.3.4;Host=\"app.example:443\";proto=https, host=b")]),
            Some("app.example:443".into())
        );
        assert_eq!(host(&[("x-forwarded-host", "a.example, b.example")]), Some("a.example".into()));
        assert_eq!(host(&[("forwarded", "for=1.2.3.4"), ("x-forwarded-host", "c")]), Some("c".into()));
        assert_eq!(host(&[]), None);
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_other_names() {
        for host in ["localhost", "localhost:8080", "127.0.0.1:1", "127.9.9.9", "[::1]:80", "LOCALHOST"] {
            assert!(super::is_loopback_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "10.0.0.1:80", "localhost.evil.example", "[::2]:80", ""] {
            assert!(!super::is_loopback_host(host), "{host}");
        }
    }
}
