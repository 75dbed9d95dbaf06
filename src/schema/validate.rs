//! Request validation: a JSON value held to a declared type, before any rule runs.
//!
//! Runs on the request path, so the happy path allocates nothing: declared attributes are found by
//! binary search in the object type's sorted list, required ones are counted rather than looked
//! up, and a violation's path and text are built only once one is found. A null is an absent
//! attribute, as everywhere in Verdict.

use std::fmt;

use serde_json::{Map, Value as Json};

use super::{ObjectType, Type};

/// The largest integer magnitude a double holds exactly (2^53): beyond it, two different integers
/// can become the same double, so `int` refuses them and no number may be an integer beyond it.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Why a request does not fit the schema: the attribute (a path such as `R.attr.celebrity` or
/// `P.attr.licensed_states[1]`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.problem)
    }
}

/// A violation found deep in a value, its path collected on the way back up (innermost first).
struct Fault<'v> {
    path: Vec<Segment<'v>>,
    problem: Problem<'v>,
}

enum Segment<'v> {
    Key(&'v str),
    Index(usize),
}

enum Problem<'v> {
    Missing,
    Empty,
    Undeclared {
        closest: Option<String>,
    },
    WrongType {
        expected: &'v Type,
        actual: &'v Json,
    },
    NotAnObject {
        actual: &'v Json,
    },
}

impl<'v> Fault<'v> {
    fn at(mut self, segment: Segment<'v>) -> Fault<'v> {
        self.path.push(segment);
        self
    }

    fn into_violation(self, root: &str) -> Violation {
        let mut path = root.to_string();
        for segment in self.path.iter().rev() {
            match segment {
                Segment::Key(k) => {
                    path.push('.');
                    path.push_str(k);
                }
                Segment::Index(i) => {
                    path.push_str(&format!("[{i}]"));
                }
            }
        }
        let problem = match self.problem {
            Problem::Missing => "is required by the schema but absent".to_string(),
            Problem::Undeclared { closest: None } => "is not declared in the schema".to_string(),
            Problem::Undeclared { closest: Some(c) } => {
                format!("is not declared in the schema (did you mean {c}?)")
            }
            Problem::WrongType { expected, actual } => {
                format!(
                    "must be {}, got {}",
                    article(expected),
                    describe(actual, expected)
                )
            }
            Problem::Empty => "must not be empty (the schema says non_empty)".to_string(),
            Problem::NotAnObject { actual } => {
                format!("must be an object, got {}", describe(actual, &Type::Bool))
            }
        };
        Violation { path, problem }
    }
}

/// "a bool", "an int", "list<string>", "one of ...".
fn article(ty: &Type) -> String {
    match ty {
        Type::String => "a string".into(),
        Type::Int => "an int (a whole number within ±2^53)".into(),
        Type::Double => "a number".into(),
        Type::Bool => "a bool".into(),
        Type::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

/// What a JSON value is, in a violation's words.
fn describe(value: &Json, expected: &Type) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(_) => "a bool".into(),
        Json::Number(n) if !is_exact(n) => format!("{n}, not exact as a double (beyond ±2^53)"),
        Json::Number(n) if matches!(expected, Type::Int) && !is_whole(n) => {
            format!("{n}, not a whole number")
        }
        Json::Number(n) => n.to_string(),
        Json::String(s) if matches!(expected, Type::Enum(_)) => {
            let shown: String = s.chars().take(64).collect();
            format!("{shown:?}")
        }
        Json::String(_) => "a string".into(),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "an object".into(),
    }
}

fn is_whole(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// Whether a JSON number is one a double holds exactly (integers beyond 2^53 are refused).
fn is_exact(n: &serde_json::Number) -> bool {
    if let Some(i) = n.as_i64() {
        return i.unsigned_abs() <= MAX_EXACT_INTEGER;
    }
    if let Some(u) = n.as_u64() {
        return u <= MAX_EXACT_INTEGER;
    }
    n.as_f64().is_some_and(f64::is_finite)
}

impl ObjectType {
    /// Checks `value` (an object; null is an empty one) against this type. `root` names it in a
    /// violation (`R.attr`, `P.attr`, `C`).
    pub fn check(&self, root: &str, value: &Json) -> Result<(), Violation> {
        self.check_object(root, value, true)
    }

    /// Like [`check`](Self::check) for attributes known in advance (PlanFilter's `known_attr`):
    /// those present must be declared and of their type; required ones may be missing.
    pub fn check_known(&self, root: &str, value: &Json) -> Result<(), Violation> {
        self.check_object(root, value, false)
    }

    fn check_object(&self, root: &str, value: &Json, complete: bool) -> Result<(), Violation> {
        let result = match value {
            Json::Null => self.check_members(None, complete),
            Json::Object(members) => self.check_members(Some(members), complete),
            other => Err(Fault {
                path: Vec::new(),
                problem: Problem::NotAnObject { actual: other },
            }),
        };
        result.map_err(|fault| fault.into_violation(root))
    }

    fn check_members<'v>(
        &'v self,
        members: Option<&'v Map<String, Json>>,
        complete: bool,
    ) -> Result<(), Fault<'v>> {
        let mut required_present = 0;
        for (name, value) in members.into_iter().flatten() {
            if value.is_null() {
                continue;
            }
            match self.get(name) {
                Some(attribute) => {
                    check_type(&attribute.ty, value).map_err(|f| f.at(Segment::Key(name)))?;
                    if attribute.non_empty && is_empty(value) {
                        return Err(Fault {
                            path: vec![Segment::Key(name)],
                            problem: Problem::Empty,
                        });
                    }
                    required_present += usize::from(attribute.required);
                }
                None if self.additional => {}
                None => {
                    return Err(Fault {
                        path: vec![Segment::Key(name)],
                        problem: Problem::Undeclared {
                            closest: self.closest(name).map(str::to_string),
                        },
                    })
                }
            }
        }
        if complete && required_present < self.required_count {
            let missing = self
                .attributes
                .iter()
                .find(|(name, a)| {
                    a.required
                        && members
                            .and_then(|m| m.get(name.as_str()))
                            .is_none_or(Json::is_null)
                })
                .map(|(name, _)| name.as_str())
                .unwrap_or("?");
            return Err(Fault {
                path: vec![Segment::Key(missing)],
                problem: Problem::Missing,
            });
        }
        Ok(())
    }
}

fn is_empty(value: &Json) -> bool {
    match value {
        Json::String(s) => s.is_empty(),
        Json::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn check_type<'v>(ty: &'v Type, value: &'v Json) -> Result<(), Fault<'v>> {
    let ok = match (ty, value) {
        (Type::String, Json::String(_)) => true,
        (Type::Bool, Json::Bool(_)) => true,
        (Type::Double, Json::Number(n)) => is_exact(n),
        (Type::Int, Json::Number(n)) => is_exact(n) && is_whole(n),
        (Type::Enum(values), Json::String(s)) => {
            values.binary_search_by(|v| v.as_str().cmp(s)).is_ok()
        }
        (Type::List(item), Json::Array(items)) => {
            for (i, element) in items.iter().enumerate() {
                check_type(item, element).map_err(|f| f.at(Segment::Index(i)))?;
            }
            true
        }
        (Type::Object(object), Json::Object(members)) => {
            return object.check_members(Some(members), true);
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Fault {
            path: Vec::new(),
            problem: Problem::WrongType {
                expected: ty,
                actual: value,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::schema_of;
    use serde_json::json;

    fn patient() -> super::super::Schema {
        schema_of(&["schema:\n  name: s\n  kinds:\n    Patient:\n      actions: [read]\n      attributes:\n        celebrity: bool\n        practice_id: {type: string, non_empty: true}\n        amount: int?\n        score: double?\n        state: {type: enum, values: [CA, NY], required: false}\n        tags: list<string>?\n        address: {type: object, required: false, attributes: {city: string}}\n"]).unwrap().unwrap()
    }

    fn check(attr: serde_json::Value) -> Result<(), String> {
        patient().kinds["Patient"]
            .attributes
            .check("R.attr", &attr)
            .map_err(|v| v.to_string())
    }

    #[test]
    fn valid_attributes_pass_and_nulls_are_absent() {
        assert_eq!(
            check(json!({"celebrity": false, "practice_id": "7"})),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"celebrity": true, "practice_id": "7", "amount": 12, "score": 1.5,
                "state": "CA", "tags": ["a"], "address": {"city": "x"}, "note": null})
            ),
            Ok(())
        );
        assert_eq!(
            check(json!({"celebrity": true, "practice_id": "7", "amount": 12.0})),
            Ok(())
        );
    }

    #[test]
    fn violations_name_the_attribute_the_expected_and_the_actual_type() {
        for (celebrity, got) in [
            (json!("yes"), "got a string"),
            (json!("true"), "got a string"),
            (json!(1), "got 1"),
            (json!(1.0), "got 1.0"),
            (json!(""), "got a string"),
            (json!([true]), "got a list"),
            (json!({"v": true}), "got an object"),
        ] {
            let e = check(json!({"celebrity": celebrity, "practice_id": "7"})).unwrap_err();
            assert!(e.starts_with("R.attr.celebrity must be a bool, "), "{e}");
            assert!(e.contains(got), "{e}");
        }
        assert_eq!(
            check(json!({"practice_id": "7"})).unwrap_err(),
            "R.attr.celebrity is required by the schema but absent"
        );
        assert_eq!(
            check(json!({"celebrity": null, "practice_id": "7"})).unwrap_err(),
            "R.attr.celebrity is required by the schema but absent"
        );
        assert_eq!(
            check(json!({"celebrity": true, "practice_id": "7", "celebrety": true})).unwrap_err(),
            "R.attr.celebrety is not declared in the schema (did you mean celebrity?)"
        );
        let e = check(json!({"celebrity": true, "practice_id": "7", "state": "ZZ"})).unwrap_err();
        assert_eq!(e, "R.attr.state must be one of \"CA\", \"NY\", got \"ZZ\"");
        let e =
            check(json!({"celebrity": true, "practice_id": "7", "tags": ["a", 3]})).unwrap_err();
        assert_eq!(e, "R.attr.tags[1] must be a string, got 3");
        let e = check(json!({"celebrity": true, "practice_id": "7", "address": {"city": 1}}))
            .unwrap_err();
        assert_eq!(e, "R.attr.address.city must be a string, got 1");
        assert_eq!(
            check(json!("x")).unwrap_err(),
            "R.attr must be an object, got a string"
        );
    }

    #[test]
    fn non_empty_strings_refuse_the_empty_string() {
        assert_eq!(
            check(json!({"celebrity": true, "practice_id": ""})).unwrap_err(),
            "R.attr.practice_id must not be empty (the schema says non_empty)"
        );
        assert_eq!(
            check(json!({"celebrity": true, "practice_id": "7", "tags": []})),
            Ok(()),
            "without non_empty, empty is a value"
        );
    }

    #[test]
    fn numbers_must_be_exact() {
        let big: serde_json::Value = serde_json::from_str("9007199254740993").unwrap();
        let e = check(json!({"celebrity": true, "practice_id": "7", "amount": big})).unwrap_err();
        assert!(e.starts_with("R.attr.amount must be an int"), "{e}");
        assert!(e.contains("9007199254740993, not exact as a double"), "{e}");
        let e = check(json!({"celebrity": true, "practice_id": "7", "amount": 1.5})).unwrap_err();
        assert!(e.contains("got 1.5, not a whole number"), "{e}");
        let big: serde_json::Value = serde_json::from_str("-9007199254740993").unwrap();
        let e = check(json!({"celebrity": true, "practice_id": "7", "score": big})).unwrap_err();
        assert!(e.starts_with("R.attr.score must be a number"), "{e}");
        let edge: serde_json::Value = serde_json::from_str("9007199254740992").unwrap();
        assert_eq!(
            check(json!({"celebrity": true, "practice_id": "7", "amount": edge})),
            Ok(())
        );
    }
}
