//! Verdict, Cedar and Rego (regorus' interpreter and its RVM) side by side on the same scenarios,
//! in one run: a physician reading a
//! patient of his practice (1 resource x 1 action), and the same physician reading 100 patients
//! (every tenth, from the first, a celebrity he is not the primary physician of) in one request. Each engine starts
//! from the same `CheckRequest` (Verdict's request type, what the server hands the engine after
//! decoding protobuf), and its timing includes what a real call needs on top of the compiled
//! policies: building its own request values (CEL values / Cedar entities and requests / Rego
//! input documents) and deciding every (resource, action). The `*-decide-only` entries time the
//! decision alone, over values built outside the timing.
//!
//! Run: `nice -n 10 cargo bench --bench peers` in peers/, then `python3 medians.py`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use verdict::engine;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict_peers::cedar::{Cedar, ForbidErrors};
use verdict_peers::rego::Rego;
use verdict_peers::rvm::Rvm;
use verdict_peers::{verdict_effects, verdict_policies};

/// The same physician as `benches/check.rs` of the main crate.
fn physician() -> Principal {
    Principal {
        id: "dr-house".into(),
        roles: vec!["physician".into()],
        scopes: vec!["user/*.cruds".into()],
        attr: json!({"practice_id": "7", "licensed_states": ["CA", "NY"]}),
        ..Default::default()
    }
}

/// The same patients as `benches/check.rs` of the main crate.
fn patient(i: usize) -> Resource {
    Resource {
        kind: "Patient".into(),
        id: i.to_string(),
        attr: json!({"practice_id": "7", "patient_id": i.to_string(), "state": "CA", "celebrity": i.is_multiple_of(10), "primary_physician_id": "dr-wilson"}),
    }
}

fn request(patients: std::ops::Range<usize>) -> CheckRequest {
    CheckRequest {
        principal: physician(),
        resources: patients
            .map(|i| ResourceCheck {
                resource: patient(i),
                actions: vec!["read".into()],
            })
            .collect(),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let set = verdict_policies();
    let cedar = Cedar::clinic();
    let mut rego = Rego::clinic();
    let mut rvm = Rvm::clinic();

    for (name, request, allows) in [
        ("1 resource x 1 action", request(1..2), 1),
        ("100 resources x 1 action", request(0..100), 90),
    ] {
        // Same answers before timing anything.
        let expected = verdict_effects(&set, &request);
        assert_eq!(cedar.check(&request), expected, "{name}: cedar");
        assert_eq!(rego.check(&request), expected, "{name}: rego");
        assert_eq!(rvm.check(&request), expected, "{name}: rego-rvm");
        let allowed = expected.iter().flatten().filter(|&&allow| allow).count();
        assert_eq!(allowed, allows, "{name}: all but the celebrities");

        let mut group = c.benchmark_group(name);
        group.bench_function("verdict", |b| {
            b.iter(|| engine::check(&set, black_box(&request)))
        });
        group.bench_function("cedar", |b| b.iter(|| cedar.check(black_box(&request))));
        group.bench_function("rego", |b| b.iter(|| rego.check(black_box(&request))));
        group.bench_function("rego-rvm", |b| b.iter(|| rvm.check(black_box(&request))));

        let prepared = cedar.prepare(&request).unwrap();
        group.bench_function("cedar-decide-only", |b| {
            b.iter(|| cedar.decide(black_box(&prepared), &request, ForbidErrors::Deny))
        });
        let inputs = Rego::inputs(&request);
        group.bench_function("rego-decide-only", |b| {
            b.iter(|| rego.decide(black_box(&inputs)))
        });
        group.bench_function("rego-rvm-decide-only", |b| {
            b.iter(|| rvm.decide(black_box(&inputs)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
