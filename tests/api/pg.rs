//! A fresh Postgres database per test server when `TEST_DATABASE_URL` is
//! set, so servers never see each other's rows (each one marks leftover
//! `streaming` messages `interrupted` at start-up).

use sea_orm::{ConnectionTrait, Database};

/// Creates `convo_test_<uuid>` next to the database of `base` and returns
/// its URL.
pub async fn fresh_database(base: &str) -> String {
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
