//! Paginated reads: thread lists (newest first, by UUIDv7 id) and message
//! history (by position), plus the whole conversation a thread actor loads.

use sea_orm::{
    sea_query::{BinOper, Expr, Func, SimpleExpr},
    ColumnTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{
    convert,
    entities::{message, thread},
    Store, StoreError,
};
use crate::domain::{Message, Thread};

impl Store {
    /// Which of `thread_ids` have an answer awaiting input.
    pub async fn awaiting(&self, thread_ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if thread_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Uuid> = message::Entity::find()
            .select_only()
            .column(message::Column::ThreadId)
            .filter(message::Column::ThreadId.is_in(thread_ids.iter().copied()))
            .filter(message::Column::Status.eq(super::status_name(crate::domain::MessageStatus::AwaitingInput)))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows)
    }

    /// Threads with an answer awaiting input whose calls are all answered:
    /// its next step is due (a node stopped before it began).
    pub async fn due_to_continue(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<Uuid> = message::Entity::find()
            .select_only()
            .column(message::Column::ThreadId)
            .filter(message::Column::Status.eq(super::status_name(crate::domain::MessageStatus::AwaitingInput)))
            .filter(message::Column::CallsReady.eq(true))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows)
    }

    /// Newest first; `before` is the exclusive cursor (a thread id). The
    /// next cursor is the last id, when more rows exist. `search`: only
    /// threads whose title holds that text, in any case (`title_search`).
    pub async fn list_threads(
        &self,
        project_id: Uuid,
        limit: u64,
        before: Option<Uuid>,
        search: Option<&str>,
    ) -> Result<(Vec<Thread>, Option<Uuid>), StoreError> {
        let mut query = thread::Entity::find().filter(thread::Column::ProjectId.eq(project_id));
        if let Some(b) = before {
            query = query.filter(thread::Column::Id.lt(b));
        }
        if let Some(text) = search.filter(|t| !t.is_empty()) {
            query = query.filter(title_search(text));
        }
        let mut rows = query.order_by(thread::Column::Id, Order::Desc).limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(|r| r.id) } else { None };
        Ok((rows.into_iter().map(convert::thread).collect::<Result<_, _>>()?, next))
    }

    /// Position ascending. `before`: the `limit` messages just before that
    /// position (`has_more`: older ones exist). Otherwise from `after` (or
    /// the start) on (`has_more`: later ones exist).
    pub async fn list_messages(
        &self,
        thread_id: Uuid,
        limit: u64,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let mut query = message::Entity::find().filter(message::Column::ThreadId.eq(thread_id));
        let descending = before.is_some();
        if let Some(b) = before {
            query = query.filter(message::Column::Position.lt(b));
        }
        if let Some(a) = after {
            query = query.filter(message::Column::Position.gt(a));
        }
        let order = if descending { Order::Desc } else { Order::Asc };
        let mut rows = query.order_by(message::Column::Position, order).limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        if descending {
            rows.reverse();
        }
        let messages = rows.into_iter().map(convert::message).collect::<Result<Vec<_>, _>>()?;
        Ok((messages, more))
    }

    /// Every message of the thread, position ascending.
    pub async fn all_messages(&self, thread_id: Uuid) -> Result<Vec<Message>, StoreError> {
        message::Entity::find()
            .filter(message::Column::ThreadId.eq(thread_id))
            .order_by(message::Column::Position, Order::Asc)
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::message)
            .collect()
    }
}

/// The escape character of `title_search`'s pattern: not a backslash,
/// which the two databases' string literals treat differently.
const LIKE_ESCAPE: char = '!';

/// The LIKE pattern that finds `text` anywhere, its own `%`, `_` and
/// escape characters matching themselves.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `LOWER(title) LIKE LOWER(pattern) ESCAPE '!'`: the title holds `text`,
/// case aside, on SQLite and Postgres alike (the same SQL; `LOWER` folds
/// ASCII letters on SQLite, every letter on Postgres). An untitled thread
/// never matches.
fn title_search(text: &str) -> SimpleExpr {
    let title = SimpleExpr::from(Func::lower(Expr::col((thread::Entity, thread::Column::Title))));
    let pattern = SimpleExpr::from(Func::lower(Expr::val(contains_pattern(text))));
    let escaped =
        SimpleExpr::Binary(Box::new(pattern), BinOper::Escape, Box::new(SimpleExpr::Constant(LIKE_ESCAPE.into())));
    SimpleExpr::Binary(Box::new(title), BinOper::Like, Box::new(escaped))
}

#[cfg(test)]
mod tests {
    use sea_orm::{sea_query::PostgresQueryBuilder, sea_query::Query, sea_query::SqliteQueryBuilder};

    use super::*;

    #[test]
    fn a_search_escapes_the_patterns_own_characters() {
        assert_eq!(contains_pattern("50% of a_b!"), "%50!% of a!_b!!%");
        assert_eq!(contains_pattern("plain"), "%plain%");
    }

    #[test]
    fn a_search_is_the_same_sql_on_both_databases() {
        let query =
            Query::select().column(thread::Column::Id).from(thread::Entity).and_where(title_search("a%")).to_owned();
        let (sqlite, values) = query.build(SqliteQueryBuilder);
        assert!(sqlite.contains(r#"LOWER("threads"."title") LIKE LOWER(?) ESCAPE '!'"#), "{sqlite}");
        assert_eq!(values.0.len(), 1, "the text is a bound value, never SQL");
        let (postgres, _) = query.build(PostgresQueryBuilder);
        assert!(postgres.contains(r#"LOWER("threads"."title") LIKE LOWER($1) ESCAPE '!'"#), "{postgres}");
    }
}
