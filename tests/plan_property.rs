//! The proof that PlanFilter never disagrees with Check: random rows (with absent and null
//! attributes) in real databases with typed columns, random principals and actions; for each
//! (principal, kind, action) the rows selected by the rendered SQL must be exactly the rows Check
//! allows, and so must the rows the in-memory filter tree selects among those that fit the schema.
//! Check sees each row as the database gives it back, read through the schema's types as an ORM
//! would (SQLite's 0 and 1 in a bool column are false and true).
//!
//! The clinic's rows include type-confused values (a celebrity flag of "yes" or 2, an enum value
//! the schema does not list, an amount of "lots"), which SQLite stores as they are: Check denies
//! them for their types, and the SQL, which checks every mapped column's type, never selects them.
//!
//! SQLite (bundled) always runs. PostgreSQL runs against `VERDICT_TEST_POSTGRES` (a libpq-style
//! connection string; `.ci/run` starts a server and sets it); outside CI, without that variable,
//! the PostgreSQL half is skipped and says so. Seeds are fixed; set `VERDICT_TEST_SEED` to vary.
use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::{json, Map, Value as Json};
use verdict::compile::PolicySet;
use verdict::engine;
use verdict::filter::sql::{self, Dialect};
use verdict::plan::{plan, Plan, PlanRequest};
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};

#[derive(Clone, Copy, PartialEq)]
enum Type {
    Text,
    Number,
    Bool,
    TextList,
}

/// A kind's table: attribute name, type, and the values it draws from; and values of the wrong
/// type some rows get instead.
struct Kind {
    name: &'static str,
    attributes: Vec<(&'static str, Type, Vec<Json>)>,
    confused: Vec<(&'static str, Vec<Json>)>,
}

fn strings(values: &[&str]) -> Vec<Json> {
    values.iter().map(|v| json!(v)).collect()
}

fn clinic_kinds() -> Vec<Kind> {
    // "" is a string the schema refuses (non_empty): Check denies such a row, so the SQL must not
    // select it.
    let practice = strings(&["7", "9", ""]);
    let patient = strings(&["123", "124", "456", ""]);
    vec![
        Kind {
            name: "Patient",
            attributes: vec![
                ("practice_id", Type::Text, practice.clone()),
                ("patient_id", Type::Text, patient.clone()),
                ("state", Type::Text, strings(&["CA", "NY", "TX"])),
                (
                    "celebrity",
                    Type::Bool,
                    vec![json!(true), json!(false), json!(false)],
                ),
                (
                    "primary_physician_id",
                    Type::Text,
                    strings(&["dr-wilson", "dr-house"]),
                ),
            ],
            confused: vec![("celebrity", vec![json!("yes"), json!(2), json!("true")])],
        },
        Kind {
            name: "Note",
            attributes: vec![
                ("practice_id", Type::Text, practice.clone()),
                ("patient_id", Type::Text, patient.clone()),
                ("author_id", Type::Text, strings(&["dr-wilson", "dr-house"])),
                ("signed", Type::Bool, vec![json!(true), json!(false)]),
            ],
            confused: vec![("signed", vec![json!("no"), json!(-1)])],
        },
        Kind {
            name: "Observation",
            attributes: vec![
                ("practice_id", Type::Text, practice.clone()),
                ("patient_id", Type::Text, patient.clone()),
                (
                    "category",
                    Type::Text,
                    strings(&["laboratory", "vital-signs"]),
                ),
            ],
            confused: vec![("category", strings(&["lab", "Laboratory"]))],
        },
        Kind {
            name: "MedicationRequest",
            attributes: vec![
                ("practice_id", Type::Text, practice.clone()),
                ("patient_id", Type::Text, patient.clone()),
                ("patient_state", Type::Text, strings(&["CA", "NY", "TX"])),
            ],
            confused: vec![],
        },
        Kind {
            name: "Invoice",
            attributes: vec![
                ("practice_id", Type::Text, practice),
                ("patient_id", Type::Text, patient),
                (
                    "amount",
                    Type::Number,
                    vec![json!(50.0), json!(100.0), json!(250.5)],
                ),
            ],
            confused: vec![("amount", vec![json!("lots")])],
        },
    ]
}

fn doc_kinds() -> Vec<Kind> {
    vec![Kind {
        name: "Doc",
        attributes: vec![
            ("owner", Type::Text, strings(&["u1", "u2", "u3"])),
            (
                "level",
                Type::Number,
                vec![json!(1.0), json!(2.0), json!(3.0), json!(4.5)],
            ),
            (
                "tags",
                Type::TextList,
                vec![
                    json!([]),
                    json!(["x"]),
                    json!(["secret"]),
                    json!(["x", "archived"]),
                    json!(["g1", "secret"]),
                    json!(["g2"]),
                ],
            ),
            ("public", Type::Bool, vec![json!(true), json!(false)]),
            (
                "region",
                Type::Text,
                strings(&["east", "north", "south", "west", "Ärz"]),
            ),
            (
                "score",
                Type::Number,
                vec![
                    json!(5.0),
                    json!(10.0),
                    json!(50.5),
                    json!(60.0),
                    json!(90.0),
                    json!(99.9),
                ],
            ),
        ],
        confused: vec![],
    }]
}

/// A row: id and attributes, some absent (missing key), some null, some of the wrong type.
fn random_rows(rng: &mut fastrand::Rng, kind: &Kind, count: usize) -> Vec<(String, Json)> {
    (0..count)
        .map(|i| {
            let mut attr = Map::new();
            for (name, _, values) in &kind.attributes {
                let confused = kind.confused.iter().find(|(n, _)| n == name);
                match (rng.u8(0..20), confused) {
                    (0..=2, _) => {}
                    (3, _) => {
                        attr.insert(name.to_string(), Json::Null);
                    }
                    (4, Some((_, wrong))) => {
                        attr.insert(name.to_string(), wrong[rng.usize(0..wrong.len())].clone());
                    }
                    _ => {
                        attr.insert(name.to_string(), values[rng.usize(0..values.len())].clone());
                    }
                }
            }
            (format!("{}-{i}", kind.name), Json::Object(attr))
        })
        .collect()
}

fn pick<T: Clone>(rng: &mut fastrand::Rng, items: &[T], max: usize) -> Vec<T> {
    let n = rng.usize(0..=max);
    let mut out: Vec<T> = Vec::new();
    for _ in 0..n {
        out.push(items[rng.usize(0..items.len())].clone());
    }
    out
}

fn maybe(rng: &mut fastrand::Rng, attr: &mut Map<String, Json>, name: &str, values: &[Json]) {
    if rng.u8(0..5) > 0 {
        attr.insert(name.to_string(), values[rng.usize(0..values.len())].clone());
    }
}

fn random_principal(rng: &mut fastrand::Rng) -> Principal {
    let roles = [
        "physician",
        "nurse",
        "admin_staff",
        "patient",
        "system",
        "janitor",
        "admin",
    ];
    let capabilities = ["view-patient", "sign-a-note"];
    let scopes = [
        "user/*.cruds",
        "user/Observation.read",
        "patient/Observation.rs",
        "patient/*.read",
        "system/*.read",
        "patient/Observation.rs?category=laboratory",
        "user/*.write",
        "openid",
    ];
    let mut attr = Map::new();
    maybe(rng, &mut attr, "practice_id", &strings(&["7", "9"]));
    maybe(rng, &mut attr, "patient_id", &strings(&["123", "124"]));
    maybe(rng, &mut attr, "patient", &strings(&["123", "456"]));
    maybe(
        rng,
        &mut attr,
        "licensed_states",
        &[json!(["CA"]), json!(["CA", "TX"]), json!([])],
    );
    maybe(
        rng,
        &mut attr,
        "clearance",
        &[json!(1), json!(3.0), json!(5)],
    );
    maybe(
        rng,
        &mut attr,
        "regions",
        &[json!(["east"]), json!(["north", "south"]), json!([])],
    );
    maybe(
        rng,
        &mut attr,
        "groups",
        &[json!(["g1"]), json!(["g2", "x"]), json!([])],
    );
    let mut scopes = pick(rng, &scopes.map(String::from), 2);
    // Most staff tokens carry a scope for every kind (a scope gate covers each clinic kind).
    if rng.bool() {
        scopes.push("user/*.cruds".into());
    }
    Principal {
        id: ["dr-wilson", "dr-house", "u1", "u2"][rng.usize(0..4)].to_string(),
        roles: pick(rng, &roles.map(String::from), 2),
        capabilities: pick(rng, &capabilities.map(String::from), 1),
        scopes,
        client_id: String::new(),
        attr: Json::Object(attr),
    }
}

const ACTIONS: [&str; 6] = ["read", "search", "create", "update", "delete", "sign"];

/// A database under test.
trait Database {
    fn dialect(&self) -> Dialect;
    fn create(&mut self, kind: &Kind, rows: &[(String, Json)]);
    /// Every row as the database gives it back, read through the column types (NULL is absent).
    fn rows(&mut self, kind: &Kind) -> Vec<(String, Json)>;
    fn select(&mut self, kind: &Kind, where_clause: &str, params: &[Json]) -> BTreeSet<String>;
}

struct Sqlite(rusqlite::Connection);

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

impl Database for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn create(&mut self, kind: &Kind, rows: &[(String, Json)]) {
        let columns: Vec<String> = kind
            .attributes
            .iter()
            .map(|(n, t, _)| {
                format!(
                    "{n} {}",
                    match t {
                        Type::Text | Type::TextList => "TEXT",
                        Type::Number => "REAL",
                        Type::Bool => "BOOLEAN",
                    }
                )
            })
            .collect();
        self.0
            .execute(
                &format!(
                    "CREATE TABLE {} (id TEXT PRIMARY KEY, {})",
                    kind.name,
                    columns.join(", ")
                ),
                [],
            )
            .unwrap();
        let names: Vec<&str> = kind.attributes.iter().map(|(n, _, _)| *n).collect();
        let placeholders = vec!["?"; names.len() + 1].join(", ");
        let insert = format!(
            "INSERT INTO {} (id, {}) VALUES ({placeholders})",
            kind.name,
            names.join(", ")
        );
        for (id, attr) in rows {
            let mut values = vec![rusqlite::types::Value::Text(id.clone())];
            values.extend(
                names
                    .iter()
                    .map(|n| sqlite_value(attr.get(*n).unwrap_or(&Json::Null))),
            );
            self.0
                .execute(&insert, rusqlite::params_from_iter(values))
                .unwrap();
        }
    }

    fn rows(&mut self, kind: &Kind) -> Vec<(String, Json)> {
        use rusqlite::types::Value as V;
        let names: Vec<&str> = kind.attributes.iter().map(|(n, _, _)| *n).collect();
        let query = format!(
            "SELECT id, {} FROM {} ORDER BY id",
            names.join(", "),
            kind.name
        );
        let mut statement = self.0.prepare(&query).unwrap();
        let rows = statement
            .query_map([], |r| {
                let id: String = r.get(0)?;
                let mut attr = Map::new();
                for (i, (name, ty, _)) in kind.attributes.iter().enumerate() {
                    let value = match (r.get::<_, V>(i + 1)?, ty) {
                        (V::Null | V::Blob(_), _) => continue,
                        // SQLite has no bool: an ORM reads 0 and 1 of a bool column as bools.
                        (V::Integer(b @ (0 | 1)), Type::Bool) => Json::Bool(b == 1),
                        (V::Integer(i), _) => json!(i as f64),
                        (V::Real(f), _) => json!(f),
                        (V::Text(t), Type::TextList) => match serde_json::from_str(&t) {
                            Ok(list @ Json::Array(_)) => list,
                            _ => Json::String(t),
                        },
                        (V::Text(t), _) => Json::String(t),
                    };
                    attr.insert(name.to_string(), value);
                }
                Ok((id, Json::Object(attr)))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn select(&mut self, kind: &Kind, where_clause: &str, params: &[Json]) -> BTreeSet<String> {
        let query = format!("SELECT id FROM {} WHERE {where_clause}", kind.name);
        let mut statement = self
            .0
            .prepare(&query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let rows = statement
            .query_map(
                rusqlite::params_from_iter(params.iter().map(sqlite_value)),
                |r| r.get::<_, String>(0),
            )
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        rows.map(Result::unwrap).collect()
    }
}

struct Postgres {
    client: postgres::Client,
    schema: String,
}

fn postgres_param(v: &Json) -> Box<dyn postgres::types::ToSql + Sync> {
    match v {
        Json::Bool(b) => Box::new(*b),
        Json::Number(n) => Box::new(n.as_f64().unwrap()),
        Json::String(s) => Box::new(s.clone()),
        other => Box::new(other.clone()),
    }
}

impl Database for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn create(&mut self, kind: &Kind, rows: &[(String, Json)]) {
        let columns: Vec<String> = kind
            .attributes
            .iter()
            .map(|(n, t, _)| {
                format!(
                    "{n} {}",
                    match t {
                        Type::Text => "TEXT",
                        Type::TextList => "JSONB",
                        Type::Number => "DOUBLE PRECISION",
                        Type::Bool => "BOOLEAN",
                    }
                )
            })
            .collect();
        let table = format!("{}.{}", self.schema, kind.name);
        self.client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id TEXT PRIMARY KEY, {})",
                columns.join(", ")
            ))
            .unwrap();
        let names: Vec<&str> = kind.attributes.iter().map(|(n, _, _)| *n).collect();
        let placeholders: Vec<String> = (1..=names.len() + 1).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} (id, {}) VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        );
        let statement = self.client.prepare(&insert).unwrap();
        for (id, attr) in rows {
            let mut values: Vec<Box<dyn postgres::types::ToSql + Sync>> =
                vec![Box::new(id.clone())];
            for (name, t, _) in &kind.attributes {
                let v = attr.get(*name).filter(|v| !v.is_null());
                values.push(match (t, v) {
                    (Type::Text, v) => Box::new(v.and_then(|v| v.as_str()).map(String::from)),
                    (Type::Number, v) => Box::new(v.and_then(|v| v.as_f64())),
                    (Type::Bool, v) => Box::new(v.and_then(|v| v.as_bool())),
                    (Type::TextList, v) => Box::new(v.cloned()),
                });
            }
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                values.iter().map(|b| b.as_ref()).collect();
            self.client.execute(&statement, &refs).unwrap();
        }
    }

    fn rows(&mut self, kind: &Kind) -> Vec<(String, Json)> {
        let names: Vec<&str> = kind.attributes.iter().map(|(n, _, _)| *n).collect();
        let query = format!(
            "SELECT id, {} FROM {}.{} ORDER BY id",
            names.join(", "),
            self.schema,
            kind.name
        );
        let rows = self.client.query(&query, &[]).unwrap();
        rows.iter()
            .map(|r| {
                let mut attr = Map::new();
                for (i, (name, ty, _)) in kind.attributes.iter().enumerate() {
                    let value = match ty {
                        Type::Text => r.get::<_, Option<String>>(i + 1).map(Json::String),
                        Type::Number => r.get::<_, Option<f64>>(i + 1).map(|f| json!(f)),
                        Type::Bool => r.get::<_, Option<bool>>(i + 1).map(Json::Bool),
                        Type::TextList => r.get::<_, Option<Json>>(i + 1),
                    };
                    if let Some(value) = value {
                        attr.insert(name.to_string(), value);
                    }
                }
                (r.get::<_, String>(0), Json::Object(attr))
            })
            .collect()
    }

    fn select(&mut self, kind: &Kind, where_clause: &str, params: &[Json]) -> BTreeSet<String> {
        let query = format!(
            "SELECT id FROM {}.{} WHERE {where_clause}",
            self.schema, kind.name
        );
        let values: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            params.iter().map(postgres_param).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            values.iter().map(|b| b.as_ref()).collect();
        let rows = self
            .client
            .query(&query, &refs)
            .unwrap_or_else(|e| panic!("{query} {params:?}: {e}"));
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

fn seed() -> u64 {
    std::env::var("VERDICT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261123)
}

/// Runs the property over `databases` for the policies in `policies`.
fn prove(
    policies: &Path,
    kinds: &[Kind],
    databases: &mut [Box<dyn Database>],
    principals: usize,
    rows_per_kind: usize,
) {
    let set = PolicySet::load(policies).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed());
    // Each database's rows as it gives them back: SQLite keeps a wrong type as it is, a typed
    // PostgreSQL column cannot hold one (it is NULL there).
    let mut tables: Vec<Vec<Vec<(String, Json)>>> = Vec::new();
    for kind in kinds {
        let rows = random_rows(&mut rng, kind, rows_per_kind);
        tables.push(
            databases
                .iter_mut()
                .map(|db| {
                    db.create(kind, &rows);
                    db.rows(kind)
                })
                .collect(),
        );
    }
    let principals: Vec<Principal> = (0..principals)
        .map(|_| random_principal(&mut rng))
        .collect();
    let mut plans = 0;
    let mut conditional = 0;
    let mut allowed_rows = 0usize;
    let mut refused_rows = 0usize;
    for principal in &principals {
        for (kind, per_database) in kinds.iter().zip(&tables) {
            let columns: HashMap<String, String> = kind
                .attributes
                .iter()
                .map(|(n, _, _)| (n.to_string(), n.to_string()))
                .collect();
            let declared = set
                .schema
                .as_ref()
                .and_then(|s| s.kind(kind.name))
                .map(|k| &k.attributes);
            for action in ACTIONS {
                let request = PlanRequest {
                    principal: principal.clone(),
                    kind: kind.name.into(),
                    action: action.into(),
                    ..Default::default()
                };
                let planned = plan(&set, &request)
                    .unwrap_or_else(|e| panic!("{principal:?} {} {action}: {e}", kind.name));
                plans += 1;
                if matches!(planned, Plan::Conditional(_)) {
                    conditional += 1;
                }
                let filter = planned.filter();
                for (db, rows) in databases.iter_mut().zip(per_database) {
                    // What Check allows, row by row.
                    let check = CheckRequest {
                        principal: principal.clone(),
                        resources: rows
                            .iter()
                            .map(|(id, attr)| ResourceCheck {
                                resource: Resource {
                                    kind: kind.name.into(),
                                    id: id.clone(),
                                    attr: attr.clone(),
                                },
                                actions: vec![action.into()],
                            })
                            .collect(),
                        ..Default::default()
                    };
                    let decisions = engine::check(&set, &check);
                    refused_rows += decisions
                        .iter()
                        .filter(|r| r.actions[0].1.schema_violation.is_some())
                        .count();
                    let allowed: BTreeSet<String> = decisions
                        .into_iter()
                        .filter(|r| r.actions[0].1.is_allow())
                        .map(|r| r.id)
                        .collect();
                    allowed_rows += allowed.len();
                    let fits =
                        |attr: &Json| declared.is_none_or(|d| d.check("R.attr", attr).is_ok());
                    let by_tree: BTreeSet<String> = rows
                        .iter()
                        .filter(|(_, a)| fits(a) && filter.matches(a))
                        .map(|(id, _)| id.clone())
                        .collect();
                    let context = || {
                        format!(
                            "principal {principal:?}, {} {action}, plan {planned:?}",
                            kind.name
                        )
                    };
                    assert_eq!(
                        by_tree,
                        allowed,
                        "{:?}: tree != Check for {}",
                        db.dialect(),
                        context()
                    );
                    let rendered =
                        sql::render_typed(&filter, db.dialect(), &columns, declared).unwrap();
                    let by_sql = db.select(kind, &rendered.where_clause, &rendered.params);
                    assert_eq!(
                        by_sql,
                        allowed,
                        "{:?} SQL {:?} != Check for {}",
                        db.dialect(),
                        rendered,
                        context()
                    );
                }
            }
        }
    }
    eprintln!(
        "{}: {plans} plans ({conditional} conditional) over {} rows per kind, {allowed_rows} allowed and {refused_rows} refused for their types (principal, row) pairs, on {} database(s), seed {}",
        policies.display(),
        rows_per_kind,
        databases.len(),
        seed()
    );
    assert!(
        conditional > plans / 20,
        "too few conditional plans ({conditional} of {plans}) to prove anything"
    );
    assert!(allowed_rows > 0);
    if set.schema.is_some() {
        assert!(
            refused_rows > 0,
            "no row was refused for its types: the test proves nothing of them"
        );
    }
}

fn databases(tag: &str) -> Vec<Box<dyn Database>> {
    let mut dbs: Vec<Box<dyn Database>> = vec![Box::new(Sqlite(
        rusqlite::Connection::open_in_memory().unwrap(),
    ))];
    match std::env::var("VERDICT_TEST_POSTGRES") {
        Ok(url) => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("VERDICT_TEST_POSTGRES={url}: {e}"));
            let schema = format!("verdict_{tag}_{}", std::process::id());
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                ))
                .unwrap();
            dbs.push(Box::new(Postgres { client, schema }));
        }
        Err(_) if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("CI must run the PostgreSQL half: set VERDICT_TEST_POSTGRES (.ci/run does)")
        }
        Err(_) => {
            eprintln!("VERDICT_TEST_POSTGRES is not set: skipping PostgreSQL, testing SQLite only")
        }
    }
    dbs
}

#[test]
fn clinic_plans_select_exactly_what_check_allows() {
    let mut dbs = databases("clinic");
    prove(
        &common::bundled_policies(),
        &clinic_kinds(),
        &mut dbs,
        40,
        120,
    );
}

#[test]
fn every_filter_operator_selects_exactly_what_check_allows() {
    let mut dbs = databases("docs");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/plan");
    prove(&policies, &doc_kinds(), &mut dbs, 80, 300);
}
