//! `verdict validate` and `verdict test`: working on policy files, no daemon involved.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;

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
    let set = crate::compile::PolicySet::load(&args.policies).map_err(|e| {
        anyhow::anyhow!(
            "the policy set in {} is broken:\n{e}",
            args.policies.display()
        )
    })?;
    let files = crate::suite::find(&args.policies)
        .with_context(|| format!("cannot read {}", args.policies.display()))?;
    if files.is_empty() {
        bail!(
            "no test suites (*_test.yaml) under {}",
            args.policies.display()
        );
    }
    let mut results = Vec::new();
    let mut broken = Vec::new();
    for file in files {
        match crate::suite::load(&file) {
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
