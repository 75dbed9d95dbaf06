//! The active policy set, behind an `ArcSwap`: readers take a snapshot without locking; a reload
//! compiles a whole new set off the request path and publishes it with one atomic swap, or keeps
//! the last good set and records the error.
//!
//! Knows nothing of gRPC.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::compile::PolicySet;
use crate::policy::LoadErrors;

/// What the last reload attempt did, for the status endpoint and metrics.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub active_version: String,
    /// When the active set was published.
    pub loaded_at: SystemTime,
    /// Rules in the active set.
    pub rule_count: usize,
    /// The last failed attempt's error, cleared by the next success.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// The policy directory and the set compiled from it.
pub struct PolicyStore {
    dir: PathBuf,
    active: ArcSwap<PolicySet>,
    status: ArcSwap<ReloadStatus>,
    /// Serialises reloads (watcher and SIGHUP); never taken on the request path.
    reloading: std::sync::Mutex<()>,
}

/// The outcome of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new set with this version is active.
    Published(String),
    /// The files compile to the version already active.
    Unchanged(String),
    /// The new files are broken; the previous set stays active.
    Rejected(String),
}

impl PolicyStore {
    /// Loads the directory; fails if the set does not compile (the daemon refuses to start).
    pub fn open(dir: &Path) -> Result<PolicyStore, LoadErrors> {
        let set = PolicySet::load(dir)?;
        Ok(PolicyStore::with_set(dir, set))
    }

    /// A store serving `set`, reloading from `dir`.
    pub fn with_set(dir: &Path, set: PolicySet) -> PolicyStore {
        let status = ReloadStatus {
            active_version: set.version.clone(),
            loaded_at: SystemTime::now(),
            rule_count: set.rules.len(),
            last_error: None,
            last_error_at: None,
            reloads_ok: 0,
            reloads_failed: 0,
        };
        PolicyStore {
            dir: dir.to_path_buf(),
            active: ArcSwap::from_pointee(set),
            status: ArcSwap::from_pointee(status),
            reloading: std::sync::Mutex::new(()),
        }
    }

    /// The active set. Hold the returned `Arc` for the whole request: every answer of a request
    /// comes from this one set.
    pub fn current(&self) -> Arc<PolicySet> {
        self.active.load_full()
    }

    pub fn status(&self) -> Arc<ReloadStatus> {
        self.status.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and compiles the directory again; publishes the result if it is good and new.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let loaded = PolicySet::load(&self.dir);
        let previous = self.status.load_full();
        match loaded {
            Ok(set) if set.version == previous.active_version => {
                ReloadOutcome::Unchanged(set.version.clone())
            }
            Ok(set) => {
                let version = set.version.clone();
                let rule_count = set.rules.len();
                self.active.store(Arc::new(set));
                self.status.store(Arc::new(ReloadStatus {
                    active_version: version.clone(),
                    loaded_at: SystemTime::now(),
                    rule_count,
                    last_error: None,
                    last_error_at: None,
                    reloads_ok: previous.reloads_ok + 1,
                    reloads_failed: previous.reloads_failed,
                }));
                tracing::info!(
                    version = %version,
                    rules = rule_count,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "policy set published"
                );
                ReloadOutcome::Published(version)
            }
            Err(errors) => {
                let message = errors.to_string();
                tracing::error!(
                    active_version = %previous.active_version,
                    "policy reload rejected, keeping the active set:\n{message}"
                );
                self.status.store(Arc::new(ReloadStatus {
                    last_error: Some(message.clone()),
                    last_error_at: Some(SystemTime::now()),
                    reloads_failed: previous.reloads_failed + 1,
                    ..(*previous).clone()
                }));
                ReloadOutcome::Rejected(message)
            }
        }
    }
}
