//! A project's webhooks (API.md, "Notifications"): `POST
//! /v1/projects/{pid}/webhooks` adds one (`{url, events, when?}`; the URL
//! passes the outbound guard; the answer shows its signing secret, once),
//! `GET` lists them, `DELETE …/webhooks/{id}` removes one with its
//! deliveries. `…/webhooks/{id}/deliveries` is its delivery log, newest
//! first; `…/deliveries/{did}` one delivery with its attempts; `POST
//! …/deliveries/{did}/retry` sends it again now.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use crate::{
    domain::new_id,
    error::ApiError,
    notify::{Attempt, Delivery, DeliveryStatus, TargetKind, Webhook, When, EVENT_TYPES},
};

/// The event types a webhook may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "message.completed")]
    #[schema(rename = "message.completed")]
    Completed,
    #[serde(rename = "message.awaiting")]
    #[schema(rename = "message.awaiting")]
    Awaiting,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Completed => EVENT_TYPES[0],
            EventType::Awaiting => EVENT_TYPES[1],
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed (https, and no inside address, unless
    /// `--allow-private-urls`).
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*$")]
    url: String,
    /// The events it is sent: `message.completed` (an answer ended),
    /// `message.awaiting` (an answer waits for tool results or approvals).
    #[schema(min_items = 1)]
    events: Vec<EventType>,
    /// `always` (default), or `unwatched`: only if nobody watches the
    /// thread `--notify-unwatched-delay-ms` after the event.
    #[serde(default)]
    when: When,
}

/// A webhook as listed (its secret is shown only when it is created).
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    id: Uuid,
    url: String,
    events: Vec<String>,
    when: When,
    created_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView { id: w.id, url: w.url.clone(), events: w.events.clone(), when: w.when, created_at: w.created_at }
    }
}

/// A new webhook, with the secret that signs its deliveries.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookView,
    /// `whsec_…`: verifies the `webhook-signature` of every delivery
    /// (Standard Webhooks). Shown once.
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct WebhookList {
    data: Vec<WebhookView>,
}

/// One delivery of an event to a webhook.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    id: Uuid,
    /// The event's id: the `webhook-id` of every attempt.
    event_id: Uuid,
    /// `message.completed` or `message.awaiting`.
    #[serde(rename = "type")]
    event_type: String,
    status: DeliveryStatus,
    attempts: u32,
    /// The receiver's status code of the last attempt, if it answered.
    last_status_code: Option<u16>,
    /// When it is tried next (`null` unless pending).
    next_attempt_at: Option<DateTime<Utc>>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at),
        }
    }
}

/// A delivery with its attempts, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryView,
    attempt_log: Vec<Attempt>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryList {
    data: Vec<DeliveryView>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many, newest first (1 to 100; default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

#[utoipa::path(post, path = "/v1/projects/{pid}/webhooks", tag = "notifications", params(("pid" = Uuid, Path, description = "Project id")), request_body = NewWebhook,
    responses((status = 201, description = "The webhook, with its signing secret (shown once)", body = CreatedWebhook)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn add(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<NewWebhook>,
) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    let NewWebhook { url, events, when } = body.into_inner();
    if events.is_empty() {
        return Err(ApiError::bad_request(format!("`events` must name at least one of {}", EVENT_TYPES.join(", "))));
    }
    let mut names: Vec<String> = Vec::new();
    for e in events {
        if !names.iter().any(|n| n == e.as_str()) {
            names.push(e.as_str().to_owned());
        }
    }
    state
        .deps
        .settings
        .outbound
        .guard()
        .check_url_resolved(&url)
        .await
        .map_err(|refused| ApiError::bad_request(format!("`url`: {refused}")))?;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let hook = Webhook {
        id: new_id(),
        project_id,
        url,
        events: names,
        when,
        secret: crate::signing::new_secret(),
        created_at: Utc::now(),
    };
    state.store.add_webhook(&hook).await?;
    tracing::info!(webhook_id = %hook.id, "a webhook was added");
    Ok(HttpResponse::Created().json(CreatedWebhook { webhook: WebhookView::from(&hook), secret: hook.secret }))
}

#[utoipa::path(get, path = "/v1/projects/{pid}/webhooks", tag = "notifications", params(("pid" = Uuid, Path, description = "Project id")),
    responses((status = 200, description = "The project's webhooks, oldest first (no secrets)", body = WebhookList)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn list(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    state.store.get_project(*path).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let hooks = state.store.webhooks(*path).await?;
    Ok(HttpResponse::Ok().json(WebhookList { data: hooks.iter().map(WebhookView::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/projects/{pid}/webhooks/{id}", tag = "notifications", params(("pid" = Uuid, Path, description = "Project id"), ("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 204, description = "Removed, with its deliveries")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn remove(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let (project_id, id) = path.into_inner();
    match state.store.remove_webhook(project_id, id).await? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::not_found("webhook")),
    }
}

/// The project's webhook, or 404.
async fn webhook_of(state: &AppState, project_id: Uuid, id: Uuid) -> Result<Webhook, ApiError> {
    state.store.webhook(project_id, id).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

#[utoipa::path(get, path = "/v1/projects/{pid}/webhooks/{id}/deliveries", tag = "notifications",
    params(("pid" = Uuid, Path, description = "Project id"), ("id" = Uuid, Path, description = "Webhook id"), DeliveriesQuery),
    responses((status = 200, description = "Its deliveries, newest first", body = DeliveryList)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn deliveries(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, id) = path.into_inner();
    let limit = super::clamp_limit(query.limit, 20, 100)?;
    let hook = webhook_of(&state, project_id, id).await?;
    let rows = state.store.deliveries(TargetKind::Webhook, hook.id, limit).await?;
    Ok(HttpResponse::Ok().json(DeliveryList { data: rows.iter().map(DeliveryView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/projects/{pid}/webhooks/{id}/deliveries/{did}", tag = "notifications",
    params(("pid" = Uuid, Path, description = "Project id"), ("id" = Uuid, Path, description = "Webhook id"), ("did" = Uuid, Path, description = "Delivery id")),
    responses((status = 200, description = "The delivery and its attempts", body = DeliveryDetail)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn delivery(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, id, did) = path.into_inner();
    let hook = webhook_of(&state, project_id, id).await?;
    let d = state
        .store
        .delivery(TargetKind::Webhook, hook.id, did)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(HttpResponse::Ok().json(DeliveryDetail { delivery: DeliveryView::from(&d), attempt_log: d.attempt_log }))
}

#[utoipa::path(post, path = "/v1/projects/{pid}/webhooks/{id}/deliveries/{did}/retry", tag = "notifications",
    params(("pid" = Uuid, Path, description = "Project id"), ("id" = Uuid, Path, description = "Webhook id"), ("did" = Uuid, Path, description = "Delivery id")),
    responses((status = 202, description = "Pending again, and sent now")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn retry(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let (project_id, id, did) = path.into_inner();
    let hook = webhook_of(&state, project_id, id).await?;
    match state.store.retry_delivery(TargetKind::Webhook, hook.id, did).await? {
        true => Ok(HttpResponse::Accepted().finish()),
        false => Err(ApiError::not_found("delivery")),
    }
}
