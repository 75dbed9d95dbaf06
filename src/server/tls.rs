//! TLS for the listeners (rustls): a certificate and key from PEM files, optionally a client CA
//! that turns on mutual TLS, all re-read when the files change (a [`Reloader`] watches and polls
//! them: no restart to rotate a certificate). Each accepted connection uses the configuration
//! current at its handshake; a broken new file keeps the previous configuration, and the
//! reloader logs it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

use crate::reload::{self, Outcome, ReloadOptions, Reloader};
use crate::telemetry::TLS_RELOADS_TOTAL;

/// Where the TLS material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Which listener a connection arrives on: the ALPN protocol its configuration offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: `h2`.
    Grpc,
    /// The HTTP/JSON API: `http/1.1`.
    Http,
}

impl Protocol {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Protocol::Grpc => vec![b"h2".to_vec()],
            Protocol::Http => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The server configurations of both listeners, following the files.
pub struct ReloadingTls {
    files: TlsFiles,
    grpc: ArcSwap<ServerConfig>,
    http: ArcSwap<ServerConfig>,
    /// Of the files the configurations were built from; only the reload thread takes it.
    fingerprint: Mutex<Vec<u8>>,
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
    pub fn load(files: TlsFiles) -> io::Result<Arc<ReloadingTls>> {
        let grpc = files.server_config(&Protocol::Grpc.alpn())?;
        let http = files.server_config(&Protocol::Http.alpn())?;
        let fingerprint = files.fingerprint()?;
        Ok(Arc::new(ReloadingTls {
            files,
            grpc: ArcSwap::from_pointee(grpc),
            http: ArcSwap::from_pointee(http),
            fingerprint: Mutex::new(fingerprint),
        }))
    }

    /// Starts the thread that re-reads the files when they change, every `poll`, and on
    /// [`Reloader::reload_now`].
    pub fn watch(self: &Arc<Self>, poll: Duration) -> io::Result<Reloader> {
        Reloader::start(
            Arc::clone(self),
            ReloadOptions {
                watch: true,
                poll: Some(poll),
                ..ReloadOptions::default()
            },
        )
    }

    fn acceptor(&self, protocol: Protocol) -> TlsAcceptor {
        TlsAcceptor::from(match protocol {
            Protocol::Grpc => self.grpc.load_full(),
            Protocol::Http => self.http.load_full(),
        })
    }
}

impl reload::Source for ReloadingTls {
    fn name(&self) -> &'static str {
        "TLS certificates"
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.files.cert.clone(), self.files.key.clone()];
        paths.extend(self.files.client_ca.clone());
        paths
    }

    /// Re-reads the files if they changed; keeps the current configurations on any error.
    fn refresh(&self) -> Outcome {
        let failed = |e: io::Error| {
            metrics::counter!(TLS_RELOADS_TOTAL, "result" => "failed").increment(1);
            Outcome::Rejected(e.to_string())
        };
        let fingerprint = match self.files.fingerprint() {
            Ok(f) => f,
            Err(e) => return failed(e),
        };
        let mut last = self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
        if *last == fingerprint {
            return Outcome::Unchanged;
        }
        let configs = self
            .files
            .server_config(&Protocol::Grpc.alpn())
            .and_then(|grpc| Ok((grpc, self.files.server_config(&Protocol::Http.alpn())?)));
        match configs {
            Ok((grpc, http)) => {
                self.grpc.store(Arc::new(grpc));
                self.http.store(Arc::new(http));
                *last = fingerprint;
                metrics::counter!(TLS_RELOADS_TOTAL, "result" => "ok").increment(1);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Outcome::Published
            }
            Err(e) => failed(e),
        }
    }
}

/// Accepts TCP connections and completes their TLS handshakes off the accept loop (a slow or
/// failing client never holds up others); yields established streams. Stops when dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    protocol: Protocol,
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
            let acceptor = tls.acceptor(protocol);
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
