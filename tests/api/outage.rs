//! A database outage (Postgres behind a proxy the test unplugs): live
//! streaming goes on, readiness fails, new messages get 503, and every
//! write that was accepted lands once the database is back. Needs
//! `TEST_DATABASE_URL` (CI always sets it).

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use serde_json::json;
use tokio::{net::TcpListener, task::AbortHandle};

use crate::support::{error_code, Events as _, Server, Transcript};

/// A TCP proxy to Postgres that can be unplugged and plugged back.
#[derive(Clone)]
struct Plug {
    port: u16,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Plug {
    async fn start(target: String) -> Plug {
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

    fn unplug(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn plug_in(&self) {
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
    let ready = server.client.get(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(error_code(ready).await, (503, "unavailable".to_owned()));
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
    let ready = server.client.get(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let messages = server.messages(&thread).await;
    assert_eq!(messages.len(), 2, "the refused message was not stored");
    let next = server.ask(&thread, "back").await;
    assert_eq!(server.finished(&thread, &next).await["status"], "complete");
}
