//! Web Push: the service's VAPID private key (written once, the first
//! writer wins), and browsers' push subscriptions: added (the same
//! browser endpoint for the same thread again updates the one it has),
//! found for an event, removed by their owner or when the push service
//! says they are gone.

use sea_orm::{
    sea_query::{Condition, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::{
    entities::{push_subscription, vapid_key},
    Store, StoreError,
};
use crate::notify::{Target, TargetKind};

/// A browser's push subscription, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: Uuid,
    pub project_id: Uuid,
    /// Only this thread's events; `None`: every thread of the project.
    pub thread_id: Option<Uuid>,
    /// The push service's URL for this browser.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url (65 bytes).
    pub p256dh: String,
    /// The browser's authentication secret, base64url (16 bytes).
    pub auth: String,
    /// The event names it wants (`message.completed`, `message.awaiting`).
    pub events: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A subscription to add (checked by the caller).
#[derive(Debug, Clone)]
pub struct NewPushSubscription {
    pub project_id: Uuid,
    pub thread_id: Option<Uuid>,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub events: Vec<String>,
}

fn from_row(row: push_subscription::Model) -> PushSubscription {
    PushSubscription {
        id: row.id,
        project_id: row.project_id,
        thread_id: row.thread_id,
        endpoint: row.endpoint,
        p256dh: row.p256dh,
        auth: row.auth,
        events: serde_json::from_str(&row.events).unwrap_or_default(),
        created_at: row.created_at,
    }
}

/// The VAPID key's one row.
const VAPID_ROW: i32 = 1;

impl Store {
    /// The stored VAPID private key, or `candidate` stored as it: the first
    /// node to write wins, and every node uses what was written.
    pub async fn vapid_private_key_or(&self, candidate: &str) -> Result<String, StoreError> {
        if let Some(row) = vapid_key::Entity::find_by_id(VAPID_ROW).one(&self.db).await? {
            return Ok(row.private_key);
        }
        let row = vapid_key::ActiveModel {
            id: Set(VAPID_ROW),
            private_key: Set(candidate.to_owned()),
            created_at: Set(chrono::Utc::now()),
        };
        vapid_key::Entity::insert(row)
            .on_conflict(OnConflict::column(vapid_key::Column::Id).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        let row = vapid_key::Entity::find_by_id(VAPID_ROW).one(&self.db).await?;
        row.map(|r| r.private_key).ok_or_else(|| StoreError::Setup("the VAPID key was not stored".into()))
    }

    /// Adds a subscription; one of the same project, thread and endpoint
    /// is updated instead (a browser that subscribes again keeps one
    /// subscription). Its id.
    pub async fn add_push_subscription(&self, new: NewPushSubscription) -> Result<Uuid, StoreError> {
        let thread = match new.thread_id {
            Some(id) => push_subscription::Column::ThreadId.eq(id),
            None => push_subscription::Column::ThreadId.is_null(),
        };
        let existing = push_subscription::Entity::find()
            .filter(push_subscription::Column::ProjectId.eq(new.project_id))
            .filter(thread)
            .filter(push_subscription::Column::Endpoint.eq(new.endpoint.as_str()))
            .one(&self.db)
            .await?;
        let events = serde_json::to_string(&new.events).expect("strings serialize");
        let id = existing.as_ref().map_or_else(crate::domain::new_id, |row| row.id);
        let row = push_subscription::ActiveModel {
            id: Set(id),
            project_id: Set(new.project_id),
            thread_id: Set(new.thread_id),
            endpoint: Set(new.endpoint),
            p256dh: Set(new.p256dh),
            auth: Set(new.auth),
            events: Set(events),
            created_at: Set(existing.map_or_else(chrono::Utc::now, |row| row.created_at)),
        };
        push_subscription::Entity::insert(row)
            .on_conflict(
                OnConflict::column(push_subscription::Column::Id)
                    .update_columns([
                        push_subscription::Column::P256dh,
                        push_subscription::Column::Auth,
                        push_subscription::Column::Events,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(id)
    }

    /// The project's subscription `id`.
    pub async fn push_subscription(&self, project_id: Uuid, id: Uuid) -> Result<Option<PushSubscription>, StoreError> {
        let row = push_subscription::Entity::find_by_id(id).one(&self.db).await?;
        Ok(row.filter(|r| r.project_id == project_id).map(from_row))
    }

    /// Subscription `id`, of whichever project (the sender's look-up).
    pub async fn push_subscription_by_id(&self, id: Uuid) -> Result<Option<PushSubscription>, StoreError> {
        Ok(push_subscription::Entity::find_by_id(id).one(&self.db).await?.map(from_row))
    }

    /// Removes subscription `id` (of any project: the push service said it
    /// is gone, or its owner checked it); `false` when there is none.
    pub async fn remove_push_subscription(&self, id: Uuid) -> Result<bool, StoreError> {
        let result = push_subscription::Entity::delete_by_id(id).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    /// The subscriptions an event of `thread_id` in `project_id` named
    /// `event` goes to.
    pub async fn push_subscriptions_for(
        &self,
        project_id: Uuid,
        thread_id: Uuid,
        event: &str,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        subscriptions_for(&self.db, project_id, thread_id, event).await
    }
}

/// The subscriptions an event of `thread_id` in `project_id` named `event`
/// goes to: the thread's own and the project's, oldest first.
async fn subscriptions_for<C: ConnectionTrait>(
    db: &C,
    project_id: Uuid,
    thread_id: Uuid,
    event: &str,
) -> Result<Vec<PushSubscription>, StoreError> {
    let rows = push_subscription::Entity::find()
        .filter(push_subscription::Column::ProjectId.eq(project_id))
        .filter(
            Condition::any()
                .add(push_subscription::Column::ThreadId.eq(thread_id))
                .add(push_subscription::Column::ThreadId.is_null()),
        )
        .order_by_asc(push_subscription::Column::CreatedAt)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(from_row).filter(|s| s.events.iter().any(|e| e == event)).collect())
}

/// The outbox's push targets of an event (`outbox::targets`, in the group
/// commit's transaction): every subscription that asked for it, sent
/// whether or not the thread is watched (the person asked to be told).
pub(super) async fn targets<C: ConnectionTrait>(
    db: &C,
    project_id: Uuid,
    thread_id: Uuid,
    event: &str,
) -> Result<Vec<Target>, StoreError> {
    let subscriptions = subscriptions_for(db, project_id, thread_id, event).await?;
    Ok(subscriptions.into_iter().map(|s| Target { kind: TargetKind::Push, id: s.id, unwatched: false }).collect())
}
