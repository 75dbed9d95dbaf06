//! In-process Check over the bundled clinic policies: one resource x one action, and one request
//! of 100 resources. Run: `cargo bench --bench check`.
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use verdict::compile::PolicySet;
use verdict::engine;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};

fn physician() -> Principal {
    Principal {
        id: "dr-house".into(),
        roles: vec!["physician".into()],
        scopes: vec!["user/*.cruds".into()],
        attr: json!({"practice_id": "7", "licensed_states": ["CA", "NY"]}),
        ..Default::default()
    }
}

fn patient(i: usize) -> Resource {
    Resource {
        kind: "Patient".into(),
        id: i.to_string(),
        attr: json!({"practice_id": "7", "patient_id": i.to_string(), "state": "CA", "celebrity": i.is_multiple_of(10), "primary_physician_id": "dr-wilson"}),
    }
}

fn bench(c: &mut Criterion) {
    let set = PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let one = CheckRequest {
        principal: physician(),
        resources: vec![ResourceCheck {
            resource: patient(1),
            actions: vec!["read".into()],
        }],
        ..Default::default()
    };
    assert!(engine::check(&set, &one)[0].actions[0].1.is_allow());
    c.bench_function("check/1 resource x 1 action", |b| {
        b.iter(|| engine::check(&set, black_box(&one)))
    });

    let observation = CheckRequest {
        principal: physician(),
        resources: vec![ResourceCheck {
            resource: Resource {
                kind: "Observation".into(),
                id: "o1".into(),
                attr: json!({"practice_id": "7", "patient_id": "1", "category": "laboratory"}),
            },
            actions: vec!["read".into()],
        }],
        ..Default::default()
    };
    assert!(engine::check(&set, &observation)[0].actions[0].1.is_allow());
    c.bench_function("check/1 scope-gated resource x 1 action", |b| {
        b.iter(|| engine::check(&set, black_box(&observation)))
    });

    let hundred = CheckRequest {
        principal: physician(),
        resources: (0..100)
            .map(|i| ResourceCheck {
                resource: patient(i),
                actions: vec!["read".into()],
            })
            .collect(),
        ..Default::default()
    };
    c.bench_function("check/100 resources x 1 action", |b| {
        b.iter(|| engine::check(&set, black_box(&hundred)))
    });

    let three = CheckRequest {
        principal: physician(),
        resources: (0..100)
            .map(|i| ResourceCheck {
                resource: patient(i),
                actions: vec!["read".into(), "update".into(), "delete".into()],
            })
            .collect(),
        ..Default::default()
    };
    c.bench_function("check/100 resources x 3 actions", |b| {
        b.iter(|| engine::check(&set, black_box(&three)))
    });

    let p = physician();
    let r = patient(1);
    c.bench_function("values/build P and R", |b| {
        b.iter(|| {
            let pv = verdict::cel::principal_value(black_box(&p));
            let rv = verdict::cel::resource_value(black_box(&r));
            black_box((pv, rv));
        })
    });

    c.bench_function("load/bundled policies", |b| {
        b.iter(|| PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
