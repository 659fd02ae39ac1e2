//! A fresh Postgres database per test server when `TEST_DATABASE_URL` is
//! set, so servers never see each other's rows (each one marks leftover
//! `streaming` messages `interrupted` at start-up).

use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::sync::OnceCell;

static SWEPT: OnceCell<()> = OnceCell::const_new();

/// Drops the test databases of earlier runs (test binaries run one at a
/// time, so none of them is in use).
async fn sweep(base: &str) {
    let admin = Database::connect(base).await.expect("TEST_DATABASE_URL is reachable");
    let rows = admin
        .query_all(Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'convo_test_%'",
        ))
        .await
        .unwrap_or_default();
    for row in rows {
        if let Ok(name) = row.try_get::<String>("", "datname") {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
    let _ = admin.close().await;
}

/// Creates `convo_test_<uuid>` next to the database of `base` and returns
/// its URL.
pub async fn fresh_database(base: &str) -> String {
    SWEPT.get_or_init(|| sweep(base)).await;
    let name = format!("convo_test_{}", uuid::Uuid::now_v7().simple());
    let admin = Database::connect(base).await.expect("TEST_DATABASE_URL is reachable");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
    let _ = admin.close().await;
    let (prefix, query) = match base.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (base, String::new()),
    };
    let root = prefix.rsplit_once('/').map(|(r, _)| r).unwrap_or(prefix);
    format!("{root}/{name}{query}")
}
