//! HTTPS with HTTP/2 (`--tls-cert`, `--tls-key`).
//!
//! Why the service terminates TLS itself: a browser opens at most six
//! HTTP/1.1 connections per host, so six tabs holding a stream each leave
//! a seventh tab (and every POST) waiting. HTTP/2 multiplexes any number
//! of streams on one connection, and browsers speak it only over TLS.
//! This config offers `h2` and `http/1.1` by ALPN; `crate::serve` serves
//! whichever the client chose. WebSocket upgrades still use an HTTP/1.1
//! connection of their own.
//!
//! The crypto provider is ring, passed explicitly: no process-wide default
//! is installed, and no second crypto library is built.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};

use crate::config::TlsSettings;

/// The ALPN name of HTTP/2 (over TLS).
pub const ALPN_H2: &[u8] = b"h2";

/// The TLS configuration `settings` ask for, or `None` for plain HTTP.
pub fn server_config(settings: &TlsSettings) -> anyhow::Result<Option<ServerConfig>> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else { return Ok(None) };
    let chain = certificates(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("--tls-key: no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS: no protocol version in common with the crypto provider")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-cert / --tls-key: the key does not fit the certificate")?;
    let mut config = config;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    Ok(Some(config))
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("--tls-cert: could not read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert: {} is not PEM", path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "--tls-cert: no certificate in {}", path.display());
    Ok(chain)
}
