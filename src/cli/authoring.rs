//! `verdict validate`, `verdict test` and `verdict diff`: working on policy files, no daemon
//! involved.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};

use crate::policy::LoadErrors;

#[derive(Args)]
pub struct TestArgs {
    /// Directory of policy files and their test suites.
    #[arg(default_value = "policies")]
    pub policies: PathBuf,
    /// Also write the results as JUnit XML to this file (with --coverage, a testsuite
    /// `coverage` too).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Report rule coverage: per policy file, which rules decided no test case (a rule is
    /// covered when it made at least one Check case's decision), with file:line.
    #[arg(long)]
    pub coverage: bool,
    /// Fail (exit 1) when rule coverage is below N percent (0-100); implies --coverage.
    #[arg(long, value_name = "N", value_parser = parse_percent)]
    pub min_coverage: Option<f64>,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(n) if (0.0..=100.0).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a percentage between 0 and 100")),
    }
}

#[derive(Args)]
pub struct ValidateArgs {
    /// A directory of policy files, or one policy file: checked as part of the set in its
    /// directory (it may use named conditions and roles of other files), its problems only.
    #[arg(default_value = "policies", value_name = "DIR|FILE")]
    pub policies: PathBuf,
    /// Exit non-zero on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// A set without a `schema` document is an error, not a warning.
    #[arg(long)]
    pub require_schema: bool,
}

#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Print the set's schema as JSON Schema (draft 2020-12) of a Check request, with one
    /// definition per kind, for callers to validate requests (and rows) on their side.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// Directory of policy files.
    #[arg(default_value = "policies")]
    pub policies: PathBuf,
}

pub fn schema(command: SchemaCommand) -> Result<()> {
    let SchemaCommand::Export(args) = command;
    let set = crate::compile::PolicySet::load(&args.policies).map_err(|e| {
        anyhow::anyhow!("{e}\n{}: the policies do not load", args.policies.display())
    })?;
    let Some(schema) = &set.schema else {
        bail!(
            "{}: the set declares no schema: there is nothing to export (add a `schema` document)",
            args.policies.display()
        );
    };
    let title = format!(
        "Check request for the policies in {} (version {})",
        args.policies.display(),
        set.version
    );
    let exported = crate::schema::json_schema::check_request(schema, &title);
    println!("{}", serde_json::to_string_pretty(&exported)?);
    Ok(())
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
    let covering = args.coverage || args.min_coverage.is_some();
    let mut tally = crate::suite::coverage::Tally::new(&set);
    for (relative, text) in &read.suites {
        let file = dir.join(relative);
        match crate::suite::parse(&file, text) {
            Ok(suite) if covering => {
                results.push(crate::suite::run_covered(&set, &file, &suite, &mut tally))
            }
            Ok(suite) => results.push(crate::suite::run(&set, &file, &suite)),
            Err(e) => broken.push(e),
        }
    }
    print!("{}", crate::suite::report(&results));
    let coverage = covering.then(|| crate::suite::coverage::Coverage::of(&set, &tally));
    if let Some(coverage) = &coverage {
        print!("{}", coverage.report());
    }
    if let Some(path) = &args.junit {
        let xml = crate::suite::junit(&results, coverage.as_ref().map(|c| (c, args.min_coverage)));
        std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))?;
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
    if let (Some(coverage), Some(min)) = (&coverage, args.min_coverage) {
        if coverage.percent() < min {
            bail!(
                "rule coverage {:.1}% is below --min-coverage {min}%: {} of {} rules decided no test case",
                coverage.percent(),
                coverage.rules.len() - coverage.covered(),
                coverage.rules.len()
            );
        }
    }
    Ok(())
}

pub fn validate(args: ValidateArgs) -> Result<()> {
    let path = &args.policies;
    // A file is checked as part of the policy set of its directory (named conditions, derived
    // roles and capabilities come from other files), and only its own problems are reported.
    let (dir, file) = if path.is_file() {
        if crate::policy::is_test_suite(path) {
            bail!(
                "{} is a test suite: `verdict test DIR` runs it against its policies",
                path.display()
            );
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        (dir.clone(), Some(dir.join(name)))
    } else {
        (path.clone(), None)
    };
    let (source, mut errors) = crate::policy::read_dir(&dir);
    if let Some(file) = &file {
        if !source.documents.iter().any(|d| d.file == *file)
            && !errors.iter().any(|e| e.file == *file)
        {
            bail!(
                "{}: not a policy file of {} (*.yaml, *.yml, not hidden)",
                path.display(),
                dir.display()
            );
        }
    }
    let mut warnings = Vec::new();
    let mut summary = None;
    match crate::compile::PolicySet::compile(&source) {
        Ok(set) => {
            warnings = set.warnings.clone();
            if args.require_schema && set.schema.is_none() {
                // The untyped-set warning becomes the error.
                warnings.retain(|w| w.line.is_some());
                errors.push(crate::policy::LoadError {
                    file: args.policies.clone(),
                    line: None,
                    message: "the set declares no schema (--require-schema): add a `schema` document declaring its kinds, actions, roles and attributes".into(),
                });
            }
            summary = Some(format!(
                "{} policies, {} rules, version {}",
                set.policy_count,
                set.rules.len(),
                set.version
            ));
        }
        Err(e) => errors.extend(e.0),
    }
    let mut elsewhere = 0;
    if let Some(file) = &file {
        let before = errors.len() + warnings.len();
        errors.retain(|e| e.file == *file);
        warnings.retain(|w| w.file == *file);
        elsewhere = before - errors.len() - warnings.len();
    }
    for e in &errors {
        eprintln!("{}", with_severity(e, "error"));
    }
    for w in &warnings {
        eprintln!("{}", with_severity(w, "warning"));
    }
    let shown = path.display();
    let context = match (&file, elsewhere) {
        (None, _) => String::new(),
        (Some(_), 0) => format!(" (in {})", dir.display()),
        (Some(_), n) => format!(
            " (in {}, whose other files have {n} problem(s): `verdict validate {}`)",
            dir.display(),
            dir.display()
        ),
    };
    if !errors.is_empty() {
        bail!(
            "{shown}: {} error(s), {} warning(s){context}",
            errors.len(),
            warnings.len()
        );
    }
    if args.deny_warnings && !warnings.is_empty() {
        bail!(
            "{shown}: {} warning(s) (--deny-warnings){context}",
            warnings.len()
        );
    }
    match summary {
        Some(summary) => println!(
            "{shown}: ok, {summary}, {} warning(s){context}",
            warnings.len()
        ),
        // The set does not compile, for problems in other files only.
        None => println!("{shown}: ok{context}"),
    }
    Ok(())
}

/// `file:line: error: message`, the form editors and CI annotate.
fn with_severity(e: &crate::policy::LoadError, severity: &str) -> String {
    match e.line {
        Some(line) => format!("{}:{line}: {severity}: {}", e.file.display(), e.message),
        None => format!("{}: {severity}: {}", e.file.display(), e.message),
    }
}

/// `verdict diff`'s exit codes, for its `--help` and the docs.
pub const DIFF_EXIT_CODES: &str = "\
Exit codes:
  0  no access widened (nothing changed, or access only narrowed)
  1  either policy set does not load (or cannot be read)
  2  bad command line
  3  access widened: some change is widened or changed (gains and losses), or could not be
     decided (unproved, undetermined): a CI job fails on it";

#[derive(Args)]
pub struct DiffArgs {
    /// The policies before the change (e.g. main's).
    pub old: PathBuf,
    /// The policies after the change (e.g. the pull request's).
    pub new: PathBuf,
    /// Output: `text` for people, `json` for machines (`analysis::Diff`).
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

/// Compares two policy directories: every principal class x kind x action whose access changed.
pub fn diff(args: DiffArgs) -> Result<std::process::ExitCode> {
    let load = |which: &str, dir: &std::path::Path| {
        crate::compile::PolicySet::load(dir).map_err(|e| {
            anyhow::anyhow!(
                "{e}\nthe {which} policy set in {} does not load",
                dir.display()
            )
        })
    };
    let old = load("old", &args.old)?;
    let new = load("new", &args.new)?;
    let diff = crate::analysis::diff(&old, &new);
    match args.format {
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&diff)?),
        DiffFormat::Text => print!("{}", diff_text(&diff, &args.old, &args.new)),
    }
    Ok(if diff.widened() {
        std::process::ExitCode::from(3)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn change_name(change: crate::analysis::ChangeKind) -> &'static str {
    use crate::analysis::ChangeKind;
    match change {
        ChangeKind::Widened => "WIDENED",
        ChangeKind::Narrowed => "NARROWED",
        ChangeKind::Changed => "CHANGED",
        ChangeKind::Unproved => "UNPROVED",
        ChangeKind::Undetermined => "UNDETERMINED",
    }
}

/// The diff for people.
fn diff_text(d: &crate::analysis::Diff, old: &std::path::Path, new: &std::path::Path) -> String {
    use crate::analysis::{Access, ChangeKind, Counterexample, Side};
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (version {}) -> {} (version {})",
        old.display(),
        d.old_version,
        new.display(),
        d.new_version
    );
    let counts: Vec<String> = [
        (ChangeKind::Widened, "widened"),
        (ChangeKind::Narrowed, "narrowed"),
        (ChangeKind::Changed, "changed"),
        (ChangeKind::Unproved, "unproved"),
        (ChangeKind::Undetermined, "undetermined"),
    ]
    .iter()
    .filter_map(|(k, name)| {
        let n = d.count(*k);
        (n > 0).then(|| format!("{n} {name}"))
    })
    .collect();
    let _ = writeln!(
        out,
        "{} principal classes, {} (class, kind, action) cells compared; {}",
        d.classes_compared,
        d.cells_compared,
        if counts.is_empty() {
            "no access changed".to_string()
        } else {
            format!(
                "groups of classes whose access changed: {}",
                counts.join(", ")
            )
        }
    );
    let side = |out: &mut String, name: &str, s: &Side| {
        let access = match s.access {
            Access::Always => "always".to_string(),
            Access::Never => "never".to_string(),
            Access::Conditional => format!("when {}", s.condition.as_deref().unwrap_or("?")),
            Access::Undetermined => "undetermined".to_string(),
        };
        let _ = writeln!(out, "  {name:<7} {access}");
        for r in &s.rules {
            let _ = writeln!(
                out,
                "          {} {}/{} ({}:{})",
                r.effect, r.policy, r.rule, r.file, r.line
            );
        }
        if let Some(note) = &s.note {
            let _ = writeln!(out, "          ({note})");
        }
    };
    let example = |out: &mut String, what: &str, c: &Counterexample| {
        let _ = writeln!(out, "  {what}: confirmed by Check on both sets");
        let _ = writeln!(out, "    principal {}", compact(&c.principal));
        let _ = writeln!(
            out,
            "    resource  {}",
            serde_json::to_string(&c.resource).unwrap_or_default()
        );
        let _ = writeln!(out, "    action    {}", c.action);
        let _ = writeln!(
            out,
            "    before    {}: {}",
            c.before.effect.to_uppercase(),
            c.before.reason
        );
        let _ = writeln!(
            out,
            "    after     {}: {}",
            c.after.effect.to_uppercase(),
            c.after.reason
        );
    };
    // One line per (kind, action, change), then each group of classes in detail.
    let mut summary: Vec<(String, &str, usize, usize)> = Vec::new();
    for c in &d.changes {
        let name = change_name(c.change);
        let key = format!("{}:{}", c.kind, c.action);
        match summary.iter_mut().find(|s| s.0 == key && s.1 == name) {
            Some(s) => {
                s.2 += c.classes.len();
                s.3 += 1;
            }
            None => summary.push((key, name, c.classes.len(), 1)),
        }
    }
    for (key, name, classes, groups) in &summary {
        let _ = writeln!(
            out,
            "  {name:<12} {key:<24} {classes} classes ({groups} group{})",
            if *groups == 1 { "" } else { "s" }
        );
    }
    const SHOWN: usize = 4;
    for c in &d.changes {
        let name = change_name(c.change);
        let _ = writeln!(out, "\n{name} {}:{}", c.kind, c.action);
        let mut who = c.labels[..c.labels.len().min(SHOWN)].join("; ");
        if c.labels.len() > SHOWN {
            let _ = write!(who, "; and {} more classes", c.labels.len() - SHOWN);
        }
        let _ = writeln!(out, "  for     {who}");
        side(&mut out, "before", &c.before);
        side(&mut out, "after", &c.after);
        if let Some(g) = &c.gained {
            example(&mut out, "gained", g);
        }
        if let Some(l) = &c.lost {
            example(&mut out, "lost", l);
        }
        if let Some(note) = &c.note {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if d.widened() {
            "access widened (exit code 3)"
        } else {
            "no access widened"
        }
    );
    let _ = writeln!(out, "exact:");
    for line in &d.exact {
        let _ = writeln!(out, "  - {line}");
    }
    let _ = writeln!(out, "sampled:");
    for line in &d.sampled {
        let _ = writeln!(out, "  - {line}");
    }
    out
}

/// A principal as JSON without its empty fields.
fn compact(p: &crate::request::Principal) -> String {
    let mut value = serde_json::to_value(p).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|_, v| match v {
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            serde_json::Value::Null => false,
            _ => true,
        });
    }
    value.to_string()
}
