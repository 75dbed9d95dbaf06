//! The analysis's answers as HTML: the access matrix of a set ([`crate::analysis::matrix`]) and
//! the access changes between two sets ([`crate::analysis::diff`]), every deciding rule linked to
//! its line in the policy file.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::html::Html;
use crate::analysis::{
    Access, Cell, Change, ChangeKind, Counterexample, Diff, Matrix, RuleRef, Side,
};

/// Where a rule is written: the link to its file and line, in the active set or the previous one.
pub trait Linker {
    fn rule(&self, rule: &RuleRef, previous: bool) -> String;
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::Always => "always",
        Access::Never => "never",
        Access::Conditional => "conditional",
        Access::Undetermined => "undetermined",
    }
}

fn change_name(change: ChangeKind) -> &'static str {
    match change {
        ChangeKind::Widened => "widened",
        ChangeKind::Narrowed => "narrowed",
        ChangeKind::Changed => "changed",
        ChangeKind::Unproved => "unproved",
        ChangeKind::Undetermined => "undetermined",
    }
}

/// The rules of a cell or side, each a link named `policy/rule` with its effect.
fn rules(html: &mut Html, rules: &[RuleRef], links: &dyn Linker, previous: bool) {
    if rules.is_empty() {
        return;
    }
    html.raw("<span class=\"rules\">");
    for (i, rule) in rules.iter().enumerate() {
        if i > 0 {
            html.raw(" ");
        }
        html.raw("<a class=\"rule ")
            .text(&rule.effect)
            .raw("\" title=\"")
            .text(&format!(
                "{} rule, {}:{}",
                rule.effect, rule.file, rule.line
            ))
            .raw("\" href=\"")
            .text(&links.rule(rule, previous))
            .raw("\">")
            .text(&format!("{}/{}", rule.policy, rule.rule))
            .raw("</a>");
    }
    html.raw("</span>");
}

/// An access with its condition, rules and note; `previous`: its rules are the previous set's.
fn access(html: &mut Html, side: &Side, links: &dyn Linker, previous: bool) {
    html.element("span", "access", access_name(side.access));
    if let Some(condition) = &side.condition {
        html.element("code", "condition", condition);
    }
    rules(html, &side.rules, links, previous);
    if let Some(note) = &side.note {
        html.element("span", "note", note);
    }
}

fn statements(html: &mut Html, exact: &[String], sampled: &[String]) {
    html.raw("<details class=\"statements\"><summary>What is exact and what is sampled</summary><p>Exact:</p><ul>");
    for s in exact {
        html.element("li", "", s);
    }
    html.raw("</ul><p>Sampled (not proved):</p><ul>");
    for s in sampled {
        html.element("li", "", s);
    }
    html.raw("</ul><p>docs/analysis.md says how classes are formed.</p></details>");
}

/// The matrix: one table per kind, a row per principal class, a column per action; each cell
/// always, never, conditional (with its filter) or undetermined, with the rules that decide.
pub fn matrix(html: &mut Html, m: &Matrix, links: &dyn Linker) {
    html.raw(
        "<p>Who may do what, from the policy files alone: a row per class of principals the \
         policies tell apart, a column per action. <span class=\"access\">always</span>: every \
         record of the kind; <span class=\"access\">never</span>: none; <span \
         class=\"access\">conditional</span>: the records the filter selects (bare names are the \
         record's attributes, <code>P.attr.x</code> and <code>P.id</code> the principal's own). \
         Each cell names the rules that decide it, linked to their line.</p>",
    );
    statements(html, &m.exact, &m.sampled);
    let cells: HashMap<(&str, &str, &str), &Cell> = m
        .cells
        .iter()
        .map(|c| ((c.class.as_str(), c.kind.as_str(), c.action.as_str()), c))
        .collect();
    html.raw("<p class=\"kinds\">Kinds: ");
    for (i, k) in m.kinds.iter().enumerate() {
        if i > 0 {
            html.raw(" · ");
        }
        html.link(&format!("#kind-{i}"), &k.kind);
    }
    html.raw(
        "</p><p><label>Show classes matching <input id=\"class-filter\" type=\"search\" \
         placeholder=\"physician, user/, sign-a-note…\"></label></p>",
    );
    for (i, k) in m.kinds.iter().enumerate() {
        html.raw(&format!("<section class=\"kind\" id=\"kind-{i}\"><h2>"));
        html.text(&k.kind);
        html.raw("</h2><table class=\"matrix\"><thead><tr><th>principal class</th>");
        for action in &k.actions {
            html.element("th", "", action);
        }
        html.raw("</tr></thead><tbody>");
        for class in &m.classes {
            html.raw("<tr data-class=\"")
                .text(&class.id)
                .raw("\"><th title=\"")
                .text(&class.id)
                .raw("\">")
                .text(&class.label)
                .raw("</th>");
            for action in &k.actions {
                match cells.get(&(class.id.as_str(), k.kind.as_str(), action.as_str())) {
                    Some(cell) => {
                        html.raw("<td class=\"cell ")
                            .raw(access_name(cell.side.access))
                            .raw("\" data-kind=\"")
                            .text(&k.kind)
                            .raw("\" data-action=\"")
                            .text(action)
                            .raw("\">");
                        access(html, &cell.side, links, false);
                        html.raw("</td>");
                    }
                    None => {
                        html.raw("<td></td>");
                    }
                }
            }
            html.raw("</tr>");
        }
        html.raw("</tbody></table></section>");
    }
}

/// The access changes between two sets, with their counterexamples.
pub fn changes(html: &mut Html, d: &Diff, links: &dyn Linker) {
    html.raw("<h2>Access changes</h2>");
    let summary: Vec<String> = [
        ChangeKind::Widened,
        ChangeKind::Narrowed,
        ChangeKind::Changed,
        ChangeKind::Unproved,
        ChangeKind::Undetermined,
    ]
    .into_iter()
    .map(|k| format!("{} {}", d.count(k), change_name(k)))
    .collect();
    html.raw("<p id=\"change-summary\">")
        .text(&format!(
            "{} over {} principal classes and {} class × kind × action cells compared.",
            summary.join(", "),
            d.classes_compared,
            d.cells_compared
        ))
        .raw("</p>");
    statements(html, &d.exact, &d.sampled);
    if d.changes.is_empty() {
        html.raw("<p id=\"no-change\" class=\"notice\">No access changed: every class has the same access to every kind and action before and after.</p>");
        return;
    }
    html.raw(
        "<table class=\"changes\"><thead><tr><th>kind</th><th>action</th><th>change</th>\
         <th>principal classes</th><th>before</th><th>after</th><th>a request that flips, \
         as Check decides it on both</th></tr></thead><tbody>",
    );
    for change in &d.changes {
        change_row(html, change, links);
    }
    html.raw("</tbody></table>");
}

fn change_row(html: &mut Html, c: &Change, links: &dyn Linker) {
    let name = change_name(c.change);
    html.raw("<tr class=\"change\">")
        .element("td", "", &c.kind)
        .element("td", "", &c.action)
        .raw("<td><span class=\"tag ")
        .raw(name)
        .raw("\">")
        .raw(name)
        .raw("</span></td><td><ul class=\"classes\">");
    for label in &c.labels {
        html.element("li", "", label);
    }
    html.raw("</ul></td><td class=\"before\">");
    access(html, &c.before, links, true);
    html.raw("</td><td class=\"after\">");
    access(html, &c.after, links, false);
    html.raw("</td><td class=\"counterexamples\">");
    for (what, example) in [("gained", &c.gained), ("lost", &c.lost)] {
        if let Some(example) = example {
            counterexample(html, what, example);
        }
    }
    if !c.confirmed {
        html.element(
            "span",
            "note",
            "not confirmed by Check for every class and direction",
        );
    }
    if let Some(note) = &c.note {
        html.element("span", "note", note);
    }
    html.raw("</td></tr>");
}

fn counterexample(html: &mut Html, what: &str, e: &Counterexample) {
    let json = |v: Json| serde_json::to_string(&v).unwrap_or_default();
    let principal = json(serde_json::to_value(&e.principal).unwrap_or_default());
    let resource = json(serde_json::to_value(&e.resource).unwrap_or_default());
    html.raw("<div class=\"counterexample ")
        .raw(what)
        .raw("\"><strong>")
        .text(what)
        .raw("</strong>: ")
        .element("code", "", &e.action)
        .raw(" by <code>")
        .text(&principal)
        .raw("</code> on <code>")
        .text(&resource)
        .raw("</code>: ");
    for (i, (label, d)) in [("before", &e.before), ("after", &e.after)]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            html.raw(" → ");
        }
        let class = if d.effect == "allow" {
            "effect-allow"
        } else {
            "effect-deny"
        };
        html.text(&format!("{label} "))
            .element("span", class, &d.effect);
        if !d.rule.is_empty() {
            html.text(&format!(" ({}/{})", d.policy, d.rule));
        }
    }
    html.raw("</div>");
}
