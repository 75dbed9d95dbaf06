//! What the daemon tells its operators: logs (text or JSON, via `tracing`), metrics (the
//! `metrics` facade, rendered for Prometheus) and the decision log ([`audit`]).
//!
//! A leaf: the modules that have something to report (`store`, `token`, `server`) report into it,
//! and it depends on none of them. Every metric name is a constant here, with its labels, so
//! dashboards, tests and the code share them. Recording a metric is a no-op until
//! [`install_metrics`] has installed the Prometheus recorder.

pub mod audit;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter, labels `method` (`Check`, `PlanFilter`, `Status`, `http/v1/check`, `http/v1/plan`,
/// `http/v1/status`) and `status` (a gRPC code name such as `OK`): every API call, refused ones
/// included.
pub const REQUESTS_TOTAL: &str = "verdict_requests_total";
/// Histogram, seconds, label `method`: from a call's arrival to its answer.
pub const REQUEST_SECONDS: &str = "verdict_request_duration_seconds";
/// Counter, label `effect` (`allow`, `deny`): one per decided (resource, action).
pub const DECISIONS_TOTAL: &str = "verdict_decisions_total";
/// Histogram, seconds, no labels: the time the engine took to decide one Check, all its
/// resources and actions.
pub const DECISION_SECONDS: &str = "verdict_decision_duration_seconds";
/// Counter, no labels: conditions that failed to evaluate while deciding (each ended in a deny).
pub const EVALUATION_ERRORS_TOTAL: &str = "verdict_evaluation_errors_total";
/// Counter, label `result` (`denied` under validation `reject`, `warned` under `warn`): decisions
/// on requests that violate the policy set's schema, and PlanFilter requests that do.
pub const SCHEMA_VIOLATIONS_TOTAL: &str = "verdict_schema_violations_total";
/// Counter, label `kind` (`always_allowed`, `always_denied`, `conditional`, `error`): PlanFilter
/// answers.
pub const PLANS_TOTAL: &str = "verdict_plans_total";
/// Counter, labels `searched` (`subject`, `resource`, `action`) and `by` (`plan`: a resource
/// search answered by planning, no decision made; `decisions`: each candidate decided): searches
/// over stored entities (AuthZEN).
pub const SEARCHES_TOTAL: &str = "verdict_searches_total";
/// Counter, label `reason` (`too_large`, `malformed`, `unsigned`, `symmetric`, `algorithm`,
/// `unknown_key`, `algorithm_mismatch`, `signature`, `expired`, `not_yet_valid`, `issuer`,
/// `audience`, `claims`, `unverifiable`): requests whose token was rejected.
pub const TOKENS_REJECTED_TOTAL: &str = "verdict_tokens_rejected_total";
/// Counter, no labels: large requests refused with RESOURCE_EXHAUSTED (HTTP 429) because the
/// evaluation pool was full.
pub const OVERLOADED_TOTAL: &str = "verdict_overloaded_total";
/// Counter, no labels: decision-log lines dropped because the writer could not keep up.
pub const AUDIT_DROPPED_TOTAL: &str = "verdict_audit_dropped_total";
/// Counter, no labels: decision-log lines written.
pub const AUDIT_WRITTEN_TOTAL: &str = "verdict_audit_written_total";
/// Counter, label `result` (`ok`, `failed`): policy reload attempts that published a new set or
/// rejected a broken one (unchanged content is neither).
pub const POLICY_RELOADS_TOTAL: &str = "verdict_policy_reloads_total";
/// Gauge, label `version`: 1 for the active policy set's version, 0 for versions it replaced.
pub const POLICY_INFO: &str = "verdict_policy_info";
/// Histogram, seconds, no labels: load and compile time of each published policy set.
pub const POLICY_RELOAD_SECONDS: &str = "verdict_policy_reload_duration_seconds";
/// Gauge, no labels: test cases the last rejected policy set failed (the reload gate); 0 once a
/// set passes or the files are back to the active set's.
pub const POLICY_FAILING_TESTS: &str = "verdict_policy_failing_tests";
/// Counter, label `result` (`ok`: new keys published; `failed`: a broken or unreadable file,
/// the last good keys kept): JWKS reload attempts.
pub const JWKS_RELOADS_TOTAL: &str = "verdict_jwks_reloads_total";
/// Counter, label `outcome`: fetches of a JWKS URL (or an OpenID Connect issuer's): `ok` (new
/// keys published), `unchanged` (the same key set), `not_modified` (304 to a conditional
/// request), and failures, after each of which the last good keys stay: `network` (connect, TLS,
/// timeout), `http_status` (not 200, redirects included), `too_large`, `invalid` (not a usable
/// JWKS: bad JSON, broken keys, no usable key), `discovery` (the discovery document unreachable,
/// of another issuer, or without `jwks_uri`).
pub const JWKS_FETCHES_TOTAL: &str = "verdict_jwks_fetches_total";
/// Gauge, seconds, no labels: time since the keys fetched from a URL were last confirmed (a
/// key set or 304), brought up to date every 5 s.
pub const JWKS_AGE_SECONDS: &str = "verdict_jwks_age_seconds";
/// Gauge, Unix time in seconds, no labels: when the keys fetched from a URL were last confirmed.
pub const JWKS_LAST_SUCCESS_SECONDS: &str = "verdict_jwks_last_success_timestamp_seconds";
/// Counter, label `result`: tokens naming a key id the fetched set does not have: `refresh` (a
/// fetch was asked for and the request waited for it), `joined` (the request waited for a fetch
/// already asked for), `rate_limited` (no fetch: the request was denied at once).
pub const JWKS_UNKNOWN_KID_TOTAL: &str = "verdict_jwks_unknown_kid_total";
/// Counter, label `result` (`ok`: new certificates published; `failed`: the current ones kept):
/// TLS certificate reload attempts.
pub const TLS_RELOADS_TOTAL: &str = "verdict_tls_reloads_total";
/// Counter: web UI requests refused because their `Host` is not a name the UI answers to
/// (`ui.allowed_hosts`; DNS rebinding, or a proxy's name not allowed).
pub const UI_HOST_REFUSED_TOTAL: &str = "verdict_ui_host_refused_total";

/// Sets up `tracing`: text (`json` false) or JSON on stderr, `level` a filter (overridden by
/// `VERDICT_LOG` when set). Safe to call more than once (later calls do nothing).
pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERDICT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the handle that renders the
/// exposition text.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    if let Some(handle) = METRICS.get() {
        return Ok(handle.clone());
    }
    let seconds = [
        0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    describe_metrics();
    Ok(METRICS.get_or_init(|| handle).clone())
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS_TOTAL, "Requests by method and gRPC status.");
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "Request latency by method.");
    describe_counter!(DECISIONS_TOTAL, "Decisions by effect.");
    describe_histogram!(
        DECISION_SECONDS,
        Unit::Seconds,
        "Time the engine took to decide one Check (all its resources and actions)."
    );
    describe_counter!(
        EVALUATION_ERRORS_TOTAL,
        "Conditions that failed to evaluate (each ended in deny)."
    );
    describe_counter!(
        SCHEMA_VIOLATIONS_TOTAL,
        "Decisions and plans on requests that violate the schema, by what they got."
    );
    describe_counter!(PLANS_TOTAL, "PlanFilter answers by plan kind.");
    describe_counter!(
        SEARCHES_TOTAL,
        "Searches over stored entities, by what was searched and how it was answered."
    );
    describe_counter!(
        AUDIT_DROPPED_TOTAL,
        "Decision-log lines dropped because the writer fell behind."
    );
    describe_counter!(AUDIT_WRITTEN_TOTAL, "Decision-log lines written.");
    describe_counter!(
        OVERLOADED_TOTAL,
        "Large requests refused (RESOURCE_EXHAUSTED, HTTP 429) because the evaluation pool was full."
    );
    describe_counter!(
        TOKENS_REJECTED_TOTAL,
        "Requests whose token was rejected (each denied), by reason."
    );
    describe_counter!(
        JWKS_RELOADS_TOTAL,
        "JWKS file reloads by result (ok: new keys published; failed: last good keys kept)."
    );
    describe_counter!(
        JWKS_FETCHES_TOTAL,
        "JWKS URL fetches by outcome (ok, unchanged, not_modified; failures keep the last good keys)."
    );
    describe_gauge!(
        JWKS_AGE_SECONDS,
        Unit::Seconds,
        "Time since the keys fetched from the JWKS URL were last confirmed."
    );
    describe_gauge!(
        JWKS_LAST_SUCCESS_SECONDS,
        Unit::Seconds,
        "Unix time when the keys fetched from the JWKS URL were last confirmed."
    );
    describe_counter!(
        JWKS_UNKNOWN_KID_TOTAL,
        "Tokens naming an unknown key id, by what followed (refresh, joined, rate_limited)."
    );
    describe_counter!(
        TLS_RELOADS_TOTAL,
        "TLS certificate reloads by result (ok: new certificates; failed: current ones kept)."
    );
    describe_counter!(
        UI_HOST_REFUSED_TOTAL,
        "Web UI requests refused (403) for a Host the UI does not answer to (ui.allowed_hosts)."
    );
    describe_counter!(POLICY_RELOADS_TOTAL, "Policy reloads by result.");
    describe_gauge!(
        POLICY_INFO,
        "1 for the active policy version, 0 for replaced ones."
    );
    describe_gauge!(
        POLICY_FAILING_TESTS,
        "Test cases the last rejected policy set failed (the reload gate); 0 once a set passes."
    );
    describe_histogram!(
        POLICY_RELOAD_SECONDS,
        Unit::Seconds,
        "Time to load and compile a policy set."
    );
}
