//! `verdict diff` as a policy repository's CI runs it: the bundled clinic set against copies with
//! known changes (a guard removed, a role widened, a scope gate narrowed, a reformatting that
//! changes nothing), through the real binary. Every counterexample it prints is decided again
//! here by the engine on both sets, and the exit codes are the documented ones.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");

/// A copy of the clinic set in a temp dir, with `edit` applied to (file, text) pairs.
fn changed_copy(edit: impl Fn(&str, String) -> Option<String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let clinic = common::bundled_policies().join("clinic");
    for entry in std::fs::read_dir(&clinic).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some(text) = edit(&name, text) {
            std::fs::write(dir.path().join(&name), text).unwrap();
        }
    }
    dir
}

/// A copy of the bundled clinic with `from` replaced by `to` in `file` (which must contain it).
fn edited_copy(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    changed_copy(|name, text| {
        Some(if name == file {
            let edited = text.replace(from, to);
            assert_ne!(edited, text, "{from:?} is not in {file}");
            edited
        } else {
            text
        })
    })
}

fn clinic() -> PathBuf {
    common::bundled_policies().join("clinic")
}

/// Runs `verdict diff OLD NEW --format json`: (exit code, the diff).
fn diff_json(old: &Path, new: &Path) -> (i32, Json) {
    let out = Command::new(BIN)
        .args(["diff", "--format", "json"])
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let diff: Json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), diff)
}

fn changes(diff: &Json) -> &Vec<Json> {
    diff["changes"].as_array().unwrap()
}

/// (kind, action, change) of every change, sorted.
fn summary(diff: &Json) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = changes(diff)
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn decide(set: &verdict::compile::PolicySet, example: &Json) -> bool {
    let request = verdict::request::CheckRequest {
        principal: serde_json::from_value(example["principal"].clone()).unwrap(),
        resources: vec![verdict::request::ResourceCheck {
            resource: serde_json::from_value(example["resource"].clone()).unwrap(),
            actions: vec![example["action"].as_str().unwrap().to_string()],
        }],
        context: serde_json::json!({}),
        ..Default::default()
    };
    verdict::engine::check(set, &request)[0].actions[0]
        .1
        .is_allow()
}

/// Every change is confirmed, and its counterexamples flip as stated when this test asks the
/// engine itself on both sets.
fn assert_confirmed(old: &Path, new: &Path, diff: &Json) {
    let old = verdict::compile::PolicySet::load(old).unwrap();
    let new = verdict::compile::PolicySet::load(new).unwrap();
    for c in changes(diff) {
        assert_eq!(c["confirmed"], true, "{c:#}");
        let kind = c["change"].as_str().unwrap();
        let gained = &c["gained"];
        let lost = &c["lost"];
        assert_eq!(
            !gained.is_null(),
            kind == "widened" || kind == "changed",
            "{c:#}"
        );
        assert_eq!(
            !lost.is_null(),
            kind == "narrowed" || kind == "changed",
            "{c:#}"
        );
        if !gained.is_null() {
            assert!(!decide(&old, gained) && decide(&new, gained), "{gained:#}");
            assert_eq!(gained["before"]["effect"], "deny");
            assert_eq!(gained["after"]["effect"], "allow");
        }
        if !lost.is_null() {
            assert!(decide(&old, lost) && !decide(&new, lost), "{lost:#}");
        }
    }
}

/// Every class of every change has one of these roles or capabilities.
fn classes_all_hold(diff: &Json, any_of: &[&str]) {
    for c in changes(diff) {
        for class in c["classes"].as_array().unwrap() {
            let class = class.as_str().unwrap();
            assert!(
                any_of
                    .iter()
                    .any(|r| class.split(['+', '/']).any(|p| p == *r)),
                "{class} in {c:#}"
            );
        }
    }
}

#[test]
fn a_removed_guard_widens_exactly_what_it_guarded() {
    // Patients read their notes once signed: the guard goes.
    let new = edited_copy("roles.yaml", "      when: R.attr.signed == true\n", "");
    let (code, diff) = diff_json(&clinic(), new.path());
    assert_eq!(code, 3, "{diff:#}");
    assert_eq!(
        summary(&diff),
        [
            ("Note".into(), "read".into(), "widened".into()),
            ("Note".into(), "search".into(), "widened".into()),
        ]
    );
    classes_all_hold(&diff, &["role:patient"]);
    let first = &changes(&diff)[0];
    assert!(
        first["before"]["condition"]
            .as_str()
            .unwrap()
            .contains("signed == true"),
        "{first:#}"
    );
    assert!(
        !first["after"]["condition"]
            .as_str()
            .unwrap()
            .contains("signed"),
        "{first:#}"
    );
    assert_confirmed(&clinic(), new.path(), &diff);
}

#[test]
fn a_widened_role_reports_the_new_kind_for_that_role_only() {
    // Nurses get notes too.
    let new = edited_copy(
        "roles.yaml",
        "      actions: [read, search, update]\n      kinds: [Patient, Observation]",
        "      actions: [read, search, update]\n      kinds: [Patient, Observation, Note]",
    );
    let (code, diff) = diff_json(&clinic(), new.path());
    assert_eq!(code, 3, "{diff:#}");
    assert_eq!(
        summary(&diff),
        [
            ("Note".into(), "read".into(), "widened".into()),
            ("Note".into(), "search".into(), "widened".into()),
            ("Note".into(), "update".into(), "widened".into()),
        ]
    );
    classes_all_hold(&diff, &["role:nurse"]);
    // A nurse who is also front-desk staff stays out of notes: the deny still holds.
    for c in changes(&diff) {
        assert!(
            !c["classes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x.as_str().unwrap().contains("role:admin_staff")),
            "{c:#}"
        );
    }
    let rules: Vec<&str> = changes(&diff)[0]["after"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"chart-work"), "{rules:?}");
    assert_confirmed(&clinic(), new.path(), &diff);
}

#[test]
fn a_narrowed_scope_gate_narrows_and_exits_zero() {
    // Signing a note no longer maps to any SMART permission: no token may sign.
    let new = edited_copy("smart.yaml", ", sign: u}", "}");
    let (code, diff) = diff_json(&clinic(), new.path());
    assert_eq!(code, 0, "{diff:#}");
    assert_eq!(
        summary(&diff),
        [("Note".into(), "sign".into(), "narrowed".into())]
    );
    classes_all_hold(&diff, &["role:physician", "cap:sign-a-note"]);
    for c in changes(&diff) {
        assert_eq!(c["after"]["access"], "never", "{c:#}");
        assert_eq!(c["after"]["rules"][0]["effect"], "scope_gate", "{c:#}");
    }
    assert_confirmed(&clinic(), new.path(), &diff);
}

#[test]
fn a_gate_that_asks_another_letter_is_seen_through_single_letter_scopes() {
    // Signing asks for `r` instead of `u`: a read-only token may now sign, an update-only one
    // may not.
    let new = edited_copy("smart.yaml", "sign: u}", "sign: r}");
    let (code, diff) = diff_json(&clinic(), new.path());
    assert_eq!(code, 3, "{diff:#}");
    let kinds = summary(&diff);
    assert!(
        kinds.contains(&("Note".into(), "sign".into(), "widened".into()))
            && kinds.contains(&("Note".into(), "sign".into(), "narrowed".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|(k, a, _)| k == "Note" && a == "sign"),
        "{kinds:?}"
    );
    assert_confirmed(&clinic(), new.path(), &diff);
}

#[test]
fn a_reformatting_changes_nothing() {
    // Flow style to block style, descriptions reworded, operands swapped, lists and policies in
    // another order, a file renamed.
    let new = changed_copy(|name, text| {
        Some(match name {
            "prescribing.yaml" => text.replace(
                "  resource: {kind: MedicationRequest}",
                "  resource:\n    kind: MedicationRequest",
            ),
            "roles.yaml" => {
                let text = text
                    .replace(
                        "physicians read and write every record of their practice",
                        "a physician reads and writes the records of the practice",
                    )
                    .replace("kinds: [Patient, Invoice]", "kinds: [Invoice, Patient]");
                let mut policies: Vec<&str> = text.split("---\n").collect();
                policies.reverse();
                policies.join("---\n")
            }
            "conditions.yaml" => text.replace(
                "R.attr.practice_id == P.attr.practice_id",
                "P.attr.practice_id == R.attr.practice_id",
            ),
            _ => text,
        })
    });
    std::fs::rename(
        new.path().join("celebrity.yaml"),
        new.path().join("vip.yaml"),
    )
    .unwrap();
    let old_set = verdict::compile::PolicySet::load(&clinic()).unwrap();
    let new_set = verdict::compile::PolicySet::load(new.path()).unwrap();
    assert_ne!(old_set.version, new_set.version, "the text did change");
    let (code, diff) = diff_json(&clinic(), new.path());
    assert_eq!(code, 0, "{diff:#}");
    assert!(changes(&diff).is_empty(), "{diff:#}");
    assert!(diff["cells_compared"].as_u64().unwrap() > 10_000, "{diff}");
    // The text output says so too.
    let out = Command::new(BIN)
        .arg("diff")
        .arg(clinic())
        .arg(new.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("no access changed"), "{stdout}");
    assert!(stdout.contains("no access widened"), "{stdout}");
    assert!(stdout.contains("\nsampled:\n  - "), "{stdout}");
}

#[test]
fn the_text_output_names_rules_files_and_the_counterexample() {
    let new = changed_copy(|name, text| (name != "celebrity.yaml").then_some(text));
    let out = Command::new(BIN)
        .arg("diff")
        .arg(clinic())
        .arg(new.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("WIDENED Patient:read"), "{stdout}");
    assert!(
        stdout.contains("deny celebrity-patients/only-the-primary-physician (")
            && stdout.contains("celebrity.yaml:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gained: confirmed by Check on both sets"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"celebrity\":true"),
        "the counterexample is a celebrity's record: {stdout}"
    );
    assert!(stdout.contains("access widened (exit code 3)"), "{stdout}");
    let (_, diff) = diff_json(&clinic(), new.path());
    assert!(summary(&diff)
        .iter()
        .all(|(k, _, c)| k == "Patient" && c == "widened"));
    assert_confirmed(&clinic(), new.path(), &diff);
}

#[test]
fn a_set_that_does_not_load_exits_one_and_says_which() {
    let broken = edited_copy("roles.yaml", "effect: allow", "effect: alow");
    let out = Command::new(BIN)
        .arg("diff")
        .arg(clinic())
        .arg(broken.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("roles.yaml:"), "{stderr}");
    assert!(stderr.contains("the new policy set in"), "{stderr}");
    let missing = Command::new(BIN)
        .args(["diff", "/nonexistent/old"])
        .arg(clinic())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("the old policy set in"));
    let help = Command::new(BIN).args(["diff", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for code in [
        "0  no access widened",
        "1  either policy set",
        "3  access widened",
    ] {
        assert!(help.contains(code), "{help}");
    }
}

#[test]
fn the_readme_example_runs_as_written() {
    let section = common::readme_section("## Reviewing a policy change");
    let pairs = common::commands_and_outputs(&section);
    let (script, output) = &pairs[0];
    let expected = output
        .as_ref()
        .expect("the README shows the output")
        .content
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("policies/clinic");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(clinic()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let out = common::shell(&script.content, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, expected);
}
