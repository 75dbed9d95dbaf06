//! What the daemon tells its operators: logs (text or JSON, via `tracing`), metrics (the
//! `metrics` facade, rendered for Prometheus) and the decision log ([`audit`]).
//!
//! Metric names are constants here so dashboards and tests share them. Recording a metric is a
//! no-op until [`install_metrics`] has installed the Prometheus recorder.

pub mod audit;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{LogConfig, LogFormat};

/// gRPC (and HTTP/JSON) requests by `method` and `status` (a gRPC code name such as `OK`).
pub const REQUESTS_TOTAL: &str = "verdict_requests_total";
/// Request latency in seconds, by `method`.
pub const REQUEST_SECONDS: &str = "verdict_request_duration_seconds";
/// Decisions by `effect` (`allow`, `deny`).
pub const DECISIONS_TOTAL: &str = "verdict_decisions_total";
/// Latency of one (resource, action) decision inside a Check, in seconds.
pub const DECISION_SECONDS: &str = "verdict_decision_duration_seconds";
/// Conditions that failed to evaluate while deciding (each denied), by `effect` of the rule.
pub const EVALUATION_ERRORS_TOTAL: &str = "verdict_evaluation_errors_total";
/// PlanFilter answers by `kind` (`always_allowed`, `always_denied`, `conditional`, `error`).
pub const PLANS_TOTAL: &str = "verdict_plans_total";
/// Requests whose token was rejected, by `reason` (`expired`, `signature`, `unknown_kid`...).
pub const TOKENS_REJECTED_TOTAL: &str = "verdict_tokens_rejected_total";
/// Decision-log lines dropped because the writer could not keep up.
pub const AUDIT_DROPPED_TOTAL: &str = "verdict_audit_dropped_total";
/// Decision-log lines written.
pub const AUDIT_WRITTEN_TOTAL: &str = "verdict_audit_written_total";

/// Sets up `tracing` for the daemon: `format` text or JSON on stderr, `level` a filter
/// (overridden by `VERDICT_LOG` when set). Safe to call more than once (later calls do nothing).
pub fn init_logging(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERDICT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
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
    describe_histogram!(DECISION_SECONDS, Unit::Seconds, "Latency of one decision.");
    describe_counter!(
        EVALUATION_ERRORS_TOTAL,
        "Conditions that failed to evaluate (each ended in deny)."
    );
    describe_counter!(PLANS_TOTAL, "PlanFilter answers by plan kind.");
    describe_counter!(
        AUDIT_DROPPED_TOTAL,
        "Decision-log lines dropped because the writer fell behind."
    );
    describe_counter!(AUDIT_WRITTEN_TOTAL, "Decision-log lines written.");
    describe_counter!(
        TOKENS_REJECTED_TOTAL,
        "Requests whose token was rejected (each denied), by reason."
    );
    describe_counter!(
        crate::token::JWKS_RELOADS_TOTAL,
        "JWKS file reloads by result (ok: new keys published; failed: last good keys kept)."
    );
    describe_counter!(crate::store::RELOADS_TOTAL, "Policy reloads by result.");
    describe_gauge!(
        crate::store::POLICY_INFO,
        "1 for the active policy version, 0 for replaced ones."
    );
    describe_gauge!(
        crate::store::FAILING_TESTS,
        "Test cases the last rejected policy set failed (the reload gate); 0 once a set passes."
    );
    describe_histogram!(
        crate::store::RELOAD_SECONDS,
        Unit::Seconds,
        "Time to load and compile a policy set."
    );
}
