//! What a request goes through between its wire format and the engine, the same for gRPC and the
//! HTTP/JSON API: a request id, who it is about (its principal, or the one its token proves), one
//! policy-set snapshot, the deadline, the engine or the planner, and what operators see of it (a
//! span with its latency, metrics, the decision log, a warning for every evaluation error).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tonic::Code;

use super::convert::Limits;
use crate::compile::PolicySet;
use crate::engine::{self, Decision, ResourceDecisions};
use crate::filter::sql::{self, Dialect, SqlFilter};
use crate::filter::Filter;
use crate::plan::{self, Plan, PlanRequest};
use crate::policy::Effect;
use crate::request::{CheckRequest, Principal};
use crate::store::PolicyStore;
use crate::telemetry::audit::{AuditLog, Decided, Entry, Outcome};
use crate::telemetry::{
    DECISIONS_TOTAL, DECISION_SECONDS, EVALUATION_ERRORS_TOTAL, PLANS_TOTAL, REQUESTS_TOTAL,
    REQUEST_SECONDS, TOKENS_REJECTED_TOTAL,
};
use crate::token::{TokenError, Verifier};

/// SQL rendering asked for with a plan: dialect and attribute-to-column map.
pub type SqlSpec = (Dialect, HashMap<String, String>);

/// A request refused before or while deciding: a gRPC code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<Refusal> for tonic::Status {
    fn from(r: Refusal) -> Self {
        tonic::Status::new(r.code, r.message)
    }
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
}

/// Who a request is about.
pub enum Subject {
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
}

/// Prefix of generated request ids, different per process.
static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn request_id(given: &str) -> String {
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
        }
    }

    /// Lets requests carry a JWT, verified by `tokens`, instead of a principal.
    pub fn with_tokens(mut self, tokens: Option<Arc<Verifier>>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Who a request is about: the principal its token proves (`token` non-empty), or the one it
    /// carried. Refused (INVALID_ARGUMENT): a token when verification is not configured, a token
    /// next to a non-empty principal (ambiguous), no token when one is required. A token that
    /// fails verification is [`Subject::Rejected`], not a refusal: the answer is a deny.
    pub fn subject(&self, token: &str, principal: Principal) -> Result<Subject, Refusal> {
        if token.is_empty() {
            if self.tokens.as_ref().is_some_and(|t| t.required()) {
                return Err(Refusal::new(
                    Code::InvalidArgument,
                    "token: this server requires a token (--require-token); a principal alone \
                     is not accepted",
                ));
            }
            return Ok(Subject::Principal(principal));
        }
        let Some(verifier) = &self.tokens else {
            return Err(Refusal::new(
                Code::InvalidArgument,
                "token: given, but token verification is not configured on this server \
                 (--jwks-file)",
            ));
        };
        if !principal.is_empty() {
            return Err(Refusal::new(
                Code::InvalidArgument,
                "send either token or principal, not both: the token's claims are the principal",
            ));
        }
        match verifier.verify(token) {
            Ok(principal) => Ok(Subject::Principal(principal)),
            Err(e) => {
                tracing::info!(reason = %e, "token rejected");
                metrics::counter!(TOKENS_REJECTED_TOTAL, "reason" => e.label()).increment(1);
                Ok(Subject::Rejected(e))
            }
        }
    }

    /// The answer to a validated Check whose token was rejected: every action denied, with the
    /// reason `token rejected: ...`; recorded like any other Check.
    pub fn check_rejected(
        &self,
        method: &'static str,
        mut request: CheckRequest,
        error: &TokenError,
    ) -> Checked {
        let started = Instant::now();
        let set = self.store.current();
        let denied = Decision {
            effect: Effect::Deny,
            policy: "".into(),
            rule: "".into(),
            reason: format!("token rejected: {error}").into(),
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
            })
            .collect();
        self.observe_decisions(&set, &request, &results);
        finish(method, started, None);
        Checked {
            request_id: std::mem::take(&mut request.request_id),
            policy_version: set.version.clone(),
            results,
            token_error: Some(error.to_string()),
        }
    }

    /// The answer to a validated PlanFilter whose token was rejected: ALWAYS_DENIED (SQL `FALSE`
    /// when asked for).
    pub fn plan_rejected(
        &self,
        method: &'static str,
        request_id: String,
        sql: Option<SqlSpec>,
        error: &TokenError,
    ) -> Planned {
        let started = Instant::now();
        let set = self.store.current();
        metrics::counter!(PLANS_TOTAL, "kind" => "always_denied").increment(1);
        finish(method, started, None);
        Planned {
            request_id,
            policy_version: set.version.clone(),
            plan: Plan::AlwaysDenied,
            // `false` names no attribute: rendering cannot fail.
            sql: sql
                .and_then(|(dialect, columns)| sql::render(&Filter::False, dialect, &columns).ok()),
            token_error: Some(error.to_string()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &Arc<PolicyStore> {
        &self.store
    }

    /// The request id to use: the caller's (`request_id` field, else `x-request-id`), or a new one.
    pub fn request_id(&self, field: &str, header: Option<&str>) -> String {
        request_id(if field.is_empty() {
            header.unwrap_or("")
        } else {
            field
        })
    }

    fn deadline(&self, client: Option<Duration>, started: Instant) -> Option<Instant> {
        let budget = match (self.timeout, client) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        budget.map(|b| started + b)
    }

    /// Decides a validated Check. `client_deadline` is the caller's own (`grpc-timeout`).
    pub fn check(
        &self,
        method: &'static str,
        mut request: CheckRequest,
        client_deadline: Option<Duration>,
    ) -> Result<Checked, Refusal> {
        let started = Instant::now();
        // A debug span: at info level, building it for every request would cost more than the
        // decision; the events that matter at info and above carry the request id themselves.
        let span = tracing::debug_span!("check", request_id = %request.request_id, resources = request.resources.len());
        let _entered = span.enter();
        let set = self.store.current();
        let outcome = engine::check_until(&set, &request, self.deadline(client_deadline, started));
        let decided_in = started.elapsed();
        let result = match outcome {
            Ok(results) => {
                metrics::histogram!(DECISION_SECONDS).record(decided_in.as_secs_f64());
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
        };
        finish(method, started, result.as_ref().err());
        result
    }

    fn observe_decisions(
        &self,
        set: &PolicySet,
        request: &CheckRequest,
        results: &[ResourceDecisions],
    ) {
        let (mut allowed, mut denied) = (0u64, 0u64);
        for result in results {
            for (action, decision) in &result.actions {
                if decision.is_allow() {
                    allowed += 1;
                } else {
                    denied += 1;
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

    /// Plans a validated PlanFilter, rendering SQL when asked.
    pub fn plan(
        &self,
        method: &'static str,
        request_id: String,
        request: PlanRequest,
        sql: Option<SqlSpec>,
    ) -> Result<Planned, Refusal> {
        let started = Instant::now();
        let span = tracing::debug_span!("plan", request_id = %request_id, kind = %request.kind, action = %request.action);
        let _entered = span.enter();
        let set = self.store.current();
        let result = plan::plan(&set, &request)
            .map_err(|e| {
                tracing::warn!(request_id = %request_id, policy = %e.policy, rule = %e.rule, "PlanFilter refused: {e}");
                Refusal::new(Code::FailedPrecondition, e.to_string())
            })
            .and_then(|planned| {
                let sql = match &sql {
                    None => None,
                    Some((dialect, columns)) => Some(
                        sql::render(&planned.filter(), *dialect, columns).map_err(|e| {
                            Refusal::new(Code::InvalidArgument, format!("sql: {e}"))
                        })?,
                    ),
                };
                Ok((planned, sql))
            });
        let kind = match &result {
            Ok((Plan::AlwaysAllowed, _)) => "always_allowed",
            Ok((Plan::AlwaysDenied, _)) => "always_denied",
            Ok((Plan::Conditional(_), _)) => "conditional",
            Err(_) => "error",
        };
        metrics::counter!(PLANS_TOTAL, "kind" => kind).increment(1);
        if let (Some(audit), Ok((planned, _))) = (&self.audit, &result) {
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
        finish(method, started, result.as_ref().err());
        result.map(|(plan, sql)| Planned {
            request_id,
            policy_version: set.version.clone(),
            plan,
            sql,
            token_error: None,
        })
    }
}

/// Records a finished request's metrics and latency.
pub fn finish(method: &'static str, started: Instant, refusal: Option<&Refusal>) {
    let elapsed = started.elapsed();
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
