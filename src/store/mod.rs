//! The active policy set, behind an `ArcSwap`: readers take a snapshot without locking; a reload
//! compiles a whole new set off the request path and publishes it with one atomic swap, or keeps
//! the last good set and records the error.
//!
//! The reload gate: when the directory holds test suites (`*_test.yaml`) and
//! [`StoreOptions::require_tests`] is on (the default), a new set goes live only if every case of
//! every suite passes against it; otherwise it is rejected like a broken set, and the failing
//! cases are named in the status, the logs and the `verdict_policy_failing_tests` gauge.
//!
//! [`crate::reload`] decides *when* to reload (file events, a periodic poll, SIGHUP) and logs
//! failures; this module decides *what* a reload does. Knows nothing of gRPC.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::compile::PolicySet;
use crate::policy::{self, LoadError, LoadErrors};
use crate::reload::{self, Outcome};
use crate::suite;
use crate::telemetry::{
    POLICY_FAILING_TESTS as FAILING_TESTS, POLICY_INFO, POLICY_RELOADS_TOTAL as RELOADS_TOTAL,
    POLICY_RELOAD_SECONDS as RELOAD_SECONDS,
};

/// How the store accepts a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A set whose directory holds test suites goes live only if they all pass (at start too).
    pub require_tests: bool,
    /// Keep the files of the active set and the set it replaced ([`PolicyStore::history`]), for
    /// the web UI's source and diff pages: the previous set stays in memory until the next
    /// reload. Off by default.
    pub keep_history: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            require_tests: true,
            keep_history: false,
        }
    }
}

/// A published set with the files it was compiled from.
pub struct Revision {
    pub set: Arc<PolicySet>,
    /// (path relative to the policy directory, text), sorted by path.
    pub files: Vec<(PathBuf, String)>,
    /// When it was published.
    pub loaded_at: SystemTime,
}

/// The active revision and the one the last published reload replaced (with
/// [`StoreOptions::keep_history`]).
pub struct History {
    pub active: Arc<Revision>,
    /// `None` until a reload publishes a new set.
    pub previous: Option<Arc<Revision>>,
}

/// What the last reload attempt did, for the status endpoint and metrics.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub active_version: String,
    /// When the active set was published.
    pub loaded_at: SystemTime,
    /// Rules in the active set (capabilities expanded).
    pub rule_count: usize,
    /// Policy documents in the active set.
    pub policy_count: usize,
    /// The error of the last reload attempt, if it found a broken set: every problem as
    /// `file:line: message`, one per line. Cleared by the next attempt that finds good files
    /// (published, or back to the active content).
    pub last_error: Option<String>,
    /// When that attempt failed.
    pub last_error_at: Option<SystemTime>,
    /// Reloads that published a new set.
    pub reloads_ok: u64,
    /// Reload attempts that rejected a broken set.
    pub reloads_failed: u64,
    /// The test cases the last rejected set failed (the reload gate), as
    /// `file:line: suite "...": test "..." failed: ...`; empty when it was rejected for another
    /// reason, and cleared with `last_error`.
    pub failing_tests: Vec<String>,
}

/// The policy directory and the set compiled from it.
pub struct PolicyStore {
    dir: PathBuf,
    options: StoreOptions,
    active: ArcSwap<PolicySet>,
    status: ArcSwap<ReloadStatus>,
    /// With `keep_history`: the active revision and the previous one. Published just after the
    /// set it describes.
    history: ArcSwapOption<History>,
    /// Serialises reloads (watcher and SIGHUP); never taken on the request path.
    reloading: std::sync::Mutex<()>,
    /// The version of the last set published, sent once the set, its status and its history
    /// are all in place: what work done once per reload (the web UI's diff) waits on.
    published: tokio::sync::watch::Sender<String>,
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
    /// Loads the directory with the default options (the reload gate on); fails if the set does
    /// not compile or fails its test suites (the daemon refuses to start).
    pub fn open(dir: &Path) -> Result<PolicyStore, LoadErrors> {
        PolicyStore::open_with(dir, StoreOptions::default())
    }

    /// Loads the directory; fails if the set does not compile, or, with `require_tests`, fails
    /// its test suites.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<PolicyStore, LoadErrors> {
        let read = policy::read_files(dir).map_err(|e| LoadErrors(vec![e]))?;
        if !read.unreadable.is_empty() {
            return Err(LoadErrors(read.unreadable));
        }
        let source = policy::parse_files(dir, &read.texts)?;
        let set = PolicySet::compile(&source)?;
        if options.require_tests {
            gate(dir, &set, read.unreadable_suites, &read.suites)
                .map_err(|rejection| rejection.errors)?;
        }
        let mut store = PolicyStore::with_set(dir, set);
        store.options = options;
        if options.keep_history {
            store.history.store(Some(Arc::new(History {
                active: Arc::new(Revision {
                    set: store.current(),
                    files: read.texts,
                    loaded_at: SystemTime::now(),
                }),
                previous: None,
            })));
        }
        Ok(store)
    }

    /// A store serving `set`, reloading from `dir` (with the default options).
    pub fn with_set(dir: &Path, set: PolicySet) -> PolicyStore {
        metrics::gauge!(POLICY_INFO, "version" => set.version.clone()).set(1.0);
        metrics::gauge!(FAILING_TESTS).set(0.0);
        let status = ReloadStatus {
            active_version: set.version.clone(),
            loaded_at: SystemTime::now(),
            rule_count: set.rules.len(),
            policy_count: set.policy_count,
            last_error: None,
            last_error_at: None,
            reloads_ok: 0,
            reloads_failed: 0,
            failing_tests: Vec::new(),
        };
        PolicyStore {
            dir: dir.to_path_buf(),
            options: StoreOptions::default(),
            published: tokio::sync::watch::Sender::new(set.version.clone()),
            active: ArcSwap::from_pointee(set),
            status: ArcSwap::from_pointee(status),
            history: ArcSwapOption::empty(),
            reloading: std::sync::Mutex::new(()),
        }
    }

    /// The active set. Hold the returned `Arc` for the whole request: every answer of a request
    /// comes from this one set.
    pub fn current(&self) -> Arc<PolicySet> {
        self.active.load_full()
    }

    /// What the reloads did. Published just after the set it describes: for an instant after a
    /// reload, `current()` may already be newer than `status().active_version`.
    pub fn status(&self) -> Arc<ReloadStatus> {
        self.status.load_full()
    }

    /// The active set's files and the previous set's, with [`StoreOptions::keep_history`]
    /// (`None` without). Not for the request path: the decision path takes [`Self::current`].
    pub fn history(&self) -> Option<Arc<History>> {
        self.history.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seen changed each time a reload publishes a set (the value is its version), once the set,
    /// its status and its history are in place. For work done once per reload, off the request
    /// path.
    pub fn published(&self) -> tokio::sync::watch::Receiver<String> {
        self.published.subscribe()
    }

    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Reads the directory again and, if its content differs from the active set's, compiles it
    /// and publishes the result; a broken set, or one that fails its test suites (the reload
    /// gate), is rejected whole and the active set stays.
    ///
    /// Unchanged content (same version hash) is neither parsed nor compiled again, so the
    /// periodic poll and spurious file events cost a read and a hash of the files. A directory
    /// without policy files is rejected like a broken one: it is far more often one being
    /// replaced (`rm -r` then `cp -r`) or an unmounted volume than a wish to deny everything. Blocks for as long as loading and
    /// compiling take: call it off the request path (the watcher's thread, `spawn_blocking`).
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let previous = self.status.load_full();
        let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let read =
                policy::read_files(&self.dir).map_err(|e| Rejection::from(LoadErrors(vec![e])))?;
            if !read.unreadable.is_empty() {
                return Err(LoadErrors(read.unreadable).into());
            }
            let files = read.texts;
            if policy::version_of(&files) == previous.active_version {
                return Ok(None);
            }
            if files.is_empty() {
                return Err(LoadErrors(vec![LoadError {
                    file: self.dir.clone(),
                    line: None,
                    message: "no policy file (*.yaml, *.yml) found; an empty directory is taken \
                              for one being replaced, and the active set stays"
                        .into(),
                }])
                .into());
            }
            let source = policy::parse_files(&self.dir, &files)?;
            let set = PolicySet::compile(&source)?;
            if self.options.require_tests {
                gate(&self.dir, &set, read.unreadable_suites, &read.suites)?;
            }
            Ok(Some((set, files)))
        }))
        .unwrap_or_else(|panic| {
            // A bug, not the operator's fault; still no reason to stop serving the active set.
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(LoadErrors(vec![LoadError {
                file: self.dir.clone(),
                line: None,
                message: format!("internal error while loading the policies: {what}"),
            }])
            .into())
        });
        match loaded {
            Ok(None) => {
                if previous.last_error.is_some() {
                    // The files were broken and are back to the active content: nothing is wrong
                    // any more.
                    self.status.store(Arc::new(ReloadStatus {
                        last_error: None,
                        last_error_at: None,
                        failing_tests: Vec::new(),
                        ..(*previous).clone()
                    }));
                    metrics::gauge!(FAILING_TESTS).set(0.0);
                }
                ReloadOutcome::Unchanged(previous.active_version.clone())
            }
            Ok(Some((set, files))) => {
                let version = set.version.clone();
                let rule_count = set.rules.len();
                let policy_count = set.policy_count;
                for warning in &set.warnings {
                    tracing::warn!(version = %version, "policy warning: {warning}");
                }
                let set = Arc::new(set);
                let replaced = self.active.swap(Arc::clone(&set));
                self.status.store(Arc::new(ReloadStatus {
                    active_version: version.clone(),
                    loaded_at: SystemTime::now(),
                    rule_count,
                    policy_count,
                    last_error: None,
                    last_error_at: None,
                    reloads_ok: previous.reloads_ok + 1,
                    reloads_failed: previous.reloads_failed,
                    failing_tests: Vec::new(),
                }));
                metrics::gauge!(FAILING_TESTS).set(0.0);
                let elapsed = started.elapsed();
                metrics::counter!(RELOADS_TOTAL, "result" => "ok").increment(1);
                metrics::histogram!(RELOAD_SECONDS).record(elapsed.as_secs_f64());
                metrics::gauge!(POLICY_INFO, "version" => previous.active_version.clone()).set(0.0);
                metrics::gauge!(POLICY_INFO, "version" => version.clone()).set(1.0);
                tracing::info!(
                    version = %version,
                    previous_version = %previous.active_version,
                    policies = policy_count,
                    rules = rule_count,
                    elapsed_ms = elapsed.as_secs_f64() * 1e3,
                    "policy set published"
                );
                // With history, the set that leaves memory is the one before the replaced one.
                let leaving = match self.history.load_full() {
                    None => Some(replaced),
                    Some(history) => {
                        drop(replaced);
                        self.history.store(Some(Arc::new(History {
                            active: Arc::new(Revision {
                                set,
                                files,
                                loaded_at: SystemTime::now(),
                            }),
                            previous: Some(Arc::clone(&history.active)),
                        })));
                        let leaving = history.previous.as_ref().map(|r| Arc::clone(&r.set));
                        drop(history);
                        leaving
                    }
                };
                if let Some(leaving) = leaving {
                    retire(leaving);
                }
                self.published.send_replace(version.clone());
                ReloadOutcome::Published(version)
            }
            Err(Rejection {
                errors,
                failing_tests,
            }) => {
                let message = errors.to_string();
                metrics::counter!(RELOADS_TOTAL, "result" => "failed").increment(1);
                metrics::gauge!(FAILING_TESTS).set(failing_tests.len() as f64);
                self.status.store(Arc::new(ReloadStatus {
                    last_error: Some(message.clone()),
                    last_error_at: Some(SystemTime::now()),
                    reloads_failed: previous.reloads_failed + 1,
                    failing_tests,
                    ..(*previous).clone()
                }));
                ReloadOutcome::Rejected(message)
            }
        }
    }
}

/// Why a set was not accepted: every problem, and which of them are failing test cases.
struct Rejection {
    errors: LoadErrors,
    /// The failing test cases (`file:line: message`), when the reload gate refused the set.
    failing_tests: Vec<String>,
}

impl From<LoadErrors> for Rejection {
    fn from(errors: LoadErrors) -> Self {
        Rejection {
            errors,
            failing_tests: Vec::new(),
        }
    }
}

/// The policy directory, reloaded by a [`reload::Reloader`].
impl reload::Source for PolicyStore {
    fn name(&self) -> &'static str {
        "policies"
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn refresh(&self) -> Outcome {
        match self.reload() {
            ReloadOutcome::Published(_) => Outcome::Published,
            ReloadOutcome::Unchanged(_) => Outcome::Unchanged,
            ReloadOutcome::Rejected(error) if !self.status().failing_tests.is_empty() => {
                Outcome::Rejected(format!("the new set fails its test suites:\n{error}"))
            }
            ReloadOutcome::Rejected(error) => Outcome::Rejected(error),
        }
    }
}

/// The reload gate: `set` must pass the suites read from `dir` (relative paths), and every suite
/// must have been readable.
fn gate(
    dir: &Path,
    set: &PolicySet,
    unreadable: Vec<LoadError>,
    suites: &[(PathBuf, String)],
) -> Result<(), Rejection> {
    let suites: Vec<(PathBuf, String)> = suites
        .iter()
        .map(|(relative, text)| (dir.join(relative), text.clone()))
        .collect();
    let mut errors = unreadable;
    errors.extend(suite::gate(set, &suites).into_iter().map(|f| LoadError {
        file: f.file,
        line: f.line,
        message: f.message,
    }));
    if errors.is_empty() {
        return Ok(());
    }
    let failing_tests = errors.iter().map(LoadError::to_string).collect();
    Err(Rejection {
        errors: LoadErrors(errors),
        failing_tests,
    })
}

/// How long a reload waits for requests to release a replaced set before leaving it to them.
const RETIRE_WAIT: Duration = Duration::from_secs(1);

/// Frees a replaced set here, on the reloading thread, once the requests still deciding with it
/// have released it: freeing a large set takes milliseconds (17 ms median for 1,000 files, as
/// `benches/reload.rs` measured in the checks that freed one before this existed), which the
/// request that happened to hold the last reference would otherwise pay. Nothing can take a new reference to `replaced` (it is no longer in the
/// `ArcSwap`, whose swap has turned borrowed guards into counted references), so a count of one
/// means this is the last.
fn retire(replaced: Arc<PolicySet>) {
    let deadline = Instant::now() + RETIRE_WAIT;
    let mut spins = 0u32;
    while Arc::strong_count(&replaced) > 1 && Instant::now() < deadline {
        if spins < 100 {
            spins += 1;
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(replaced);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    const READ: &str = "agent_policy:\n  name: clerks\n  principals: {roles: [clerk]}\n  rules:\n    - name: read\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n";
    const WRITE: &str = "agent_policy:\n  name: clerks\n  principals: {roles: [clerk]}\n  rules:\n    - name: write\n      effect: allow\n      actions: [write]\n      kinds: [Doc]\n      when: R.attr.owner == P.id\n";
    const BROKEN: &str = "agent_policy:\n  name: clerks\n  principals: {roles: [clerk]}\n  rules:\n    - name: write\n      effect: allow\n      actions: [write]\n      kinds: [Doc]\n      when: R.attr.owner == Q.id\n";

    /// What was recorded since the last snapshot, as `name{label=value,...}` -> value: a
    /// counter's increase, a gauge's value (0 if not set since), a histogram's record count.
    fn recorded(snapshotter: &Snapshotter) -> BTreeMap<String, f64> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let value = match value {
                    DebugValue::Counter(n) => n as f64,
                    DebugValue::Gauge(v) => v.into_inner(),
                    DebugValue::Histogram(values) => values.len() as f64,
                };
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    #[test]
    fn reload_publishes_new_sets_keeps_the_last_good_one_and_says_so_in_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clerks.yaml");
        std::fs::write(&file, READ).unwrap();
        let info = |version: &str| format!("{POLICY_INFO}{{version={version}}}");
        // Opening publishes the first version.
        let opening = DebuggingRecorder::new();
        let opened = opening.snapshotter();
        let first = metrics::with_local_recorder(&opening, || {
            PolicyStore::open(dir.path())
                .unwrap()
                .current()
                .version
                .clone()
        });
        assert_eq!(recorded(&opened).get(&info(&first)), Some(&1.0));

        // A snapshot resets gauges: each one below covers the steps since the last, and none is
        // taken where a reset would hide a gauge the code must set.
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let store = PolicyStore::open(dir.path()).unwrap();
            assert_eq!(store.reload(), ReloadOutcome::Unchanged(first.clone()));

            std::fs::write(&file, WRITE).unwrap();
            let ReloadOutcome::Published(second) = store.reload() else {
                panic!("a good change is published")
            };
            assert_eq!(store.current().version, second);
            let status = store.status();
            assert_eq!(
                (status.active_version.as_str(), status.reloads_ok),
                (second.as_str(), 1)
            );
            let published = recorded(&snapshotter);
            assert_eq!(published.get(&info(&first)), Some(&0.0), "{published:?}");
            assert_eq!(published.get(&info(&second)), Some(&1.0), "{published:?}");
            assert_eq!(
                published.get(&format!("{RELOADS_TOTAL}{{result=ok}}")),
                Some(&1.0),
                "one publication, the unchanged reload none: {published:?}"
            );
            assert_eq!(published.get(&format!("{RELOAD_SECONDS}{{}}")), Some(&1.0));

            std::fs::write(&file, BROKEN).unwrap();
            let ReloadOutcome::Rejected(error) = store.reload() else {
                panic!("a broken change is rejected")
            };
            assert!(error.contains("clerks.yaml:9: "), "{error}");
            assert!(error.contains("unknown variable 'Q'"), "{error}");
            assert_eq!(store.current().version, second, "the last good set stays");
            let status = store.status();
            assert_eq!(status.last_error.as_deref(), Some(error.as_str()));
            assert!(status.last_error_at.is_some());
            assert_eq!((status.reloads_ok, status.reloads_failed), (1, 1));
            let rejected = recorded(&snapshotter);
            assert_eq!(
                rejected.get(&format!("{RELOADS_TOTAL}{{result=failed}}")),
                Some(&1.0)
            );
            assert_eq!(
                rejected.get(&format!("{RELOADS_TOTAL}{{result=ok}}")),
                Some(&0.0),
                "nothing published: {rejected:?}"
            );
            assert_eq!(rejected.get(&format!("{RELOAD_SECONDS}{{}}")), Some(&0.0));

            // Put back as the active set: nothing published, and nothing wrong any more.
            std::fs::write(&file, WRITE).unwrap();
            assert_eq!(store.reload(), ReloadOutcome::Unchanged(second.clone()));
            let status = store.status();
            assert_eq!(
                (status.last_error.as_ref(), status.last_error_at),
                (None, None)
            );
            assert_eq!((status.reloads_ok, status.reloads_failed), (1, 1));

            // An emptied directory, or one that vanished, is a failed reload, not an empty set.
            std::fs::remove_file(&file).unwrap();
            let ReloadOutcome::Rejected(error) = store.reload() else {
                panic!("an empty directory is rejected")
            };
            assert!(error.contains("no policy file"), "{error}");
            assert_eq!(store.current().version, second);
            drop(dir);
            assert!(matches!(store.reload(), ReloadOutcome::Rejected(_)));
            assert_eq!(store.current().version, second);
        });
    }

    #[test]
    fn with_history_the_store_keeps_the_files_and_the_set_the_last_reload_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clerks.yaml");
        std::fs::write(&file, READ).unwrap();
        assert!(PolicyStore::open(dir.path()).unwrap().history().is_none());
        let options = StoreOptions {
            keep_history: true,
            ..StoreOptions::default()
        };
        let store = PolicyStore::open_with(dir.path(), options).unwrap();
        let first = store.history().unwrap();
        assert!(first.previous.is_none());
        assert_eq!(first.active.set.version, store.current().version);
        assert_eq!(
            first.active.files,
            vec![("clerks.yaml".into(), READ.to_string())]
        );

        std::fs::write(&file, WRITE).unwrap();
        assert!(matches!(store.reload(), ReloadOutcome::Published(_)));
        std::fs::write(&file, BROKEN).unwrap();
        assert!(matches!(store.reload(), ReloadOutcome::Rejected(_)));
        let second = store.history().unwrap();
        assert_eq!(second.active.set.version, store.current().version);
        assert_eq!(
            second.active.files[0].1, WRITE,
            "a rejected set is no revision"
        );
        let previous = second.previous.as_ref().unwrap();
        assert_eq!(previous.set.version, first.active.set.version);
        assert_eq!(previous.files[0].1, READ);
    }
}
