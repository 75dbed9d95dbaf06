//! The SQL renderer and the simplifier: any filter tree over attributes of one type each (as
//! database columns are) renders in both dialects with one placeholder per parameter, and in
//! SQLite selects exactly the rows the tree matches; simplifying a tree never changes which rows
//! it matches.
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value as Json};
use verdict::filter::sql::{self, Dialect};
use verdict::filter::{CmpOp, Filter, Origin};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Text,
    Number,
    Bool,
    TextList,
}

/// Attribute names (dotted paths) and their columns.
const ATTRIBUTES: [(&str, &str); 4] = [("a", "a"), ("b", "b"), ("c", "c"), ("o.k", "o_k")];

const TEXTS: [&str; 7] = ["", "a", "b", "A", "a b", "é", "\u{1F600}"];
const NUMBERS: [f64; 7] = [-1.0, 0.0, 1.0, 2.5, 1e300, 9007199254740993.0, -0.0];

fn value(u: &mut Unstructured, t: Type) -> Result<Json> {
    Ok(match t {
        Type::Text | Type::TextList => json!(*u.choose(&TEXTS)?),
        Type::Number => json!(*u.choose(&NUMBERS)?),
        Type::Bool => json!(bool::arbitrary(u)?),
    })
}

fn row_value(u: &mut Unstructured, t: Type) -> Result<Option<Json>> {
    Ok(match u.int_in_range(0..=4)? {
        0 => None,
        1 => Some(Json::Null),
        _ if t == Type::TextList => {
            let n = u.int_in_range(0..=3)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(json!(*u.choose(&TEXTS)?));
            }
            Some(Json::Array(items))
        }
        _ => Some(value(u, t)?),
    })
}

fn filter(u: &mut Unstructured, types: &[Type; 4], depth: u32) -> Result<Filter> {
    let leaf_only = depth >= 4;
    let choice = u.int_in_range(0..=if leaf_only { 5 } else { 9 })?;
    let i = u.int_in_range(0..=3)?;
    let (attribute, t) = (ATTRIBUTES[i].0.to_string(), types[i]);
    Ok(match choice {
        0 => Filter::True,
        1 => Filter::False,
        2 if t != Type::TextList => {
            let op = *u.choose(&[
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Ge,
            ])?;
            // Booleans are compared for equality only, as the planner emits them.
            let op = if t == Type::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                CmpOp::Eq
            } else {
                op
            };
            Filter::Compare {
                op,
                attribute,
                value: value(u, t)?,
            }
        }
        3 if t != Type::TextList => {
            let n = u.int_in_range(1..=3)?;
            let mut values = Vec::new();
            for _ in 0..n {
                values.push(value(u, t)?);
            }
            Filter::In { attribute, values }
        }
        4 if t == Type::TextList => Filter::Contains {
            attribute,
            value: value(u, t)?,
        },
        2..=5 => Filter::Exists { attribute },
        6 | 7 => {
            let n = u.int_in_range(0..=3)?;
            let mut operands = Vec::new();
            for _ in 0..n {
                operands.push(filter(u, types, depth + 1)?);
            }
            if choice == 6 {
                Filter::And(operands)
            } else {
                Filter::Or(operands)
            }
        }
        8 => Filter::Not(Box::new(filter(u, types, depth + 1)?)),
        _ => Filter::From {
            origin: Origin {
                policy: Arc::from("p"),
                rule: Arc::from("r"),
            },
            filter: Box::new(filter(u, types, depth + 1)?),
        },
    })
}

fn sqlite_value(v: &Json) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Json::Null => V::Null,
        Json::Bool(b) => V::Integer(*b as i64),
        Json::Number(n) => V::Real(n.as_f64().unwrap()),
        Json::String(s) => V::Text(s.clone()),
        other => V::Text(other.to_string()),
    }
}

/// `{"o": {"k": v}}` for the dotted attribute `o.k`.
fn set(row: &mut serde_json::Map<String, Json>, attribute: &str, value: Json) {
    match attribute.split_once('.') {
        None => {
            row.insert(attribute.into(), value);
        }
        Some((outer, inner)) => {
            let entry = row.entry(outer).or_insert_with(|| json!({}));
            entry[inner] = value;
        }
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let all = [Type::Text, Type::Number, Type::Bool, Type::TextList];
    let types = [
        *u.choose(&all)?,
        *u.choose(&all)?,
        *u.choose(&all)?,
        *u.choose(&all)?,
    ];
    let tree = filter(u, &types, 0)?;
    let n = u.int_in_range(1..=6)?;
    let mut rows = Vec::new();
    for _ in 0..n {
        let mut row = serde_json::Map::new();
        for (i, (attribute, _)) in ATTRIBUTES.iter().enumerate() {
            if let Some(v) = row_value(u, types[i])? {
                set(&mut row, attribute, v);
            }
        }
        rows.push(Json::Object(row));
    }

    let simplified = tree.clone().simplify();
    for row in &rows {
        assert_eq!(
            tree.matches(row),
            simplified.matches(row),
            "simplify changed {tree} into {simplified} on {row}"
        );
    }
    verdict_fuzz::render_both(&tree);

    let columns: HashMap<String, String> = ATTRIBUTES
        .iter()
        .map(|(a, c)| (a.to_string(), c.to_string()))
        .collect();
    let postgres = sql::render(&tree, Dialect::Postgres, &columns).expect("every column mapped");
    assert!(
        !postgres.where_clause.contains("IN ()"),
        "{}",
        postgres.where_clause
    );
    let rendered = sql::render(&tree, Dialect::Sqlite, &columns).expect("every column mapped");
    let db = rusqlite::Connection::open_in_memory().unwrap();
    let declared: Vec<String> = ATTRIBUTES
        .iter()
        .zip(types)
        .map(|((_, column), t)| {
            let sql_type = match t {
                Type::Text | Type::TextList => "TEXT",
                Type::Number => "REAL",
                Type::Bool => "BOOLEAN",
            };
            format!("{column} {sql_type}")
        })
        .collect();
    db.execute(
        &format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, {})",
            declared.join(", ")
        ),
        [],
    )
    .unwrap();
    for (id, row) in rows.iter().enumerate() {
        let mut values = vec![rusqlite::types::Value::Integer(id as i64)];
        for (attribute, _) in ATTRIBUTES {
            let v = verdict::request::attribute(row, attribute)
                .cloned()
                .unwrap_or(Json::Null);
            values.push(sqlite_value(&v));
        }
        db.execute(
            "INSERT INTO t (id, a, b, c, o_k) VALUES (?, ?, ?, ?, ?)",
            rusqlite::params_from_iter(values),
        )
        .unwrap();
    }
    let query = format!("SELECT id FROM t WHERE {}", rendered.where_clause);
    let mut statement = db
        .prepare(&query)
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let selected: BTreeSet<i64> = statement
        .query_map(
            rusqlite::params_from_iter(rendered.params.iter().map(sqlite_value)),
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .map(|r| r.unwrap())
        .collect();
    let matched: BTreeSet<i64> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| tree.matches(row))
        .map(|(i, _)| i as i64)
        .collect();
    assert_eq!(
        selected, matched,
        "SQLite and the tree disagree on {tree}\n{query}\nparams {:?}\nrows {rows:#?}",
        rendered.params
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
