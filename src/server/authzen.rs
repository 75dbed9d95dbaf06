//! The OpenID AuthZEN Authorization API 1.0 on the HTTP listener: the standard way for API
//! gateways, identity providers and applications (policy enforcement points) to ask for
//! decisions, so that a PEP that speaks AuthZEN needs no Verdict-specific code.
//!
//! - `POST /access/v1/evaluation`: one decision;
//! - `POST /access/v1/evaluations`: several, with defaults and `options.evaluations_semantic`
//!   (`execute_all`, `deny_on_first_deny`, `permit_on_first_permit`);
//! - `POST /access/v1/search/subject`, `/search/resource`, `/search/action`: which stored subjects,
//!   stored resources or actions would be permitted, paginated;
//! - `GET /.well-known/authzen-configuration`: the PDP's metadata.
//!
//! The mapping (docs/authzen.md): subject `{type, id, properties}` is the principal (`P.id`,
//! `P.attr`; roles come from the set's stored principals), resource `{type, id, properties}` the
//! resource (`R.kind`, `R.id`, `R.attr`), action `name` is `A` and its `properties` are
//! `C.action_properties`, `context` is `C`. Every call goes through the [`Authority`] as the
//! other APIs do (token rules, limits, metrics, decision log, the pool).
//!
//! As the specification asks: unknown fields are ignored; a missing or mistyped required field,
//! malformed JSON and a body that is not `application/json` are 400; a deny is a 200 with
//! `"decision": false`; `X-Request-ID` is echoed on every answer; search results are exactly
//! `{"type", "id"}` (or `{"name"}`), in that order.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};
use tonic::Code;

use super::authority::{self, Authority, Call, CheckCall, Checked, Search, SearchCall};
use super::http::{error, json_body, refusal};

use super::json::strict;
use super::validate::Refusal;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};

/// The context key a request's action properties are given under (`C.action_properties`).
pub const ACTION_PROPERTIES: &str = "action_properties";

/// How the AuthZEN API presents itself and its decisions.
#[derive(Debug, Clone, Default)]
pub struct AuthzenOptions {
    /// The PDP's base URL as PEPs reach it (`https://pdp.example.com`), for the metadata; by
    /// default the scheme of the listener and the request's `Host`.
    pub base_url: Option<String>,
    /// Whether decisions carry Verdict's reason in their `context` (it can quote request
    /// values); the deciding policy and rule are always there.
    pub reasons: bool,
}

#[derive(Clone)]
struct Api {
    authority: Arc<Authority>,
    options: Arc<AuthzenOptions>,
    max_body_bytes: usize,
    /// Whether the listener speaks TLS (for the metadata's default base URL).
    tls: bool,
}

/// The AuthZEN routes, to merge into the HTTP API's router.
pub fn router(
    authority: Arc<Authority>,
    options: AuthzenOptions,
    max_body_bytes: usize,
    tls: bool,
) -> Router {
    Router::new()
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/access/v1/search/subject", post(search_subject))
        .route("/access/v1/search/resource", post(search_resource))
        .route("/access/v1/search/action", post(search_action))
        .route("/.well-known/authzen-configuration", get(metadata))
        .method_not_allowed_fallback(super::http::method_not_allowed)
        .layer(middleware::from_fn(echo_request_id))
        .with_state(Api {
            authority,
            options: Arc::new(options),
            max_body_bytes: max_body_bytes.max(1),
            tls,
        })
}

/// Every answer carries the request's `X-Request-ID` (or the one Verdict gave the request).
async fn echo_request_id(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get("x-request-id") {
        Some(id) => id.clone(),
        None => {
            let id = HeaderValue::from_str(&authority::request_id("")).expect("ascii");
            request.headers_mut().insert("x-request-id", id.clone());
            id
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-request-id", id);
    response
}

/// The call, under its AuthZEN method name, with the request id the middleware made sure of.
fn call(method: &'static str, headers: &HeaderMap) -> Call {
    let header_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    Call::new(method, header_id, None)
}

/// The request body as a JSON object: `application/json` (400 otherwise, as AuthZEN asks), read
/// strictly (duplicate keys and inexact integers refused), an object.
async fn body_object(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Json>, Response> {
    let bytes = json_body(headers, body, api.max_body_bytes, StatusCode::BAD_REQUEST).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request("the request body is empty: send a JSON object"));
    }
    match strict(&bytes) {
        Ok(Json::Object(members)) => Ok(members),
        Ok(_) => Err(bad_request("the request body must be a JSON object")),
        Err(e) => Err(bad_request(&format!("request body: {e}"))),
    }
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
}

/// A subject or resource as the request gives it.
#[derive(Debug, Clone)]
struct Entity {
    kind: String,
    id: String,
    properties: Json,
}

/// An entity at `field`. `identified`: its `id` is required (an input entity); otherwise only
/// its `type` is, and an `id` is ignored (the searched entity).
fn entity(value: Option<&Json>, field: &str, identified: bool) -> Result<Entity, String> {
    let members = match value {
        None | Some(Json::Null) => return Err(format!("{field} is required")),
        Some(Json::Object(members)) => members,
        Some(_) => return Err(format!("{field} must be an object with type and id")),
    };
    let kind = string(members.get("type"), &format!("{field}.type"))?;
    let id = if identified {
        string(members.get("id"), &format!("{field}.id"))?
    } else {
        String::new()
    };
    Ok(Entity {
        kind,
        id,
        properties: properties(members.get("properties"), &format!("{field}.properties"))?,
    })
}

/// A required non-empty string.
fn string(value: Option<&Json>, field: &str) -> Result<String, String> {
    match value {
        None | Some(Json::Null) => Err(format!("{field} is required")),
        Some(Json::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Json::String(_)) => Err(format!("{field} must not be empty")),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

/// An optional object (null when absent).
fn properties(value: Option<&Json>, field: &str) -> Result<Json, String> {
    match value {
        None | Some(Json::Null) => Ok(Json::Null),
        Some(Json::Object(members)) if members.is_empty() => Ok(Json::Null),
        Some(object @ Json::Object(_)) => Ok(object.clone()),
        Some(_) => Err(format!("{field} must be an object")),
    }
}

/// The action at `field`: its name and properties.
fn action(value: Option<&Json>, field: &str) -> Result<(String, Json), String> {
    let members = match value {
        None | Some(Json::Null) => return Err(format!("{field} is required")),
        Some(Json::Object(members)) => members,
        Some(_) => return Err(format!("{field} must be an object with a name")),
    };
    Ok((
        string(members.get("name"), &format!("{field}.name"))?,
        properties(members.get("properties"), &format!("{field}.properties"))?,
    ))
}

/// The request context `C`, with the action's properties under [`ACTION_PROPERTIES`].
fn context(value: Option<&Json>, action_properties: Json) -> Result<Json, String> {
    let mut context = properties(value, "context")?;
    if action_properties.is_null() {
        return Ok(context);
    }
    if context.is_null() {
        context = Json::Object(Map::new());
    }
    let members = context.as_object_mut().expect("an object");
    if members.contains_key(ACTION_PROPERTIES) {
        return Err(format!(
            "context.{ACTION_PROPERTIES} is where Verdict puts action.properties: send the \
             action's properties in action.properties only"
        ));
    }
    members.insert(ACTION_PROPERTIES.into(), action_properties);
    Ok(context)
}

/// The principal a subject is.
fn principal(subject: Entity) -> Principal {
    Principal {
        id: subject.id,
        attr: subject.properties,
        ..Principal::default()
    }
}

/// One evaluation (subject, action, resource, context, each given or defaulted) as a Check.
fn evaluation_call(
    subject: Option<&Json>,
    action_value: Option<&Json>,
    resource: Option<&Json>,
    context_value: Option<&Json>,
) -> Result<CheckCall, Refusal> {
    let check = || -> Result<CheckCall, String> {
        let subject = entity(subject, "subject", true)?;
        let (name, action_properties) = action(action_value, "action")?;
        let resource = entity(resource, "resource", true)?;
        let context = context(context_value, action_properties)?;
        let principal_type = subject.kind.clone();
        Ok(CheckCall {
            request: CheckRequest {
                request_id: String::new(),
                principal: principal(subject),
                resources: vec![ResourceCheck {
                    resource: Resource {
                        kind: resource.kind,
                        id: resource.id,
                        attr: resource.properties,
                    },
                    actions: vec![name],
                }],
                context,
            },
            token: String::new(),
            principal_type: Some(principal_type),
            explain: false,
        })
    };
    check().map_err(Refusal::invalid)
}

/// A decision as AuthZEN answers it; with `explain`, the deciding policy and rule (and the
/// reason, when the options allow) in its `context`, and the trace of an explained Check (as
/// `ActionDecision.trace` in the HTTP/JSON API) when the options allow reasons.
fn decision(checked: &Checked, explain: bool, options: &AuthzenOptions) -> Json {
    let Some(first) = checked.results.first() else {
        return json!({"decision": false});
    };
    let Some((_, decided)) = first.actions.first() else {
        return json!({"decision": false});
    };
    let mut answer = Map::new();
    answer.insert("decision".into(), json!(decided.is_allow()));
    if explain {
        let mut context = Map::new();
        if !decided.policy.is_empty() {
            context.insert("policy".into(), json!(&*decided.policy));
        }
        if !decided.rule.is_empty() {
            context.insert("rule".into(), json!(&*decided.rule));
        }
        if options.reasons {
            context.insert("reason".into(), json!(&*decided.reason));
            if !first.trace(0).is_empty() {
                let trace = first.trace(0).iter();
                let trace =
                    trace.map(|s| super::json::trace_step_json(&super::convert::trace_step(s)));
                context.insert("trace".into(), trace.collect());
            }
        }
        context.insert("policy_version".into(), json!(checked.policy_version));
        answer.insert("context".into(), Json::Object(context));
    }
    Json::Object(answer)
}

/// A refused item of a batch: a deny, with why in its context.
fn refused_item(r: &Refusal) -> Json {
    json!({"decision": false, "context": {"error": {
        "status": super::http::http_status(r.code).as_u16(),
        "message": r.message,
    }}})
}

async fn evaluation(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let call = call("authzen/evaluation", &headers);
    let body = match body_object(&api, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let decoded = evaluation_call(
        body.get("subject"),
        body.get("action"),
        body.get("resource"),
        body.get("context"),
    );
    decide_one(&api, call, decoded).await
}

/// One evaluation (or its refusal) asked of the Authority and answered as AuthZEN's decision.
async fn decide_one(api: &Api, call: Call, decoded: Result<CheckCall, Refusal>) -> Response {
    match api.authority.check(call, decoded).await {
        Ok(checked) => axum::Json(decision(&checked, true, &api.options)).into_response(),
        Err(r) => refusal(&r),
    }
}

/// `options.evaluations_semantic`: where a batch stops (`None`: it does not).
fn semantic(options: Option<&Json>) -> Result<Option<bool>, String> {
    let members = match options {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Object(members)) => members,
        Some(_) => return Err("options must be an object".into()),
    };
    match members.get("evaluations_semantic") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => match s.as_str() {
            "execute_all" => Ok(None),
            "deny_on_first_deny" => Ok(Some(false)),
            "permit_on_first_permit" => Ok(Some(true)),
            other => Err(format!(
                "options.evaluations_semantic {other:?} is not one of execute_all, \
                 deny_on_first_deny, permit_on_first_permit"
            )),
        },
        Some(_) => Err("options.evaluations_semantic must be a string".into()),
    }
}

async fn evaluations(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let call = call("authzen/evaluations", &headers);
    let body = match body_object(&api, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let items = match body.get("evaluations") {
        None | Some(Json::Null) => None,
        Some(Json::Array(items)) if items.is_empty() => None,
        Some(Json::Array(items)) => Some(items),
        Some(_) => return bad_request("evaluations must be an array"),
    };
    // Without items, the request is one evaluation, answered as one.
    let Some(items) = items else {
        let decoded = evaluation_call(
            body.get("subject"),
            body.get("action"),
            body.get("resource"),
            body.get("context"),
        );
        return decide_one(&api, call, decoded).await;
    };
    // A batch is decided item after item on the task it arrived on: as many items as one Check
    // may carry resources.
    let limit = api.authority.limits().max_resources;
    if items.len() > limit {
        let too_many = Refusal::new(
            Code::OutOfRange,
            format!(
                "evaluations: {} items, more than the {limit} one request may carry \
                 (limits.max_resources)",
                items.len()
            ),
        );
        // Through the Authority, so that the refusal is counted like any other.
        return decide_one(&api, call, Err(too_many)).await;
    }
    let stop_at = match semantic(body.get("options")) {
        Ok(stop_at) => stop_at,
        Err(message) => return bad_request(&message),
    };
    let explain = body
        .get("options")
        .and_then(|o| o.get("explain"))
        .is_some_and(|e| e == &Json::Bool(true));
    for key in ["subject", "action", "resource", "context"] {
        if let Some(value) = body.get(key) {
            if !value.is_object() && !value.is_null() {
                return bad_request(&format!("{key} must be an object"));
            }
        }
    }
    let mut calls = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Json::Object(item) = item else {
            return bad_request(&format!("evaluations[{i}] must be an object"));
        };
        // An item's key replaces the default whole: no merging inside an entity.
        let pick = |key: &str| item.get(key).or_else(|| body.get(key));
        calls.push(
            evaluation_call(
                pick("subject"),
                pick("action"),
                pick("resource"),
                pick("context"),
            )
            .map(|call| CheckCall { explain, ..call })
            .map_err(|r| Refusal::new(r.code, format!("evaluations[{i}]: {}", r.message))),
        );
    }
    let answers = api.authority.check_each(call, calls, stop_at).await;
    let evaluations: Vec<Json> = answers
        .iter()
        .map(|answer| match answer {
            Ok(checked) => decision(checked, explain, &api.options),
            Err(r) => refused_item(r),
        })
        .collect();
    axum::Json(json!({ "evaluations": evaluations })).into_response()
}

/// A search request's page: where to start and how many to answer.
struct Page {
    offset: usize,
    limit: Option<usize>,
    /// The request asked for pages (its answer then always carries `page`).
    asked: bool,
}

/// What a page token carries: the offset, the limit, and which request it belongs to.
#[derive(Serialize, serde::Deserialize)]
struct Token {
    offset: usize,
    limit: Option<usize>,
    request: String,
}

/// The request's fingerprint for its page tokens: a hash of its canonical JSON without `page`.
fn fingerprint(body: &Map<String, Json>) -> String {
    fn canonical(value: &Json, out: &mut String) {
        match value {
            Json::Object(members) => {
                let mut keys: Vec<&String> = members.keys().collect();
                keys.sort();
                out.push('{');
                for key in keys {
                    out.push_str(&Json::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&members[key], out);
                    out.push(',');
                }
                out.push('}');
            }
            Json::Array(items) => {
                out.push('[');
                for item in items {
                    canonical(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    let without_page: Map<String, Json> = body
        .iter()
        .filter(|(k, _)| *k != "page")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    canonical(&Json::Object(without_page), &mut text);
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

fn page(body: &Map<String, Json>) -> Result<Page, String> {
    let members = match body.get("page") {
        None | Some(Json::Null) => {
            return Ok(Page {
                offset: 0,
                limit: None,
                asked: false,
            })
        }
        Some(Json::Object(members)) => members,
        Some(_) => return Err("page must be an object".into()),
    };
    let limit = match members.get("limit") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => match n.as_u64() {
            Some(0) => return Err("page.limit must be at least 1".into()),
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => return Err("page.limit must be a whole number".into()),
        },
        Some(_) => return Err("page.limit must be a number".into()),
    };
    let token = match members.get("token") {
        None | Some(Json::Null) => None,
        Some(Json::String(t)) if t.is_empty() => None,
        Some(Json::String(t)) => Some(t),
        Some(_) => return Err("page.token must be a string".into()),
    };
    let Some(token) = token else {
        return Ok(Page {
            offset: 0,
            limit,
            asked: true,
        });
    };
    let foreign = || "page.token is not a next_token this server gave".to_string();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| foreign())?;
    let token: Token = serde_json::from_slice(&bytes).map_err(|_| foreign())?;
    if token.request != fingerprint(body) {
        return Err(
            "page.token belongs to another search: send the same subject, action, resource \
             and context as the request that gave it"
                .into(),
        );
    }
    if limit.is_some() && limit != token.limit {
        return Err("page.limit differs from the request that gave page.token".into());
    }
    Ok(Page {
        offset: token.offset,
        limit: token.limit,
        asked: true,
    })
}

#[derive(Serialize)]
struct PageAnswer {
    next_token: String,
    count: usize,
    total: usize,
}

/// One search result: a subject or resource (`type` before `id`, as AuthZEN writes it), or an
/// action.
#[derive(Serialize)]
#[serde(untagged)]
enum Found<'a> {
    Identified {
        #[serde(rename = "type")]
        kind: &'a str,
        id: &'a str,
    },
    Named {
        name: &'a str,
    },
}

#[derive(Serialize)]
struct SearchAnswer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<PageAnswer>,
    results: Vec<Found<'a>>,
}

/// Decodes a search body with `decode` (the search, and the type its results have: none for
/// actions), asks the Authority, and answers one page of what it found.
async fn search(
    api: Api,
    method: &'static str,
    headers: HeaderMap,
    body: Body,
    decode: impl FnOnce(&Map<String, Json>) -> Result<(SearchCall, Option<String>), String>,
) -> Response {
    let call = call(method, &headers);
    let body = match body_object(&api, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let page = match page(&body) {
        Ok(page) => page,
        Err(message) => return bad_request(&message),
    };
    let (decoded, result_type) = match decode(&body) {
        Ok((call, result_type)) => (Ok(call), result_type),
        Err(message) => (Err(Refusal::invalid(message)), None),
    };
    let searched = match api.authority.search(call, decoded).await {
        Ok(searched) => searched,
        Err(r) => return refusal(&r),
    };
    let total = searched.found.len();
    let start = page.offset.min(total);
    let end = match page.limit {
        Some(limit) => start.saturating_add(limit).min(total),
        None => total,
    };
    let results: Vec<Found<'_>> = searched.found[start..end]
        .iter()
        .map(|found| match &result_type {
            Some(kind) => Found::Identified { kind, id: found },
            None => Found::Named { name: found },
        })
        .collect();
    let page = page.asked.then(|| PageAnswer {
        next_token: if end < total {
            let token = Token {
                offset: end,
                limit: page.limit,
                request: fingerprint(&body),
            };
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&token).expect("a token serializes"))
        } else {
            String::new()
        },
        count: results.len(),
        total,
    });
    axum::Json(SearchAnswer { page, results }).into_response()
}

/// The resource of a search as Check sees it.
fn resource_of(entity: Entity) -> Resource {
    Resource {
        kind: entity.kind,
        id: entity.id,
        attr: entity.properties,
    }
}

async fn search_subject(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    search(api, "authzen/search/subject", headers, body, |body| {
        let subject = entity(body.get("subject"), "subject", false)?;
        let (action, action_properties) = action(body.get("action"), "action")?;
        let resource = entity(body.get("resource"), "resource", true)?;
        let call = SearchCall {
            search: Search::Subjects {
                principal_type: subject.kind.clone(),
                action,
                resource: resource_of(resource),
            },
            context: context(body.get("context"), action_properties)?,
        };
        Ok((call, Some(subject.kind)))
    })
    .await
}

async fn search_resource(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    search(api, "authzen/search/resource", headers, body, |body| {
        let subject = entity(body.get("subject"), "subject", true)?;
        let (action, action_properties) = action(body.get("action"), "action")?;
        let resource = entity(body.get("resource"), "resource", false)?;
        let call = SearchCall {
            search: Search::Resources {
                principal_type: subject.kind.clone(),
                principal: principal(subject),
                kind: resource.kind.clone(),
                action,
            },
            context: context(body.get("context"), action_properties)?,
        };
        Ok((call, Some(resource.kind)))
    })
    .await
}

async fn search_action(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    search(api, "authzen/search/action", headers, body, |body| {
        let subject = entity(body.get("subject"), "subject", true)?;
        let resource = entity(body.get("resource"), "resource", true)?;
        // The action is what is searched: a request's `action`, if any, is ignored.
        let call = SearchCall {
            search: Search::Actions {
                principal_type: subject.kind.clone(),
                principal: principal(subject),
                resource: resource_of(resource),
            },
            context: context(body.get("context"), Json::Null)?,
        };
        Ok((call, None))
    })
    .await
}

/// The PDP metadata (`/.well-known/authzen-configuration`).
#[derive(Serialize)]
struct Metadata {
    policy_decision_point: String,
    access_evaluation_endpoint: String,
    access_evaluations_endpoint: String,
    search_subject_endpoint: String,
    search_resource_endpoint: String,
    search_action_endpoint: String,
}

async fn metadata(State(api): State<Api>, headers: HeaderMap) -> Response {
    let base = match &api.options.base_url {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => {
            let Some(host) = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
            else {
                return bad_request(
                    "no Host header to build the metadata's URLs from (set http.authzen_base_url)",
                );
            };
            let scheme = if api.tls { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    let endpoint = |path: &str| format!("{base}{path}");
    let answer = Metadata {
        access_evaluation_endpoint: endpoint("/access/v1/evaluation"),
        access_evaluations_endpoint: endpoint("/access/v1/evaluations"),
        search_subject_endpoint: endpoint("/access/v1/search/subject"),
        search_resource_endpoint: endpoint("/access/v1/search/resource"),
        search_action_endpoint: endpoint("/access/v1/search/action"),
        policy_decision_point: base,
    };
    (
        [(axum::http::header::CACHE_CONTROL, "max-age=300")],
        axum::Json(answer),
    )
        .into_response()
}
