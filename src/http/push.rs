//! Web Push from the page: `GET /v1/push/public-key` (public: a browser
//! needs the VAPID key before it subscribes, and it is no secret),
//! `POST /v1/projects/{pid}/push-subscriptions` stores a browser's
//! `PushSubscription` (its JSON as `pushManager.subscribe` gives it, with
//! `thread_id?` and `events?`), `DELETE …/push-subscriptions/{id}` removes
//! one. A thread's stream token opens both for that thread's
//! subscriptions (a secured page's tab holds one). Web Push is off until
//! the operator sets `--vapid-subject`: the key and new subscriptions
//! then answer 404 `not_found`, saying so.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{auth::Caller, AppState};
use crate::{
    error::{ApiError, Code},
    notify::{push, AWAITING, COMPLETED, EVENT_TYPES},
    store::NewPushSubscription,
};

/// The longest endpoint URL taken.
const MAX_ENDPOINT: usize = 2000;

fn push_off() -> ApiError {
    ApiError::new(Code::NotFound, "Web Push is off on this service: the operator has not set --vapid-subject")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PublicKey {
    /// The VAPID public key: base64url of the uncompressed P-256 point (65
    /// bytes), the `applicationServerKey` of `pushManager.subscribe`. The
    /// same across restarts and on every node.
    key: String,
}

#[utoipa::path(get, path = "/v1/push/public-key", tag = "notifications",
    responses((status = 200, description = "The VAPID public key", body = PublicKey),
        (status = 404, description = "Web Push is off (no `--vapid-subject`)")))]
pub async fn public_key(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let push = state.push.as_ref().ok_or_else(push_off)?;
    Ok(HttpResponse::Ok().json(PublicKey { key: push.public_key().to_owned() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key: base64url of 65 bytes.
    p256dh: String,
    /// The browser's authentication secret: base64url of 16 bytes.
    auth: String,
}

/// A browser's `PushSubscription.toJSON()`, and what it is for.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// The push service's URL for this browser (https, and no inside
    /// address, unless `--allow-private-urls`).
    #[schema(min_length = 1, max_length = 2000)]
    endpoint: String,
    keys: SubscriptionKeys,
    /// Part of the browser's JSON; not used.
    #[serde(default, rename = "expirationTime")]
    #[allow(dead_code)]
    expiration_time: Option<f64>,
    /// Only this thread's events (it must be a thread of the project);
    /// default: every thread of the project. A stream token must name it.
    #[serde(default)]
    thread_id: Option<Uuid>,
    /// Which events (default: both).
    #[serde(default)]
    #[schema(min_items = 1)]
    events: Option<Vec<EventName>>,
}

/// An event a push subscription may ask for.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
enum EventName {
    /// An answer ended.
    #[serde(rename = "message.completed")]
    Completed,
    /// An answer waits for tool results or approvals.
    #[serde(rename = "message.awaiting")]
    Awaiting,
}

impl EventName {
    fn as_str(self) -> &'static str {
        match self {
            EventName::Completed => COMPLETED,
            EventName::Awaiting => AWAITING,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Created {
    id: Uuid,
}

/// The events asked for: at least one, each once, in `EVENT_TYPES`' order.
fn events_of(events: Option<Vec<EventName>>) -> Result<Vec<String>, ApiError> {
    let Some(asked) = events else { return Ok(EVENT_TYPES.iter().map(|e| e.to_string()).collect()) };
    if asked.is_empty() {
        return Err(ApiError::bad_request("`events` must name at least one event"));
    }
    let asked: Vec<&str> = asked.iter().map(|e| e.as_str()).collect();
    Ok(EVENT_TYPES.iter().filter(|e| asked.contains(e)).map(|e| e.to_string()).collect())
}

/// A stream token opens only its own thread's subscriptions.
fn token_opens(req: &HttpRequest, thread_id: Option<Uuid>) -> Result<(), ApiError> {
    match super::auth::caller_of(req) {
        Some(Caller::Stream { thread, .. }) if Some(thread) != thread_id => {
            Err(ApiError::new(Code::Unauthorized, "a stream token opens only push subscriptions of its own thread"))
        }
        _ => Ok(()),
    }
}

#[utoipa::path(post, path = "/v1/projects/{pid}/push-subscriptions", tag = "notifications",
    params(("pid" = Uuid, Path, description = "Project id")), request_body = NewSubscription,
    responses((status = 201, description = "Stored (the same endpoint for the same thread again: the same id)", body = Created)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn subscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<NewSubscription>,
) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    let NewSubscription { endpoint, keys, thread_id, events, .. } = body.into_inner();
    token_opens(&req, thread_id)?;
    state.push.as_ref().ok_or_else(push_off)?;
    let events = events_of(events)?;
    if endpoint.len() > MAX_ENDPOINT {
        return Err(ApiError::bad_request(format!("`endpoint` is longer than {MAX_ENDPOINT} bytes")));
    }
    push::browser_key(&keys.p256dh).map_err(|e| ApiError::bad_request(e.to_string()))?;
    push::browser_auth(&keys.auth).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .deps
        .settings
        .outbound
        .guard()
        .check_url_resolved(&endpoint)
        .await
        .map_err(|refused| ApiError::bad_request(format!("`endpoint`: {refused}")))?;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    if let Some(thread_id) = thread_id {
        state.store.get_thread(project_id, thread_id).await?.ok_or_else(|| ApiError::not_found("thread"))?;
    }
    let new = NewPushSubscription { project_id, thread_id, endpoint, p256dh: keys.p256dh, auth: keys.auth, events };
    let id = state.store.add_push_subscription(new).await?;
    tracing::info!(subscription = %id, "a push subscription was stored");
    Ok(HttpResponse::Created().json(Created { id }))
}

#[utoipa::path(delete, path = "/v1/projects/{pid}/push-subscriptions/{id}", tag = "notifications",
    params(("pid" = Uuid, Path, description = "Project id"), ("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 204, description = "Removed: nothing more is pushed to it")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn unsubscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, id) = path.into_inner();
    let subscription =
        state.store.push_subscription(project_id, id).await?.ok_or_else(|| ApiError::not_found("push subscription"))?;
    token_opens(&req, subscription.thread_id)?;
    state.store.remove_push_subscription(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_both_and_unknown_ones_are_refused() {
        assert_eq!(events_of(None).unwrap(), ["message.completed", "message.awaiting"]);
        let twice = Some(vec![EventName::Awaiting, EventName::Awaiting]);
        assert_eq!(events_of(twice).unwrap(), ["message.awaiting"]);
        assert!(events_of(Some(vec![])).is_err());
        let unknown = serde_json::from_str::<NewSubscription>(
            r#"{"endpoint": "https://a.example/", "keys": {"p256dh": "", "auth": ""}, "events": ["message.created"]}"#,
        );
        assert!(unknown.is_err());
    }
}
