//! Thread leases (cluster mode, Postgres): one owner per thread, with a
//! fencing token. Times are the database's own (`now()`), so the nodes'
//! clocks never have to agree.
//!
//! - `acquire` takes a lease that has expired (or never existed); its
//!   epoch grows by one, so a node that held it before can be told apart.
//! - Renewals and every write of an owner are checked against the row by
//!   owner and epoch inside the batch's transaction (`check_fences`,
//!   `renew`), holding the row's lock until the commit: a node that lost
//!   its lease (paused past it, say) cannot write, whatever its memory
//!   says.
//! - `release` lets a lease lapse at once, for the next generation on any
//!   node.
//! - A lease names the answer it was taken for (`answer_id`): a node that
//!   finds it held can tell a new question's answer (the thread is busy)
//!   from one it saw end (the lease is let go as soon as the answer's
//!   final state is committed, and the node waits for that notice).
//! - `seize` takes a lease whoever holds it: only a deletion does.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError};

/// Who may write for a thread: its lease's owner and epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub thread_id: Uuid,
    pub owner: String,
    pub epoch: u64,
}

/// What `acquire_lease` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Taken, with this epoch.
    Taken(u64),
    /// Another holder's live lease, taken for `answer` (none: to end an
    /// answer its owner left, or a deletion).
    Held { owner: String, epoch: u64, answer: Option<Uuid> },
}

/// A thread's lease as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub owner: String,
    pub epoch: u64,
    /// Not expired yet.
    pub live: bool,
}

fn pg(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

impl Store {
    /// Takes `thread_id`'s lease for `owner` for `ttl_ms`, if it is free
    /// (expired or never taken), for the answer `answer` (none: to end an
    /// answer another node left): its new epoch. Else who holds it.
    pub async fn acquire_lease(
        &self,
        thread_id: Uuid,
        owner: &str,
        ttl_ms: u64,
        answer: Option<Uuid>,
    ) -> Result<Acquired, StoreError> {
        let sql = "INSERT INTO thread_leases (thread_id, owner, epoch, expires_at, answer_id) \
                   VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond', $4) \
                   ON CONFLICT (thread_id) DO UPDATE \
                   SET owner = EXCLUDED.owner, epoch = thread_leases.epoch + 1, expires_at = EXCLUDED.expires_at, \
                       answer_id = EXCLUDED.answer_id \
                   WHERE thread_leases.expires_at < now() \
                   RETURNING epoch";
        let values = vec![thread_id.into(), owner.into(), (ttl_ms as i64).into(), answer.into()];
        if let Some(row) = self.db.query_one(pg(sql, values)).await? {
            return Ok(Acquired::Taken(row.try_get::<i64>("", "epoch")? as u64));
        }
        // Held: by whom, for which answer. (It may have lapsed since; the
        // caller asks again only when it knows why.)
        let sql = "SELECT owner, epoch, answer_id FROM thread_leases WHERE thread_id = $1";
        let row = self.db.query_one(pg(sql, vec![thread_id.into()])).await?;
        Ok(match row {
            Some(r) => Acquired::Held {
                owner: r.try_get("", "owner")?,
                epoch: r.try_get::<i64>("", "epoch")? as u64,
                answer: r.try_get("", "answer_id")?,
            },
            None => Acquired::Held { owner: String::new(), epoch: 0, answer: None },
        })
    }

    /// Takes `thread_id`'s lease for `owner` whoever holds it (a deletion:
    /// the holder's later writes are refused, and there is nothing left
    /// for them to write). Its new epoch.
    pub async fn seize_lease(&self, thread_id: Uuid, owner: &str, ttl_ms: u64) -> Result<u64, StoreError> {
        let sql = "INSERT INTO thread_leases (thread_id, owner, epoch, expires_at) \
                   VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond') \
                   ON CONFLICT (thread_id) DO UPDATE \
                   SET owner = EXCLUDED.owner, epoch = thread_leases.epoch + 1, expires_at = EXCLUDED.expires_at, \
                       answer_id = NULL \
                   RETURNING epoch";
        let row = self.db.query_one(pg(sql, vec![thread_id.into(), owner.into(), (ttl_ms as i64).into()])).await?;
        let row = row.ok_or_else(|| StoreError::Corrupt("an upsert returned no row".into()))?;
        Ok(row.try_get::<i64>("", "epoch")? as u64)
    }

    /// Which of `thread_ids` have a live lease held for an answer: they
    /// are generating on some node.
    pub async fn answering(&self, thread_ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if thread_ids.is_empty() {
            return Ok(Vec::new());
        }
        let params: Vec<String> = (1..=thread_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT thread_id FROM thread_leases WHERE thread_id IN ({}) AND expires_at > now() \
             AND answer_id IS NOT NULL",
            params.join(", ")
        );
        let rows = self.db.query_all(pg(&sql, thread_ids.iter().map(|&id| id.into()).collect())).await?;
        rows.iter().map(|r| Ok(r.try_get::<Uuid>("", "thread_id")?)).collect()
    }

    /// Lets the lease of `fence` lapse now (its generation ended).
    /// `false` when `fence` did not hold it any more.
    pub async fn release_lease(&self, fence: &Fence) -> Result<bool, StoreError> {
        let sql = "UPDATE thread_leases SET expires_at = now() \
                   WHERE thread_id = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()";
        Ok(self.db.execute(pg(sql, fence_values(fence))).await?.rows_affected() == 1)
    }

    pub async fn lease_of(&self, thread_id: Uuid) -> Result<Option<LeaseInfo>, StoreError> {
        let sql = "SELECT owner, epoch, expires_at > now() AS live FROM thread_leases WHERE thread_id = $1";
        let row = self.db.query_one(pg(sql, vec![thread_id.into()])).await?;
        Ok(match row {
            Some(r) => Some(LeaseInfo {
                owner: r.try_get("", "owner")?,
                epoch: r.try_get::<i64>("", "epoch")? as u64,
                live: r.try_get("", "live")?,
            }),
            None => None,
        })
    }

    /// Threads with a message still `streaming` and no live lease: their
    /// owner died (or never was, in single-node mode); with the owner of
    /// the expired lease, if there was one.
    pub async fn orphaned_threads(&self) -> Result<Vec<(Uuid, Option<String>)>, StoreError> {
        let sql = "SELECT DISTINCT m.thread_id, l.owner FROM messages m \
                   LEFT JOIN thread_leases l ON l.thread_id = m.thread_id \
                   WHERE m.status = 'streaming' AND (l.thread_id IS NULL OR l.expires_at <= now())";
        let rows = self.db.query_all(pg(sql, vec![])).await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<Uuid>("", "thread_id")?, r.try_get::<Option<String>>("", "owner")?)))
            .collect()
    }

    /// Threads whose answer awaits input with every call answered and no
    /// live lease: the node that answered the last call stopped before the
    /// next step began.
    pub async fn unowned_due_answers(&self) -> Result<Vec<Uuid>, StoreError> {
        let sql = "SELECT DISTINCT m.thread_id FROM messages m \
                   LEFT JOIN thread_leases l ON l.thread_id = m.thread_id \
                   WHERE m.status = 'awaiting_input' AND m.calls_ready \
                   AND (l.thread_id IS NULL OR l.expires_at <= now())";
        let rows = self.db.query_all(pg(sql, vec![])).await?;
        rows.iter().map(|r| Ok(r.try_get::<Uuid>("", "thread_id")?)).collect()
    }

    /// Live leases by owner: how many threads each node owns now.
    pub async fn leases_by_owner(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let sql = "SELECT owner, count(*) AS n FROM thread_leases WHERE expires_at > now() GROUP BY owner";
        let rows = self.db.query_all(pg(sql, vec![])).await?;
        rows.iter().map(|r| Ok((r.try_get("", "owner")?, r.try_get::<i64>("", "n")? as u64))).collect()
    }

    /// Nodes whose heartbeat (`nodes.heartbeat_at`) is younger than
    /// `within_ms`.
    pub async fn live_nodes(&self, within_ms: u64) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM nodes WHERE heartbeat_at > now() - $1 * interval '1 millisecond' ORDER BY id";
        let rows = self.db.query_all(pg(sql, vec![(within_ms as i64).into()])).await?;
        rows.iter().map(|r| Ok(r.try_get::<String>("", "id")?)).collect()
    }
}

fn fence_values(fence: &Fence) -> Vec<Value> {
    vec![fence.thread_id.into(), fence.owner.clone().into(), (fence.epoch as i64).into()]
}

/// Whether `fence` still holds its thread's lease, locking the lease row
/// until the transaction ends (a taker waits for the commit).
pub(super) async fn holds<C: ConnectionTrait>(db: &C, fence: &Fence) -> Result<bool, StoreError> {
    let sql = "SELECT 1 AS held FROM thread_leases WHERE thread_id = $1 AND owner = $2 AND epoch = $3 FOR SHARE";
    Ok(db.query_one(pg(sql, fence_values(fence))).await?.is_some())
}

/// Extends `fence`'s lease by `ttl_ms` from now; `false` when it is not
/// the lease's holder any more, or the lease expired or was let go.
pub(super) async fn renew<C: ConnectionTrait>(db: &C, fence: &Fence, ttl_ms: u64) -> Result<bool, StoreError> {
    // Not past its expiry: a renewal that commits after the lease was let
    // go (its answer ended) or lapsed must not make it live again.
    let sql = "UPDATE thread_leases SET expires_at = now() + $4 * interval '1 millisecond' \
               WHERE thread_id = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()";
    let mut values = fence_values(fence);
    values.push((ttl_ms as i64).into());
    Ok(db.execute(pg(sql, values)).await?.rows_affected() == 1)
}
