//! The AuthZEN Authorization API 1.0 through the real daemon (`verdict serve --http-listen`):
//! every test of the certification scenario by id (Basic, Batch, Search, Discovery) on
//! `examples/authzen/certification`, and every expected decision and search result of the three
//! interop scenarios (Todo, API gateway, Search) on their example sets, from the interop files
//! vendored under tests/authzen/ (byte for byte the working group's; a test holds them to
//! `../shared/authzen/interop` where that folder exists).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::Daemon;
use serde_json::{json, Value as Json};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/authzen")
        .join(name)
}

fn vendored(file: &str) -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/authzen")
        .join(file);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn serve(name: &str) -> Daemon {
    Daemon::start(&example(name), &["--http-listen", "127.0.0.1:0"])
}

fn base(daemon: &Daemon) -> String {
    format!(
        "http://{}",
        daemon.http_addr.as_ref().expect("an HTTP listener")
    )
}

/// An answer: status, headers we look at, the body's text and JSON (null when not JSON).
struct Answer {
    status: u16,
    content_type: String,
    request_id: Option<String>,
    text: String,
    json: Json,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn send(
    base: &str,
    path: &str,
    content_type: Option<&str>,
    request_id: Option<&str>,
    body: &str,
) -> Answer {
    let mut request = agent().post(&format!("{base}{path}"));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let response = request.send(body.as_bytes()).expect("an answer");
    answer(response)
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let request_id = header("x-request-id");
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Json::Null);
    Answer {
        status,
        content_type,
        request_id,
        text,
        json,
    }
}

fn post(base: &str, path: &str, body: &Json) -> Answer {
    send(
        base,
        path,
        Some("application/json"),
        None,
        &body.to_string(),
    )
}

/// `POST /access/v1/evaluation`: 200, JSON, and the decision.
fn decide(base: &str, body: &Json) -> bool {
    let answer = post(base, "/access/v1/evaluation", body);
    assert_eq!(answer.status, 200, "{body}: {}", answer.text);
    assert_eq!(answer.content_type, "application/json");
    if let Some(context) = answer.json.get("context") {
        assert!(context.is_object(), "c-2-3-2: {}", answer.text);
    }
    answer.json["decision"]
        .as_bool()
        .unwrap_or_else(|| panic!("c-2-3-1: a boolean decision: {}", answer.text))
}

fn entity(kind: &str, id: &str) -> Json {
    json!({"type": kind, "id": id})
}

fn alice() -> Json {
    entity("user", "alice")
}

fn record(id: &str) -> Json {
    entity("record", id)
}

fn action(name: &str) -> Json {
    json!({"name": name})
}

/// Results of a search as a set of their ids (or names), checking each has the searched type.
fn results(answer: &Answer, kind: Option<&str>) -> BTreeSet<String> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.content_type, "application/json");
    let items = answer.json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("a results array: {}", answer.text));
    items
        .iter()
        .map(|item| match kind {
            Some(kind) => {
                assert_eq!(item["type"], kind, "{}", answer.text);
                item["id"].as_str().expect("an id").to_string()
            }
            None => item["name"].as_str().expect("a name").to_string(),
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn basic_level_every_test_of_the_certification_scenario() {
    let daemon = serve("certification");
    let base = base(&daemon);
    let request = |s: Json, a: Json, r: Json| json!({"subject": s, "action": a, "resource": r});
    // c-2-2-1 .. c-2-2-3: rules 1 and 4, and context changes nothing.
    assert!(decide(
        &base,
        &request(alice(), action("read"), record("record-1"))
    ));
    assert!(!decide(
        &base,
        &request(entity("user", "bob"), action("write"), record("record-1"))
    ));
    let mut with_context = request(alice(), action("read"), record("record-1"));
    with_context["context"] = json!({"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"});
    assert!(decide(&base, &with_context));
    // The rest of the fixture's Core decisions (rules 2 and 3).
    assert!(decide(
        &base,
        &request(alice(), action("write"), record("record-1"))
    ));
    assert!(decide(
        &base,
        &request(entity("user", "bob"), action("read"), record("record-1"))
    ));
    // c-2-2-4 .. c-2-2-7: properties of the resource, the subject and the action.
    let archived =
        json!({"type": "record", "id": "record-2", "properties": {"status": "archived"}});
    assert!(!decide(
        &base,
        &request(alice(), action("write"), archived.clone())
    ));
    let admin = json!({"type": "user", "id": "bob", "properties": {"role": "admin"}});
    assert!(decide(&base, &request(admin, action("write"), archived)));
    let delete = |soft: bool| json!({"name": "delete", "properties": {"soft": soft}});
    assert!(decide(
        &base,
        &request(alice(), delete(true), record("record-1"))
    ));
    assert!(!decide(
        &base,
        &request(alice(), delete(false), record("record-1"))
    ));
    // c-2-2-8: extra properties everywhere; c-2-2-9: unknown fields ignored.
    let extra = json!({
        "subject": {"type": "user", "id": "alice", "properties": {"department": "Sales", "role": "manager"}},
        "action": {"name": "read", "properties": {"method": "GET"}},
        "resource": {"type": "record", "id": "record-1", "properties": {"status": "active", "owner": "bob"}}
    });
    assert!(decide(&base, &extra));
    let mut unknown = request(alice(), action("read"), record("record-1"));
    unknown["foo"] = json!("bar");
    unknown["futureField"] = json!({"nested": true});
    assert!(decide(&base, &unknown));
    // c-2-4-1, c-2-4-2, c-2-4-6: missing or mistyped required members are 400, with a JSON
    // error naming the member.
    let malformed = [
        (
            json!({"action": action("read"), "resource": record("record-1")}),
            "subject is required",
        ),
        (
            json!({"subject": alice(), "resource": record("record-1")}),
            "action is required",
        ),
        (
            json!({"subject": alice(), "action": action("read")}),
            "resource is required",
        ),
        (
            json!({"subject": {"id": "alice"}, "action": action("read"), "resource": record("record-1")}),
            "subject.type",
        ),
        (
            json!({"subject": {"type": "user"}, "action": action("read"), "resource": record("record-1")}),
            "subject.id",
        ),
        (
            json!({"subject": alice(), "action": {}, "resource": record("record-1")}),
            "action.name",
        ),
        (
            json!({"subject": alice(), "action": action("read"), "resource": {"id": "record-1"}}),
            "resource.type",
        ),
        (
            json!({"subject": alice(), "action": action("read"), "resource": {"type": "record"}}),
            "resource.id",
        ),
        (
            json!({"subject": "alice", "action": action("read"), "resource": record("record-1")}),
            "subject must be an object",
        ),
        (
            json!({"subject": alice(), "action": {"name": 123}, "resource": record("record-1")}),
            "action.name must be a string",
        ),
    ];
    for (body, message) in malformed {
        let answer = post(&base, "/access/v1/evaluation", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert_eq!(answer.json["code"], "INVALID_ARGUMENT");
        let said = answer.json["message"].as_str().unwrap();
        assert!(said.contains(message), "{body}: {said}");
    }
    let valid = request(alice(), action("read"), record("record-1")).to_string();
    // c-2-4-3: a body that is not application/json (text/plain, or none said) is 400.
    for content_type in [Some("text/plain"), None] {
        let answer = send(&base, "/access/v1/evaluation", content_type, None, &valid);
        assert_eq!(answer.status, 400, "{content_type:?}: {}", answer.text);
    }
    // A charset parameter is still JSON.
    let answer = send(
        &base,
        "/access/v1/evaluation",
        Some("application/json; charset=utf-8"),
        None,
        &valid,
    );
    assert_eq!(
        (answer.status, &answer.json["decision"]),
        (200, &json!(true))
    );
    // c-2-4-4, c-2-4-5: malformed JSON and an empty body.
    for body in ["{\"subject\":", "", "[]"] {
        let answer = send(
            &base,
            "/access/v1/evaluation",
            Some("application/json"),
            None,
            body,
        );
        assert_eq!(answer.status, 400, "{body:?}: {}", answer.text);
        assert_eq!(answer.json["code"], "INVALID_ARGUMENT", "{body:?}");
    }
    // c-2-5-1: X-Request-ID echoed, on errors too; c-2-5-2: none sent, one given.
    let answer = send(
        &base,
        "/access/v1/evaluation",
        Some("application/json"),
        Some("req-7"),
        &valid,
    );
    assert_eq!(answer.request_id.as_deref(), Some("req-7"));
    let answer = send(
        &base,
        "/access/v1/evaluation",
        Some("text/plain"),
        Some("req-8"),
        &valid,
    );
    assert_eq!(
        (answer.status, answer.request_id.as_deref()),
        (400, Some("req-8"))
    );
    let answer = send(
        &base,
        "/access/v1/evaluation",
        Some("application/json"),
        None,
        &valid,
    );
    assert!(answer
        .request_id
        .is_some_and(|id| id.starts_with("verdict-")));
    // c-2-6: the same request, the same decision.
    for _ in 0..5 {
        assert!(!decide(
            &base,
            &request(entity("user", "bob"), action("write"), record("record-1"))
        ));
    }
    // The decision's context says which rule decided (the policy set's own words).
    let answer = post(
        &base,
        "/access/v1/evaluation",
        &request(alice(), action("read"), record("record-1")),
    );
    assert_eq!(answer.json["context"]["policy"], "records");
    assert_eq!(answer.json["context"]["rule"], "members-read");
    // A subject the set stores under another type is another subject: not alice.
    assert!(!decide(
        &base,
        &request(
            entity("spaceship", "alice"),
            action("read"),
            record("record-1")
        )
    ));
    // Metrics and the same method name for every AuthZEN call.
    assert!(
        daemon.metric("verdict_requests_total{method=\"authzen/evaluation\",status=\"OK\"}")
            >= 15.0
    );
}

#[test]
fn batch_level_every_test_of_the_certification_scenario() {
    let daemon = serve("certification");
    let base = base(&daemon);
    let batch = |body: Json| -> Vec<Json> {
        let answer = post(&base, "/access/v1/evaluations", &body);
        assert_eq!(answer.status, 200, "{body}: {}", answer.text);
        assert_eq!(answer.content_type, "application/json");
        // c-3-3-4: no top-level decision.
        assert!(answer.json.get("decision").is_none(), "{}", answer.text);
        answer.json["evaluations"].as_array().unwrap().clone()
    };
    let decisions = |items: &[Json]| -> Vec<bool> {
        items
            .iter()
            .map(|i| i["decision"].as_bool().expect("c-3-3-3"))
            .collect()
    };
    // c-3-2-1 (and c-3-3-1/2: one answer per item, in order).
    let items = batch(json!({"subject": alice(), "action": action("read"),
        "evaluations": [{"resource": record("record-1")}, {"resource": record("record-2")}]}));
    assert_eq!(decisions(&items), [true, true]);
    // c-3-2-2: defaults of subject and resource, actions per item.
    let items = batch(
        json!({"subject": entity("user", "bob"), "resource": record("record-1"),
        "evaluations": [{"action": action("read")}, {"action": action("write")}]}),
    );
    assert_eq!(decisions(&items), [true, false]);
    // c-3-2-3: properties per item.
    let items = batch(
        json!({"subject": alice(), "action": action("write"), "evaluations": [
        {"resource": {"type": "record", "id": "record-1", "properties": {"status": "active"}}},
        {"resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}}}]}),
    );
    assert_eq!(decisions(&items), [true, false]);
    // c-3-2-4: subjects per item.
    let items = batch(json!({"action": action("write"),
        "resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}},
        "evaluations": [{"subject": alice()},
                        {"subject": {"type": "user", "id": "bob", "properties": {"role": "admin"}}}]}));
    assert_eq!(decisions(&items), [false, true]);
    // c-3-2-5: no defaults at all.
    let items = batch(json!({"evaluations": [
        {"subject": alice(), "action": action("read"), "resource": record("record-1")},
        {"subject": entity("user", "bob"), "action": action("write"), "resource": record("record-1")}]}));
    assert_eq!(decisions(&items), [true, false]);
    // c-3-2-6: an item's context replaces the default.
    let items = batch(json!({"subject": alice(), "action": action("read"),
        "context": {"time": "2025-06-27T18:03-07:00"},
        "evaluations": [{"resource": record("record-1")},
                        {"resource": record("record-2"), "context": {"time": "2025-06-27T19:00-07:00", "source": "batch-override"}}]}));
    assert_eq!(items.len(), 2);
    // c-3-2-7: an item's entity replaces the default whole, no merging of properties.
    let items = batch(json!({"subject": alice(), "action": action("write"),
        "resource": {"type": "record", "id": "record-1", "properties": {"status": "active"}},
        "evaluations": [{}, {"resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}}}]}));
    assert_eq!(decisions(&items), [true, false]);
    // c-3-4-1: an incomplete item is a deny in its slot, with why; the others are decided.
    let items = batch(json!({"subject": alice(), "action": action("read"),
        "options": {"evaluations_semantic": "execute_all"},
        "evaluations": [{"resource": record("record-1")}, {}]}));
    assert_eq!(decisions(&items), [true, false]);
    assert_eq!(items[1]["context"]["error"]["status"], 400);
    assert!(items[1]["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evaluations[1]: resource is required"));
    // Interop runners compare successful items exactly: only the decision.
    assert_eq!(items[0], json!({"decision": true}));
    // c-3-4-2, c-3-4-3: no items, or none, is one evaluation, answered as one.
    for evaluations in [None, Some(json!([]))] {
        let mut body =
            json!({"subject": alice(), "action": action("read"), "resource": record("record-1")});
        if let Some(e) = evaluations {
            body["evaluations"] = e;
        }
        let answer = post(&base, "/access/v1/evaluations", &body);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json["decision"], true, "{}", answer.text);
        assert!(answer.json.get("evaluations").is_none());
    }
    // The short-circuit semantics: the answer stops at (and includes) the first deny or permit.
    let three = |semantic: &str| {
        json!({"subject": entity("user", "bob"), "resource": record("record-1"),
        "options": {"evaluations_semantic": semantic},
        "evaluations": [{"action": action("read")}, {"action": action("write")}, {"action": action("read")}]})
    };
    assert_eq!(
        decisions(&batch(three("deny_on_first_deny"))),
        [true, false]
    );
    assert_eq!(decisions(&batch(three("permit_on_first_permit"))), [true]);
    assert_eq!(decisions(&batch(three("execute_all"))), [true, false, true]);
    // Whole-request problems are 400.
    for (body, message) in [
        (json!({"evaluations": {}}), "evaluations must be an array"),
        (
            json!({"evaluations": [1]}),
            "evaluations[0] must be an object",
        ),
        (three("all_at_once"), "is not one of execute_all"),
        (
            json!({"subject": "alice", "evaluations": [{}]}),
            "subject must be an object",
        ),
    ] {
        let answer = post(&base, "/access/v1/evaluations", &body);
        assert_eq!(answer.status, 400, "{body}");
        assert!(
            answer.json["message"].as_str().unwrap().contains(message),
            "{}",
            answer.text
        );
    }
    // A batch carries at most limits.max_resources items.
    let many: Vec<Json> = (0..1_001).map(|_| json!({})).collect();
    let answer = post(
        &base,
        "/access/v1/evaluations",
        &json!({"subject": alice(), "action": action("read"), "resource": record("record-1"), "evaluations": many}),
    );
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.json["code"], "OUT_OF_RANGE");
    assert!(answer.json["message"]
        .as_str()
        .unwrap()
        .contains("limits.max_resources"));
    // One batch is one call, whatever its size.
    assert!(
        daemon.metric("verdict_requests_total{method=\"authzen/evaluations\",status=\"OK\"}")
            >= 11.0
    );
}

#[test]
fn search_and_discovery_levels_every_test_of_the_certification_scenario() {
    let daemon = serve("certification");
    let base = base(&daemon);
    let subject_search = json!({"subject": {"type": "user"}, "action": action("read"), "resource": record("record-1")});
    // c-4-2-1 .. c-4-2-3: alice and bob read record-1; context and a subject id change nothing.
    let found = results(
        &post(&base, "/access/v1/search/subject", &subject_search),
        Some("user"),
    );
    assert_eq!(found, set(&["alice", "bob"]));
    let mut with_context = subject_search.clone();
    with_context["context"] = json!({"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"});
    assert_eq!(
        results(
            &post(&base, "/access/v1/search/subject", &with_context),
            Some("user")
        ),
        found
    );
    let mut with_id = subject_search.clone();
    with_id["subject"]["id"] = json!("alice");
    assert_eq!(
        results(
            &post(&base, "/access/v1/search/subject", &with_id),
            Some("user")
        ),
        found
    );
    // c-4-2-4 (S4): who writes the archived record-2: bob, an admin by the stored data.
    let s4 = json!({"subject": {"type": "user"}, "action": action("write"),
                    "resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}}});
    assert_eq!(
        results(&post(&base, "/access/v1/search/subject", &s4), Some("user")),
        set(&["bob"])
    );
    // c-4-3-1 .. c-4-3-3: what alice reads; context and a resource id change nothing.
    let resource_search =
        json!({"subject": alice(), "action": action("read"), "resource": {"type": "record"}});
    let found = results(
        &post(&base, "/access/v1/search/resource", &resource_search),
        Some("record"),
    );
    assert_eq!(found, set(&["record-1", "record-2"]));
    let mut with_id = resource_search.clone();
    with_id["resource"]["id"] = json!("record-1");
    assert_eq!(
        results(
            &post(&base, "/access/v1/search/resource", &with_id),
            Some("record")
        ),
        found
    );
    // c-4-3-4 (S5): what an admin writes: the archived record-2 only.
    let s5 = json!({"subject": {"type": "user", "id": "bob", "properties": {"role": "admin"}},
                    "action": action("write"), "resource": {"type": "record"}});
    assert_eq!(
        results(
            &post(&base, "/access/v1/search/resource", &s5),
            Some("record")
        ),
        set(&["record-2"])
    );
    // c-4-4-1 .. c-4-4-3: actions (no action sent).
    let action_search = json!({"subject": alice(), "resource": record("record-1")});
    let found = results(
        &post(&base, "/access/v1/search/action", &action_search),
        None,
    );
    assert_eq!(found, set(&["read", "write"]));
    let s6 = json!({"subject": {"type": "user", "id": "bob", "properties": {"role": "admin"}},
                    "resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}}});
    assert!(results(&post(&base, "/access/v1/search/action", &s6), None).contains("write"));
    // Results are exactly {"type", "id"} or {"name"}, in that order.
    let answer = post(&base, "/access/v1/search/subject", &subject_search);
    assert!(
        answer.text.contains(r#"{"type":"user","id":"alice"}"#),
        "{}",
        answer.text
    );
    let answer = post(&base, "/access/v1/search/action", &action_search);
    assert!(
        answer.text.contains(r#"{"name":"read"}"#),
        "{}",
        answer.text
    );
    // c-4-5: pages of one, followed to the end by their tokens (sent without the limit).
    let mut paged = subject_search.clone();
    paged["page"] = json!({"limit": 1});
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    loop {
        let answer = post(&base, "/access/v1/search/subject", &paged);
        let page = answer.json["page"].clone();
        assert!(page.is_object(), "c-4-5-2: a page: {}", answer.text);
        assert_eq!(page["total"], 2);
        let found = results(&answer, Some("user"));
        assert_eq!(found.len(), 1);
        seen.extend(found);
        pages += 1;
        let next = page["next_token"].as_str().expect("a string next_token");
        if next.is_empty() {
            break;
        }
        assert!(pages < 5, "the pages never end");
        paged["page"] = json!({"token": next});
    }
    assert_eq!((pages, seen), (2, set(&["alice", "bob"])));
    // A token from another search, or none this server gave, is 400.
    let first = post(
        &base,
        "/access/v1/search/subject",
        &json!({"subject": {"type": "user"},
        "action": action("read"), "resource": record("record-1"), "page": {"limit": 1}}),
    );
    let token = first.json["page"]["next_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut other = s4.clone();
    other["page"] = json!({"token": token});
    assert_eq!(post(&base, "/access/v1/search/subject", &other).status, 400);
    let mut forged = subject_search.clone();
    forged["page"] = json!({"token": "not-a-token"});
    assert_eq!(
        post(&base, "/access/v1/search/subject", &forged).status,
        400
    );
    // c-4-6: unknown subjects and types find nothing (200, not 400), on every endpoint.
    let nobody = json!({"subject": {"type": "user", "id": "nonexistent-user"}, "resource": record("record-1")});
    assert_eq!(
        results(&post(&base, "/access/v1/search/action", &nobody), None),
        set(&[])
    );
    let spaceships = json!({"subject": {"type": "spaceship"}, "action": action("read"), "resource": record("record-1")});
    assert_eq!(
        results(
            &post(&base, "/access/v1/search/subject", &spaceships),
            Some("spaceship")
        ),
        set(&[])
    );
    let cargo =
        json!({"subject": alice(), "action": action("read"), "resource": {"type": "cargo"}});
    assert_eq!(
        results(
            &post(&base, "/access/v1/search/resource", &cargo),
            Some("cargo")
        ),
        set(&[])
    );
    // c-4-7: a missing required member, or an input entity without id, is 400 per endpoint.
    let both = json!({"subject": {"type": "user"}, "action": action("read"), "resource": {"type": "record"}});
    for (path, body) in [
        (
            "subject",
            json!({"subject": {"type": "user"}, "resource": record("record-1")}),
        ),
        (
            "resource",
            json!({"action": action("read"), "resource": {"type": "record"}}),
        ),
        ("action", json!({"subject": alice()})),
        ("subject", both.clone()),
        ("resource", both),
        (
            "action",
            json!({"subject": {"type": "user"}, "resource": record("record-1")}),
        ),
    ] {
        let answer = post(&base, &format!("/access/v1/search/{path}"), &body);
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.text);
    }
    // c-6: the metadata, its URLs built on the address the client used.
    let mut response = agent()
        .get(&format!("{base}/.well-known/authzen-configuration"))
        .call()
        .unwrap();
    let metadata: Json =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(metadata["policy_decision_point"], base);
    for (key, path) in [
        ("access_evaluation_endpoint", "/access/v1/evaluation"),
        ("access_evaluations_endpoint", "/access/v1/evaluations"),
        ("search_subject_endpoint", "/access/v1/search/subject"),
        ("search_resource_endpoint", "/access/v1/search/resource"),
        ("search_action_endpoint", "/access/v1/search/action"),
    ] {
        assert_eq!(metadata[key], format!("{base}{path}"), "{key}");
    }
}

#[test]
fn the_metadata_names_the_configured_base_url() {
    let daemon = Daemon::start(
        &example("certification"),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--authzen-base-url",
            "https://pdp.example.com/",
        ],
    );
    let mut response = agent()
        .get(&format!(
            "{}/.well-known/authzen-configuration",
            base(&daemon)
        ))
        .call()
        .unwrap();
    let metadata: Json =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(metadata["policy_decision_point"], "https://pdp.example.com");
    assert_eq!(
        metadata["access_evaluation_endpoint"],
        "https://pdp.example.com/access/v1/evaluation"
    );
}

#[test]
fn todo_interop_every_expected_decision() {
    let daemon = serve("todo");
    let base = base(&daemon);
    let cases = vendored("todo-decisions.json");
    let single = cases["evaluation"].as_array().unwrap();
    assert_eq!(single.len(), 40);
    for case in single {
        let decided = decide(&base, &case["request"]);
        assert_eq!(json!(decided), case["expected"], "{}", case["request"]);
    }
    let batches = cases["evaluations"].as_array().unwrap();
    assert_eq!(batches.len(), 3);
    for case in batches {
        let answer = post(&base, "/access/v1/evaluations", &case["request"]);
        assert_eq!(answer.status, 200);
        // As the interop runner compares: the items exactly.
        assert_eq!(
            answer.json["evaluations"], case["expected"],
            "{}",
            case["request"]
        );
    }
}

#[test]
fn api_gateway_interop_every_expected_decision() {
    let daemon = serve("api-gateway");
    let base = base(&daemon);
    let cases = vendored("api-gateway-decisions.json");
    let cases = cases["evaluation"].as_array().unwrap();
    assert_eq!(cases.len(), 25);
    for case in cases {
        let decided = decide(&base, &case["request"]);
        assert_eq!(json!(decided), case["expected"], "{}", case["request"]);
    }
}

#[test]
fn search_interop_every_expected_result() {
    let daemon = serve("search");
    let base = base(&daemon);
    for (file, path, count) in [
        ("search-subject-results.json", "subject", 60),
        ("search-resource-results.json", "resource", 18),
        ("search-action-results.json", "action", 120),
    ] {
        let cases = vendored(file);
        let cases = cases["evaluation"].as_array().unwrap();
        assert_eq!(cases.len(), count, "{file}");
        for case in cases {
            let answer = post(
                &base,
                &format!("/access/v1/search/{path}"),
                &case["request"],
            );
            assert_eq!(answer.status, 200, "{}: {}", case["request"], answer.text);
            // As the interop runner compares: the results, sorted, exactly.
            let sorted = |items: &Json| {
                let mut items: Vec<String> = items
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.to_string())
                    .collect();
                items.sort();
                items
            };
            assert_eq!(
                sorted(&answer.json["results"]),
                sorted(&case["expected"]["results"]),
                "{path} search {}",
                case["request"]
            );
        }
    }
    // Resource search is planned, not decided one by one.
    let searches = |searched: &str, by: &str| {
        daemon.metric(&format!(
            "verdict_searches_total{{searched=\"{searched}\",by=\"{by}\"}}"
        ))
    };
    assert_eq!(searches("resource", "plan"), 18.0);
    assert_eq!(searches("resource", "decisions"), 0.0);
    assert_eq!(searches("subject", "decisions"), 60.0);
}

#[test]
fn the_search_example_stores_the_interop_data() {
    let text = std::fs::read_to_string(example("search").join("entities.yaml")).unwrap();
    let documents: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let users = vendored("search-users.json");
    let stored_users: Vec<Json> = documents[0]["principals"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"id": e["id"], "role": e["attr"]["role"], "department": e["attr"]["department"]}))
        .collect();
    assert_eq!(Json::Array(stored_users), users);
    let records = vendored("search-records.json");
    let stored_records: Vec<Json> = documents[1]["resources"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!({"id": e["id"].as_str().unwrap().parse::<u64>().unwrap(),
                   "title": e["attr"]["title"], "department": e["attr"]["department"],
                   "owner": e["attr"]["owner"]})
        })
        .collect();
    assert_eq!(Json::Array(stored_records), records);
}

#[test]
fn vendored_interop_files_are_the_working_groups_byte_for_byte() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/authzen/interop");
    let vendored_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/authzen");
    let mut compared = 0;
    for entry in std::fs::read_dir(&vendored_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_name().unwrap();
        if shared.is_dir() {
            let original = std::fs::read(shared.join(name))
                .unwrap_or_else(|e| panic!("{}: not in {}: {e}", name.display(), shared.display()));
            assert!(
                std::fs::read(&path).unwrap() == original,
                "{} differs",
                name.display()
            );
            compared += 1;
        }
    }
    if shared.is_dir() {
        assert_eq!(compared, 7);
    }
}

/// Every curl example of docs/authzen.md, run against the certification example it serves,
/// prints the JSON the page shows after it.
#[test]
fn the_docs_curl_examples_answer_what_they_show() {
    let daemon = serve("certification");
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/authzen.md")).unwrap();
    let curls: Vec<_> = common::commands_and_outputs(&page)
        .into_iter()
        .filter(|(block, _)| block.content.starts_with("curl "))
        .collect();
    assert_eq!(
        curls.len(),
        2,
        "docs/authzen.md's curl examples: {curls:#?}"
    );
    for (block, shown) in curls {
        let line = block
            .content
            .trim()
            .replace("127.0.0.1:8080", daemon.http_addr.as_ref().unwrap());
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{line} --fail --show-error")])
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Json = serde_json::from_slice(&out.stdout).expect("JSON");
        let shown =
            shown.unwrap_or_else(|| panic!("docs/authzen.md:{}: no output shown", block.line));
        let shown: Json = serde_json::from_str(&shown.content).expect("the page shows JSON");
        assert_eq!(answer, shown, "docs/authzen.md:{}", block.line);
    }
}

#[test]
fn explained_batches_carry_each_decisions_context() {
    let daemon = serve("certification");
    let answer = post(
        &base(&daemon),
        "/access/v1/evaluations",
        &json!({"subject": alice(), "action": action("read"), "options": {"explain": true},
                "evaluations": [{"resource": record("record-1")}]}),
    );
    assert_eq!(
        answer.json["evaluations"][0]["context"]["rule"], "members-read",
        "{}",
        answer.text
    );
    // With the trace of the rules considered, as the HTTP/JSON API's explained Check has it:
    // the last step decided.
    let trace = answer.json["evaluations"][0]["context"]["trace"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", answer.text));
    let last = trace.last().unwrap();
    assert_eq!(last["rule"], "members-read", "{}", answer.text);
    assert_eq!(last["outcome"], "TRACE_OUTCOME_HELD", "{}", answer.text);
    assert_eq!(last["decided"], true, "{}", answer.text);
    assert!(
        last["file"].as_str().is_some_and(|f| f.ends_with(".yaml")),
        "{}",
        answer.text
    );
    // Not asked, not given.
    let answer = post(
        &base(&daemon),
        "/access/v1/evaluations",
        &json!({"subject": alice(), "action": action("read"),
                "evaluations": [{"resource": record("record-1")}]}),
    );
    assert_eq!(
        answer.json["evaluations"][0],
        json!({"decision": true}),
        "{}",
        answer.text
    );
}

#[test]
fn reasons_stay_out_of_decisions_when_the_operator_says_so() {
    let daemon = Daemon::start(
        &example("certification"),
        &["--http-listen", "127.0.0.1:0", "--authzen-reasons=false"],
    );
    let answer = post(
        &base(&daemon),
        "/access/v1/evaluation",
        &json!({"subject": alice(), "action": action("read"), "resource": record("record-1")}),
    );
    assert_eq!(answer.json["decision"], true);
    assert_eq!(answer.json["context"]["rule"], "members-read");
    assert!(
        answer.json["context"].get("reason").is_none(),
        "{}",
        answer.text
    );
    // Nor the trace, which names every rule considered and their errors.
    let answer = post(
        &base(&daemon),
        "/access/v1/evaluations",
        &json!({"subject": alice(), "action": action("read"), "options": {"explain": true},
                "evaluations": [{"resource": record("record-1")}]}),
    );
    assert_eq!(
        answer.json["evaluations"][0]["context"]["rule"], "members-read",
        "{}",
        answer.text
    );
    assert!(
        answer.json["evaluations"][0]["context"]
            .get("trace")
            .is_none(),
        "{}",
        answer.text
    );
}

/// The decision log's lines so far (JSON), once it holds at least `count`.
fn decision_log(path: &Path, count: usize) -> Vec<Json> {
    let mut lines = Vec::new();
    common::wait_for_blocking("decision-log lines", || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        lines.len() >= count
    });
    lines
}

#[test]
fn over_tls_with_the_decision_log_as_every_api() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let log = dir.path().join("decisions.jsonl");
    let daemon = Daemon::start(
        &example("certification"),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--audit",
            "--audit-output",
            log.to_str().unwrap(),
        ],
    );
    let port = daemon
        .http_addr
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let base = format!("https://localhost:{port}");
    let curl = |args: &[&str]| -> Json {
        let out = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(args)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    // The metadata names the https URLs PEPs reach.
    let metadata = curl(&[&format!("{base}/.well-known/authzen-configuration")]);
    assert_eq!(metadata["policy_decision_point"], base);
    assert_eq!(
        metadata["access_evaluation_endpoint"],
        format!("{base}/access/v1/evaluation")
    );
    let post = |path: &str, body: Json, id: &str| -> Json {
        curl(&[
            "-H",
            "content-type: application/json",
            "-H",
            &format!("x-request-id: {id}"),
            "-d",
            &body.to_string(),
            &format!("{base}{path}"),
        ])
    };
    let decided = post(
        "/access/v1/evaluation",
        json!({"subject": alice(), "action": action("write"), "resource": record("record-1")}),
        "az-1",
    );
    assert_eq!(decided["decision"], true);
    let found = post(
        "/access/v1/search/resource",
        json!({"subject": alice(), "action": action("read"), "resource": {"type": "record"}}),
        "az-2",
    );
    assert_eq!(found["results"].as_array().unwrap().len(), 2);
    let lines = decision_log(&log, 2);
    let evaluation = lines
        .iter()
        .find(|l| l["request_id"] == "az-1")
        .expect("the evaluation's line");
    assert_eq!(
        (
            &evaluation["principal_id"],
            &evaluation["kind"],
            &evaluation["action"],
            &evaluation["effect"]
        ),
        (
            &json!("alice"),
            &json!("record"),
            &json!("write"),
            &json!("allow")
        )
    );
    assert_eq!(evaluation["rule"], "members-write-active-records");
    let search = lines
        .iter()
        .find(|l| l["request_id"] == "az-2")
        .expect("the search's line");
    assert_eq!(
        (
            &search["type"],
            &search["searched"],
            &search["kind"],
            &search["found"]
        ),
        (
            &json!("search"),
            &json!("resource"),
            &json!("record"),
            &json!(2)
        )
    );
    // Plain HTTP is not served on a TLS listener.
    let plain = agent()
        .get(&format!(
            "http://{}/.well-known/authzen-configuration",
            daemon.http_addr.as_ref().unwrap()
        ))
        .call();
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));
}
