//! When to re-read what lives in files — the policy directory, the JWKS file, the TLS
//! certificates — and how a failed attempt is reported. One [`Reloader`] thread per [`Source`]
//! reloads it on file events (notify: inotify on Linux), debounced; on a periodic poll, a fallback
//! for missed events; and on request (SIGHUP). What a reload does is the source's business
//! ([`Source::refresh`]); every reload runs on the reloader's thread, never on the request path.
//!
//! The ways operators replace files, and what catches each:
//! - **Editors and scripts** write a temp file and rename it over the original, or rewrite it in
//!   place: events under the watched path (a directory is watched recursively).
//! - **Kubernetes ConfigMap and Secret volumes**: the files are symlinks into `..data`, itself a
//!   symlink to a timestamped directory; an update creates a new timestamped directory and
//!   renames a new `..data` symlink over the old one. Under a watched directory the recursive
//!   watch sees it (hidden entries are not filtered out of the events, only out of loading); a
//!   watched file sees its old target go away.
//! - **git-sync** (or any deployment by symlink swap): the configured path, or a directory on
//!   the way to it, is a symlink that gets replaced. The directory holding each such symlink (and
//!   the one holding the path itself, for a directory renamed into place) is watched
//!   non-recursively; when the configured path comes to name another file or directory, the
//!   watches are set up again on the new one before the reload.
//!
//! Events arrive in bursts (a ConfigMap update is a dozen of them); after an event the thread
//! waits for a quiet period (the debounce) before reloading, but never defers a reload more than
//! ten quiet periods past the first event of a burst, so a directory that never stops changing is
//! still picked up. Reads (open, close without writing) are not changes: the reload's own reads
//! must not trigger another reload.
//!
//! Failures are reported one way for every source: the first attempt that meets a given error
//! logs it at error level (the source keeps what it has), repeats of the same error are logged at
//! debug, and the first good attempt after a failure says so at info. Sources count their own
//! metrics (`{result="ok"|"failed"}`) and log what they published.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

/// Something reloaded from files.
pub trait Source: Send + Sync + 'static {
    /// What it is, for logs: `policies`, `JWKS`, `TLS certificates`.
    fn name(&self) -> &'static str;
    /// The files or directories whose changes matter (watched when watching is on).
    fn paths(&self) -> Vec<PathBuf>;
    /// Reads the files again and publishes what changed; on any error keeps what it has and
    /// says why. Blocks for as long as that takes (it runs on the reloader's thread).
    fn refresh(&self) -> Outcome;
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Something new was published.
    Published,
    /// The files hold what is already published.
    Unchanged,
    /// The files are broken or unreadable; what was published stays. The message names the
    /// file (and line) and the problem.
    Rejected(String),
}

/// How a reload thread decides to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOptions {
    /// Watch the paths for changes. Off: reload only on the poll and on request.
    pub watch: bool,
    /// Quiet period after the last file event of a burst before reloading.
    pub debounce: Duration,
    /// Reload this often whatever the events say; `None` never. Unchanged files cost a read and
    /// a hash, not a compile.
    pub poll: Option<Duration>,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            watch: true,
            debounce: Duration::from_millis(200),
            poll: Some(Duration::from_secs(30)),
        }
    }
}

/// A burst is reloaded at the latest this many quiet periods after its first event.
const MAX_DEFER_FACTOR: u32 = 10;
/// How soon to try again to watch a directory that could not be watched (it was missing,
/// mid-swap, or the inotify watch limit was reached).
const REWATCH_RETRY: Duration = Duration::from_secs(2);

enum Message {
    Fs(notify::Result<notify::Event>),
    ReloadNow,
    Stop,
}

/// The reload thread of a [`Source`]. Stops when dropped (a reload in progress finishes first).
pub struct Reloader {
    tx: mpsc::Sender<Message>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Starts the thread, and with `options.watch` the file watches (a path that cannot be
    /// watched yet is logged and retried; it never stops the daemon). Returns once the watches
    /// are set up; the thread then reloads once, to catch up with changes made since the source
    /// was loaded.
    pub fn start<S: Source>(source: Arc<S>, options: ReloadOptions) -> std::io::Result<Reloader> {
        let source: Arc<dyn Source> = source;
        let (tx, rx) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let paths = source
            .paths()
            .iter()
            .map(std::path::absolute)
            .collect::<std::io::Result<Vec<_>>>()?;
        let name = source.name();
        let worker = Worker {
            source,
            options,
            paths,
            tx: tx.clone(),
            counts: Arc::clone(&counts),
            watcher: None,
            layouts: None,
            retry_at: None,
            failing: None,
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(thread_name(name))
            .spawn(move || worker.run(rx, ready_tx))?;
        // Changes made once `start` has returned must be seen: wait for the watches. (An error
        // means the thread died; the daemon goes on serving the set it has.)
        let _ = ready_rx.recv();
        Ok(Reloader {
            tx,
            counts,
            thread: Some(thread),
        })
    }

    /// Asks for a reload now, skipping the debounce (SIGHUP). Returns at once.
    pub fn reload_now(&self) {
        let _ = self.tx.send(Message::ReloadNow);
    }

    /// Reloads the thread has run (from events, the poll or requests), finished or not.
    pub fn attempts(&self) -> u64 {
        self.counts.started.load(Ordering::Relaxed)
    }

    /// Reloads the thread has finished: their outcome is recorded (published, unchanged or
    /// rejected), so files changed from now on are read by a later one.
    pub fn finished(&self) -> u64 {
        self.counts.finished.load(Ordering::Acquire)
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
    }
}

/// Identity of a file (device, inode): tells a directory renamed into place from the old one.
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> FileId {
    (0, 0)
}

/// Where changes to one watched path (a directory or a file) can show up, as of one look at the
/// file system.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// The configured path, absolute but not resolved: events under it are watched (a directory
    /// recursively) and always matter.
    dir: PathBuf,
    /// What it resolves to and its identity; `None` while it is missing. When this changes, the
    /// configured path names another file or directory: watch again.
    resolved: Option<(PathBuf, FileId)>,
    /// Symlinks on the way to the path (the path itself included), outermost first: replacing
    /// one of them changes what the configured path names.
    links: Vec<PathBuf>,
    /// Directories watched non-recursively: the one holding `dir` and those holding `links`.
    parents: Vec<PathBuf>,
}

impl Layout {
    fn of(dir: &Path) -> Layout {
        let resolved = std::fs::canonicalize(dir)
            .and_then(|path| std::fs::metadata(&path).map(|meta| (path, file_id(&meta))))
            .ok();
        let mut links: Vec<PathBuf> = dir
            .ancestors()
            .filter(|p| {
                std::fs::symlink_metadata(p).is_ok_and(|meta| meta.file_type().is_symlink())
            })
            .map(Path::to_path_buf)
            .collect();
        links.reverse();
        let mut parents: Vec<PathBuf> = Vec::new();
        for parent in std::iter::once(dir)
            .chain(links.iter().map(PathBuf::as_path))
            .filter_map(Path::parent)
        {
            if !parent.as_os_str().is_empty() && !parents.iter().any(|p| p == parent) {
                parents.push(parent.to_path_buf());
            }
        }
        Layout {
            dir: dir.to_path_buf(),
            resolved,
            links,
            parents,
        }
    }

    /// Whether an event on `path` can change what the directory holds: anything under the
    /// directory, the directory itself, or a symlink on the way to it (events from the parent
    /// watches about their other entries do not).
    fn concerns(&self, path: &Path) -> bool {
        path.starts_with(&self.dir) || self.links.iter().any(|link| link == path)
    }
}

/// Whether a file event is a change worth a reload.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// A run of file events being waited out.
#[derive(Debug, Clone, Copy)]
struct Burst {
    first: Instant,
    deadline: Instant,
}

/// Reloads started and finished, for [`Reloader::attempts`] and [`Reloader::finished`].
#[derive(Default)]
struct Counts {
    started: AtomicU64,
    finished: AtomicU64,
}

struct Worker {
    source: Arc<dyn Source>,
    options: ReloadOptions,
    /// The configured paths, made absolute.
    paths: Vec<PathBuf>,
    /// For the notify event handler.
    tx: mpsc::Sender<Message>,
    counts: Arc<Counts>,
    watcher: Option<RecommendedWatcher>,
    /// The layouts (one per path) the watches were set up for.
    layouts: Option<Vec<Layout>>,
    /// When to try again to set up watches that failed.
    retry_at: Option<Instant>,
    /// The error the last attempt met, if it failed.
    failing: Option<String>,
}

/// A thread name of at most 15 bytes (Linux truncates longer ones): `verdict-reload-` is the rest.
fn thread_name(name: &str) -> String {
    name.split_whitespace().next().unwrap_or("").to_lowercase()
}

impl Worker {
    fn name(&self) -> &'static str {
        self.source.name()
    }

    fn shown_paths(&self) -> String {
        let shown: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        shown.join(", ")
    }

    fn run(mut self, rx: mpsc::Receiver<Message>, ready: mpsc::SyncSender<()>) {
        if self.options.watch {
            self.rewatch();
        }
        // Said before `start` returns: whoever started it finds the line in the logs.
        tracing::info!(
            what = self.name(),
            paths = %self.shown_paths(),
            watch = self.options.watch,
            debounce_ms = self.options.debounce.as_millis() as u64,
            poll_secs = self.options.poll.map(|p| p.as_secs_f64()).unwrap_or(0.0),
            "reloader started"
        );
        let _ = ready.send(());
        // The source was loaded before the watches existed: catch up with changes made between.
        let mut burst: Option<Burst> = self.options.watch.then(|| {
            let now = Instant::now();
            Burst {
                first: now,
                deadline: now,
            }
        });
        let mut next_poll = self.options.poll.map(|p| Instant::now() + p);
        loop {
            let wake = [burst.map(|b| b.deadline), next_poll, self.retry_at]
                .into_iter()
                .flatten()
                .min();
            let message = match wake {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(message) => Some(message),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(message) => Some(message),
                    Err(_) => break,
                },
            };
            let now = Instant::now();
            let mut reload = false;
            let mut requested = false;
            match message {
                Some(Message::Stop) => break,
                Some(Message::ReloadNow) => {
                    tracing::info!(what = self.name(), "reload requested");
                    reload = true;
                    requested = true;
                }
                Some(Message::Fs(Ok(event))) if self.matters(&event) => {
                    tracing::debug!(what = self.name(), kind = ?event.kind, paths = ?event.paths, "files changed");
                    if self.replaces_a_path(&event) {
                        // Watch again whatever the layout says: a directory deleted and created
                        // again can come back with the same inode number.
                        self.layouts = None;
                    }
                    burst = Some(self.extend(burst, now));
                }
                Some(Message::Fs(Ok(_))) => {}
                Some(Message::Fs(Err(e))) => {
                    // A lost watch or an overflowing queue: look again at everything.
                    tracing::warn!(what = self.name(), error = %e, "watch error; reloading and watching again");
                    self.layouts = None;
                    burst = Some(self.extend(burst, now));
                }
                None => {}
            }
            if burst.is_some_and(|b| b.deadline <= now) {
                reload = true;
            }
            if next_poll.is_some_and(|at| at <= now) {
                reload = true;
            }
            if self.retry_at.is_some_and(|at| at <= now) {
                // Reload only once the paths are watched again: what changed meanwhile went
                // unseen. (While they cannot be, reloading every retry would only repeat the error.)
                self.rewatch();
                reload |= self.retry_at.is_none();
            }
            if reload {
                if self.options.watch {
                    self.rewatch();
                }
                // Events queued until now are covered by this reload; later ones start a new burst.
                burst = None;
                self.counts.started.fetch_add(1, Ordering::Relaxed);
                let outcome = self.source.refresh();
                let name = match &outcome {
                    Outcome::Published => "published",
                    Outcome::Unchanged => "unchanged",
                    Outcome::Rejected(_) => "rejected",
                };
                if requested {
                    tracing::info!(what = self.name(), outcome = name, "requested reload done");
                } else {
                    tracing::debug!(what = self.name(), outcome = name, "reload done");
                }
                self.report(outcome);
                self.counts.finished.fetch_add(1, Ordering::Release);
                next_poll = self.options.poll.map(|p| Instant::now() + p);
            }
        }
        tracing::debug!(what = self.name(), "reloader stopped");
    }

    /// The one way a reload's failure is told: once per error, at error level; its end at info.
    fn report(&mut self, outcome: Outcome) {
        let name = self.name();
        match outcome {
            Outcome::Rejected(error) if self.failing.as_ref() == Some(&error) => {
                tracing::debug!(what = name, "reload rejected again, for the same reason");
            }
            Outcome::Rejected(error) => {
                tracing::error!(
                    what = name,
                    "reload rejected, keeping the active {name}: {error}"
                );
                self.failing = Some(error);
            }
            Outcome::Published | Outcome::Unchanged => {
                if self.failing.take().is_some() {
                    tracing::info!(
                        what = name,
                        "the files are good again; the reload error is over"
                    );
                }
            }
        }
    }

    fn matters(&self, event: &notify::Event) -> bool {
        if !is_change(&event.kind) {
            return false;
        }
        if event.need_rescan() || event.paths.is_empty() {
            return true;
        }
        match &self.layouts {
            Some(layouts) => event
                .paths
                .iter()
                .any(|p| layouts.iter().any(|layout| layout.concerns(p))),
            None => true,
        }
    }

    /// Whether the event is about a watched path itself or a symlink on the way to it (created,
    /// removed, renamed), rather than about what a directory holds.
    fn replaces_a_path(&self, event: &notify::Event) -> bool {
        let Some(layouts) = &self.layouts else {
            return false;
        };
        event.paths.iter().any(|p| {
            layouts
                .iter()
                .any(|layout| *p == layout.dir || layout.links.iter().any(|link| link == p))
        })
    }

    fn extend(&self, burst: Option<Burst>, now: Instant) -> Burst {
        let first = burst.map_or(now, |b| b.first);
        let quiet = self.options.debounce;
        Burst {
            first,
            deadline: (now + quiet).min(first + quiet * MAX_DEFER_FACTOR),
        }
    }

    /// Sets the watches up again if a configured path now names another file or directory (or a
    /// symlink on the way changed, or the last attempt failed).
    fn rewatch(&mut self) {
        let layouts: Vec<Layout> = self.paths.iter().map(|p| Layout::of(p)).collect();
        if self.watcher.is_some()
            && self.retry_at.is_none()
            && self.layouts.as_ref() == Some(&layouts)
        {
            return;
        }
        if let Some(old) = &self.layouts {
            for (old, new) in old.iter().zip(&layouts).filter(|(old, new)| old != new) {
                tracing::info!(
                    what = self.name(),
                    path = %old.dir.display(),
                    resolved = ?new.resolved.as_ref().map(|(p, _)| p),
                    "a watched path changed place; watching it again"
                );
            }
        }
        // The old watches go first: the inotify instances are a limited resource.
        self.watcher = None;
        let failing = self.retry_at.is_some();
        match self.watch(&layouts) {
            Ok((watcher, Ok(()))) => {
                if failing {
                    tracing::info!(what = self.name(), paths = %self.shown_paths(), "watching again");
                }
                self.watcher = Some(watcher);
                self.retry_at = None;
            }
            Ok((watcher, Err(e))) => {
                // The parents are watched: the path's return is noticed at once.
                self.watcher = Some(watcher);
                self.cannot_watch(&e, failing);
            }
            Err(e) => self.cannot_watch(&e, failing),
        }
        self.layouts = Some(layouts);
    }

    fn cannot_watch(&mut self, e: &notify::Error, failing: bool) {
        if failing {
            tracing::debug!(what = self.name(), paths = %self.shown_paths(), error = %e, "still cannot watch");
        } else {
            tracing::warn!(
                what = self.name(),
                paths = %self.shown_paths(),
                error = %e,
                retry_secs = REWATCH_RETRY.as_secs(),
                "cannot watch; retrying, and relying on the poll and SIGHUP meanwhile"
            );
        }
        self.retry_at = Some(Instant::now() + REWATCH_RETRY);
    }

    /// A watcher on the parents (best effort: without them a swap of a path itself is only seen
    /// by the poll), and the outcome of watching the paths themselves (the first error, if any).
    fn watch(
        &self,
        layouts: &[Layout],
    ) -> notify::Result<(RecommendedWatcher, notify::Result<()>)> {
        let tx = self.tx.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(Message::Fs(event));
        })?;
        let mut parents: Vec<&PathBuf> = Vec::new();
        for parent in layouts.iter().flat_map(|l| &l.parents) {
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
        for parent in parents {
            if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
                tracing::warn!(what = self.name(), dir = %parent.display(), error = %e, "cannot watch a parent directory");
            }
        }
        let mut outcome = Ok(());
        for layout in layouts {
            if let Err(e) = watcher.watch(&layout.dir, RecursiveMode::Recursive) {
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
        }
        Ok((watcher, outcome))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn layout_finds_the_symlinks_on_the_way_and_watches_their_parents() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        std::fs::create_dir_all(root.join("rev-1/policies")).unwrap();
        std::fs::create_dir_all(root.join("rev-2/policies")).unwrap();
        symlink("rev-1", root.join("current")).unwrap();
        let dir = root.join("current/policies");

        let layout = Layout::of(&dir);
        assert_eq!(layout.links, vec![root.join("current")]);
        assert_eq!(layout.parents, vec![root.join("current"), root.clone()]);
        assert_eq!(
            layout.resolved.as_ref().map(|(p, _)| p.clone()),
            Some(root.join("rev-1/policies"))
        );
        assert!(layout.concerns(&root.join("current/policies/a.yaml")));
        assert!(layout.concerns(&root.join("current")));
        assert!(!layout.concerns(&root.join("current-tmp")));
        assert!(!layout.concerns(&root.join("rev-2/policies/a.yaml")));

        // A git-sync style swap: the same configured path now names another directory.
        symlink("rev-2", root.join("current-tmp")).unwrap();
        std::fs::rename(root.join("current-tmp"), root.join("current")).unwrap();
        let swapped = Layout::of(&dir);
        assert_ne!(swapped, layout);
        assert_eq!(
            swapped.resolved.map(|(p, _)| p),
            Some(root.join("rev-2/policies"))
        );
    }

    #[test]
    fn a_directory_renamed_into_place_changes_the_layout() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies");
        std::fs::create_dir(&dir).unwrap();
        let before = Layout::of(&dir);
        assert!(before.links.is_empty());
        std::fs::create_dir(root.path().join("policies.new")).unwrap();
        std::fs::rename(&dir, root.path().join("policies.old")).unwrap();
        std::fs::rename(root.path().join("policies.new"), &dir).unwrap();
        assert_ne!(Layout::of(&dir), before);
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(Layout::of(&dir).resolved, None);
    }

    #[test]
    fn reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(
            notify::event::ModifyKind::Name(notify::event::RenameMode::Both)
        )));
        assert!(is_change(&EventKind::Other));
    }
}
