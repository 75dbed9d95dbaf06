//! Token verification: a caller may send the raw JWT of the user or service it acts for instead
//! of a principal, and Verdict verifies it against the issuer's keys — a JWKS file, or a JWKS
//! fetched from the identity provider by URL or by OpenID Connect discovery ([`remote`]) — and
//! builds the principal from the verified claims ([`claims`] holds the mapping).
//!
//! What a token must pass, in order: a size limit; the compact JWS form (three base64url parts);
//! no `crit` header; an algorithm on the allow-list (RS256, ES256, EdDSA: never `none`, never
//! HMAC); a key — the one its `kid` names, or, for a token without `kid`, each key of its
//! algorithm in file order until one verifies; the algorithm the key was loaded for (from the key,
//! never trusted from the header); the signature; `exp` (required), `nbf` (when present), both
//! with a leeway; `iss` equal to the configured issuer and `aud` naming a configured audience
//! (both required); then the claims mapping.
//!
//! **Invariants.** Every failure is a [`TokenError`] whose text says what failed and never
//! carries key material, token contents or library messages; nothing here panics on input. The
//! key set lives behind `ArcSwap`: verifying takes no lock and does no I/O. The JWKS file is
//! re-read on a [`Reloader`] thread of its own ([`Verifier::start`]) when it changes, on a poll
//! and on SIGHUP; a JWKS URL is fetched on a [`remote::Refresher`] thread, when its caching
//! lifetime runs out, on SIGHUP and (rate-limited) when a token names an unknown key id
//! ([`Verifier::verify_waiting`] waits a bounded time for that refresh). Either way a new key set
//! that parses replaces the old one whole; a missing, broken or unreachable one keeps the last
//! good set (logged once, as every reload failure is), and [`KeysStatus`] says which happened.
//!
//! Knows nothing of gRPC or policies: the server decides what a rejected token means for a
//! request.

pub mod claims;
pub mod dev;
pub mod jwks;
pub mod remote;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value as Json};

use crate::reload::{self, Outcome, ReloadOptions, Reloader};
use crate::request::Principal;
use crate::telemetry::JWKS_RELOADS_TOTAL;
pub use claims::ClaimMapping;
pub use jwks::{JwksError, KeySet};
pub use remote::{Location, RemoteConfig};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// The algorithms a token may be signed with; each key verifies exactly one of them.
pub const ACCEPTED_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// How tokens are verified and mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// Where the issuer's public keys (a JSON Web Key Set) are.
    pub keys: KeySource,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The audiences of this deployment; a token's `aud` must name at least one.
    pub audiences: Vec<String>,
    pub mapping: ClaimMapping,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Requests must carry a token: a bare principal is refused.
    pub required: bool,
    /// How often the JWKS file is re-read whatever the file events say (a read and a hash;
    /// parsed only when it changed).
    pub poll: Duration,
}

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS file, watched.
    File(PathBuf),
    /// A JWKS URL, or an OpenID Connect issuer's discovery document.
    Url(RemoteConfig),
}

/// The state of the key set, for the Status API: where it comes from, what it holds, how its
/// refreshes went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysStatus {
    /// The JWKS file's path, the JWKS URL, or the OpenID Connect issuer.
    pub source: String,
    /// The URL keys are fetched from (the discovered `jwks_uri` with an issuer); empty for a file.
    pub jwks_uri: String,
    /// The key ids of the keys in use, in the document's order (`""` for a key without one).
    pub key_ids: Vec<String>,
    /// When the keys in use were last confirmed: loaded from the file, or fetched (a key set, or
    /// 304 Not Modified).
    pub last_success_at: Option<SystemTime>,
    /// Why the last attempt failed (the last good keys stayed); `None` once one succeeds.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// Successful loads or fetches since the daemon started, the first included.
    pub refreshes_ok: u64,
    /// Failed reloads or fetches since the daemon started.
    pub refreshes_failed: u64,
    /// When the next scheduled fetch is due (URLs only).
    pub next_refresh_at: Option<SystemTime>,
}

/// The key ids of a set, for logs and Status.
fn key_ids(set: &KeySet) -> Vec<String> {
    set.keys
        .iter()
        .map(|k| k.kid.clone().unwrap_or_default())
        .collect()
}

impl TokenConfig {
    /// A configuration with the defaults: roles from `roles`, capabilities from
    /// `capabilities`, a leeway of 30 s, tokens optional, the file checked every 2 s.
    pub fn new(jwks_file: impl Into<PathBuf>, issuer: &str, audiences: &[&str]) -> TokenConfig {
        TokenConfig {
            keys: KeySource::File(jwks_file.into()),
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            mapping: ClaimMapping::default(),
            leeway: Duration::from_secs(30),
            required: false,
            poll: Duration::from_secs(2),
        }
    }
}

/// Why a token was rejected. The `Display` text is the reason callers see after
/// "token rejected: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    CriticalHeader,
    /// `alg: none`, in any letter case.
    Unsigned,
    /// An HMAC algorithm (HS256...), named when it is a registered one.
    Symmetric(Option<&'static str>),
    /// Another algorithm, named when it is a registered one.
    UnsupportedAlgorithm(Option<&'static str>),
    UnknownKeyId,
    /// No `kid`, and no key of the token's algorithm.
    NoKeyForAlgorithm(&'static str),
    /// The key the `kid` names verifies another algorithm.
    AlgorithmMismatch,
    SignatureInvalid,
    Expired,
    NotYetValid,
    IssuerRejected,
    AudienceRejected,
    MissingClaim(String),
    /// A claim of the wrong type or value, e.g. "exp is a string, not a NumericDate", "roles is
    /// not a list of strings", "sub is empty".
    MalformedClaim(String),
    /// The backend could not use the key (keys are checked when they load, so this is a bug).
    Unverifiable,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TokenError::*;
        match self {
            TooLarge => write!(f, "token larger than {MAX_TOKEN_BYTES} bytes"),
            Malformed => f.write_str("not a well-formed signed JWT"),
            CriticalHeader => f.write_str("critical header parameters (crit) are not supported"),
            Unsigned => f.write_str("unsigned token (alg none) refused"),
            Symmetric(Some(alg)) => write!(f, "symmetric algorithm {alg} refused"),
            Symmetric(None) => f.write_str("symmetric (HMAC) algorithm refused"),
            UnsupportedAlgorithm(alg) => write!(
                f,
                "algorithm {} not accepted (accepted: {})",
                alg.unwrap_or("(unknown)"),
                ACCEPTED_ALGORITHMS.join(", ")
            ),
            UnknownKeyId => f.write_str("unknown key id"),
            NoKeyForAlgorithm(alg) => write!(f, "no key id, and no key for {alg}"),
            AlgorithmMismatch => f.write_str("algorithm does not match the key"),
            SignatureInvalid => f.write_str("signature invalid"),
            Expired => f.write_str("expired"),
            NotYetValid => f.write_str("not yet valid (nbf)"),
            IssuerRejected => f.write_str("issuer not accepted"),
            AudienceRejected => f.write_str("audience not accepted"),
            MissingClaim(claim) => write!(f, "missing claim {claim}"),
            MalformedClaim(what) => write!(f, "claim {what}"),
            Unverifiable => f.write_str("the key could not verify the token"),
        }
    }
}

impl std::error::Error for TokenError {}

impl TokenError {
    /// A short, fixed name of the failure, for metric labels.
    pub fn label(&self) -> &'static str {
        use TokenError::*;
        match self {
            TooLarge => "too_large",
            Malformed | CriticalHeader => "malformed",
            Unsigned => "unsigned",
            Symmetric(_) => "symmetric",
            UnsupportedAlgorithm(_) => "algorithm",
            UnknownKeyId | NoKeyForAlgorithm(_) => "unknown_key",
            AlgorithmMismatch => "algorithm_mismatch",
            SignatureInvalid => "signature",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuerRejected => "issuer",
            AudienceRejected => "audience",
            MissingClaim(_) | MalformedClaim(_) => "claims",
            Unverifiable => "unverifiable",
        }
    }
}

/// Registered JWS algorithm names (RFC 7518, RFC 8037, RFC 8812), so a reason can name the
/// algorithm without echoing whatever the header said.
const REGISTERED_ALGORITHMS: [&str; 15] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "ES512", "ES256K", "EdDSA", "Ed25519",
];

fn registered(alg: &str) -> Option<&'static str> {
    REGISTERED_ALGORITHMS.iter().find(|a| **a == alg).copied()
}

/// The header members verification needs, read before any key is chosen.
struct Header {
    alg: String,
    kid: Option<String>,
}

fn header(token: &str) -> Result<Header, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let Ok(Json::Object(mut header)) = serde_json::from_slice::<Json>(&bytes) else {
        return Err(TokenError::Malformed);
    };
    if header.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }
    let Some(Json::String(alg)) = header.remove("alg") else {
        return Err(TokenError::Malformed);
    };
    let kid = match header.remove("kid") {
        None => None,
        Some(Json::String(kid)) => Some(kid),
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok(Header { alg, kid })
}

/// The allow-list: the header's `alg` only selects among these; the key decides.
fn accepted_algorithm(alg: &str) -> Result<Algorithm, TokenError> {
    match alg {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        _ if alg.eq_ignore_ascii_case("none") => Err(TokenError::Unsigned),
        _ if alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs")) => {
            Err(TokenError::Symmetric(registered(alg)))
        }
        _ => Err(TokenError::UnsupportedAlgorithm(registered(alg))),
    }
}

/// Maps a verification failure of `token` to its reason. Claims are validated only after the
/// signature verified, so a claim problem may look at the (signed) payload to say what is wrong.
fn token_error(token: &str, e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::SignatureInvalid,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::IssuerRejected,
        ErrorKind::InvalidAudience => TokenError::AudienceRejected,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                // The library reports an `exp` it cannot read as a number as missing.
                "exp" => numeric_date_problem(token, "exp"),
                "nbf" => numeric_date_problem(token, "nbf"),
                "iss" => TokenError::MissingClaim("iss".into()),
                "aud" => TokenError::MissingClaim("aud".into()),
                _ => TokenError::Malformed,
            }
        }
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => TokenError::Unverifiable,
        _ => TokenError::Malformed,
    }
}

/// Whether `key` verifies the signature of `token` (claims aside).
fn signed_by(token: &str, key: &jwks::Key) -> bool {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, key.algorithm)
        .unwrap_or(false)
}

/// The first problem of `exp` (required) and `nbf` (optional) in a signed token's claims.
fn numeric_dates_problem(token: &str) -> Option<TokenError> {
    let claims = payload(token)?;
    let usable = |v: &Json| {
        v.as_u64().is_some() || v.as_f64().is_some_and(|f| f >= 0.0 && f < u64::MAX as f64)
    };
    match claims.get("exp") {
        Some(v) if usable(v) => {}
        _ => return Some(numeric_date_problem(token, "exp")),
    }
    match claims.get("nbf") {
        None | Some(Json::Null) => None,
        Some(v) if usable(v) => None,
        Some(_) => Some(numeric_date_problem(token, "nbf")),
    }
}

/// The claims of a token, unverified: only for saying what is wrong with a signed one.
fn payload(token: &str) -> Option<Map<String, Json>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What is wrong with a NumericDate claim (`exp`, `nbf`) the library could not use: absent, of
/// another JSON type, or a number outside 0..2^64 seconds. Names the type, never the value.
fn numeric_date_problem(token: &str, claim: &'static str) -> TokenError {
    let value = payload(token).and_then(|mut claims| claims.remove(claim));
    let what = match value {
        None | Some(Json::Null) => return TokenError::MissingClaim(claim.into()),
        Some(Json::String(_)) => "a string",
        Some(Json::Bool(_)) => "a boolean",
        Some(Json::Array(_)) => "a list",
        Some(Json::Object(_)) => "an object",
        Some(Json::Number(_)) => {
            return TokenError::MalformedClaim(format!(
                "{claim} is out of range (a NumericDate is 0 to 2^64 seconds since 1970)"
            ))
        }
    };
    TokenError::MalformedClaim(format!(
        "{claim} is {what}, not a NumericDate (seconds since 1970)"
    ))
}

/// Verifies tokens against the current key set; owns the thread that re-reads the JWKS file or
/// fetches the JWKS URL.
pub struct Verifier {
    keys: Arc<ArcSwap<KeySet>>,
    status: Arc<ArcSwap<KeysStatus>>,
    mapping: ClaimMapping,
    /// One validation per accepted algorithm (RS256, ES256, EdDSA), each allowing only it.
    validations: [Validation; 3],
    required: bool,
    keeper: Keeper,
}

/// The thread that keeps the key set fresh.
enum Keeper {
    File(Reloader),
    Url(remote::Refresher),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.load().keys.len())
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

fn read_key_set(path: &Path) -> Result<KeySet, JwksError> {
    let bytes = std::fs::read(path)
        .map_err(|e| JwksError(format!("{}: cannot read: {e}", path.display())))?;
    jwks::parse(&bytes).map_err(|e| JwksError(format!("{}: {e}", path.display())))
}

impl Verifier {
    /// Checks the configuration, loads the keys (an error if the JWKS file is unreadable, the
    /// URL unreachable, discovery wrong, the JWKS broken or without a usable key: the caller
    /// fails closed) and starts the thread that keeps them fresh. With a URL this blocks for
    /// up to the fetch timeout (twice with discovery): call it off the async runtime.
    pub fn start(config: TokenConfig) -> Result<Verifier, JwksError> {
        if config.issuer.trim().is_empty() {
            return Err(JwksError("the token issuer must be configured".into()));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(JwksError(
                "at least one token audience must be configured, none empty".into(),
            ));
        }
        config.mapping.validate().map_err(JwksError)?;
        let validation = |algorithm| {
            let mut v = Validation::new(algorithm);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            v.leeway = config.leeway.as_secs();
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_issuer(&[config.issuer.as_str()]);
            v.set_audience(&config.audiences);
            v
        };
        let (keys, status, keeper) = match &config.keys {
            KeySource::File(path) => {
                let set = read_key_set(path)?;
                log_loaded(&path.display(), &set, "JWKS loaded");
                let status = Arc::new(ArcSwap::from_pointee(KeysStatus {
                    source: path.display().to_string(),
                    key_ids: key_ids(&set),
                    last_success_at: Some(SystemTime::now()),
                    refreshes_ok: 1,
                    ..KeysStatus::default()
                }));
                let keys = Arc::new(ArcSwap::from_pointee(set));
                let file = JwksFile {
                    path: path.clone(),
                    keys: Arc::clone(&keys),
                    status: Arc::clone(&status),
                };
                let reloader = Reloader::start(
                    Arc::new(file),
                    ReloadOptions {
                        watch: true,
                        poll: Some(config.poll),
                        ..ReloadOptions::default()
                    },
                )
                .map_err(|e| JwksError(format!("cannot start the JWKS reload thread: {e}")))?;
                (keys, status, Keeper::File(reloader))
            }
            KeySource::Url(remote) => {
                let keys = Arc::new(ArcSwap::from_pointee(KeySet::default()));
                let status = Arc::new(ArcSwap::from_pointee(KeysStatus {
                    source: remote.source().to_string(),
                    ..KeysStatus::default()
                }));
                let refresher = remote::Refresher::start(
                    remote.clone(),
                    Arc::clone(&keys),
                    Arc::clone(&status),
                )?;
                (keys, status, Keeper::Url(refresher))
            }
        };
        Ok(Verifier {
            keys,
            status,
            keeper,
            mapping: config.mapping,
            validations: [
                validation(Algorithm::RS256),
                validation(Algorithm::ES256),
                validation(Algorithm::EdDSA),
            ],
            required: config.required,
        })
    }

    /// Whether requests must carry a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The key set tokens are verified with now.
    pub fn key_set(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Where the keys come from and how their refreshes went (the Status API).
    pub fn status(&self) -> Arc<KeysStatus> {
        self.status.load_full()
    }

    /// Asks the thread to re-read the JWKS file, or fetch the URL (discovery included), now
    /// (SIGHUP). Returns at once.
    pub fn reload_now(&self) {
        match &self.keeper {
            Keeper::File(reloader) => reloader.reload_now(),
            Keeper::Url(refresher) => refresher.refresh_now(),
        }
    }

    /// [`Verifier::verify`], and for keys from a URL, when the token names a key the set does
    /// not have: asks for a refresh (at most one per `unknown_kid_interval`), waits for it up to
    /// the fetch timeout or `deadline`, whichever comes first, and verifies again with what it
    /// brought. Rate-limited, the token is rejected at once (`unknown key id`). Waiting is an
    /// await on a watch channel: it holds no lock and no thread.
    pub async fn verify_waiting(
        &self,
        token: &str,
        deadline: Option<Instant>,
    ) -> Result<Principal, TokenError> {
        let outcome = self.verify(token);
        let (Err(TokenError::UnknownKeyId | TokenError::NoKeyForAlgorithm(_)), Keeper::Url(r)) =
            (&outcome, &self.keeper)
        else {
            return outcome;
        };
        let Some(attempts) = r.unknown_key() else {
            return outcome;
        };
        let mut limit = r.timeout();
        if let Some(deadline) = deadline {
            limit = limit.min(deadline.saturating_duration_since(Instant::now()));
        }
        r.wait_for_refresh(attempts, limit).await;
        self.verify(token)
    }

    fn validation(&self, algorithm: Algorithm) -> &Validation {
        match algorithm {
            Algorithm::RS256 => &self.validations[0],
            Algorithm::ES256 => &self.validations[1],
            _ => &self.validations[2],
        }
    }

    /// Verifies `token` and maps its claims to a principal.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = header(token)?;
        let algorithm = accepted_algorithm(&header.alg)?;
        let keys = self.keys.load();
        let claims = match &header.kid {
            Some(kid) => {
                let key = keys.by_kid(kid).ok_or(TokenError::UnknownKeyId)?;
                if key.algorithm != algorithm {
                    return Err(TokenError::AlgorithmMismatch);
                }
                self.decode(token, key)?
            }
            None => {
                let mut outcome = Err(TokenError::NoKeyForAlgorithm(jwks::algorithm_name(
                    algorithm,
                )));
                for key in keys.by_algorithm(algorithm) {
                    outcome = self.decode(token, key);
                    // Anything but a bad signature means this key verified it (claims are
                    // checked after the signature), or the token is broken for every key.
                    if outcome != Err(TokenError::SignatureInvalid) {
                        break;
                    }
                }
                outcome?
            }
        };
        claims::principal(claims, &self.mapping)
    }

    fn decode(&self, token: &str, key: &jwks::Key) -> Result<Map<String, Json>, TokenError> {
        jsonwebtoken::decode::<Map<String, Json>>(
            token,
            &key.decoding,
            self.validation(key.algorithm),
        )
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            // The library cannot read claims of some shapes at all (an `exp` that is a list):
            // once the signature is known to be good, say which claim.
            ErrorKind::Json(_) if signed_by(token, key) => {
                numeric_dates_problem(token).unwrap_or(TokenError::Malformed)
            }
            _ => token_error(token, e),
        })
    }
}

fn log_loaded(source: &dyn fmt::Display, set: &KeySet, message: &str) {
    let kids: Vec<&str> = set
        .keys
        .iter()
        .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
        .collect();
    tracing::info!(
        source = %source,
        keys = set.keys.len(),
        kids = %kids.join(","),
        "{message}"
    );
    for skipped in &set.skipped {
        tracing::info!(source = %source, "JWKS key skipped: {skipped}");
    }
}

/// The JWKS file, as a [`Reloader`] re-reads it: a changed file that parses is published.
struct JwksFile {
    path: PathBuf,
    keys: Arc<ArcSwap<KeySet>>,
    status: Arc<ArcSwap<KeysStatus>>,
}

impl reload::Source for JwksFile {
    fn name(&self) -> &'static str {
        "JWKS"
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn refresh(&self) -> Outcome {
        let failed = |message: String| {
            metrics::counter!(JWKS_RELOADS_TOTAL, "result" => "failed").increment(1);
            self.status.rcu(|status| KeysStatus {
                last_error: Some(message.clone()),
                last_error_at: Some(SystemTime::now()),
                refreshes_failed: status.refreshes_failed + 1,
                ..(**status).clone()
            });
            Outcome::Rejected(message)
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => return failed(format!("{}: cannot read: {e}", self.path.display())),
        };
        let hash: [u8; 32] = {
            use sha2::{Digest, Sha256};
            Sha256::digest(&bytes).into()
        };
        if hash == self.keys.load().hash {
            if self.status.load().last_error.is_some() {
                self.status.rcu(|status| KeysStatus {
                    last_error: None,
                    last_error_at: None,
                    ..(**status).clone()
                });
            }
            return Outcome::Unchanged;
        }
        match jwks::parse(&bytes) {
            Ok(set) => {
                log_loaded(&self.path.display(), &set, "JWKS reloaded");
                // The keys are in use before the metric and Status say so.
                let ids = key_ids(&set);
                self.keys.store(Arc::new(set));
                metrics::counter!(JWKS_RELOADS_TOTAL, "result" => "ok").increment(1);
                self.status.rcu(|status| KeysStatus {
                    key_ids: ids.clone(),
                    last_success_at: Some(SystemTime::now()),
                    last_error: None,
                    last_error_at: None,
                    refreshes_ok: status.refreshes_ok + 1,
                    ..(**status).clone()
                });
                Outcome::Published
            }
            Err(e) => failed(format!("{}: {e}", self.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_decides_before_any_key() {
        assert_eq!(accepted_algorithm("RS256"), Ok(Algorithm::RS256));
        assert_eq!(accepted_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(accepted_algorithm(none), Err(TokenError::Unsigned));
        }
        assert_eq!(
            accepted_algorithm("HS256"),
            Err(TokenError::Symmetric(Some("HS256")))
        );
        assert_eq!(
            accepted_algorithm("hs999"),
            Err(TokenError::Symmetric(None))
        );
        assert_eq!(
            accepted_algorithm("PS256"),
            Err(TokenError::UnsupportedAlgorithm(Some("PS256")))
        );
        // Not echoed: the header is the attacker's text.
        let err = accepted_algorithm("<script>é").unwrap_err();
        assert_eq!(err, TokenError::UnsupportedAlgorithm(None));
        assert!(!err.to_string().contains("script"));
        assert_eq!(
            accepted_algorithm("é"),
            Err(TokenError::UnsupportedAlgorithm(None))
        );
    }

    #[test]
    fn headers_are_read_strictly() {
        let encode = |h: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(h));
        assert!(header(&encode(r#"{"alg":"RS256","kid":"k"}"#)).is_ok());
        for bad in [
            encode(r#"{"kid":"k"}"#),
            encode(r#"{"alg":5}"#),
            encode(r#"{"alg":"RS256","kid":7}"#),
            encode("[]"),
            "a.b".to_string(),
            "a.b.c.d.e".to_string(),
            "!!.e30.sig".to_string(),
            String::new(),
        ] {
            assert_eq!(header(&bad).err(), Some(TokenError::Malformed), "{bad}");
        }
        assert_eq!(
            header(&encode(r#"{"alg":"RS256","crit":["exp"]}"#)).err(),
            Some(TokenError::CriticalHeader)
        );
    }
}
