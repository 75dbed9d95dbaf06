//! Invariants of the decision procedure, over generated policy sets and requests: what an author
//! adds or a caller holds can only move decisions in one direction.
//!
//! - Adding a deny rule never turns a deny into an allow.
//! - Adding an allow rule never turns an allow into a deny.
//! - Removing a scope from a principal never widens access (an allow without the scope is an
//!   allow with it).
//!
//! Sets mix agent policies, resource policies, capabilities, derived roles and scope gates, with
//! conditions that hold, fail, or cannot be evaluated (absent attributes, non-boolean results, type
//! errors); requests draw principals, attributes (absent, null, every JSON type) and actions from
//! small pools so that rules often apply. (PlanFilter never being wider than Check is
//! `tests/plan_property.rs`.) Seeds are fixed; set `VERDICT_TEST_SEED` to vary them.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};
use verdict::compile::PolicySet;
use verdict::engine;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};

const KINDS: [&str; 3] = ["Doc", "Note", "Invoice"];
const ACTIONS: [&str; 4] = ["read", "write", "delete", "sign"];
const ROLES: [&str; 4] = ["clerk", "auditor", "admin", "guest"];
const SCOPES: [&str; 8] = [
    "user/*.cruds",
    "user/Doc.rs",
    "user/Note.cud",
    "patient/Doc.rs",
    "patient/*.*",
    "system/*.read",
    "user/Invoice.r?category=x",
    "openid",
];

/// Conditions that hold, fail, error on absent attributes, are not boolean, or mix types.
const CONDITIONS: [&str; 14] = [
    "R.attr.owner == P.id",
    "R.attr.level > 2",
    "has(R.attr.tag) && R.attr.tag == \"x\"",
    "P.attr.dept == R.attr.dept",
    "\"x\" in R.attr.tags",
    "R.attr.level",
    "C.emergency == true",
    "A == \"read\"",
    "R.attr.missing == 1",
    "!(R.attr.level < 1) || P.attr.senior == true",
    "R.attr.tags.exists(t, t == P.attr.dept)",
    "size(R.attr.tags) > 1",
    "R.attr.dept != \"\" && R.attr.dept == P.attr.dept",
    "R.kind == \"Doc\" ? R.attr.level >= 1 : true",
];

fn seed() -> u64 {
    std::env::var("VERDICT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str], max: usize) -> Vec<&'a str> {
    let n = rng.usize(1..=max.min(items.len()));
    let mut chosen: Vec<&str> = Vec::new();
    while chosen.len() < n {
        let item = items[rng.usize(..items.len())];
        if !chosen.contains(&item) {
            chosen.push(item);
        }
    }
    chosen
}

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn when(rng: &mut fastrand::Rng) -> String {
    if rng.u8(..3) == 0 {
        String::new()
    } else {
        // A JSON string is a YAML double-quoted scalar.
        format!(
            ", when: {}",
            Json::from(CONDITIONS[rng.usize(..CONDITIONS.len())])
        )
    }
}

/// One rule of an agent policy, in YAML flow style.
fn agent_rule(rng: &mut fastrand::Rng, name: &str, effect: &str) -> String {
    let kinds = if rng.u8(..5) == 0 {
        list(&["*"])
    } else {
        list(&pick(rng, &KINDS, 2))
    };
    let actions = if rng.u8(..5) == 0 {
        list(&["*"])
    } else {
        list(&pick(rng, &ACTIONS, 3))
    };
    let narrowed = if rng.u8(..4) == 0 {
        ", principals: {derived_roles: [owner]}".to_string()
    } else {
        String::new()
    };
    format!(
        "{{name: {name}, effect: {effect}, kinds: {kinds}, actions: {actions}{}{narrowed}}}",
        when(rng)
    )
}

/// An agent policy with `rules` rules of random effects, or all of `effect` when given.
fn agent_policy(rng: &mut fastrand::Rng, name: &str, rules: usize, effect: Option<&str>) -> String {
    let roles = if rng.u8(..6) == 0 {
        list(&["*"])
    } else {
        list(&pick(rng, &ROLES, 2))
    };
    let rules: Vec<String> = (0..rules)
        .map(|i| {
            let effect = effect.unwrap_or(if rng.bool() { "allow" } else { "deny" });
            format!("    - {}\n", agent_rule(rng, &format!("r{i}"), effect))
        })
        .collect();
    format!(
        "agent_policy:\n  name: {name}\n  principals: {{roles: {roles}}}\n  rules:\n{}",
        rules.concat()
    )
}

fn resource_policy(rng: &mut fastrand::Rng, name: &str, effect: Option<&str>) -> String {
    let kind = KINDS[rng.usize(..KINDS.len())];
    let effect = effect.unwrap_or(if rng.bool() { "allow" } else { "deny" });
    let narrowed = if rng.bool() {
        format!(", principals: {{roles: {}}}", list(&pick(rng, &ROLES, 2)))
    } else {
        String::new()
    };
    let selector = if rng.u8(..3) == 0 {
        ", when: \"R.attr.level >= 2\""
    } else {
        ""
    };
    format!(
        "resource_policy:\n  name: {name}\n  resource: {{kind: {kind}{selector}}}\n  rules:\n    - {{name: r, effect: {effect}, actions: {}{}{narrowed}}}\n",
        list(&pick(rng, &ACTIONS, 3)),
        when(rng),
    )
}

/// Documents every set has: the derived role rules refer to, capabilities, maybe a scope gate.
fn common(rng: &mut fastrand::Rng) -> Vec<String> {
    let mut documents = vec![
        "conditions:\n  name: shared\n  derived_roles:\n    - {name: owner, parent_roles: [clerk, admin], when: \"R.attr.owner == P.id\"}\n".to_string(),
        format!(
            "capabilities:\n  name: caps\n  capabilities:\n    - {{name: view, grants: [\"Doc:read\", \"Note:read\"]{}}}\n    - {{name: edit, grants: [\"*:write\"]}}\n",
            when(rng)
        ),
    ];
    if rng.bool() {
        documents.push(format!(
            "scope_gate:\n  name: smart\n  kinds: {}\n  actions: {{read: r, write: u, delete: d}}\n",
            list(&pick(rng, &KINDS, 2))
        ));
    }
    documents
}

fn random_set(rng: &mut fastrand::Rng) -> Vec<String> {
    let mut documents = common(rng);
    for i in 0..rng.usize(1..=3) {
        let rules = rng.usize(1..=4);
        documents.push(agent_policy(rng, &format!("agents-{i}"), rules, None));
    }
    for i in 0..rng.usize(0..=2) {
        documents.push(resource_policy(rng, &format!("resources-{i}"), None));
    }
    documents
}

fn compile(documents: &[String]) -> PolicySet {
    let files = [(PathBuf::from("set.yaml"), documents.join("---\n"))];
    let source = verdict::policy::parse_files(Path::new("generated"), &files)
        .unwrap_or_else(|e| panic!("{e}\n{}", files[0].1));
    PolicySet::compile(&source).unwrap_or_else(|e| panic!("{e}\n{}", files[0].1))
}

/// A value for an attribute: absent (None), null, or one of several types.
fn value(rng: &mut fastrand::Rng, pool: &[Json]) -> Option<Json> {
    match rng.u8(..8) {
        0 => None,
        1 => Some(Json::Null),
        _ => Some(pool[rng.usize(..pool.len())].clone()),
    }
}

fn attributes(rng: &mut fastrand::Rng, names: &[(&str, Vec<Json>)]) -> Json {
    let mut attr = Map::new();
    for (name, pool) in names {
        if let Some(v) = value(rng, pool) {
            attr.insert(name.to_string(), v);
        }
    }
    Json::Object(attr)
}

fn random_principal(rng: &mut fastrand::Rng) -> Principal {
    let ids = ["u-1", "u-2"];
    Principal {
        id: ids[rng.usize(..ids.len())].into(),
        roles: pick(rng, &ROLES, 2).into_iter().map(String::from).collect(),
        capabilities: if rng.bool() {
            pick(rng, &["view", "edit", "unknown"], 2)
                .into_iter()
                .map(String::from)
                .collect()
        } else {
            Vec::new()
        },
        scopes: pick(rng, &SCOPES, 4)
            .into_iter()
            .map(String::from)
            .collect(),
        client_id: "app".into(),
        attr: attributes(
            rng,
            &[
                ("dept", vec![json!("x"), json!("y"), json!("")]),
                ("senior", vec![json!(true), json!(false), json!("yes")]),
                ("patient", vec![json!("p-1"), json!("")]),
            ],
        ),
    }
}

fn random_request(rng: &mut fastrand::Rng) -> CheckRequest {
    let resources = (0..3)
        .map(|i| ResourceCheck {
            resource: Resource {
                kind: KINDS[rng.usize(..KINDS.len())].into(),
                id: format!("r-{i}"),
                attr: attributes(
                    rng,
                    &[
                        ("owner", vec![json!("u-1"), json!("u-2"), json!(1)]),
                        ("level", vec![json!(0), json!(2), json!(3.5), json!("3")]),
                        ("tag", vec![json!("x"), json!("y")]),
                        ("dept", vec![json!("x"), json!("y"), json!("")]),
                        ("tags", vec![json!(["x", "y"]), json!([]), json!("x")]),
                        ("patient_id", vec![json!("p-1"), json!("p-2"), json!("")]),
                        ("category", vec![json!("x"), json!("y")]),
                    ],
                ),
            },
            actions: ACTIONS.iter().map(|a| a.to_string()).collect(),
        })
        .collect();
    let context = if rng.bool() {
        json!({"emergency": rng.bool()})
    } else {
        json!({})
    };
    CheckRequest {
        request_id: "property".into(),
        principal: random_principal(rng),
        resources,
        context,
    }
}

/// Every (resource, action) of the request: allowed or not.
fn allowed(set: &PolicySet, request: &CheckRequest) -> Vec<(String, String, bool)> {
    engine::check(set, request)
        .into_iter()
        .flat_map(|r| {
            let id = r.id.clone();
            r.actions
                .into_iter()
                .map(move |(action, d)| (id.clone(), action, d.is_allow()))
        })
        .collect()
}

const SETS: usize = 150;
const REQUESTS: usize = 40;

/// Runs `property` on `SETS` generated sets, counting the decisions it compared.
fn for_sets(name: &str, mut property: impl FnMut(&mut fastrand::Rng, Vec<String>) -> usize) {
    let mut rng = fastrand::Rng::with_seed(seed());
    let compared: usize = (0..SETS)
        .map(|_| {
            let set = random_set(&mut rng);
            property(&mut rng, set)
        })
        .sum();
    eprintln!("{name}: {compared} decisions compared (seed {})", seed());
    // The generator must produce both outcomes often enough for the property to mean something.
    assert!(compared > SETS * REQUESTS, "{name}: too few comparisons");
}

#[test]
fn adding_a_deny_rule_never_turns_a_deny_into_an_allow() {
    let mut flipped_to_deny = 0;
    for_sets("deny", |rng, documents| {
        let before = compile(&documents);
        let mut more = documents.clone();
        more.push(if rng.bool() {
            agent_policy(rng, "added", 1, Some("deny"))
        } else {
            resource_policy(rng, "added", Some("deny"))
        });
        let after = compile(&more);
        let mut compared = 0;
        for _ in 0..REQUESTS {
            let request = random_request(rng);
            for (b, a) in allowed(&before, &request)
                .iter()
                .zip(allowed(&after, &request))
            {
                assert_eq!((&b.0, &b.1), (&a.0, &a.1));
                assert!(
                    b.2 || !a.2,
                    "a deny rule turned {}:{} from deny into allow\nrequest {request:?}\nadded:\n{}",
                    b.0,
                    b.1,
                    more.last().unwrap()
                );
                flipped_to_deny += usize::from(b.2 && !a.2);
                compared += 1;
            }
        }
        compared
    });
    eprintln!("the added deny denied {flipped_to_deny} decisions");
    assert!(
        flipped_to_deny > 0,
        "no added deny ever denied: the test proves nothing"
    );
}

#[test]
fn adding_an_allow_rule_never_turns_an_allow_into_a_deny() {
    let mut flipped_to_allow = 0;
    for_sets("allow", |rng, documents| {
        let before = compile(&documents);
        let mut more = documents.clone();
        more.push(if rng.bool() {
            agent_policy(rng, "added", 1, Some("allow"))
        } else {
            resource_policy(rng, "added", Some("allow"))
        });
        let after = compile(&more);
        let mut compared = 0;
        for _ in 0..REQUESTS {
            let request = random_request(rng);
            for (b, a) in allowed(&before, &request)
                .iter()
                .zip(allowed(&after, &request))
            {
                assert!(
                    !b.2 || a.2,
                    "an allow rule turned {}:{} from allow into deny\nrequest {request:?}\nadded:\n{}",
                    b.0,
                    b.1,
                    more.last().unwrap()
                );
                flipped_to_allow += usize::from(!b.2 && a.2);
                compared += 1;
            }
        }
        compared
    });
    eprintln!("the added allow allowed {flipped_to_allow} decisions");
    assert!(
        flipped_to_allow > 0,
        "no added allow ever allowed: the test proves nothing"
    );
}

#[test]
fn removing_a_scope_never_widens_access() {
    let mut narrowed = 0;
    for_sets("scope", |rng, documents| {
        let set = compile(&documents);
        let mut compared = 0;
        for _ in 0..REQUESTS {
            let request = random_request(rng);
            let with_all = allowed(&set, &request);
            for i in 0..request.principal.scopes.len() {
                let mut fewer = request.clone();
                fewer.principal.scopes.remove(i);
                for (all, less) in with_all.iter().zip(allowed(&set, &fewer)) {
                    assert!(
                        all.2 || !less.2,
                        "without scope {:?}, {}:{} is allowed; with it, denied\nrequest {request:?}",
                        request.principal.scopes[i],
                        all.0,
                        all.1
                    );
                    narrowed += usize::from(all.2 && !less.2);
                    compared += 1;
                }
            }
        }
        compared
    });
    eprintln!("the removed scope denied {narrowed} decisions");
    assert!(
        narrowed > 0,
        "no scope ever mattered: the test proves nothing"
    );
}
