//! Token verification through the real gRPC server: keys generated here (RSA 2048, P-256,
//! Ed25519), a JWKS file in a temp directory, tokens signed here. Valid tokens are decided by the
//! clinic policies as the principal they map to; every broken, forged or foreign token is denied
//! with a reason that names the problem and carries no key material; the JWKS file is reloaded
//! when it changes; the serve flags, `--require-token` and the HTTP/JSON API's `token` work on
//! the real binary.
use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{Daemon, TestServer, BIN};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};
use verdict::server::{proto, ServerOptions};
use verdict::telemetry::JWKS_RELOADS_TOTAL;
use verdict::token::{TokenConfig, Verifier};

const ISSUER: &str = "https://idp.clinic.test";
const AUDIENCE: &str = "verdict";

/// Test keys, generated once per test binary (RSA generation is the slow part).
struct Keys {
    rsa: rsa::RsaPrivateKey,
    ec: p256::ecdsa::SigningKey,
    ec_rotated: p256::ecdsa::SigningKey,
    ec_unlisted: p256::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rngs::OsRng;
        let mut ed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rng, &mut ed);
        Keys {
            rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key"),
            ec: p256::ecdsa::SigningKey::random(&mut rng),
            ec_rotated: p256::ecdsa::SigningKey::random(&mut rng),
            ec_unlisted: p256::ecdsa::SigningKey::random(&mut rng),
            ed: ed25519_dalek::SigningKey::from_bytes(&ed),
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_jwk(kid: &str) -> Json {
    use rsa::traits::PublicKeyParts;
    let public = keys().rsa.to_public_key();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())})
}

fn ec_jwk(kid: &str, key: &p256::ecdsa::SigningKey) -> Json {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

fn ed_jwk(kid: Option<&str>) -> Json {
    let mut jwk = json!({"kty": "OKP", "crv": "Ed25519",
                         "x": b64(keys().ed.verifying_key().as_bytes())});
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    jwk
}

/// Every bit of public key material the JWKS holds, as it could appear in a leaking reason.
fn key_material() -> Vec<String> {
    let mut material = Vec::new();
    for jwk in [rsa_jwk("rsa-1"), ec_jwk("ec-1", &keys().ec), ed_jwk(None)] {
        for member in ["n", "x", "y"] {
            if let Some(s) = jwk[member].as_str() {
                material.push(s[..16].to_string());
            }
        }
    }
    material.push("BEGIN PUBLIC KEY".into());
    material
}

/// The key set of most tests: one RSA, one P-256 and one Ed25519 key (the latter without kid).
fn jwks() -> Json {
    json!({"keys": [rsa_jwk("rsa-1"), ec_jwk("ec-1", &keys().ec), ed_jwk(None)]})
}

/// Writes `content` to `path` atomically (temp file + rename), as a deployment would.
fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

enum Signer<'a> {
    Rsa,
    Ec(&'a p256::ecdsa::SigningKey),
    Ed,
}

fn sign(signer: Signer, kid: Option<&str>, claims: &Json) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let (alg, key) = match signer {
        Signer::Rsa => (
            Algorithm::RS256,
            EncodingKey::from_rsa_der(keys().rsa.to_pkcs1_der().unwrap().as_bytes()),
        ),
        Signer::Ec(key) => (
            Algorithm::ES256,
            EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        ),
        Signer::Ed => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(keys().ed.to_pkcs8_der().unwrap().as_bytes()),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Dr. House's claims, as an identity provider would issue them.
fn house() -> Json {
    json!({
        "sub": "dr-house", "iss": ISSUER, "aud": [AUDIENCE, "other-api"],
        "exp": now() + 600, "iat": now(), "roles": ["physician"],
        "scope": "openid user/*.cruds", "azp": "chart-app",
        "practice_id": "7", "licensed_states": ["CA", "NY"],
    })
}

fn with(mut claims: Json, changes: Json) -> Json {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn patient_123() -> proto::ResourceCheck {
    proto::ResourceCheck {
        resource: Some(proto::Resource {
            kind: "Patient".into(),
            id: "123".into(),
            attr: verdict::server::convert::json_to_struct(
                &json!({"practice_id": "7", "patient_id": "123", "celebrity": false}),
            ),
        }),
        actions: vec!["read".into(), "delete".into()],
    }
}

fn check(token: &str) -> proto::CheckRequest {
    proto::CheckRequest {
        request_id: "t-1".into(),
        token: token.into(),
        resources: vec![patient_123()],
        ..Default::default()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    jwks: std::path::PathBuf,
    server: TestServer,
}

async fn setup(configure: impl FnOnce(&mut TokenConfig)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks().to_string()).unwrap();
    let mut config = TokenConfig::new(&jwks_path, ISSUER, &[AUDIENCE]);
    config.poll = Duration::from_millis(50);
    configure(&mut config);
    let verifier = Arc::new(Verifier::start(config).expect("JWKS loads"));
    let options = ServerOptions {
        tokens: Some(verifier),
        ..Default::default()
    };
    let server = TestServer::start_with_options(&common::bundled_policies(), options).await;
    Setup {
        _dir: dir,
        jwks: jwks_path,
        server,
    }
}

/// The decision on Patient/123 `read`, and the response's token_error.
async fn read_decision(server: &TestServer, token: &str) -> (proto::ActionDecision, String) {
    let response = server
        .client()
        .await
        .check(check(token))
        .await
        .expect("a token problem is a deny, not an error")
        .into_inner();
    let read = response.results[0].actions["read"].clone();
    (read, response.token_error)
}

#[tokio::test]
async fn valid_tokens_of_each_algorithm_are_decided_as_their_claims() {
    let setup = setup(|_| {}).await;
    for (name, token) in [
        ("RS256", sign(Signer::Rsa, Some("rsa-1"), &house())),
        (
            "ES256",
            sign(Signer::Ec(&keys().ec), Some("ec-1"), &house()),
        ),
        ("EdDSA without kid", sign(Signer::Ed, None, &house())),
        // exp 10 s ago is inside the default 30 s leeway.
        (
            "RS256 just expired",
            sign(
                Signer::Rsa,
                Some("rsa-1"),
                &with(house(), json!({"exp": now() - 10})),
            ),
        ),
    ] {
        let response = setup
            .server
            .client()
            .await
            .check(check(&token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.token_error, "", "{name}");
        let actions = &response.results[0].actions;
        assert_eq!(
            actions["read"].effect,
            proto::Effect::Allow as i32,
            "{name}: {:?}",
            actions["read"]
        );
        assert_eq!(actions["read"].policy, "physician", "{name}");
        assert_eq!(actions["delete"].effect, proto::Effect::Deny as i32);
    }

    // The claims reach the policies: another practice is not Dr. House's.
    let elsewhere = sign(
        Signer::Rsa,
        Some("rsa-1"),
        &with(house(), json!({"practice_id": "9"})),
    );
    let (read, token_error) = read_decision(&setup.server, &elsewhere).await;
    assert_eq!(read.effect, proto::Effect::Deny as i32);
    assert_eq!(read.rule, "staff-stay-in-their-practice");
    assert_eq!(token_error, "");
}

#[tokio::test]
async fn broken_forged_and_foreign_tokens_are_denied_with_a_reason_that_leaks_nothing() {
    let setup = setup(|_| {}).await;
    let rsa_public_pem = {
        use rsa::pkcs8::EncodePublicKey as _;
        keys()
            .rsa
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let unsigned = |alg: &str| {
        format!(
            "{}.{}.",
            b64(json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"})
                .to_string()
                .as_bytes()),
            b64(house().to_string().as_bytes())
        )
    };
    // HS256 with the RSA public key as the HMAC secret: the classic algorithm confusion.
    let hmac_confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &header,
            &house(),
            &EncodingKey::from_secret(rsa_public_pem.as_bytes()),
        )
        .unwrap()
    };
    let tampered = {
        let token = sign(Signer::Rsa, Some("rsa-1"), &house());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = b64(
            with(house(), json!({"roles": ["admin_staff", "physician"]}))
                .to_string()
                .as_bytes(),
        );
        parts.join(".")
    };
    let cases = [
        (
            "expired",
            sign(
                Signer::Rsa,
                Some("rsa-1"),
                &with(house(), json!({"exp": now() - 3600})),
            ),
        ),
        (
            "not yet valid (nbf)",
            sign(
                Signer::Ec(&keys().ec),
                Some("ec-1"),
                &with(house(), json!({"nbf": now() + 3600})),
            ),
        ),
        (
            "issuer not accepted",
            sign(
                Signer::Rsa,
                Some("rsa-1"),
                &with(house(), json!({"iss": "https://evil.test"})),
            ),
        ),
        (
            "audience not accepted",
            sign(
                Signer::Rsa,
                Some("rsa-1"),
                &with(house(), json!({"aud": "billing"})),
            ),
        ),
        (
            "missing claim exp",
            sign(Signer::Ed, None, &with(house(), json!({"exp": null}))),
        ),
        (
            "missing claim aud",
            sign(Signer::Ed, None, &with(house(), json!({"aud": null}))),
        ),
        (
            "signature invalid",
            sign(Signer::Ec(&keys().ec_unlisted), Some("ec-1"), &house()),
        ),
        ("signature invalid", tampered),
        (
            "unknown key id",
            sign(Signer::Ec(&keys().ec_unlisted), Some("ec-9"), &house()),
        ),
        (
            // Without kid, every P-256 key is tried: none verifies it.
            "signature invalid",
            sign(Signer::Ec(&keys().ec_unlisted), None, &house()),
        ),
        ("unsigned token (alg none) refused", unsigned("none")),
        ("unsigned token (alg none) refused", unsigned("None")),
        ("symmetric algorithm HS256 refused", hmac_confused),
        (
            // An RS256 header naming the P-256 key: the key decides the algorithm.
            "algorithm does not match the key",
            {
                let token = sign(Signer::Rsa, Some("rsa-1"), &house());
                let header = b64(json!({"alg": "RS256", "kid": "ec-1"})
                    .to_string()
                    .as_bytes());
                let rest = token.split_once('.').unwrap().1;
                format!("{header}.{rest}")
            },
        ),
        (
            "claim sub is not a string",
            sign(Signer::Ed, None, &with(house(), json!({"sub": 42}))),
        ),
        // No subject, or an empty one: the principal would have an empty id, equal to every
        // empty attribute (a celebrity record with primary_physician_id "").
        (
            "missing claim sub",
            sign(Signer::Ed, None, &with(house(), json!({"sub": null}))),
        ),
        (
            "claim sub is empty",
            sign(Signer::Ed, None, &with(house(), json!({"sub": ""}))),
        ),
        // exp present but unusable is said for what it is, not "missing".
        (
            "claim exp is a string, not a NumericDate (seconds since 1970)",
            sign(
                Signer::Ed,
                None,
                &with(house(), json!({"exp": (now() + 600).to_string()})),
            ),
        ),
        (
            "claim exp is out of range (a NumericDate is 0 to 2^64 seconds since 1970)",
            sign(Signer::Ed, None, &with(house(), json!({"exp": 1e30}))),
        ),
        (
            "claim exp is out of range (a NumericDate is 0 to 2^64 seconds since 1970)",
            sign(Signer::Ed, None, &with(house(), json!({"exp": -1}))),
        ),
        (
            "claim exp is a list, not a NumericDate (seconds since 1970)",
            sign(
                Signer::Ed,
                None,
                &with(house(), json!({"exp": [now() + 600]})),
            ),
        ),
        (
            "claim nbf is a string, not a NumericDate (seconds since 1970)",
            sign(
                Signer::Ed,
                None,
                &with(house(), json!({"nbf": "yesterday"})),
            ),
        ),
        ("not a well-formed signed JWT", "not.a-jwt".into()),
        ("not a well-formed signed JWT", "a.b.c".into()),
        (
            "token larger than 32768 bytes",
            "x".repeat(verdict::token::MAX_TOKEN_BYTES + 1),
        ),
    ];
    let material = key_material();
    for (expected, token) in &cases {
        let (read, token_error) = read_decision(&setup.server, token).await;
        assert_eq!(read.effect, proto::Effect::Deny as i32, "{expected}");
        assert_eq!(read.reason, format!("token rejected: {expected}"));
        assert_eq!(&token_error, expected);
        assert_eq!((read.policy.as_str(), read.rule.as_str()), ("", ""));
        for secret in &material {
            assert!(!read.reason.contains(secret.as_str()), "{expected} leaks");
        }
        if token.len() > 20 {
            let part = &token[token.len() - 20..];
            assert!(!read.reason.contains(part), "{expected} echoes the token");
        }
    }
}

#[tokio::test]
async fn the_subject_comes_from_the_configured_claim_and_must_be_there() {
    let setup = setup(|config| config.mapping.subject = "oid".into()).await;
    let with_oid = sign(
        Signer::Ed,
        None,
        &with(house(), json!({"sub": "someone-else", "oid": "dr-house"})),
    );
    let (read, token_error) = read_decision(&setup.server, &with_oid).await;
    assert_eq!(
        (read.effect, token_error.as_str()),
        (proto::Effect::Allow as i32, "")
    );
    // `sub` alone is not the configured subject.
    let (read, token_error) = read_decision(&setup.server, &sign(Signer::Ed, None, &house())).await;
    assert_eq!(read.effect, proto::Effect::Deny as i32);
    assert_eq!(token_error, "missing claim oid");
    let empty = sign(Signer::Ed, None, &with(house(), json!({"oid": ""})));
    assert_eq!(
        read_decision(&setup.server, &empty).await.1,
        "claim oid is empty"
    );
}

#[tokio::test]
async fn plan_filter_takes_the_principal_from_the_token() {
    let setup = setup(|_| {}).await;
    let nurse = with(
        house(),
        json!({"sub": "n-joy", "roles": ["nurse"], "licensed_states": null}),
    );
    let request = |token: String| proto::PlanFilterRequest {
        request_id: "p-1".into(),
        token,
        resource_kind: "Patient".into(),
        action: "read".into(),
        sql: Some(proto::SqlRequest {
            dialect: proto::SqlDialect::Postgres as i32,
            columns: [
                ("practice_id", "practice_id"),
                ("celebrity", "celebrity"),
                ("primary_physician_id", "primary_physician_id"),
            ]
            .into_iter()
            .map(|(a, c)| (a.to_string(), c.to_string()))
            .collect(),
        }),
        ..Default::default()
    };
    let mut client = setup.server.client().await;
    let planned = client
        .plan_filter(request(sign(Signer::Rsa, Some("rsa-1"), &nurse)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(planned.kind, proto::PlanKind::Conditional as i32);
    assert_eq!(planned.token_error, "");
    let sql = planned.sql.unwrap();
    assert!(sql.r#where.contains("practice_id = $"), "{}", sql.r#where);
    assert!(sql
        .params
        .iter()
        .any(|p| verdict::server::convert::value_to_json_unbounded(p) == json!("n-joy")));

    let expired = with(nurse, json!({"exp": now() - 3600}));
    let denied = client
        .plan_filter(request(sign(Signer::Rsa, Some("rsa-1"), &expired)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.kind, proto::PlanKind::AlwaysDenied as i32);
    assert_eq!(denied.token_error, "expired");
    assert!(denied.filter.is_none());
    assert_eq!(denied.sql.unwrap().r#where, "FALSE");
}

#[tokio::test]
async fn ambiguous_or_unverifiable_requests_are_invalid_arguments() {
    let setup = setup(|_| {}).await;
    let token = sign(Signer::Rsa, Some("rsa-1"), &house());
    let mut both = check(&token);
    both.principal = Some(proto::Principal {
        id: "dr-house".into(),
        roles: vec!["physician".into()],
        ..Default::default()
    });
    let status = setup.server.client().await.check(both).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("either token or principal"));
    // An empty principal next to the token is what many clients send by default: accepted.
    let mut empty = check(&token);
    empty.principal = Some(proto::Principal::default());
    let response = setup.server.client().await.check(empty).await.unwrap();
    assert_eq!(
        response.into_inner().results[0].actions["read"].effect,
        proto::Effect::Allow as i32
    );
    // Without a token, a principal is still accepted (tokens are optional by default).
    let mut bare = check("");
    bare.principal = Some(proto::Principal {
        id: "dr-house".into(),
        roles: vec!["physician".into()],
        ..Default::default()
    });
    assert!(setup.server.client().await.check(bare).await.is_ok());

    // A server without token verification refuses tokens rather than ignoring them.
    let plain = TestServer::start(&common::bundled_policies()).await;
    let status = plain.client().await.check(check(&token)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("not configured"),
        "{}",
        status.message()
    );
    let status = plain
        .client()
        .await
        .plan_filter(proto::PlanFilterRequest {
            token,
            resource_kind: "Patient".into(),
            action: "read".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let required = self::setup(|c| c.required = true).await;
    let mut bare = check("");
    bare.principal = Some(proto::Principal {
        id: "dr-house".into(),
        ..Default::default()
    });
    let status = required
        .server
        .client()
        .await
        .check(bare)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("requires a token"));
}

#[tokio::test]
async fn roles_from_a_nested_claim() {
    let setup = setup(|c| c.mapping.roles = "realm_access.roles".into()).await;
    let keycloak = with(
        house(),
        json!({"roles": null, "realm_access": {"roles": ["physician"]}}),
    );
    let (read, _) = read_decision(&setup.server, &sign(Signer::Ed, None, &keycloak)).await;
    assert_eq!(read.effect, proto::Effect::Allow as i32, "{read:?}");
    // The top-level `roles` claim is now just an attribute.
    let (read, _) = read_decision(&setup.server, &sign(Signer::Ed, None, &house())).await;
    assert_eq!(read.effect, proto::Effect::Deny as i32, "{read:?}");
}

#[tokio::test]
async fn a_rotated_jwks_file_is_picked_up_and_a_broken_one_keeps_the_last_good_keys() {
    common::record_metrics();
    // The metric is the whole test binary's (other tests load JWKS files beside this one), so the
    // test waits for this daemon's own count in Status, which moves after the metric: then the
    // metric has moved past its value before, whatever the other tests did.
    let ok = || common::counter(JWKS_RELOADS_TOTAL, &[("result", "ok")]);
    let failed = || common::counter(JWKS_RELOADS_TOTAL, &[("result", "failed")]);
    // No poll: every reload below is the file watch's, after the write it reacts to (the temp file
    // of a write is another name, which the watch ignores).
    let setup = setup(|config| config.poll = Duration::from_secs(3600)).await;
    let old = sign(Signer::Ec(&keys().ec), Some("ec-1"), &house());
    let new = sign(Signer::Ec(&keys().ec_rotated), Some("ec-2"), &house());
    assert_eq!(read_decision(&setup.server, &old).await.1, "");
    assert_eq!(read_decision(&setup.server, &new).await.1, "unknown key id");

    // Rotation: the new key is published and the old one retired.
    let published = ok();
    let rotated = json!({"keys": [rsa_jwk("rsa-1"), ec_jwk("ec-2", &keys().ec_rotated)]});
    write_atomically(&setup.jwks, &rotated.to_string());
    refreshes_reach(&setup.server, (2, 0)).await;
    assert!(ok() > published);
    assert_eq!(read_decision(&setup.server, &new).await.1, "");
    assert_eq!(read_decision(&setup.server, &old).await.1, "unknown key id");
    let ed = sign(Signer::Ed, None, &house());
    assert_eq!(
        read_decision(&setup.server, &ed).await.1,
        "no key id, and no key for EdDSA"
    );

    // A broken file, a missing one, and one with no usable key at all: each reload fails (the
    // metric says so) and the keys in use stay.
    let no_usable_key = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    for breakage in ["broken", "missing", "no usable key"] {
        let before = failed();
        let refused = token_keys(&setup.server).await.refreshes_failed;
        match breakage {
            "broken" => write_atomically(&setup.jwks, "{\"keys\": [ {\"kty\": \"RSA\""),
            "missing" => std::fs::remove_file(&setup.jwks).unwrap(),
            _ => write_atomically(&setup.jwks, &no_usable_key),
        }
        refreshes_reach(&setup.server, (2, refused + 1)).await;
        assert!(failed() > before, "{breakage}: the failed-reload metric");
        assert_eq!(read_decision(&setup.server, &new).await.1, "", "{breakage}");
        assert_eq!(
            read_decision(&setup.server, &old).await.1,
            "unknown key id",
            "{breakage}"
        );
    }
    // Admin/Status says which keys are in use and why the file was refused.
    let keys = token_keys(&setup.server).await;
    assert_eq!(keys.source, setup.jwks.display().to_string());
    assert_eq!(keys.key_ids, ["rsa-1", "ec-2"]);
    assert!(keys.last_error.contains("no key usable"), "{keys:?}");
    assert!(keys.last_error_at.is_some() && keys.last_success_at.is_some());
    assert_eq!(
        keys.refreshes_ok, 2,
        "the start and the rotation: nothing else was published"
    );
    assert!(keys.refreshes_failed >= 3, "{keys:?}");
    assert!(keys.jwks_uri.is_empty() && keys.next_refresh_at.is_none());
}

/// The daemon's key set as Admin/Status reports it.
async fn token_keys(server: &TestServer) -> proto::TokenKeysStatus {
    let status = server.admin().await.status(proto::StatusRequest {}).await;
    status
        .unwrap()
        .into_inner()
        .token_keys
        .expect("token keys in Status")
}

/// Waits until this daemon's Status counts at least `ok` published and `failed` refused key sets.
async fn refreshes_reach(server: &TestServer, (ok, failed): (u64, u64)) {
    common::wait_for(
        &format!("{ok} published and {failed} refused key sets"),
        || async {
            let keys = token_keys(server).await;
            keys.refreshes_ok >= ok && keys.refreshes_failed >= failed
        },
    )
    .await;
}

#[test]
fn the_verifier_refuses_bad_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let start = |config: TokenConfig| Verifier::start(config).unwrap_err().to_string();
    assert!(start(TokenConfig::new(&path, ISSUER, &[AUDIENCE])).contains("cannot read"));
    std::fs::write(&path, jwks().to_string()).unwrap();
    assert!(start(TokenConfig::new(&path, "", &[AUDIENCE])).contains("issuer"));
    assert!(start(TokenConfig::new(&path, ISSUER, &[])).contains("audience"));
    std::fs::write(&path, "{\"keys\": []}").unwrap();
    assert!(start(TokenConfig::new(&path, ISSUER, &[AUDIENCE])).contains("no key usable"));
}

/// The serve flags, `--require-token`, `verdict check --token` and SIGHUP on the real binary.
#[test]
fn the_daemon_verifies_tokens_with_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks().to_string()).unwrap();
    let jwks_flag = jwks_path.to_str().unwrap();
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &[
            "--jwks-file",
            jwks_flag,
            "--token-issuer",
            ISSUER,
            "--token-audience",
            "billing,verdict",
            "--token-roles-claim",
            "realm_access.roles",
            "--require-token",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let keycloak = with(
        house(),
        json!({"roles": null, "realm_access": {"roles": ["physician"]}}),
    );
    let verdict_check = |token: &str| {
        Command::new(BIN)
            .args(["check", "--server", &daemon.url(), "--token", token])
            .args(["--resource", r#"{"kind":"Patient","id":"123","attr":{"practice_id":"7","patient_id":"123","celebrity":false}}"#])
            .args(["--action", "read"])
            .output()
            .unwrap()
    };
    let out = verdict_check(&sign(Signer::Rsa, Some("rsa-1"), &keycloak));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Patient/123 read: ALLOW"), "{stdout}");

    let out = verdict_check(&sign(
        Signer::Rsa,
        Some("rsa-1"),
        &with(keycloak.clone(), json!({"exp": now() - 3600})),
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Patient/123 read: DENY - token rejected: expired"),
        "{stdout}"
    );

    // --require-token: a principal alone is refused.
    let out = Command::new(BIN)
        .args(["check", "--server", &daemon.url()])
        .args([
            "--principal",
            r#"{"id":"dr-house","roles":["physician"],"scopes":["user/*.cruds"],"attr":{"practice_id":"7"}}"#,
        ])
        .args([
            "--resource",
            r#"{"kind":"Patient","id":"123"}"#,
            "--action",
            "read",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires a token"));

    // The HTTP/JSON API takes `token` in the body, with the same rules.
    let base = format!("http://{}", daemon.http_addr.as_deref().unwrap());
    let body = |token: &str| {
        json!({"token": token, "resources": [{"resource": {"kind": "Patient", "id": "123",
               "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false}},
               "actions": ["read"]}]})
    };
    let answer: Json = ureq::post(&format!("{base}/v1/check"))
        .send_json(body(&sign(Signer::Ed, None, &keycloak)))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(
        answer["results"][0]["actions"]["read"]["effect"],
        "EFFECT_ALLOW"
    );
    assert!(answer.get("token_error").is_none(), "{answer}");
    let answer: Json = ureq::post(&format!("{base}/v1/check"))
        .send_json(body(&sign(
            Signer::Ed,
            None,
            &with(keycloak.clone(), json!({"aud": "billing-only"})),
        )))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(answer["token_error"], "audience not accepted");
    assert_eq!(
        answer["results"][0]["actions"]["read"]["reason"],
        "token rejected: audience not accepted"
    );
    let planned: Json = ureq::post(&format!("{base}/v1/plan"))
        .send_json(json!({"token": "not-a-token", "resource_kind": "Patient", "action": "read"}))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(planned["kind"], "PLAN_KIND_ALWAYS_DENIED");
    assert_eq!(planned["token_error"], "not a well-formed signed JWT");
    // A token without a subject is no principal, over HTTP as over gRPC.
    let answer: Json = ureq::post(&format!("{base}/v1/check"))
        .send_json(body(&sign(
            Signer::Ed,
            None,
            &with(keycloak.clone(), json!({"sub": null})),
        )))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(answer["token_error"], "missing claim sub");
    assert_eq!(
        answer["results"][0]["actions"]["read"]["effect"],
        "EFFECT_DENY"
    );
    // --require-token holds over HTTP too: a bare principal is a 400.
    let bare = json!({"principal": {"id": "dr-house", "roles": ["physician"]},
                      "resources": [{"resource": {"kind": "Patient", "id": "123"}, "actions": ["read"]}]});
    match ureq::post(&format!("{base}/v1/check")).send_json(bare) {
        Err(ureq::Error::StatusCode(400)) => {}
        other => panic!("expected 400, got {other:?}"),
    }
    match ureq::post(&format!("{base}/v1/check")).send_json(json!({"token": 5, "resources": []})) {
        Err(ureq::Error::StatusCode(400)) => {}
        other => panic!("expected 400, got {other:?}"),
    }

    // SIGHUP re-reads the JWKS file at once.
    let rotated = json!({"keys": [ec_jwk("ec-2", &keys().ec_rotated)]});
    write_atomically(&jwks_path, &rotated.to_string());
    // The file watch may see the new file first; SIGHUP reloads it anyway (its outcome, logged at
    // info only for requested reloads, says whether it found the keys new or already loaded).
    daemon.signal("HUP");
    common::wait_for_blocking("the JWKS reload SIGHUP asked for", || {
        daemon.logs().iter().any(|line| {
            common::field(line, "what").as_deref() == Some("JWKS")
                && common::field(line, "outcome").is_some()
        })
    });
    assert_eq!(
        daemon.metric("verdict_jwks_reloads_total{result=\"ok\"}"),
        1.0,
        "the rotated keys, published once"
    );
    let token = sign(Signer::Ec(&keys().ec_rotated), Some("ec-2"), &keycloak);
    let out = verdict_check(&token);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("read: ALLOW"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Without an issuer the daemon refuses to start.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--jwks-file", jwks_flag])
        .args(["--token-audience", AUDIENCE])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tokens.jwks_file needs tokens.issuer"),
        "{stderr}"
    );
}

/// README.md's "Trying it without an identity provider", followed as written: `verdict token
/// keygen`, a daemon started with the `verdict serve` line (on an ephemeral port), a token from
/// `verdict token sign`, and `verdict check --token` printing exactly what the README shows.
#[test]
fn the_readme_token_walkthrough_works_as_written() {
    let section = common::readme_section("**Trying it without an identity provider.**");
    let steps = common::commands_and_outputs(&section);
    assert_eq!(steps.len(), 2, "{steps:#?}");
    let dir = tempfile::tempdir().unwrap();
    let setup: Vec<&str> = steps[0].0.content.lines().collect();
    assert!(
        setup[0].starts_with("verdict token keygen --out dev-keys"),
        "{setup:?}"
    );
    let out = common::shell(setup[0], dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = std::fs::metadata(dir.path().join("dev-keys/signing-key.pem")).unwrap();
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&private.permissions()) & 0o777,
        0o600,
        "the private key is its owner's only"
    );
    // Keys are never overwritten.
    assert!(!common::shell(setup[0], dir.path(), &[]).status.success());

    // The daemon of the `verdict serve` line, its address aside, its paths in the temp directory.
    let serve = setup[1];
    assert!(
        serve.starts_with("verdict serve --listen 127.0.0.1:50052 "),
        "{serve}"
    );
    let keys = dir.path().join("dev-keys");
    let keys = keys.to_str().unwrap();
    let flags: Vec<String> = serve
        .split_whitespace()
        .skip(4)
        .map(|flag| flag.replace("dev-keys", keys))
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert!(flags.contains(&"--require-token"), "{serve}");
    let daemon = Daemon::start(&common::bundled_policies(), &flags);

    let (walk, shown) = &steps[1];
    let script = walk.content.replace("127.0.0.1:50052", &daemon.addr);
    let out = common::shell(&script, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = shown.as_ref().expect("the README shows the output");
    assert_eq!(stdout.trim_end(), shown.content.trim_end());

    // A token of the same issuer, expired: every action denied, with the reason, and exit code 3.
    let expired = common::shell(
        &format!(
            "verdict token sign --key dev-keys/signing-key.pem --claims '{}'",
            json!({"sub": "dr-house", "iss": "https://idp.example.com/realms/clinic",
                   "aud": "verdict", "roles": ["physician"], "exp": now() - 3600})
        ),
        dir.path(),
        &[],
    );
    assert!(expired.status.success());
    let token = String::from_utf8_lossy(&expired.stdout).trim().to_string();
    let out = common::shell(
        &format!(
            "verdict check --exit-code --server {} --token {token} --resource '{{\"kind\":\"Patient\",\"id\":\"123\"}}' --action read",
            daemon.addr
        ),
        dir.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("read: DENY - token rejected: expired"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bad_key = common::shell(
        "verdict token sign --key dev-keys/jwks.json --claims '{}'",
        dir.path(),
        &[],
    );
    assert!(!bad_key.status.success());
    assert!(
        String::from_utf8_lossy(&bad_key.stderr).contains("not a PEM private key"),
        "{}",
        String::from_utf8_lossy(&bad_key.stderr)
    );
}
