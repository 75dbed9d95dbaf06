//! Policy analysis over the bundled clinic policies: the access matrix (every principal class x
//! kind x action, planned and described), and `verdict diff`'s work on the clinic against a
//! changed copy (nurses given notes): loading both sets, comparing every class x kind x action,
//! confirming the counterexamples with Check, and writing the JSON; and the comparison alone, as
//! the web UI runs it when a reload publishes a set.
//! Run: `cargo bench --bench analysis && python3 scripts/bench-medians.py analysis`.
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use verdict::analysis::{diff, matrix, ChangeKind};
use verdict::compile::PolicySet;

fn bench(c: &mut Criterion) {
    let clinic = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/clinic");
    let set = PolicySet::load(&clinic).unwrap();
    let m = matrix(&set);
    println!(
        "matrix: {} classes x {} kinds, {} cells",
        m.classes.len(),
        m.kinds.len(),
        m.cells.len()
    );
    c.bench_function("analysis/clinic matrix", |b| {
        b.iter(|| matrix(black_box(&set)))
    });

    // A changed copy: nurses read, search and update notes too.
    let changed = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&clinic).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "      kinds: [Patient, Observation]\n",
            "      kinds: [Patient, Observation, Note]\n",
        );
        std::fs::write(changed.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let new = PolicySet::load(changed.path()).unwrap();
    let d = diff(&set, &new);
    assert!(d.count(ChangeKind::Widened) > 0);
    println!(
        "diff: {} classes, {} cells compared, {} groups of changes",
        d.classes_compared,
        d.cells_compared,
        d.changes.len()
    );
    let mut group = c.benchmark_group("analysis");
    group.sample_size(10);
    // What the web UI computes as a reload publishes a set (both sets already compiled).
    group.bench_function("clinic diff (compare only)", |b| {
        b.iter(|| diff(black_box(&set), black_box(&new)))
    });
    group.bench_function("clinic diff (load both, compare, JSON)", |b| {
        b.iter(|| {
            let old = PolicySet::load(&clinic).unwrap();
            let new = PolicySet::load(changed.path()).unwrap();
            serde_json::to_string(&diff(&old, &new)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
