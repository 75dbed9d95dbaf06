//! Test support: a real Verdict server on an ephemeral loopback port, and its gRPC client; the
//! real `verdict` binary as a daemon; the rule for tests that need an outside tool.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use verdict::server::convert::Limits;
use verdict::server::proto::admin_client::AdminClient;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::store::watch::{ReloadOptions, Reloader};
use verdict::store::PolicyStore;
use verdict::token::Verifier;

pub fn bundled_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<PolicyStore>,
    /// The reload thread, when started with [`TestServer::start_reloading`].
    pub reloader: Option<Reloader>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(policies: &Path) -> TestServer {
        Self::start_with(policies, Limits::default()).await
    }

    pub async fn start_with(policies: &Path, limits: Limits) -> TestServer {
        Self::start_full(policies, limits, None).await
    }

    /// A server that verifies tokens with `tokens`.
    pub async fn start_with_tokens(policies: &Path, tokens: Arc<Verifier>) -> TestServer {
        Self::start_full(policies, Limits::default(), Some(tokens)).await
    }

    pub async fn start_full(
        policies: &Path,
        limits: Limits,
        tokens: Option<Arc<Verifier>>,
    ) -> TestServer {
        let store = Arc::new(PolicyStore::open(policies).expect("policies load"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&store);
        let handle = tokio::spawn(async move {
            verdict::server::serve(listener, served, limits, tokens, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            addr,
            store,
            reloader: None,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// A server whose policies reload as the daemon's do (watch, debounce, poll).
    pub async fn start_reloading(policies: &Path, options: ReloadOptions) -> TestServer {
        let mut server = Self::start(policies).await;
        server.reloader =
            Some(Reloader::start(Arc::clone(&server.store), options).expect("reloader starts"));
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> AuthorizerClient<tonic::transport::Channel> {
        AuthorizerClient::connect(self.url())
            .await
            .expect("connects")
    }

    pub async fn admin(&self) -> AdminClient<tonic::transport::Channel> {
        AdminClient::connect(self.url()).await.expect("connects")
    }

    pub async fn stop(mut self) {
        if let Some(reloader) = self.reloader.take() {
            tokio::task::spawn_blocking(move || reloader.stop())
                .await
                .unwrap();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `verdict` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_verdict");

/// A `verdict serve` process on an ephemeral port; killed when dropped.
pub struct Daemon {
    pub child: Child,
    /// `127.0.0.1:PORT`, as the daemon announced it.
    pub addr: String,
}

impl Daemon {
    pub fn start(policies: &Path) -> Daemon {
        Self::start_with(policies, &[])
    }

    /// Starts the daemon with extra `serve` flags, and waits (30 s at most) until it announces
    /// its address.
    pub fn start_with(policies: &Path, flags: &[&str]) -> Daemon {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
            .arg(policies)
            .args(flags)
            .env("VERDICT_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("addr=") {
                    let _ = tx.send(
                        line[i + 5..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("daemon reports its address");
        Daemon { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this run is CI's (`CI` set and not "false"/"0"): there a missing tool fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// For tests that need a tool CI installs (`.ci/run`): `true` when `available`; otherwise skips
/// the test, saying why, or fails it in CI.
pub fn tool_available(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("{what} is missing, and CI must run this test (.ci/run installs it)");
    }
    eprintln!("skipping: {what} is missing (CI installs it; see .ci/run)");
    false
}
