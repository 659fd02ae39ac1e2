//! A fresh Postgres database per test server when `TEST_DATABASE_URL` is
//! set, so servers never see each other's rows (each one marks leftover
//! `streaming` messages `interrupted` at start-up). Runs of several
//! checkouts may share one Postgres: a run drops only old leftovers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::sync::OnceCell;

static SWEPT: OnceCell<()> = OnceCell::const_new();

/// Test databases younger than this may belong to a run going on now (of
/// another checkout, say) and are left alone.
const KEEP_RECENT: Duration = Duration::from_secs(3600);

/// Whether the test database `name` (`convo_test_<UUIDv7>`) was created
/// more than `KEEP_RECENT` ago.
fn stale(name: &str) -> bool {
    let created = name
        .strip_prefix("convo_test_")
        .and_then(|id| uuid::Uuid::try_parse(id).ok())
        .and_then(|id| id.get_timestamp())
        .map(|ts| UNIX_EPOCH + Duration::from_secs(ts.to_unix().0));
    created.is_none_or(|at| SystemTime::now().duration_since(at).is_ok_and(|age| age > KEEP_RECENT))
}

/// Drops the test databases of earlier runs, but not those of a run that
/// may be going on at the same time.
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
        let Ok(name) = row.try_get::<String>("", "datname") else { continue };
        if stale(&name) {
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
