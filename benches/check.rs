//! In-process Check over the bundled clinic policies: one resource x one action, 100 resources,
//! 100 resources x 3 actions, building the request values, loading the set; and the scaling
//! curve: one Check against generated sets of 10 to 10,000 rules over many kinds, which stays
//! flat because rules are indexed by (kind, action) at load. Run: `cargo bench --bench check`,
//! then `python3 scripts/bench-medians.py` for the medians.
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
    c.bench_function("values/build P and R (projected)", |b| {
        b.iter(|| {
            let pv = set.projection.principal(black_box(&p));
            let rv = set.projection.resource(black_box(&r));
            black_box((pv, rv));
        })
    });

    c.bench_function("load/bundled policies", |b| {
        b.iter(|| PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap())
    });
}

/// A generated set: `rules` rules over `rules / 10` kinds (at least one), each a CEL condition
/// comparing practice ids, plus the clinic's own files.
fn generated_set(rules: usize) -> (tempfile::TempDir, PolicySet) {
    let dir = tempfile::tempdir().unwrap();
    let kinds = (rules / 10).max(1);
    let mut text = String::new();
    for i in 0..rules {
        let kind = i % kinds;
        text.push_str(&format!(
            "---\nagent_policy:\n  name: generated-{i}\n  principals: {{roles: [role-{}]}}\n  rules:\n    - name: rule\n      effect: allow\n      actions: [read, update]\n      kinds: [Kind{kind}]\n      when: R.attr.practice_id == P.attr.practice_id && R.attr.level <= {}\n",
            i % 50,
            i % 7 + 3
        ));
    }
    std::fs::write(dir.path().join("generated.yaml"), text).unwrap();
    let set = PolicySet::load(dir.path()).unwrap();
    assert_eq!(set.rules.len(), rules);
    (dir, set)
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    for rules in [10, 100, 1_000, 10_000] {
        let (_dir, set) = generated_set(rules);
        // Kind0 holds about 10 rules whatever the size of the set; the principal matches 1 in 50.
        let request = CheckRequest {
            principal: Principal {
                id: "u".into(),
                roles: vec!["role-0".into()],
                attr: json!({"practice_id": "7"}),
                ..Default::default()
            },
            resources: vec![ResourceCheck {
                resource: Resource {
                    kind: "Kind0".into(),
                    id: "1".into(),
                    attr: json!({"practice_id": "7", "level": 3}),
                },
                actions: vec!["read".into()],
            }],
            ..Default::default()
        };
        assert!(engine::check(&set, &request)[0].actions[0].1.is_allow());
        group.bench_function(format!("check with {rules} rules in the set"), |b| {
            b.iter(|| engine::check(&set, black_box(&request)))
        });
    }
    group.finish();
}

/// The bundled clinic with its schema's validation set to `mode` (`reject`, `off`).
fn clinic_with_validation(mode: &str) -> (tempfile::TempDir, PolicySet) {
    let dir = tempfile::tempdir().unwrap();
    let clinic = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/clinic");
    for entry in std::fs::read_dir(clinic).unwrap() {
        let entry = entry.unwrap();
        if verdict::policy::is_test_suite(&entry.path()) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = text.replace("validation: reject", &format!("validation: {mode}"));
        std::fs::write(dir.path().join(entry.file_name()), text).unwrap();
    }
    let set = PolicySet::load(dir.path()).unwrap();
    (dir, set)
}

/// What holding requests to the schema costs: Check 1x1 on the clinic with validation `reject`
/// against the same set with validation `off` (same rules, same index).
fn schema(c: &mut Criterion) {
    let mut group = c.benchmark_group("schema");
    let one = CheckRequest {
        principal: physician(),
        resources: vec![ResourceCheck {
            resource: patient(1),
            actions: vec!["read".into()],
        }],
        ..Default::default()
    };
    // Both sets are loaded (and kept) before either is measured, so that neither runs in memory
    // the other left behind: measured one after the other, the second set ran up to 40% slower
    // whichever mode it had.
    let sets: Vec<_> = ["off", "reject"]
        .into_iter()
        .map(|mode| (mode, clinic_with_validation(mode)))
        .collect();
    for (mode, (_dir, set)) in &sets {
        let decision = &engine::check(set, &one)[0].actions[0].1;
        assert!(decision.is_allow(), "{decision:?}");
        group.bench_function(format!("check 1x1, validation {mode}"), |b| {
            b.iter(|| engine::check(set, black_box(&one)))
        });
    }
    group.finish();
}

/// A set of 1,000 policy files over a schema of 100 kinds (each with 8 typed attributes), every
/// file an agent policy whose condition the type checker checks: the load time of a big set.
fn big_typed_set() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut schema = String::from("schema:\n  name: big\n  principal:\n    roles: [");
    schema.push_str(
        &(0..50)
            .map(|r| format!("role-{r}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    schema.push_str("]\n    attributes: {practice_id: {type: string, required: false, non_empty: true}, level: int?}\n  kinds:\n");
    for k in 0..100 {
        schema.push_str(&format!(
            "    Kind{k}:\n      actions: [read, update, delete]\n      attributes:\n        practice_id: {{type: string, non_empty: true}}\n        level: int\n        public: bool\n        owner: string?\n        tags: list<string>?\n        state: {{type: enum, values: [draft, final, archived]}}\n        amount: double?\n        note: string?\n"
        ));
    }
    std::fs::write(dir.path().join("schema.yaml"), schema).unwrap();
    for i in 0..1_000 {
        std::fs::write(
            dir.path().join(format!("policy-{i:04}.yaml")),
            format!(
                "agent_policy:\n  name: generated-{i}\n  principals: {{roles: [role-{}]}}\n  rules:\n    - name: rule\n      effect: allow\n      actions: [read, update]\n      kinds: [Kind{}]\n      when: has(P.attr.practice_id) && R.attr.practice_id == P.attr.practice_id && R.attr.level <= {}.0 && R.attr.state in [\"draft\", \"final\"]\n",
                i % 50,
                i % 100,
                i % 7 + 3
            ),
        )
        .unwrap();
    }
    dir
}

fn load(c: &mut Criterion) {
    let dir = big_typed_set();
    let set = PolicySet::load(dir.path()).unwrap();
    assert!(
        set.schema.is_some() && set.rules.len() == 1_000,
        "{:?}",
        set.warnings.first()
    );
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("1,000 files with a schema of 100 kinds", |b| {
        b.iter(|| PolicySet::load(black_box(dir.path())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench, scaling, schema, load);
criterion_main!(benches);
