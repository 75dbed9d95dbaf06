//! Rule coverage of a suite run (`verdict test --coverage`): which rules of the policy set the
//! suites' Check cases exercised, per file.
//!
//! **Covered** means *decided at least one test case*: in some Check case's decision the rule's
//! principal selector matched, its resource selector and its condition held, and so it made the
//! decision (an allow rule allowed, a deny rule denied), or, for a deny rule, its selector or
//! condition failed to evaluate and it denied (fail closed). A rule evaluated only to be false
//! (or to fail, for an allow rule) is not covered: no test depends on it taking effect, and
//! deleting it would fail no test. The unit is the rule as written (policy, name, file, line):
//! the variants a rule compiles into (one per derived role of its selector, one per grant of a
//! capability) cover it together. Plan cases do not count: only Check cases decide.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::compile::PolicySet;
use crate::engine::{Outcome, Stage, Step};
use crate::policy::Effect;

/// Per compiled rule (by id): how many decisions evaluated it, and how many it decided.
#[derive(Debug, Clone)]
pub struct Tally {
    evaluated: Vec<u32>,
    decided: Vec<u32>,
}

impl Tally {
    /// Nothing counted yet, for the rules of `set`.
    pub fn new(set: &PolicySet) -> Tally {
        Tally {
            evaluated: vec![0; set.rules.len()],
            decided: vec![0; set.rules.len()],
        }
    }

    /// Counts one explained decision.
    pub fn count(&mut self, trace: &[Step]) {
        for step in trace {
            let Some(id) = step.rule_id.map(|id| id as usize) else {
                continue;
            };
            if id >= self.evaluated.len() || step.outcome == Outcome::PrincipalNotMatched {
                continue;
            }
            self.evaluated[id] += 1;
            let decided = match &step.outcome {
                Outcome::Held => true,
                // Fail closed: a deny rule that cannot be evaluated denies.
                Outcome::Error(_) => step.stage == Stage::Deny,
                _ => false,
            };
            if decided && step.decided {
                self.decided[id] += 1;
            }
        }
    }
}

/// One rule as written, and what the suites did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCoverage {
    pub policy: String,
    pub rule: String,
    pub effect: Effect,
    /// The policy file, as the set was loaded (the directory given, joined with the file).
    pub file: PathBuf,
    pub line: usize,
    /// Decisions in which its principal selector matched and it was evaluated.
    pub evaluated: u32,
    /// Decisions it made.
    pub decided: u32,
}

impl RuleCoverage {
    pub fn covered(&self) -> bool {
        self.decided > 0
    }
}

/// The rules of a set and which of them the suites covered, in file and line order.
#[derive(Debug, Clone)]
pub struct Coverage {
    pub rules: Vec<RuleCoverage>,
}

/// Covered and total rules of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCoverage<'c> {
    pub file: &'c Path,
    pub covered: usize,
    pub total: usize,
}

impl Coverage {
    /// What `tally` counted, by rule as written.
    pub fn of(set: &PolicySet, tally: &Tally) -> Coverage {
        let mut rules: BTreeMap<(PathBuf, usize, String, String), RuleCoverage> = BTreeMap::new();
        for (id, compiled) in set.rules.iter().enumerate() {
            let key = (
                compiled.file.clone(),
                compiled.line,
                compiled.policy.to_string(),
                compiled.name.to_string(),
            );
            let entry = rules.entry(key).or_insert_with(|| RuleCoverage {
                policy: compiled.policy.to_string(),
                rule: compiled.name.to_string(),
                effect: compiled.effect,
                file: compiled.file.clone(),
                line: compiled.line,
                evaluated: 0,
                decided: 0,
            });
            entry.evaluated += tally.evaluated[id];
            entry.decided += tally.decided[id];
        }
        Coverage {
            rules: rules.into_values().collect(),
        }
    }

    pub fn covered(&self) -> usize {
        self.rules.iter().filter(|r| r.covered()).count()
    }

    /// Covered rules in percent of all rules (100 for a set without rules).
    pub fn percent(&self) -> f64 {
        percent(self.covered(), self.rules.len())
    }

    /// Per policy file, in path order.
    pub fn files(&self) -> Vec<FileCoverage<'_>> {
        let mut files: Vec<FileCoverage<'_>> = Vec::new();
        for rule in &self.rules {
            match files.last_mut() {
                Some(last) if last.file == rule.file => {
                    last.total += 1;
                    last.covered += usize::from(rule.covered());
                }
                _ => files.push(FileCoverage {
                    file: &rule.file,
                    covered: usize::from(rule.covered()),
                    total: 1,
                }),
            }
        }
        files
    }

    /// The report for humans: the total, each file, and every rule not covered at
    /// `file:line` (the form editors and CI annotate).
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rule coverage: {} of {} rules ({:.1}%) decided at least one test case",
            self.covered(),
            self.rules.len(),
            self.percent()
        );
        for file in self.files() {
            let _ = writeln!(
                out,
                "  {}: {} of {} rules ({:.1}%)",
                file.file.display(),
                file.covered,
                file.total,
                percent(file.covered, file.total)
            );
            for rule in self
                .rules
                .iter()
                .filter(|r| r.file == file.file && !r.covered())
            {
                let _ = writeln!(
                    out,
                    "    {}:{}: {} rule \"{}\" of policy \"{}\": {}",
                    rule.file.display(),
                    rule.line,
                    effect_name(rule.effect),
                    rule.rule,
                    rule.policy,
                    uncovered_why(rule)
                );
            }
        }
        out
    }

    /// A JUnit `<testsuite name="coverage">`: the figures as properties, one testcase per rule
    /// (those not covered `<skipped>`, with why), and with `min` one testcase that fails when
    /// the coverage is below it.
    pub fn junit(&self, min: Option<f64>) -> String {
        let below = min.is_some_and(|min| self.percent() < min);
        let tests = self.rules.len() + usize::from(min.is_some());
        let skipped = self.rules.len() - self.covered();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  <testsuite name=\"coverage\" tests=\"{tests}\" failures=\"{}\" skipped=\"{skipped}\">",
            usize::from(below)
        );
        out.push_str("    <properties>\n");
        let mut property = |name: &str, value: String| {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                super::xml(&value)
            );
        };
        property("rules", self.rules.len().to_string());
        property("rules.covered", self.covered().to_string());
        property("rules.percent", format!("{:.1}", self.percent()));
        if let Some(min) = min {
            property("rules.min_percent", min.to_string());
        }
        for file in self.files() {
            property(
                &format!("file:{}", super::xml(&file.file.display().to_string())),
                format!(
                    "{} of {} ({:.1}%)",
                    file.covered,
                    file.total,
                    percent(file.covered, file.total)
                ),
            );
        }
        out.push_str("    </properties>\n");
        for rule in &self.rules {
            let name = super::xml(&format!(
                "{}:{}: {}/{}",
                rule.file.display(),
                rule.line,
                rule.policy,
                rule.rule
            ));
            let class = super::xml(&rule.file.display().to_string());
            if rule.covered() {
                let _ = writeln!(out, "    <testcase name=\"{name}\" classname=\"{class}\"/>");
            } else {
                let _ = writeln!(
                    out,
                    "    <testcase name=\"{name}\" classname=\"{class}\"><skipped message=\"{}\"/></testcase>",
                    super::xml(&uncovered_why(rule))
                );
            }
        }
        if let Some(min) = min {
            let name = format!("rule coverage at least {min}%");
            if below {
                let _ = writeln!(
                    out,
                    "    <testcase name=\"{name}\" classname=\"coverage\"><failure message=\"rule coverage {:.1}% is below {min}%\"/></testcase>",
                    self.percent()
                );
            } else {
                let _ = writeln!(
                    out,
                    "    <testcase name=\"{name}\" classname=\"coverage\"/>"
                );
            }
        }
        out.push_str("  </testsuite>\n");
        out
    }
}

fn percent(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// Why a rule is not covered, in words.
fn uncovered_why(rule: &RuleCoverage) -> String {
    match rule.evaluated {
        0 => "never evaluated: no test case asked for its kinds and actions with a principal it \
              selects"
            .to_string(),
        1 => "evaluated in 1 decision, which it did not make".to_string(),
        n => format!("evaluated in {n} decisions, none of which it made"),
    }
}
