//! `verdict validate` and `verdict test`: working on policy files, no daemon involved.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::policy::LoadErrors;

#[derive(Args)]
pub struct TestArgs {
    /// Directory of policy files and their test suites.
    #[arg(default_value = "policies")]
    pub policies: PathBuf,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Directory of policy files.
    #[arg(default_value = "policies")]
    pub policies: PathBuf,
    /// Exit non-zero on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

pub fn test(args: TestArgs) -> Result<()> {
    let dir = &args.policies;
    let broken_set = |e: crate::policy::LoadErrors| {
        anyhow::anyhow!("the policy set in {} is broken:\n{e}", dir.display())
    };
    // One walk of the directory, as the daemon's: the policies and the suites next to them.
    let read = crate::policy::read_files(dir).map_err(|e| broken_set(LoadErrors(vec![e])))?;
    if !read.unreadable.is_empty() {
        return Err(broken_set(LoadErrors(read.unreadable)));
    }
    let source = crate::policy::parse_files(dir, &read.texts).map_err(broken_set)?;
    let set = crate::compile::PolicySet::compile(&source).map_err(broken_set)?;
    if read.suites.is_empty() && read.unreadable_suites.is_empty() {
        bail!("no test suites (*_test.yaml) under {}", dir.display());
    }
    let mut results = Vec::new();
    let mut broken: Vec<String> = read
        .unreadable_suites
        .iter()
        .map(ToString::to_string)
        .collect();
    for (relative, text) in &read.suites {
        let file = dir.join(relative);
        match crate::suite::parse(&file, text) {
            Ok(suite) => results.push(crate::suite::run(&set, &file, &suite)),
            Err(e) => broken.push(e),
        }
    }
    print!("{}", crate::suite::report(&results));
    if let Some(path) = &args.junit {
        std::fs::write(path, crate::suite::junit(&results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    for e in &broken {
        eprintln!("{e}");
    }
    let failed: usize = results.iter().map(|r| r.failed()).sum();
    if failed > 0 || !broken.is_empty() {
        bail!(
            "{failed} test case(s) failed, {} suite file(s) unreadable",
            broken.len()
        );
    }
    Ok(())
}

pub fn validate(args: ValidateArgs) -> Result<()> {
    let (source, mut errors) = crate::policy::read_dir(&args.policies);
    let mut warnings = Vec::new();
    let mut summary = None;
    match crate::compile::PolicySet::compile(&source) {
        Ok(set) => {
            warnings = set.warnings.clone();
            summary = Some(format!(
                "{} policies, {} rules, version {}",
                set.policy_count,
                set.rules.len(),
                set.version
            ));
        }
        Err(e) => errors.extend(e.0),
    }
    for e in &errors {
        eprintln!("{}", with_severity(e, "error"));
    }
    for w in &warnings {
        eprintln!("{}", with_severity(w, "warning"));
    }
    let dir = args.policies.display();
    if !errors.is_empty() {
        bail!(
            "{dir}: {} error(s), {} warning(s)",
            errors.len(),
            warnings.len()
        );
    }
    if args.deny_warnings && !warnings.is_empty() {
        bail!("{dir}: {} warning(s) (--deny-warnings)", warnings.len());
    }
    println!(
        "{dir}: ok, {}, {} warning(s)",
        summary.unwrap_or_default(),
        warnings.len()
    );
    Ok(())
}

/// `file:line: error: message`, the form editors and CI annotate.
fn with_severity(e: &crate::policy::LoadError, severity: &str) -> String {
    match e.line {
        Some(line) => format!("{}:{line}: {severity}: {}", e.file.display(), e.message),
        None => format!("{}: {severity}: {}", e.file.display(), e.message),
    }
}
