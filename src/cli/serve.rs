//! `verdict serve`: flags and environment merged over the config file, then [`crate::daemon::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::config::{Config, Endpoint, LogFormat};

/// Flags of `verdict serve`. Every flag is optional: unset, it takes the value from the
/// environment variable, then from `--config`, then the default shown.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// YAML config file with any of the settings below (see docs/configuration.md).
    #[arg(long, env = "VERDICT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of policy files (*.yaml), read recursively. [default: policies]
    #[arg(long, env = "VERDICT_POLICIES")]
    pub policies: Option<PathBuf>,
    /// gRPC listen address. [default: 127.0.0.1:50051]
    #[arg(long, env = "VERDICT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Watch the policy directory and reload when it changes. [default]
    #[arg(long, overrides_with = "no_watch")]
    pub watch: bool,
    /// Do not watch the policy directory: reload only on SIGHUP and on the poll.
    #[arg(long, env = "VERDICT_NO_WATCH", overrides_with = "watch")]
    pub no_watch: bool,
    /// Quiet period after a burst of file changes before reloading, in ms. [default: 200]
    #[arg(long, env = "VERDICT_RELOAD_DEBOUNCE_MS")]
    pub reload_debounce_ms: Option<u64>,
    /// Reload every this many seconds even without file events (unchanged files are only hashed);
    /// 0 turns it off. [default: 30]
    #[arg(long, env = "VERDICT_RELOAD_POLL_SECS")]
    pub reload_poll_secs: Option<u64>,
    /// When the policy directory holds test suites (`*_test.yaml`), a set goes live (at start or
    /// on reload) only if they all pass; `--reload-require-tests=false` turns the gate off.
    /// [default: true]
    #[arg(long, env = "VERDICT_RELOAD_REQUIRE_TESTS", num_args = 0..=1, default_missing_value = "true")]
    pub reload_require_tests: Option<bool>,
    /// Most resources one Check may carry. [default: 1000]
    #[arg(long, env = "VERDICT_MAX_RESOURCES")]
    pub max_resources: Option<usize>,
    /// Most actions one resource of a Check may carry. [default: 100]
    #[arg(long, env = "VERDICT_MAX_ACTIONS")]
    pub max_actions: Option<usize>,
    /// Most decisions (resources times their actions) one Check may ask for. [default: 10000]
    #[arg(long, env = "VERDICT_MAX_DECISIONS")]
    pub max_decisions: Option<usize>,
    /// Large requests deciding at once, on threads beside the async runtime; 0 = one per core.
    /// [default: 0]
    #[arg(long, env = "VERDICT_EVALUATION_THREADS")]
    pub evaluation_threads: Option<usize>,
    /// Large requests waiting for an evaluation thread; beyond, RESOURCE_EXHAUSTED (HTTP 429).
    /// [default: 16]
    #[arg(long, env = "VERDICT_EVALUATION_QUEUE")]
    pub evaluation_queue: Option<usize>,
    /// Deepest nesting of attribute values accepted. [default: 16]
    #[arg(long, env = "VERDICT_MAX_ATTR_DEPTH")]
    pub max_attr_depth: Option<usize>,
    /// Largest request message accepted, in bytes. [default: 4194304]
    #[arg(long, env = "VERDICT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Server-side deadline of a request in ms (a shorter client deadline wins); 0 = none.
    /// [default: 5000]
    #[arg(long, env = "VERDICT_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Most steps one condition may take on a request's values (comprehensions over request
    /// lists): over it, the condition fails closed naming its rule; 0 = no budget.
    /// [default: 1000000]
    #[arg(long, env = "VERDICT_MAX_CONDITION_COST")]
    pub max_condition_cost: Option<u64>,
    /// PEM certificate chain: with --tls-key, the listeners speak TLS only. [default: off]
    #[arg(long, env = "VERDICT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "VERDICT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS). [default: off]
    #[arg(long, env = "VERDICT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// How often the TLS files are checked for changes whatever the file events say, in seconds.
    /// [default: 10]
    #[arg(long, env = "VERDICT_TLS_RELOAD_SECS")]
    pub tls_reload_secs: Option<u64>,
    /// Prometheus endpoint address (GET /metrics), or `off`. [default: off]
    #[arg(long, env = "VERDICT_METRICS_LISTEN")]
    pub metrics_listen: Option<Endpoint>,
    /// HTTP/JSON API address (POST /v1/check, /v1/plan), or `off`. [default: off]
    #[arg(long, env = "VERDICT_HTTP_LISTEN")]
    pub http_listen: Option<Endpoint>,
    /// Web UI address (access matrix, playground, diff of the last reload; read-only), or `off`.
    /// Bind it to loopback (127.0.0.1:8081) or put it behind authentication. [default: off]
    #[arg(long, env = "VERDICT_UI_LISTEN")]
    pub ui_listen: Option<Endpoint>,
    /// A host name the web UI answers to besides localhost and IP addresses: the name a proxy
    /// reaches it under (`.example.org`: that domain and every name under it). Repeat, or
    /// separate with commas; other hosts are refused (DNS rebinding). [default: none]
    #[arg(long, env = "VERDICT_UI_ALLOWED_HOSTS", value_delimiter = ',')]
    pub ui_allowed_host: Vec<String>,
    /// The base URL AuthZEN clients reach this server at, for its metadata
    /// (/.well-known/authzen-configuration). [default: the listener's scheme and the Host header]
    #[arg(long, env = "VERDICT_AUTHZEN_BASE_URL")]
    pub authzen_base_url: Option<String>,
    /// Put Verdict's reason in AuthZEN decisions' context (reasons can quote request values).
    /// [default: true]
    #[arg(long, env = "VERDICT_AUTHZEN_REASONS", num_args = 0..=1, default_missing_value = "true")]
    pub authzen_reasons: Option<bool>,
    /// Log format. [default: text]
    #[arg(long, env = "VERDICT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `verdict=debug` (VERDICT_LOG overrides it). [default: info]
    #[arg(long, env = "VERDICT_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Write the decision log (one JSON line per decision). [default: off]
    #[arg(long, env = "VERDICT_AUDIT", num_args = 0..=1, default_missing_value = "true")]
    pub audit: Option<bool>,
    /// Where the decision log goes: `stdout` or a file path. [default: stdout]
    #[arg(long, env = "VERDICT_AUDIT_OUTPUT")]
    pub audit_output: Option<String>,
    /// Put principal and resource attributes (patient data) in the decision log. [default: false]
    #[arg(long, env = "VERDICT_AUDIT_INCLUDE_ATTRIBUTES", num_args = 0..=1, default_missing_value = "true")]
    pub audit_include_attributes: Option<bool>,
    /// Decisions queued for the log writer; beyond, lines are dropped and counted. [default: 10000]
    #[arg(long, env = "VERDICT_AUDIT_BUFFER")]
    pub audit_buffer: Option<usize>,
    /// After SIGTERM, seconds of NOT_SERVING health before new connections are refused.
    /// [default: 0]
    #[arg(long, env = "VERDICT_SHUTDOWN_DRAIN_SECS")]
    pub shutdown_drain_secs: Option<u64>,
    /// Then, the longest wait for in-flight requests, in seconds. [default: 30]
    #[arg(long, env = "VERDICT_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// JWKS file with the token issuer's public keys (RS256, ES256, EdDSA): requests may then
    /// carry a JWT instead of a principal. [default: off]
    #[arg(long, env = "VERDICT_JWKS_FILE", help_heading = "Token verification")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (https) of the token issuer: the keys are fetched from it, refreshed as its
    /// caching headers say and when a token names an unknown key id. [default: off]
    #[arg(long, env = "VERDICT_JWKS_URL", help_heading = "Token verification")]
    pub jwks_url: Option<String>,
    /// OpenID Connect issuer (https): its /.well-known/openid-configuration names the JWKS URL
    /// and must name this issuer exactly; tokens must carry it as `iss`. [default: off]
    #[arg(long, env = "VERDICT_OIDC_ISSUER", help_heading = "Token verification")]
    pub oidc_issuer: Option<String>,
    /// PEM file of the CA certificates the JWKS server is verified with, instead of Mozilla's
    /// roots (a private CA). [default: Mozilla's roots]
    #[arg(
        long,
        env = "VERDICT_JWKS_CA_FILE",
        help_heading = "Token verification"
    )]
    pub jwks_ca_file: Option<PathBuf>,
    /// Accept plain http:// JWKS and issuer URLs to a loopback host (localhost, 127.0.0.1,
    /// [::1]): for development only. [default: false]
    #[arg(long, env = "VERDICT_JWKS_ALLOW_HTTP_LOOPBACK", num_args = 0..=1, default_missing_value = "true", help_heading = "Token verification")]
    pub jwks_allow_http_loopback: Option<bool>,
    /// Bound on each JWKS fetch, in seconds; also how long a request whose token names an
    /// unknown key id waits for the refresh. [default: 5]
    #[arg(
        long,
        env = "VERDICT_JWKS_TIMEOUT_SECS",
        help_heading = "Token verification"
    )]
    pub jwks_timeout_secs: Option<u64>,
    /// The shortest interval between scheduled JWKS fetches, whatever the caching headers say,
    /// in seconds; also the retry delay after a failed fetch. [default: 60]
    #[arg(
        long,
        env = "VERDICT_JWKS_REFRESH_MIN_SECS",
        help_heading = "Token verification"
    )]
    pub jwks_refresh_min_secs: Option<u64>,
    /// The longest interval between scheduled JWKS fetches, whatever the caching headers say,
    /// in seconds. [default: 3600]
    #[arg(
        long,
        env = "VERDICT_JWKS_REFRESH_MAX_SECS",
        help_heading = "Token verification"
    )]
    pub jwks_refresh_max_secs: Option<u64>,
    /// At most one JWKS fetch for tokens with unknown key ids per this many seconds (others are
    /// denied at once). [default: 10]
    #[arg(
        long,
        env = "VERDICT_JWKS_UNKNOWN_KID_SECS",
        help_heading = "Token verification"
    )]
    pub jwks_unknown_kid_secs: Option<u64>,
    /// The `iss` every token must carry (required with --jwks-file or --jwks-url; with
    /// --oidc-issuer, that issuer).
    #[arg(
        long,
        env = "VERDICT_TOKEN_ISSUER",
        help_heading = "Token verification"
    )]
    pub token_issuer: Option<String>,
    /// An audience of this deployment: a token's `aud` must name one. Repeat, or separate with
    /// commas (required with --jwks-file).
    #[arg(
        long,
        env = "VERDICT_TOKEN_AUDIENCE",
        value_delimiter = ',',
        help_heading = "Token verification"
    )]
    pub token_audience: Vec<String>,
    /// Claim that becomes the principal's id, as a dotted path; a token without it, or with it
    /// empty, is rejected. [default: sub]
    #[arg(
        long,
        env = "VERDICT_TOKEN_SUBJECT_CLAIM",
        help_heading = "Token verification"
    )]
    pub token_subject_claim: Option<String>,
    /// Claim holding the roles, as a dotted path (`realm_access.roles`). [default: roles]
    #[arg(
        long,
        env = "VERDICT_TOKEN_ROLES_CLAIM",
        help_heading = "Token verification"
    )]
    pub token_roles_claim: Option<String>,
    /// Claim holding the capabilities, as a dotted path. [default: capabilities]
    #[arg(
        long,
        env = "VERDICT_TOKEN_CAPABILITIES_CLAIM",
        help_heading = "Token verification"
    )]
    pub token_capabilities_claim: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. [default: 30]
    #[arg(
        long,
        env = "VERDICT_TOKEN_LEEWAY_SECS",
        help_heading = "Token verification"
    )]
    pub token_leeway_secs: Option<u64>,
    /// Refuse requests without a token: principals come only from verified tokens.
    /// [default: false]
    #[arg(long, env = "VERDICT_REQUIRE_TOKEN", num_args = 0..=1, default_missing_value = "true", help_heading = "Token verification")]
    pub require_token: Option<bool>,
    /// How often the JWKS file is checked for changes whatever the file events say, in seconds
    /// (SIGHUP checks at once).
    /// [default: 2]
    #[arg(
        long,
        env = "VERDICT_JWKS_RELOAD_SECS",
        help_heading = "Token verification"
    )]
    pub jwks_reload_secs: Option<u64>,
}

impl ServeArgs {
    /// The settings: defaults, overridden by the config file, then by environment and flags.
    pub fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)
                .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
            None => Config::default(),
        };
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        set(&mut c.policies, &self.policies);
        set(&mut c.listen, &self.listen);
        if self.no_watch {
            c.reload.watch = false;
        } else if self.watch {
            c.reload.watch = true;
        }
        set(&mut c.reload.debounce_ms, &self.reload_debounce_ms);
        set(&mut c.reload.poll_secs, &self.reload_poll_secs);
        set(&mut c.reload.require_tests, &self.reload_require_tests);
        set(&mut c.limits.max_resources, &self.max_resources);
        set(&mut c.limits.max_actions, &self.max_actions);
        set(&mut c.limits.max_decisions, &self.max_decisions);
        set(&mut c.evaluation.threads, &self.evaluation_threads);
        set(&mut c.evaluation.queue, &self.evaluation_queue);
        set(&mut c.limits.max_attr_depth, &self.max_attr_depth);
        set(&mut c.limits.max_message_bytes, &self.max_message_bytes);
        set(&mut c.limits.request_timeout_ms, &self.request_timeout_ms);
        set(&mut c.limits.max_condition_cost, &self.max_condition_cost);
        if self.tls_cert.is_some() {
            c.tls.cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            c.tls.key = self.tls_key.clone();
        }
        if self.tls_client_ca.is_some() {
            c.tls.client_ca = self.tls_client_ca.clone();
        }
        set(&mut c.tls.reload_secs, &self.tls_reload_secs);
        set(&mut c.metrics.listen, &self.metrics_listen);
        set(&mut c.http.listen, &self.http_listen);
        set(&mut c.ui.listen, &self.ui_listen);
        if !self.ui_allowed_host.is_empty() {
            c.ui.allowed_hosts = self.ui_allowed_host.clone();
        }
        if self.authzen_base_url.is_some() {
            c.http.authzen_base_url = self.authzen_base_url.clone();
        }
        set(&mut c.http.authzen_reasons, &self.authzen_reasons);
        set(&mut c.log.format, &self.log_format);
        set(&mut c.log.level, &self.log_level);
        set(&mut c.audit.enabled, &self.audit);
        set(&mut c.audit.output, &self.audit_output);
        set(
            &mut c.audit.include_attributes,
            &self.audit_include_attributes,
        );
        set(&mut c.audit.buffer, &self.audit_buffer);
        set(&mut c.shutdown.drain_secs, &self.shutdown_drain_secs);
        set(&mut c.shutdown.timeout_secs, &self.shutdown_timeout_secs);
        if self.jwks_file.is_some() {
            c.tokens.jwks_file = self.jwks_file.clone();
        }
        if self.jwks_url.is_some() {
            c.tokens.jwks_url = self.jwks_url.clone();
        }
        if self.oidc_issuer.is_some() {
            c.tokens.oidc_issuer = self.oidc_issuer.clone();
        }
        if self.jwks_ca_file.is_some() {
            c.tokens.jwks_ca_file = self.jwks_ca_file.clone();
        }
        set(
            &mut c.tokens.jwks_allow_http_loopback,
            &self.jwks_allow_http_loopback,
        );
        set(&mut c.tokens.jwks_timeout_secs, &self.jwks_timeout_secs);
        set(
            &mut c.tokens.jwks_refresh_min_secs,
            &self.jwks_refresh_min_secs,
        );
        set(
            &mut c.tokens.jwks_refresh_max_secs,
            &self.jwks_refresh_max_secs,
        );
        set(
            &mut c.tokens.jwks_unknown_kid_secs,
            &self.jwks_unknown_kid_secs,
        );
        if self.token_issuer.is_some() {
            c.tokens.issuer = self.token_issuer.clone();
        }
        if !self.token_audience.is_empty() {
            c.tokens.audiences = self.token_audience.clone();
        }
        set(&mut c.tokens.subject_claim, &self.token_subject_claim);
        set(&mut c.tokens.roles_claim, &self.token_roles_claim);
        set(
            &mut c.tokens.capabilities_claim,
            &self.token_capabilities_claim,
        );
        set(&mut c.tokens.leeway_secs, &self.token_leeway_secs);
        set(&mut c.tokens.required, &self.require_token);
        set(&mut c.tokens.reload_secs, &self.jwks_reload_secs);
        c.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(c)
    }
}

/// Runs the daemon with the settings the flags, environment and config file give.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = args.config()?;
    crate::telemetry::init_logging(&config.log.level, config.log.format == LogFormat::Json);
    crate::daemon::run(config).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["verdict", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn reload_flags() {
        let defaults = serve_args(&[]).config().unwrap();
        assert!(defaults.reload.watch);
        assert_eq!(defaults.reload.debounce_ms, 200);
        assert_eq!(defaults.reload.poll_secs, 30);
        assert!(!serve_args(&["--no-watch"]).config().unwrap().reload.watch);
        assert!(
            serve_args(&["--no-watch", "--watch"])
                .config()
                .unwrap()
                .reload
                .watch
        );
        assert!(
            !serve_args(&["--watch", "--no-watch"])
                .config()
                .unwrap()
                .reload
                .watch
        );
        let tuned = serve_args(&["--reload-debounce-ms", "50", "--reload-poll-secs", "0"])
            .config()
            .unwrap();
        assert_eq!((tuned.reload.debounce_ms, tuned.reload.poll_secs), (50, 0));
        assert!(
            defaults.reload.require_tests,
            "the reload gate is on by default"
        );
        let ungated = serve_args(&["--reload-require-tests=false"])
            .config()
            .unwrap();
        assert!(!ungated.reload.require_tests);
        let gated = serve_args(&["--reload-require-tests"]).config().unwrap();
        assert!(gated.reload.require_tests);
    }

    #[test]
    fn ui_allowed_hosts_repeat_or_take_commas_and_bad_names_are_refused() {
        assert!(serve_args(&[])
            .config()
            .unwrap()
            .ui
            .allowed_hosts
            .is_empty());
        let c = serve_args(&[
            "--ui-allowed-host",
            "verdict.example.org",
            "--ui-allowed-host",
            ".corp.example,ui.local",
        ])
        .config()
        .unwrap();
        assert_eq!(
            c.ui.allowed_hosts,
            ["verdict.example.org", ".corp.example", "ui.local"]
        );
        let err = serve_args(&["--ui-allowed-host", "https://verdict.example.org"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("ui.allowed_hosts"), "{err}");
    }

    #[test]
    fn the_subject_claim_flag() {
        assert_eq!(
            serve_args(&[]).config().unwrap().tokens.subject_claim,
            "sub"
        );
        let c = serve_args(&["--token-subject-claim", "ext.uid"])
            .config()
            .unwrap();
        assert_eq!(c.tokens.subject_claim, "ext.uid");
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("verdict.yaml");
        std::fs::write(
            &file,
            "listen: 0.0.0.0:6000
limits: {max_resources: 7, max_actions: 8}
audit: {enabled: true}
",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = serve_args(&[
            "--config",
            path,
            "--max-actions",
            "9",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--audit=false",
        ])
        .config()
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:6000", "from the file");
        assert_eq!(c.limits.max_resources, 7, "from the file");
        assert_eq!(c.limits.max_actions, 9, "the flag wins");
        assert_eq!(c.limits.max_attr_depth, 16, "the default");
        assert_eq!(c.metrics.listen.0.unwrap().port(), 9464);
        assert!(!c.audit.enabled, "--audit=false overrides the file");
        assert!(serve_args(&["--audit"]).config().unwrap().audit.enabled);
        let err = serve_args(&["--tls-key", "k.pem"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.cert and tls.key go together"), "{err}");
        std::fs::write(&file, "listen: [oops\n").unwrap();
        let err = serve_args(&["--config", path])
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid configuration") && err.contains("verdict.yaml"),
            "{err}"
        );
    }
}
