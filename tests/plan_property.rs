//! The proof that PlanFilter never disagrees with Check: random rows (with absent and null
//! attributes) in real databases, random principals and actions; for each (principal, kind,
//! action) the rows selected by the rendered SQL, and by the in-memory filter tree, must be exactly
//! the rows Check allows.
//!
//! SQLite (bundled) always runs. PostgreSQL runs against `VERDICT_TEST_POSTGRES` (a libpq-style
//! connection string; `.ci/run` starts a server and sets it); outside CI, without that variable,
//! the PostgreSQL half is skipped and says so. Seeds are fixed; set `VERDICT_TEST_SEED` to vary.
mod common;

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

/// A kind's table: attribute name, type, and the values it draws from.
struct Kind {
    name: &'static str,
    attributes: Vec<(&'static str, Type, Vec<Json>)>,
}

fn strings(values: &[&str]) -> Vec<Json> {
    values.iter().map(|v| json!(v)).collect()
}

fn clinic_kinds() -> Vec<Kind> {
    let practice = strings(&["7", "9"]);
    let patient = strings(&["123", "124", "456"]);
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
        },
        Kind {
            name: "Note",
            attributes: vec![
                ("practice_id", Type::Text, practice.clone()),
                ("patient_id", Type::Text, patient.clone()),
                ("author_id", Type::Text, strings(&["dr-wilson", "dr-house"])),
                ("signed", Type::Bool, vec![json!(true), json!(false)]),
            ],
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
        },
        Kind {
            name: "MedicationRequest",
            attributes: vec![
                ("practice_id", Type::Text, practice.clone()),
                ("patient_id", Type::Text, patient.clone()),
                ("patient_state", Type::Text, strings(&["CA", "NY", "TX"])),
            ],
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
    }]
}

/// A row: id and attributes, some absent (missing key) and some null.
fn random_rows(rng: &mut fastrand::Rng, kind: &Kind, count: usize) -> Vec<(String, Json)> {
    (0..count)
        .map(|i| {
            let mut attr = Map::new();
            for (name, _, values) in &kind.attributes {
                match rng.u8(0..20) {
                    0..=2 => {}
                    3 => {
                        attr.insert(name.to_string(), Json::Null);
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
    Principal {
        id: ["dr-wilson", "dr-house", "u1", "u2"][rng.usize(0..4)].to_string(),
        roles: pick(rng, &roles.map(String::from), 2),
        capabilities: pick(rng, &capabilities.map(String::from), 1),
        scopes: pick(rng, &scopes.map(String::from), 2),
        client_id: String::new(),
        attr: Json::Object(attr),
    }
}

const ACTIONS: [&str; 6] = ["read", "search", "create", "update", "delete", "sign"];

/// A database under test.
trait Database {
    fn dialect(&self) -> Dialect;
    fn create(&mut self, kind: &Kind, rows: &[(String, Json)]);
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
    let mut tables = Vec::new();
    for kind in kinds {
        let rows = random_rows(&mut rng, kind, rows_per_kind);
        for db in databases.iter_mut() {
            db.create(kind, &rows);
        }
        tables.push(rows);
    }
    let principals: Vec<Principal> = (0..principals)
        .map(|_| random_principal(&mut rng))
        .collect();
    let mut plans = 0;
    let mut conditional = 0;
    let mut allowed_rows = 0usize;
    for principal in &principals {
        for (kind, rows) in kinds.iter().zip(&tables) {
            let columns: HashMap<String, String> = kind
                .attributes
                .iter()
                .map(|(n, _, _)| (n.to_string(), n.to_string()))
                .collect();
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
                let allowed: BTreeSet<String> = engine::check(&set, &check)
                    .into_iter()
                    .filter(|r| r.actions[0].1.is_allow())
                    .map(|r| r.id)
                    .collect();
                allowed_rows += allowed.len();
                let filter = planned.filter();
                let by_tree: BTreeSet<String> = rows
                    .iter()
                    .filter(|(_, a)| filter.matches(a))
                    .map(|(id, _)| id.clone())
                    .collect();
                let context = || {
                    format!(
                        "principal {principal:?}, {} {action}, plan {planned:?}",
                        kind.name
                    )
                };
                assert_eq!(by_tree, allowed, "tree != Check for {}", context());
                if matches!(planned, Plan::Conditional(_)) {
                    conditional += 1;
                }
                for db in databases.iter_mut() {
                    let rendered = sql::render(&filter, db.dialect(), &columns).unwrap();
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
        "{}: {plans} plans ({conditional} conditional) over {} rows per kind, {allowed_rows} allowed (principal, row) pairs, on {} database(s), seed {}",
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
        60,
        120,
    );
}

#[test]
fn every_filter_operator_selects_exactly_what_check_allows() {
    let mut dbs = databases("docs");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/plan");
    prove(&policies, &doc_kinds(), &mut dbs, 80, 300);
}
