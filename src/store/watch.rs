//! When to reload the policy directory: file events (notify: inotify on Linux), debounced; a
//! periodic poll as a fallback for missed events; and explicit requests (SIGHUP). Every reload
//! runs [`PolicyStore::reload`] on this module's own thread, never on the request path.
//!
//! The ways operators replace policy files, and what catches each:
//! - **Editors and scripts** write a temp file and rename it over the policy, or rewrite it in
//!   place: events under the directory, watched recursively.
//! - **Kubernetes ConfigMap volumes**: the files are symlinks into `..data`, itself a symlink to a
//!   timestamped directory; an update creates a new timestamped directory and renames a new
//!   `..data` symlink over the old one. All of it happens in the directory itself, so the
//!   recursive watch sees it; hidden entries are not filtered out of the events (only out of
//!   loading).
//! - **git-sync** (or any deployment by symlink swap): the configured path, or a directory on
//!   the way to it, is a symlink that gets replaced. The directory holding each such symlink (and
//!   the one holding the policy directory, for a directory renamed into place) is watched
//!   non-recursively; when the configured path comes to name another directory, the watches are
//!   set up again on the new one before the reload.
//!
//! Events arrive in bursts (a ConfigMap update is a dozen of them); after an event the thread
//! waits for a quiet period (the debounce) before reloading, but never defers a reload more than
//! ten quiet periods past the first event of a burst, so a directory that never stops changing is
//! still picked up. Reads (open, close without writing) are not changes: the reload's own reads
//! must not trigger another reload.
//!
//! Knows nothing of compiling or gRPC: what a reload does is [`PolicyStore::reload`]'s business.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::PolicyStore;

/// How the reload thread decides to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOptions {
    /// Watch the policy directory for changes. Off: reload only on the poll and on request.
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

/// The reload thread of a [`PolicyStore`]. Stops when dropped (a reload in progress finishes
/// first).
pub struct Reloader {
    tx: mpsc::Sender<Message>,
    attempts: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Starts the thread, and with `options.watch` the file watches (a directory that cannot be
    /// watched yet is logged and retried; it never stops the daemon). Returns once the watches
    /// are set up; the thread then reloads once, to catch up with changes made since the store
    /// was loaded.
    pub fn start(store: Arc<PolicyStore>, options: ReloadOptions) -> std::io::Result<Reloader> {
        let (tx, rx) = mpsc::channel();
        let attempts = Arc::new(AtomicU64::new(0));
        let dir = std::path::absolute(store.dir())?;
        let worker = Worker {
            store,
            options,
            dir,
            tx: tx.clone(),
            attempts: Arc::clone(&attempts),
            watcher: None,
            layout: None,
            retry_at: None,
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("verdict-reload".into())
            .spawn(move || worker.run(rx, ready_tx))?;
        // Changes made once `start` has returned must be seen: wait for the watches. (An error
        // means the thread died; the daemon goes on serving the set it has.)
        let _ = ready_rx.recv();
        Ok(Reloader {
            tx,
            attempts,
            thread: Some(thread),
        })
    }

    /// Asks for a reload now, skipping the debounce (SIGHUP). Returns at once.
    pub fn reload_now(&self) {
        let _ = self.tx.send(Message::ReloadNow);
    }

    /// Reloads the thread has run (from events, the poll or requests), finished or not.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
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

/// Where changes to the policy directory can show up, as of one look at the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// The configured directory, absolute but not resolved: events under it are watched
    /// recursively and always matter.
    dir: PathBuf,
    /// The directory it resolves to and that directory's identity; `None` while it is missing.
    /// When this changes, the configured path names another directory: watch again.
    resolved: Option<(PathBuf, FileId)>,
    /// Symlinks on the way to the directory (the directory itself included), outermost first:
    /// replacing one of them changes what the configured path names.
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

struct Worker {
    store: Arc<PolicyStore>,
    options: ReloadOptions,
    /// The configured directory, made absolute.
    dir: PathBuf,
    /// For the notify event handler.
    tx: mpsc::Sender<Message>,
    attempts: Arc<AtomicU64>,
    watcher: Option<RecommendedWatcher>,
    /// The layout the watches were set up for.
    layout: Option<Layout>,
    /// When to try again to set up watches that failed.
    retry_at: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Message>, ready: mpsc::SyncSender<()>) {
        if self.options.watch {
            self.rewatch();
        }
        let _ = ready.send(());
        tracing::info!(
            dir = %self.dir.display(),
            watch = self.options.watch,
            debounce_ms = self.options.debounce.as_millis() as u64,
            poll_secs = self.options.poll.map(|p| p.as_secs_f64()).unwrap_or(0.0),
            "policy reloader started"
        );
        // The store was loaded before the watches existed: catch up with changes made between.
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
            match message {
                Some(Message::Stop) => break,
                Some(Message::ReloadNow) => {
                    tracing::info!("reload requested");
                    reload = true;
                }
                Some(Message::Fs(Ok(event))) if self.matters(&event) => {
                    tracing::debug!(kind = ?event.kind, paths = ?event.paths, "policy files changed");
                    if self.replaces_the_directory(&event) {
                        // Watch again whatever the layout says: a directory deleted and created
                        // again can come back with the same inode number.
                        self.layout = None;
                    }
                    burst = Some(self.extend(burst, now));
                }
                Some(Message::Fs(Ok(_))) => {}
                Some(Message::Fs(Err(e))) => {
                    // A lost watch or an overflowing queue: look again at everything.
                    tracing::warn!(error = %e, "policy directory watch error; reloading and watching again");
                    self.layout = None;
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
                // Reload only once the directory is watched again: what changed meanwhile went
                // unseen. (While it cannot be, reloading every retry would only repeat the error.)
                self.rewatch();
                reload |= self.retry_at.is_none();
            }
            if reload {
                if self.options.watch {
                    self.rewatch();
                }
                // Events queued until now are covered by this reload; later ones start a new burst.
                burst = None;
                self.attempts.fetch_add(1, Ordering::Relaxed);
                self.store.reload();
                next_poll = self.options.poll.map(|p| Instant::now() + p);
            }
        }
        tracing::debug!("policy reloader stopped");
    }

    fn matters(&self, event: &notify::Event) -> bool {
        if !is_change(&event.kind) {
            return false;
        }
        if event.need_rescan() || event.paths.is_empty() {
            return true;
        }
        match &self.layout {
            Some(layout) => event.paths.iter().any(|p| layout.concerns(p)),
            None => true,
        }
    }

    /// Whether the event is about the directory itself or a symlink on the way to it (created,
    /// removed, renamed), rather than about what it holds.
    fn replaces_the_directory(&self, event: &notify::Event) -> bool {
        let Some(layout) = &self.layout else {
            return false;
        };
        event
            .paths
            .iter()
            .any(|p| *p == layout.dir || layout.links.iter().any(|link| link == p))
    }

    fn extend(&self, burst: Option<Burst>, now: Instant) -> Burst {
        let first = burst.map_or(now, |b| b.first);
        let quiet = self.options.debounce;
        Burst {
            first,
            deadline: (now + quiet).min(first + quiet * MAX_DEFER_FACTOR),
        }
    }

    /// Sets the watches up again if the configured path now names another directory (or a
    /// symlink on the way changed, or the last attempt failed).
    fn rewatch(&mut self) {
        let layout = Layout::of(&self.dir);
        if self.watcher.is_some()
            && self.retry_at.is_none()
            && self.layout.as_ref() == Some(&layout)
        {
            return;
        }
        if self.layout.as_ref().is_some_and(|old| *old != layout) {
            tracing::info!(
                dir = %self.dir.display(),
                resolved = ?layout.resolved.as_ref().map(|(p, _)| p),
                "policy directory changed place; watching it again"
            );
        }
        // The old watches go first: the inotify instances are a limited resource.
        self.watcher = None;
        let failing = self.retry_at.is_some();
        match self.watch(&layout) {
            Ok((watcher, Ok(()))) => {
                if failing {
                    tracing::info!(dir = %self.dir.display(), "watching the policy directory again");
                }
                self.watcher = Some(watcher);
                self.retry_at = None;
            }
            Ok((watcher, Err(e))) => {
                // The parents are watched: the directory's return is noticed at once.
                self.watcher = Some(watcher);
                self.cannot_watch(&e, failing);
            }
            Err(e) => self.cannot_watch(&e, failing),
        }
        self.layout = Some(layout);
    }

    fn cannot_watch(&mut self, e: &notify::Error, failing: bool) {
        if failing {
            tracing::debug!(dir = %self.dir.display(), error = %e, "still cannot watch the policy directory");
        } else {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                retry_secs = REWATCH_RETRY.as_secs(),
                "cannot watch the policy directory; retrying, and relying on the poll and SIGHUP meanwhile"
            );
        }
        self.retry_at = Some(Instant::now() + REWATCH_RETRY);
    }

    /// A watcher on the parents (best effort: without them a swap of the directory itself is
    /// only seen by the poll), and the outcome of watching the directory itself.
    fn watch(&self, layout: &Layout) -> notify::Result<(RecommendedWatcher, notify::Result<()>)> {
        let tx = self.tx.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(Message::Fs(event));
        })?;
        for parent in &layout.parents {
            if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %parent.display(), error = %e, "cannot watch a parent of the policy directory");
            }
        }
        let dir = watcher.watch(&layout.dir, RecursiveMode::Recursive);
        Ok((watcher, dir))
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
