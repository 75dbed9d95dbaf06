//! Policy test suites: YAML files next to the policies (`*_test.yaml`) with named principals and
//! resources as fixtures, a table of expected effects per action, and expected PlanFilter results.
//! `verdict test DIR` runs them in-process; the gRPC tests run the bundled suites over the wire
//! with the same expectations ([`Expectation::check`]).
//!
//! Coverage ([`coverage`]): which rules of the set the suites' Check cases exercised.
//!
//! Depends on `compile`, `engine` and `plan`; knows nothing of gRPC.

pub mod coverage;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;

use crate::compile::PolicySet;
use crate::engine;
use crate::plan::{self, Plan, PlanRequest};
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};

/// A suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub suite: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub principals: BTreeMap<String, Principal>,
    #[serde(default)]
    pub resources: BTreeMap<String, Resource>,
    #[serde(default)]
    pub tests: Vec<CheckCase>,
    #[serde(default)]
    pub plans: Vec<PlanCase>,
}

/// Expected Check decisions for one principal and one resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckCase {
    pub name: String,
    pub principal: String,
    pub resource: String,
    #[serde(default)]
    pub context: Option<Json>,
    /// action -> `allow` | `deny`.
    pub expect: BTreeMap<String, ExpectedEffect>,
    /// action -> `policy/rule` that must decide.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
    /// action -> a substring of the reason.
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedEffect {
    Allow,
    Deny,
}

/// An expected PlanFilter result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanCase {
    pub name: String,
    pub principal: String,
    pub kind: String,
    pub action: String,
    #[serde(default)]
    pub context: Option<Json>,
    #[serde(default)]
    pub known_attr: Option<Json>,
    pub expect: ExpectedPlan,
    /// The filter as `verdict plan` prints it in one line (`Filter`'s display form).
    #[serde(default)]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedPlan {
    AlwaysAllowed,
    AlwaysDenied,
    Conditional,
    /// PlanFilter must refuse (a condition no filter can express).
    Error,
}

/// A decision as observed, from the engine or from a gRPC response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub effect: ExpectedEffect,
    pub policy: String,
    pub rule: String,
    pub reason: String,
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let effect = match self.effect {
            ExpectedEffect::Allow => "allow",
            ExpectedEffect::Deny => "deny",
        };
        if self.policy.is_empty() {
            write!(f, "{effect}: {}", self.reason)
        } else {
            write!(
                f,
                "{effect} by {}/{}: {}",
                self.policy, self.rule, self.reason
            )
        }
    }
}

/// What one action of a check case expects.
pub struct Expectation<'a> {
    pub effect: ExpectedEffect,
    pub rule: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl Expectation<'_> {
    /// `None` if `observed` meets the expectation, else a diff for humans.
    pub fn check(&self, observed: &Observed) -> Option<String> {
        let mut problems = Vec::new();
        if observed.effect != self.effect {
            problems.push(format!("effect {:?}", self.effect).to_lowercase());
        }
        if let Some(rule) = self.rule {
            if format!("{}/{}", observed.policy, observed.rule) != rule {
                problems.push(format!("decided by {rule}"));
            }
        }
        if let Some(reason) = self.reason {
            if !observed.reason.contains(reason) {
                problems.push(format!("a reason containing {reason:?}"));
            }
        }
        (!problems.is_empty()).then(|| {
            format!(
                "- expected: {}\n+ got:      {observed}",
                problems.join(", ")
            )
        })
    }
}

impl CheckCase {
    pub fn expectation(&self, action: &str) -> Expectation<'_> {
        Expectation {
            effect: self.expect[action],
            rule: self.rules.get(action).map(String::as_str),
            reason: self.reasons.get(action).map(String::as_str),
        }
    }
}

impl Suite {
    /// The Check request of a case (actions in the order of `expect`).
    pub fn check_request(&self, case: &CheckCase) -> Result<CheckRequest, String> {
        let principal = self.principal(&case.principal)?;
        let resource = self.resources.get(&case.resource).ok_or_else(|| {
            format!(
                "test \"{}\": unknown resource \"{}\"",
                case.name, case.resource
            )
        })?;
        if case.expect.is_empty() {
            return Err(format!("test \"{}\": expect lists no action", case.name));
        }
        for action in case.rules.keys().chain(case.reasons.keys()) {
            if !case.expect.contains_key(action) {
                return Err(format!(
                    "test \"{}\": action \"{action}\" has a rule or reason but no expected effect",
                    case.name
                ));
            }
        }
        Ok(CheckRequest {
            request_id: case.name.clone(),
            principal: principal.clone(),
            resources: vec![ResourceCheck {
                resource: resource.clone(),
                actions: case.expect.keys().cloned().collect(),
            }],
            context: case.context.clone().unwrap_or(Json::Null),
        })
    }

    pub fn plan_request(&self, case: &PlanCase) -> Result<PlanRequest, String> {
        Ok(PlanRequest {
            principal: self.principal(&case.principal)?.clone(),
            kind: case.kind.clone(),
            action: case.action.clone(),
            context: case.context.clone().unwrap_or(Json::Null),
            known_attr: case.known_attr.clone().unwrap_or(Json::Null),
        })
    }

    fn principal(&self, name: &str) -> Result<&Principal, String> {
        self.principals
            .get(name)
            .ok_or_else(|| format!("unknown principal \"{name}\""))
    }
}

/// Reads a suite file.
pub fn load(path: &Path) -> Result<Suite, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(path, &text)
}

/// Parses the text of a suite file; `path` names it in errors (`file:line: message`).
pub fn parse(path: &Path, text: &str) -> Result<Suite, String> {
    serde_yaml_ng::from_str(text).map_err(|e| crate::policy::yaml_error(path, 1, &e).to_string())
}

/// The outcome of one test case (a Check action or a plan).
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case as reported: `test name / action`, or `plan: plan name`.
    pub name: String,
    /// The `name` of the test or plan in the suite file.
    pub test: String,
    /// `None` when it passed; the diff otherwise.
    pub failure: Option<String>,
}

/// The outcome of one suite file.
#[derive(Debug, Clone)]
pub struct SuiteResult {
    pub file: PathBuf,
    pub suite: String,
    pub cases: Vec<CaseResult>,
}

impl SuiteResult {
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_some()).count()
    }
}

fn observed(d: &engine::Decision) -> Observed {
    Observed {
        effect: if d.is_allow() {
            ExpectedEffect::Allow
        } else {
            ExpectedEffect::Deny
        },
        policy: d.policy.to_string(),
        rule: d.rule.to_string(),
        reason: d.reason.to_string(),
    }
}

/// Runs a suite against a policy set, in-process.
pub fn run(set: &PolicySet, file: &Path, suite: &Suite) -> SuiteResult {
    run_inner(set, file, suite, None)
}

/// Runs a suite like [`run`], and counts in `tally` the rules each of its Check cases evaluated
/// and which one decided (every decision explained).
pub fn run_covered(
    set: &PolicySet,
    file: &Path,
    suite: &Suite,
    tally: &mut coverage::Tally,
) -> SuiteResult {
    run_inner(set, file, suite, Some(tally))
}

fn run_inner(
    set: &PolicySet,
    file: &Path,
    suite: &Suite,
    mut tally: Option<&mut coverage::Tally>,
) -> SuiteResult {
    let limits = engine::Limits {
        explain: tally.is_some(),
        ..engine::Limits::default()
    };
    let mut cases = Vec::new();
    for case in &suite.tests {
        let request = match suite.check_request(case) {
            Ok(r) => r,
            Err(e) => {
                cases.push(CaseResult {
                    name: case.name.clone(),
                    test: case.name.clone(),
                    failure: Some(e),
                });
                continue;
            }
        };
        let results = match engine::check_with(set, &request, &limits) {
            Ok(results) => results,
            Err(_) => unreachable!("no deadline was given"),
        };
        for (i, (action, decision)) in results[0].actions.iter().enumerate() {
            if let Some(tally) = tally.as_deref_mut() {
                tally.count(results[0].trace(i));
            }
            cases.push(CaseResult {
                name: format!("{} / {action}", case.name),
                test: case.name.clone(),
                failure: case.expectation(action).check(&observed(decision)),
            });
        }
    }
    for case in &suite.plans {
        let failure = match suite.plan_request(case) {
            Err(e) => Some(e),
            Ok(request) => check_plan(case, plan::plan(set, &request)),
        };
        cases.push(CaseResult {
            name: format!("plan: {}", case.name),
            test: case.name.clone(),
            failure,
        });
    }
    SuiteResult {
        file: file.to_path_buf(),
        suite: suite.suite.clone(),
        cases,
    }
}

fn check_plan(case: &PlanCase, result: Result<Plan, plan::PlanError>) -> Option<String> {
    let got = match &result {
        Ok(Plan::AlwaysAllowed) => ExpectedPlan::AlwaysAllowed,
        Ok(Plan::AlwaysDenied) => ExpectedPlan::AlwaysDenied,
        Ok(Plan::Conditional(_)) => ExpectedPlan::Conditional,
        Err(_) => ExpectedPlan::Error,
    };
    let shown = match &result {
        Ok(Plan::Conditional(f)) => format!("conditional: {f}"),
        Ok(p) => format!("{p:?}"),
        Err(e) => format!("error: {e}"),
    };
    if got != case.expect {
        return Some(format!(
            "- expected: {:?}\n+ got:      {shown}",
            case.expect
        ));
    }
    if let (Some(want), Ok(Plan::Conditional(f))) = (&case.filter, &result) {
        if f.to_string() != *want {
            return Some(format!("- expected: {want}\n+ got:      {f}"));
        }
    }
    None
}

/// A failing case of a suite run by the reload gate, or a suite it could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFailure {
    /// The suite file, as given.
    pub file: PathBuf,
    /// The line of the failing test's `name` in that file, when found.
    pub line: Option<usize>,
    /// `suite "clinic": test "...": expected ..., got ...`, on one line.
    pub message: String,
}

/// Runs suites already read (`(path, text)`, paths as they should be reported) against `set`, as
/// the reload gate does before a set goes live: every failing case, and every suite that does
/// not parse, is a [`GateFailure`]; none means the set passes its suites.
pub fn gate(set: &PolicySet, suites: &[(PathBuf, String)]) -> Vec<GateFailure> {
    let mut failures = Vec::new();
    for (file, text) in suites {
        let suite = match parse(file, text) {
            Ok(suite) => suite,
            Err(e) => {
                failures.push(GateFailure {
                    file: file.clone(),
                    line: None,
                    message: format!("the suite cannot be read: {e}"),
                });
                continue;
            }
        };
        let result = run(set, file, &suite);
        for case in result.cases {
            let Some(diff) = case.failure else { continue };
            // `- expected: ...` / `+ got:      ...` on one line: `expected: ...; got: ...`.
            let diff: Vec<String> = diff
                .lines()
                .map(|line| {
                    let line = line.trim_start_matches(['-', '+']);
                    line.split_whitespace().collect::<Vec<_>>().join(" ")
                })
                .collect();
            failures.push(GateFailure {
                file: file.clone(),
                line: line_of_test(text, &case.test),
                message: format!(
                    "suite \"{}\": test \"{}\" failed: {}",
                    suite.suite,
                    case.name,
                    diff.join("; ")
                ),
            });
        }
    }
    failures
}

/// The first line (1-based) naming test `name` (`name: x`, `- {name: x, ...}`, quoted or not).
fn line_of_test(text: &str, name: &str) -> Option<usize> {
    let forms = [
        format!("name: {name}"),
        format!("name: \"{name}\""),
        format!("name: '{name}'"),
    ];
    text.lines()
        .position(|line| {
            forms.iter().any(|form| {
                line.find(form.as_str()).is_some_and(|at| {
                    let rest = &line[at + form.len()..];
                    rest.is_empty()
                        || rest.starts_with(',')
                        || rest.starts_with(' ')
                        || rest.starts_with('}')
                })
            })
        })
        .map(|i| i + 1)
}

/// A human-readable report; failures come with their diff.
pub fn report(results: &[SuiteResult]) -> String {
    let mut out = String::new();
    let (mut total, mut failed) = (0, 0);
    for r in results {
        total += r.cases.len();
        failed += r.failed();
        let _ = writeln!(
            out,
            "{}: suite \"{}\": {} passed, {} failed",
            r.file.display(),
            r.suite,
            r.cases.len() - r.failed(),
            r.failed()
        );
        for case in r.cases.iter().filter(|c| c.failure.is_some()) {
            let _ = writeln!(out, "  FAIL {}", case.name);
            for line in case.failure.as_deref().unwrap_or("").lines() {
                let _ = writeln!(out, "       {line}");
            }
        }
    }
    let _ = writeln!(out, "{} passed, {} failed", total - failed, failed);
    out
}

/// JUnit XML for CI systems: one testsuite per file, one testcase per action or plan; with
/// `coverage`, a testsuite `coverage` too ([`coverage::Coverage::junit`], with the minimum).
pub fn junit(
    results: &[SuiteResult],
    coverage: Option<(&coverage::Coverage, Option<f64>)>,
) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for r in results {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" file=\"{}\" tests=\"{}\" failures=\"{}\">",
            xml(&r.suite),
            xml(&r.file.display().to_string()),
            r.cases.len(),
            r.failed()
        );
        for case in &r.cases {
            match &case.failure {
                None => {
                    let _ = writeln!(
                        out,
                        "    <testcase name=\"{}\" classname=\"{}\"/>",
                        xml(&case.name),
                        xml(&r.suite)
                    );
                }
                Some(diff) => {
                    let first = diff.lines().next().unwrap_or("");
                    let _ = writeln!(
                        out,
                        "    <testcase name=\"{}\" classname=\"{}\"><failure message=\"{}\">{}</failure></testcase>",
                        xml(&case.name),
                        xml(&r.suite),
                        xml(first),
                        xml(diff)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    if let Some((coverage, min)) = coverage {
        out.push_str(&coverage.junit(min));
    }
    out.push_str("</testsuites>\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
