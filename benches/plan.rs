//! In-process PlanFilter over the bundled clinic policies: a practice nurse (conditional, with the
//! celebrity guard), a launch-patient app (scope terms), and a system principal (always allowed),
//! plus rendering the nurse's filter as PostgreSQL. Run: `cargo bench --bench plan`.
use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use verdict::compile::PolicySet;
use verdict::filter::sql::{self, Dialect};
use verdict::plan::{plan, Plan, PlanRequest};

fn request(principal: serde_json::Value, kind: &str, action: &str) -> PlanRequest {
    PlanRequest {
        principal: serde_json::from_value(principal).unwrap(),
        kind: kind.into(),
        action: action.into(),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let set = PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let nurse = request(
        json!({"id": "n-joy", "roles": ["nurse"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}}),
        "Patient",
        "read",
    );
    let app = request(
        json!({"id": "alice", "roles": ["patient"], "scopes": ["patient/Observation.rs"], "attr": {"patient_id": "123", "patient": "123"}}),
        "Observation",
        "search",
    );
    let system = request(
        json!({"roles": ["system"], "scopes": ["system/*.read"]}),
        "Observation",
        "read",
    );
    assert!(matches!(plan(&set, &nurse).unwrap(), Plan::Conditional(_)));
    assert!(matches!(plan(&set, &app).unwrap(), Plan::Conditional(_)));
    assert_eq!(plan(&set, &system).unwrap(), Plan::AlwaysAllowed);
    c.bench_function("plan/nurse Patient read", |b| {
        b.iter(|| plan(&set, black_box(&nurse)).unwrap())
    });
    c.bench_function("plan/patient app Observation search", |b| {
        b.iter(|| plan(&set, black_box(&app)).unwrap())
    });
    c.bench_function("plan/system Observation read", |b| {
        b.iter(|| plan(&set, black_box(&system)).unwrap())
    });
    let filter = plan(&set, &nurse).unwrap().filter();
    let columns: HashMap<String, String> = filter
        .attributes()
        .iter()
        .map(|a| (a.to_string(), format!("p.{a}")))
        .collect();
    c.bench_function("plan/render nurse filter as PostgreSQL", |b| {
        b.iter(|| sql::render(black_box(&filter), Dialect::Postgres, &columns).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
