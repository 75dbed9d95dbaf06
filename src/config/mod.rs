//! The daemon's settings: one YAML file (`verdict serve --config FILE`), every setting also
//! settable by environment variable and command-line flag (flag > environment > file > default).
//! `docs/configuration.md` lists them all; `verdict serve --help` shows the flags.
//!
//! Plain data with defaults and validation; knows nothing of how the settings are used.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Every setting of `verdict serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of policy files.
    pub policies: PathBuf,
    /// gRPC listen address.
    pub listen: SocketAddr,
    pub reload: ReloadConfig,
    pub limits: LimitsConfig,
    pub evaluation: EvaluationConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub http: HttpConfig,
    pub ui: UiConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub shutdown: ShutdownConfig,
    pub tokens: TokensConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policies: PathBuf::from("policies"),
            listen: "127.0.0.1:50051".parse().expect("a valid address"),
            reload: ReloadConfig::default(),
            limits: LimitsConfig::default(),
            evaluation: EvaluationConfig::default(),
            tls: TlsConfig::default(),
            metrics: MetricsConfig::default(),
            http: HttpConfig::default(),
            ui: UiConfig::default(),
            log: LogConfig::default(),
            audit: AuditConfig::default(),
            shutdown: ShutdownConfig::default(),
            tokens: TokensConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// Watch the policy directory and reload on change.
    pub watch: bool,
    /// Quiet period after a burst of file events before reloading.
    pub debounce_ms: u64,
    /// Reload (if the files changed) every this many seconds even without events; 0 = off.
    pub poll_secs: u64,
    /// When the policy directory holds test suites (`*_test.yaml`), a set goes live (at start or
    /// on reload) only if they all pass.
    pub require_tests: bool,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: true,
            debounce_ms: 200,
            poll_secs: 30,
            require_tests: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most resources in one Check.
    pub max_resources: usize,
    /// Most actions per resource in one Check.
    pub max_actions: usize,
    /// Deepest nesting of attribute values (objects and lists).
    pub max_attr_depth: usize,
    /// Most decisions (resources times their actions) in one Check.
    pub max_decisions: usize,
    /// Largest request message accepted, in bytes; also the largest answer sent.
    pub max_message_bytes: usize,
    /// Longest a request may take before it fails with DEADLINE_EXCEEDED (a shorter client
    /// deadline wins); 0 = no server-side deadline.
    pub request_timeout_ms: u64,
    /// Most steps one condition may take on a request's values (comprehensions over request
    /// lists, `in` a list): a condition that could take more fails closed (a deny rule denies,
    /// an allow rule does not allow); 0 = no budget.
    pub max_condition_cost: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_resources: 1000,
            max_actions: 100,
            max_attr_depth: 16,
            max_decisions: 10_000,
            max_message_bytes: 4 << 20,
            request_timeout_ms: 5000,
            max_condition_cost: crate::engine::DEFAULT_COST_BUDGET,
        }
    }
}

/// Where large requests are decided: a bounded pool of threads beside the async runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Large requests deciding at once; 0 = one per core.
    pub threads: usize,
    /// Large requests waiting for a thread; beyond, RESOURCE_EXHAUSTED (HTTP 429).
    pub queue: usize,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            threads: 0,
            queue: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`, the gRPC (and HTTP) listeners speak TLS only.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for changes, in seconds (they reload without restart).
    pub reload_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            client_ca: None,
            reload_secs: 10,
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_secs.max(1))
    }
}

/// An optional listen address: `off` (or an empty value, or null in YAML) turns it off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoint(pub Option<SocketAddr>);

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "off" | "none" => Ok(Endpoint(None)),
            addr => addr.parse().map(|a| Endpoint(Some(a))).map_err(|e| {
                format!("\"{addr}\" is not an address such as 127.0.0.1:9464 (or off): {e}")
            }),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(Endpoint(None)),
            Some(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where Prometheus scrapes `/metrics` (plain HTTP); off by default.
    pub listen: Endpoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the HTTP/JSON API (`POST /v1/check`, `POST /v1/plan`) and the AuthZEN API listen;
    /// off by default. Uses the TLS settings when TLS is on.
    pub listen: Endpoint,
    /// The base URL AuthZEN clients reach Verdict at (`https://pdp.example.com`), as the
    /// metadata (`/.well-known/authzen-configuration`) states it; by default the listener's
    /// scheme and the request's `Host`.
    pub authzen_base_url: Option<String>,
    /// Whether AuthZEN decisions carry Verdict's reason in their `context` (reasons can quote
    /// request values, such as the attribute that violates the schema); the policy and rule are
    /// always there.
    pub authzen_reasons: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Endpoint::default(),
            authzen_base_url: None,
            authzen_reasons: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Where the web UI (access matrix, playground, diff of the last reload) listens; off by
    /// default. Read-only; uses the TLS settings when TLS is on. Bind it to loopback or put it
    /// behind authentication: it shows the whole policy set.
    pub listen: Endpoint,
    /// Host names the UI answers to besides `localhost` and IP addresses (a name a proxy
    /// reaches it under; `.example.org` for that domain and every name under it). A request
    /// for any other host is refused (403): a page of another site cannot reach the UI by
    /// pointing its own name at it (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `verdict=debug,tower=warn`…
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Write one JSON line per decision.
    pub enabled: bool,
    /// `stdout`, or a file path (appended to).
    pub output: String,
    /// Include principal and resource attributes (patient data!) in each line.
    pub include_attributes: bool,
    /// Decisions queued for the writer; when full, lines are dropped and counted, never waited for.
    pub buffer: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: false,
            output: "stdout".into(),
            include_attributes: false,
            buffer: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, seconds to keep serving while health reports NOT_SERVING (so load balancers
    /// stop sending) before new connections are refused.
    pub drain_secs: u64,
    /// Then, the longest wait for in-flight requests before exiting anyway.
    pub timeout_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_secs: 0,
            timeout_secs: 30,
        }
    }
}

/// Token verification: requests may carry a JWT instead of a principal (README, "Tokens").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// JWKS file with the issuer's public keys (RS256, ES256, EdDSA); turns verification on.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (https) to fetch the keys from instead; turns verification on.
    pub jwks_url: Option<String>,
    /// OpenID Connect issuer whose discovery document names the JWKS URL; turns verification
    /// on, and is the default `issuer`.
    pub oidc_issuer: Option<String>,
    /// PEM CA certificates the JWKS server is verified with, instead of Mozilla's roots.
    pub jwks_ca_file: Option<PathBuf>,
    /// Accept plain `http://` JWKS and issuer URLs to a loopback host (development only).
    pub jwks_allow_http_loopback: bool,
    /// Bound on each fetch (and on how long a token with an unknown key id waits for its
    /// refresh), in seconds.
    pub jwks_timeout_secs: u64,
    /// The floor of the refresh interval the caching headers give, in seconds; also the retry
    /// delay after a failed fetch.
    pub jwks_refresh_min_secs: u64,
    /// The ceiling of the refresh interval the caching headers give, in seconds.
    pub jwks_refresh_max_secs: u64,
    /// At most one refresh for tokens with unknown key ids per this many seconds.
    pub jwks_unknown_kid_secs: u64,
    /// The `iss` every token must carry (required with `jwks_file` or `jwks_url`; with
    /// `oidc_issuer`, that issuer unless set).
    pub issuer: Option<String>,
    /// This deployment's audiences: a token's `aud` must name one (required with any key source).
    pub audiences: Vec<String>,
    /// Dotted path of the claim that becomes the principal's id; tokens without it, or with it
    /// empty, are rejected.
    pub subject_claim: String,
    /// Dotted path of the claim holding the roles.
    pub roles_claim: String,
    /// Dotted path of the claim holding the capabilities.
    pub capabilities_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Refuse requests without a token.
    pub required: bool,
    /// How often the JWKS file is checked for changes, in seconds.
    pub reload_secs: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            jwks_file: None,
            jwks_url: None,
            oidc_issuer: None,
            jwks_ca_file: None,
            jwks_allow_http_loopback: false,
            jwks_timeout_secs: 5,
            jwks_refresh_min_secs: 60,
            jwks_refresh_max_secs: 3600,
            jwks_unknown_kid_secs: 10,
            issuer: None,
            audiences: Vec::new(),
            subject_claim: "sub".into(),
            roles_claim: "roles".into(),
            capabilities_claim: "capabilities".into(),
            leeway_secs: 30,
            required: false,
            reload_secs: 2,
        }
    }
}

impl TokensConfig {
    /// The key source's setting name, when one is set (the first of them, when several are).
    pub fn key_source(&self) -> Option<&'static str> {
        [
            (self.jwks_file.is_some(), "tokens.jwks_file"),
            (self.jwks_url.is_some(), "tokens.jwks_url"),
            (self.oidc_issuer.is_some(), "tokens.oidc_issuer"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }

    /// The `iss` tokens must carry: `issuer`, else the OpenID Connect issuer.
    pub fn effective_issuer(&self) -> Option<&str> {
        self.issuer.as_deref().or(self.oidc_issuer.as_deref())
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let sources = [
            self.jwks_file.is_some(),
            self.jwks_url.is_some(),
            self.oidc_issuer.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if sources > 1 {
            problems.push(
                "tokens.jwks_file, tokens.jwks_url and tokens.oidc_issuer are alternatives: set one"
                    .into(),
            );
        }
        let Some(source) = self.key_source() else {
            for (set, name) in [
                (self.issuer.is_some(), "tokens.issuer"),
                (!self.audiences.is_empty(), "tokens.audiences"),
                (self.required, "tokens.required"),
                (self.jwks_ca_file.is_some(), "tokens.jwks_ca_file"),
                (
                    self.jwks_allow_http_loopback,
                    "tokens.jwks_allow_http_loopback",
                ),
            ] {
                if set {
                    problems.push(format!(
                        "{name} needs tokens.jwks_file, tokens.jwks_url or tokens.oidc_issuer"
                    ));
                }
            }
            return;
        };
        if self.effective_issuer().is_none_or(|i| i.trim().is_empty()) {
            problems.push(format!(
                "{source} needs tokens.issuer (the iss tokens carry)"
            ));
        }
        if let (Some(issuer), Some(oidc)) = (&self.issuer, &self.oidc_issuer) {
            if issuer != oidc {
                problems.push(format!(
                    "tokens.issuer {issuer:?} differs from tokens.oidc_issuer {oidc:?}: tokens \
                     carry the issuer's own name (leave tokens.issuer out)"
                ));
            }
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            problems.push(format!(
                "{source} needs tokens.audiences (the aud tokens name), none empty"
            ));
        }
        if self.jwks_file.is_some() {
            for (set, name) in [
                (self.jwks_ca_file.is_some(), "tokens.jwks_ca_file"),
                (
                    self.jwks_allow_http_loopback,
                    "tokens.jwks_allow_http_loopback",
                ),
            ] {
                if set {
                    problems.push(format!(
                        "{name} needs tokens.jwks_url or tokens.oidc_issuer"
                    ));
                }
            }
            return;
        }
        let url = match (&self.jwks_url, &self.oidc_issuer) {
            (Some(url), _) => url.clone(),
            (None, Some(issuer)) => crate::token::remote::discovery_url(issuer),
            (None, None) => return,
        };
        if let Err(e) = crate::token::remote::check_url(&url, self.jwks_allow_http_loopback) {
            problems.push(format!("{source}: {e}"));
        }
        if self.jwks_timeout_secs == 0 {
            problems.push("tokens.jwks_timeout_secs must be at least 1".into());
        }
        if self.jwks_refresh_min_secs == 0 {
            problems.push("tokens.jwks_refresh_min_secs must be at least 1".into());
        }
        if self.jwks_refresh_max_secs < self.jwks_refresh_min_secs {
            problems.push(
                "tokens.jwks_refresh_max_secs must be at least tokens.jwks_refresh_min_secs".into(),
            );
        }
    }
}

impl Config {
    /// Reads a config file (YAML); errors name the file and line.
    pub fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Config::from_yaml(path, &text)
    }

    /// Parses the YAML text of `file`; an error is `file:line: message`, as every YAML error.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml_ng::from_str(text)
            .map_err(|e| crate::policy::yaml_error(file, 1, &e).to_string())
    }

    /// Checks settings that are each valid but make no sense together.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push("tls.cert and tls.key go together: set both or neither".to_string());
        }
        if self.tls.client_ca.is_some() && self.tls.cert.is_none() {
            problems.push("tls.client_ca (mutual TLS) needs tls.cert and tls.key".to_string());
        }
        let l = &self.limits;
        for (name, value) in [
            ("limits.max_resources", l.max_resources),
            ("limits.max_actions", l.max_actions),
            ("limits.max_attr_depth", l.max_attr_depth),
            ("limits.max_decisions", l.max_decisions),
            ("limits.max_message_bytes", l.max_message_bytes),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        self.tokens.validate(&mut problems);
        if let Some(base) = &self.http.authzen_base_url {
            let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
            if !scheme_ok || base.contains(['?', '#']) {
                problems.push(format!(
                    "http.authzen_base_url {base:?} must be an http(s) URL without query or \
                     fragment, such as https://pdp.example.com"
                ));
            }
        }
        if self.audit.enabled && self.audit.buffer == 0 {
            problems.push("audit.buffer must be at least 1".to_string());
        }
        if self.audit.output.trim().is_empty() {
            problems.push("audit.output must be stdout or a file path".to_string());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(format!(
                "log.level \"{}\" is not a valid filter: {e}",
                self.log.level
            ));
        }
        if let Err(e) = crate::ui::AllowedHosts::new(&self.ui.allowed_hosts) {
            problems.push(e);
        }
        let mut ports = vec![("listen", Some(self.listen))];
        ports.push(("metrics.listen", self.metrics.listen.0));
        ports.push(("http.listen", self.http.listen.0));
        ports.push(("ui.listen", self.ui.listen.0));
        for (i, (a, x)) in ports.iter().enumerate() {
            for (b, y) in &ports[i + 1..] {
                if let (Some(x), Some(y)) = (x, y) {
                    if x == y && x.port() != 0 {
                        problems.push(format!("{a} and {b} are both {x}"));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults_and_defaults_are_sane() {
        let c = Config::from_yaml(Path::new("verdict.yaml"), "").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.validate().is_ok());
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        assert!(c.reload.watch && c.metrics.listen.0.is_none() && !c.audit.enabled);
    }

    #[test]
    fn a_file_sets_nested_settings_and_rejects_unknown_keys_with_a_line() {
        let c = Config::from_yaml(Path::new("verdict.yaml"), "listen: 0.0.0.0:50051\nmetrics: {listen: 0.0.0.0:9464}\naudit:\n  enabled: true\n  output: /var/log/verdict.jsonl\nlimits: {max_resources: 50}\n").unwrap();
        assert_eq!(c.metrics.listen.0.unwrap().port(), 9464);
        assert!(c.audit.enabled);
        assert_eq!(c.limits.max_resources, 50);
        assert_eq!(c.limits.max_actions, 100, "unset keys keep their defaults");
        let err = Config::from_yaml(
            Path::new("verdict.yaml"),
            "listen: 0.0.0.0:1\nlimits:\n  max_resource: 5\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("verdict.yaml:3: limits: unknown field `max_resource`"),
            "{err}"
        );
        let err = Config::from_yaml(Path::new("verdict.yaml"), "metrics: {listen: nowhere}\n")
            .unwrap_err();
        assert!(err.contains("not an address"), "{err}");
        assert_eq!(
            Config::from_yaml(Path::new("verdict.yaml"), "metrics: {listen: null}\n")
                .unwrap()
                .metrics
                .listen,
            Endpoint(None)
        );
        assert_eq!(
            Config::from_yaml(Path::new("verdict.yaml"), "metrics: {listen: off}\n")
                .unwrap()
                .metrics
                .listen,
            Endpoint(None)
        );
    }

    #[test]
    fn the_documented_complete_file_is_the_defaults() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .unwrap();
        let start = doc.rfind("```yaml\n").expect("a yaml block") + "```yaml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        assert_eq!(
            Config::from_yaml(Path::new("verdict.yaml"), &doc[start..end]).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn keys_by_url_are_https_alternatives_to_the_file() {
        let mut c = Config::default();
        c.tokens.audiences = vec!["verdict".into()];
        c.tokens.oidc_issuer = Some("https://idp/realms/clinic".into());
        assert!(c.validate().is_ok(), "the OIDC issuer is the token issuer");
        assert_eq!(
            c.tokens.effective_issuer(),
            Some("https://idp/realms/clinic")
        );
        c.tokens.issuer = Some("https://other".into());
        assert!(c
            .validate()
            .unwrap_err()
            .contains("differs from tokens.oidc_issuer"));
        c.tokens.issuer = None;
        c.tokens.jwks_url = Some("https://idp/certs".into());
        assert!(c.validate().unwrap_err().contains("are alternatives"));
        c.tokens.oidc_issuer = None;
        let err = c.validate().unwrap_err();
        assert!(err.contains("tokens.jwks_url needs tokens.issuer"), "{err}");
        c.tokens.issuer = Some("https://idp".into());
        assert!(c.validate().is_ok());
        c.tokens.jwks_url = Some("http://idp/certs".into());
        assert!(c.validate().unwrap_err().contains("https only"));
        c.tokens.jwks_allow_http_loopback = true;
        assert!(c.validate().unwrap_err().contains("loopback"));
        c.tokens.jwks_url = Some("http://127.0.0.1:8080/certs".into());
        assert!(c.validate().is_ok());
        c.tokens.jwks_refresh_min_secs = 0;
        c.tokens.jwks_refresh_max_secs = 0;
        c.tokens.jwks_timeout_secs = 0;
        let err = c.validate().unwrap_err();
        for name in ["jwks_refresh_min_secs", "jwks_timeout_secs"] {
            assert!(err.contains(name), "{err}");
        }
        let mut c = Config::default();
        c.tokens.jwks_ca_file = Some("ca.pem".into());
        assert!(c
            .validate()
            .unwrap_err()
            .contains("tokens.jwks_ca_file needs"));
        c.tokens.jwks_file = Some("jwks.json".into());
        c.tokens.issuer = Some("https://idp".into());
        c.tokens.audiences = vec!["verdict".into()];
        let err = c.validate().unwrap_err();
        assert!(
            err.contains("tokens.jwks_ca_file needs tokens.jwks_url"),
            "{err}"
        );
    }

    #[test]
    fn token_verification_needs_issuer_and_audiences() {
        let mut c = Config::default();
        c.tokens.jwks_file = Some("jwks.json".into());
        let err = c.validate().unwrap_err();
        assert!(err.contains("needs tokens.issuer"), "{err}");
        assert!(err.contains("needs tokens.audiences"), "{err}");
        c.tokens.issuer = Some("https://idp".into());
        c.tokens.audiences = vec!["verdict".into()];
        assert!(c.validate().is_ok());
        let c = Config::from_yaml(Path::new("verdict.yaml"), 
            "tokens: {jwks_file: /etc/jwks.json, issuer: https://idp, audiences: [a, b], roles_claim: realm_access.roles}\n",
        )
        .unwrap();
        assert_eq!(c.tokens.audiences, ["a", "b"]);
        assert_eq!(c.tokens.roles_claim, "realm_access.roles");
        assert_eq!(c.tokens.leeway_secs, 30);
    }

    #[test]
    fn validation_catches_settings_that_do_not_fit_together() {
        let mut c = Config::default();
        c.tls.cert = Some("cert.pem".into());
        c.tls.client_ca = Some("ca.pem".into());
        c.limits.max_actions = 0;
        c.metrics.listen = Endpoint(Some(c.listen));
        c.log.level = "verdict=loud".into();
        c.tokens.required = true;
        let err = c.validate().unwrap_err();
        assert!(
            err.contains("tokens.required needs tokens.jwks_file"),
            "{err}"
        );
        assert!(err.contains("tls.cert and tls.key go together"), "{err}");
        assert!(
            err.contains("limits.max_actions must be at least 1"),
            "{err}"
        );
        assert!(
            err.contains("listen and metrics.listen are both 127.0.0.1:50051"),
            "{err}"
        );
        assert!(err.contains("log.level"), "{err}");
    }
}
