//! `h2-flood`: what a client that opens HTTP/2 streams and never reads
//! costs the service (issue 21). The service runs on HTTPS (a fresh
//! self-signed certificate); each of `--h2-connections` TLS connections
//! (ALPN `h2`) writes `--h2-streams` requests (`GET --h2-path`, default
//! `/healthz`, one stream each, ending it) as fast as the service takes
//! them, frames written by hand (a client library would keep to the
//! advertised stream limit), and reads nothing. `--h2-window 0` lets the
//! service send no response body, so every stream it takes stays open.
//! Reported: the service's RSS before, at its peak, while the clients hold
//! their connections, and after they have left; how many requests were
//! written before the service stopped reading or closed.

use std::{sync::Arc, time::Duration};

use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::server::Server;

/// Requests written per write.
const BATCH: usize = 1_000;
/// A write the service takes nothing of for this long: it stopped reading.
const BLOCKED: Duration = Duration::from_secs(3);

/// How one connection's flood ended.
struct Flood {
    written: usize,
    /// The service closed the connection (a write failed).
    closed: bool,
    /// Held open, unread, until the report is done.
    _held: Option<tokio_rustls::client::TlsStream<TcpStream>>,
}

/// The flood (see the module doc).
pub struct Shape<'a> {
    pub connections: usize,
    pub streams: usize,
    pub path: &'a str,
    pub window: u32,
}

pub async fn run(bin: &str, shape: Shape<'_>, extra: &[String]) -> anyhow::Result<()> {
    let Shape { connections, streams, path, window } = shape;
    let dir = std::env::temp_dir().join(format!("convo-bench-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = Cleanup(dir.clone());
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem())?;
    std::fs::write(&key_file, key_pair.serialize_pem())?;
    let mut args = vec!["--tls-cert".to_owned(), cert_file.display().to_string()];
    args.extend(["--tls-key".to_owned(), key_file.display().to_string()]);
    args.extend(extra.iter().cloned());
    // (No question is asked: the upstream is never called.)
    let srv = Server::spawn(bin, "http://127.0.0.1:9", &args).await?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = srv.rss_kib();
    let started = std::time::Instant::now();
    let floods = (0..connections).map(|_| {
        let ask = Ask { path: path.to_owned(), window, streams };
        tokio::spawn(flood(srv.addr, connector.clone(), ask))
    });
    let floods = futures_util::future::join_all(floods);
    tokio::pin!(floods);
    // The peak, sampled while the clients write.
    let mut rss_peak = rss_before;
    let floods = loop {
        tokio::select! {
            done = &mut floods => break done,
            () = tokio::time::sleep(Duration::from_millis(20)) => rss_peak = rss_peak.max(srv.rss_kib()),
        }
    };
    let elapsed = started.elapsed();
    let mut done = Vec::with_capacity(floods.len());
    for flood in floods {
        done.push(flood??);
    }
    let floods = done;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let rss_held = srv.rss_kib();
    let written: usize = floods.iter().map(|f| f.written).sum();
    let closed = floods.iter().filter(|f| f.closed).count();
    drop(floods);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let rss_after = srv.rss_kib();

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("h2-flood: {connections} connection(s) x {streams} requests for {path}, window {window}, nothing read");
    println!("  requests written (to {BATCH})    {written} in {:.1} s", elapsed.as_secs_f64());
    println!("  connections it closed           {closed} of {connections}");
    println!("  RSS before                      {:.1} MiB", mib(rss_before));
    println!("  RSS peak                        {:.1} MiB", mib(rss_peak));
    println!("  RSS with the clients connected  {:.1} MiB", mib(rss_held));
    println!("  RSS after they left             {:.1} MiB", mib(rss_after));
    let line = serde_json::json!({
        "scenario": "h2-flood", "connections": connections, "streams": streams, "path": path, "window": window,
        "written": written,
        "closed": closed, "elapsed_s": elapsed.as_secs_f64(), "rss_before_kib": rss_before,
        "rss_peak_kib": rss_peak, "rss_held_kib": rss_held, "rss_after_kib": rss_after,
    });
    println!("{line}");
    srv.stop();
    Ok(())
}

/// What each connection asks.
struct Ask {
    path: String,
    window: u32,
    streams: usize,
}

/// One connection's flood: the preface, then its requests, until the
/// service closes the connection or stops taking bytes.
async fn flood(addr: std::net::SocketAddr, connector: tokio_rustls::TlsConnector, ask: Ask) -> anyhow::Result<Flood> {
    let Ask { path, window, streams } = ask;
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector.connect(rustls::pki_types::ServerName::try_from("127.0.0.1")?, tcp).await?;
    anyhow::ensure!(tls.get_ref().1.alpn_protocol() == Some(b"h2"), "the service did not agree on h2");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: INITIAL_WINDOW_SIZE (0x4).
    let settings: Vec<u8> = 0x4u16.to_be_bytes().into_iter().chain(window.to_be_bytes()).collect();
    hello.extend(frame(0x4, 0, 0, &settings));
    tls.write_all(&hello).await?;
    let authority = addr.to_string();
    let (mut written, mut stream) = (0, 1u32);
    while written < streams {
        let n = BATCH.min(streams - written);
        let mut batch = Vec::with_capacity(n * 32);
        for _ in 0..n {
            batch.extend(get(stream, &authority, &path));
            stream += 2;
        }
        match tokio::time::timeout(BLOCKED, tls.write_all(&batch)).await {
            Ok(Ok(())) => written += n,
            Ok(Err(_)) => return Ok(Flood { written, closed: true, _held: None }),
            Err(_) => break,
        }
    }
    Ok(Flood { written, closed: false, _held: Some(tls) })
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// `GET path` on `stream`, ending it (HEADERS with END_STREAM and
/// END_HEADERS): `:method GET` and `:scheme https` from HPACK's static
/// table, `:path` and `:authority` as literals without indexing (both
/// shorter than 127 bytes).
fn get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87];
    for (name, value) in [(0x04u8, path), (0x01, authority)] {
        block.extend([name, value.len() as u8]);
        block.extend(value.as_bytes());
    }
    frame(0x1, 0x1 | 0x4, stream, &block)
}

/// The certificate's folder, removed at the end.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
