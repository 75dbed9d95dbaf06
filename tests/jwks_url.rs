//! Keys from an identity provider by URL, through the real daemon: a local HTTPS identity
//! provider (a certificate from a CA generated here, given to the daemon with `--jwks-ca-file`,
//! on 127.0.0.1:0) serves a JWKS and an OpenID Connect discovery document and counts what it is
//! asked. Tokens verify with the fetched keys; discovery finds the JWKS and its issuer must be
//! the configured one; a token naming a new key id brings the rotated keys, and the rate limit
//! holds the fetches down (counted at the server); requests meeting one unknown key id at once
//! join one fetch and are all allowed with what it brings; the caching lifetime spaces the
//! fetches (the server's clock) and a conditional request (`If-None-Match`, and
//! `If-Modified-Since`) gets 304, which keeps the keys; a failing server leaves the last good
//! keys in use, and says so in metrics, Status and the log; after a failure discovery runs
//! again and a moved `jwks_uri` is fetched whole; a `jwks_uri` that moved while the old URL
//! still answers is found by the fetch for an unknown key id, and at the ceiling; a server that does not answer holds a request
//! with an unknown key id no longer than the fetch timeout; plain http works only to loopback,
//! with the development flag.
use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{Daemon, BIN};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{json, Value as Json};
use tokio_rustls::rustls;

const AUDIENCE: &str = "verdict";

/// Signing keys, generated once per test binary.
fn key(n: usize) -> &'static p256::ecdsa::SigningKey {
    static KEYS: OnceLock<Vec<p256::ecdsa::SigningKey>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..4)
            .map(|_| p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
            .collect()
    })[n]
}

/// The public JWK of `key(n)`, with kid `ec-{n}`.
fn jwk(n: usize) -> Json {
    let point = key(n).verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": format!("ec-{n}"), "use": "sig",
           "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
           "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())})
}

fn jwks(keys: &[usize]) -> String {
    json!({"keys": keys.iter().map(|n| jwk(*n)).collect::<Vec<_>>()}).to_string()
}

/// A token for dr-house from `issuer`, signed with `key(n)` and naming kid `ec-{n}`.
fn token(n: usize, issuer: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "dr-house", "iss": issuer, "aud": AUDIENCE, "exp": now + 600,
                        "roles": ["physician"], "scope": "user/*.cruds", "practice_id": "7"});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(format!("ec-{n}"));
    let der = key(n).to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(der.as_bytes())).unwrap()
}

/// What the identity provider answers on its JWKS path.
#[derive(Clone)]
enum Answer {
    Keys,
    Status(u16),
    Body(String),
}

/// One request the identity provider received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    at: Instant,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
}

struct State {
    jwks: String,
    answer: Answer,
    cache_control: Option<String>,
    etag: Option<String>,
    /// The JWKS's Last-Modified (whole seconds).
    last_modified: Option<SystemTime>,
    /// Another key set, and its Last-Modified, served at `/v2/jwks` (404 when `None`): where the
    /// identity provider moves its keys.
    v2: Option<(String, SystemTime)>,
    /// The discovery document, served at `/realms/clinic/.well-known/openid-configuration`.
    discovery: Option<Json>,
    /// JWKS requests are held (received, counted, unanswered) until this is false again.
    hold: bool,
    hits: Vec<Hit>,
}

/// The state, and the signal that it changed (a held request waits on it).
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// An HTTPS identity provider on 127.0.0.1:0 (plain HTTP with [`Idp::start_plain`]), one
/// request per connection.
struct Idp {
    base: String,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
}

impl Idp {
    fn start(keys: &[usize]) -> Idp {
        Idp::start_with(keys, true)
    }

    fn start_plain(keys: &[usize]) -> Idp {
        Idp::start_with(keys, false)
    }

    fn start_with(keys: &[usize], tls: bool) -> Idp {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "test identity provider CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("idp-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jwks: jwks(keys),
                answer: Answer::Keys,
                cache_control: None,
                etag: None,
                last_modified: None,
                v2: None,
                discovery: None,
                hold: false,
                hits: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let served = Arc::clone(&shared);
        std::thread::spawn(move || {
            for tcp in listener.incoming().map_while(Result::ok) {
                let (config, shared) = (Arc::clone(&config), Arc::clone(&served));
                std::thread::spawn(move || {
                    if !tls {
                        let _ = serve(tcp, &shared, |_| {});
                        return;
                    }
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    // A handshake the client refuses ends here, as a read error.
                    let _ = serve(rustls::StreamOwned::new(conn, tcp), &shared, |s| {
                        s.conn.send_close_notify()
                    });
                });
            }
        });
        Idp {
            base,
            shared,
            _dir: dir,
            ca_file,
        }
    }

    fn issuer(&self) -> String {
        format!("{}/realms/clinic", self.base)
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.shared.state.lock().unwrap());
        self.shared.changed.notify_all();
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let state = self.shared.state.lock().unwrap();
        state
            .hits
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    fn jwks_fetches(&self) -> usize {
        self.hits("/jwks").len()
    }

    fn ca_flag(&self) -> &str {
        self.ca_file.to_str().unwrap()
    }
}

fn serve<S: Read + Write>(
    mut stream: S,
    shared: &Shared,
    close: impl FnOnce(&mut S),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let (mut if_none_match, mut if_modified_since) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = Some(value.trim().to_string());
            match name.trim().to_ascii_lowercase().as_str() {
                "if-none-match" => if_none_match = value,
                "if-modified-since" => if_modified_since = value,
                _ => {}
            }
        }
    }
    let (status, headers, body) = {
        let mut state = shared.state.lock().unwrap();
        state.hits.push(Hit {
            path: path.clone(),
            at: Instant::now(),
            if_none_match: if_none_match.clone(),
            if_modified_since: if_modified_since.clone(),
        });
        while path == "/jwks" && state.hold {
            state = shared.changed.wait(state).unwrap();
        }
        let headers = Vec::new();
        match path.as_str() {
            "/realms/clinic/.well-known/openid-configuration" => match &state.discovery {
                Some(doc) => (200, headers, doc.to_string()),
                None => (404, headers, String::new()),
            },
            "/jwks" => match state.answer.clone() {
                Answer::Status(code) => (code, headers, "unavailable".to_string()),
                Answer::Body(body) => (200, headers, body),
                Answer::Keys => {
                    let etag = state.etag.as_deref();
                    let validators = (etag, state.last_modified);
                    let request = (if_none_match.as_deref(), if_modified_since.as_deref());
                    keys_answer(&state, &state.jwks, validators, request, headers)
                }
            },
            "/v2/jwks" => match &state.v2 {
                Some((jwks, modified)) => {
                    let request = (if_none_match.as_deref(), if_modified_since.as_deref());
                    keys_answer(&state, jwks, (None, Some(*modified)), request, headers)
                }
                None => (404, headers, String::new()),
            },
            _ => (404, headers, String::new()),
        }
    };
    let mut response =
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nConnection: close\r\n");
    for header in headers {
        response.push_str(&header);
        response.push_str("\r\n");
    }
    if status != 304 {
        response.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    stream.write_all(response.as_bytes())?;
    close(&mut stream);
    stream.flush()
}

/// A key set's answer, as an HTTP cache would have it (RFC 9110, 13.1): 304 when the request's
/// `If-None-Match` names the ETag, or, without `If-None-Match`, when its `If-Modified-Since` is
/// no earlier than the Last-Modified; else 200 with the validators. Caching headers on both.
fn keys_answer(
    state: &State,
    jwks: &str,
    (etag, last_modified): (Option<&str>, Option<SystemTime>),
    (if_none_match, if_modified_since): (Option<&str>, Option<&str>),
    mut headers: Vec<String>,
) -> (u16, Vec<String>, String) {
    if let Some(cache) = &state.cache_control {
        headers.push(format!("Cache-Control: {cache}"));
    }
    let fresh = match (if_none_match, if_modified_since, last_modified) {
        (Some(tag), _, _) => Some(tag) == etag,
        (None, Some(since), Some(modified)) => {
            httpdate::parse_http_date(since).is_ok_and(|since| modified <= since)
        }
        _ => false,
    };
    if fresh {
        return (304, headers, String::new());
    }
    if let Some(etag) = etag {
        headers.push(format!("ETag: {etag}"));
    }
    if let Some(modified) = last_modified {
        headers.push(format!(
            "Last-Modified: {}",
            httpdate::fmt_http_date(modified)
        ));
    }
    (200, headers, jwks.to_string())
}

/// A time `days` days ago, in whole seconds (as HTTP dates have it).
fn days_ago(days: u64) -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_secs(now.as_secs() - days * 86_400)
}

/// A daemon with the HTTP/JSON API, verifying tokens with keys from `flags`.
fn start_daemon(flags: &[&str]) -> Daemon {
    let mut all = vec!["--token-audience", AUDIENCE, "--http-listen", "127.0.0.1:0"];
    all.extend_from_slice(flags);
    Daemon::start(&common::bundled_policies(), &all)
}

/// A daemon verifying tokens from `idp`'s issuer with keys from its JWKS URL (its CA given), and
/// `extra` flags.
fn url_daemon(idp: &Idp, extra: &[&str]) -> Daemon {
    let (url, issuer) = (idp.jwks_url(), idp.issuer());
    let mut flags = vec![
        "--jwks-url",
        &url,
        "--jwks-ca-file",
        idp.ca_flag(),
        "--token-issuer",
        &issuer,
    ];
    flags.extend_from_slice(extra);
    start_daemon(&flags)
}

/// `POST /v1/check` of Patient/123 `read` with `token`: (effect, token_error).
fn read_with(daemon: &Daemon, token: &str) -> (String, String) {
    let url = format!("http://{}/v1/check", daemon.http_addr.as_deref().unwrap());
    let body = json!({"token": token, "resources": [{"resource": {"kind": "Patient", "id": "123",
                      "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false}},
                      "actions": ["read"]}]});
    let answer: Json = ureq::post(&url)
        .send_json(body)
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    (
        answer["results"][0]["actions"]["read"]["effect"]
            .as_str()
            .unwrap()
            .to_string(),
        answer["token_error"].as_str().unwrap_or("").to_string(),
    )
}

fn allowed(daemon: &Daemon, token: &str) -> bool {
    read_with(daemon, token) == ("EFFECT_ALLOW".to_string(), String::new())
}

/// `GET /v1/status`'s `token_keys`.
fn token_keys(daemon: &Daemon) -> Json {
    let url = format!("http://{}/v1/status", daemon.http_addr.as_deref().unwrap());
    let status: Json = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    status["token_keys"].clone()
}

/// `verdict serve` with `flags` that must not start: its error output.
fn refused_start(flags: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
        .arg(common::bundled_policies())
        .args(["--token-audience", AUDIENCE])
        .args(flags)
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started with {flags:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fetches(daemon: &Daemon, outcome: &str) -> f64 {
    daemon.metric(&format!(
        "verdict_jwks_fetches_total{{outcome=\"{outcome}\"}}"
    ))
}

#[test]
fn tokens_verify_with_keys_from_a_jwks_url_over_verified_https() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    let url = idp.jwks_url();
    let daemon = url_daemon(&idp, &[]);
    assert!(allowed(&daemon, &token(1, &issuer)));
    assert_eq!(
        read_with(&daemon, &token(1, "https://another.idp.test")),
        ("EFFECT_DENY".into(), "issuer not accepted".into())
    );
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(fetches(&daemon, "ok"), 1.0);
    let keys = token_keys(&daemon);
    assert_eq!(keys["source"], url.as_str(), "{keys}");
    assert_eq!(keys["jwks_uri"], url.as_str(), "{keys}");
    assert_eq!(keys["key_ids"], json!(["ec-1"]), "{keys}");
    assert_eq!(keys["refreshes_ok"], "1", "{keys}");
    assert!(keys["last_success_at"].is_string(), "{keys}");
    assert!(keys["next_refresh_at"].is_string(), "{keys}");
    assert!(keys.get("last_error").is_none(), "{keys}");
    assert!(daemon.metric("verdict_jwks_last_success_timestamp_seconds") > 1.7e9);

    // The server is verified: without the CA file, Mozilla's roots do not know its CA, and the
    // daemon does not start (fail closed: no keys, no serving).
    let stderr = refused_start(&["--jwks-url", &url, "--token-issuer", &issuer]);
    assert!(
        stderr.contains("refusing to start: token verification") && stderr.contains(&url),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    // Plain http is refused before anything is fetched, even to a loopback address, unless the
    // development flag says so; and with it, only to a loopback address.
    let plain = url.replace("https://", "http://");
    let stderr = refused_start(&["--jwks-url", &plain, "--token-issuer", &issuer]);
    assert!(stderr.contains("https only"), "{stderr}");
    let stderr = refused_start(&[
        "--jwks-url",
        "http://idp.example.com/jwks",
        "--jwks-allow-http-loopback",
        "--token-issuer",
        &issuer,
    ]);
    assert!(stderr.contains("only to a loopback host"), "{stderr}");
    // One key source at a time.
    let stderr = refused_start(&["--jwks-url", &url, "--oidc-issuer", &issuer]);
    assert!(stderr.contains("are alternatives"), "{stderr}");
}

#[test]
fn oidc_discovery_finds_the_jwks_and_its_issuer_must_be_the_configured_one() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    idp.set(|s| {
        s.discovery = Some(
            json!({"issuer": issuer, "jwks_uri": format!("{}/jwks", idp.base),
                                  "token_endpoint": format!("{issuer}/token")}),
        )
    });
    // No --token-issuer: tokens must carry the OIDC issuer.
    let daemon = start_daemon(&["--oidc-issuer", &issuer, "--jwks-ca-file", idp.ca_flag()]);
    assert!(allowed(&daemon, &token(1, &issuer)));
    assert_eq!(
        read_with(&daemon, &token(1, &format!("{issuer}/"))),
        ("EFFECT_DENY".into(), "issuer not accepted".into())
    );
    let keys = token_keys(&daemon);
    assert_eq!(keys["source"], issuer.as_str(), "{keys}");
    assert_eq!(keys["jwks_uri"], idp.jwks_url().as_str(), "{keys}");
    assert_eq!(
        idp.hits("/realms/clinic/.well-known/openid-configuration")
            .len(),
        1
    );
    assert_eq!(idp.jwks_fetches(), 1);
    drop(daemon);

    // A discovery document of another issuer (a trailing slash is another issuer) is refused,
    // and its jwks_uri never fetched.
    for other in [format!("{issuer}/"), "https://evil.example".to_string()] {
        idp.set(|s| {
            s.discovery = Some(json!({"issuer": other, "jwks_uri": format!("{}/jwks", idp.base)}))
        });
        let stderr = refused_start(&["--oidc-issuer", &issuer, "--jwks-ca-file", idp.ca_flag()]);
        assert!(
            stderr.contains(&format!(
                "the document's issuer is {other:?}, not the configured {issuer:?}"
            )),
            "{stderr}"
        );
    }
    // Without jwks_uri, or with a plain http one.
    idp.set(|s| s.discovery = Some(json!({"issuer": issuer})));
    let stderr = refused_start(&["--oidc-issuer", &issuer, "--jwks-ca-file", idp.ca_flag()]);
    assert!(stderr.contains("no jwks_uri"), "{stderr}");
    idp.set(|s| {
        s.discovery = Some(json!({"issuer": issuer, "jwks_uri": "http://idp.example.com/jwks"}))
    });
    let stderr = refused_start(&["--oidc-issuer", &issuer, "--jwks-ca-file", idp.ca_flag()]);
    assert!(stderr.contains("https only"), "{stderr}");
    assert_eq!(idp.jwks_fetches(), 1, "only the first daemon fetched keys");
    // A configured token issuer must be the OIDC issuer.
    let stderr = refused_start(&["--oidc-issuer", &issuer, "--token-issuer", "https://x.test"]);
    assert!(
        stderr.contains("differs from tokens.oidc_issuer"),
        "{stderr}"
    );
}

#[test]
fn a_new_key_id_brings_the_rotated_keys_and_the_rate_limit_holds() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    // No scheduled refresh during the test: every fetch after the first is an unknown kid's.
    idp.set(|s| s.cache_control = Some("max-age=3600".into()));
    let daemon = url_daemon(&idp, &["--jwks-unknown-kid-secs", "3600"]);
    assert!(allowed(&daemon, &token(1, &issuer)));
    assert_eq!(idp.jwks_fetches(), 1);

    // The identity provider rotates: ec-2 is published, and a token signed with it is the first
    // the daemon sees. Its request asks for a refresh, waits for it, and is allowed.
    idp.set(|s| s.jwks = jwks(&[1, 2]));
    assert!(allowed(&daemon, &token(2, &issuer)));
    assert_eq!(idp.jwks_fetches(), 2);
    assert_eq!(
        daemon.metric("verdict_jwks_unknown_kid_total{result=\"refresh\"}"),
        1.0
    );
    assert_eq!(token_keys(&daemon)["key_ids"], json!(["ec-1", "ec-2"]));

    // Within the interval, unknown key ids are denied at once and fetch nothing: not even when
    // the key has since been published.
    for _ in 0..3 {
        assert_eq!(
            read_with(&daemon, &token(3, &issuer)),
            ("EFFECT_DENY".into(), "unknown key id".into())
        );
    }
    idp.set(|s| s.jwks = jwks(&[1, 2, 3]));
    assert_eq!(
        read_with(&daemon, &token(3, &issuer)),
        ("EFFECT_DENY".into(), "unknown key id".into())
    );
    assert_eq!(idp.jwks_fetches(), 2, "the rate limit held");
    assert_eq!(
        daemon.metric("verdict_jwks_unknown_kid_total{result=\"rate_limited\"}"),
        4.0
    );
    // SIGHUP fetches at once, rate limit or not.
    daemon.signal("HUP");
    common::wait_for_blocking("the fetch SIGHUP asked for", || idp.jwks_fetches() == 3);
    common::wait_for_blocking("ec-3 in the key set", || {
        token_keys(&daemon)["key_ids"] == json!(["ec-1", "ec-2", "ec-3"])
    });
    assert!(allowed(&daemon, &token(3, &issuer)));
}

#[test]
fn the_caching_lifetime_spaces_the_fetches_and_revalidation_gets_304() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    idp.set(|s| {
        s.cache_control = Some("public, max-age=2".into());
        s.etag = Some("\"v1\"".into());
    });
    let daemon = url_daemon(&idp, &["--jwks-refresh-min-secs", "1"]);
    common::wait_for_blocking("three JWKS fetches", || idp.jwks_fetches() >= 3);
    let hits = idp.hits("/jwks");
    for pair in hits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        // Not before the lifetime ran out (max-age=2, above the 1 s floor); and not long after.
        assert!(gap >= Duration::from_millis(1950), "{gap:?}");
        assert!(gap < Duration::from_secs(10), "{gap:?}");
    }
    // The first fetch is unconditional; the others revalidate with the ETag and get 304.
    assert_eq!(hits[0].if_none_match, None);
    assert_eq!(hits[1].if_none_match.as_deref(), Some("\"v1\""));
    // The server answers before the daemon counts what it answered: wait for the count.
    common::wait_for_blocking("two revalidations counted", || {
        fetches(&daemon, "not_modified") >= 2.0
    });
    assert_eq!(fetches(&daemon, "ok"), 1.0);
    assert!(allowed(&daemon, &token(1, &issuer)));

    // A ceiling below the lifetime wins: max-age=3600 with --jwks-refresh-max-secs 1.
    let idp = Idp::start(&[1]);
    idp.set(|s| s.cache_control = Some("max-age=3600".into()));
    let _daemon = url_daemon(
        &idp,
        &[
            "--jwks-refresh-min-secs",
            "1",
            "--jwks-refresh-max-secs",
            "1",
        ],
    );
    common::wait_for_blocking("a second JWKS fetch", || idp.jwks_fetches() >= 2);
    let hits = idp.hits("/jwks");
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(10),
        "{gap:?}"
    );
}

#[test]
fn a_failing_server_leaves_the_last_good_keys_in_use_and_says_so() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    let url = idp.jwks_url();
    idp.set(|s| s.cache_control = Some("max-age=1".into()));
    let daemon = url_daemon(&idp, &["--jwks-refresh-min-secs", "1"]);
    let good = token(1, &issuer);
    assert!(allowed(&daemon, &good));

    let too_large = format!("{{\"keys\": [], \"padding\": \"{}\"}}", "x".repeat(1 << 21));
    for (answer, outcome, error) in [
        (
            Answer::Status(503),
            "http_status",
            format!("{url}: HTTP 503"),
        ),
        (
            Answer::Body("{\"keys\": [".into()),
            "invalid",
            "not valid JSON".into(),
        ),
        (
            Answer::Body("{\"keys\": []}".into()),
            "invalid",
            "no key usable".into(),
        ),
        (
            Answer::Status(302),
            "http_status",
            "redirects are not followed".into(),
        ),
        (
            Answer::Body(too_large),
            "too_large",
            "larger than 1048576 bytes".into(),
        ),
    ] {
        let failed =
            |keys: &Json| -> u64 { keys["refreshes_failed"].as_str().unwrap().parse().unwrap() };
        let failed_before = failed(&token_keys(&daemon));
        let counted_before = fetches(&daemon, outcome);
        idp.set(|s| s.answer = answer);
        // SIGHUP asks for a fetch now (the schedule would in a second: this test is about
        // failures, the_caching_lifetime_spaces_the_fetches… about the schedule).
        daemon.signal("HUP");
        common::wait_for_blocking(outcome, || failed(&token_keys(&daemon)) > failed_before);
        let keys = token_keys(&daemon);
        assert!(fetches(&daemon, outcome) > counted_before, "{outcome}");
        assert!(
            keys["last_error"].as_str().unwrap().contains(&error),
            "{keys}"
        );
        assert!(keys["last_error_at"].is_string(), "{keys}");
        assert_eq!(keys["key_ids"], json!(["ec-1"]), "{keys}");
        assert!(
            allowed(&daemon, &good),
            "{outcome}: the last good keys stay"
        );
        // Back to good between breakages, so each failure is a distinct event.
        idp.set(|s| s.answer = Answer::Keys);
        daemon.signal("HUP");
        common::wait_for_blocking("the recovery", || {
            token_keys(&daemon).get("last_error").is_none()
        });
    }
    // Logged once per distinct error at error level, the recovery at info.
    let logs = daemon.logs();
    let failures = logs
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("JWKS fetch failed"))
        .count();
    assert!(failures >= 5, "{logs:#?}");
    assert!(
        logs.iter().any(|l| l.contains("JWKS fetch recovered")),
        "{logs:#?}"
    );
    assert!(daemon.metric("verdict_jwks_age_seconds") < 60.0);
}

#[test]
fn an_unknown_kid_waits_for_its_refresh_no_longer_than_the_timeout() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    idp.set(|s| s.cache_control = Some("max-age=3600".into()));
    let daemon = url_daemon(
        &idp,
        &[
            "--jwks-timeout-secs",
            "1",
            "--jwks-unknown-kid-secs",
            "3600",
        ],
    );
    // The identity provider publishes ec-2 but stops answering: the request that meets ec-2
    // asks for a fetch, and gets its answer (a deny) while the server still holds the fetch.
    idp.set(|s| {
        s.jwks = jwks(&[1, 2]);
        s.hold = true;
    });
    assert_eq!(
        read_with(&daemon, &token(2, &issuer)),
        ("EFFECT_DENY".into(), "unknown key id".into())
    );
    common::wait_for_blocking("the fetch it asked for, at the server", || {
        idp.jwks_fetches() == 2
    });
    common::wait_for_blocking("the fetch's timeout", || fetches(&daemon, "network") == 1.0);
    let keys = token_keys(&daemon);
    assert!(
        keys["last_error"].as_str().unwrap().contains("timeout"),
        "{keys}"
    );
    assert!(allowed(&daemon, &token(1, &issuer)), "ec-1 still verifies");
    // Released, the keys come with the next fetch (SIGHUP here: the unknown-kid interval holds).
    idp.set(|s| s.hold = false);
    daemon.signal("HUP");
    common::wait_for_blocking("ec-2 in the key set", || {
        token_keys(&daemon)["key_ids"] == json!(["ec-1", "ec-2"])
    });
    assert!(allowed(&daemon, &token(2, &issuer)));
}

#[test]
fn plain_http_is_fetched_only_from_loopback_with_the_development_flag() {
    let idp = Idp::start_plain(&[1]);
    let issuer = idp.issuer();
    let url = idp.jwks_url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let daemon = start_daemon(&[
        "--jwks-url",
        &url,
        "--jwks-allow-http-loopback",
        "--token-issuer",
        &issuer,
    ]);
    assert!(allowed(&daemon, &token(1, &issuer)));
    assert_eq!(idp.jwks_fetches(), 1);
}

#[test]
fn revalidation_with_last_modified_gets_304_keeps_the_keys_and_counts_it() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    let (first, second) = (days_ago(2), days_ago(1));
    idp.set(|s| {
        s.cache_control = Some("max-age=1".into());
        s.last_modified = Some(first);
    });
    let daemon = url_daemon(&idp, &["--jwks-refresh-min-secs", "1"]);
    common::wait_for_blocking("three JWKS fetches", || idp.jwks_fetches() >= 3);
    // The first fetch is unconditional; the others ask If-Modified-Since the Last-Modified they
    // were given (and no If-None-Match: there was no ETag), and get 304.
    let hits = idp.hits("/jwks");
    assert_eq!(hits[0].if_modified_since, None);
    for hit in &hits[1..] {
        let since = httpdate::fmt_http_date(first);
        assert_eq!(hit.if_modified_since.as_deref(), Some(since.as_str()));
        assert_eq!(hit.if_none_match, None);
    }
    common::wait_for_blocking("two revalidations counted", || {
        fetches(&daemon, "not_modified") >= 2.0
    });
    // 304 keeps the key set, and counts as a successful refresh.
    assert_eq!(fetches(&daemon, "ok"), 1.0);
    let keys = token_keys(&daemon);
    assert_eq!(keys["key_ids"], json!(["ec-1"]), "{keys}");
    let ok: u64 = keys["refreshes_ok"].as_str().unwrap().parse().unwrap();
    assert!(ok >= 3, "{keys}");
    assert!(keys.get("last_error").is_none(), "{keys}");
    assert!(allowed(&daemon, &token(1, &issuer)));

    // The identity provider adds ec-2 (a newer Last-Modified): the next revalidation gets the
    // whole new set, and the one after asks with the new date.
    idp.set(|s| {
        s.jwks = jwks(&[1, 2]);
        s.last_modified = Some(second);
    });
    // The daemon counts a fetch after publishing its keys and status: wait for the count.
    common::wait_for_blocking("the new set fetched", || fetches(&daemon, "ok") == 2.0);
    assert_eq!(token_keys(&daemon)["key_ids"], json!(["ec-1", "ec-2"]));
    assert!(allowed(&daemon, &token(2, &issuer)));
    let since = httpdate::fmt_http_date(second);
    common::wait_for_blocking("a revalidation with the new date", || {
        idp.hits("/jwks")
            .iter()
            .any(|h| h.if_modified_since.as_deref() == Some(since.as_str()))
    });
    assert_eq!(
        token_keys(&daemon)["key_ids"],
        json!(["ec-1", "ec-2"]),
        "304 kept the new set"
    );
}

#[test]
fn checks_meeting_one_unknown_kid_at_once_join_one_fetch() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    idp.set(|s| s.cache_control = Some("max-age=3600".into()));
    // A long fetch timeout: the requests wait for the fetch the server holds, not for a timeout.
    let daemon = url_daemon(
        &idp,
        &[
            "--jwks-unknown-kid-secs",
            "3600",
            "--jwks-timeout-secs",
            "60",
        ],
    );
    assert!(allowed(&daemon, &token(1, &issuer)));
    // ec-2 is published; the server holds the next JWKS request until released.
    idp.set(|s| {
        s.jwks = jwks(&[1, 2]);
        s.hold = true;
    });
    const REQUESTS: usize = 8;
    let daemon = Arc::new(daemon);
    let start = Arc::new(std::sync::Barrier::new(REQUESTS));
    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (daemon, start, token) =
                (Arc::clone(&daemon), Arc::clone(&start), token(2, &issuer));
            std::thread::spawn(move || {
                start.wait();
                read_with(&daemon, &token)
            })
        })
        .collect();
    // One of them asked for a fetch (held at the server), the others joined it: none was denied
    // by the rate limit.
    common::wait_for_blocking("every request waiting on the one fetch", || {
        daemon.metric("verdict_jwks_unknown_kid_total{result=\"joined\"}") == (REQUESTS - 1) as f64
    });
    assert_eq!(
        daemon.metric("verdict_jwks_unknown_kid_total{result=\"refresh\"}"),
        1.0
    );
    assert_eq!(
        daemon.metric("verdict_jwks_unknown_kid_total{result=\"rate_limited\"}"),
        0.0
    );
    // The fetch reaches the server (after its connection and TLS handshake), which holds it.
    common::wait_for_blocking("the fetch, at the server", || idp.jwks_fetches() == 2);
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "they wait for it"
    );
    idp.set(|s| s.hold = false);
    for request in requests {
        assert_eq!(
            request.join().unwrap(),
            ("EFFECT_ALLOW".to_string(), String::new()),
            "every request is verified with the key the fetch brought"
        );
    }
    assert_eq!(idp.jwks_fetches(), 2, "one fetch for all of them");
    assert_eq!(fetches(&daemon, "ok"), 2.0);
    // The interval holds after it: another unknown key id is denied at once, nothing fetched.
    assert_eq!(
        read_with(&daemon, &token(3, &issuer)),
        ("EFFECT_DENY".into(), "unknown key id".into())
    );
    assert_eq!(idp.jwks_fetches(), 2);
    assert_eq!(
        daemon.metric("verdict_jwks_unknown_kid_total{result=\"rate_limited\"}"),
        1.0
    );
}

#[test]
fn after_a_failed_fetch_the_last_good_keys_stay_and_discovery_runs_again() {
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    let discovery_path = "/realms/clinic/.well-known/openid-configuration";
    let moved = format!("{}/v2/jwks", idp.base);
    // The old JWKS was modified after the new one was created: a conditional request carrying
    // the old URL's Last-Modified to the new URL would get 304 and keep the old keys.
    idp.set(|s| {
        s.discovery = Some(json!({"issuer": issuer, "jwks_uri": idp.jwks_url()}));
        s.cache_control = Some("max-age=1".into());
        s.last_modified = Some(days_ago(1));
        s.v2 = Some((jwks(&[1, 2]), days_ago(2)));
    });
    let daemon = start_daemon(&[
        "--oidc-issuer",
        &issuer,
        "--jwks-ca-file",
        idp.ca_flag(),
        "--jwks-refresh-min-secs",
        "1",
    ]);
    assert!(allowed(&daemon, &token(1, &issuer)));
    // Successful refreshes do not read the discovery document again.
    common::wait_for_blocking("a revalidation", || fetches(&daemon, "not_modified") >= 1.0);
    assert_eq!(idp.hits(discovery_path).len(), 1);

    // The identity provider moves its keys: the old URL answers 404, discovery names the new.
    idp.set(|s| {
        s.answer = Answer::Status(404);
        s.discovery = Some(json!({"issuer": issuer, "jwks_uri": moved}));
    });
    common::wait_for_blocking("the failed fetch", || {
        fetches(&daemon, "http_status") >= 1.0
    });
    // The next attempt reads the discovery document again and fetches the new URL whole.
    common::wait_for_blocking("the keys of the new jwks_uri", || {
        token_keys(&daemon)["key_ids"] == json!(["ec-1", "ec-2"])
    });
    let keys = token_keys(&daemon);
    assert_eq!(keys["jwks_uri"], moved.as_str(), "{keys}");
    assert!(keys.get("last_error").is_none(), "{keys}");
    assert_eq!(idp.hits(discovery_path).len(), 2);
    let first = &idp.hits("/v2/jwks")[0];
    assert_eq!(
        first.if_modified_since, None,
        "validators belong to one URL"
    );
    assert!(allowed(&daemon, &token(2, &issuer)));
    let logs = daemon.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("JWKS fetch failed") && l.contains("HTTP 404")),
        "{logs:#?}"
    );

    // Now both the keys and the discovery document fail: the last good keys stay, each failure
    // counted and shown, and discovery is tried again at every attempt until it answers.
    let discovery_failures = fetches(&daemon, "discovery");
    idp.set(|s| {
        s.v2 = None;
        s.discovery = None;
    });
    common::wait_for_blocking("two failed discoveries", || {
        fetches(&daemon, "discovery") >= discovery_failures + 2.0
    });
    let keys = token_keys(&daemon);
    assert!(
        keys["last_error"].as_str().unwrap().contains(&format!(
            "{issuer}/.well-known/openid-configuration: HTTP 404"
        )),
        "{keys}"
    );
    assert_eq!(keys["key_ids"], json!(["ec-1", "ec-2"]), "{keys}");
    assert!(allowed(&daemon, &token(1, &issuer)), "the last good keys");
    assert!(allowed(&daemon, &token(2, &issuer)), "the last good keys");
    // Back: discovery, then the keys, and the error is gone.
    let discoveries = idp.hits(discovery_path).len();
    idp.set(|s| {
        s.v2 = Some((jwks(&[1, 2]), days_ago(2)));
        s.discovery = Some(json!({"issuer": issuer, "jwks_uri": moved}));
    });
    common::wait_for_blocking("the recovery", || {
        token_keys(&daemon).get("last_error").is_none()
    });
    assert!(idp.hits(discovery_path).len() > discoveries);
    assert!(allowed(&daemon, &token(2, &issuer)));
}

#[test]
fn a_moved_jwks_uri_is_found_for_an_unknown_kid_and_at_the_ceiling() {
    let discovery_path = "/realms/clinic/.well-known/openid-configuration";
    // The old URL keeps serving the old keys: nothing fails, only discovery can tell.
    let move_keys = |idp: &Idp| {
        let (issuer, moved) = (idp.issuer(), format!("{}/v2/jwks", idp.base));
        idp.set(|s| {
            s.v2 = Some((jwks(&[1, 2]), days_ago(2)));
            s.discovery = Some(json!({"issuer": issuer, "jwks_uri": moved}));
        });
    };
    let start = |idp: &Idp, extra: &[&str]| {
        let issuer = idp.issuer();
        idp.set(|s| {
            s.discovery = Some(json!({"issuer": issuer, "jwks_uri": idp.jwks_url()}));
            s.cache_control = Some("max-age=3600".into());
        });
        let mut flags = vec!["--oidc-issuer", &issuer, "--jwks-ca-file", idp.ca_flag()];
        flags.extend_from_slice(extra);
        start_daemon(&flags)
    };

    // A token with the new key id: its refresh reads the discovery document again, and the one
    // request is allowed.
    let idp = Idp::start(&[1]);
    let issuer = idp.issuer();
    let daemon = start(&idp, &["--jwks-unknown-kid-secs", "3600"]);
    assert!(allowed(&daemon, &token(1, &issuer)));
    move_keys(&idp);
    assert!(allowed(&daemon, &token(2, &issuer)));
    assert_eq!(idp.hits(discovery_path).len(), 2);
    assert_eq!(idp.hits("/v2/jwks").len(), 1);
    assert_eq!(idp.jwks_fetches(), 1, "the old URL fetched once, at start");
    assert_eq!(
        token_keys(&daemon)["jwks_uri"],
        format!("{}/v2/jwks", idp.base).as_str()
    );
    drop(daemon);

    // No such token: the scheduled fetch once the last discovery is a ceiling old (1 s here)
    // reads it again and finds the new URL.
    let idp = Idp::start(&[1]);
    let daemon = start(
        &idp,
        &[
            "--jwks-refresh-min-secs",
            "1",
            "--jwks-refresh-max-secs",
            "1",
        ],
    );
    move_keys(&idp);
    common::wait_for_blocking("the keys of the new jwks_uri", || {
        token_keys(&daemon)["key_ids"] == json!(["ec-1", "ec-2"])
    });
    assert!(idp.hits(discovery_path).len() >= 2);
    assert_eq!(fetches(&daemon, "http_status"), 0.0, "nothing failed");
    assert!(allowed(&daemon, &token(2, &idp.issuer())));
}
