//! Notifications: telling a project's back end (webhooks) and people who
//! closed the tab (Web Push) that an answer ended or waits for someone.
//!
//! - The **outbox** (`store::outbox`): when an assistant message reaches
//!   `complete`, `failed`, `cancelled` or `interrupted`
//!   (`message.completed`) or `awaiting_input` (`message.awaiting`), its
//!   event and one delivery per matching target are written in the same
//!   transaction as that state (the persistence actor's group commit), so
//!   a crash after the commit loses none and a rolled-back commit sends
//!   none.
//! - The **sender** (`sender`): one task per node that claims due
//!   deliveries (a lease, so in cluster mode one node sends each), sends
//!   them concurrently through the channel of their target kind, records
//!   every attempt and schedules the next with backoff and jitter. A new
//!   row wakes it at once (in the process; across nodes by Postgres
//!   LISTEN/NOTIFY); retries wait on timers; nothing polls.
//! - **Channels**, one per target kind, behind `Channel`: `webhook`
//!   (Standard Webhooks, signed with the webhook's secret); Web Push adds
//!   its own.
//!
//! This file holds the types they share: the events, the payload, a
//! delivery as the sender sees it, and the backoff.

pub mod push;
pub mod sender;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::{Message, MessageStatus, Role};

/// An answer ended (`complete`, `failed`, `cancelled`, `interrupted`).
pub const COMPLETED: &str = "message.completed";
/// An answer waits for tool results or approvals.
pub const AWAITING: &str = "message.awaiting";
/// Every event type a target may ask for.
pub const EVENT_TYPES: [&str; 2] = [COMPLETED, AWAITING];

/// Characters of the answer's text in `preview`.
const PREVIEW_CHARS: usize = 200;
/// A pending call's input larger than this (as JSON) is left out.
const MAX_PENDING_INPUT: usize = 1024;

/// When a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Every event.
    #[default]
    Always,
    /// Only if nobody watches the thread `--notify-unwatched-delay-ms`
    /// after the event.
    Unwatched,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Always => "always",
            When::Unwatched => "unwatched",
        }
    }

    pub fn parse(s: &str) -> Option<When> {
        match s {
            "always" => Some(When::Always),
            "unwatched" => Some(When::Unwatched),
            _ => None,
        }
    }
}

/// A project's webhook, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub when: When,
    /// Signs every delivery (`whsec_…`); shown once, when it is created.
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// What a delivery goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Webhook,
    Push,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Webhook => "webhook",
            TargetKind::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<TargetKind> {
        match s {
            "webhook" => Some(TargetKind::Webhook),
            "push" => Some(TargetKind::Push),
            _ => None,
        }
    }
}

/// One target of a new event (`store::outbox::targets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub id: Uuid,
    /// Sent only if nobody watches the thread after the delay.
    pub unwatched: bool,
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> DeliveryStatus {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The receiver's status code, if it answered.
    pub status_code: Option<u16>,
    /// Why it did not count (a status that is not 2xx, a time-out, a
    /// refused address); `null` when delivered.
    pub error: Option<String>,
}

/// A delivery as the sender (and the routes) see it, with its event.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    /// The event's id: the `webhook-id` of every attempt.
    pub event_id: Uuid,
    /// The event type (`message.completed`, `message.awaiting`).
    pub event_type: String,
    pub project_id: Uuid,
    pub thread_id: Uuid,
    pub target_kind: TargetKind,
    pub target_id: Uuid,
    pub unwatched: bool,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub next_attempt_at: DateTime<Utc>,
    pub attempt_log: Vec<Attempt>,
    /// The body every attempt sends (JSON).
    pub payload: String,
    /// The claim this node holds on it while sending.
    pub claim: Option<Uuid>,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The receiver took it (a 2xx).
    Delivered { status_code: u16 },
    /// Not taken: tried again later, until the last attempt.
    Failed { status_code: Option<u16>, error: String },
    /// Its target is gone (a webhook deleted, a push subscription the push
    /// service forgot): the delivery is dropped.
    Gone,
}

/// Sends deliveries of one target kind: the seam between the sender and
/// a transport (`webhook::WebhookChannel`; Web Push adds its own). Called
/// on the sender's task, once per attempt; it must end within the
/// notification time-out. (`Send`: the sender is built on the app's
/// thread and runs on a thread of its own.)
pub trait Channel: Send {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> LocalBoxFuture<'a, Sent>;
}

/// The event type a message's state reports, if it reports one: an
/// assistant's answer that ended, or that waits for someone.
pub fn event_type(message: &Message) -> Option<&'static str> {
    if message.role != Role::Assistant {
        return None;
    }
    match message.status {
        MessageStatus::Complete | MessageStatus::Failed | MessageStatus::Cancelled | MessageStatus::Interrupted => {
            Some(COMPLETED)
        }
        MessageStatus::AwaitingInput => Some(AWAITING),
        MessageStatus::Streaming => None,
    }
}

/// The body of an event (the same for every target): `{type, timestamp,
/// data: {project_id, thread_id, message_id, status, stop_reason, usage,
/// error, pending?, preview}}`.
pub fn payload(event_type: &str, project_id: Uuid, message: &Message, at: DateTime<Utc>) -> Value {
    let preview: String = message.content().chars().take(PREVIEW_CHARS).collect();
    let mut data = json!({
        "project_id": project_id,
        "thread_id": message.thread_id,
        "message_id": message.id,
        "status": message.status,
        "stop_reason": message.stop_reason,
        "usage": message.usage,
        "error": message.error,
        "preview": preview,
    });
    if message.status == MessageStatus::AwaitingInput {
        let pending: Vec<Value> = message
            .pending()
            .into_iter()
            .map(|call| {
                let mut v = serde_json::to_value(&call).unwrap_or(Value::Null);
                let large = serde_json::to_string(&call.input).map_or(true, |s| s.len() > MAX_PENDING_INPUT);
                if large {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("input");
                    }
                }
                v
            })
            .collect();
        data["pending"] = Value::Array(pending);
    }
    json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
}

/// Retry timing: the wait before the attempt after `attempts` failed ones.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// `min` doubled for each attempt after the first, at most `max`, then
    /// jittered to between half and all of it (so receivers that came back
    /// are not hit by every sender at once).
    pub fn wait(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let full = self.min.saturating_mul(1u32 << doublings).min(self.max.max(self.min));
        let mut byte = [0u8; 2];
        let _ = getrandom::getrandom(&mut byte);
        let fraction = 0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0;
        full.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let b = Backoff { min: Duration::from_secs(10), max: Duration::from_secs(100) };
        for _ in 0..50 {
            let first = b.wait(1);
            assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10), "{first:?}");
            let third = b.wait(3);
            assert!(third >= Duration::from_secs(20) && third <= Duration::from_secs(40), "{third:?}");
            let late = b.wait(40);
            assert!(late >= Duration::from_secs(50) && late <= Duration::from_secs(100), "{late:?}");
        }
    }

    #[test]
    fn the_defaults_span_about_a_day() {
        // --notify-max-attempts 12, --notify-retry-min-ms 60 s, max 12 h.
        let b = Backoff { min: Duration::from_secs(60), max: Duration::from_secs(12 * 3600) };
        let full: Duration = (1..12).map(|n| b.min.saturating_mul(1 << (n - 1)).min(b.max)).sum();
        assert!(full > Duration::from_secs(24 * 3600) && full < Duration::from_secs(36 * 3600), "{full:?}");
    }
}
