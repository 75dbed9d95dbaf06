//! Hot reload of a large policy set: 1,000 generated files (one agent policy of 3 CEL rules each,
//! over 50 kinds, in 10 directories). Measures, with criterion, how long loading and compiling
//! the set takes, how much of it is reading and parsing, and what a reload of unchanged files
//! costs (read and hash); then, with its own clock, the latency of in-process Checks (snapshot,
//! `engine::check`, release of the snapshot) with and without the daemon's reload thread
//! publishing a new set in a loop (one file changed, then a reload requested, as SIGHUP does),
//! and prints the percentiles of both.
//!
//! Run: `cargo bench --bench reload`. The latency phases last `RELOAD_BENCH_SECS` seconds each
//! (default 5).
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use verdict::compile::PolicySet;
use verdict::engine;
use verdict::reload::{ReloadOptions, Reloader};
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict::store::{PolicyStore, ReloadOutcome};

const FILES: usize = 1_000;
const KINDS: usize = 50;
const ROLES: usize = 100;

fn policy(i: usize, variant: usize) -> String {
    let kind = i % KINDS;
    let role = i % ROLES;
    format!(
        "# generated policy {i}, variant {variant}
agent_policy:
  name: policy-{i}
  principals: {{roles: [role-{role}]}}
  rules:
    - name: read-own-practice
      effect: allow
      actions: [read, search]
      kinds: [Kind{kind}]
      when: R.attr.practice_id == P.attr.practice_id
    - name: update-assigned
      effect: allow
      actions: [update]
      kinds: [Kind{kind}]
      when: P.id in R.attr.assignees && C.purpose == \"treatment\"
    - name: deny-locked
      effect: deny
      actions: [\"*\"]
      kinds: [Kind{kind}]
      when: has(R.attr.locked) && R.attr.locked == true && !(\"admin\" in P.roles)
"
    )
}

fn generate(dir: &Path) {
    for i in 0..FILES {
        let sub = dir.join(format!("team-{}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("policy-{i}.yaml")), policy(i, 0)).unwrap();
    }
}

fn request() -> CheckRequest {
    CheckRequest {
        principal: Principal {
            id: "u-7".into(),
            roles: vec!["role-7".into()],
            attr: json!({"practice_id": "p1"}),
            ..Default::default()
        },
        resources: vec![ResourceCheck {
            resource: Resource {
                kind: "Kind7".into(),
                id: "r1".into(),
                attr: json!({"practice_id": "p1", "assignees": ["u-7"], "locked": false}),
            },
            actions: vec!["read".into(), "update".into()],
        }],
        context: json!({"purpose": "treatment"}),
        ..Default::default()
    }
}

fn reload_time(c: &mut Criterion, dir: &Path, store: &PolicyStore) {
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("load and compile 1000 files", |b| {
        b.iter(|| PolicySet::load(black_box(dir)).unwrap())
    });
    group.bench_function("read and parse 1000 files (no compile)", |b| {
        b.iter(|| verdict::policy::load_dir(black_box(dir)).unwrap())
    });
    group.bench_function("reload of unchanged 1000 files (no compile)", |b| {
        b.iter(|| assert!(matches!(store.reload(), ReloadOutcome::Unchanged(_))))
    });
    group.finish();
}

struct Percentiles {
    count: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Percentiles {
        count: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

/// Latencies of checks in a loop.
struct Timed {
    /// Every check, timed from taking the snapshot to releasing it.
    all: Vec<Duration>,
    /// The checks that released the last reference to a replaced set (and so freed it).
    freeing: Vec<Duration>,
    /// The first check on each newly published set.
    first_on_new_set: Vec<Duration>,
}

fn timed_checks(store: &PolicyStore, request: &CheckRequest, duration: Duration) -> Timed {
    let mut samples = Vec::with_capacity(4_000_000);
    let mut freeing = Vec::new();
    let mut first_on_new_set = Vec::new();
    // The address of the previous check's set (not a reference: that would keep it alive).
    let mut previous = Arc::as_ptr(&store.current()) as usize;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        for _ in 0..100 {
            let started = Instant::now();
            let set = store.current();
            let new_set = Arc::as_ptr(&set) as usize != previous;
            previous = Arc::as_ptr(&set) as usize;
            let decisions = engine::check(&set, black_box(request));
            black_box(&decisions);
            drop(decisions);
            let last = Arc::strong_count(&set) == 1;
            drop(set);
            let elapsed = started.elapsed();
            samples.push(elapsed);
            if last {
                freeing.push(elapsed);
            }
            if new_set {
                first_on_new_set.push(elapsed);
            }
        }
    }
    Timed {
        all: samples,
        freeing,
        first_on_new_set,
    }
}

fn latency_during_swaps(dir: &Path, store: Arc<PolicyStore>, phase: Duration) {
    let request = request();
    let decisions = engine::check(&store.current(), &request);
    assert!(decisions[0].actions.iter().all(|(_, d)| d.is_allow()));

    let quiet = percentiles(timed_checks(&store, &request, phase).all);

    // The daemon's reload thread, asked to reload after each write, as SIGHUP does.
    let reloader = Reloader::start(
        Arc::clone(&store),
        ReloadOptions {
            watch: false,
            debounce: Duration::from_millis(200),
            poll: None,
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        let file = dir.join("team-0/policy-0.yaml");
        std::thread::spawn(move || {
            let mut reload_times = Vec::new();
            let mut variant = 0;
            while !stop.load(Ordering::Relaxed) {
                variant += 1;
                std::fs::write(&file, policy(0, variant)).unwrap();
                let published = store.status().reloads_ok;
                let started = Instant::now();
                reloader.reload_now();
                while store.status().reloads_ok == published {
                    assert!(started.elapsed() < Duration::from_secs(30), "no reload");
                    std::thread::sleep(Duration::from_millis(1));
                }
                reload_times.push(started.elapsed());
            }
            reloader.stop();
            reload_times
        })
    };
    let Timed {
        all: busy,
        freeing,
        first_on_new_set,
    } = timed_checks(&store, &request, phase);
    let busy = percentiles(busy);
    stop.store(true, Ordering::Relaxed);
    let reloads = percentiles(writer.join().unwrap());
    let swaps = reloads.count;

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!();
    println!(
        "check latency, 1 resource x 2 actions, 1000-file set ({:.0} s per phase):",
        phase.as_secs_f64()
    );
    for (name, p) in [("no reloads", &quiet), ("reloading", &busy)] {
        println!(
            "  {name:<11} p50 {:>7.2} us  p99 {:>8.2} us  p99.9 {:>9.2} us  max {:>10.2} us  ({} checks)",
            us(p.p50),
            us(p.p99),
            us(p.p999),
            us(p.max),
            p.count
        );
    }
    if !first_on_new_set.is_empty() {
        let count = first_on_new_set.len();
        let first = percentiles(first_on_new_set);
        println!(
            "  first check on each of {count} new sets: p50 {:.2} us, max {:.2} us",
            us(first.p50),
            us(first.max)
        );
    }
    match freeing.len() {
        0 => println!("  no check freed a replaced set (the reload thread frees them)"),
        count => {
            let freeing = percentiles(freeing);
            println!(
                "  {count} checks freed a replaced set: p50 {:.2} us, max {:.2} us",
                us(freeing.p50),
                us(freeing.max)
            );
        }
    }
    println!(
        "  reloads published during the second phase: {} (request to published: p50 {:.1} ms, max {:.1} ms)",
        swaps,
        us(reloads.p50) / 1e3,
        us(reloads.max) / 1e3
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let store = Arc::new(PolicyStore::open(dir.path()).unwrap());
    let set = store.current();
    assert_eq!(set.policy_count, FILES);
    drop(set);

    let mut criterion = Criterion::default().configure_from_args();
    reload_time(&mut criterion, dir.path(), &store);
    criterion.final_summary();

    // `cargo test --benches` runs benchmarks once as a smoke test: keep that short.
    let smoke_test = std::env::args().any(|a| a == "--test");
    let phase = if smoke_test {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(
            std::env::var("RELOAD_BENCH_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(5),
        )
    };
    latency_during_swaps(dir.path(), store, phase);
}
