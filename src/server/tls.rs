//! TLS for the listeners (rustls): a certificate and key from PEM files, optionally a client CA
//! that turns on mutual TLS, all re-read when the files change (no restart to rotate a
//! certificate). Each accepted connection uses the configuration current at its handshake; a
//! broken new file keeps the previous configuration and is logged.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Where the TLS material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Server configurations (one per ALPN protocol set) that follow the files.
pub struct ReloadingTls {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: ArcSwap<ServerConfig>,
    fingerprint: std::sync::Mutex<Vec<u8>>,
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl TlsFiles {
    fn fingerprint(&self) -> io::Result<Vec<u8>> {
        let mut hasher = Sha256::new();
        hasher.update(read(&self.cert)?);
        hasher.update(read(&self.key)?);
        if let Some(ca) = &self.client_ca {
            hasher.update(read(ca)?);
        }
        Ok(hasher.finalize().to_vec())
    }

    /// Builds a rustls configuration from the files, with errors naming the file.
    pub fn server_config(&self, alpn: &[Vec<u8>]) -> io::Result<ServerConfig> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(&self.cert)?)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    invalid(format!(
                        "{}: not a PEM certificate chain: {e}",
                        self.cert.display()
                    ))
                })?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "{}: no certificate found",
                self.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|e| {
            invalid(format!(
                "{}: not a PEM private key: {e}",
                self.key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS protocol versions: {e}")))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                    let cert = cert.map_err(|e| {
                        invalid(format!("{}: not a PEM CA bundle: {e}", ca.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        invalid(format!("{}: unusable CA certificate: {e}", ca.display()))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            invalid(format!(
                "{} / {}: {e}",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        config.alpn_protocols = alpn.to_vec();
        Ok(config)
    }
}

impl ReloadingTls {
    /// Loads the files now (an error here stops the daemon from starting).
    pub fn load(files: TlsFiles, alpn: Vec<Vec<u8>>) -> io::Result<Arc<ReloadingTls>> {
        let config = files.server_config(&alpn)?;
        let fingerprint = files.fingerprint()?;
        Ok(Arc::new(ReloadingTls {
            files,
            alpn,
            current: ArcSwap::from_pointee(config),
            fingerprint: std::sync::Mutex::new(fingerprint),
        }))
    }

    /// Re-reads the files if they changed; keeps the current configuration on any error.
    pub fn refresh(&self) {
        let fingerprint = match self.files.fingerprint() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("TLS files unreadable, keeping the current certificate: {e}");
                return;
            }
        };
        let mut last = self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
        if *last == fingerprint {
            return;
        }
        match self.files.server_config(&self.alpn) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                *last = fingerprint;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!("TLS reload rejected, keeping the current certificate: {e}"),
        }
    }

    /// Checks the files every `interval` on a background task.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let this = Arc::clone(&this);
                let _ = tokio::task::spawn_blocking(move || this.refresh()).await;
            }
        })
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// Accepts TCP connections and completes their TLS handshakes off the accept loop (a slow or
/// failing client never holds up others); yields established streams. Stops when dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
) -> (
    tokio_stream::wrappers::ReceiverStream<io::Result<TlsStream<TcpStream>>>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(128);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tls.acceptor();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    (
        tokio_stream::wrappers::ReceiverStream::new(receiver),
        accept,
    )
}
