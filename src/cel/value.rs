//! CEL values built from request data (JSON attributes, principal fields), borrowing the
//! request's strings: records where conditions only select fields, the crate's maps otherwise.

use std::collections::HashMap;
use std::fmt;

use ::cel::common::types::{CelBool, CelDouble, CelList, CelMap, CelMapKey, CelString};
use ::cel::common::value::Val;

use super::projection;
use super::record::{Field, Record};
use crate::request::{Principal, Resource};

/// A CEL value built from request data, borrowing its strings.
pub struct Value<'r>(Repr<'r>);

enum Repr<'r> {
    /// `P`, `R` or an `attr` bag whose conditions only select named fields.
    Record(Record<'r>),
    /// The common values inline, the rest boxed.
    String(CelString<'r>),
    Map(CelMap<'r>),
    Val(Box<dyn Val + 'r>),
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.val().fmt(f)
    }
}

impl<'r> Value<'r> {
    /// The value as the interpreter sees it.
    pub(super) fn val(&self) -> &(dyn Val + 'r) {
        match &self.0 {
            Repr::Record(record) => record,
            Repr::String(s) => s,
            Repr::Map(map) => map,
            Repr::Val(val) => val.as_ref(),
        }
    }

    /// Walks the dotted `path` below this value through records: the value reached and the part
    /// of the path left to select from it the general way (`None` when all of it was walked).
    pub(super) fn path<'p>(&self, path: &'p str) -> (&(dyn Val + 'r), Option<&'p str>) {
        match &self.0 {
            Repr::Record(record) => record.path(path),
            _ => (self.val(), Some(path)),
        }
    }

    /// This value as a record field.
    fn into_field(self) -> Field<'r> {
        match self.0 {
            Repr::Record(record) => Field::Record(record),
            Repr::String(s) => Field::String(s),
            Repr::Map(map) => Field::Other(Box::new(map)),
            Repr::Val(val) => Field::Other(val),
        }
    }

    /// Converts JSON into a CEL value. Numbers become doubles (as protobuf Struct numbers are);
    /// null members of objects are dropped, so a null attribute is the same as an absent one.
    pub fn from_json(json: &'r serde_json::Value) -> Value<'r> {
        Value(Repr::Val(json_to_val(json)))
    }

    /// Like [`Value::from_json`], but JSON null (an unset attribute bag) is an empty map.
    pub fn from_json_object(json: &'r serde_json::Value) -> Value<'r> {
        match json {
            serde_json::Value::Null => Value(Repr::Map(CelMap::from(HashMap::new()))),
            other => Value::from_json(other),
        }
    }

    /// Like [`Value::from_json_object`], keeping only `keys` of the top level (all if `None`).
    /// With keys, the value is a [`Record`]: conditions may only select those keys from it.
    pub fn from_json_object_keys(
        json: &'r serde_json::Value,
        keys: Option<&std::collections::BTreeSet<String>>,
    ) -> Value<'r> {
        let Some(keys) = keys else {
            return Value::from_json_object(json);
        };
        let mut record = Record::with_capacity(keys.len());
        if let serde_json::Value::Object(members) = json {
            for key in keys {
                if let Some((k, v)) = members.get_key_value(key.as_str()) {
                    if let Some(field) = json_to_field(v) {
                        record.push(k.as_str(), field);
                    }
                }
            }
        } else if !json.is_null() {
            // Not an object: keep it as it is, so that selecting a key fails as it would.
            return Value::from_json(json);
        }
        Value(Repr::Record(record))
    }

    /// A CEL string.
    pub fn string(s: &'r str) -> Value<'r> {
        Value(Repr::String(CelString::from(s)))
    }

    /// A CEL list of strings.
    pub fn string_list(items: &'r [String]) -> Value<'r> {
        Value(Repr::Val(Box::new(string_list(items))))
    }

    /// A CEL map with string keys.
    pub fn map(entries: impl IntoIterator<Item = (&'r str, Value<'r>)>) -> Value<'r> {
        let map: HashMap<CelMapKey<'r>, Box<dyn Val + 'r>> = entries
            .into_iter()
            .map(|(k, v)| {
                let val = match v.0 {
                    Repr::Record(record) => record.clone_as_boxed(),
                    Repr::String(s) => Box::new(s),
                    Repr::Map(map) => Box::new(map),
                    Repr::Val(val) => val,
                };
                (CelMapKey::from(k), val)
            })
            .collect();
        Value(Repr::Val(Box::new(CelMap::from(map))))
    }
}

/// Builds `P` or `R` field by field, straight into what it will be: a record when conditions only
/// select its fields, the crate's map when some condition uses it whole.
pub(crate) enum Fields<'r> {
    Record(Record<'r>),
    Map(Vec<(&'r str, Value<'r>)>),
}

impl<'r> Fields<'r> {
    pub(crate) fn new(whole: bool, capacity: usize) -> Self {
        if whole {
            Fields::Map(Vec::with_capacity(capacity))
        } else {
            Fields::Record(Record::with_capacity(capacity))
        }
    }

    pub(crate) fn string(&mut self, name: &'r str, s: &'r str) {
        match self {
            Fields::Record(record) => record.push(name, Field::String(CelString::from(s))),
            Fields::Map(map) => map.push((name, Value::string(s))),
        }
    }

    pub(crate) fn strings(&mut self, name: &'r str, items: &'r [String]) {
        match self {
            Fields::Record(record) => record.push(name, Field::List(string_list(items))),
            Fields::Map(map) => map.push((name, Value::string_list(items))),
        }
    }

    pub(crate) fn value(&mut self, name: &'r str, value: Value<'r>) {
        match self {
            Fields::Record(record) => record.push(name, value.into_field()),
            Fields::Map(map) => map.push((name, value)),
        }
    }

    pub(crate) fn finish(self) -> Value<'r> {
        match self {
            Fields::Record(record) => Value(Repr::Record(record)),
            Fields::Map(map) => Value::map(map),
        }
    }
}

fn string_list(items: &[String]) -> CelList<'_> {
    CelList::from(
        items
            .iter()
            .map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + '_>)
            .collect::<Vec<_>>(),
    )
}

/// A JSON attribute as a record field; `None` for null (an absent attribute).
fn json_to_field(json: &serde_json::Value) -> Option<Field<'_>> {
    use serde_json::Value as J;
    Some(match json {
        J::Null => return None,
        J::Bool(b) => Field::Bool(CelBool::from(*b)),
        J::Number(n) => Field::Double(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Field::String(CelString::from(s.as_str())),
        J::Array(items) => Field::List(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        J::Object(_) => Field::Other(json_to_val(json)),
    })
}

fn json_to_val(json: &serde_json::Value) -> Box<dyn Val + '_> {
    use serde_json::Value as J;
    match json {
        J::Null => Box::new(::cel::common::types::CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(items) => Box::new(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        J::Object(members) => {
            let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
                HashMap::with_capacity(members.len());
            for (k, v) in members.iter().filter(|(_, v)| !v.is_null()) {
                map.insert(CelMapKey::from(k.as_str()), json_to_val(v));
            }
            Box::new(CelMap::from(map))
        }
    }
}

/// The CEL value of `P`: `id`, `roles`, `capabilities`, `scopes`, `client_id`, `attr`.
pub fn principal_value(p: &Principal) -> Value<'_> {
    projection::Projection::all().principal(p)
}

/// The CEL value of `R`: `kind`, `id`, `attr`.
pub fn resource_value(r: &Resource) -> Value<'_> {
    projection::Projection::all().resource(r)
}
