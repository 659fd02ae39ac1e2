//! Storage errors, and what each means for its caller (`Fault`).
//!
//! The line that matters is between a database that cannot take writes
//! *now* (unreachable, locked, busy, read-only, out of connections, a
//! serialization conflict) and one that refuses *this row* for its own
//! content (a constraint, a value it cannot hold). The first passes: keep
//! the work and retry it, answer 503 meanwhile. The second does not: the
//! same row fails again however often it is retried. Anything not known
//! to be about one row's content counts as the first, so an error nobody
//! foresaw keeps data instead of dropping it.

use sea_orm::{DbErr, RuntimeErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    #[error("could not prepare the database: {0}")]
    Setup(String),
}

/// What a failed database call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The database cannot do this now; the same call may succeed later.
    Unavailable,
    /// The database refused the row for its content; retrying it
    /// unchanged fails again.
    Rejected,
    /// Not the database's doing: a bug (unreadable stored data, a type
    /// mismatch). Retrying does not help either.
    Internal,
}

impl StoreError {
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::Db(DbErr::Exec(e) | DbErr::Query(e) | DbErr::Conn(e)) => runtime_fault(e),
            StoreError::Db(DbErr::ConnectionAcquire(_)) => Fault::Unavailable,
            StoreError::Db(_) | StoreError::Corrupt(_) | StoreError::Setup(_) => Fault::Internal,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.fault() == Fault::Unavailable
    }
}

fn runtime_fault(e: &RuntimeErr) -> Fault {
    use sea_orm::sqlx::Error;
    match e {
        RuntimeErr::SqlxError(Error::Database(db)) => {
            let sqlite = db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some();
            match db.code() {
                Some(code) if refuses_content(sqlite, &code) => Fault::Rejected,
                _ => Fault::Unavailable,
            }
        }
        RuntimeErr::SqlxError(
            Error::ColumnDecode { .. }
            | Error::Decode(_)
            | Error::TypeNotFound { .. }
            | Error::ColumnNotFound(_)
            | Error::ColumnIndexOutOfBounds { .. }
            | Error::Encode(_)
            | Error::InvalidArgument(_)
            | Error::Configuration(_),
        ) => Fault::Internal,
        // I/O, TLS, protocol, pool timeouts, a crashed worker, and what
        // sea-orm reports in its own words: the database is not there now.
        _ => Fault::Unavailable,
    }
}

/// Whether a database error code says the row itself was refused:
/// Postgres SQLSTATE classes 22 (data exception: a value it cannot hold)
/// and 23 (integrity constraint violation); SQLite's primary result codes
/// TOOBIG (18), CONSTRAINT (19) and MISMATCH (20). Everything else
/// (SQLite BUSY 5, LOCKED 6, READONLY 8, IOERR 10, FULL 13; Postgres 25006
/// read-only transaction, 40001 serialization, 40P01 deadlock, 53xxx
/// resources, 57Pxx shutdown) passes.
fn refuses_content(sqlite: bool, code: &str) -> bool {
    match sqlite {
        // SQLite reports its extended result code; the primary one is the
        // low byte.
        true => code.parse::<i32>().is_ok_and(|extended| matches!(extended & 0xff, 18..=20)),
        false => code.starts_with("22") || code.starts_with("23"),
    }
}

#[cfg(test)]
mod tests {
    use super::refuses_content;

    #[test]
    fn content_refusals_are_told_from_passing_trouble() {
        // SQLite: FOREIGNKEY (787), UNIQUE (2067), NOTNULL (1299), TOOBIG.
        for code in ["787", "2067", "1299", "18", "19", "20"] {
            assert!(refuses_content(true, code), "{code}");
        }
        // SQLite: BUSY, BUSY_SNAPSHOT (517), LOCKED, READONLY, IOERR, FULL.
        for code in ["5", "517", "6", "8", "10", "13"] {
            assert!(!refuses_content(true, code), "{code}");
        }
        // Postgres: NUL in text, FK and unique violations.
        for code in ["22021", "22P05", "23503", "23505"] {
            assert!(refuses_content(false, code), "{code}");
        }
        // Postgres: read-only, serialization, deadlock, too many
        // connections, admin shutdown, cannot connect now.
        for code in ["25006", "40001", "40P01", "53300", "57P01", "57P03"] {
            assert!(!refuses_content(false, code), "{code}");
        }
    }
}
