//! Test support: a real Verdict server on an ephemeral loopback port, and its gRPC client; the
//! real binary as a daemon; the rule for tests that need an outside tool (skip, or fail in CI).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use verdict::reload::{ReloadOptions, Reloader};
use verdict::server::proto::admin_client::AdminClient;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::server::Limits;
use verdict::server::ServerOptions;
use verdict::store::PolicyStore;

/// A gRPC Check request from its JSON form: the body `POST /v1/check` and
/// `verdict check --request` take.
pub fn check_message(body: serde_json::Value) -> verdict::server::proto::CheckRequest {
    let body: verdict::server::json::CheckBody =
        serde_json::from_value(body).expect("a check request body");
    let call = body.into_call();
    let mut message = verdict::server::convert::to_proto(&call.request);
    message.token = call.token;
    message.explain = call.explain;
    message
}

/// The metrics this test process records: `metrics_util`'s `DebuggingRecorder`, installed as the
/// process's recorder by the first call (before the code under test records anything).
fn snapshotter() -> &'static metrics_util::debugging::Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
        std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder in a test process");
        snapshotter
    })
}

/// Installs the recording of metrics (see [`counter`]); call before starting what records.
pub fn record_metrics() {
    snapshotter();
}

/// A counter's total since [`record_metrics`]: `name` with exactly `labels`. (A snapshot resets
/// the recorder's counters: the totals are kept here, for every test of the process.)
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    use metrics_util::debugging::DebugValue;
    /// `name{k=v,...}`, labels sorted.
    fn series<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
        let mut labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        format!("{name}{{{}}}", labels.join(","))
    }
    static TOTALS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let key = key.key();
            let labels = key.labels().map(|l| (l.key(), l.value()));
            *totals.entry(series(key.name(), labels)).or_default() += n;
        }
    }
    let wanted = series(name, labels.iter().copied());
    totals.get(&wanted).copied().unwrap_or(0)
}

/// Waits for the counter to exceed `before` (the event it counts); gives up (panics) only if it
/// never comes, after a minute.
pub async fn counter_above(name: &str, labels: &[(&str, &str)], before: u64) -> u64 {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = counter(name, labels);
        if now > before {
            return now;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "{name}{labels:?} never went past {before}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits for `done` to hold (the event a test waits for), checking every few milliseconds;
/// gives up (panics, naming `what`) only if it never comes, after a minute.
pub async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done().await {
        assert!(std::time::Instant::now() < give_up, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// [`wait_for`] for tests that are not async.
pub fn wait_for_blocking(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < give_up, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A fenced block of a Markdown text.
#[derive(Debug, Clone)]
pub struct Block {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// The info string: `sh`, `json`, or empty.
    pub info: String,
    pub content: String,
    /// The line of its closing fence.
    pub end: usize,
}

/// The fenced blocks of a Markdown text, in order.
pub fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some(Block {
                        line: i + 1,
                        info: info.trim().to_string(),
                        content: String::new(),
                        end: 0,
                    });
                }
            }
            Some(block) => {
                if line.trim_end() == "```" {
                    block.end = i + 1;
                    blocks.push(open.take().unwrap());
                } else {
                    block.content.push_str(line);
                    block.content.push('\n');
                }
            }
        }
    }
    blocks
}

/// The `sh` blocks of a Markdown text, each with the block that follows it with only blank
/// lines between, if that one is not `sh`: the output the text says the commands print.
pub fn commands_and_outputs(markdown: &str) -> Vec<(Block, Option<Block>)> {
    let lines: Vec<&str> = markdown.lines().collect();
    let blocks = fenced_blocks(markdown);
    let mut out = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if block.info != "sh" {
            continue;
        }
        let output = blocks.get(i + 1).filter(|next| {
            next.info != "sh"
                && lines[block.end..next.line - 1]
                    .iter()
                    .all(|l| l.trim().is_empty())
        });
        out.push((block.clone(), output.cloned()));
    }
    out
}

/// The part of README.md from the line `start` (a heading, or a paragraph's first words) to the
/// next heading of a level as high or higher.
pub fn readme_section(start: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find(start)
        .unwrap_or_else(|| panic!("README.md has no {start:?}"));
    let level = start.chars().take_while(|c| *c == '#').count().max(2);
    let rest = &readme[at + start.len()..];
    let end = rest
        .match_indices("\n#")
        .find(|(i, _)| {
            let hashes = rest[i + 1..].chars().take_while(|c| *c == '#').count();
            hashes <= level && rest[i + 1 + hashes..].starts_with(' ')
        })
        .map_or(rest.len(), |(i, _)| i);
    readme[at..at + start.len() + end].to_string()
}

/// Runs `script` with `sh` in `dir`, with the `verdict` under test first on PATH, as a reader
/// who installed it would.
pub fn shell(script: &str, dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let bin = dir.join(".verdict-bin");
    if !bin.join("verdict").exists() {
        std::fs::create_dir_all(&bin).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(BIN, bin.join("verdict")).unwrap();
    }
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("VERDICT_SERVER");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("sh runs")
}

/// Runs `script` (a path, or a file of the Python package's `clients/python`) with `python3` in
/// `dir`, the working tree's package first on its path (not an installed copy); kills it after
/// `limit`.
pub fn python(
    script: &Path,
    args: &[&str],
    dir: &Path,
    limit: std::time::Duration,
) -> std::process::Output {
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let mut child = std::process::Command::new("python3")
        .arg(package.join(script))
        .args(args)
        .current_dir(dir)
        .env("PYTHONPATH", &package)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

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
        Self::start_with_options(policies, ServerOptions::from(limits)).await
    }

    pub async fn start_with_options(policies: &Path, options: ServerOptions) -> TestServer {
        let store = Arc::new(PolicyStore::open(policies).expect("policies load"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&store);
        let handle = tokio::spawn(async move {
            verdict::server::serve(listener, served, options, async {
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

/// The real `verdict` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_verdict");

/// A `verdict serve` process on ephemeral ports; killed when dropped. Knows the addresses it
/// announced and keeps every log line it wrote.
///
/// Its stderr goes to a file, not a pipe read by a thread: a line the daemon wrote before an event
/// the test has seen (an answer, a metric, a status) is in the file when the test reads it, where
/// a reader thread could still be behind.
pub struct Daemon {
    pub child: std::process::Child,
    /// The gRPC address.
    pub addr: String,
    /// The Prometheus address, when `--metrics-listen` was given.
    pub metrics_addr: Option<String>,
    /// The HTTP/JSON address, when `--http-listen` was given.
    pub http_addr: Option<String>,
    /// The web UI's address, when `--ui-listen` was given.
    pub ui_addr: Option<String>,
    /// The file its stderr goes to (in a directory removed with the daemon).
    log_file: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// The complete lines of a log file (not a last line still being written).
fn read_lines(file: &Path) -> Vec<String> {
    let bytes = std::fs::read(file).unwrap_or_default();
    let complete = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    String::from_utf8_lossy(&bytes[..complete])
        .lines()
        .map(str::to_string)
        .collect()
}

/// A field of a log line, text (`name=value`) or JSON (`"fields": {"name": "value"}`): a line's
/// structured part, never its message text.
pub fn field(line: &str, name: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"][name].as_str().map(str::to_string);
    }
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    Some(
        line[at..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .to_string(),
    )
}

impl Daemon {
    /// Starts `verdict serve --listen 127.0.0.1:0 --policies DIR FLAGS...` with text logs at info,
    /// and waits until it is healthy.
    pub fn start(policies: &Path, flags: &[&str]) -> Daemon {
        Self::start_with_env(policies, flags, &[("VERDICT_LOG", "info")])
    }

    /// As [`Daemon::start`], with environment variables. The addresses come from the `listener`
    /// and `addr` fields of the daemon's announcements (text or JSON logs); the daemon is ready
    /// once `GET /healthz` on its metrics listener (added on an ephemeral port unless `flags`
    /// set one) answers 200, as a kubelet probe would see it.
    #[allow(clippy::zombie_processes)] // on a failed start the process is killed; Drop waits otherwise
    pub fn start_with_env(policies: &Path, flags: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log_dir = tempfile::tempdir().unwrap();
        let log_file = log_dir.path().join("stderr.log");
        let mut command = std::process::Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
            .arg(policies)
            .args(flags)
            .env_remove("VERDICT_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log_file).unwrap());
        if !flags.contains(&"--metrics-listen") {
            command.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("daemon starts");
        let (mut addr, mut metrics_addr, mut http_addr, mut ui_addr) = (None, None, None, None);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let failed = |child: &mut std::process::Child, why: &str| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not start ({why}); it said:\n{}",
                read_lines(&log_file).join("\n")
            );
        };
        let mut seen = 0;
        while addr.is_none() || metrics_addr.is_none() {
            let lines = read_lines(&log_file);
            for line in &lines[seen..] {
                match field(line, "listener").as_deref() {
                    Some("grpc") => addr = field(line, "addr"),
                    Some("metrics") => metrics_addr = field(line, "addr"),
                    Some("http") => http_addr = field(line, "addr"),
                    Some("ui") => ui_addr = field(line, "addr"),
                    _ => {}
                }
            }
            seen = lines.len();
            if addr.is_some() && metrics_addr.is_some() {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                failed(&mut child, "it exited");
            }
            if std::time::Instant::now() > give_up {
                failed(&mut child, "no address announced");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let healthz = format!("http://{}/healthz", metrics_addr.as_ref().unwrap());
        loop {
            if let Ok(response) = ureq::get(&healthz).call() {
                if response.status() == 200 {
                    break;
                }
            }
            if child.try_wait().unwrap().is_some() {
                failed(&mut child, "it exited");
            }
            if std::time::Instant::now() > give_up {
                failed(&mut child, "never healthy");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Daemon {
            child,
            addr: addr.unwrap(),
            metrics_addr,
            http_addr,
            ui_addr,
            log_file,
            _log_dir: log_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /metrics` on the metrics listener, as Prometheus would scrape it.
    pub fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr.as_ref().unwrap());
        ureq::get(&url)
            .call()
            .expect("/metrics answers")
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// The value of one series (`name{label="value"}` exactly as exposed), 0 while absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    /// Waits until the series' value satisfies `done` (the event it counts).
    pub async fn wait_metric(&self, series: &str, done: impl Fn(f64) -> bool) -> f64 {
        wait_for(series, || std::future::ready(done(self.metric(series)))).await;
        self.metric(series)
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        read_lines(&self.log_file)
    }

    /// The log lines containing `text`, once there are at least `count` (a metric can move
    /// before the line that reports the same event is written).
    pub fn wait_logs(&self, text: &str, count: usize) -> Vec<String> {
        let matching = || -> Vec<String> {
            self.logs()
                .into_iter()
                .filter(|l| l.contains(text))
                .collect()
        };
        wait_for_blocking(&format!("{count} log lines with {text:?}"), || {
            matching().len() >= count
        });
        matching()
    }

    /// Sends a signal (`TERM`, `HUP`...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits for the process to exit; `None` if it has not within `limit`.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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

/// A tool a test needs: what it is (with how to install it) and whether it was found.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub what: &'static str,
    pub found: bool,
}

impl Tool {
    /// `command ARGS` runs and succeeds (`grpcurl -version`, `buf --version`...).
    pub fn command(what: &'static str, command: &str, args: &[&str]) -> Tool {
        let found = std::process::Command::new(command)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Tool { what, found }
    }
}

/// A test of the `tools` binary (`harness = false`, libtest-mimic) that needs outside tools. With them
/// all, it runs. Without one, outside CI, it is listed as ignored (`[needs TOOL]` before its
/// name) and the summary counts it, so that a run shows what it did not test; in CI (`CI` set),
/// it fails, naming the missing tool: CI must run everything (`.ci/run` installs the tools).
pub fn trial(name: &str, needs: &[Tool], test: fn()) -> libtest_mimic::Trial {
    let missing: Vec<&str> = needs.iter().filter(|t| !t.found).map(|t| t.what).collect();
    if missing.is_empty() {
        return libtest_mimic::Trial::test(name, move || {
            test();
            Ok(())
        });
    }
    let why = format!("{} missing", missing.join(", "));
    if in_ci() {
        return libtest_mimic::Trial::test(name, move || {
            Err(format!("{why}, and CI must run this test (.ci/run installs it)").into())
        });
    }
    let kind = needs
        .iter()
        .filter(|t| !t.found)
        .map(|t| t.what.split_whitespace().next().unwrap_or(t.what))
        .collect::<Vec<_>>()
        .join(", ");
    libtest_mimic::Trial::test(name, move || Err(why.into()))
        .with_kind(format!("needs {kind}"))
        .with_ignored_flag(true)
}

/// Runs the trials of the `tools` binary as `cargo test` runs tests.
pub fn run(trials: Vec<libtest_mimic::Trial>) -> std::process::ExitCode {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit_code()
}

/// What kubelet does to a ConfigMap volume: every key is a symlink `key -> ..data/key`, `..data`
/// a symlink to a timestamped directory; an update writes a new timestamped directory, points a
/// temp symlink at it, renames the temp symlink over `..data`, removes the old directory, and
/// adjusts the key symlinks for keys added or removed.
#[cfg(unix)]
pub struct ConfigMapVolume {
    pub dir: PathBuf,
    generation: u32,
    keys: Vec<String>,
}

#[cfg(unix)]
impl ConfigMapVolume {
    pub fn create(dir: &Path, files: &[(&str, &str)]) -> ConfigMapVolume {
        let mut volume = ConfigMapVolume {
            dir: dir.to_path_buf(),
            generation: 0,
            keys: Vec::new(),
        };
        volume.update(files);
        volume
    }

    fn timestamped(generation: u32) -> String {
        format!("..2026_11_23_01_02_03.{generation:09}")
    }

    pub fn update(&mut self, files: &[(&str, &str)]) {
        use std::os::unix::fs::symlink;
        self.generation += 1;
        let new = Self::timestamped(self.generation);
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        for (name, text) in files {
            std::fs::write(self.dir.join(&new).join(name), text).unwrap();
        }
        symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if self.generation > 1 {
            std::fs::remove_dir_all(self.dir.join(Self::timestamped(self.generation - 1))).unwrap();
        }
        let keys: Vec<String> = files.iter().map(|(name, _)| name.to_string()).collect();
        for key in &keys {
            if !self.keys.contains(key) {
                symlink(format!("..data/{key}"), self.dir.join(key)).unwrap();
            }
        }
        for key in &self.keys {
            if !keys.contains(key) {
                std::fs::remove_file(self.dir.join(key)).unwrap();
            }
        }
        self.keys = keys;
    }
}

/// Every Check and PlanFilter case of the bundled clinic suite (policies/clinic/clinic_test.yaml)
/// as the JSON scenarios the client tests read (`{"checks": [...], "plans": [...]}`, see
/// clients/ruby/test/client_test.rb), and how many there are. Plans expected to fail are left out.
pub fn clinic_scenarios() -> (serde_json::Value, usize) {
    use serde_json::json;
    use verdict::suite::{self, ExpectedEffect, ExpectedPlan};
    let suite = suite::load(&bundled_policies().join("clinic/clinic_test.yaml"))
        .expect("the clinic suite parses");
    let effect = |e: &ExpectedEffect| match e {
        ExpectedEffect::Allow => "allow",
        ExpectedEffect::Deny => "deny",
    };
    let checks: Vec<serde_json::Value> = suite
        .tests
        .iter()
        .map(|case| {
            let request = suite.check_request(case).unwrap();
            json!({
                "name": case.name,
                "principal": request.principal,
                "resource": request.resources[0].resource,
                "context": case.context,
                "expect": case.expect.iter().map(|(a, e)| (a.clone(), json!(effect(e)))).collect::<serde_json::Map<_, _>>(),
                "rules": case.rules,
                "reasons": case.reasons,
            })
        })
        .collect();
    let plans: Vec<serde_json::Value> = suite
        .plans
        .iter()
        .filter_map(|case| {
            let expect = match case.expect {
                ExpectedPlan::AlwaysAllowed => "always_allowed",
                ExpectedPlan::AlwaysDenied => "always_denied",
                ExpectedPlan::Conditional => "conditional",
                ExpectedPlan::Error => return None,
            };
            let request = suite.plan_request(case).unwrap();
            Some(json!({
                "name": case.name,
                "principal": request.principal,
                "kind": case.kind,
                "action": case.action,
                "context": case.context,
                "known_attr": case.known_attr,
                "expect": expect,
                "filter": case.filter,
            }))
        })
        .collect();
    let count = checks.len() + plans.len();
    (json!({"checks": checks, "plans": plans}), count)
}
