//! Hot reload through the real gRPC server: a steady Check stream while the policy directory is
//! rewritten many times (good sets alternating with broken ones), Kubernetes ConfigMap updates,
//! editors' temp-file renames and in-place writes, git-sync symlink swaps, the poll fallback,
//! SIGHUP on the real binary, and the Admin Status RPC.
//!
//! Every test works in its own temp directory and on an ephemeral port. Tests wait for the event
//! they expect (a status change, a log field), giving up only if it never comes; write-to-active
//! latencies are printed (run with `--nocapture` to see them) as observations, not assertions.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ConfigMapVolume, TestServer};
use prost::Message as _;
use serde_json::json;
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};
use verdict::reload::ReloadOptions;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict::server::proto::{self, admin_client::AdminClient, Effect};
use verdict::store::{PolicyStore, ReloadStatus};

/// How long a test waits for an event before it declares it will never come.
const NEVER: Duration = Duration::from_secs(60);

/// A policy every set shares.
const COMMON: &str = "\
agent_policy:
  name: auditors
  principals: {roles: [auditor]}
  rules:
    - name: read-docs
      effect: allow
      actions: [read]
      kinds: [Doc]
";

/// Set A: clerks read documents of their tenant, and may not write them.
const ACCESS_A: &str = "\
agent_policy:
  name: clerks
  principals: {roles: [clerk]}
  rules:
    - name: read-docs
      effect: allow
      actions: [read]
      kinds: [Doc]
      when: R.attr.tenant == P.attr.tenant
";

/// Set B: clerks write documents of their tenant, and may no longer read them.
const ACCESS_B: &str = "\
agent_policy:
  name: clerks
  principals: {roles: [clerk]}
  rules:
    - name: write-docs
      effect: allow
      actions: [write]
      kinds: [Doc]
      when: R.attr.tenant == P.attr.tenant
";

/// A policy more (the version is a hash of documents: an empty file would not change it).
const EXTRA: &str = "capabilities: {name: extra, capabilities: []}\n";

/// A YAML syntax error: an unclosed flow mapping.
const BROKEN_YAML: &str = "\
agent_policy:
  name: clerks
  principals: {roles: [clerk]
  rules: []
";

/// A CEL condition naming an unknown variable.
const BROKEN_CEL: &str = "\
agent_policy:
  name: clerks
  principals: {roles: [clerk]}
  rules:
    - name: read-docs
      effect: allow
      actions: [read]
      kinds: [Doc]
      when: Rs.attr.tenant == P.attr.tenant
";

/// A CEL condition calling an unknown function.
const BROKEN_FUNCTION: &str = "\
agent_policy:
  name: clerks
  principals: {roles: [clerk]}
  rules:
    - name: read-docs
      effect: allow
      actions: [read]
      kinds: [Doc]
      when: sizeof(R.attr.tenant) > 0
";

/// The version a directory holding exactly these (file, text) pairs loads as.
fn version_of(files: &[(&str, &str)]) -> String {
    let mut files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    files.sort();
    verdict::policy::parse_files(Path::new("."), &files)
        .expect("a good set")
        .version
}

/// Replaces `dir/name` the way deploy scripts do: write a temp file, rename it over the old one.
/// The temp file is written next to the directory, not in it, so that the rename is the one
/// event the directory sees: one reload per write, whatever the scheduling. (Editors' temp files
/// inside the directory are `editor_saves_are_picked_up...`'s business.)
fn replace_file(dir: &Path, name: &str, text: &str) {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let parent = dir.parent().expect("a directory with a parent");
    let temp = parent.join(format!(".verdict-test-{}-{n}.tmp", std::process::id()));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
}

fn watching(debounce_ms: u64) -> ReloadOptions {
    ReloadOptions {
        watch: true,
        debounce: Duration::from_millis(debounce_ms),
        // Events only: a test passing thanks to the poll would hide a missed event.
        poll: None,
    }
}

/// Waits until `done` holds on the store's status; returns how long it took.
async fn wait_until(
    store: &PolicyStore,
    what: &str,
    mut done: impl FnMut(&ReloadStatus) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = store.status();
        if done(&status) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < NEVER,
            "never: {what}; status: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until `version` is active; returns how long it took.
async fn wait_active(store: &PolicyStore, version: &str) -> Duration {
    wait_until(store, &format!("version {version} is active"), |s| {
        s.active_version == version
    })
    .await
}

fn clerk_request() -> proto::CheckRequest {
    verdict::server::convert::to_proto(&CheckRequest {
        request_id: String::new(),
        principal: Principal {
            id: "u1".into(),
            roles: vec!["clerk".into()],
            attr: json!({"tenant": "t1"}),
            ..Default::default()
        },
        resources: vec![ResourceCheck {
            resource: Resource {
                kind: "Doc".into(),
                id: "d1".into(),
                attr: json!({"tenant": "t1"}),
            },
            actions: vec!["read".into(), "write".into()],
        }],
        context: serde_json::Value::Null,
    })
}

/// (policy_version, read allowed, write allowed) of one Check answer.
fn summarize(response: &proto::CheckResponse) -> (String, bool, bool) {
    let actions = &response.results[0].actions;
    let allowed = |action: &str| actions[action].effect == Effect::Allow as i32;
    (
        response.policy_version.clone(),
        allowed("read"),
        allowed("write"),
    )
}

/// What set A and set B decide for the clerk.
fn expected_decision(version: &str, a: &str, b: &str) -> (bool, bool) {
    if version == a {
        (true, false)
    } else if version == b {
        (false, true)
    } else {
        panic!("answered by version {version}, which is neither set A ({a}) nor set B ({b})")
    }
}

async fn check_clerk(server: &TestServer) -> (String, bool, bool) {
    let response = server
        .client()
        .await
        .check(clerk_request())
        .await
        .expect("Check succeeds")
        .into_inner();
    summarize(&response)
}

/// Whether `error` has a line `…/file:N: message`.
fn names_file_and_line(error: &str, file: &str) -> bool {
    error.lines().any(|line| {
        line.split_once(&format!("{file}:"))
            .is_some_and(|(_, rest)| {
                rest.split_once(": ")
                    .is_some_and(|(n, _)| n.parse::<usize>().is_ok())
            })
    })
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "{what}: write-to-active latency over {} changes: median {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_steady_check_stream_sees_only_good_sets_while_the_directory_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("common.yaml"), COMMON).unwrap();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_a = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_A)]);
    let version_b = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_B)]);
    let version_cel = version_of(&[("common.yaml", COMMON), ("access.yaml", BROKEN_CEL)]);
    let version_function = version_of(&[("common.yaml", COMMON), ("access.yaml", BROKEN_FUNCTION)]);

    let server = TestServer::start_reloading(dir, watching(50)).await;
    assert_eq!(server.store.status().active_version, version_a);

    // Clients: each on its own connection, as fast as they can, until told to stop (or a cap).
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.client().await;
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut failures = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && answers.len() < 200_000 {
                assert!(Instant::now() < deadline, "the writer never finished");
                match client.check(clerk_request()).await {
                    Ok(response) => answers.push(summarize(response.get_ref())),
                    Err(status) => failures.push(status.to_string()),
                }
            }
            (answers, failures)
        }));
    }

    // The writer: good sets alternate, a broken set before each.
    let store = Arc::clone(&server.store);
    let other = |version: &str| {
        if version == version_a {
            (ACCESS_B, version_b.clone())
        } else {
            (ACCESS_A, version_a.clone())
        }
    };
    let mut latencies = Vec::new();
    let mut writes = 0;
    let mut rejected_errors = Vec::new();
    for _ in 0..16 {
        let active = store.status().active_version.clone();
        let (good, next) = other(&active);
        // A broken set: rejected whole, the active set stays.
        let broken = [BROKEN_YAML, BROKEN_CEL, BROKEN_FUNCTION][rejected_errors.len() % 3];
        let failed = store.status().reloads_failed;
        replace_file(dir, "access.yaml", broken);
        writes += 1;
        wait_until(&store, "a broken set is rejected", |s| {
            s.reloads_failed > failed
        })
        .await;
        let status = store.status();
        assert_eq!(status.reloads_failed, failed + 1, "one rejection per write");
        assert_eq!(status.active_version, active, "a broken set became active");
        rejected_errors.push(status.last_error.clone().expect("the error is kept"));

        // Then the other good set.
        replace_file(dir, "access.yaml", good);
        writes += 1;
        let written = Instant::now();
        wait_active(&store, &next).await;
        latencies.push(written.elapsed());
        assert_eq!(store.status().last_error, None);
    }
    stop.store(true, Ordering::Relaxed);

    let mut answers = Vec::new();
    for client in clients {
        let (mut a, failures) = client.await.unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        answers.append(&mut a);
    }
    let mut seen_a = 0;
    let mut seen_b = 0;
    for (version, read, write) in &answers {
        assert_ne!(version, &version_cel, "a set with a CEL error answered");
        assert_ne!(
            version, &version_function,
            "a set with an unknown function answered"
        );
        let (read_expected, write_expected) = expected_decision(version, &version_a, &version_b);
        assert_eq!(
            (*read, *write),
            (read_expected, write_expected),
            "answer inconsistent with its version {version}"
        );
        if *version == version_a {
            seen_a += 1;
        } else {
            seen_b += 1;
        }
    }
    assert!(
        seen_a > 0 && seen_b > 0,
        "the stream saw both sets ({seen_a}, {seen_b})"
    );

    // Every rejection said where the problem was.
    for error in &rejected_errors {
        assert!(names_file_and_line(error, "access.yaml"), "{error}");
    }
    assert!(rejected_errors
        .iter()
        .any(|e| e.contains("unknown variable 'Rs'")));
    assert!(rejected_errors
        .iter()
        .any(|e| e.contains("unknown function 'sizeof'")));
    let status = store.status();
    // The content changes only at each rename: one reload outcome per write, whatever events
    // the write made.
    assert_eq!(status.reloads_failed, 16, "one rejection per broken write");
    assert_eq!(status.reloads_ok, 16, "one publication per good write");

    eprintln!(
        "steady stream: {} answers (A {seen_a}, B {seen_b}), 0 failed, {writes} writes, {} rejected",
        answers.len(),
        status.reloads_failed
    );
    report("steady stream, debounce 50 ms", &mut latencies);
    server.stop().await;
}

#[tokio::test]
async fn a_broken_file_replaced_within_the_quiet_period_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_b = version_of(&[("access.yaml", ACCESS_B)]);
    // A quiet period far longer than two renames take.
    let server = TestServer::start_reloading(dir, watching(500)).await;
    let reloader = server.reloader.as_ref().unwrap();
    // Finished, not only started: a change written while it reads the files would be its.
    common::wait_for("the catch-up reload at start", || {
        std::future::ready(reloader.finished() == 1)
    })
    .await;
    replace_file(dir, "access.yaml", BROKEN_YAML);
    replace_file(dir, "access.yaml", ACCESS_B);
    let store = Arc::clone(&server.store);
    wait_active(&store, &version_b).await;
    let status = store.status();
    assert_eq!(
        (
            status.reloads_ok,
            status.reloads_failed,
            reloader.attempts()
        ),
        (1, 0, 2),
        "one reload for the burst, which saw only the good file"
    );
    server.stop().await;
}

async fn status(admin: &mut AdminClient<tonic::transport::Channel>) -> proto::StatusResponse {
    admin
        .status(proto::StatusRequest {})
        .await
        .expect("Status succeeds")
        .into_inner()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_volume_update_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut volume = ConfigMapVolume::create(
        dir.path(),
        &[("access.yaml", ACCESS_A), ("common.yaml", COMMON)],
    );
    let version_a = version_of(&[("access.yaml", ACCESS_A), ("common.yaml", COMMON)]);
    let version_b = version_of(&[("access.yaml", ACCESS_B), ("common.yaml", COMMON)]);
    // The daemon's default quiet period.
    let server = TestServer::start_reloading(dir.path(), ReloadOptions::default()).await;
    let mut admin = server.admin().await;
    assert_eq!(status(&mut admin).await.active_version, version_a);
    assert_eq!(check_clerk(&server).await, (version_a.clone(), true, false));

    let mut latencies = Vec::new();
    for round in 0..3 {
        // To B, with a key added; then a broken update; then back to A, the key removed.
        volume.update(&[
            ("access.yaml", ACCESS_B),
            ("common.yaml", COMMON),
            ("extra.yaml", EXTRA),
        ]);
        let version_b_extra = version_of(&[
            ("access.yaml", ACCESS_B),
            ("common.yaml", COMMON),
            ("extra.yaml", EXTRA),
        ]);
        assert_ne!(version_b_extra, version_b);
        let written = Instant::now();
        let store = Arc::clone(&server.store);
        wait_active(&store, &version_b_extra).await;
        latencies.push(written.elapsed());
        let (version, read, write) = check_clerk(&server).await;
        assert_eq!(
            (version, read, write),
            (version_b_extra.clone(), false, true)
        );

        let failed = status(&mut admin).await.reloads_failed;
        volume.update(&[("access.yaml", BROKEN_CEL), ("common.yaml", COMMON)]);
        wait_until(&store, "the broken ConfigMap update is rejected", |s| {
            s.reloads_failed > failed
        })
        .await;
        let now = status(&mut admin).await;
        assert_eq!(now.active_version, version_b_extra, "round {round}");
        assert!(
            names_file_and_line(&now.last_error, "access.yaml"),
            "{}",
            now.last_error
        );
        assert!(now.last_error.contains("unknown variable 'Rs'"));
        assert_eq!(check_clerk(&server).await.0, version_b_extra);

        volume.update(&[("access.yaml", ACCESS_A), ("common.yaml", COMMON)]);
        let written = Instant::now();
        wait_active(&store, &version_a).await;
        latencies.push(written.elapsed());
        assert_eq!(check_clerk(&server).await, (version_a.clone(), true, false));
        assert_eq!(status(&mut admin).await.last_error, "");
    }
    report("ConfigMap volume, debounce 200 ms", &mut latencies);
    server.stop().await;
}

#[tokio::test]
async fn editor_saves_are_picked_up_temp_file_renames_and_in_place_writes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("common.yaml"), COMMON).unwrap();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_a = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_A)]);
    let version_b = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_B)]);
    let server = TestServer::start_reloading(dir, watching(50)).await;
    let store = Arc::clone(&server.store);

    // vim-like: a swap file next to the policy, a backup, then the new file renamed into place.
    std::fs::write(dir.join(".access.yaml.swp"), "binary junk").unwrap();
    std::fs::write(dir.join("access.yaml.swp"), ACCESS_B).unwrap();
    std::fs::copy(dir.join("access.yaml"), dir.join("access.yaml~")).unwrap();
    std::fs::rename(dir.join("access.yaml.swp"), dir.join("access.yaml")).unwrap();
    std::fs::remove_file(dir.join(".access.yaml.swp")).unwrap();
    wait_active(&store, &version_b).await;
    assert_eq!(check_clerk(&server).await, (version_b.clone(), false, true));

    // nano-like: the file rewritten in place.
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    wait_active(&store, &version_a).await;
    assert_eq!(check_clerk(&server).await, (version_a.clone(), true, false));

    // A new policy in a new subdirectory.
    std::fs::create_dir(dir.join("team")).unwrap();
    replace_file(&dir.join("team"), "more.yaml", EXTRA);
    let version_more = version_of(&[
        ("common.yaml", COMMON),
        ("access.yaml", ACCESS_A),
        ("team/more.yaml", EXTRA),
    ]);
    wait_active(&store, &version_more).await;
    server.stop().await;
}

#[tokio::test]
async fn a_directory_deleted_and_created_again_is_watched_again() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("verdict=debug")
        .with_test_writer()
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_a = version_of(&[("access.yaml", ACCESS_A)]);
    let version_b = version_of(&[("access.yaml", ACCESS_B)]);
    let server = TestServer::start_reloading(&dir, watching(50)).await;
    let store = Arc::clone(&server.store);

    std::fs::remove_dir_all(&dir).unwrap();
    wait_until(&store, "a missing directory is rejected", |s| {
        s.reloads_failed >= 1
    })
    .await;
    assert_eq!(store.status().active_version, version_a);
    assert!(
        check_clerk(&server).await.1,
        "the last good set still decides"
    );

    // Created again, empty at first: an empty directory is rejected too, then the file lands.
    let failed = store.status().reloads_failed;
    std::fs::create_dir(&dir).unwrap();
    wait_until(&store, "the empty directory is rejected", |s| {
        s.reloads_failed > failed
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("no policy file"))
    })
    .await;
    assert_eq!(store.status().active_version, version_a);
    replace_file(&dir, "access.yaml", ACCESS_B);
    let took = wait_active(&store, &version_b).await;
    eprintln!("directory created again: its policy active after {took:?}");
    // And the new directory is watched.
    replace_file(&dir, "access.yaml", ACCESS_A);
    wait_active(&store, &version_a).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_directory_is_not_reloaded_and_a_reload_does_not_trigger_another() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    // A quiet period far longer than one write's events take, so that a write is one burst.
    let server = TestServer::start_reloading(dir, watching(200)).await;
    let reloader = server.reloader.as_ref().unwrap();
    // Finished, not only started: a change written while it reads the files would be its.
    common::wait_for("the catch-up reload at start", || {
        std::future::ready(reloader.finished() == 1)
    })
    .await;
    // Sleeps below are observation windows in which nothing may happen, not waits for events.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reloader.attempts(), 1, "only the catch-up reload at start");

    replace_file(dir, "access.yaml", ACCESS_B);
    let store = Arc::clone(&server.store);
    let version_b = version_of(&[("access.yaml", ACCESS_B)]);
    wait_active(&store, &version_b).await;
    // The reload read every file; reading is not changing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        reloader.attempts(),
        2,
        "one reload for one change, and none fed by its own reads"
    );
    server.stop().await;
}

/// git-sync publishes each revision as a new worktree and swaps a symlink to it; the policies may
/// be the link itself or a directory below it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_sync_symlink_swap_is_followed_and_so_are_edits_in_the_new_target() {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let revision = |n: u32, access: &str| {
        let policies = root.join(format!(".worktrees/rev-{n}/policies"));
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("common.yaml"), COMMON).unwrap();
        std::fs::write(policies.join("access.yaml"), access).unwrap();
    };
    let swap = |link: &str, target: &str| {
        let temp = root.join(format!("{link}.tmp"));
        symlink(target, &temp).unwrap();
        std::fs::rename(&temp, root.join(link)).unwrap();
    };
    revision(1, ACCESS_A);
    swap("current", ".worktrees/rev-1");
    // A second link straight to the policies directory.
    swap("policies", ".worktrees/rev-1/policies");
    let version_a = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_A)]);
    let version_b = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_B)]);

    let below = TestServer::start_reloading(&root.join("current/policies"), watching(50)).await;
    let direct = TestServer::start_reloading(&root.join("policies"), watching(50)).await;
    let mut latencies = Vec::new();
    for n in 2..=5 {
        let (access, expected) = if n % 2 == 0 {
            (ACCESS_B, &version_b)
        } else {
            (ACCESS_A, &version_a)
        };
        revision(n, access);
        swap("current", &format!(".worktrees/rev-{n}"));
        swap("policies", &format!(".worktrees/rev-{n}/policies"));
        let written = Instant::now();
        std::fs::remove_dir_all(root.join(format!(".worktrees/rev-{}", n - 1))).unwrap();
        for server in [&below, &direct] {
            let store = Arc::clone(&server.store);
            wait_active(&store, expected).await;
            latencies.push(written.elapsed());
            assert_eq!(check_clerk(server).await.0, *expected);
        }
    }
    // The watches moved to the new worktree: an edit there is seen too.
    replace_file(
        &root.join(".worktrees/rev-5/policies"),
        "access.yaml",
        ACCESS_B,
    );
    let written = Instant::now();
    for server in [&below, &direct] {
        let store = Arc::clone(&server.store);
        wait_active(&store, &version_b).await;
        latencies.push(written.elapsed());
    }
    report("git-sync symlink swap, debounce 50 ms", &mut latencies);
    below.stop().await;
    direct.stop().await;
}

#[tokio::test]
async fn without_watching_the_poll_still_picks_changes_up() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let server = TestServer::start_reloading(
        dir,
        ReloadOptions {
            watch: false,
            debounce: Duration::from_millis(50),
            poll: Some(Duration::from_millis(200)),
        },
    )
    .await;
    replace_file(dir, "access.yaml", ACCESS_B);
    let store = Arc::clone(&server.store);
    let version_b = version_of(&[("access.yaml", ACCESS_B)]);
    wait_active(&store, &version_b).await;
    server.stop().await;
}

#[tokio::test]
async fn the_status_rpc_reports_the_active_set_and_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("common.yaml"), COMMON).unwrap();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_a = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_A)]);
    let version_b = version_of(&[("common.yaml", COMMON), ("access.yaml", ACCESS_B)]);
    let started = std::time::SystemTime::now();
    let server = TestServer::start_reloading(dir, watching(50)).await;
    let mut admin = server.admin().await;

    let first = status(&mut admin).await;
    assert_eq!(first.active_version, version_a);
    assert_eq!((first.rule_count, first.policy_count), (2, 2));
    let loaded_at = first.loaded_at.expect("loaded_at is set");
    let loaded = std::time::SystemTime::try_from(loaded_at).unwrap();
    assert!(
        started <= loaded && loaded <= std::time::SystemTime::now(),
        "loaded while the server started"
    );
    assert_eq!(first.last_error, "");
    assert_eq!(first.last_error_at, None);
    assert_eq!((first.reloads_ok, first.reloads_failed), (0, 0));

    replace_file(dir, "access.yaml", BROKEN_YAML);
    let store = Arc::clone(&server.store);
    wait_until(&store, "the broken write is rejected", |s| {
        s.reloads_failed == 1
    })
    .await;
    let broken = status(&mut admin).await;
    assert_eq!(broken.active_version, version_a);
    assert_eq!(broken.loaded_at, Some(loaded_at), "the active set stayed");
    assert!(
        names_file_and_line(&broken.last_error, "access.yaml"),
        "{}",
        broken.last_error
    );
    assert!(broken.last_error_at.is_some());
    assert_eq!((broken.reloads_ok, broken.reloads_failed), (0, 1));

    replace_file(dir, "access.yaml", ACCESS_B);
    wait_active(&store, &version_b).await;
    let fixed = status(&mut admin).await;
    assert_eq!(fixed.active_version, version_b);
    assert_eq!(fixed.last_error, "");
    assert_eq!(fixed.last_error_at, None);
    assert_eq!((fixed.reloads_ok, fixed.reloads_failed), (1, 1));
    assert_ne!(fixed.loaded_at, Some(loaded_at));

    // Broken again, then put back exactly as the active set: nothing is wrong any more.
    replace_file(dir, "access.yaml", BROKEN_FUNCTION);
    wait_until(&store, "the second broken write is rejected", |s| {
        s.reloads_failed == 2
    })
    .await;
    assert!(status(&mut admin)
        .await
        .last_error
        .contains("unknown function 'sizeof'"));
    replace_file(dir, "access.yaml", ACCESS_B);
    wait_until(&store, "the revert clears the error", |s| {
        s.last_error.is_none()
    })
    .await;
    let reverted = status(&mut admin).await;
    assert_eq!(reverted.active_version, version_b);
    assert_eq!((reverted.reloads_ok, reverted.reloads_failed), (1, 2));

    // grpcurl finds the service, and the files it needs, by reflection.
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let admin_files = reflected_files(
        &mut reflection,
        MessageRequest::FileContainingSymbol("verdict.v1.Admin".into()),
    )
    .await;
    assert_eq!(admin_files[0].0, "verdict/v1/admin.proto");
    assert_eq!(admin_files[0].1, vec!["google/protobuf/timestamp.proto"]);
    let timestamp = reflected_files(
        &mut reflection,
        MessageRequest::FileByFilename("google/protobuf/timestamp.proto".into()),
    )
    .await;
    assert_eq!(timestamp[0].0, "google/protobuf/timestamp.proto");
    server.stop().await;
}

/// (name, dependencies) of each file descriptor a reflection request answers.
async fn reflected_files(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> Vec<(String, Vec<String>)> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("not known to reflection: {response:?}")
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .map(|file| (file.name().to_string(), file.dependency))
        .collect()
}

use common::{Daemon, BIN};

async fn daemon_version(daemon: &Daemon) -> String {
    let mut admin = AdminClient::connect(daemon.url()).await.unwrap();
    status(&mut admin).await.active_version
}

/// The outcomes of the reloads SIGHUP asked for, from the daemon's log fields.
fn requested_outcomes(daemon: &Daemon) -> Vec<String> {
    daemon
        .logs()
        .iter()
        .filter(|line| common::field(line, "what").as_deref() == Some("policies"))
        .filter_map(|line| common::field(line, "outcome"))
        .collect()
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_a_daemon_that_does_not_watch() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_a = version_of(&[("access.yaml", ACCESS_A)]);
    let version_b = version_of(&[("access.yaml", ACCESS_B)]);
    let daemon = Daemon::start(dir, &["--no-watch", "--reload-poll-secs", "0"]);
    assert_eq!(daemon_version(&daemon).await, version_a);
    let started = daemon
        .logs()
        .into_iter()
        .find(|line| common::field(line, "what").as_deref() == Some("policies"))
        .expect("the policy reloader says how it runs");
    assert_eq!(
        common::field(&started, "watch").as_deref(),
        Some("false"),
        "{started}"
    );
    assert_eq!(common::field(&started, "poll_secs").as_deref(), Some("0.0"));

    replace_file(dir, "access.yaml", ACCESS_B);
    daemon.signal("HUP");
    common::wait_for("the reload SIGHUP asked for", || {
        std::future::ready(requested_outcomes(&daemon) == ["published"])
    })
    .await;
    assert_eq!(daemon_version(&daemon).await, version_b);
    let out = Command::new(BIN)
        .args(["check", "--json", "--server", &daemon.url(), "--request"])
        .arg(r#"{"principal":{"id":"c-1","roles":["clerk"],"attr":{"tenant":"t1"}},"resources":[{"resource":{"kind":"Doc","id":"d1","attr":{"tenant":"t1"}},"actions":["read","write"]}]}"#)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["policy_version"], version_b.as_str());
    assert_eq!(v["results"][0]["actions"]["read"]["effect"], "EFFECT_DENY");
    assert_eq!(
        v["results"][0]["actions"]["write"]["effect"],
        "EFFECT_ALLOW"
    );

    // A second SIGHUP on unchanged files reloads, finds nothing new, and the daemon stays up.
    daemon.signal("HUP");
    common::wait_for("the second reload SIGHUP asked for", || {
        std::future::ready(requested_outcomes(&daemon) == ["published", "unchanged"])
    })
    .await;
    assert_eq!(daemon_version(&daemon).await, version_b);
    let mut admin = AdminClient::connect(daemon.url()).await.unwrap();
    let now = status(&mut admin).await;
    assert_eq!((now.reloads_ok, now.reloads_failed), (1, 0));
}

#[tokio::test]
async fn the_daemon_watches_its_policy_directory_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("access.yaml"), ACCESS_A).unwrap();
    let version_b = version_of(&[("access.yaml", ACCESS_B)]);
    let daemon = Daemon::start(dir, &["--reload-debounce-ms", "50"]);
    replace_file(dir, "access.yaml", ACCESS_B);
    let version = || async { daemon_version(&daemon).await };
    common::wait_for("the change is picked up", || async {
        version().await == version_b
    })
    .await;
}
