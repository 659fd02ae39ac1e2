//! Storage errors. `is_unavailable` tells a database that cannot be
//! reached (answer 503, retry later) from a query that failed.

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

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(DbErr::ConnectionAcquire(_)) | StoreError::Db(DbErr::Conn(_)) => true,
            StoreError::Db(DbErr::Exec(RuntimeErr::SqlxError(e)))
            | StoreError::Db(DbErr::Query(RuntimeErr::SqlxError(e))) => matches!(
                e,
                sea_orm::sqlx::Error::Io(_)
                    | sea_orm::sqlx::Error::PoolTimedOut
                    | sea_orm::sqlx::Error::PoolClosed
                    | sea_orm::sqlx::Error::WorkerCrashed
                    | sea_orm::sqlx::Error::Tls(_)
            ),
            _ => false,
        }
    }
}
