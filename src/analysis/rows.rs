//! Resource rows that tell two filters apart.
//!
//! Every leaf of a filter compares one attribute with constants, so a row's answer depends only
//! on which side of each constant its value lies. The candidate values of an attribute are
//! therefore: each constant either filter compares it with, a value between and beyond them
//! (numbers), a value equal to none (strings), both bools, every value of an enum, and absent
//! when the schema allows it. Their product over the attributes the filters read covers every
//! region, so when it is enumerated whole (up to [`MAX_ROWS`]) two filters with no row telling
//! them apart select the same schema-valid rows. Beyond that, rows are sampled.

use serde_json::{json, Map, Value as Json};

use crate::filter::Filter;
use crate::schema::{KindSchema, Type};

/// The most candidate rows enumerated for one pair of filters.
pub const MAX_ROWS: usize = 4096;

/// Rows of one kind where `old` and `new` disagree.
pub struct Disagreements {
    /// Rows `new` selects and `old` does not.
    pub widened: Vec<Json>,
    /// Rows `old` selects and `new` does not.
    pub narrowed: Vec<Json>,
    /// Whether every candidate row was tried (otherwise a sample of [`MAX_ROWS`]).
    pub exhaustive: bool,
    pub tried: usize,
}

/// How many disagreeing rows of each direction to keep (counterexamples are checked in turn).
const KEEP: usize = 8;

/// Compares `old` and `new` over the candidate rows of `kind`.
pub fn disagreements(kind: Option<&KindSchema>, old: &Filter, new: &Filter) -> Disagreements {
    let mut attributes: Vec<&str> = old.attributes();
    for a in new.attributes() {
        if !attributes.contains(&a) {
            attributes.push(a);
        }
    }
    attributes.sort_unstable();
    let domains: Vec<Vec<Option<Json>>> = attributes
        .iter()
        .map(|a| candidates(kind, a, &[old, new]))
        .collect();
    let total = domains
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(d.len().max(1)))
        .unwrap_or(usize::MAX);
    let exhaustive = total <= MAX_ROWS;
    let tried = total.min(MAX_ROWS);
    let base = base_row(kind);
    let mut out = Disagreements {
        widened: Vec::new(),
        narrowed: Vec::new(),
        exhaustive,
        tried,
    };
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..tried {
        let mut row = base.clone();
        let mut index = n;
        for (a, domain) in attributes.iter().zip(&domains) {
            if domain.is_empty() {
                continue;
            }
            let pick = if exhaustive {
                let i = index % domain.len();
                index /= domain.len();
                i
            } else {
                // A deterministic sample (xorshift).
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % domain.len() as u64) as usize
            };
            set(&mut row, a, domain[pick].clone());
        }
        let row = Json::Object(row);
        match (old.matches(&row), new.matches(&row)) {
            (false, true) if out.widened.len() < KEEP => out.widened.push(row),
            (true, false) if out.narrowed.len() < KEEP => out.narrowed.push(row),
            _ => {}
        }
    }
    out
}

/// Sets (or with `None` removes) the attribute at a dotted path.
fn set(row: &mut Map<String, Json>, path: &str, value: Option<Json>) {
    match path.split_once('.') {
        None => {
            match value {
                Some(v) => row.insert(path.to_string(), v),
                None => row.remove(path),
            };
        }
        Some((first, rest)) => {
            let entry = row
                .entry(first.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            if !entry.is_object() {
                *entry = Json::Object(Map::new());
            }
            if let Json::Object(inner) = entry {
                set(inner, rest, value);
            }
        }
    }
}

/// A row with every required attribute of the kind set to a valid value.
fn base_row(kind: Option<&KindSchema>) -> Map<String, Json> {
    let mut row = Map::new();
    if let Some(kind) = kind {
        for (name, a) in kind.attributes.attributes() {
            if a.required {
                row.insert(name.to_string(), sample(&a.ty, name));
            }
        }
    }
    row
}

/// A valid value of a type.
fn sample(ty: &Type, name: &str) -> Json {
    match ty {
        Type::String => json!(format!("some-{name}")),
        Type::Int | Type::Double => json!(0),
        Type::Bool => json!(false),
        Type::Enum(values) => values.first().map(|v| json!(v)).unwrap_or(Json::Null),
        Type::List(_) => json!([]),
        Type::Object(o) => {
            let mut m = Map::new();
            for (n, a) in o.attributes() {
                if a.required {
                    m.insert(n.to_string(), sample(&a.ty, n));
                }
            }
            Json::Object(m)
        }
    }
}

/// The constants the filters compare `attribute` with.
fn constants(f: &Filter, attribute: &str, out: &mut Vec<Json>) {
    let mut push = |v: &Json| {
        if !out.contains(v) {
            out.push(v.clone());
        }
    };
    match f {
        Filter::Compare {
            attribute: a,
            value,
            ..
        }
        | Filter::Contains {
            attribute: a,
            value,
        } if a == attribute => push(value),
        Filter::In {
            attribute: a,
            values,
        } if a == attribute => values.iter().for_each(push),
        Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|x| constants(x, attribute, out)),
        Filter::Not(x) | Filter::From { filter: x, .. } => constants(x, attribute, out),
        _ => {}
    }
}

/// Whether some leaf tests the attribute as a list (`contains`).
fn used_as_list(f: &Filter, attribute: &str) -> bool {
    match f {
        Filter::Contains { attribute: a, .. } => a == attribute,
        Filter::And(fs) | Filter::Or(fs) => fs.iter().any(|x| used_as_list(x, attribute)),
        Filter::Not(x) | Filter::From { filter: x, .. } => used_as_list(x, attribute),
        _ => false,
    }
}

/// The candidate values of one attribute (`None`: absent).
fn candidates(
    kind: Option<&KindSchema>,
    attribute: &str,
    filters: &[&Filter],
) -> Vec<Option<Json>> {
    let mut consts = Vec::new();
    for f in filters {
        constants(f, attribute, &mut consts);
    }
    let declared = kind.and_then(|k| k.attributes.path(attribute));
    let mut out: Vec<Option<Json>> = Vec::new();
    if !declared.is_some_and(|a| a.required) {
        out.push(None);
    }
    let mut add = |v: Json| {
        let v = Some(v);
        if !out.contains(&v) {
            out.push(v);
        }
    };
    let strings = |consts: &[Json]| -> Vec<Json> {
        consts.iter().filter(|c| c.is_string()).cloned().collect()
    };
    let numbers = |consts: &[Json]| -> Vec<Json> {
        let mut ns: Vec<f64> = consts.iter().filter_map(Json::as_f64).collect();
        if ns.is_empty() {
            ns.push(0.0);
        }
        let mut out = Vec::new();
        for n in ns {
            for x in [n - 1.0, n - 0.5, n, n + 0.5, n + 1.0] {
                out.push(json!(x));
            }
        }
        out
    };
    let fresh = json!(format!("other-{attribute}"));
    match declared.map(|a| &a.ty) {
        Some(Type::Bool) => [json!(true), json!(false)].into_iter().for_each(&mut add),
        Some(Type::Enum(values)) => values.iter().for_each(|v| add(json!(v))),
        Some(Type::String) => {
            strings(&consts).into_iter().for_each(&mut add);
            add(fresh);
        }
        Some(Type::Int) => numbers(&consts)
            .into_iter()
            .filter(|n| n.as_f64().is_some_and(|x| x.fract() == 0.0))
            .for_each(&mut add),
        Some(Type::Double) => numbers(&consts).into_iter().for_each(&mut add),
        Some(Type::List(_)) => {
            add(json!([]));
            for c in &consts {
                add(json!([c]));
            }
            add(json!([fresh]));
        }
        Some(Type::Object(_)) => add(json!({})),
        None => {
            // No schema: a value of each type the constants have, and a list when the filters
            // test one.
            for c in consts.iter().filter(|c| !c.is_number()) {
                add(c.clone());
            }
            if consts.iter().any(Json::is_string) || consts.is_empty() {
                add(fresh.clone());
            }
            if consts.iter().any(Json::is_number) {
                numbers(&consts).into_iter().for_each(&mut add);
            }
            if consts.iter().any(Json::is_boolean) {
                [json!(true), json!(false)].into_iter().for_each(&mut add);
            }
            if filters.iter().any(|f| used_as_list(f, attribute)) {
                add(json!([]));
                for c in &consts {
                    add(json!([c]));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::CmpOp;

    #[test]
    fn rows_tell_a_removed_guard_from_a_reordered_filter() {
        let a = Filter::compare(CmpOp::Eq, "practice_id", json!("7"));
        let b = Filter::compare(CmpOp::Ne, "celebrity", json!(true));
        let old = Filter::And(vec![a.clone(), b.clone()]);
        let reordered = Filter::And(vec![b, a.clone()]);
        let same = disagreements(None, &old, &reordered);
        assert!(same.exhaustive && same.widened.is_empty() && same.narrowed.is_empty());
        let widened = disagreements(None, &old, &a);
        assert!(widened.narrowed.is_empty());
        let row = &widened.widened[0];
        assert!(a.matches(row) && !old.matches(row), "{row}");
    }

    #[test]
    fn numbers_between_constants_are_tried() {
        let old = Filter::compare(CmpOp::Ge, "amount", json!(100));
        let new = Filter::compare(CmpOp::Gt, "amount", json!(100));
        let d = disagreements(None, &old, &new);
        assert_eq!(d.narrowed, vec![json!({"amount": 100.0})]);
        assert!(d.widened.is_empty());
    }
}
