//! Token parsing and verification: any text as a token, any bytes as a JWKS file or as the
//! claims of a token, and any claims signed with a key the verifier trusts, are either accepted
//! (a principal with a non-empty id) or rejected with a reason, never a panic.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value as Json};
use verdict::token::{claims, ClaimMapping, TokenConfig, Verifier};

const ISSUER: &str = "https://idp.fuzz";
const AUDIENCE: &str = "verdict";

struct Keys {
    verifier: Verifier,
    signing: EncodingKey,
    _dir: tempfile::TempDir,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let jwks = json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": "k", "use": "sig", "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        }]});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        let verifier = Verifier::start(TokenConfig::new(&path, ISSUER, &[AUDIENCE])).unwrap();
        Keys {
            verifier,
            signing: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
            _dir: dir,
        }
    })
}

/// A token over `payload` (the claims' bytes) signed with the trusted key.
fn signed(payload: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"k","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &keys().signing, Algorithm::EdDSA).unwrap();
    format!("{message}.{signature}")
}

fn verify(token: &str) {
    match keys().verifier.verify(token) {
        Ok(principal) => assert!(!principal.id.is_empty(), "a principal without id"),
        Err(e) => {
            let reason = e.to_string();
            assert!(!reason.is_empty());
            assert!(!e.label().is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                verify(token);
            }
        }
        1 => {
            let _ = verdict::token::jwks::parse(rest);
        }
        2 => {
            if let Ok(claims) = serde_json::from_slice::<Map<String, Json>>(rest) {
                if let Ok(p) = claims::principal(claims, &ClaimMapping::default()) {
                    assert!(!p.id.is_empty());
                }
            }
        }
        // Claims signed by the trusted key: everything after the signature check.
        3 => verify(&signed(rest)),
        // Valid claims changed by a fuzzed JSON object, signed.
        _ => {
            if let Ok(Json::Object(changes)) = serde_json::from_slice::<Json>(rest) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let mut claims = json!({"sub": "u-1", "iss": ISSUER, "aud": AUDIENCE,
                                        "exp": now + 600, "roles": ["clerk"]});
                for (k, v) in changes {
                    claims[k] = v;
                }
                verify(&signed(claims.to_string().as_bytes()));
            }
        }
    }
});
