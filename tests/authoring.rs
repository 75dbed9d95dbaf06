//! The policy author's tools, as the binary runs them: `verdict validate` (every problem at once,
//! warnings, carets) and `verdict test` (suites, diffs, JUnit XML, exit codes).
use crate::common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");

fn run(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).arg(dir).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_bundled_suites_pass_and_write_junit() {
    let junit = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(BIN)
        .args(["test", "--junit"])
        .arg(junit.path())
        .arg(common::bundled_policies())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("suite \"clinic\": "), "{stdout}");
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(
        xml.contains("<testsuite name=\"clinic\"") && xml.contains("failures=\"0\""),
        "{xml}"
    );
    // One testcase per action of each test and per plan of the suite, none more, none less.
    let suite =
        verdict::suite::load(&common::bundled_policies().join("clinic/clinic_test.yaml")).unwrap();
    let cases: usize =
        suite.tests.iter().map(|t| t.expect.len()).sum::<usize>() + suite.plans.len();
    assert_eq!(xml.matches("<testcase ").count(), cases, "{xml}");
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("{cases} passed, 0 failed")),
        "{stdout}"
    );
}

#[test]
fn a_failing_suite_prints_a_diff_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docs.yaml"),
        "agent_policy:\n  name: docs\n  principals: {roles: [reader]}\n  rules:\n    - name: read-public\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.public == true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docs_test.yaml"),
        r#"suite: docs
principals:
  reader: {roles: [reader]}
resources:
  public: {kind: Doc, id: d1, attr: {public: true}}
  private: {kind: Doc, id: d2, attr: {public: false}}
tests:
  - {name: public docs are readable, principal: reader, resource: public, expect: {read: allow}, rules: {read: docs/read-public}}
  - {name: private docs are readable (wrong on purpose), principal: reader, resource: private, expect: {read: allow}}
plans:
  - {name: readers list public docs, principal: reader, kind: Doc, action: read, expect: conditional, filter: 'public == true'}
  - {name: wrong plan on purpose, principal: reader, kind: Doc, action: read, expect: always_allowed}
"#,
    )
    .unwrap();
    let junit = dir.path().join("out.xml");
    let out = Command::new(BIN)
        .args(["test", "--junit"])
        .arg(&junit)
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("suite \"docs\": 2 passed, 2 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL private docs are readable (wrong on purpose) / read"),
        "{stdout}"
    );
    assert!(stdout.contains("- expected: effect allow"), "{stdout}");
    assert!(
        stdout.contains("+ got:      deny: denied by default"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL plan: wrong plan on purpose"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ got:      conditional: public == true"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(junit).unwrap();
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");

    // A broken suite: its file and line, said once.
    std::fs::write(
        dir.path().join("broken_test.yaml"),
        "suite: broken\nprincipals:\n  reader: {roles: [reader]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = stderr
        .lines()
        .find(|l| l.contains("broken_test.yaml"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("broken_test.yaml:4: "), "{line}");
    assert!(!line.contains(" at line "), "the line is said once: {line}");
}

/// `verdict test` walks the directory as the daemon does: editors' backups (`~`) and hidden
/// files are no suites, and a symlink caught mid-swap (dangling) is skipped, not an error.
#[cfg(unix)]
#[test]
fn the_suite_walk_is_the_policy_walk() {
    let dir = tempfile::tempdir().unwrap();
    let clinic = common::bundled_policies().join("clinic");
    for entry in std::fs::read_dir(&clinic).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("clinic_test.yaml~"), "not: [a suite").unwrap();
    std::fs::write(dir.path().join(".draft_test.yaml"), "not: [a suite").unwrap();
    std::os::unix::fs::symlink("..2026_gone/x_test.yaml", dir.path().join("x_test.yaml")).unwrap();
    let (ok, stdout, stderr) = run(&["test"], dir.path());
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn validate_reports_every_problem_at_once_with_carets_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a_broken.yaml"),
        "agent_policy:\n  name: a\n  principals: {roles: [r]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "agent_policy:\n  name: b\n  principals: {roles: [r]}\n  rules:\n    - name: typo\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.x == P.atr.y && sizee(P.roles) > 0\n    - name: pointless\n      effect: deny\n      actions: [delete]\n      kinds: [Doc]\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(&["validate"], dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("a_broken.yaml:4: error: did not find expected"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "b.yaml:9: error: policy \"b\" rule \"typo\": when: unknown function 'sizee'"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("    | R.attr.x == P.atr.y && sizee(P.roles) > 0"),
        "{stderr}"
    );
    assert!(stderr.contains("^"), "{stderr}");

    std::fs::remove_file(dir.path().join("a_broken.yaml")).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "agent_policy:\n  name: b\n  principals: {roles: [r]}\n  rules:\n    - name: reads\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n    - name: pointless\n      effect: deny\n      actions: [delete]\n      kinds: [Doc]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["validate"], dir.path());
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(
            "b.yaml:9: warning: policy \"b\" rule \"pointless\": no rule allows Doc:delete"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: the set declares no schema"),
        "{stderr}"
    );
    assert!(stdout.contains("2 warning(s)"), "{stdout}");
    let (ok, _, _) = run(&["validate", "--deny-warnings"], dir.path());
    assert!(!ok, "--deny-warnings fails on warnings");

    let (ok, stdout, stderr) = run(
        &["validate", "--deny-warnings"],
        &common::bundled_policies(),
    );
    assert!(ok, "the bundled policies are clean: {stdout}{stderr}");
}

/// `verdict validate FILE`: the file as part of its directory's set (it may use named
/// conditions of other files), reporting its own problems only; a suite or a non-policy file is
/// refused with a message saying what to run instead.
#[test]
fn validate_takes_one_file_within_its_directory() {
    let clinic = common::bundled_policies().join("clinic");
    // celebrity.yaml uses a named condition conditions.yaml defines.
    let (ok, stdout, stderr) = run(&["validate"], &clinic.join("celebrity.yaml"));
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("celebrity.yaml: ok, ")
            && stdout.contains(" policies, ")
            && stdout.contains("(in "),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        "agent_policy:\n  name: good\n  principals: {roles: [r]}\n  rules:\n    - name: reads\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "agent_policy:\n  name: bad\n  principals: {roles: [r]}\n  rules:\n    - name: typo\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.x == Q.y\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["validate"], &dir.path().join("good.yaml"));
    assert!(
        ok,
        "the other file's problem is not this one's: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("whose other files have 1 problem(s)"),
        "{stdout}"
    );
    assert!(!stderr.contains("bad.yaml"), "{stderr}");
    let (ok, _, stderr) = run(&["validate"], &dir.path().join("bad.yaml"));
    assert!(!ok);
    assert!(
        stderr.contains("bad.yaml:9: error:") && stderr.contains("unknown variable 'Q'"),
        "{stderr}"
    );

    let (ok, _, stderr) = run(&["validate"], &clinic.join("clinic_test.yaml"));
    assert!(!ok);
    assert!(
        stderr.contains("is a test suite: `verdict test DIR`"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &["validate"],
        &common::bundled_policies().join("../README.md"),
    );
    assert!(!ok);
    assert!(stderr.contains("not a policy file"), "{stderr}");
}

/// A small set with one rule no test exercises (`archive`), one only ever evaluated to false
/// (`read-drafts`), and a suite for the others.
fn set_with_untested_rules(dir: &std::path::Path) {
    std::fs::write(
        dir.join("docs.yaml"),
        "agent_policy:\n  name: docs\n  principals: {roles: [reader]}\n  rules:\n    - name: read-public\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.public == true\n    - name: read-drafts\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.draft == true\n    - name: archive\n      effect: allow\n      actions: [archive]\n      kinds: [Doc]\n---\nagent_policy:\n  name: guard\n  principals: {roles: [reader]}\n  rules:\n    - name: no-secrets\n      effect: deny\n      actions: [\"*\"]\n      kinds: [Doc]\n      when: R.attr.secret == true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docs_test.yaml"),
        r#"suite: docs
principals:
  reader: {id: r1, roles: [reader]}
resources:
  public: {kind: Doc, id: d1, attr: {public: true, draft: false, secret: false}}
  private: {kind: Doc, id: d2, attr: {public: false, draft: false, secret: false}}
  secret: {kind: Doc, id: d3, attr: {public: true, draft: false, secret: true}}
tests:
  - {name: public docs are readable, principal: reader, resource: public, expect: {read: allow}}
  - {name: private ones are not, principal: reader, resource: private, expect: {read: deny}}
  - {name: secrets are not, principal: reader, resource: secret, expect: {read: deny}}
"#,
    )
    .unwrap();
}

#[test]
fn coverage_names_the_rules_no_test_case_decided_at_their_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    set_with_untested_rules(dir.path());
    let junit = dir.path().join("out.xml");
    let out = Command::new(BIN)
        .args(["test", "--coverage", "--junit"])
        .arg(&junit)
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Coverage alone reports; it does not fail the run.
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("docs.yaml").display().to_string();
    assert!(
        stdout.contains("rule coverage: 2 of 4 rules (50.0%) decided at least one test case"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  {file}: 2 of 4 rules (50.0%)\n")),
        "{stdout}"
    );
    // The rule only ever evaluated to false, and the one never reached, each at file:line.
    assert!(
        stdout.contains(&format!(
            "    {file}:10: allow rule \"read-drafts\" of policy \"docs\": evaluated in 1 decision, which it did not make\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "    {file}:15: allow rule \"archive\" of policy \"docs\": never evaluated"
        )),
        "{stdout}"
    );
    // The covered ones are not listed.
    assert!(!stdout.contains("\"read-public\""), "{stdout}");
    assert!(!stdout.contains("\"no-secrets\""), "{stdout}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"coverage\" tests=\"4\" failures=\"0\" skipped=\"2\">"),
        "{xml}"
    );
    for (name, value) in [
        ("rules", "4"),
        ("rules.covered", "2"),
        ("rules.percent", "50.0"),
    ] {
        assert!(
            xml.contains(&format!("<property name=\"{name}\" value=\"{value}\"/>")),
            "{name}: {xml}"
        );
    }
    assert!(
        xml.contains(&format!("<testcase name=\"{file}:15: docs/archive\" classname=\"{file}\"><skipped message=\"never evaluated")),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<testcase name=\"{file}:5: docs/read-public\" classname=\"{file}\"/>"
        )),
        "{xml}"
    );
    assert_eq!(
        xml.matches("<testsuite ").count(),
        2,
        "the suite's and coverage's: {xml}"
    );
    // Without --coverage, no coverage anywhere.
    let out = Command::new(BIN)
        .args(["test", "--junit"])
        .arg(&junit)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("coverage"));
    assert!(!std::fs::read_to_string(&junit)
        .unwrap()
        .contains("coverage"));
}

#[test]
fn min_coverage_fails_the_run_below_it_and_passes_at_it() {
    let dir = tempfile::tempdir().unwrap();
    set_with_untested_rules(dir.path());
    let junit = dir.path().join("out.xml");
    let run = |min: &str| {
        let out = Command::new(BIN)
            .args(["test", "--min-coverage", min, "--junit"])
            .arg(&junit)
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            std::fs::read_to_string(&junit).unwrap(),
        )
    };
    let (code, stdout, stderr, xml) = run("75");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("rule coverage: 2 of 4 rules (50.0%)"),
        "--min-coverage implies --coverage: {stdout}"
    );
    assert!(
        stderr.contains(
            "rule coverage 50.0% is below --min-coverage 75%: 2 of 4 rules decided no test case"
        ),
        "{stderr}"
    );
    assert!(
        xml.contains("<testcase name=\"rule coverage at least 75%\" classname=\"coverage\"><failure message=\"rule coverage 50.0% is below 75%\"/></testcase>"),
        "{xml}"
    );
    assert!(
        xml.contains("<testsuite name=\"coverage\" tests=\"5\" failures=\"1\" skipped=\"2\">"),
        "{xml}"
    );
    let (code, _, stderr, xml) = run("50");
    assert_eq!(code, Some(0), "at the minimum: {stderr}");
    assert!(
        xml.contains("<testcase name=\"rule coverage at least 50%\" classname=\"coverage\"/>"),
        "{xml}"
    );
    // Not a percentage: a usage error, before anything runs.
    let (code, _, stderr, _) = run("150");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("not a percentage between 0 and 100"),
        "{stderr}"
    );

    // Add the missing cases: full coverage.
    let suite = dir.path().join("docs_test.yaml");
    let mut text = std::fs::read_to_string(&suite).unwrap();
    text = text.replace(
        "resources:\n",
        "resources:\n  draft: {kind: Doc, id: d4, attr: {public: false, draft: true, secret: false}}\n",
    );
    text.push_str("  - {name: drafts are readable, principal: reader, resource: draft, expect: {read: allow, archive: allow}}\n");
    std::fs::write(&suite, text).unwrap();
    let (code, stdout, stderr, _) = run("100");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("rule coverage: 4 of 4 rules (100.0%)"),
        "{stdout}"
    );
}

#[test]
fn the_bundled_suite_covers_every_rule_of_the_clinic() {
    let out = Command::new(BIN)
        .args(["test", "--min-coverage", "100"])
        .arg(common::bundled_policies())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = verdict::compile::PolicySet::load(&common::bundled_policies()).unwrap();
    let rules: std::collections::BTreeSet<_> =
        set.rules.iter().map(|r| (r.file.clone(), r.line)).collect();
    assert!(
        stdout.contains(&format!(
            "rule coverage: {0} of {0} rules (100.0%) decided at least one test case",
            rules.len()
        )),
        "{stdout}"
    );
}
