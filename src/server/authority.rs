//! What a request goes through between its wire format and the engine, the same for gRPC and the
//! HTTP/JSON API: one entry point per API call ([`Authority::check`], [`Authority::plan`],
//! [`Authority::status`]) that both transports call with the request they decoded. Each takes it
//! from there: the request's shape ([`validate`]), a request id, who it is about (its principal,
//! or the one its token proves), one policy-set snapshot, the deadline, the engine or the
//! planner, and what operators see of it (metrics and latency counted once per call, refusals
//! included; a span; the decision log; a warning for every evaluation error).
//!
//! A transport only decodes its wire format into a [`CheckCall`] or [`PlanCall`] (or a
//! [`Refusal`] when it cannot) and encodes the answer: gRPC and HTTP cannot drift.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;
use tonic::Code;
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use super::evaluation::{self, Pool, PoolOptions};
use super::validate::{self, Limits, Refusal};
use crate::compile::PolicySet;
use crate::engine::{self, Decision, ResourceDecisions};
use crate::filter::sql::{self, Dialect, SqlFilter};
use crate::filter::Filter;
use crate::plan::{self, Plan, PlanRequest};
use crate::policy::schema::ValidationMode;
use crate::policy::Effect;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};
use crate::store::{PolicyStore, ReloadStatus};
use crate::telemetry::audit::{AuditLog, Decided, Entry, Outcome};
use crate::telemetry::{
    DECISIONS_TOTAL, DECISION_SECONDS, EVALUATION_ERRORS_TOTAL, PLANS_TOTAL, REQUESTS_TOTAL,
    REQUEST_SECONDS, SCHEMA_VIOLATIONS_TOTAL, SEARCHES_TOTAL, TOKENS_REJECTED_TOTAL,
};
use crate::token::{KeysStatus, TokenError, Verifier};

/// What the Status API answers.
#[derive(Debug, Clone)]
pub struct Status {
    /// The policy store's reload status.
    pub policies: Arc<ReloadStatus>,
    /// The token verification keys, when tokens are verified.
    pub token_keys: Option<Arc<KeysStatus>>,
}

/// SQL rendering asked for with a plan: dialect and attribute-to-column map.
pub type SqlSpec = (Dialect, HashMap<String, String>);

/// One API call, whatever its transport: the method it is counted under, when it arrived, the
/// request id header and the caller's own deadline.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub started: Instant,
    /// The `x-request-id` header, used when the request has no `request_id` of its own.
    pub header_id: Option<String>,
    /// The caller's deadline (`grpc-timeout`); a shorter server deadline wins.
    pub deadline: Option<Duration>,
}

impl Call {
    /// A call arriving now.
    pub fn new(method: &'static str, header_id: Option<&str>, deadline: Option<Duration>) -> Call {
        Call {
            method,
            started: Instant::now(),
            header_id: header_id.map(str::to_string),
            deadline,
        }
    }
}

/// A Check decoded from the wire into the engine's types, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct CheckCall {
    pub request: CheckRequest,
    /// A JWT to verify instead of the request's principal; empty if none.
    pub token: String,
    /// The principal's type, for APIs that name one (AuthZEN's `subject.type`): a principal
    /// the set stores under another type is another principal, and every action is denied.
    pub principal_type: Option<String>,
    /// Return with each decision the rules it considered ([`engine::Decision::trace`]).
    pub explain: bool,
}

/// A search over the set's stored entities, decoded from the wire, not yet validated.
#[derive(Debug, Clone)]
pub struct SearchCall {
    pub search: Search,
    /// Request context (JSON object), as in Check.
    pub context: Json,
}

/// What a search looks for.
#[derive(Debug, Clone)]
pub enum Search {
    /// The stored principals of a type that may perform `action` on `resource`.
    Subjects {
        principal_type: String,
        action: String,
        resource: Resource,
    },
    /// The stored resources of `kind` that the principal may perform `action` on.
    Resources {
        principal: Principal,
        principal_type: String,
        kind: String,
        action: String,
    },
    /// The actions the principal may perform on `resource`.
    Actions {
        principal: Principal,
        principal_type: String,
        resource: Resource,
    },
}

impl Search {
    /// The kind searched in or on.
    fn kind(&self) -> &str {
        match self {
            Search::Subjects { resource, .. } | Search::Actions { resource, .. } => &resource.kind,
            Search::Resources { kind, .. } => kind,
        }
    }

    /// The action searched with; empty for an action search.
    fn action(&self) -> &str {
        match self {
            Search::Subjects { action, .. } | Search::Resources { action, .. } => action,
            Search::Actions { .. } => "",
        }
    }

    /// The subject searched from, and its type: none for a subject search.
    fn subject_mut(&mut self) -> Option<(&mut Principal, &str)> {
        match self {
            Search::Subjects { .. } => None,
            Search::Resources {
                principal,
                principal_type,
                ..
            }
            | Search::Actions {
                principal,
                principal_type,
                ..
            } => Some((principal, principal_type.as_str())),
        }
    }

    /// What is searched, as the metrics and the decision log name it.
    pub fn searched(&self) -> &'static str {
        match self {
            Search::Subjects { .. } => "subject",
            Search::Resources { .. } => "resource",
            Search::Actions { .. } => "action",
        }
    }
}

/// A search's answer: the ids (or action names) found, in the order the set stores them.
pub struct Searched {
    pub request_id: String,
    pub policy_version: String,
    pub found: Vec<String>,
}

/// A PlanFilter decoded from the wire, not yet validated.
#[derive(Debug, Clone)]
pub struct PlanCall {
    pub request_id: String,
    pub request: PlanRequest,
    /// A JWT to verify instead of the request's principal; empty if none.
    pub token: String,
    /// SQL to render the filter as, if asked.
    pub sql: Option<SqlSpec>,
}

/// A Check's answer.
pub struct Checked {
    pub request_id: String,
    pub policy_version: String,
    pub results: Vec<ResourceDecisions>,
    /// Why the request's token was rejected (every decision is then a deny).
    pub token_error: Option<String>,
}

/// A PlanFilter's answer.
pub struct Planned {
    pub request_id: String,
    pub policy_version: String,
    pub plan: Plan,
    pub sql: Option<SqlFilter>,
    /// Why the request's token was rejected (the plan is then ALWAYS_DENIED).
    pub token_error: Option<String>,
    /// How the request violates the schema (the plan is then ALWAYS_DENIED).
    pub schema_violation: Option<String>,
}

/// Who a request is about.
enum Subject {
    /// The principal the request carried, or the one its token proved.
    Principal(Principal),
    /// The request's token failed verification: every answer is a deny.
    Rejected(TokenError),
}

/// The decision path shared by every API.
pub struct Authority {
    store: Arc<PolicyStore>,
    limits: Limits,
    /// Server-side deadline for one request (a shorter client deadline wins).
    timeout: Option<Duration>,
    audit: Option<Arc<AuditLog>>,
    /// Token verification, when the operator configured a JWKS file.
    tokens: Option<Arc<Verifier>>,
    /// Where large requests are decided.
    pool: Pool,
}

/// Prefix of generated request ids, different per process.
static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `given`, or a new request id when it is empty.
pub fn request_id(given: &str) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    // The process id, read once (it is a system call).
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("verdict-{pid:x}-{n:x}")
}

impl Authority {
    pub fn new(
        store: Arc<PolicyStore>,
        limits: Limits,
        timeout: Option<Duration>,
        audit: Option<Arc<AuditLog>>,
    ) -> Self {
        Authority {
            store,
            limits,
            timeout,
            audit,
            tokens: None,
            pool: Pool::new(PoolOptions::default()),
        }
    }

    /// Decides large requests on a pool sized by `options`.
    pub fn with_pool(mut self, options: PoolOptions) -> Self {
        self.pool = Pool::new(options);
        self
    }

    /// Lets requests carry a JWT, verified by `tokens`, instead of a principal.
    pub fn with_tokens(mut self, tokens: Option<Arc<Verifier>>) -> Self {
        self.tokens = tokens;
        self
    }

    /// The limits decoders enforce while converting (and [`validate`] after).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &Arc<PolicyStore> {
        &self.store
    }

    /// The Check API: decides `decoded` (or counts its refusal). Every action of every resource
    /// gets a decision, from one policy-set snapshot; a rejected token denies them all.
    ///
    /// A small request is decided here, on the caller's task; a large one on the evaluation pool
    /// ([`evaluation`]), or refused with RESOURCE_EXHAUSTED when the pool is full.
    pub async fn check(
        &self,
        call: Call,
        decoded: Result<CheckCall, Refusal>,
    ) -> Result<Checked, Refusal> {
        // A debug span: at info level, building it for every request would cost more than the
        // decision; the events that matter at info and above carry the request id themselves.
        let span = tracing::debug_span!("check", request_id = Empty, resources = Empty);
        async {
            let result = match decoded {
                Ok(decoded) => {
                    let set = self.store.current();
                    self.check_call(&call, decoded, &Span::current(), set).await
                }
                Err(refusal) => Err(refusal),
            };
            finish(&call, result.as_ref().err());
            result
        }
        .instrument(span)
        .await
    }

    /// The PlanFilter API: plans `decoded` (or counts its refusal).
    pub async fn plan(
        &self,
        call: Call,
        decoded: Result<PlanCall, Refusal>,
    ) -> Result<Planned, Refusal> {
        let span = tracing::debug_span!("plan", request_id = Empty, kind = Empty, action = Empty);
        async {
            let result = match decoded {
                Ok(decoded) => self.plan_call(&call, decoded, &Span::current()).await,
                Err(refusal) => Err(refusal),
            };
            finish(&call, result.as_ref().err());
            result
        }
        .instrument(span)
        .await
    }

    /// The search APIs (AuthZEN's subject, resource and action search): every answer is what
    /// Check would allow ([`search`]), from one policy-set snapshot. A principal the set stores
    /// under another type than the request's finds nothing. Large searches run on the
    /// evaluation pool; one that would take more than `limits.max_decisions` decisions is
    /// refused (OUT_OF_RANGE), never truncated.
    pub async fn search(
        &self,
        call: Call,
        decoded: Result<SearchCall, Refusal>,
    ) -> Result<Searched, Refusal> {
        let span = tracing::debug_span!("search", request_id = Empty);
        async {
            let result = match decoded {
                Ok(decoded) => self.search_call(&call, decoded).await,
                Err(refusal) => Err(refusal),
            };
            finish(&call, result.as_ref().err());
            result
        }
        .instrument(span)
        .await
    }

    async fn search_call(&self, call: &Call, decoded: SearchCall) -> Result<Searched, Refusal> {
        let SearchCall {
            mut search,
            context,
        } = decoded;
        // The same shape checks as a Check of the entities named (sizes, depths, ids).
        let resource = match &search {
            Search::Subjects { resource, .. } | Search::Actions { resource, .. } => {
                resource.clone()
            }
            Search::Resources { kind, .. } => Resource {
                kind: kind.clone(),
                id: "-".into(),
                attr: Json::Null,
            },
        };
        let principal = match search.subject_mut() {
            Some((principal, _)) => principal.clone(),
            None => Principal {
                id: "-".into(),
                ..Principal::default()
            },
        };
        let action = match search.action() {
            "" => "-".to_string(),
            action => action.to_string(),
        };
        let shape = CheckRequest {
            request_id: String::new(),
            principal,
            resources: vec![ResourceCheck {
                resource,
                actions: vec![action],
            }],
            context,
        };
        validate::check_request(&shape, &self.limits).map_err(Refusal::invalid)?;
        validate::principal_id(&shape.principal).map_err(Refusal::invalid)?;
        let context = shape.context;
        let request_id = self.request_id("", call.header_id.as_deref());
        let set = self.store.current();
        // The subject of a resource or action search: as for a Check (a server that requires
        // tokens does not take one named in a body), and of the type the request says.
        let mut another_type = false;
        let mut principal_id = String::new();
        if let Some((principal, principal_type)) = search.subject_mut() {
            match self.subject(call, "", std::mem::take(principal)).await? {
                Subject::Principal(p) => *principal = p,
                Subject::Rejected(_) => unreachable!("no token was given"),
            }
            another_type = set
                .entities
                .principal(&principal.id)
                .is_some_and(|stored| *stored.principal_type != *principal_type);
            principal_id = principal.id.clone();
        }
        let limits = self.engine_limits(call);
        let max_decisions = self.limits.max_decisions;
        let weight = match &search {
            Search::Subjects { principal_type, .. } => {
                set.entities.principals_of_type(principal_type).count()
            }
            Search::Resources { kind, .. } => set.entities.resources_of_kind(kind).len() / 16,
            Search::Actions { resource, .. } => set.kind(&resource.kind).actions().len(),
        };
        let searched = search.searched();
        let (kind, action) = (search.kind().to_string(), search.action().to_string());
        let run = {
            let set = Arc::clone(&set);
            move || -> Result<crate::search::Found, crate::search::SearchError> {
                if another_type {
                    return Ok(crate::search::Found {
                        ids: Vec::new(),
                        decisions: 0,
                        planned: false,
                    });
                }
                let found = match &search {
                    Search::Subjects {
                        principal_type,
                        action,
                        resource,
                    } => crate::search::subjects(
                        &set,
                        principal_type,
                        action,
                        resource,
                        &context,
                        &limits,
                        max_decisions,
                    ),
                    Search::Resources {
                        principal,
                        kind,
                        action,
                        ..
                    } => crate::search::resources(
                        &set,
                        principal,
                        kind,
                        action,
                        &context,
                        &limits,
                        max_decisions,
                    ),
                    Search::Actions {
                        principal,
                        resource,
                        ..
                    } => crate::search::actions(
                        &set,
                        principal,
                        resource,
                        &context,
                        &limits,
                        max_decisions,
                    ),
                }?;
                Ok(found)
            }
        };
        let outcome = if self.pool.inline(weight) {
            run()
        } else {
            self.pool
                .run(limits.deadline, run, |how| {
                    Refusal::new(Code::DeadlineExceeded, format!("deadline exceeded {how}"))
                })
                .await?
        };
        let found = outcome.map_err(|e| match e {
            crate::search::SearchError::TooLarge { .. } => {
                Refusal::new(Code::OutOfRange, e.to_string())
            }
            crate::search::SearchError::DeadlineExceeded => {
                Refusal::new(Code::DeadlineExceeded, e.to_string())
            }
        })?;
        let by = if found.planned { "plan" } else { "decisions" };
        metrics::counter!(SEARCHES_TOTAL, "searched" => searched, "by" => by).increment(1);
        let found = found.ids;
        if let Some(audit) = &self.audit {
            audit.record(Entry {
                time: SystemTime::now(),
                request_id: request_id.clone(),
                principal_id,
                policy_version: set.version.clone(),
                principal_attributes: None,
                outcome: Outcome::Search {
                    searched,
                    kind,
                    action,
                    found: found.len(),
                },
            });
        }
        Ok(Searched {
            request_id,
            policy_version: set.version.clone(),
            found,
        })
    }

    /// The Status API: the store's reload status and the token keys' status, read without
    /// locking.
    pub fn status(&self, call: Call) -> Status {
        let status = Status {
            policies: self.store.status(),
            token_keys: self.tokens.as_ref().map(|t| t.status()),
        };
        finish(&call, None);
        status
    }

    /// Who a request is about: the principal its token proves (`token` non-empty), or the one it
    /// carried. Refused (INVALID_ARGUMENT): a token when verification is not configured, a token
    /// next to a non-empty principal (ambiguous), no token when one is required. A token that
    /// fails verification is [`Subject::Rejected`], not a refusal: the answer is a deny.
    ///
    /// With keys from a URL, a token naming an unknown key id may wait (an await, bounded by the
    /// fetch timeout and the call's deadline) for the key refresh it triggers.
    async fn subject(
        &self,
        call: &Call,
        token: &str,
        principal: Principal,
    ) -> Result<Subject, Refusal> {
        if token.is_empty() {
            if self.tokens.as_ref().is_some_and(|t| t.required()) {
                return Err(Refusal::invalid(
                    "token: this server requires a token (--require-token); a principal alone \
                     is not accepted",
                ));
            }
            return Ok(Subject::Principal(principal));
        }
        let Some(verifier) = &self.tokens else {
            return Err(Refusal::invalid(
                "token: given, but token verification is not configured on this server \
                 (--jwks-file, --jwks-url or --oidc-issuer)",
            ));
        };
        if !principal.is_empty() {
            return Err(Refusal::invalid(
                "send either token or principal, not both: the token's claims are the principal",
            ));
        }
        match verifier.verify_waiting(token, self.deadline(call)).await {
            Ok(principal) => Ok(Subject::Principal(principal)),
            Err(e) => {
                tracing::info!(reason = %e, "token rejected");
                metrics::counter!(TOKENS_REJECTED_TOTAL, "reason" => e.label()).increment(1);
                Ok(Subject::Rejected(e))
            }
        }
    }

    /// The request id to use: the caller's (`request_id` field, else `x-request-id`), or a new one.
    fn request_id(&self, field: &str, header: Option<&str>) -> String {
        request_id(if field.is_empty() {
            header.unwrap_or("")
        } else {
            field
        })
    }

    /// The engine's limits for a call: its deadline and the condition cost budget.
    fn engine_limits(&self, call: &Call) -> engine::Limits {
        engine::Limits {
            deadline: self.deadline(call),
            cost_budget: match self.limits.max_condition_cost {
                0 => u64::MAX,
                n => n,
            },
            explain: false,
        }
    }

    fn deadline(&self, call: &Call) -> Option<Instant> {
        let budget = match (self.timeout, call.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        budget.map(|b| call.started + b)
    }

    /// Several Checks in one call (AuthZEN's evaluations), decided in order from one policy-set
    /// snapshot and counted as one call; each item's refusal is its own. With `stop_at`, the
    /// items after the first whose first decision is `stop_at` (allowed or not; a refusal counts
    /// as a deny) are not decided, and left out of the answer.
    pub async fn check_each(
        &self,
        call: Call,
        items: Vec<Result<CheckCall, Refusal>>,
        stop_at: Option<bool>,
    ) -> Vec<Result<Checked, Refusal>> {
        let span = tracing::debug_span!("check_each", request_id = Empty, resources = Empty);
        async {
            let set = self.store.current();
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                let answer = match item {
                    Ok(decoded) => {
                        self.check_call(&call, decoded, &Span::current(), Arc::clone(&set))
                            .await
                    }
                    Err(refusal) => Err(refusal),
                };
                let allowed = answer.as_ref().is_ok_and(|a| {
                    a.results
                        .first()
                        .and_then(|r| r.actions.first())
                        .is_some_and(|(_, d)| d.is_allow())
                });
                answers.push(answer);
                if stop_at == Some(allowed) {
                    break;
                }
            }
            finish(&call, None);
            answers
        }
        .instrument(span)
        .await
    }

    async fn check_call(
        &self,
        call: &Call,
        decoded: CheckCall,
        span: &Span,
        set: Arc<PolicySet>,
    ) -> Result<Checked, Refusal> {
        let CheckCall {
            mut request,
            token,
            principal_type,
            explain,
        } = decoded;
        // The request's shape is checked first: it is cheap, and a signature check is not.
        validate::check_request(&request, &self.limits).map_err(Refusal::invalid)?;
        if token.is_empty() {
            validate::principal_id(&request.principal).map_err(Refusal::invalid)?;
        }
        request.request_id = self.request_id(&request.request_id, call.header_id.as_deref());
        span.record("request_id", request.request_id.as_str());
        span.record("resources", request.resources.len());
        let principal = std::mem::take(&mut request.principal);
        match self.subject(call, &token, principal).await? {
            Subject::Principal(principal) => {
                request.principal = principal;
                let stored_type = principal_type.as_ref().and_then(|wanted| {
                    let stored = set.entities.principal(&request.principal.id)?;
                    (*stored.principal_type != **wanted).then_some(&stored.principal_type)
                });
                if let Some(stored_type) = stored_type {
                    let reason = format!(
                        "the set stores principal {:?} as a {stored_type:?}, not a {:?}: \
                         another principal, whose data the set does not hold",
                        request.principal.id,
                        principal_type.as_deref().unwrap_or_default()
                    );
                    return Ok(self.deny_all(&set, request, reason, None));
                }
                self.decide(call, request, set, explain).await
            }
            Subject::Rejected(error) => Ok(self.deny_all(
                &set,
                request,
                format!("token rejected: {error}"),
                Some(error.to_string()),
            )),
        }
    }

    /// Every action denied with `reason` (a rejected token, a principal of another type);
    /// recorded like any other Check.
    fn deny_all(
        &self,
        set: &PolicySet,
        mut request: CheckRequest,
        reason: String,
        token_error: Option<String>,
    ) -> Checked {
        let denied = Decision {
            effect: Effect::Deny,
            policy: "".into(),
            rule: "".into(),
            reason: reason.into(),
            evaluation_error: false,
            schema_violation: None,
        };
        let results: Vec<ResourceDecisions> = request
            .resources
            .iter()
            .map(|check| ResourceDecisions {
                kind: check.resource.kind.clone(),
                id: check.resource.id.clone(),
                actions: check
                    .actions
                    .iter()
                    .map(|a| (a.clone(), denied.clone()))
                    .collect(),
                traces: Vec::new(),
            })
            .collect();
        self.observe_decisions(set, &request, &results);
        Checked {
            request_id: std::mem::take(&mut request.request_id),
            policy_version: set.version.clone(),
            results,
            token_error,
        }
    }

    async fn decide(
        &self,
        call: &Call,
        request: CheckRequest,
        set: Arc<PolicySet>,
        explain: bool,
    ) -> Result<Checked, Refusal> {
        let started = Instant::now();
        let limits = engine::Limits {
            explain,
            ..self.engine_limits(call)
        };
        let deadline = limits.deadline;
        let (outcome, mut request) = if self.pool.inline(evaluation::check_weight(&request)) {
            (engine::check_with(&set, &request, &limits), request)
        } else {
            let snapshot = Arc::clone(&set);
            let requested: usize = request.resources.iter().map(|c| c.actions.len()).sum();
            self.pool
                .run(
                    deadline,
                    move || (engine::check_with(&snapshot, &request, &limits), request),
                    |how| {
                        Refusal::new(
                            Code::DeadlineExceeded,
                            format!("deadline exceeded {how} ({requested} decisions requested)"),
                        )
                    },
                )
                .await?
        };
        match outcome {
            Ok(results) => {
                metrics::histogram!(DECISION_SECONDS).record(started.elapsed().as_secs_f64());
                let size = validate::answer_bytes(&results);
                if size > self.limits.max_answer_bytes {
                    return Err(Refusal::new(
                        Code::OutOfRange,
                        format!(
                            "the answer would take about {size} bytes, more than the {} a client \
                             accepts (limits.max_message_bytes): ask for fewer resources or \
                             actions per request",
                            self.limits.max_answer_bytes
                        ),
                    ));
                }
                self.observe_decisions(&set, &request, &results);
                Ok(Checked {
                    request_id: std::mem::take(&mut request.request_id),
                    policy_version: set.version.clone(),
                    results,
                    token_error: None,
                })
            }
            Err(e) => Err(Refusal::new(
                Code::DeadlineExceeded,
                format!(
                    "deadline exceeded after {} of {} decisions",
                    e.decided, e.requested
                ),
            )),
        }
    }

    fn observe_decisions(
        &self,
        set: &PolicySet,
        request: &CheckRequest,
        results: &[ResourceDecisions],
    ) {
        let (mut allowed, mut denied) = (0u64, 0u64);
        let (mut refused, mut warned) = (0u64, 0u64);
        for result in results {
            let mut logged: Option<&Arc<str>> = None;
            for (action, decision) in &result.actions {
                if decision.is_allow() {
                    allowed += 1;
                } else {
                    denied += 1;
                }
                if let Some(violation) = &decision.schema_violation {
                    let reject =
                        set.request_schema().map(|s| s.mode) == Some(ValidationMode::Reject);
                    if reject {
                        refused += 1;
                    } else {
                        warned += 1;
                    }
                    // Once per resource: a violation of the resource is every action's.
                    if !logged.is_some_and(|l| Arc::ptr_eq(l, violation)) {
                        logged = Some(violation);
                        tracing::warn!(
                            request_id = %request.request_id,
                            kind = %result.kind,
                            id = %result.id,
                            action = %action,
                            violation = %violation,
                            "{}",
                            if reject {
                                "the request violates the schema; denied"
                            } else {
                                "the request violates the schema (validation: warn)"
                            }
                        );
                    }
                }
                if decision.evaluation_error {
                    metrics::counter!(EVALUATION_ERRORS_TOTAL).increment(1);
                    tracing::warn!(
                        request_id = %request.request_id,
                        kind = %result.kind,
                        id = %result.id,
                        action = %action,
                        policy = %decision.policy,
                        rule = %decision.rule,
                        reason = %decision.reason,
                        "condition failed to evaluate; denied"
                    );
                }
            }
        }
        metrics::counter!(DECISIONS_TOTAL, "effect" => "allow").increment(allowed);
        metrics::counter!(DECISIONS_TOTAL, "effect" => "deny").increment(denied);
        if refused > 0 {
            metrics::counter!(SCHEMA_VIOLATIONS_TOTAL, "result" => "denied").increment(refused);
        }
        if warned > 0 {
            metrics::counter!(SCHEMA_VIOLATIONS_TOTAL, "result" => "warned").increment(warned);
        }
        tracing::debug!(allowed, denied, version = %set.version, "decided");
        let Some(audit) = &self.audit else { return };
        let with_attributes = audit.include_attributes();
        let decided = results
            .iter()
            .zip(&request.resources)
            .flat_map(|(result, check)| {
                result.actions.iter().map(move |(action, d)| Decided {
                    kind: result.kind.clone(),
                    id: result.id.clone(),
                    action: action.clone(),
                    allow: d.is_allow(),
                    policy: Arc::clone(&d.policy),
                    rule: Arc::clone(&d.rule),
                    reason: Arc::clone(&d.reason),
                    evaluation_error: d.evaluation_error,
                    attributes: with_attributes.then(|| check.resource.attr.clone()),
                })
            })
            .collect();
        audit.record(Entry {
            time: SystemTime::now(),
            request_id: request.request_id.clone(),
            principal_id: request.principal.id.clone(),
            policy_version: set.version.clone(),
            principal_attributes: with_attributes.then(|| request.principal.attr.clone()),
            outcome: Outcome::Check(decided),
        });
    }

    async fn plan_call(
        &self,
        call: &Call,
        decoded: PlanCall,
        span: &Span,
    ) -> Result<Planned, Refusal> {
        let PlanCall {
            request_id,
            mut request,
            token,
            sql,
        } = decoded;
        validate::plan_request(&request, &self.limits).map_err(Refusal::invalid)?;
        if token.is_empty() {
            validate::principal_id(&request.principal).map_err(Refusal::invalid)?;
        }
        let request_id = self.request_id(&request_id, call.header_id.as_deref());
        span.record("request_id", request_id.as_str());
        span.record("kind", request.kind.as_str());
        span.record("action", request.action.as_str());
        let principal = std::mem::take(&mut request.principal);
        match self.subject(call, &token, principal).await? {
            Subject::Principal(principal) => {
                request.principal = principal;
                self.plan_filter(call, request_id, request, sql).await
            }
            Subject::Rejected(error) => Ok(self.plan_denied(request_id, sql, &error)),
        }
    }

    /// ALWAYS_DENIED (SQL `FALSE` when asked for), for a request whose token was rejected.
    fn plan_denied(&self, request_id: String, sql: Option<SqlSpec>, error: &TokenError) -> Planned {
        let set = self.store.current();
        metrics::counter!(PLANS_TOTAL, "kind" => "always_denied").increment(1);
        Planned {
            request_id,
            policy_version: set.version.clone(),
            plan: Plan::AlwaysDenied,
            // `false` names no attribute: rendering cannot fail.
            sql: sql
                .and_then(|(dialect, columns)| sql::render(&Filter::False, dialect, &columns).ok()),
            token_error: Some(error.to_string()),
            schema_violation: None,
        }
    }

    async fn plan_filter(
        &self,
        call: &Call,
        request_id: String,
        request: PlanRequest,
        sql: Option<SqlSpec>,
    ) -> Result<Planned, Refusal> {
        let set = self.store.current();
        let (planned, request) = if self.pool.inline(evaluation::plan_weight(&request)) {
            (plan::plan_explained(&set, &request), request)
        } else {
            let snapshot = Arc::clone(&set);
            self.pool
                .run(
                    self.deadline(call),
                    move || (plan::plan_explained(&snapshot, &request), request),
                    |how| Refusal::new(Code::DeadlineExceeded, format!("deadline exceeded {how}")),
                )
                .await?
        };
        // The kind's declared attributes: the SQL also holds every mapped column to them.
        let declared = set
            .schema
            .as_ref()
            .and_then(|s| s.kind(&request.kind))
            .map(|k| &k.attributes);
        let result = planned
            .map_err(|e| {
                tracing::warn!(request_id = %request_id, policy = %e.policy, rule = %e.rule, "PlanFilter refused: {e}");
                Refusal::new(Code::FailedPrecondition, e.to_string())
            })
            .and_then(|planned| {
                let sql = match &sql {
                    None => None,
                    Some((dialect, columns)) => Some(
                        sql::render_typed(&planned.plan.filter(), *dialect, columns, declared)
                            .map_err(|e| {
                                Refusal::new(Code::InvalidArgument, format!("sql: {e}"))
                            })?,
                    ),
                };
                Ok((planned, sql))
            });
        if let Ok((
            plan::Planned {
                schema_violation: Some(violation),
                ..
            },
            _,
        )) = &result
        {
            metrics::counter!(SCHEMA_VIOLATIONS_TOTAL, "result" => "denied").increment(1);
            tracing::warn!(request_id = %request_id, kind = %request.kind, action = %request.action, violation = %violation, "the request violates the schema; planned ALWAYS_DENIED");
        }
        let result = result.map(|(planned, sql)| (planned.plan, sql, planned.schema_violation));
        let kind = match &result {
            Ok((Plan::AlwaysAllowed, ..)) => "always_allowed",
            Ok((Plan::AlwaysDenied, ..)) => "always_denied",
            Ok((Plan::Conditional(_), ..)) => "conditional",
            Err(_) => "error",
        };
        metrics::counter!(PLANS_TOTAL, "kind" => kind).increment(1);
        if let (Some(audit), Ok((planned, ..))) = (&self.audit, &result) {
            audit.record(Entry {
                time: SystemTime::now(),
                request_id: request_id.clone(),
                principal_id: request.principal.id.clone(),
                policy_version: set.version.clone(),
                principal_attributes: audit
                    .include_attributes()
                    .then(|| request.principal.attr.clone()),
                outcome: Outcome::Plan {
                    kind: request.kind.clone(),
                    action: request.action.clone(),
                    plan: kind,
                    // A filter quotes the principal's attributes (a patient id): opt-in only.
                    filter: match planned {
                        Plan::Conditional(f) if audit.include_attributes() => Some(f.to_string()),
                        _ => None,
                    },
                },
            });
        }
        result.map(|(plan, sql, violation)| Planned {
            request_id,
            policy_version: set.version.clone(),
            plan,
            sql,
            token_error: None,
            schema_violation: violation.map(|v| v.to_string()),
        })
    }
}

/// Records a finished call's metrics and latency: once per call, refused or answered.
fn finish(call: &Call, refusal: Option<&Refusal>) {
    let method = call.method;
    let elapsed = call.started.elapsed();
    let status = refusal.map(|r| code_name(r.code)).unwrap_or("OK");
    metrics::counter!(REQUESTS_TOTAL, "method" => method, "status" => status).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "method" => method).record(elapsed.as_secs_f64());
    tracing::debug!(
        method,
        status,
        elapsed_us = elapsed.as_micros() as u64,
        "request finished"
    );
}

/// The canonical gRPC name of a code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
