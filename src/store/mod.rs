//! The store: the only module that names sea-orm. It connects (SQLite by
//! default, Postgres by URL), applies the migrations, and offers the
//! queries the service needs in domain types. Writes of the hot path go
//! through `write_batch`, one transaction for a whole group commit.

mod chats;
mod convert;
pub mod entities;
mod error;
mod history;
mod keys;
mod leases;
mod mcp_servers;
pub mod outbox;
mod push;
mod secrets;
mod webhooks;

use std::time::Duration;

use chrono::Utc;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sea_query::Expr,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
use uuid::Uuid;

pub use error::{Fault, StoreError};
pub use leases::{Acquired, Fence, LeaseInfo};
pub use push::{NewPushSubscription, PushSubscription};

use crate::{
    config::DatabaseSettings,
    domain::{new_id, Message, MessageStatus, Project, Thread, ThreadSettings},
};
use entities::{message, node, project, thread};

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// A new message row (its thread's `updated_at` moves too).
    Insert(Message),
    /// A message's newest state: every mutable column.
    Update(Message),
    /// A thread and its messages.
    DeleteThread(Uuid),
    /// A thread's title from its first question, written only if it has
    /// none (a PATCH may have given it one), with a new `updated_at`.
    Title { thread_id: Uuid, title: String, at: chrono::DateTime<Utc> },
    /// This node's row in `nodes`: a write that proves the database takes
    /// writes again (see `PersistenceActor`), and the node's heartbeat.
    Probe { node_id: String },
    /// `op`, only if `fence` still holds its thread's lease (cluster mode).
    Fenced(Fence, Box<WriteOp>),
    /// Extends `fence`'s lease by `ttl_ms`.
    Renew { fence: Fence, ttl_ms: u64 },
}

impl WriteOp {
    /// The op a fence guards, or this one.
    pub fn inner(&self) -> &WriteOp {
        match self {
            WriteOp::Fenced(_, op) => op.inner(),
            op => op,
        }
    }
}

/// What became of one op of a batch that committed.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Not written: its fence no longer holds the thread's lease.
    Fenced,
    /// Not written: the database refused it for its content (isolated
    /// batches only).
    Refused(StoreError),
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Wakes the notification sender after a commit that may have written
    /// outbox rows (`outbox`).
    outbox: std::sync::Arc<tokio::sync::Notify>,
}

impl Store {
    /// Connects and applies the migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Store, StoreError> {
        Store::connect_with(settings, None).await
    }

    /// Connects; with `lease` (cluster mode, Postgres), no session may sit
    /// in a transaction, or wait for a lock, longer than a lease: a node
    /// paused mid-transaction (a GC pause, SIGSTOP) must not hold the lease
    /// row's lock against the node that takes its place.
    pub async fn connect_with(settings: &DatabaseSettings, lease: Option<Duration>) -> Result<Store, StoreError> {
        let url = settings.url();
        if let Some(path) = sqlite_path(&url) {
            if let Some(dir) = std::path::Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(settings.db_max_connections.max(1))
            // Some connections are opened at start-up and kept: the first
            // requests after a start (or after an idle spell) do not pay for
            // opening them, a TCP connect and authentication each on
            // Postgres.
            .min_connections(settings.db_min_connections.clamp(1, settings.db_max_connections.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            // sea-orm's SQLite driver sets neither WAL nor a synchronous
            // level; WAL lets readers run beside the writer, and FULL makes
            // a commit durable, which group commit makes cheap.
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        if let Some(lease) = lease {
            let millis = lease.as_millis().to_string();
            options.map_sqlx_postgres_opts(move |o| {
                o.options([("idle_in_transaction_session_timeout", millis.as_str()), ("lock_timeout", millis.as_str())])
            });
        }
        let db = Database::connect(options).await?;
        // Several nodes may start at once on one Postgres database: one
        // migrates while the others wait (a transaction-scoped advisory
        // lock, held on one pooled connection while the pool migrates).
        let lock = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let txn = db.begin().await?;
                txn.execute_unprepared("SELECT pg_advisory_xact_lock(7406281166155523)").await?;
                Some(txn)
            }
            _ => None,
        };
        Migrator::up(&db, None).await?;
        if let Some(txn) = lock {
            txn.commit().await?;
        }
        Ok(Store { db, outbox: Default::default() })
    }

    /// The connection, for tests and checks.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    pub async fn create_project(&self, name: &str) -> Result<Project, StoreError> {
        let row = project::ActiveModel { id: Set(new_id()), name: Set(name.to_owned()), created_at: Set(Utc::now()) }
            .insert(&self.db)
            .await?;
        Ok(convert::project(row))
    }

    pub async fn get_project(&self, id: Uuid) -> Result<Option<Project>, StoreError> {
        Ok(project::Entity::find_by_id(id).one(&self.db).await?.map(convert::project))
    }

    /// Stores a new thread of `project_id` with `settings` (its title,
    /// prompt, model and tools).
    pub async fn create_thread(&self, project_id: Uuid, settings: ThreadSettings) -> Result<Thread, StoreError> {
        let now = Utc::now();
        let thread = settings.into_thread(new_id(), project_id, now);
        let row = convert::thread_row(&thread).insert(&self.db).await?;
        convert::thread(row)
    }

    /// Writes a thread's settings (a PATCH), with its new `updated_at`.
    /// Writes a thread's settings; `false` if the thread is gone (deleted
    /// while the change was on its way).
    pub async fn update_thread(&self, thread: &Thread) -> Result<bool, StoreError> {
        match convert::thread_row(thread).update(&self.db).await {
            Ok(_) => Ok(true),
            Err(sea_orm::DbErr::RecordNotUpdated) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The thread only if it belongs to that project.
    pub async fn get_thread(&self, project_id: Uuid, thread_id: Uuid) -> Result<Option<Thread>, StoreError> {
        Ok(self.find_thread(thread_id).await?.filter(|t| t.project_id == project_id))
    }

    pub async fn find_thread(&self, thread_id: Uuid) -> Result<Option<Thread>, StoreError> {
        thread::Entity::find_by_id(thread_id).one(&self.db).await?.map(convert::thread).transpose()
    }

    /// At start-up: messages a stopped process left `streaming` become
    /// `interrupted`, their text kept, with the events they report; but
    /// those `budget` still lets go on (continued by their thread's actor)
    /// stay `streaming`: their threads, and why each of the others was not
    /// continued.
    pub async fn interrupt_streaming(
        &self,
        budget: crate::domain::continuation::Budget,
    ) -> Result<(Vec<crate::domain::continuation::Refused>, Vec<Uuid>), StoreError> {
        let interrupted = crate::domain::MessageError::interrupted();
        let txn = self.db.begin().await?;
        let streaming = message::Entity::find()
            .filter(message::Column::Status.eq(status_name(MessageStatus::Streaming)))
            .all(&txn)
            .await?;
        let now = Utc::now();
        let (mut ended, mut going_on) = (Vec::new(), Vec::new());
        for row in streaming {
            let m = convert::message(row)?;
            let age = (now - m.touched_at.unwrap_or(m.created_at)).to_std().unwrap_or_default();
            match budget.next(m.continuations, age) {
                Ok(_) => going_on.push(m.thread_id),
                Err(refused) => ended.push((m, refused)),
            }
        }
        let (ended, refused): (Vec<Message>, Vec<_>) = ended.into_iter().unzip();
        let ids: Vec<Uuid> = ended.iter().map(|m| m.id).collect();
        message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(status_name(MessageStatus::Interrupted)))
            .col_expr(message::Column::CompletedAt, Expr::value(now))
            .col_expr(message::Column::ErrorCode, Expr::value(interrupted.code.as_str()))
            .col_expr(message::Column::ErrorMessage, Expr::value(interrupted.message.clone()))
            .filter(message::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
        // Their events (`message.completed`, interrupted), with the change.
        for mut m in ended {
            m.status = MessageStatus::Interrupted;
            m.error = Some(interrupted.clone());
            outbox::record(&txn, &m).await?;
        }
        txn.commit().await?;
        self.outbox.notify_one();
        Ok((refused, going_on))
    }

    /// Writes `ops` in one transaction, in order; an op whose fence lost its
    /// lease is skipped (`Outcome::Fenced`).
    pub async fn write_batch(&self, ops: &[WriteOp]) -> Result<Vec<Outcome>, StoreError> {
        let txn = self.db.begin().await?;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(apply(&txn, op).await?);
        }
        txn.commit().await?;
        self.wake_outbox(ops);
        Ok(outcomes)
    }

    /// Writes `ops` in one transaction, each inside its own savepoint: an
    /// op the database refuses for its content is rolled back alone and
    /// reported in its place, and the others commit. An error that is not
    /// about one op's content ends the whole transaction (`Err`).
    pub async fn write_isolated(&self, ops: &[WriteOp]) -> Result<Vec<Outcome>, StoreError> {
        let txn = self.db.begin().await?;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            let savepoint = txn.begin().await?;
            match apply(&savepoint, op).await {
                Ok(outcome) => {
                    savepoint.commit().await?;
                    outcomes.push(outcome);
                }
                Err(e) if e.fault() == Fault::Unavailable => return Err(e),
                Err(e) => {
                    savepoint.rollback().await?;
                    outcomes.push(Outcome::Refused(e));
                }
            }
        }
        txn.commit().await?;
        self.wake_outbox(ops);
        Ok(outcomes)
    }

    /// Wakes the notification sender if `ops` may have written outbox rows.
    fn wake_outbox(&self, ops: &[WriteOp]) {
        let reports = |op: &WriteOp| matches!(op.inner(), WriteOp::Update(m) if crate::notify::event_type(m).is_some());
        if ops.iter().any(reports) {
            self.outbox.notify_one();
        }
    }
}

pub(super) fn status_name(status: MessageStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

fn apply<'a, C: ConnectionTrait>(
    db: &'a C,
    op: &'a WriteOp,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, StoreError>> + Send + 'a>> {
    Box::pin(async move {
        match op {
            WriteOp::Fenced(fence, inner) => {
                if !leases::holds(db, fence).await? {
                    return Ok(Outcome::Fenced);
                }
                apply(db, inner).await
            }
            WriteOp::Renew { fence, ttl_ms } => {
                Ok(if leases::renew(db, fence, *ttl_ms).await? { Outcome::Done } else { Outcome::Fenced })
            }
            op => apply_plain(db, op).await.map(|()| Outcome::Done),
        }
    })
}

async fn apply_plain<C: ConnectionTrait>(db: &C, op: &WriteOp) -> Result<(), StoreError> {
    match op {
        WriteOp::Insert(m) => {
            message::Entity::insert(convert::message_row(m)).exec_without_returning(db).await?;
            thread::Entity::update_many()
                .col_expr(thread::Column::UpdatedAt, Expr::value(m.created_at))
                .filter(thread::Column::Id.eq(m.thread_id))
                .exec(db)
                .await?;
        }
        WriteOp::Update(m) => {
            // Its event, if this state reports one, in this transaction.
            let reports = outbox::reports(db, m).await?;
            let mut row = convert::message_row(m);
            // The identity columns never change.
            row.thread_id = sea_orm::ActiveValue::NotSet;
            row.position = sea_orm::ActiveValue::NotSet;
            row.role = sea_orm::ActiveValue::NotSet;
            row.created_at = sea_orm::ActiveValue::NotSet;
            message::Entity::update_many().set(row).filter(message::Column::Id.eq(m.id)).exec(db).await?;
            if reports {
                outbox::record(db, m).await?;
            }
        }
        WriteOp::DeleteThread(id) => {
            message::Entity::delete_many().filter(message::Column::ThreadId.eq(*id)).exec(db).await?;
            thread::Entity::delete_by_id(*id).exec(db).await?;
        }
        WriteOp::Title { thread_id, title, at } => {
            thread::Entity::update_many()
                .col_expr(thread::Column::Title, Expr::value(title.as_str()))
                .col_expr(thread::Column::UpdatedAt, Expr::value(*at))
                .filter(thread::Column::Id.eq(*thread_id))
                .filter(thread::Column::Title.is_null())
                .exec(db)
                .await?;
        }
        WriteOp::Probe { node_id } => {
            let now = Utc::now();
            let row = node::ActiveModel { id: Set(node_id.clone()), started_at: Set(now), heartbeat_at: Set(now) };
            node::Entity::insert(row)
                .on_conflict(
                    sea_orm::sea_query::OnConflict::column(node::Column::Id)
                        .update_column(node::Column::HeartbeatAt)
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
        WriteOp::Fenced(..) | WriteOp::Renew { .. } => unreachable!("handled by `apply`"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Block, Role, ThreadSettings, Usage};

    async fn store(dir: &std::path::Path) -> Store {
        let settings = DatabaseSettings {
            database_url: None,
            data_dir: dir.join("nested"),
            flush_interval_ms: 50,
            db_max_connections: 2,
            db_min_connections: 1,
        };
        Store::connect(&settings).await.unwrap()
    }

    /// The pool opens `--db-min-connections` at start-up, before any query
    /// asks for one.
    #[tokio::test]
    async fn the_pool_opens_its_minimum_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings {
            database_url: None,
            data_dir: dir.path().to_owned(),
            flush_interval_ms: 50,
            db_max_connections: 8,
            db_min_connections: 5,
        };
        let store = Store::connect(&settings).await.unwrap();
        let pool = store.connection().get_sqlite_connection_pool();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.size() < 5 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.size(), 5, "connections open without any query asking");
    }

    fn message(thread_id: Uuid, position: i64, status: MessageStatus) -> Message {
        Message {
            id: new_id(),
            thread_id,
            position,
            role: if position % 2 == 0 { Role::User } else { Role::Assistant },
            blocks: vec![Block::text(format!("m{position} é"))],
            status,
            model: None,
            stop_reason: None,
            usage: Usage { input_tokens: 1, output_tokens: 2 },
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

    #[tokio::test]
    async fn an_isolated_batch_sets_aside_only_the_refused_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let project = store.create_project("p").await.unwrap();
        let thread = store.create_thread(project.id, ThreadSettings::default()).await.unwrap();
        let good = message(thread.id, 0, MessageStatus::Complete);
        // Its thread does not exist: a foreign key violation.
        let orphan = message(new_id(), 0, MessageStatus::Complete);
        let mut answer = message(thread.id, 1, MessageStatus::Streaming);
        answer.error = Some(crate::domain::MessageError {
            code: crate::domain::codes::MessageErrorCode::UpstreamError,
            message: "NUL \0 inside".into(),
        });
        let ops = [WriteOp::Insert(good), WriteOp::Insert(orphan.clone()), WriteOp::Insert(answer)];
        let whole = store.write_batch(&ops).await.unwrap_err();
        assert_eq!(whole.fault(), Fault::Rejected, "{whole}");
        let results = store.write_isolated(&ops).await.unwrap();
        assert!(matches!((&results[0], &results[2]), (Outcome::Done, Outcome::Done)), "{results:?}");
        assert!(matches!(&results[1], Outcome::Refused(e) if e.fault() == Fault::Rejected));
        let all = store.all_messages(thread.id).await.unwrap();
        assert_eq!(all.len(), 2, "both rows of the thread committed");
        assert_eq!(all[1].error.as_ref().unwrap().message, "NUL \u{FFFD} inside", "NUL is stored as U+FFFD");
    }

    #[tokio::test]
    async fn sqlite_is_wal_with_full_sync_on_every_pooled_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        for _ in 0..3 {
            let mode = store
                .db
                .query_one(sea_orm::Statement::from_string(store.db.get_database_backend(), "PRAGMA journal_mode"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal");
            let sync = store
                .db
                .query_one(sea_orm::Statement::from_string(store.db.get_database_backend(), "PRAGMA synchronous"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(sync.try_get_by_index::<i32>(0).unwrap(), 2, "synchronous=FULL");
        }
        assert!(dir.path().join("nested/convo.db").exists(), "the data folder is created");
    }

    #[tokio::test]
    async fn a_batch_round_trips_and_start_up_interrupts_streaming_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let project = store.create_project("p").await.unwrap();
        let thread = store
            .create_thread(project.id, ThreadSettings { title: Some("t".into()), ..Default::default() })
            .await
            .unwrap();
        let user = message(thread.id, 0, MessageStatus::Complete);
        let mut answer = message(thread.id, 1, MessageStatus::Streaming);
        store.write_batch(&[WriteOp::Insert(user.clone()), WriteOp::Insert(answer.clone())]).await.unwrap();
        answer.blocks[0].text.push_str(" more");
        store.write_batch(&[WriteOp::Update(answer.clone())]).await.unwrap();
        let all = store.all_messages(thread.id).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].blocks, answer.blocks);
        // One continuation allowed: it stays streaming, its thread named.
        let budget = crate::domain::continuation::Budget { max_attempts: 1, max_age: Duration::from_secs(600) };
        assert_eq!(store.interrupt_streaming(budget).await.unwrap(), (vec![], vec![thread.id]));
        // Spent (or off): it ends interrupted.
        let off = crate::domain::continuation::Budget { max_attempts: 0, ..budget };
        use crate::domain::continuation::Refused;
        assert_eq!(store.interrupt_streaming(off).await.unwrap(), (vec![Refused::Off], vec![]));
        let all = store.all_messages(thread.id).await.unwrap();
        assert_eq!(all[1].status, MessageStatus::Interrupted);
        assert_eq!(all[1].blocks, answer.blocks, "text kept");
        store.write_batch(&[WriteOp::DeleteThread(thread.id)]).await.unwrap();
        assert!(store.find_thread(thread.id).await.unwrap().is_none());
        assert!(store.all_messages(thread.id).await.unwrap().is_empty());
    }
}
