//! The notification outbox: events and their deliveries.
//!
//! `record` runs inside the group commit's transaction (`apply_plain`):
//! when a message's state changes to one that reports an event
//! (`notify::event_type`), the event row and one delivery per target are
//! written with it, or not at all. In Postgres the same transaction says
//! `NOTIFY convo_outbox`, which other nodes hear only once it commits.
//!
//! The sender claims due deliveries with a lease (`claimed_until`, and a
//! `claim_token` naming the claim): a claim skips rows another node has
//! locked (`FOR UPDATE SKIP LOCKED` in Postgres) or leased, so one node
//! sends each; a node that dies mid-delivery leaves it to another once
//! its lease ends. Every attempt is recorded by its claim.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Condition, Expr, LockBehavior, LockType},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::{
    entities::{message, notification_delivery as delivery, notification_event as event, thread, webhook},
    status_name, Store, StoreError,
};
use crate::{
    domain::{new_id, Message},
    notify::{self, Attempt, Delivery, DeliveryStatus, Target, TargetKind},
};

/// The Postgres channel a committed outbox row is announced on.
pub const CHANNEL: &str = "convo_outbox";

/// Whether writing `m` moves its row to a state that reports an event (a
/// state written again, as after a retried batch, reports nothing new).
/// It asks by writing the new status where it differs: a read first would
/// open the batch's transaction as a reader, and on SQLite a reader whose
/// snapshot another connection's write (a new thread, the sender's claim)
/// made stale cannot then write (SQLITE_BUSY_SNAPSHOT, not waited out by
/// the busy timeout): the batch failed and questions were refused.
pub(super) async fn reports<C: ConnectionTrait>(db: &C, m: &Message) -> Result<bool, StoreError> {
    if notify::event_type(m).is_none() {
        return Ok(false);
    }
    let status = status_name(m.status);
    let moved = message::Entity::update_many()
        .col_expr(message::Column::Status, Expr::value(status.as_str()))
        .filter(message::Column::Id.eq(m.id))
        .filter(message::Column::Status.ne(status.as_str()))
        .exec(db)
        .await?;
    Ok(moved.rows_affected == 1)
}

/// The targets an event of `event_type` in `thread_id` goes to. Each kind
/// of target adds its own here (webhooks now; push subscriptions).
pub async fn targets<C: ConnectionTrait>(
    db: &C,
    project_id: Uuid,
    thread_id: Uuid,
    event_type: &str,
) -> Result<Vec<Target>, StoreError> {
    let hooks = webhook::Entity::find().filter(webhook::Column::ProjectId.eq(project_id)).all(db).await?;
    let mut targets: Vec<Target> = hooks
        .into_iter()
        .map(super::webhooks::from_row)
        .filter(|w| w.events.iter().any(|e| e == event_type))
        .map(|w| Target { kind: TargetKind::Webhook, id: w.id, unwatched: w.when == notify::When::Unwatched })
        .collect();
    targets.extend(super::push::targets(db, project_id, thread_id, event_type).await?);
    Ok(targets)
}

/// Writes the event `m`'s new state reports and its deliveries (none if
/// nobody asked for it), in the caller's transaction.
pub(super) async fn record<C: ConnectionTrait>(db: &C, m: &Message) -> Result<(), StoreError> {
    let Some(event_type) = notify::event_type(m) else { return Ok(()) };
    let project_id: Option<Uuid> = thread::Entity::find_by_id(m.thread_id)
        .select_only()
        .column(thread::Column::ProjectId)
        .into_tuple()
        .one(db)
        .await?;
    let Some(project_id) = project_id else { return Ok(()) };
    let targets = targets(db, project_id, m.thread_id, event_type).await?;
    if targets.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let event_id = new_id();
    let body = notify::payload(event_type, project_id, m, now);
    event::Entity::insert(event::ActiveModel {
        id: Set(event_id),
        project_id: Set(project_id),
        thread_id: Set(m.thread_id),
        message_id: Set(m.id),
        kind: Set(event_type.to_owned()),
        payload: Set(body.to_string()),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    let rows = targets.iter().map(|t| delivery::ActiveModel {
        id: Set(new_id()),
        event_id: Set(event_id),
        target_kind: Set(t.kind.as_str().to_owned()),
        target_id: Set(t.id),
        unwatched: Set(t.unwatched),
        status: Set(DeliveryStatus::Pending.as_str().to_owned()),
        attempts: Set(0),
        last_status_code: Set(None),
        next_attempt_at: Set(now),
        claimed_until: Set(None),
        claim_token: Set(None),
        attempt_log: Set("[]".to_owned()),
        created_at: Set(now),
    });
    delivery::Entity::insert_many(rows).exec_without_returning(db).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await?;
    }
    Ok(())
}

/// Pending deliveries whose time has come and that nobody holds: their
/// next attempt is due, their lease (if any) is over, and a first attempt
/// of an `unwatched` one waits `unwatched_delay` after its event.
fn due(now: DateTime<Utc>, unwatched_delay: Duration) -> Condition {
    let settled = now - chrono::Duration::from_std(unwatched_delay).unwrap_or_default();
    Condition::all()
        .add(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
        .add(delivery::Column::NextAttemptAt.lte(now))
        .add(Condition::any().add(delivery::Column::ClaimedUntil.is_null()).add(delivery::Column::ClaimedUntil.lt(now)))
        .add(
            Condition::any()
                .add(delivery::Column::Unwatched.eq(false))
                .add(delivery::Column::Attempts.gt(0))
                .add(delivery::Column::CreatedAt.lte(settled)),
        )
}

fn to_delivery(row: delivery::Model, ev: Option<&event::Model>) -> Delivery {
    Delivery {
        id: row.id,
        event_id: row.event_id,
        event_type: ev.map(|e| e.kind.clone()).unwrap_or_default(),
        project_id: ev.map(|e| e.project_id).unwrap_or_default(),
        thread_id: ev.map(|e| e.thread_id).unwrap_or_default(),
        target_kind: TargetKind::parse(&row.target_kind).unwrap_or(TargetKind::Webhook),
        target_id: row.target_id,
        unwatched: row.unwatched,
        status: DeliveryStatus::parse(&row.status),
        attempts: row.attempts.max(0) as u32,
        last_status_code: row.last_status_code.and_then(|c| u16::try_from(c).ok()),
        next_attempt_at: row.next_attempt_at,
        attempt_log: serde_json::from_str(&row.attempt_log).unwrap_or_default(),
        payload: ev.map(|e| e.payload.clone()).unwrap_or_default(),
        claim: row.claim_token,
    }
}

/// How a recorded attempt leaves its delivery.
#[derive(Debug, Clone, Copy)]
pub enum After {
    Delivered,
    /// Tried again at this time.
    Retry(DateTime<Utc>),
    Failed,
}

/// How many deliveries are pending, and when the oldest was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Depth {
    pub pending: u64,
    pub oldest: Option<DateTime<Utc>>,
}

impl Store {
    /// Woken after a commit that may have written outbox rows (and by
    /// anything else that makes a delivery due now).
    pub fn outbox_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    /// Events with their deliveries joined in.
    async fn with_events(&self, rows: Vec<delivery::Model>) -> Result<Vec<Delivery>, StoreError> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let events = match ids.is_empty() {
            true => Vec::new(),
            false => event::Entity::find().filter(event::Column::Id.is_in(ids)).all(&self.db).await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| {
                let ev = events.iter().find(|e| e.id == r.event_id);
                to_delivery(r, ev)
            })
            .collect())
    }

    /// Claims up to `limit` due deliveries for `lease`: nobody else sends
    /// them until the lease ends or an attempt is recorded.
    /// Deliveries to the targets in `busy` are left alone (this node sends
    /// as many to each as it may).
    pub async fn claim_deliveries(
        &self,
        limit: u64,
        lease: Duration,
        unwatched_delay: Duration,
        busy: &[Uuid],
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let mut query = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::Id)
            .filter(due(now, unwatched_delay))
            .filter(delivery::Column::TargetId.is_not_in(busy.iter().copied()))
            .order_by_asc(delivery::Column::NextAttemptAt)
            .limit(limit);
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let ids: Vec<Uuid> = query.into_tuple().all(&txn).await?;
        if ids.is_empty() {
            txn.commit().await?;
            return Ok(Vec::new());
        }
        let token = new_id();
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        delivery::Entity::update_many()
            .col_expr(delivery::Column::ClaimedUntil, Expr::value(until))
            .col_expr(delivery::Column::ClaimToken, Expr::value(token))
            .filter(delivery::Column::Id.is_in(ids))
            .filter(due(now, unwatched_delay))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        let rows = delivery::Entity::find().filter(delivery::Column::ClaimToken.eq(token)).all(&self.db).await?;
        self.with_events(rows).await
    }

    /// When the next delivery falls due (a pending one's next attempt, an
    /// unwatched one's first, or the end of a lease another node holds).
    /// (Those of targets in `busy` are left out: a freed slot wakes the
    /// sender for them.)
    pub async fn next_delivery_due(
        &self,
        unwatched_delay: Duration,
        busy: &[Uuid],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let pending = || {
            delivery::Entity::find()
                .filter(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
                .filter(delivery::Column::TargetId.is_not_in(busy.iter().copied()))
        };
        let first = |q: sea_orm::Select<delivery::Entity>, col: delivery::Column| async move {
            let at: Option<DateTime<Utc>> =
                q.select_only().column(col).order_by_asc(col).limit(1).into_tuple().one(&self.db).await?;
            Ok::<_, StoreError>(at)
        };
        let unclaimed = Condition::all()
            .add(delivery::Column::ClaimedUntil.is_null())
            .add(Condition::any().add(delivery::Column::Unwatched.eq(false)).add(delivery::Column::Attempts.gt(0)));
        let retry = first(pending().filter(unclaimed), delivery::Column::NextAttemptAt).await?;
        let first_unwatched = Condition::all()
            .add(delivery::Column::ClaimedUntil.is_null())
            .add(delivery::Column::Unwatched.eq(true))
            .add(delivery::Column::Attempts.eq(0));
        let unwatched = first(pending().filter(first_unwatched), delivery::Column::CreatedAt)
            .await?
            .map(|at| at + chrono::Duration::from_std(unwatched_delay).unwrap_or_default());
        let lease_end =
            first(pending().filter(delivery::Column::ClaimedUntil.is_not_null()), delivery::Column::ClaimedUntil)
                .await?;
        Ok([retry, unwatched, lease_end].into_iter().flatten().min())
    }

    /// Records an attempt of a delivery this node claimed, and what it
    /// leaves; `false` if the claim was lost meanwhile (its lease ended
    /// and another node took it).
    pub async fn record_attempt(&self, d: &Delivery, attempt: Attempt, after: After) -> Result<bool, StoreError> {
        let mut log = d.attempt_log.clone();
        log.push(attempt.clone());
        // The log keeps the newest attempts (a delivery retried by hand
        // many times does not grow without end).
        if log.len() > 50 {
            log.drain(..log.len() - 50);
        }
        let (status, next) = match after {
            After::Delivered => (DeliveryStatus::Delivered, d.next_attempt_at),
            After::Retry(at) => (DeliveryStatus::Pending, at),
            After::Failed => (DeliveryStatus::Failed, d.next_attempt_at),
        };
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(status.as_str()))
            .col_expr(delivery::Column::Attempts, Expr::value(d.attempts as i32 + 1))
            .col_expr(delivery::Column::LastStatusCode, Expr::value(attempt.status_code.map(i32::from)))
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(next))
            .col_expr(delivery::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(delivery::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
            .col_expr(
                delivery::Column::AttemptLog,
                Expr::value(serde_json::to_string(&log).expect("attempts serialize")),
            )
            .filter(delivery::Column::Id.eq(d.id))
            .filter(delivery::Column::ClaimToken.eq(d.claim))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Gives back a delivery this node claimed but will not send now.
    pub async fn release_delivery(&self, d: &Delivery) -> Result<(), StoreError> {
        delivery::Entity::update_many()
            .col_expr(delivery::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(delivery::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
            .filter(delivery::Column::Id.eq(d.id))
            .filter(delivery::Column::ClaimToken.eq(d.claim))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Drops a delivery this node claimed (its target is gone, or it was
    /// not to be sent: someone watched the thread).
    pub async fn drop_delivery(&self, d: &Delivery) -> Result<(), StoreError> {
        delivery::Entity::delete_many()
            .filter(delivery::Column::Id.eq(d.id))
            .filter(delivery::Column::ClaimToken.eq(d.claim))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A target's deliveries, newest first.
    pub async fn deliveries(&self, kind: TargetKind, target: Uuid, limit: u64) -> Result<Vec<Delivery>, StoreError> {
        let rows = delivery::Entity::find()
            .filter(delivery::Column::TargetKind.eq(kind.as_str()))
            .filter(delivery::Column::TargetId.eq(target))
            .order_by_desc(delivery::Column::CreatedAt)
            .order_by_desc(delivery::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        self.with_events(rows).await
    }

    /// A target's delivery `id`.
    pub async fn delivery(&self, kind: TargetKind, target: Uuid, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        let row = delivery::Entity::find_by_id(id)
            .filter(delivery::Column::TargetKind.eq(kind.as_str()))
            .filter(delivery::Column::TargetId.eq(target))
            .one(&self.db)
            .await?;
        Ok(self.with_events(row.into_iter().collect()).await?.pop())
    }

    /// Makes a target's delivery `id` pending and due now (sent again
    /// even if it was delivered or failed); `false` if there is none.
    pub async fn retry_delivery(&self, kind: TargetKind, target: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let now = Utc::now();
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(DeliveryStatus::Pending.as_str()))
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(now))
            // Sent now even if it waited to see whether anyone watches.
            .col_expr(delivery::Column::Unwatched, Expr::value(false))
            .filter(delivery::Column::Id.eq(id))
            .filter(delivery::Column::TargetKind.eq(kind.as_str()))
            .filter(delivery::Column::TargetId.eq(target))
            .exec(&self.db)
            .await?;
        if result.rows_affected > 0 {
            if self.db.get_database_backend() == DbBackend::Postgres {
                self.db.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await?;
            }
            self.outbox.notify_one();
        }
        Ok(result.rows_affected > 0)
    }

    /// Postgres: wakes this node's sender whenever another node commits
    /// outbox rows (LISTEN on a connection of its own, taken again after
    /// it is lost, each time with a wake for what it may have missed).
    pub fn listen_outbox(&self) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        let wake = self.outbox.clone();
        actix_rt::spawn(async move {
            loop {
                match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen(CHANNEL).await {
                        Ok(()) => {
                            wake.notify_one();
                            loop {
                                match listener.try_recv().await {
                                    Ok(Some(_)) => wake.notify_one(),
                                    Ok(None) => {
                                        // Reconnected: what was said meanwhile is lost.
                                        wake.notify_one();
                                    }
                                    Err(e) => {
                                        tracing::warn!(error.message = %e, "the outbox listener lost its connection");
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error.message = %e, "the outbox listener could not LISTEN"),
                    },
                    Err(e) => tracing::warn!(error.message = %e, "the outbox listener could not connect"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// One node (at start-up): claims a previous run of this node held
    /// are over, so what it was sending when it stopped is sent again now
    /// rather than after its lease.
    pub async fn release_claims(&self) -> Result<u64, StoreError> {
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(delivery::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
            .filter(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(delivery::Column::ClaimedUntil.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Forgets deliveries that ended (delivered or failed) before
    /// `before`, and events left with none; how many deliveries.
    pub async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let ended = delivery::Entity::delete_many()
            .filter(delivery::Column::Status.ne(DeliveryStatus::Pending.as_str()))
            .filter(delivery::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?;
        let its_deliveries = delivery::Entity::find().select_only().column(delivery::Column::EventId).filter(
            Expr::col((delivery::Entity, delivery::Column::EventId)).equals((event::Entity, event::Column::Id)),
        );
        event::Entity::delete_many()
            .filter(event::Column::CreatedAt.lt(before))
            .filter(Expr::exists(sea_orm::QueryTrait::into_query(its_deliveries)).not())
            .exec(&self.db)
            .await?;
        Ok(ended.rows_affected)
    }

    /// Pending deliveries: how many, and the oldest's time.
    pub async fn outbox_depth(&self) -> Result<Depth, StoreError> {
        let pending = || delivery::Entity::find().filter(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()));
        let count = pending().count(&self.db).await?;
        let oldest: Option<DateTime<Utc>> = pending()
            .select_only()
            .column(delivery::Column::CreatedAt)
            .order_by_asc(delivery::Column::CreatedAt)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(Depth { pending: count, oldest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::DatabaseSettings,
        domain::{Block, MessageStatus, Role, ThreadSettings, Usage},
        notify::{Webhook, When},
        store::WriteOp,
    };

    fn answer(thread_id: Uuid, status: MessageStatus) -> Message {
        Message {
            id: new_id(),
            thread_id,
            position: 1,
            role: Role::Assistant,
            blocks: vec![Block::text("é".repeat(300))],
            status,
            model: None,
            stop_reason: None,
            usage: Usage { input_tokens: 3, output_tokens: 4 },
            error: None,
            created_at: Utc::now(),
            completed_at: None,
            calls: Vec::new(),
            tools: Vec::new(),
            exact_end: false,
            continuations: 0,
            touched_at: None,
            handed_over: false,
            restart_seam: None,
        }
    }

    /// The event is written with the state it reports or not at all, once
    /// per change of state, and only for the events a webhook asked for.
    #[tokio::test]
    async fn an_event_is_written_with_its_state_in_the_same_transaction_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings {
            database_url: None,
            data_dir: dir.path().to_owned(),
            flush_interval_ms: 50,
            db_max_connections: 2,
            db_min_connections: 1,
        };
        let store = Store::connect(&settings).await.unwrap();
        let project = store.create_project("p").await.unwrap();
        let thread = store.create_thread(project.id, ThreadSettings::default()).await.unwrap();
        let hook = Webhook {
            id: new_id(),
            project_id: project.id,
            url: "https://example.com/hook".into(),
            events: vec![notify::COMPLETED.into()],
            when: When::Always,
            secret: crate::signing::new_secret(),
            created_at: Utc::now(),
        };
        store.add_webhook(&hook).await.unwrap();
        let mut m = answer(thread.id, MessageStatus::Streaming);
        store.write_batch(&[WriteOp::Insert(m.clone())]).await.unwrap();
        let claim = || store.claim_deliveries(10, Duration::from_secs(60), Duration::ZERO, &[]);

        // Awaiting input: no webhook asked for it.
        m.status = MessageStatus::AwaitingInput;
        store.write_batch(&[WriteOp::Update(m.clone())]).await.unwrap();
        assert!(claim().await.unwrap().is_empty());

        // A batch that rolls back writes no event.
        m.status = MessageStatus::Complete;
        let orphan = answer(new_id(), MessageStatus::Complete);
        let batch = [WriteOp::Update(m.clone()), WriteOp::Insert(orphan)];
        store.write_batch(&batch).await.unwrap_err();
        assert!(claim().await.unwrap().is_empty(), "a rolled-back state reports nothing");

        store.write_batch(&[WriteOp::Update(m.clone())]).await.unwrap();
        // The same state again (a batch retried) reports nothing new.
        store.write_batch(&[WriteOp::Update(m.clone())]).await.unwrap();
        let claimed = claim().await.unwrap();
        assert_eq!(claimed.len(), 1);
        let d = &claimed[0];
        assert_eq!(
            (d.target_kind, d.target_id, d.event_type.as_str()),
            (TargetKind::Webhook, hook.id, notify::COMPLETED)
        );
        let body: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
        assert_eq!(body["type"], "message.completed");
        assert_eq!(body["data"]["message_id"], m.id.to_string());
        assert_eq!(body["data"]["project_id"], project.id.to_string());
        assert_eq!(body["data"]["status"], "complete");
        assert_eq!(body["data"]["preview"].as_str().unwrap().chars().count(), 200);
        assert!(body["data"].get("pending").is_none());
        // Claimed: nobody else gets it until the lease ends.
        assert!(claim().await.unwrap().is_empty());
        assert_eq!(store.outbox_depth().await.unwrap().pending, 1);
        assert!(store
            .record_attempt(d, Attempt { at: Utc::now(), status_code: Some(200), error: None }, After::Delivered)
            .await
            .unwrap());
        assert_eq!(store.outbox_depth().await.unwrap().pending, 0);
        let listed = store.deliveries(TargetKind::Webhook, hook.id, 10).await.unwrap();
        assert_eq!(listed[0].status, DeliveryStatus::Delivered);
        assert_eq!((listed[0].attempts, listed[0].last_status_code), (1, Some(200)));

        // Pruned once past the retention: the delivery, then its event.
        assert_eq!(store.prune_outbox(Utc::now() - chrono::Duration::hours(1)).await.unwrap(), 0);
        assert_eq!(store.prune_outbox(Utc::now()).await.unwrap(), 1);
        assert!(store.deliveries(TargetKind::Webhook, hook.id, 10).await.unwrap().is_empty());
        assert_eq!(event::Entity::find().count(&store.db).await.unwrap(), 0);
    }
}
