//! Where a Check is decided (src/server/evaluation.rs), in-process through the `Authority` on the
//! bundled clinic: a plain Check (1 resource x 1 action) and a large one (1,000 resources x 3
//! actions), each decided inline on the calling task and handed to the evaluation pool. The
//! difference is what the hand-off costs, which is why small requests are decided inline and only
//! large ones go to the pool. Run: `cargo bench --bench evaluation`, then
//! `python3 scripts/bench-medians.py evaluation` for the medians.
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use verdict::server::authority::{Authority, Call, CheckCall};
use verdict::server::evaluation::PoolOptions;
use verdict::server::json::CheckBody;
use verdict::server::ServerOptions;
use verdict::store::PolicyStore;

fn call(resources: usize, actions: &[&str]) -> CheckCall {
    let resources: Vec<_> = (0..resources)
        .map(|i| {
            json!({"resource": {"kind": "Patient", "id": i.to_string(),
                        "attr": {"practice_id": "7", "patient_id": i.to_string(), "state": "CA",
                                 "celebrity": false, "primary_physician_id": "dr-wilson"}},
                        "actions": actions})
        })
        .collect();
    let body: CheckBody = serde_json::from_value(json!({
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
                      "attr": {"practice_id": "7", "licensed_states": ["CA", "NY"]}},
        "resources": resources,
    }))
    .unwrap();
    body.into_call()
}

fn authority(store: &Arc<PolicyStore>, inline_weight: usize) -> Arc<Authority> {
    let options = ServerOptions {
        pool: PoolOptions {
            inline_weight,
            ..PoolOptions::default()
        },
        ..ServerOptions::default()
    };
    options.authority(Arc::clone(store))
}

fn bench(c: &mut Criterion) {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let store = Arc::new(PolicyStore::open(&policies).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let inline = authority(&store, usize::MAX);
    let pooled = authority(&store, 0);
    for (name, resources, actions) in [
        ("1 resource x 1 action", 1, &["read"][..]),
        (
            "1000 resources x 3 actions",
            1000,
            &["read", "update", "delete"][..],
        ),
    ] {
        let request = call(resources, actions);
        for (how, authority) in [("inline", &inline), ("pool", &pooled)] {
            let answer = runtime
                .block_on(authority.check(Call::new("bench", None, None), Ok(request.clone())))
                .unwrap();
            assert!(answer.results[0].actions[0].1.is_allow());
            c.bench_function(&format!("evaluation/{name}/{how}"), |b| {
                b.iter(|| {
                    runtime.block_on(
                        authority.check(Call::new("bench", None, None), Ok(request.clone())),
                    )
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
