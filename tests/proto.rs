//! Proto quality with buf (`buf.yaml`): `proto/` passes `buf lint` (the standard rules and a comment
//! on every element), and the rules do what buf.yaml says: an uncommented field fails lint, a
//! renamed field fails `buf breaking`, an added field passes it. (`.ci/buf-breaking.sh` runs
//! `buf breaking` against the earlier versions of proto/ on main.)
//!
//! Needs buf (PyPI `buf-bin`, which CI installs in .ci/run); elsewhere the tests are listed as
//! ignored (see `common::trial`).
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let buf = common::Tool::command("buf (pip install buf-bin)", "buf", &["--version"]);
    vec![
        common::trial(
            "proto::buf_lint_passes_and_catches_what_it_should",
            &[buf],
            buf_lint_passes_and_catches_what_it_should,
        ),
        common::trial(
            "proto::buf_breaking_refuses_a_rename_and_accepts_an_addition",
            &[buf],
            buf_breaking_refuses_a_rename_and_accepts_an_addition,
        ),
    ]
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn buf(dir: &Path, args: &[&str]) -> Output {
    Command::new("buf")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("buf runs")
}

/// A copy of buf.yaml and proto/ in a temp directory, with `edit` applied to authorizer.proto.
fn edited_copy(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("buf.yaml"), dir.path().join("buf.yaml")).unwrap();
    let protos = dir.path().join("proto/verdict/v1");
    std::fs::create_dir_all(&protos).unwrap();
    for file in ["authorizer.proto", "admin.proto"] {
        let text = std::fs::read_to_string(repo().join("proto/verdict/v1").join(file)).unwrap();
        let text = if file == "authorizer.proto" {
            edit(&text)
        } else {
            text
        };
        std::fs::write(protos.join(file), text).unwrap();
    }
    dir
}

fn buf_lint_passes_and_catches_what_it_should() {
    let out = buf(&repo(), &["lint"]);
    assert!(
        out.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let uncommented = edited_copy(|text| {
        let edited = text.replacen(
            "message CheckRequest {\n",
            "message CheckRequest {\n  string undocumented = 99;\n",
            1,
        );
        assert_ne!(edited, text, "the edit must change authorizer.proto");
        edited
    });
    let out = buf(uncommented.path(), &["lint"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"undocumented\""));
}

fn buf_breaking_refuses_a_rename_and_accepts_an_addition() {
    let against = repo();
    let against = against.to_str().unwrap();

    let renamed = edited_copy(|text| {
        let renamed = text.replacen(
            "  string request_id = 1;\n  // Who asks",
            "  string correlation_id = 1;\n  // Who asks",
            1,
        );
        assert_ne!(renamed, text, "the edit applies");
        renamed
    });
    let out = buf(renamed.path(), &["breaking", "--against", against]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a rename passed buf breaking");
    assert!(
        stdout.contains("changed name from \"request_id\" to \"correlation_id\""),
        "{stdout}"
    );

    let added = edited_copy(|text| {
        let added = text.replacen(
            "message CheckRequest {\n",
            "message CheckRequest {\n  // A new, documented field.\n  string trace_id = 99;\n",
            1,
        );
        assert_ne!(added, text, "the edit applies");
        added
    });
    let out = buf(added.path(), &["breaking", "--against", against]);
    assert!(
        out.status.success(),
        "an added field broke: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
