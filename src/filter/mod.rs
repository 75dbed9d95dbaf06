//! Row filters: a closed, typed condition over resource attributes, as PlanFilter answers it.
//!
//! The tree is two-valued. Its leaves compare one attribute with literal values; a comparison on
//! an attribute that is absent (or null) is false, and so is one between values CEL would not
//! compare (a string with a number); `Not` is plain negation. Under those rules the tree selects
//! exactly the rows Check allows (see `plan`), provided every attribute holds values of one type
//! across rows, as a database column does.
//!
//! This module owns the tree, its evaluation against a JSON row ([`Filter::matches`]), the
//! simplifier ([`Filter::simplify`]) and SQL rendering ([`sql`]). It knows nothing of CEL or
//! policies.

pub mod sql;

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::request::attribute;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The operator with its operands swapped: `v < x` is `x > v`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    /// The operator that holds exactly when this one is false, for comparable present values.
    pub fn complement(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// Which policy and rule a subtree comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub policy: Arc<str>,
    pub rule: Arc<str>,
}

/// A filter over resource attributes. Attribute names are dotted paths below `R.attr`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    True,
    False,
    /// attribute `op` value; `value` is a string, number or bool.
    Compare {
        op: CmpOp,
        attribute: String,
        value: Json,
    },
    /// attribute equals one of `values`.
    In {
        attribute: String,
        values: Vec<Json>,
    },
    /// the list attribute has an element equal to `value`.
    Contains {
        attribute: String,
        value: Json,
    },
    /// the attribute is present (and not null).
    Exists {
        attribute: String,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `filter`, produced by a rule.
    From {
        origin: Origin,
        filter: Box<Filter>,
    },
}

impl Filter {
    pub fn compare(op: CmpOp, attribute: &str, value: Json) -> Filter {
        Filter::Compare {
            op,
            attribute: attribute.to_string(),
            value,
        }
    }

    pub fn exists(attribute: &str) -> Filter {
        Filter::Exists {
            attribute: attribute.to_string(),
        }
    }

    pub fn negate(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    pub fn from_rule(policy: &Arc<str>, rule: &Arc<str>, f: Filter) -> Filter {
        Filter::From {
            origin: Origin {
                policy: Arc::clone(policy),
                rule: Arc::clone(rule),
            },
            filter: Box::new(f),
        }
    }

    /// Whether the row (a JSON object of attributes) satisfies the filter.
    pub fn matches(&self, row: &Json) -> bool {
        match self {
            Filter::True => true,
            Filter::False => false,
            Filter::Compare {
                op,
                attribute: a,
                value,
            } => match attribute(row, a) {
                None => false,
                Some(x) => match op {
                    CmpOp::Eq => cel_equal(x, value),
                    CmpOp::Ne => !cel_equal(x, value),
                    CmpOp::Lt => cel_compare(x, value) == Some(Ordering::Less),
                    CmpOp::Le => matches!(
                        cel_compare(x, value),
                        Some(Ordering::Less | Ordering::Equal)
                    ),
                    CmpOp::Gt => cel_compare(x, value) == Some(Ordering::Greater),
                    CmpOp::Ge => matches!(
                        cel_compare(x, value),
                        Some(Ordering::Greater | Ordering::Equal)
                    ),
                },
            },
            Filter::In {
                attribute: a,
                values,
            } => attribute(row, a).is_some_and(|x| values.iter().any(|v| cel_equal(x, v))),
            Filter::Contains {
                attribute: a,
                value,
            } => matches!(
                attribute(row, a),
                Some(Json::Array(items)) if items.iter().any(|i| cel_equal(i, value))
            ),
            Filter::Exists { attribute: a } => attribute(row, a).is_some(),
            Filter::And(fs) => fs.iter().all(|f| f.matches(row)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(row)),
            Filter::Not(f) => !f.matches(row),
            Filter::From { filter, .. } => filter.matches(row),
        }
    }

    /// The filter without the origin annotations wrapped around it.
    pub fn unannotated(&self) -> &Filter {
        match self {
            Filter::From { filter, .. } => filter.unannotated(),
            other => other,
        }
    }

    /// Every attribute the filter reads, in first-use order.
    pub fn attributes(&self) -> Vec<&str> {
        fn walk<'a>(f: &'a Filter, out: &mut Vec<&'a str>) {
            match f {
                Filter::Compare { attribute, .. }
                | Filter::In { attribute, .. }
                | Filter::Contains { attribute, .. }
                | Filter::Exists { attribute } => {
                    if !out.contains(&attribute.as_str()) {
                        out.push(attribute);
                    }
                }
                Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| walk(f, out)),
                Filter::Not(f) | Filter::From { filter: f, .. } => walk(f, out),
                Filter::True | Filter::False => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// An equivalent, smaller filter: constants folded (`true && x` is `x`, `false || x` is `x`),
    /// nested and/or flattened, double negation removed, duplicate operands dropped, `in` with
    /// one value turned into `==`, and with none into false.
    pub fn simplify(self) -> Filter {
        match self {
            Filter::Not(inner) => match inner.simplify() {
                Filter::True => Filter::False,
                Filter::False => Filter::True,
                Filter::Not(x) => *x,
                other => Filter::negate(other),
            },
            Filter::And(fs) => combine(fs, true),
            Filter::Or(fs) => combine(fs, false),
            Filter::In {
                attribute,
                mut values,
            } => {
                dedup(&mut values);
                match values.len() {
                    0 => Filter::False,
                    1 => Filter::Compare {
                        op: CmpOp::Eq,
                        attribute,
                        value: values.remove(0),
                    },
                    _ => Filter::In { attribute, values },
                }
            }
            Filter::From { origin, filter } => match filter.simplify() {
                constant @ (Filter::True | Filter::False) => constant,
                // Keep the innermost origin: it is the most precise.
                inner @ Filter::From { .. } => inner,
                inner => Filter::From {
                    origin,
                    filter: Box::new(inner),
                },
            },
            leaf => leaf,
        }
    }
}

fn dedup(values: &mut Vec<Json>) {
    let mut seen: Vec<Json> = Vec::with_capacity(values.len());
    values.retain(|v| {
        if seen.contains(v) {
            false
        } else {
            seen.push(v.clone());
            true
        }
    });
}

/// Simplifies the operands of an and (`is_and`) or an or.
fn combine(operands: Vec<Filter>, is_and: bool) -> Filter {
    let (unit, zero) = if is_and {
        (Filter::True, Filter::False)
    } else {
        (Filter::False, Filter::True)
    };
    let mut out: Vec<Filter> = Vec::with_capacity(operands.len());
    for f in operands {
        let f = f.simplify();
        if f == zero {
            return zero;
        }
        if f == unit {
            continue;
        }
        let flattened = match f {
            Filter::And(fs) if is_and => fs,
            Filter::Or(fs) if !is_and => fs,
            other => vec![other],
        };
        for f in flattened {
            // x and not x is false; x or not x is true. Origins do not change meaning.
            let g = f.unannotated();
            let contradicts = out.iter().any(|o| match (o.unannotated(), g) {
                (Filter::Not(a), b) | (b, Filter::Not(a)) => a.unannotated() == b,
                _ => false,
            });
            if contradicts {
                return zero;
            }
            // A duplicate keeps the first occurrence (and its origin).
            if !out.iter().any(|o| o.unannotated() == g) {
                out.push(f);
            }
        }
    }
    if is_and {
        // A comparison holds only on a present attribute: `exists(a) && a == x` is `a == x`.
        let compared: Vec<String> = out
            .iter()
            .filter_map(|f| match f.unannotated() {
                Filter::Compare { attribute, .. }
                | Filter::In { attribute, .. }
                | Filter::Contains { attribute, .. } => Some(attribute.clone()),
                _ => None,
            })
            .collect();
        out.retain(|f| {
            !matches!(f.unannotated(), Filter::Exists { attribute } if compared.contains(attribute))
        });
    }
    match out.len() {
        0 => unit,
        1 => out.remove(0),
        _ if is_and => Filter::And(out),
        _ => Filter::Or(out),
    }
}

/// CEL's `==` on JSON values: numbers compare numerically, other values by type and content;
/// values of different types are unequal.
pub fn cel_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(xs), Json::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| cel_equal(x, y))
        }
        (Json::Object(xs), Json::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| cel_equal(x, y)))
        }
        _ => a == b,
    }
}

/// CEL's ordering: numbers with numbers, strings with strings (by code point), bools with bools;
/// anything else is not comparable.
pub fn cel_compare(a: &Json, b: &Json) -> Option<Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::True => f.write_str("true"),
            Filter::False => f.write_str("false"),
            Filter::Compare {
                op,
                attribute,
                value,
            } => write!(f, "{attribute} {} {value}", op.symbol()),
            Filter::In { attribute, values } => {
                write!(f, "{attribute} in [")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Filter::Contains { attribute, value } => write!(f, "{attribute} contains {value}"),
            Filter::Exists { attribute } => write!(f, "exists({attribute})"),
            Filter::And(fs) | Filter::Or(fs) => {
                let joiner = if matches!(self, Filter::And(_)) {
                    " && "
                } else {
                    " || "
                };
                f.write_str("(")?;
                for (i, x) in fs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joiner)?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
            Filter::Not(x) => write!(f, "!{x}"),
            Filter::From { filter, .. } => write!(f, "{filter}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eq(a: &str, v: Json) -> Filter {
        Filter::compare(CmpOp::Eq, a, v)
    }

    #[test]
    fn comparisons_on_absent_or_null_attributes_are_false() {
        let row = json!({"practice_id": "7", "gone": null, "amount": 100.0, "tags": ["a", 1]});
        assert!(eq("practice_id", json!("7")).matches(&row));
        assert!(!Filter::compare(CmpOp::Ne, "missing", json!("7")).matches(&row));
        assert!(!Filter::compare(CmpOp::Ne, "gone", json!("7")).matches(&row));
        assert!(!Filter::exists("gone").matches(&row));
        assert!(Filter::negate(eq("missing", json!("7"))).matches(&row));
        assert!(Filter::compare(CmpOp::Ge, "amount", json!(100)).matches(&row));
        assert!(
            !Filter::compare(CmpOp::Lt, "practice_id", json!(8)).matches(&row),
            "string vs number is not comparable"
        );
        assert!(
            !Filter::compare(CmpOp::Ge, "practice_id", json!(8)).matches(&row),
            "nor its complement"
        );
        assert!(
            Filter::compare(CmpOp::Ne, "practice_id", json!(7)).matches(&row),
            "different types are unequal"
        );
        assert!(Filter::Contains {
            attribute: "tags".into(),
            value: json!(1.0)
        }
        .matches(&row));
        assert!(!Filter::Contains {
            attribute: "practice_id".into(),
            value: json!("7")
        }
        .matches(&row));
        assert!(Filter::In {
            attribute: "amount".into(),
            values: vec![json!(1), json!(100)]
        }
        .matches(&row));
    }

    #[test]
    fn simplify_folds_constants_and_flattens() {
        let x = eq("a", json!(1));
        let y = eq("b", json!(2));
        assert_eq!(Filter::And(vec![Filter::True, x.clone()]).simplify(), x);
        assert_eq!(Filter::Or(vec![Filter::False, x.clone()]).simplify(), x);
        assert_eq!(
            Filter::And(vec![Filter::False, x.clone()]).simplify(),
            Filter::False
        );
        assert_eq!(
            Filter::Or(vec![Filter::True, x.clone()]).simplify(),
            Filter::True
        );
        assert_eq!(Filter::negate(Filter::negate(x.clone())).simplify(), x);
        assert_eq!(
            Filter::And(vec![Filter::exists("a"), x.clone()]).simplify(),
            x,
            "a comparison implies presence"
        );
        assert_eq!(
            Filter::And(vec![Filter::exists("b"), x.clone()]).simplify(),
            Filter::And(vec![Filter::exists("b"), x.clone()])
        );
        assert_eq!(Filter::And(vec![x.clone(), x.clone()]).simplify(), x);
        assert_eq!(
            Filter::And(vec![x.clone(), Filter::And(vec![y.clone(), Filter::True])]).simplify(),
            Filter::And(vec![x.clone(), y.clone()])
        );
        assert_eq!(
            Filter::And(vec![x.clone(), Filter::negate(x.clone())]).simplify(),
            Filter::False
        );
        assert_eq!(
            Filter::Or(vec![Filter::negate(x.clone()), x.clone()]).simplify(),
            Filter::True
        );
        assert_eq!(
            Filter::In {
                attribute: "a".into(),
                values: vec![]
            }
            .simplify(),
            Filter::False
        );
        assert_eq!(
            Filter::In {
                attribute: "a".into(),
                values: vec![json!(1), json!(1)]
            }
            .simplify(),
            x
        );
        assert_eq!(Filter::And(vec![]).simplify(), Filter::True);
        assert_eq!(Filter::Or(vec![]).simplify(), Filter::False);
    }

    #[test]
    fn simplify_keeps_origins_unless_constant() {
        let origin = |f| Filter::from_rule(&"p".into(), &"r".into(), f);
        assert_eq!(
            origin(Filter::And(vec![Filter::True])).simplify(),
            Filter::True
        );
        let x = eq("a", json!(1));
        assert_eq!(origin(x.clone()).simplify(), origin(x.clone()));
        let other = Filter::from_rule(&"q".into(), &"s".into(), x.clone());
        assert_eq!(
            Filter::And(vec![origin(x.clone()), other.clone()]).simplify(),
            origin(x.clone())
        );
        assert_eq!(
            Filter::Or(vec![origin(x.clone()), Filter::negate(other)]).simplify(),
            Filter::True
        );
    }

    #[test]
    fn simplification_preserves_meaning_on_sample_rows() {
        let x = eq("a", json!(1));
        let y = Filter::exists("b");
        let f = Filter::Or(vec![
            Filter::And(vec![
                x.clone(),
                Filter::negate(Filter::negate(y.clone())),
                Filter::True,
            ]),
            Filter::And(vec![Filter::negate(x.clone()), Filter::False]),
            Filter::In {
                attribute: "c".into(),
                values: vec![json!("z")],
            },
        ]);
        let s = f.clone().simplify();
        for row in [
            json!({}),
            json!({"a": 1}),
            json!({"a": 1, "b": 0}),
            json!({"c": "z"}),
            json!({"a": 2, "b": null}),
        ] {
            assert_eq!(f.matches(&row), s.matches(&row), "{row}");
        }
    }
}
