//! TLS for the edges (`serve --tls-cert --tls-key`, then `--https ADDR` and `--mqtts ADDR`):
//! rustls with the ring provider (the one the rest of the tree already uses), the
//! certificate chain and key read from PEM files, checked at start with errors that
//! name the file and say what is wrong. Handshakes run off the accept loop with a
//! deadline, so a slow or silent client holds neither the listener nor other clients;
//! failed ones are counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::TlsAcceptor;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key of a listener, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM of the kind wanted.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("the certificate and key are not usable together: {0}")]
    Rejected(#[from] rustls::Error),
}

fn file_error(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

impl TlsFiles {
    /// Reads both files and makes the server configuration (HTTP/1.1 offered by ALPN:
    /// the API and MQTT both run over it).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_error(&self.cert, format!("cannot read it as PEM: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(&self.cert, format!("a malformed certificate: {e}")))?;
        if certs.is_empty() {
            return Err(file_error(&self.cert, "no CERTIFICATE block in it"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| file_error(&self.key, format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// [`Self::server_config`] as an acceptor.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.server_config()?))
    }
}

/// A TLS listener for `axum::serve`: TCP connections are accepted here and their
/// handshakes run each in its own task (at most [`HANDSHAKE_TIMEOUT`]); only finished
/// handshakes reach the server. `failed` counts the ones that did not finish.
pub struct TlsListener {
    addr: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves handshakes for connections to `listener`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor, failed: Arc<AtomicU64>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(256);
        let accept_task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "tls accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx, failed) = (acceptor.clone(), tx.clone(), failed.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "tls handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self { addr, ready, accept_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// The peer of an HTTPS request (axum's `ConnectInfo` for a [`TlsListener`]; the plain
/// listener's is the `SocketAddr` itself).
#[derive(Debug, Clone, Copy)]
pub struct TlsPeer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("tare-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn files_that_are_not_a_certificate_and_key_are_named_with_what_is_wrong() {
        let d = dir();
        let missing = TlsFiles {
            cert: d.join("nope.pem"),
            key: d.join("nope.key"),
        };
        let e = missing.server_config().unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");
        std::fs::write(d.join("empty.pem"), "not pem at all\n").unwrap();
        let empty = TlsFiles {
            cert: d.join("empty.pem"),
            key: d.join("empty.pem"),
        };
        let e = empty.server_config().unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("no CERTIFICATE"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
