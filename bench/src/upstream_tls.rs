//! The fake upstream over HTTPS (`--upstream-tls`), as the Anthropic API is
//! reached: the same answers as `upstream` (`Upstream::answer`), served by
//! hyper over TLS whose ALPN offers HTTP/2 and HTTP/1.1. Its certificate
//! is self-signed; the service is given it with `--provider-ca-file`.

use std::{convert::Infallible, path::PathBuf, sync::Arc};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, StreamBody};
use hyper::{body::Frame, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, sync::mpsc};

use crate::upstream::{now_ns, Emit, Upstream};

/// The upstream, and the PEM file of its certificate (removed on drop).
pub struct TlsUpstream {
    pub up: Upstream,
    pub ca_file: PathBuf,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

pub async fn start(chunks: usize, interval: std::time::Duration) -> anyhow::Result<TlsUpstream> {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names)?;
    let ca_file = std::env::temp_dir().join(format!("convo-bench-upstream-{}.pem", std::process::id()));
    std::fs::write(&ca_file, cert.pem())?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let up = Upstream::new(format!("https://{}", listener.local_addr()?), chunks, interval);
    let server = up.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            server.accepted_one();
            let (server, acceptor) = (server.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else { return };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(tls);
                let service = hyper::service::service_fn(move |req| answer(server.clone(), req));
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service).await
                } else {
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await
                };
            });
        }
    });
    Ok(TlsUpstream { up, ca_file })
}

/// An answer's events as body frames.
struct Frames(mpsc::Sender<Result<Frame<Bytes>, Infallible>>);

impl Emit for Frames {
    async fn emit(&mut self, payload: String) -> std::io::Result<()> {
        self.0.send(Ok(Frame::data(Bytes::from(payload)))).await.map_err(|_| std::io::Error::other("stream closed"))
    }
}

async fn answer(
    up: Upstream,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<UnsyncBoxBody<Bytes, Infallible>>, Infallible> {
    let received_ns = now_ns();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let _ = up.answer(&request, received_ns, &mut Frames(tx)).await;
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/event-stream"));
    Ok(response)
}
