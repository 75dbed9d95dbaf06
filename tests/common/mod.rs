//! Test support: a real Verdict server on an ephemeral loopback port, and its gRPC client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use verdict::server::convert::Limits;
use verdict::server::proto::admin_client::AdminClient;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::store::watch::{ReloadOptions, Reloader};
use verdict::store::PolicyStore;

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
        let store = Arc::new(PolicyStore::open(policies).expect("policies load"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&store);
        let handle = tokio::spawn(async move {
            verdict::server::serve(listener, served, limits, async {
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
