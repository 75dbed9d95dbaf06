//! Renders a [`Filter`] as a SQL boolean expression with positional placeholders, for PostgreSQL
//! (`$1`, `$2`, …) or SQLite (`?`). Literals are always parameters, never spliced into the text.
//!
//! SQL's NULL logic is made to agree with the tree's two-valued semantics: comparisons on a NULL
//! column are NULL, which a WHERE treats as false; under `NOT`, the operand is wrapped in
//! `COALESCE(…, FALSE)` so that `NOT` of an absent attribute's comparison is true, as in the tree.
//! String ordering uses `COLLATE "C"` on PostgreSQL (code point order, like CEL).
//!
//! List attributes (for `contains`) are `jsonb` arrays on PostgreSQL and JSON text on SQLite. A
//! SQLite column may hold text that is not JSON, on which json_type and json_each raise: they only
//! run behind `CASE WHEN json_valid(…)` (SQLite does not promise to evaluate an AND's operands in
//! order), and likewise jsonb_array_elements, which raises on a scalar, behind a CASE on its type.
//! `contains` holds only for an array with an element of the literal's JSON type (json_each also
//! yields a scalar's and an object's values, and true as 1); and where no schema declares the
//! attribute a list, the clause leaves out rows whose column holds anything but a list or null
//! (`Renderer::lists_only`): fail closed where the tree's assumption of one type per column fails.
//! In a list column (declared by the schema, or read with `contains`) a JSON `null`, which raw SQL
//! can write and a driver reads as null, is absent: `exists` does not select it, and an optional
//! list's schema guard lets it through.
//!
//! For a kind with a schema ([`render_typed`]), the WHERE clause also holds what makes a row fit
//! the schema, as Check requires before any rule runs, for every declared attribute that has a
//! column: required ones are not NULL, values have their declared type, and `non_empty` ones are
//! not "" or [] (a NULL optional column is none of these: it stays selectable). On SQLite, whose
//! columns hold any type, that is a `typeof()` check per column (a bool is the integer 0 or 1,
//! as SQLite stores it); on PostgreSQL the column types do most of it, and the clause checks what
//! they cannot: enum values, whole numbers, list element types. So a row Check would deny for its
//! types is never selected, whatever the rules say.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::Value as Json;

use super::{CmpOp, Filter};
use crate::schema::{ObjectType, Type};

/// The attributes a filter compares at its top level (a leaf, or leaves of its top conjunction):
/// where the filter holds, they are present.
fn implied_present(filter: &Filter) -> Vec<&str> {
    match filter.unannotated() {
        Filter::Compare { attribute, .. }
        | Filter::In { attribute, .. }
        | Filter::Contains { attribute, .. }
        | Filter::Exists { attribute } => vec![attribute.as_str()],
        Filter::And(operands) => operands.iter().flat_map(implied_present).collect(),
        _ => Vec::new(),
    }
}

/// The attributes a filter's top level (a leaf, or leaves of its top conjunction) holds to a value
/// that is not empty: equal to a non-empty string or one of such strings, a list containing a
/// value. Where the filter holds they are not "" or [], and need no `non_empty` guard.
fn implied_non_empty(filter: &Filter) -> Vec<&str> {
    let non_empty = |v: &Json| v.as_str().is_some_and(|s| !s.is_empty());
    match filter.unannotated() {
        Filter::Compare {
            op: CmpOp::Eq,
            attribute,
            value,
        } if non_empty(value) => vec![attribute.as_str()],
        Filter::In { attribute, values } if !values.is_empty() && values.iter().all(non_empty) => {
            vec![attribute.as_str()]
        }
        Filter::Contains { attribute, .. } => vec![attribute.as_str()],
        Filter::And(operands) => operands.iter().flat_map(implied_non_empty).collect(),
        _ => Vec::new(),
    }
}

fn join_and(parts: &[String]) -> String {
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("({})", parts.join(" AND "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// A rendered filter: `where` holds `params.len()` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    pub where_clause: String,
    pub params: Vec<Json>,
}

/// Why a filter could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    UnmappedAttribute(String),
    BadColumn { attribute: String, column: String },
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlError::UnmappedAttribute(a) => write!(f, "attribute \"{a}\" has no column in sql.columns"),
            SqlError::BadColumn { attribute, column } => write!(
                f,
                "column \"{column}\" for attribute \"{attribute}\" is not a plain (optionally qualified or quoted) column name"
            ),
        }
    }
}

/// Renders `filter` for `dialect`, naming attributes by `columns`.
pub fn render(
    filter: &Filter,
    dialect: Dialect,
    columns: &HashMap<String, String>,
) -> Result<SqlFilter, SqlError> {
    render_typed(filter, dialect, columns, None)
}

/// Like [`render`], for rows of a kind whose attributes the schema declares as `attributes`: the
/// clause also requires every mapped column to fit its declared type (see the module doc).
pub fn render_typed(
    filter: &Filter,
    dialect: Dialect,
    columns: &HashMap<String, String>,
    attributes: Option<&ObjectType>,
) -> Result<SqlFilter, SqlError> {
    for attribute in filter.attributes() {
        let column = columns
            .get(attribute)
            .ok_or_else(|| SqlError::UnmappedAttribute(attribute.to_string()))?;
        if !is_column_name(column) {
            return Err(SqlError::BadColumn {
                attribute: attribute.to_string(),
                column: column.clone(),
            });
        }
    }
    for column in columns.values() {
        if !is_column_name(column) {
            let attribute = columns
                .iter()
                .find(|(_, c)| *c == column)
                .map(|(a, _)| a.clone())
                .unwrap_or_default();
            return Err(SqlError::BadColumn {
                attribute,
                column: column.clone(),
            });
        }
    }
    let mut r = Renderer {
        dialect,
        columns,
        out: String::new(),
        params: Vec::new(),
        attributes,
        contained: contained(filter),
    };
    let mut guards = Vec::new();
    if let Some(attributes) = attributes {
        let implied = Implied {
            present: implied_present(filter),
            non_empty: implied_non_empty(filter),
        };
        r.conformance(attributes, "", &implied, &mut guards);
    }
    r.lists_only(&mut guards);
    match (guards.is_empty(), filter) {
        (true, _) => r.filter(filter),
        (false, Filter::True) => r.out = join_and(&guards),
        (false, _) => {
            r.out = join_and(&guards);
            r.out.insert(0, '(');
            r.out.push_str(" AND ");
            r.filter(filter);
            r.out.push(')');
        }
    }
    Ok(SqlFilter {
        where_clause: r.out,
        params: r.params,
    })
}

/// Letters, digits, `_`, `.` and double-quoted identifiers: nothing that could end the expression.
fn is_column_name(column: &str) -> bool {
    !column.is_empty()
        && column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '"')
        && column.matches('"').count().is_multiple_of(2)
}

/// What a filter already requires of the attributes it compares at its top level.
struct Implied<'f> {
    /// Present (not NULL).
    present: Vec<&'f str>,
    /// Not "" or [].
    non_empty: Vec<&'f str>,
}

/// Whether the schema declares `attribute` (a dotted path) a list.
fn declared_list(attributes: Option<&ObjectType>, attribute: &str) -> bool {
    attributes
        .and_then(|a| a.path(attribute))
        .is_some_and(|a| matches!(a.ty, Type::List(_)))
}

/// The attributes `filter` reads with `contains`, anywhere in it, each once.
fn contained(filter: &Filter) -> Vec<&str> {
    fn walk<'f>(f: &'f Filter, out: &mut Vec<&'f str>) {
        match f {
            Filter::Contains { attribute, .. } if !out.contains(&attribute.as_str()) => {
                out.push(attribute)
            }
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| walk(f, out)),
            Filter::Not(f) | Filter::From { filter: f, .. } => walk(f, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(filter, &mut out);
    out
}

struct Renderer<'a> {
    dialect: Dialect,
    columns: &'a HashMap<String, String>,
    out: String,
    params: Vec<Json>,
    /// The kind's schema, when it has one.
    attributes: Option<&'a ObjectType>,
    /// The attributes the filter reads with `contains`.
    contained: Vec<&'a str>,
}

impl Renderer<'_> {
    fn placeholder(&mut self, value: &Json) -> String {
        self.params.push(value.clone());
        match self.dialect {
            Dialect::Postgres => format!("${}", self.params.len()),
            Dialect::Sqlite => "?".to_string(),
        }
    }

    /// A typed placeholder where PostgreSQL cannot infer the type from a column.
    fn typed_placeholder(&mut self, value: &Json) -> String {
        let p = self.placeholder(value);
        match (self.dialect, value) {
            (Dialect::Postgres, Json::String(_)) => format!("{p}::text"),
            (Dialect::Postgres, Json::Number(_)) => format!("{p}::float8"),
            (Dialect::Postgres, Json::Bool(_)) => format!("{p}::boolean"),
            _ => p,
        }
    }

    /// The clauses that make each mapped attribute of `attributes` (below the dotted `prefix`) fit
    /// its declared type.
    /// `implied`: what the filter already requires.
    fn conformance(
        &mut self,
        attributes: &ObjectType,
        prefix: &str,
        implied: &Implied,
        out: &mut Vec<String>,
    ) {
        for (name, attribute) in attributes.attributes() {
            let path = format!("{prefix}{name}");
            if let Type::Object(inner) = &attribute.ty {
                self.conformance(inner, &format!("{path}."), implied, out);
                continue;
            }
            let Some(column) = self.columns.get(&path).cloned() else {
                continue;
            };
            let non_empty = if implied.non_empty.contains(&path.as_str()) {
                None
            } else {
                self.non_empty_guard(&column, attribute)
            };
            let guard = match (self.type_guard(&column, &attribute.ty), non_empty) {
                (Some(typed), Some(non_empty)) => Some(format!("({typed} AND {non_empty})")),
                (typed, non_empty) => typed.or(non_empty),
            };
            // Only top-level attributes can be required of every row: a nested one is required
            // only where its object is present.
            let required = attribute.required && prefix.is_empty();
            let compared = implied.present.contains(&path.as_str());
            out.push(match (required, guard) {
                // The filter compares it: it is not NULL where the filter holds.
                (_, Some(g)) if compared => g,
                (true, Some(g)) => format!("({column} IS NOT NULL AND {g})"),
                (true, None) if !compared => format!("{column} IS NOT NULL"),
                (false, Some(g)) => format!("({} OR {g})", self.absent(&column, &path)),
                (_, None) => continue,
            });
        }
    }

    /// Where no schema declares them lists, the columns of the attributes `filter` reads with
    /// `contains` hold a list or nothing (NULL, JSON null): a JSON scalar, an object or (SQLite)
    /// text that is not JSON there is a value Check's condition fails on with an error
    /// (`!("a" in R.attr.tags)` on a string allows nothing), which the two-valued tree cannot
    /// express (its `Not` holds). Such rows are left out: fail closed, at the price of the rows
    /// Check allows where an `||` absorbed the error.
    fn lists_only(&self, out: &mut Vec<String>) {
        for &attribute in &self.contained {
            if declared_list(self.attributes, attribute) {
                continue;
            }
            let column = self.column(attribute).to_string();
            out.push(match self.dialect {
                Dialect::Sqlite => format!(
                    "CASE WHEN json_valid({column}) THEN json_type({column}) IN ('array', 'null') ELSE {column} IS NULL END"
                ),
                Dialect::Postgres => {
                    format!("({column} IS NULL OR jsonb_typeof({column}) IN ('array', 'null'))")
                }
            });
        }
    }

    /// What makes a non-NULL `column` not empty, for an attribute the schema says is `non_empty`
    /// (Check refuses "" and [] there). CASE keeps SQLite from reading a non-array as JSON.
    fn non_empty_guard(
        &self,
        column: &str,
        attribute: &crate::schema::Attribute,
    ) -> Option<String> {
        if !attribute.non_empty {
            return None;
        }
        match (&attribute.ty, self.dialect) {
            (Type::String | Type::Enum(_), _) => Some(format!("{column} <> ''")),
            (Type::List(_), Dialect::Sqlite) => Some(format!(
                "CASE WHEN json_valid({column}) AND json_type({column}) = 'array' THEN json_array_length({column}) > 0 ELSE 0 END"
            )),
            (Type::List(_), Dialect::Postgres) => Some(format!("{column} <> '[]'::jsonb")),
            _ => None,
        }
    }

    /// What makes a non-NULL `column` hold a value of `ty`, beyond what its SQL type ensures.
    fn type_guard(&mut self, column: &str, ty: &Type) -> Option<String> {
        let sqlite = self.dialect == Dialect::Sqlite;
        Some(match ty {
            Type::String if sqlite => format!("typeof({column}) = 'text'"),
            Type::Double if sqlite => format!("typeof({column}) IN ('integer', 'real')"),
            Type::Int if sqlite => format!(
                "(typeof({column}) IN ('integer', 'real') AND {column} = CAST({column} AS INTEGER) AND abs({column}) <= 9007199254740992)"
            ),
            Type::Int => format!("({column} = trunc({column}) AND abs({column}) <= 9007199254740992)"),
            Type::Bool if sqlite => format!("(typeof({column}) = 'integer' AND {column} IN (0, 1))"),
            Type::Enum(values) => {
                let placeholders: Vec<String> = values
                    .iter()
                    .map(|v| self.placeholder(&Json::String(v.clone())))
                    .collect();
                let test = format!("{column} IN ({})", placeholders.join(", "));
                if sqlite {
                    format!("(typeof({column}) = 'text' AND {test})")
                } else {
                    test
                }
            }
            Type::List(item) => {
                let (element_ok, array) = match self.dialect {
                    Dialect::Sqlite => (
                        match item.as_ref() {
                            Type::String | Type::Enum(_) => "json_each.type = 'text'",
                            Type::Double | Type::Int => "json_each.type IN ('integer', 'real')",
                            Type::Bool => "json_each.type IN ('true', 'false')",
                            _ => "TRUE",
                        },
                        format!("json_valid({column})"),
                    ),
                    Dialect::Postgres => (
                        match item.as_ref() {
                            Type::String | Type::Enum(_) => "jsonb_typeof(e) = 'string'",
                            Type::Double | Type::Int => "jsonb_typeof(e) = 'number'",
                            Type::Bool => "jsonb_typeof(e) = 'boolean'",
                            _ => "TRUE",
                        },
                        format!("jsonb_typeof({column}) = 'array'"),
                    ),
                };
                // CASE: neither database promises to evaluate an AND's operands in order, and
                // json_type / json_each raise on text that is not JSON, jsonb_array_elements on a
                // scalar.
                match self.dialect {
                    Dialect::Sqlite => format!(
                        "CASE WHEN {array} THEN json_type({column}) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each({column}) WHERE NOT ({element_ok})) ELSE 0 END"
                    ),
                    Dialect::Postgres => format!(
                        "CASE WHEN {array} THEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements({column}) AS e WHERE NOT ({element_ok})) ELSE FALSE END"
                    ),
                }
            }
            // PostgreSQL's column types hold strings, numbers and bools as they are.
            Type::String | Type::Double | Type::Bool | Type::Object(_) => return None,
        })
    }

    /// Whether `attribute`'s column holds JSON lists: the schema declares it a list, or the filter
    /// reads it with `contains`. There a JSON `null` is absent, as the row reads.
    fn is_list(&self, attribute: &str) -> bool {
        self.contained.contains(&attribute) || declared_list(self.attributes, attribute)
    }

    /// `column` holds no value of `attribute`: NULL, or for a JSON list column a JSON `null`
    /// (raw SQL can write one; a driver reads it as null, which Check takes for absent). Never
    /// NULL itself.
    fn absent(&self, column: &str, attribute: &str) -> String {
        if !self.is_list(attribute) {
            return format!("{column} IS NULL");
        }
        match self.dialect {
            Dialect::Sqlite => format!(
                "CASE WHEN json_valid({column}) THEN json_type({column}) = 'null' ELSE {column} IS NULL END"
            ),
            Dialect::Postgres => format!("({column} IS NULL OR jsonb_typeof({column}) = 'null')"),
        }
    }

    fn column(&self, attribute: &str) -> &str {
        // Presence was checked by render().
        self.columns
            .get(attribute)
            .map(String::as_str)
            .unwrap_or("NULL")
    }

    fn filter(&mut self, f: &Filter) {
        match f {
            Filter::True => self.out.push_str("TRUE"),
            Filter::False => self.out.push_str("FALSE"),
            Filter::Compare {
                op,
                attribute,
                value,
            } => {
                let column = self.column(attribute).to_string();
                let collate = self.dialect == Dialect::Postgres
                    && value.is_string()
                    && !matches!(op, CmpOp::Eq | CmpOp::Ne);
                let p = self.placeholder(value);
                let sql_op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::Ne => "<>",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                if collate {
                    let _ = write!(self.out, "{column} COLLATE \"C\" {sql_op} {p}");
                } else {
                    let _ = write!(self.out, "{column} {sql_op} {p}");
                }
            }
            // `IN ()` is no SQL in PostgreSQL: the empty set holds nothing.
            Filter::In { values, .. } if values.is_empty() => self.out.push_str("FALSE"),
            Filter::In { attribute, values } => {
                let column = self.column(attribute).to_string();
                let _ = write!(self.out, "{column} IN (");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    let p = self.placeholder(v);
                    self.out.push_str(&p);
                }
                self.out.push(')');
            }
            Filter::Contains { attribute, value } => {
                let column = self.column(attribute).to_string();
                let p = self.typed_placeholder(value);
                match self.dialect {
                    Dialect::Postgres => {
                        let _ = write!(self.out, "{column} @> jsonb_build_array({p})");
                    }
                    // Only in a JSON array, and an element of the literal's JSON type (SQLite's
                    // json_each gives true as 1, and the elements of a scalar or an object too);
                    // json_type and json_each only where the text is JSON (they raise elsewhere).
                    Dialect::Sqlite => {
                        let types = match value {
                            Json::String(_) => "'text'",
                            Json::Number(_) => "'integer', 'real'",
                            Json::Bool(_) => "'true', 'false'",
                            // The planner emits no other literal; none would match.
                            _ => "NULL",
                        };
                        let _ = write!(
                            self.out,
                            "CASE WHEN json_valid({column}) THEN json_type({column}) = 'array' AND EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.type IN ({types}) AND json_each.value = {p}) ELSE 0 END"
                        );
                    }
                }
            }
            Filter::Exists { attribute } => {
                let column = self.column(attribute).to_string();
                let present = if self.is_list(attribute) {
                    format!("NOT ({})", self.absent(&column, attribute))
                } else {
                    format!("{column} IS NOT NULL")
                };
                self.out.push_str(&present);
            }
            // `()` is no SQL: the empty conjunction holds, the empty disjunction does not.
            Filter::And(fs) if fs.is_empty() => self.out.push_str("TRUE"),
            Filter::Or(fs) if fs.is_empty() => self.out.push_str("FALSE"),
            Filter::And(fs) | Filter::Or(fs) => {
                let joiner = if matches!(f, Filter::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                self.out.push('(');
                for (i, x) in fs.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(joiner);
                    }
                    self.filter(x);
                }
                self.out.push(')');
            }
            Filter::Not(x) => {
                self.out.push_str("NOT COALESCE(");
                self.filter(x);
                self.out.push_str(", FALSE)");
            }
            Filter::From { filter, .. } => self.filter(filter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn columns(names: &[&str]) -> HashMap<String, String> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("t.{n}")))
            .collect()
    }

    #[test]
    fn renders_placeholders_per_dialect_and_never_splices_literals() {
        let f = Filter::And(vec![
            Filter::compare(CmpOp::Eq, "practice_id", json!("7'; DROP TABLE x; --")),
            Filter::negate(Filter::In {
                attribute: "state".into(),
                values: vec![json!("CA"), json!("NY")],
            }),
        ]);
        let cols = columns(&["practice_id", "state"]);
        let pg = render(&f, Dialect::Postgres, &cols).unwrap();
        assert_eq!(
            pg.where_clause,
            "(t.practice_id = $1 AND NOT COALESCE(t.state IN ($2, $3), FALSE))"
        );
        assert_eq!(
            pg.params,
            vec![json!("7'; DROP TABLE x; --"), json!("CA"), json!("NY")]
        );
        let lite = render(&f, Dialect::Sqlite, &cols).unwrap();
        assert_eq!(
            lite.where_clause,
            "(t.practice_id = ? AND NOT COALESCE(t.state IN (?, ?), FALSE))"
        );
        assert_eq!(lite.params.len(), 3);
    }

    #[test]
    fn string_ordering_is_code_point_order_on_postgres() {
        let f = Filter::compare(CmpOp::Lt, "name", json!("m"));
        let pg = render(&f, Dialect::Postgres, &columns(&["name"])).unwrap();
        assert_eq!(pg.where_clause, "t.name COLLATE \"C\" < $1");
        let n = Filter::compare(CmpOp::Lt, "amount", json!(3));
        assert_eq!(
            render(&n, Dialect::Postgres, &columns(&["amount"]))
                .unwrap()
                .where_clause,
            "t.amount < $1"
        );
    }

    #[test]
    fn contains_exists_and_constants() {
        let cols = columns(&["tags", "x"]);
        let c = Filter::Contains {
            attribute: "tags".into(),
            value: json!("vip"),
        };
        // Without a schema saying tags is a list, a row holding anything else is left out.
        assert_eq!(
            render(&c, Dialect::Postgres, &cols).unwrap().where_clause,
            "((t.tags IS NULL OR jsonb_typeof(t.tags) IN ('array', 'null')) AND t.tags @> jsonb_build_array($1::text))"
        );
        assert_eq!(
            render(&c, Dialect::Sqlite, &cols).unwrap().where_clause,
            "(CASE WHEN json_valid(t.tags) THEN json_type(t.tags) IN ('array', 'null') ELSE t.tags IS NULL END AND CASE WHEN json_valid(t.tags) THEN json_type(t.tags) = 'array' AND EXISTS (SELECT 1 FROM json_each(t.tags) WHERE json_each.type IN ('text') AND json_each.value = ?) ELSE 0 END)"
        );
        assert_eq!(
            render(&Filter::exists("x"), Dialect::Sqlite, &cols)
                .unwrap()
                .where_clause,
            "t.x IS NOT NULL"
        );
        assert_eq!(
            render(&Filter::True, Dialect::Sqlite, &cols)
                .unwrap()
                .where_clause,
            "TRUE"
        );
    }

    #[test]
    fn empty_conjunctions_disjunctions_and_sets_are_constants() {
        // Found by the `sql` fuzz target: `()` and `IN ()` are syntax errors.
        let cols = columns(&["x"]);
        let empty_in = Filter::In {
            attribute: "x".into(),
            values: vec![],
        };
        for (filter, sql) in [
            (Filter::And(vec![]), "TRUE"),
            (Filter::Or(vec![]), "FALSE"),
            (empty_in.clone(), "FALSE"),
            (
                Filter::negate(Filter::Or(vec![])),
                "NOT COALESCE(FALSE, FALSE)",
            ),
        ] {
            for dialect in [Dialect::Postgres, Dialect::Sqlite] {
                let rendered = render(&filter, dialect, &cols).unwrap();
                assert_eq!(rendered.where_clause, sql, "{filter:?}");
                assert!(rendered.params.is_empty());
            }
        }
        assert!(!empty_in.matches(&json!({"x": "a"})));
        assert!(Filter::And(vec![]).matches(&json!({})));
        assert!(!Filter::Or(vec![]).matches(&json!({})));
    }

    #[test]
    fn typed_rendering_checks_every_mapped_column_against_the_schema() {
        let schema = crate::schema::tests::schema_of(&["schema:\n  name: s\n  kinds:\n    K:\n      actions: [read]\n      attributes:\n        flag: bool\n        level: {type: enum, values: [a, b], required: false}\n        n: int?\n        note: string?\n"]).unwrap().unwrap();
        let attributes = &schema.kinds["K"].attributes;
        let cols = columns(&["flag", "level", "n"]);
        let f = Filter::compare(CmpOp::Eq, "flag", json!(true));
        let lite = render_typed(&f, Dialect::Sqlite, &cols, Some(attributes)).unwrap();
        assert_eq!(
            lite.where_clause,
            "(((typeof(t.flag) = 'integer' AND t.flag IN (0, 1)) AND (t.level IS NULL OR (typeof(t.level) = 'text' AND t.level IN (?, ?))) AND (t.n IS NULL OR (typeof(t.n) IN ('integer', 'real') AND t.n = CAST(t.n AS INTEGER) AND abs(t.n) <= 9007199254740992))) AND t.flag = ?)"
        );
        assert_eq!(lite.params, vec![json!("a"), json!("b"), json!(true)]);
        let pg = render_typed(&Filter::True, Dialect::Postgres, &cols, Some(attributes)).unwrap();
        assert_eq!(
            pg.where_clause,
            "(t.flag IS NOT NULL AND (t.level IS NULL OR t.level IN ($1, $2)) AND (t.n IS NULL OR (t.n = trunc(t.n) AND abs(t.n) <= 9007199254740992)))"
        );
        // Unmapped attributes (note) are the caller's to leave out; without a schema, nothing is added.
        assert_eq!(
            render_typed(&f, Dialect::Sqlite, &cols, None)
                .unwrap()
                .where_clause,
            "t.flag = ?"
        );
    }

    #[test]
    fn non_empty_columns_are_held_to_it_and_null_optional_ones_stay_selectable() {
        let schema = crate::schema::tests::schema_of(&["schema:\n  name: s\n  kinds:\n    K:\n      actions: [read]\n      attributes:\n        code: {type: string, non_empty: true}\n        tags: {type: \"list<string>\", required: false, non_empty: true}\n"]).unwrap().unwrap();
        let attributes = &schema.kinds["K"].attributes;
        let cols = columns(&["code", "tags"]);
        let f = Filter::compare(CmpOp::Ne, "code", json!("x"));
        let lite = render_typed(&f, Dialect::Sqlite, &cols, Some(attributes)).unwrap();
        assert_eq!(
            lite.where_clause,
            "(((typeof(t.code) = 'text' AND t.code <> '') AND (CASE WHEN json_valid(t.tags) THEN json_type(t.tags) = 'null' ELSE t.tags IS NULL END OR (CASE WHEN json_valid(t.tags) THEN json_type(t.tags) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(t.tags) WHERE NOT (json_each.type = 'text')) ELSE 0 END AND CASE WHEN json_valid(t.tags) AND json_type(t.tags) = 'array' THEN json_array_length(t.tags) > 0 ELSE 0 END))) AND t.code <> ?)"
        );
        let pg = render_typed(&Filter::True, Dialect::Postgres, &cols, Some(attributes)).unwrap();
        assert_eq!(
            pg.where_clause,
            "((t.code IS NOT NULL AND t.code <> '') AND ((t.tags IS NULL OR jsonb_typeof(t.tags) = 'null') OR (CASE WHEN jsonb_typeof(t.tags) = 'array' THEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(t.tags) AS e WHERE NOT (jsonb_typeof(e) = 'string')) ELSE FALSE END AND t.tags <> '[]'::jsonb)))"
        );
        assert!(pg.params.is_empty());
        // Where the filter holds a column to a non-empty value, the guard would say it again.
        let f = Filter::And(vec![
            Filter::compare(CmpOp::Eq, "code", json!("x")),
            Filter::Contains {
                attribute: "tags".into(),
                value: json!("a"),
            },
        ]);
        assert_eq!(
            render_typed(&f, Dialect::Postgres, &cols, Some(attributes))
                .unwrap()
                .where_clause,
            "(CASE WHEN jsonb_typeof(t.tags) = 'array' THEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(t.tags) AS e WHERE NOT (jsonb_typeof(e) = 'string')) ELSE FALSE END AND (t.code = $1 AND t.tags @> jsonb_build_array($2::text)))"
        );
        // Not where the value is "" (the guard then selects nothing, as Check allows nothing).
        let f = Filter::In {
            attribute: "code".into(),
            values: vec![json!("x"), json!("")],
        };
        assert_eq!(
            render_typed(&f, Dialect::Postgres, &cols, Some(attributes))
                .unwrap()
                .where_clause,
            "((t.code <> '' AND ((t.tags IS NULL OR jsonb_typeof(t.tags) = 'null') OR (CASE WHEN jsonb_typeof(t.tags) = 'array' THEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(t.tags) AS e WHERE NOT (jsonb_typeof(e) = 'string')) ELSE FALSE END AND t.tags <> '[]'::jsonb))) AND t.code IN ($1, $2))"
        );
    }

    /// SQLite lists are JSON text, which a column may hold malformed (raw SQL, another program), or
    /// as a scalar or an object: `contains` selects only arrays holding an element of the literal's
    /// JSON type, the schema's list guard only arrays, and no row fails the query (json_type and
    /// json_each raise on text that is not JSON), in the real SQLite.
    #[test]
    fn sqlite_lists_holding_no_array_are_never_selected_nor_fail_the_query() {
        use rusqlite::types::Value as V;
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (id TEXT, tags TEXT)")
            .unwrap();
        let rows = [
            ("array", Some(r#"["a", 1]"#)),
            ("other", Some(r#"["b"]"#)),
            ("scalar", Some(r#""a""#)),
            ("object", Some(r#"{"k": "a", "n": 1}"#)),
            ("bools", Some("[true]")),
            ("text", Some("nope")),
            ("truncated", Some(r#"["a""#)),
            ("empty", Some("")),
            ("sql-null", None),
            // Raw SQL's JSON null: a driver reads it as null, which Check takes for absent.
            ("json-null", Some("null")),
        ];
        for (id, tags) in rows {
            db.execute("INSERT INTO t VALUES (?, ?)", rusqlite::params![id, tags])
                .unwrap();
        }
        let schema = crate::schema::tests::schema_of(&["schema:\n  name: s\n  kinds:\n    K:\n      actions: [read]\n      attributes:\n        tags: {type: \"list<string>\", required: false, non_empty: true}\n"]).unwrap().unwrap();
        let select = |f: &Filter, typed: bool| -> Vec<String> {
            let attributes = typed.then(|| &schema.kinds["K"].attributes);
            let sql = render_typed(f, Dialect::Sqlite, &columns(&["tags"]), attributes).unwrap();
            let params: Vec<V> = sql
                .params
                .iter()
                .map(|p| match p {
                    Json::String(s) => V::Text(s.clone()),
                    Json::Bool(b) => V::Integer(*b as i64),
                    other => V::Real(other.as_f64().unwrap()),
                })
                .collect();
            let query = format!("SELECT id FROM t WHERE {} ORDER BY id", sql.where_clause);
            let mut statement = db.prepare(&query).unwrap();
            statement
                .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap_or_else(|e| panic!("{query}: {e}")))
                .collect()
        };
        let contains = |value: Json| Filter::Contains {
            attribute: "tags".into(),
            value,
        };
        assert_eq!(select(&contains(json!("a")), false), ["array"]);
        assert_eq!(select(&contains(json!(1)), false), ["array"]);
        assert_eq!(select(&contains(json!(true)), false), ["bools"]);
        // `!("a" in R.attr.tags)`, as planned: lists without "a" only (on the scalar "a" and
        // on text, Check's `in` fails with an error and allows nothing).
        let negated = Filter::And(vec![
            Filter::exists("tags"),
            Filter::negate(contains(json!("a"))),
        ]);
        assert_eq!(select(&negated, false), ["bools", "other"]);
        assert_eq!(
            select(&Filter::negate(contains(json!("a"))), false),
            ["bools", "json-null", "other", "sql-null"]
        );
        // An optional list: absent (NULL or JSON null) or a list that fits.
        assert_eq!(
            select(&Filter::True, true),
            ["json-null", "other", "sql-null"]
        );
        assert_eq!(select(&contains(json!("b")), true), ["other"]);
        // `has(R.attr.tags)`: a JSON null is absent (it selected the row Check denies).
        assert_eq!(select(&Filter::exists("tags"), true), ["other"]);
        assert_eq!(
            select(&Filter::negate(Filter::exists("tags")), true),
            ["json-null", "sql-null"]
        );
    }

    #[test]
    fn unmapped_attributes_and_unsafe_columns_are_errors() {
        let f = Filter::exists("secret");
        assert_eq!(
            render(&f, Dialect::Sqlite, &HashMap::new()),
            Err(SqlError::UnmappedAttribute("secret".into()))
        );
        let bad: HashMap<String, String> =
            [("secret".to_string(), "x; DROP TABLE y".to_string())].into();
        assert!(matches!(
            render(&f, Dialect::Sqlite, &bad),
            Err(SqlError::BadColumn { .. })
        ));
        let quoted: HashMap<String, String> =
            [("secret".to_string(), "\"Weird Col\"".replace(' ', "_"))].into();
        assert!(render(&f, Dialect::Sqlite, &quoted).is_ok());
    }
}
