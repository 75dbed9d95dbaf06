//! PlanFilter through the real gRPC server: plan kinds, the filter tree with its origins, SQL for
//! both dialects run in SQLite, known attributes, and every error as a clear gRPC status.
mod common;

use std::collections::HashMap;

use serde_json::json;
use verdict::request::Principal;
use verdict::server::proto::{self, FilterOp, PlanKind, SqlDialect};

fn principal(v: serde_json::Value) -> Option<proto::Principal> {
    let p: Principal = serde_json::from_value(v).unwrap();
    Some(verdict::server::convert::principal_to_proto(&p))
}

fn request(p: serde_json::Value, kind: &str, action: &str) -> proto::PlanFilterRequest {
    proto::PlanFilterRequest {
        request_id: "plan-1".into(),
        principal: principal(p),
        resource_kind: kind.into(),
        action: action.into(),
        ..Default::default()
    }
}

fn sql(dialect: SqlDialect, attributes: &[&str]) -> Option<proto::SqlRequest> {
    Some(proto::SqlRequest {
        dialect: dialect as i32,
        columns: attributes
            .iter()
            .map(|a| (a.to_string(), format!("p.{a}")))
            .collect::<HashMap<_, _>>(),
    })
}

fn text(v: &prost_types::Value) -> serde_json::Value {
    verdict::server::convert::value_to_json_unbounded(v)
}

#[tokio::test]
async fn a_nurse_lists_her_practice_and_the_sql_selects_it_in_sqlite() {
    let server = common::TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let mut req = request(
        json!({"id": "n-joy", "roles": ["nurse"], "scopes": ["user/*.rs"], "attr": {"practice_id": "7"}}),
        "Patient",
        "read",
    );
    req.sql = sql(
        SqlDialect::Sqlite,
        &["practice_id", "celebrity", "primary_physician_id"],
    );
    let response = client.plan_filter(req).await.unwrap().into_inner();
    assert_eq!(response.request_id, "plan-1");
    assert_eq!(response.policy_version, server.store.current().version);
    assert_eq!(response.kind, PlanKind::Conditional as i32);
    let filter = response.filter.expect("a conditional plan has a filter");
    assert_eq!(filter.op, FilterOp::And as i32);
    let tenancy = filter
        .operands
        .iter()
        .find(|f| f.policy == "tenancy")
        .expect("the tenancy rule is named");
    assert_eq!(
        (
            tenancy.op,
            tenancy.attribute.as_str(),
            tenancy.rule.as_str()
        ),
        (
            FilterOp::Eq as i32,
            "practice_id",
            "staff-stay-in-their-practice"
        )
    );
    assert_eq!(text(tenancy.value.as_ref().unwrap()), json!("7"));
    assert!(filter
        .operands
        .iter()
        .any(|f| f.policy == "celebrity-patients"));

    let sql = response.sql.expect("sql was asked for");
    assert!(
        !sql.r#where.contains("'7'") && !sql.r#where.contains("n-joy"),
        "literals are parameters: {}",
        sql.r#where
    );
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE p (id TEXT, practice_id TEXT, celebrity BOOLEAN, primary_physician_id TEXT);
         INSERT INTO p VALUES ('mine', '7', 0, 'dr-x'), ('other-practice', '9', 0, 'dr-x'),
           ('celebrity', '7', 1, 'dr-x'), ('her-celebrity', '7', 1, 'n-joy'), ('unflagged', '7', NULL, 'dr-x');",
    )
    .unwrap();
    let params: Vec<rusqlite::types::Value> = sql
        .params
        .iter()
        .map(|p| match text(p) {
            serde_json::Value::Bool(b) => rusqlite::types::Value::Integer(b as i64),
            serde_json::Value::String(s) => rusqlite::types::Value::Text(s),
            other => panic!("unexpected parameter {other}"),
        })
        .collect();
    let mut statement = db
        .prepare(&format!(
            "SELECT id FROM p WHERE {} ORDER BY id",
            sql.r#where
        ))
        .unwrap();
    let ids: Vec<String> = statement
        .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, ["her-celebrity", "mine"]);
}

#[tokio::test]
async fn unconditional_plans_and_postgres_placeholders() {
    let server = common::TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let mut system = request(
        json!({"id": "svc", "roles": ["system"], "scopes": ["system/*.read"]}),
        "Observation",
        "read",
    );
    system.sql = sql(SqlDialect::Postgres, &[]);
    let r = client.plan_filter(system).await.unwrap().into_inner();
    assert_eq!(r.kind, PlanKind::AlwaysAllowed as i32);
    assert!(r.filter.is_none());
    assert_eq!(r.sql.unwrap().r#where, "TRUE");

    let mut janitor = request(
        json!({"id": "j-1", "roles": ["janitor"]}),
        "Patient",
        "read",
    );
    janitor.sql = sql(SqlDialect::Sqlite, &[]);
    let r = client.plan_filter(janitor).await.unwrap().into_inner();
    assert_eq!(r.kind, PlanKind::AlwaysDenied as i32);
    assert_eq!(r.sql.unwrap().r#where, "FALSE");

    let mut alice = request(
        json!({"id": "alice", "roles": ["patient"], "scopes": ["patient/Observation.rs"], "attr": {"patient_id": "123", "patient": "123"}}),
        "Observation",
        "search",
    );
    alice.sql = sql(SqlDialect::Postgres, &["patient_id"]);
    let r = client
        .plan_filter(alice.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kind, PlanKind::Conditional as i32);
    let s = r.sql.unwrap();
    assert_eq!(
        s.r#where, "p.patient_id = $1",
        "the tenancy and scope terms are the same condition"
    );
    assert_eq!(
        s.params.iter().map(text).collect::<Vec<_>>(),
        [json!("123")]
    );

    // The endpoint already fixes the patient: nothing left to filter.
    alice.known_attr = verdict::server::convert::json_to_struct(&json!({"patient_id": "123"}));
    let r = client
        .plan_filter(alice.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kind, PlanKind::AlwaysAllowed as i32);
    alice.known_attr = verdict::server::convert::json_to_struct(&json!({"patient_id": "456"}));
    let r = client.plan_filter(alice).await.unwrap().into_inner();
    assert_eq!(r.kind, PlanKind::AlwaysDenied as i32);
}

#[tokio::test]
async fn errors_are_clear_statuses() {
    let server = common::TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let nurse = json!({"id": "n-joy", "roles": ["nurse"], "scopes": ["user/*.rs"], "attr": {"practice_id": "7"}});

    let status = client
        .plan_filter(request(nurse.clone(), "", "read"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("resource_kind"),
        "{}",
        status.message()
    );
    let status = client
        .plan_filter(request(nurse.clone(), "Patient", " "))
        .await
        .unwrap_err();
    assert!(status.message().contains("action"), "{}", status.message());

    let mut unmapped = request(nurse.clone(), "Patient", "read");
    unmapped.sql = sql(SqlDialect::Sqlite, &["celebrity"]);
    let status = client.plan_filter(unmapped).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("has no column"),
        "{}",
        status.message()
    );

    let mut no_dialect = request(nurse, "Patient", "read");
    no_dialect.sql = sql(SqlDialect::Unspecified, &[]);
    let status = client.plan_filter(no_dialect).await.unwrap_err();
    assert!(
        status.message().contains("sql.dialect"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_condition_no_filter_can_express_is_refused_naming_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docs.yaml"),
        "agent_policy:\n  name: docs\n  principals: {roles: [reader]}\n  rules:\n    - name: by-prefix\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.title.startsWith('A')\n",
    )
    .unwrap();
    let server = common::TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let status = client
        .plan_filter(request(
            json!({"id": "r-1", "roles": ["reader"]}),
            "Doc",
            "read",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("rule \"by-prefix\" of policy \"docs\""),
        "{}",
        status.message()
    );
    // Check still works for the same rule.
    let check = verdict::request::CheckRequest {
        principal: serde_json::from_value(json!({"id": "r-1", "roles": ["reader"]})).unwrap(),
        resources: vec![verdict::request::ResourceCheck {
            resource: verdict::request::Resource {
                kind: "Doc".into(),
                id: "d".into(),
                attr: json!({"title": "Alpha"}),
            },
            actions: vec!["read".into()],
        }],
        ..Default::default()
    };
    let r = client
        .check(verdict::server::convert::to_proto(&check))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.results[0].actions["read"].effect,
        proto::Effect::Allow as i32
    );
}
