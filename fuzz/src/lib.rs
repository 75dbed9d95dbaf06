//! What the fuzz targets share: compiling policy text, a fixed principal, the rows the planner's
//! filters are compared with Check on, and rendering a plan as SQL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use verdict::compile::PolicySet;
use verdict::filter::sql::{self, Dialect};
use verdict::filter::Filter;
use verdict::request::Principal;

/// Compiles one policy file's text; `None` if it does not load (which is fine: never a panic).
pub fn compile(text: &str) -> Option<PolicySet> {
    let files = [(PathBuf::from("fuzz.yaml"), text.to_string())];
    let source = verdict::policy::parse_files(Path::new("fuzz"), &files).ok()?;
    PolicySet::compile(&source).ok()
}

/// The principal every target decides for: roles the seeds use, SMART scopes, claims of each
/// JSON type.
pub fn principal() -> Principal {
    serde_json::from_value(json!({
        "id": "p-1",
        "roles": ["clerk", "physician", "nurse", "patient"],
        "capabilities": ["sign-a-note"],
        "scopes": ["user/*.cruds", "patient/Doc.rs", "patient/Observation.rs?category=lab"],
        "client_id": "app",
        "attr": {"x": "x", "n": 1, "d": 2.5, "flag": true, "tags": ["x", "y"], "o": {"k": "x"},
                 "practice_id": "7", "patient_id": "123", "patient": "123", "empty": ""}
    }))
    .expect("a principal")
}

/// The request context the targets use.
pub fn context() -> Json {
    json!({"purpose": "care", "n": 3, "flag": false, "list": ["x"]})
}

/// Values of every JSON type (absent is `None`), attribute values of the rows.
fn values() -> Vec<Option<Json>> {
    vec![
        None,
        Some(Json::Null),
        Some(json!("x")),
        Some(json!("")),
        Some(json!(1)),
        Some(json!(2.5)),
        Some(json!(true)),
        Some(json!(["x", "y"])),
        Some(json!({"k": "x"})),
    ]
}

/// Every combination of [`values`] for attributes `a` and `b`: the resources a plan's filter is
/// compared with Check on.
pub fn rows() -> Vec<Json> {
    let mut rows = Vec::new();
    for a in values() {
        for b in values() {
            let mut row = serde_json::Map::new();
            if let Some(a) = &a {
                row.insert("a".into(), a.clone());
            }
            if let Some(b) = b {
                row.insert("b".into(), b);
            }
            row.insert("practice_id".into(), json!("7"));
            row.insert("patient_id".into(), a.clone().unwrap_or(Json::Null));
            rows.push(Json::Object(row));
        }
    }
    rows
}

/// Renders `filter` in both dialects, every attribute mapped to a column of its name; checks
/// that the text holds one placeholder per parameter.
pub fn render_both(filter: &Filter) {
    let columns: HashMap<String, String> = filter
        .attributes()
        .into_iter()
        .map(|a| (a.to_string(), a.replace('.', "_")))
        .collect();
    for dialect in [Dialect::Postgres, Dialect::Sqlite] {
        let Ok(rendered) = sql::render(filter, dialect, &columns) else {
            continue; // attribute names that are no column names are refused, not rendered
        };
        let text = &rendered.where_clause;
        match dialect {
            Dialect::Postgres => {
                // `$1` .. `$n`, each once, in order.
                let numbers: Vec<usize> = text
                    .split('$')
                    .skip(1)
                    .map(|rest| {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().expect("a numbered placeholder")
                    })
                    .collect();
                let expected: Vec<usize> = (1..=rendered.params.len()).collect();
                assert_eq!(numbers, expected, "{text}");
            }
            Dialect::Sqlite => {
                assert_eq!(text.matches('?').count(), rendered.params.len(), "{text}")
            }
        }
    }
}
