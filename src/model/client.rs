//! The providers' HTTP client, and how it picks the HTTP version
//! (`--provider-http`).
//!
//! Over TLS, each new connection negotiates its HTTP version (ALPN). Until
//! a first handshake has told, the connection pool cannot know that the
//! provider speaks HTTP/2, so each question of a cold burst opens its own
//! connection, with its own TCP and TLS handshake. An HTTP/2-only client
//! knows beforehand, and a burst waits for its one connection instead.
//!
//! - `negotiate`: always negotiate.
//! - `http2`: HTTP/2 only (prior knowledge over plain HTTP).
//! - `auto` (the default): negotiate until an answer comes back over
//!   HTTP/2, then use the HTTP/2-only client; if a request through it
//!   fails, for any reason, negotiate again (the provider, or a gateway in
//!   front of it, may have stopped speaking HTTP/2): that failure costs
//!   one of the request's attempts, and its retry negotiates. So only the
//!   first burst after a start (or after such a failure) pays a handshake
//!   per question; later ones, even after the pool's connections went
//!   idle, share one.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use reqwest::{Client, RequestBuilder, Response, Version};

use crate::config::{ProviderHttp, ProviderSettings};

#[derive(Debug)]
pub struct ProviderClient {
    mode: ProviderHttp,
    negotiating: Client,
    http2: Client,
    /// `auto`: the last answer came over HTTP/2.
    speaks_http2: AtomicBool,
}

impl ProviderClient {
    /// Both clients, trusting `extra_roots` beside the public roots.
    pub fn new(settings: &ProviderSettings, extra_roots: &[reqwest::Certificate]) -> anyhow::Result<ProviderClient> {
        let build = |http2_only: bool| {
            let builder = extra_roots
                .iter()
                .fold(Client::builder(), |builder, root| builder.add_root_certificate(root.clone()))
                .connect_timeout(Duration::from_millis(settings.upstream_connect_timeout_ms))
                .tcp_nodelay(true)
                // Keep warm connections: a question's time to first token
                // should not pay a handshake because the last one was
                // long ago.
                .pool_idle_timeout(Duration::from_secs(300))
                .http2_keep_alive_interval(Duration::from_secs(30))
                .http2_keep_alive_while_idle(true);
            if http2_only {
                builder.http2_prior_knowledge().build()
            } else {
                builder.build()
            }
        };
        Ok(ProviderClient {
            mode: settings.provider_http,
            negotiating: build(false)?,
            http2: build(true)?,
            speaks_http2: AtomicBool::new(false),
        })
    }

    fn via_http2(&self) -> bool {
        match self.mode {
            ProviderHttp::Negotiate => false,
            ProviderHttp::Http2 => true,
            ProviderHttp::Auto => self.speaks_http2.load(Ordering::Relaxed),
        }
    }

    /// Sends the request `make` builds on the client the mode picks, and
    /// (`auto`) learns from how it went.
    pub async fn send(&self, make: &impl Fn(&Client) -> RequestBuilder) -> reqwest::Result<Response> {
        let http2 = self.via_http2();
        let sent = make(if http2 { &self.http2 } else { &self.negotiating }).send().await;
        if self.mode == ProviderHttp::Auto {
            self.learn(http2, &sent);
        }
        sent
    }

    /// `auto`: what one request taught, by the client it went through. A
    /// negotiated answer over HTTP/2 switches to HTTP/2 only; an HTTP/2-only
    /// request that failed (any error: the provider may have stopped
    /// speaking HTTP/2) switches back. A negotiated failure teaches nothing,
    /// and a request that went out before a switch does not undo it.
    fn learn(&self, via_http2: bool, sent: &reqwest::Result<Response>) {
        let speaks = matches!(sent, Ok(response) if response.version() == Version::HTTP_2);
        let flip = |from: bool, to: bool| {
            self.speaks_http2.compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        };
        if !via_http2 && speaks && flip(false, true) {
            tracing::info!("the model provider answers over HTTP/2: its connections are HTTP/2 only");
        } else if via_http2 && !speaks && flip(true, false) {
            tracing::warn!("a request to the model provider failed over HTTP/2 only: negotiating again");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::Settings;

    /// A server that speaks only HTTP/1.1: "ok" to every request.
    async fn http1_only() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let ok = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                            if ok.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        url
    }

    fn client(mode: &str) -> ProviderClient {
        let settings = Settings::try_parse_from(["convo", "--provider-http", mode]).unwrap();
        ProviderClient::new(&settings.provider, &[]).unwrap()
    }

    #[tokio::test]
    async fn auto_that_believed_in_http2_negotiates_again_when_http2_fails() {
        let url = http1_only().await;
        let client = client("auto");
        client.speaks_http2.store(true, Ordering::Relaxed);
        let get = |c: &Client| c.get(&url);
        assert!(client.send(&get).await.is_err(), "HTTP/2 only, to a server that speaks HTTP/1.1");
        assert!(!client.via_http2());
        let answer = client.send(&get).await.unwrap();
        assert_eq!((answer.version(), answer.text().await.unwrap().as_str()), (Version::HTTP_11, "ok"));
        assert!(!client.via_http2(), "an HTTP/1.1 answer teaches nothing else");
    }

    #[tokio::test]
    async fn a_negotiated_failure_does_not_undo_what_auto_learnt() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let client = client("auto");
        client.speaks_http2.store(true, Ordering::Relaxed);
        // A request that went out negotiating before the switch, and failed.
        let failed = client.negotiating.get(format!("http://{closed}/")).send().await;
        assert!(failed.is_err());
        client.learn(false, &failed);
        assert!(client.via_http2());
    }

    #[tokio::test]
    async fn http2_stays_http2_and_negotiate_never_tries_it() {
        let url = http1_only().await;
        let get = |c: &Client| c.get(&url);
        let http2 = client("http2");
        assert!(http2.send(&get).await.is_err());
        assert!(http2.via_http2());
        let negotiate = client("negotiate");
        negotiate.speaks_http2.store(true, Ordering::Relaxed);
        assert_eq!(negotiate.send(&get).await.unwrap().version(), Version::HTTP_11);
    }
}
