//! [`Record`]: the CEL value of `P`, `R` and their `attr` bags when a policy set's conditions only
//! ever select named fields of them (what [`projection`](super::projection) finds at load).
//!
//! A record is a handful of (name, value) pairs searched linearly: no hashing to build it or to
//! look a field up, and its leaves (strings, booleans, numbers) are stored inline, borrowing the
//! request's strings, so building one costs one allocation. It also answers whole dotted names
//! (`R.attr.practice_id`) for the variable resolver in one walk, so the interpreter skips its
//! prefix-by-prefix search.
//!
//! Field selection, `has()` and lookups behave exactly as on the `cel` crate's map, errors
//! included. Nothing else should ever reach a record: any other use of `P`, `R` or an `attr` bag
//! makes the projection build the crate's own map instead. Should a projection bug let one through
//! anyway, the operations that could answer wrongly fail closed: `in`, `size()` and iteration are
//! errors (no such overload), so a condition using them denies. (Equality cannot fail: it compares
//! as a map would.)

use std::sync::Arc;

use ::cel::common::traits::Indexer;
use ::cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString, Type,
};
use ::cel::common::value::{CowVal, Val};
use ::cel::ExecutionError;

/// One field's value: the common leaves inline, anything else boxed.
#[derive(Debug)]
pub(crate) enum Field<'r> {
    String(CelString<'r>),
    Bool(CelBool),
    Double(CelDouble),
    List(CelList<'r>),
    Record(Record<'r>),
    Other(Box<dyn Val + 'r>),
}

impl<'r> Field<'r> {
    pub(crate) fn as_val(&self) -> &(dyn Val + 'r) {
        match self {
            Field::String(s) => s,
            Field::Bool(b) => b,
            Field::Double(d) => d,
            Field::List(l) => l,
            Field::Record(r) => r,
            Field::Other(v) => v.as_ref(),
        }
    }
}

/// A CEL map with string keys, for a few fields.
#[derive(Debug, Default)]
pub(crate) struct Record<'r> {
    fields: Vec<(CelString<'r>, Field<'r>)>,
}

impl<'r> Record<'r> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Record {
            fields: Vec::with_capacity(n),
        }
    }

    /// Adds a field; names are unique by construction (the caller adds each at most once).
    pub(crate) fn push(&mut self, name: &'r str, value: Field<'r>) {
        self.fields.push((CelString::from(name), value));
    }

    fn field(&self, name: &str) -> Option<&Field<'r>> {
        self.fields
            .iter()
            .find(|(key, _)| key.inner() == name)
            .map(|(_, value)| value)
    }

    /// Walks the dotted `path` (`attr.practice_id`) down through records: the value reached and
    /// what is left of the path below it, if it is not a record or lacks the next field.
    pub(crate) fn path<'s, 'p>(&'s self, path: &'p str) -> (&'s (dyn Val + 'r), Option<&'p str>) {
        let mut record = self;
        let mut rest = path;
        loop {
            let (name, tail) = split_first(rest);
            let Some(field) = record.field(name) else {
                return (record, Some(rest));
            };
            match (field, tail) {
                (Field::Record(inner), Some(tail)) => {
                    record = inner;
                    rest = tail;
                }
                (field, tail) => return (field.as_val(), tail),
            }
        }
    }

    /// The same map as the `cel` crate's own type.
    fn to_map(&self) -> CelMap<'r> {
        let map: std::collections::HashMap<CelMapKey<'r>, Box<dyn Val + 'r>> = self
            .fields
            .iter()
            .map(|(key, value)| {
                (
                    CelMapKey::String(key.clone()),
                    value.as_val().clone_as_boxed(),
                )
            })
            .collect();
        CelMap::from(map)
    }
}

/// `a.b.c` as `a` and `b.c`; `a` as `a` and nothing.
pub(super) fn split_first(name: &str) -> (&str, Option<&str>) {
    match name.bytes().position(|b| b == b'.') {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    }
}

/// The error the `cel` crate's map gives for an absent key.
fn no_such_key(key: &dyn Val) -> ExecutionError {
    let text = if let Some(s) = key.downcast_ref::<CelString>() {
        s.inner().to_string()
    } else if let Some(i) = key.downcast_ref::<CelInt>() {
        i.inner().to_string()
    } else if let Some(d) = key.downcast_ref::<CelDouble>() {
        d.inner().to_string()
    } else if let Some(b) = key.downcast_ref::<CelBool>() {
        b.inner().to_string()
    } else {
        return ExecutionError::UnexpectedType {
            got: key.get_type().name().to_owned(),
            want: "map key".to_owned(),
        };
    };
    ExecutionError::NoSuchKey(Arc::new(text))
}

impl<'r> Val for Record<'r> {
    fn get_type(&self) -> &Type {
        CelMap::cel_type()
    }

    fn cel_type() -> &'static Type {
        CelMap::cel_type()
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn into_indexer<'w>(self: Box<Self>) -> Option<Box<dyn Indexer + 'w>>
    where
        Self: 'w,
    {
        Some(self)
    }

    /// Map equality: the same number of entries, and each of ours found in `other` and equal.
    fn equals(&self, other: &dyn Val) -> bool {
        let (Some(size), Some(indexer)) = (other.as_sizer(), other.as_indexer()) else {
            return false;
        };
        other.get_type() == CelMap::cel_type()
            && *size.size().inner() == self.fields.len() as i64
            && self.fields.iter().all(|(key, value)| {
                indexer
                    .get(key)
                    .is_ok_and(|theirs| value.as_val().equals(theirs.as_ref()))
            })
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(self.to_map())
    }
}

impl<'r> Indexer for Record<'r> {
    fn get<'b, 'w>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
    where
        Self: 'w,
    {
        key.downcast_ref::<CelString>()
            .and_then(|s| self.field(s.inner()))
            .map(|field| CowVal::Borrowed(field.as_val()))
            .ok_or_else(|| no_such_key(key))
    }

    fn steal<'w>(self: Box<Self>, key: &dyn Val) -> Result<Box<dyn Val + 'w>, ExecutionError>
    where
        Self: 'w,
    {
        let value = self.get(key)?;
        Ok(value.as_ref().clone_as_boxed())
    }
}
