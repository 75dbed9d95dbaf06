//! Keys from an identity provider by URL: a JWKS URL, or an OpenID Connect issuer whose
//! discovery document (`{issuer}/.well-known/openid-configuration`) names it (`jwks_uri`; its
//! `issuer` must equal the configured one exactly).
//!
//! One [`Refresher`] thread owns every fetch (ureq, blocking, over rustls): the first one at
//! start (its failure stops the start: the caller fails closed), then one when the key set's
//! HTTP caching lifetime runs out (`Cache-Control: max-age` less `Age`, else `Expires`;
//! `no-cache`, `no-store` and a lifetime of 0 count as 0; none at all as
//! [`DEFAULT_LIFETIME`]), held between a floor and a ceiling; one at the floor after a failed
//! attempt; one on SIGHUP; and one when a token names a key id the set does not have, at most
//! once per `unknown_kid_interval` (the requests that meet unknown key ids while it is pending
//! join it). With an issuer, discovery runs again (the `jwks_uri` may have moved) after a
//! failed attempt, on SIGHUP, for an unknown key id, and at the first scheduled fetch once the
//! last discovery is older than the ceiling.
//! Responses are revalidated with `If-None-Match` / `If-Modified-Since` when the last full
//! response of the same URL carried `ETag` / `Last-Modified`.
//!
//! What is fetched: HTTPS only (plain `http://` only to a loopback host, and only when
//! `allow_http_loopback` says so, for development), verified against Mozilla's roots or, with a
//! CA file, against that file's certificates only; no redirects followed; proxies from
//! `HTTPS_PROXY` / `NO_PROXY`; every request bounded by `timeout` and every body by
//! [`MAX_DOCUMENT_BYTES`].
//!
//! **Invariants.** The request path never does I/O or waits on a lock here: a verifier that
//! meets an unknown key id calls [`Refresher::unknown_key`], which only reads and swaps atomics
//! and queues a message without blocking, and gets a watch receiver to wait on (bounded, by the
//! caller) when a fetch is coming. Any failure (network, TLS, HTTP status, size, JSON, broken
//! keys, no usable key, discovery) keeps the last good key set whole and is reported in
//! `verdict_jwks_fetches_total{outcome}`, in [`KeysStatus`] and in the log (once per distinct
//! error at error level, the recovery at info, as [`crate::reload`] does for files).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::Value as Json;
use ureq::http::{header, StatusCode, Uri};

use super::jwks::{self, JwksError, KeySet};
use super::KeysStatus;
use crate::telemetry::{
    JWKS_AGE_SECONDS, JWKS_FETCHES_TOTAL, JWKS_LAST_SUCCESS_SECONDS, JWKS_UNKNOWN_KID_TOTAL,
};

/// The largest JWKS or discovery document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;
/// The lifetime of a response without caching headers, before the floor and ceiling apply.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// How often the key set's age gauge is brought up to date between fetches.
const AGE_TICK: Duration = Duration::from_secs(5);

/// Where the keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A JWKS URL.
    Jwks(String),
    /// An OpenID Connect issuer: its discovery document names the JWKS URL.
    Issuer(String),
}

/// How keys are fetched from a URL and kept fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub location: Location,
    /// PEM certificates to verify the server with instead of Mozilla's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept `http://` URLs whose host is a loopback address (development only).
    pub allow_http_loopback: bool,
    /// Bound on each request (connect, TLS, headers and body); also how long a request with an
    /// unknown key id waits for the refresh it triggered.
    pub timeout: Duration,
    /// The floor: no scheduled refresh sooner than this after the last attempt, however short
    /// the caching lifetime; also the retry delay after a failure.
    pub min_refresh: Duration,
    /// The ceiling: a refresh at least this often, however long the caching lifetime.
    pub max_refresh: Duration,
    /// At most one refresh for unknown key ids per this interval.
    pub unknown_kid_interval: Duration,
}

impl RemoteConfig {
    /// Defaults: a 5 s timeout, refreshes between 60 s and 1 h apart, one unknown-kid refresh
    /// per 10 s, HTTPS only, Mozilla's roots.
    pub fn new(location: Location) -> RemoteConfig {
        RemoteConfig {
            location,
            ca_file: None,
            allow_http_loopback: false,
            timeout: Duration::from_secs(5),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
            unknown_kid_interval: Duration::from_secs(10),
        }
    }

    /// The configured URL, for logs and Status.
    pub fn source(&self) -> &str {
        match &self.location {
            Location::Jwks(url) | Location::Issuer(url) => url,
        }
    }
}

/// Checks that `url` may be fetched: `https://` with a host, or with `allow_http_loopback`
/// `http://` to `localhost` or a loopback address.
pub fn check_url(url: &str, allow_http_loopback: bool) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    let host = uri.host().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_http_loopback && is_loopback(host) => Ok(uri),
        Some("http") if allow_http_loopback => Err(format!(
            "{url:?}: plain http is accepted only to a loopback host (localhost, 127.0.0.1, \
             [::1]); use https"
        )),
        Some("http") => Err(format!(
            "{url:?}: keys are fetched over https only (plain http to a loopback host needs \
             --jwks-allow-http-loopback, for development)"
        )),
        _ => Err(format!("{url:?} is not an https URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The discovery document's URL for `issuer` (OpenID Connect Discovery 1.0, section 4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Why an attempt failed: the metric label and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    outcome: &'static str,
    message: String,
}

fn failure(outcome: &'static str, message: String) -> Failure {
    Failure { outcome, message }
}

/// A response the fetcher accepted.
enum Fetched {
    NotModified {
        lifetime: Option<Duration>,
    },
    Body {
        bytes: Vec<u8>,
        lifetime: Option<Duration>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// The HTTP side: an agent configured once.
struct Client {
    agent: ureq::Agent,
    allow_http_loopback: bool,
}

impl Client {
    fn new(config: &RemoteConfig) -> Result<Client, String> {
        use ureq::tls::{RootCerts, TlsConfig};
        let roots = match &config.ca_file {
            None => RootCerts::WebPki,
            Some(path) => RootCerts::new_with_certs(&read_ca_file(path)?),
        };
        let agent = ureq::Agent::config_builder()
            .https_only(!config.allow_http_loopback)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("verdict/", env!("CARGO_PKG_VERSION")))
            .accept("application/jwk-set+json, application/json")
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .new_agent();
        Ok(Client {
            agent,
            allow_http_loopback: config.allow_http_loopback,
        })
    }

    /// GETs `url`, conditionally when validators are given.
    fn get(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, Failure> {
        check_url(url, self.allow_http_loopback).map_err(|e| failure("invalid", e))?;
        let mut request = self.agent.get(url);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(since) = last_modified {
            request = request.header(header::IF_MODIFIED_SINCE, since);
        }
        let mut response = request
            .call()
            .map_err(|e| failure("network", format!("{url}: {e}")))?;
        let status = response.status();
        let headers = response.headers();
        let lifetime = lifetime(headers, SystemTime::now());
        if status == StatusCode::NOT_MODIFIED && (etag.is_some() || last_modified.is_some()) {
            return Ok(Fetched::NotModified { lifetime });
        }
        if status != StatusCode::OK {
            let redirect = if status.is_redirection() {
                " (redirects are not followed: configure the final URL)"
            } else {
                ""
            };
            return Err(failure(
                "http_status",
                format!("{url}: HTTP {}{redirect}", status.as_u16()),
            ));
        }
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &ureq::http::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (text(header::ETAG), text(header::LAST_MODIFIED));
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => failure(
                    "too_large",
                    format!("{url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"),
                ),
                e => failure("network", format!("{url}: {e}")),
            })?;
        Ok(Fetched::Body {
            bytes,
            lifetime,
            etag,
            last_modified,
        })
    }

    /// Reads the discovery document of `issuer` and returns its `jwks_uri`.
    fn discover(&self, issuer: &str) -> Result<String, Failure> {
        let url = discovery_url(issuer);
        let bytes = match self.get(&url, None, None) {
            Ok(Fetched::Body { bytes, .. }) => bytes,
            Ok(Fetched::NotModified { .. }) => unreachable!("no validators were sent"),
            Err(f) => return Err(failure("discovery", f.message)),
        };
        let bad = |why: String| failure("discovery", format!("{url}: {why}"));
        let doc: Json =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        match doc.get("issuer") {
            Some(Json::String(found)) if found == issuer => {}
            Some(Json::String(found)) => {
                return Err(bad(format!(
                    "the document's issuer is {found:?}, not the configured {issuer:?} \
                     (they must be equal, character for character)"
                )))
            }
            _ => return Err(bad("no issuer string in the document".into())),
        }
        let Some(Json::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(bad("no jwks_uri string in the document".into()));
        };
        check_url(jwks_uri, self.allow_http_loopback).map_err(|e| bad(format!("jwks_uri {e}")))?;
        Ok(jwks_uri.clone())
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert.to_owned()),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// How long a response may be used, from its caching headers: `Cache-Control` (`no-store`,
/// `no-cache`: 0; `max-age`, less `Age`), else `Expires` (relative to `Date` when present);
/// `None` without either.
fn lifetime(headers: &ureq::http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let mut max_age = None;
    for directive in headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return Some(Duration::ZERO),
            "max-age" => {
                max_age = value.trim().trim_matches('"').parse::<u64>().ok();
            }
            _ => {}
        }
    }
    if let Some(max_age) = max_age {
        let age = text(header::AGE)
            .and_then(|a| a.trim().parse::<u64>().ok())
            .unwrap_or(0);
        return Some(Duration::from_secs(max_age.saturating_sub(age)));
    }
    let expires = httpdate::parse_http_date(text(header::EXPIRES)?.trim())
        // An unreadable Expires means already expired (RFC 9111, 5.3).
        .unwrap_or(UNIX_EPOCH);
    let date = text(header::DATE)
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// Why the refresher fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The caching lifetime ran out, or the last attempt failed.
    Scheduled,
    /// A token named a key id the set does not have.
    UnknownKid,
    /// SIGHUP: discovery again, no validators.
    Requested,
}

enum Message {
    Refresh(Why),
    Stop,
}

/// The bit of [`Shared::unknown_kid`] that says an unknown-kid refresh is pending.
const PENDING: u64 = 1;

/// What the request path and the refresher thread share.
struct Shared {
    keys: Arc<ArcSwap<KeySet>>,
    status: Arc<ArcSwap<KeysStatus>>,
    /// Counts finished attempts; the unknown-kid path waits on it.
    attempts: tokio::sync::watch::Sender<u64>,
    /// The unknown-kid refreshes, in one word so that claiming one is a single compare-and-swap:
    /// when the last was asked for, in ms since `epoch` plus one (0: never), shifted left by
    /// one, and [`PENDING`]: a refresh was asked for and no attempt has started since. Requests
    /// that meet an unknown key id while it is set join that refresh instead of being denied.
    unknown_kid: AtomicU64,
    epoch: Instant,
    unknown_kid_interval: Duration,
}

/// The thread that fetches the keys. Stops when dropped (after a fetch in progress, bounded by
/// the timeout).
pub struct Refresher {
    shared: Arc<Shared>,
    timeout: Duration,
    tx: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

/// The validators and caching lifetime of the last full (200) response, and its URL.
struct Cached {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    /// A 304 without caching headers of its own keeps this lifetime (RFC 9111, 4.3.4).
    lifetime: Option<Duration>,
}

/// What the thread keeps between attempts.
struct State {
    config: RemoteConfig,
    client: Client,
    shared: Arc<Shared>,
    /// The JWKS URL (configured, or discovered; `None` when discovery must run again).
    jwks_uri: Option<String>,
    /// When discovery last succeeded: it runs again once this is older than the ceiling.
    discovered_at: Option<Instant>,
    /// What the last full response of the JWKS URL said about itself, for the next request to
    /// that URL (validators belong to one URL: a moved `jwks_uri` is fetched unconditionally).
    cached: Option<Cached>,
    /// The last success, for the age gauge.
    last_success: Option<SystemTime>,
    /// The error of the last attempt, to log each distinct one once.
    failing: Option<String>,
}

impl Refresher {
    /// Fetches the keys once (an error stops the start: discovery, network, status, JSON, no
    /// usable key), publishes them into `keys` and `status`, and starts the thread that keeps
    /// them fresh.
    pub fn start(
        config: RemoteConfig,
        keys: Arc<ArcSwap<KeySet>>,
        status: Arc<ArcSwap<KeysStatus>>,
    ) -> Result<Refresher, JwksError> {
        let location_ok = match &config.location {
            Location::Jwks(url) => check_url(url, config.allow_http_loopback).map(drop),
            Location::Issuer(issuer) => {
                check_url(&discovery_url(issuer), config.allow_http_loopback).map(drop)
            }
        };
        location_ok.map_err(JwksError)?;
        if config.min_refresh.is_zero() || config.max_refresh < config.min_refresh {
            return Err(JwksError(
                "the JWKS refresh floor must be at least 1 s and the ceiling at least the floor"
                    .into(),
            ));
        }
        let client = Client::new(&config).map_err(JwksError)?;
        let timeout = config.timeout;
        let shared = Arc::new(Shared {
            keys,
            status,
            attempts: tokio::sync::watch::Sender::new(0),
            unknown_kid: AtomicU64::new(0),
            epoch: Instant::now(),
            unknown_kid_interval: config.unknown_kid_interval,
        });
        let mut state = State {
            jwks_uri: match &config.location {
                Location::Jwks(url) => Some(url.clone()),
                Location::Issuer(_) => None,
            },
            config,
            client,
            shared: Arc::clone(&shared),
            discovered_at: None,
            cached: None,
            last_success: None,
            failing: None,
        };
        let first = state.attempt(Why::Requested);
        let next = match first {
            Ok(lifetime) => Instant::now() + lifetime,
            Err(failure) => return Err(JwksError(failure.message)),
        };
        let (tx, rx) = mpsc::sync_channel(4);
        let thread = std::thread::Builder::new()
            .name("verdict-jwks-url".into())
            .spawn(move || state.run(rx, next))
            .map_err(|e| JwksError(format!("cannot start the JWKS refresh thread: {e}")))?;
        Ok(Refresher {
            shared,
            timeout,
            tx,
            thread: Some(thread),
        })
    }

    /// The bound on each request, which is also how long an unknown-kid request waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks for a fetch now, discovery included (SIGHUP). Returns at once.
    pub fn refresh_now(&self) {
        let _ = self.tx.try_send(Message::Refresh(Why::Requested));
    }

    /// A token named a key id the set does not have (or, without `kid`, its algorithm has no
    /// key). Never blocks: when no unknown-kid refresh was asked for within the interval, asks
    /// for one; returns a receiver to wait on (`wait_for_refresh`) when one is pending, `None`
    /// when the rate limit leaves the token to be denied now.
    pub fn unknown_key(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        let shared = &self.shared;
        let attempts = shared.attempts.subscribe();
        let interval = shared.unknown_kid_interval.as_millis() as u64;
        let mut word = shared.unknown_kid.load(Ordering::Acquire);
        loop {
            if word & PENDING != 0 {
                metrics::counter!(JWKS_UNKNOWN_KID_TOTAL, "result" => "joined").increment(1);
                return Some(attempts);
            }
            let last = word >> 1;
            let now = shared.epoch.elapsed().as_millis() as u64 + 1;
            if last != 0 && now.saturating_sub(last) < interval {
                metrics::counter!(JWKS_UNKNOWN_KID_TOTAL, "result" => "rate_limited").increment(1);
                return None;
            }
            // Claims the refresh and marks it pending at once: a request that sees the new
            // time also sees the pending bit, and joins.
            match shared.unknown_kid.compare_exchange_weak(
                word,
                (now << 1) | PENDING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(current) => word = current,
            }
        }
        match self.tx.try_send(Message::Refresh(Why::UnknownKid)) {
            // Full: the queued messages are fetches that start after this one was asked for,
            // and the first of them clears the pending bit (`State::run`).
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {
                shared.unknown_kid.fetch_and(!PENDING, Ordering::AcqRel);
                return None;
            }
        }
        metrics::counter!(JWKS_UNKNOWN_KID_TOTAL, "result" => "refresh").increment(1);
        tracing::info!("a token names an unknown key id: refreshing the JWKS");
        Some(attempts)
    }

    /// Waits until the pending unknown-kid refresh has finished (whatever its outcome), or
    /// `limit` has passed.
    pub async fn wait_for_refresh(
        &self,
        mut attempts: tokio::sync::watch::Receiver<u64>,
        limit: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.unknown_kid.load(Ordering::Acquire) & PENDING != 0 {
            match tokio::time::timeout_at(deadline, attempts.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl State {
    fn run(mut self, rx: mpsc::Receiver<Message>, mut next: Instant) {
        loop {
            let wait = next.saturating_duration_since(Instant::now()).min(AGE_TICK);
            let why = match rx.recv_timeout(wait) {
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Message::Refresh(why)) => Some(why),
                Err(RecvTimeoutError::Timeout) => {
                    (Instant::now() >= next).then_some(Why::Scheduled)
                }
            };
            self.report_age();
            let Some(why) = why else { continue };
            // Any attempt that starts while an unknown-kid refresh is pending serves it: the
            // keys it brings are at least as new as the token that asked. An unknown-kid
            // message that finds nothing pending was served so, and fetches nothing.
            let serves = self.shared.unknown_kid.load(Ordering::Acquire) & PENDING != 0;
            if why == Why::UnknownKid && !serves {
                continue;
            }
            let why = match why {
                Why::Scheduled if serves => Why::UnknownKid,
                why => why,
            };
            let result = self.attempt(why);
            if serves {
                // Nobody sets the bit while it is set: this clears the one seen above.
                self.shared
                    .unknown_kid
                    .fetch_and(!PENDING, Ordering::AcqRel);
            }
            self.shared.attempts.send_modify(|n| *n += 1);
            next = Instant::now()
                + match result {
                    Ok(lifetime) => lifetime,
                    Err(_) => self.config.min_refresh,
                };
        }
    }

    fn report_age(&self) {
        if let Some(at) = self.last_success {
            let age = SystemTime::now()
                .duration_since(at)
                .unwrap_or(Duration::ZERO);
            metrics::gauge!(JWKS_AGE_SECONDS).set(age.as_secs_f64());
        }
    }

    /// One attempt: discovery when needed, the JWKS fetch, the key set published when it
    /// changed. Returns how long until the next scheduled refresh; on failure, keeps the keys.
    fn attempt(&mut self, why: Why) -> Result<Duration, Failure> {
        let result = self.fetch(why);
        let now = SystemTime::now();
        let outcome = match &result {
            Ok((outcome, _)) => *outcome,
            Err(f) => f.outcome,
        };
        let source = self.config.source().to_string();
        // Status first, then the metric: whoever sees the count sees the status that goes with it.
        let counted = || metrics::counter!(JWKS_FETCHES_TOTAL, "outcome" => outcome).increment(1);
        match result {
            Ok((_, lifetime)) => {
                let next = lifetime
                    .unwrap_or(DEFAULT_LIFETIME)
                    .clamp(self.config.min_refresh, self.config.max_refresh);
                if let Some(previous) = self.failing.take() {
                    tracing::info!(source = %source, previous_error = %previous, "JWKS fetch recovered");
                }
                self.last_success = Some(now);
                let seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                metrics::gauge!(JWKS_LAST_SUCCESS_SECONDS).set(seconds.as_secs_f64());
                metrics::gauge!(JWKS_AGE_SECONDS).set(0.0);
                let keys = self.shared.keys.load();
                self.shared.status.rcu(|status| KeysStatus {
                    jwks_uri: self.jwks_uri.clone().unwrap_or_default(),
                    key_ids: super::key_ids(&keys),
                    last_success_at: Some(now),
                    last_error: None,
                    last_error_at: None,
                    refreshes_ok: status.refreshes_ok + 1,
                    next_refresh_at: Some(now + next),
                    ..(**status).clone()
                });
                counted();
                Ok(next)
            }
            Err(failure) => {
                if self.failing.as_deref() == Some(failure.message.as_str()) {
                    tracing::debug!(source = %source, error = %failure.message, "JWKS fetch still failing; the last good keys stay");
                } else {
                    tracing::error!(source = %source, outcome = failure.outcome, error = %failure.message, "JWKS fetch failed; the last good keys stay");
                    self.failing = Some(failure.message.clone());
                }
                // Discovery runs again on the next attempt: the jwks_uri may have moved.
                if matches!(self.config.location, Location::Issuer(_)) {
                    self.jwks_uri = None;
                }
                self.shared.status.rcu(|status| KeysStatus {
                    last_error: Some(failure.message.clone()),
                    last_error_at: Some(now),
                    refreshes_failed: status.refreshes_failed + 1,
                    next_refresh_at: Some(now + self.config.min_refresh),
                    ..(**status).clone()
                });
                counted();
                Err(failure)
            }
        }
    }

    /// The fetch itself: the outcome label and the response's caching lifetime.
    fn fetch(&mut self, why: Why) -> Result<(&'static str, Option<Duration>), Failure> {
        if why == Why::Requested {
            self.cached = None;
        }
        // Discovery again, besides after a failure (which forgets the jwks_uri): on SIGHUP; for
        // an unknown key id (the keys may have moved with the jwks_uri while the old URL still
        // serves the old ones); and once the last discovery is older than the ceiling.
        let stale = self
            .discovered_at
            .is_none_or(|at| at.elapsed() >= self.config.max_refresh);
        if let Location::Issuer(issuer) = &self.config.location {
            if self.jwks_uri.is_none() || why != Why::Scheduled || stale {
                let url = self.client.discover(issuer)?;
                self.discovered_at = Some(Instant::now());
                if self.jwks_uri.as_deref() != Some(url.as_str()) {
                    tracing::info!(issuer = %issuer, jwks_uri = %url, "OpenID Connect discovery: JWKS URL found");
                }
                self.jwks_uri = Some(url);
            }
        }
        let Some(url) = self.jwks_uri.clone() else {
            return Err(failure("discovery", "no JWKS URL known".into()));
        };
        let cached = self.cached.as_ref().filter(|c| c.url == url);
        let fetched = self.client.get(
            &url,
            cached.and_then(|c| c.etag.as_deref()),
            cached.and_then(|c| c.last_modified.as_deref()),
        )?;
        let (bytes, lifetime, etag, last_modified) = match fetched {
            Fetched::NotModified { lifetime } => {
                return Ok(("not_modified", lifetime.or(cached.and_then(|c| c.lifetime))))
            }
            Fetched::Body {
                bytes,
                lifetime,
                etag,
                last_modified,
            } => (bytes, lifetime, etag, last_modified),
        };
        let set = jwks::parse(&bytes).map_err(|e| failure("invalid", format!("{url}: {e}")))?;
        self.cached = Some(Cached {
            url: url.clone(),
            etag,
            last_modified,
            lifetime,
        });
        if set.hash == self.shared.keys.load().hash {
            return Ok(("unchanged", lifetime));
        }
        super::log_loaded(&url, &set, "JWKS fetched");
        self.shared.keys.store(Arc::new(set));
        Ok(("ok", lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn caching_headers_give_the_lifetime() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let life = |pairs: &[(&'static str, &str)]| lifetime(&headers(pairs), now);
        assert_eq!(life(&[]), None);
        assert_eq!(
            life(&[("cache-control", "public, max-age=600")]),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            life(&[("cache-control", "max-age=600"), ("age", "100")]),
            Some(Duration::from_secs(500))
        );
        assert_eq!(
            life(&[("cache-control", "max-age=600, no-cache")]),
            Some(Duration::ZERO)
        );
        assert_eq!(life(&[("cache-control", "no-store")]), Some(Duration::ZERO));
        let date = httpdate::fmt_http_date(now);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            life(&[("expires", &later), ("date", &date)]),
            Some(Duration::from_secs(120))
        );
        assert_eq!(life(&[("expires", &later)]), Some(Duration::from_secs(120)));
        assert_eq!(life(&[("expires", "0")]), Some(Duration::ZERO));
        // max-age wins over Expires.
        assert_eq!(
            life(&[("cache-control", "max-age=5"), ("expires", &later)]),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn only_https_or_loopback_http_when_allowed() {
        assert!(check_url("https://idp.example.com/jwks", false).is_ok());
        let refused = check_url("http://idp.example.com/jwks", false).unwrap_err();
        assert!(refused.contains("https only"), "{refused}");
        let refused = check_url("http://idp.example.com/jwks", true).unwrap_err();
        assert!(refused.contains("loopback"), "{refused}");
        for url in [
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:80/jwks",
        ] {
            assert!(check_url(url, true).is_ok(), "{url}");
            assert!(check_url(url, false).is_err(), "{url}");
        }
        for url in [
            "ftp://idp/jwks",
            "idp.example.com/jwks",
            "https:///jwks",
            "",
        ] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
        assert_eq!(
            discovery_url("https://idp.example.com/realms/clinic/"),
            "https://idp.example.com/realms/clinic/.well-known/openid-configuration"
        );
    }
}

#[cfg(test)]
mod unknown_kid_tests {
    use super::*;

    /// A refresher with no thread: the test plays the thread's part with `rx`.
    fn refresher(interval: Duration) -> (Refresher, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::sync_channel(4);
        let shared = Arc::new(Shared {
            keys: Arc::new(ArcSwap::from_pointee(KeySet::default())),
            status: Arc::new(ArcSwap::from_pointee(KeysStatus::default())),
            attempts: tokio::sync::watch::Sender::new(0),
            unknown_kid: AtomicU64::new(0),
            epoch: Instant::now(),
            unknown_kid_interval: interval,
        });
        let refresher = Refresher {
            shared,
            timeout: Duration::from_secs(1),
            tx,
            thread: None,
        };
        (refresher, rx)
    }

    #[test]
    fn requests_meeting_an_unknown_kid_at_once_all_get_the_one_refresh() {
        const THREADS: usize = 8;
        let (refresher, rx) = refresher(Duration::from_secs(3600));
        let refresher = Arc::new(refresher);
        let start = Arc::new(std::sync::Barrier::new(THREADS + 1));
        let done = Arc::new(std::sync::Barrier::new(THREADS + 1));
        let answered = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (refresher, start, done, answered) = (
                    Arc::clone(&refresher),
                    Arc::clone(&start),
                    Arc::clone(&done),
                    Arc::clone(&answered),
                );
                std::thread::spawn(move || loop {
                    start.wait();
                    if refresher.shared.unknown_kid.load(Ordering::Acquire) == u64::MAX {
                        return;
                    }
                    if refresher.unknown_key().is_some() {
                        answered.fetch_add(1, Ordering::AcqRel);
                    }
                    done.wait();
                })
            })
            .collect();
        for round in 0..2000 {
            // No refresh asked for yet: the first request of the round claims one, the others
            // join it; none is turned away by the rate limit.
            refresher.shared.unknown_kid.store(0, Ordering::Release);
            answered.store(0, Ordering::Release);
            start.wait();
            done.wait();
            assert_eq!(
                answered.load(Ordering::Acquire),
                THREADS as u64,
                "round {round}"
            );
            assert!(matches!(
                rx.try_recv(),
                Ok(Message::Refresh(Why::UnknownKid))
            ));
            assert!(rx.try_recv().is_err(), "one refresh asked for");
        }
        refresher
            .shared
            .unknown_kid
            .store(u64::MAX, Ordering::Release);
        start.wait();
        for thread in threads {
            thread.join().unwrap();
        }
        // Within the interval, with nothing pending: turned away.
        refresher
            .shared
            .unknown_kid
            .fetch_and(!PENDING, Ordering::AcqRel);
        assert!(refresher.unknown_key().is_none());
        assert!(rx.try_recv().is_err());
    }
}
