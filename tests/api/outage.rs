//! Databases that stop taking writes: Postgres behind a proxy the test
//! unplugs, a Postgres database turned read-only, a SQLite file another
//! process holds locked. Each time live streaming goes on, readiness
//! fails, new messages and threads get 503, and every byte that was
//! accepted lands once the database takes writes again. The Postgres ones
//! need `TEST_DATABASE_URL` (CI always sets it).

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use serde_json::json;
use tokio::{net::TcpListener, task::AbortHandle};

use crate::support::{error_code, eventually, Events as _, Server, Transcript};

/// A TCP proxy to Postgres that can be unplugged and plugged back.
#[derive(Clone)]
pub(crate) struct Plug {
    pub(crate) port: u16,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Plug {
    pub(crate) async fn start(target: String) -> Plug {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plug = Plug {
            port: listener.local_addr().unwrap().port(),
            down: Arc::new(AtomicBool::new(false)),
            links: Arc::new(Mutex::new(Vec::new())),
        };
        let p = plug.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if p.down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                p.links.lock().unwrap().push(link.abort_handle());
            }
        });
        plug
    }

    pub(crate) fn unplug(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub(crate) fn plug_in(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[actix_web::test]
async fn a_database_outage_does_not_stop_streaming_or_lose_accepted_writes() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: set TEST_DATABASE_URL to run the database outage test");
        return;
    };
    let direct = crate::pg::fresh_database(&base).await;
    // postgres://user@host:port/db → the same through the plug.
    let host_port = direct.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    let plug = Plug::start(host_port.clone()).await;
    let proxied = direct.replacen(&host_port, &format!("127.0.0.1:{}", plug.port), 1);
    let server = Server::start(&proxied, &["--sim-chunks", "150", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let mut sse = server.sse(&thread, None).await;
    let id = server.ask(&thread, "keep streaming").await;
    let mut t = Transcript::default();
    t.apply_all(&sse.until("message.delta").await);

    plug.unplug();
    let readiness = server.client.get(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(error_code(readiness).await, (503, "unavailable".to_owned()));
    // Subscribers keep getting the answer while the database is away.
    t.apply_all(&sse.until("message.completed").await);
    assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
    // A new message is refused, not accepted and lost.
    let r = server
        .client
        .post(format!("{}{thread}/messages", server.base))
        .json(&json!({"content": "now?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (503, "unavailable".to_owned()));

    plug.plug_in();
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    t.assert_matches(&stored);
    eventually(|| async { (ready(&server).await == 200).then_some(()) }).await;
    let messages = server.messages(&thread).await;
    assert_eq!(messages.len(), 2, "the refused message was not stored");
    let next = server.ask(&thread, "back").await;
    assert_eq!(server.finished(&thread, &next).await["status"], "complete");
}

/// Message `id` as its row in the database says: `status` and `blocks`.
async fn stored_message(db_url: &str, id: &str) -> serde_json::Value {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(db_url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT status, CAST(blocks AS TEXT) AS blocks FROM messages WHERE id = $1",
        _ => "SELECT status, CAST(blocks AS TEXT) AS blocks FROM messages WHERE id = ?",
    };
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    let row = db.query_one(Statement::from_sql_and_values(backend, sql, [uuid.into()])).await.unwrap().unwrap();
    let blocks: serde_json::Value = serde_json::from_str(&row.try_get::<String>("", "blocks").unwrap()).unwrap();
    let _ = db.close().await;
    json!({"id": id, "status": row.try_get::<String>("", "status").unwrap(), "blocks": blocks})
}

/// `/readyz`'s status.
async fn ready(server: &Server) -> u16 {
    server.client.get(format!("{}/readyz", server.base)).send().await.unwrap().status().as_u16()
}

/// POSTs `body` to `path`; the status and error code.
async fn refused(server: &Server, path: &str, body: serde_json::Value) -> (u16, String) {
    let r = server.client.post(format!("{}{path}", server.base)).json(&body).send().await.unwrap();
    error_code(r).await
}

/// Answers streaming on `n` threads while the database refuses writes
/// (`refuse` makes it so, `allow` undoes it): each subscriber gets its
/// whole answer, readiness, new messages and new threads answer 503, and
/// once writes go through again every answer is stored whole and
/// `complete`, and the service takes new messages.
async fn answers_survive(
    server: &Server,
    db_url: &str,
    n: usize,
    refuse: impl AsyncFnOnce(),
    allow: impl AsyncFnOnce(),
) {
    let spare = server.thread().await;
    let project = spare.split("/threads/").next().unwrap().to_owned();
    let mut streams = Vec::new();
    for i in 0..n {
        let thread = server.thread().await;
        let mut sse = server.sse(&thread, None).await;
        let id = server.ask(&thread, &format!("answer {i} while the database is away")).await;
        let mut t = Transcript::default();
        t.apply_all(&sse.until("message.delta").await);
        streams.push((thread, sse, id, t));
    }
    refuse().await;
    eventually(|| async { (ready(server).await == 503).then_some(()) }).await;
    assert_eq!(refused(server, &format!("{spare}/messages"), json!({"content": "now?"})).await.0, 503);
    assert_eq!(refused(server, &format!("{project}/threads"), json!({})).await, (503, "unavailable".to_owned()));
    for (_, sse, id, t) in &mut streams {
        t.apply_all(&sse.until("message.completed").await);
        assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())], "the answer went on");
    }
    allow().await;
    eventually(|| async { (ready(server).await == 200).then_some(()) }).await;
    for (_, _, id, t) in &streams {
        // Read from the database itself: history would show the live
        // actor's copy.
        let stored = eventually(|| async {
            let row = stored_message(db_url, id).await;
            (row["status"] == "complete").then_some(row)
        })
        .await;
        t.assert_matches(&stored);
    }
    assert_eq!(server.messages(&spare).await.len(), 0, "the refused message was not stored");
    let next = server.ask(&spare, "back").await;
    assert_eq!(server.finished(&spare, &next).await["status"], "complete");
    // Nothing is left behind in the queue.
    eventually(|| async { (server.get_json("/admin/stats").await["persistence"]["queue_depth"] == 0).then_some(()) })
        .await;
}

#[actix_web::test]
async fn a_sqlite_file_locked_by_another_process_loses_no_accepted_byte() {
    use sea_orm::sqlx::{Connection, Executor};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/locked.db?mode=rwc", dir.path().display());
    let server = Server::start(&url, &["--sim-chunks", "600", "--sim-interval-ms", "10"]).await;
    let lock = Arc::new(tokio::sync::Mutex::new(sea_orm::sqlx::SqliteConnection::connect(&url).await.unwrap()));
    let (take, give) = (lock.clone(), lock.clone());
    answers_survive(
        &server,
        &url,
        3,
        async move || {
            // What `sqlite3 file 'BEGIN EXCLUSIVE'` in another process does:
            // every writer waits out its busy timeout, then gets SQLITE_BUSY.
            take.lock().await.execute("BEGIN EXCLUSIVE").await.unwrap();
        },
        async move || {
            give.lock().await.execute("COMMIT").await.unwrap();
        },
    )
    .await;
}

#[actix_web::test]
async fn a_postgres_database_turned_read_only_loses_no_accepted_byte() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: set TEST_DATABASE_URL to run the read-only database test");
        return;
    };
    let url = crate::pg::fresh_database(&base).await;
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let server = Server::start(&url, &["--sim-chunks", "400", "--sim-interval-ms", "10"]).await;
    let admin = sea_orm::Database::connect(&base).await.unwrap();
    // New sessions of the database start read-only; the running ones are
    // ended, so the service's pool reconnects into read-only sessions.
    let set = |on: bool| {
        let (admin, name) = (admin.clone(), name.clone());
        async move || {
            use sea_orm::ConnectionTrait;
            let flag = if on { "on" } else { "off" };
            admin
                .execute_unprepared(&format!("ALTER DATABASE {name} SET default_transaction_read_only = {flag}"))
                .await
                .unwrap();
            admin
                .execute_unprepared(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ))
                .await
                .unwrap();
        }
    };
    answers_survive(&server, &url, 3, set(true), set(false)).await;
}
