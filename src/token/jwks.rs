//! The JWKS file (RFC 7517): a JSON object `{"keys": [...]}` read into the [`KeySet`] tokens are
//! verified with.
//!
//! Each key's algorithm is decided here, from the key itself, once: an RSA key (`kty: RSA`, at
//! least 2048 bits) verifies RS256, a P-256 key (`kty: EC`, `crv: P-256`) ES256, an Ed25519 key
//! (`kty: OKP`, `crv: Ed25519`) EdDSA. A key's own `alg`, when present, must agree. Keys that are
//! not for verifying these algorithms (`use` other than `sig`, `key_ops` without `verify`, other
//! algorithms, other curves, symmetric `oct` keys, private keys) are skipped and named in
//! [`KeySet::skipped`]: identity providers publish such keys next to signing keys. A key that
//! claims to be usable but is broken (bad base64, a point off the curve, a short modulus), a
//! duplicate `kid`, or a set with no usable key at all rejects the whole file.
//!
//! Error messages name keys by position and `kid`, never by their material.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value as Json};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus the RustCrypto backend verifies with, in bits.
pub const MAX_RSA_BITS: usize = 4096;

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    /// The key id tokens name in their `kid` header, if the key has one.
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWKS file, immutable once built.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Why each skipped key was skipped (`keys[3] (kid "enc-1"): use "enc", not "sig"`).
    pub skipped: Vec<String>,
    /// SHA-256 of the file's bytes: the same bytes are not parsed again.
    pub hash: [u8; 32],
}

impl KeySet {
    /// The key a token names by `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys of one algorithm, for a token without `kid`.
    pub fn by_algorithm(&self, algorithm: Algorithm) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.algorithm == algorithm)
    }
}

/// Why a JWKS file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError(pub String);

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JwksError {}

/// Parses a JWKS document.
pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
    let hash = {
        use sha2::{Digest, Sha256};
        Sha256::digest(bytes).into()
    };
    let doc: Json =
        serde_json::from_slice(bytes).map_err(|e| JwksError(format!("not valid JSON: {e}")))?;
    let Some(keys) = doc.get("keys").and_then(Json::as_array) else {
        return Err(JwksError(
            "expected a JSON object with a \"keys\" array (RFC 7517 JWK Set)".into(),
        ));
    };
    let mut set = KeySet {
        hash,
        ..KeySet::default()
    };
    let mut errors = Vec::new();
    for (i, jwk) in keys.iter().enumerate() {
        let Some(jwk) = jwk.as_object() else {
            errors.push(format!("keys[{i}]: not a JSON object"));
            continue;
        };
        let kid = match jwk.get("kid") {
            None => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(format!("keys[{i}]: kid is not a string"));
                continue;
            }
        };
        let name = match &kid {
            Some(kid) => format!("keys[{i}] (kid {kid:?})"),
            None => format!("keys[{i}]"),
        };
        match key(jwk) {
            Ok(Usable(algorithm, decoding)) => {
                if let Some(kid) = &kid {
                    if set.by_kid(kid).is_some() {
                        errors.push(format!("{name}: duplicate kid"));
                        continue;
                    }
                }
                set.keys.push(Key {
                    kid,
                    algorithm,
                    decoding,
                });
            }
            Ok(Skip(why)) => set.skipped.push(format!("{name}: {why}")),
            Err(why) => errors.push(format!("{name}: {why}")),
        }
    }
    if !errors.is_empty() {
        return Err(JwksError(errors.join("; ")));
    }
    if set.keys.is_empty() {
        let mut message = String::from("no key usable for RS256, ES256 or EdDSA");
        if !set.skipped.is_empty() {
            message.push_str(&format!(" (skipped: {})", set.skipped.join("; ")));
        }
        return Err(JwksError(message));
    }
    Ok(set)
}

enum Verdict {
    Usable(Algorithm, DecodingKey),
    Skip(String),
}
use Verdict::{Skip, Usable};

fn string<'a>(jwk: &'a Map<String, Json>, member: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(member) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{member} is not a string")),
    }
}

fn required<'a>(jwk: &'a Map<String, Json>, member: &str) -> Result<&'a str, String> {
    string(jwk, member)?.ok_or_else(|| format!("{member} is missing"))
}

/// base64url without padding, as RFC 7518 requires (trailing `=` tolerated).
fn base64url(jwk: &Map<String, Json>, member: &str) -> Result<Vec<u8>, String> {
    let text = required(jwk, member)?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("{member} is not base64url"))
}

fn key(jwk: &Map<String, Json>) -> Result<Verdict, String> {
    let kty = required(jwk, "kty")?;
    if let Some(usage) = string(jwk, "use")? {
        if usage != "sig" {
            return Ok(Skip(format!("use {usage:?}, not \"sig\"")));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Ok(Skip("key_ops does not include \"verify\"".into()));
        }
    }
    if jwk.contains_key("d") {
        // A private key has no business in a verifier's file; using its public half would hide a
        // leak.
        return Err("contains private key material (\"d\"); publish the public key only".into());
    }
    let algorithm = match kty {
        "RSA" => Algorithm::RS256,
        "EC" => match required(jwk, "crv")? {
            "P-256" => Algorithm::ES256,
            other => return Ok(Skip(format!("curve {other:?} is not accepted (P-256 is)"))),
        },
        "OKP" => match required(jwk, "crv")? {
            "Ed25519" => Algorithm::EdDSA,
            other => {
                return Ok(Skip(format!(
                    "curve {other:?} is not accepted (Ed25519 is)"
                )))
            }
        },
        "oct" => return Ok(Skip("symmetric (oct) keys are never accepted".into())),
        other => return Ok(Skip(format!("key type {other:?} is not accepted"))),
    };
    let name = algorithm_name(algorithm);
    if let Some(alg) = string(jwk, "alg")? {
        if alg != name {
            return Ok(Skip(format!(
                "alg {alg:?} is not accepted for this key ({name} is)"
            )));
        }
    }
    let decoding = match algorithm {
        Algorithm::RS256 => {
            let n = base64url(jwk, "n")?;
            let e = base64url(jwk, "e")?;
            let n_int = rsa::BigUint::from_bytes_be(&n);
            let bits = n_int.bits();
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits (at least {MIN_RSA_BITS} are required)"
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits (at most {MAX_RSA_BITS} are supported)"
                ));
            }
            rsa::RsaPublicKey::new(n_int, rsa::BigUint::from_bytes_be(&e))
                .map_err(|_| "not a valid RSA public key".to_string())?;
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        Algorithm::ES256 => {
            let x = base64url(jwk, "x")?;
            let y = base64url(jwk, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("x and y must be 32 bytes each for P-256".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let decoding = DecodingKey::from_ec_der(&point);
            check_point(&decoding, algorithm)?;
            decoding
        }
        Algorithm::EdDSA => {
            let x = base64url(jwk, "x")?;
            if x.len() != 32 {
                return Err("x must be 32 bytes for Ed25519".into());
            }
            let decoding = DecodingKey::from_ed_der(&x);
            check_point(&decoding, algorithm)?;
            decoding
        }
        _ => unreachable!("only the three algorithms above are assigned"),
    };
    Ok(Usable(algorithm, decoding))
}

/// Builds the backend's verifier once (it parses the point) so a key off the curve is an error
/// when the file loads, not a failure on every request.
fn check_point(decoding: &DecodingKey, algorithm: Algorithm) -> Result<(), String> {
    // A dummy signature: what matters is whether the key parses, not whether it verifies.
    match jsonwebtoken::crypto::verify("AA", b"", decoding, algorithm) {
        Ok(_) => Ok(()),
        Err(_) => Err("not a valid point on the curve".into()),
    }
}

/// The JOSE name of an accepted algorithm.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Json) -> Result<KeySet, JwksError> {
        parse(v.to_string().as_bytes())
    }

    // The Ed25519 public key of RFC 8037, appendix A.2.
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn an_ed25519_key_loads_with_its_algorithm() {
        let set =
            parse_json(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"}]}))
                .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].algorithm, Algorithm::EdDSA);
        assert!(set.by_kid("ed").is_some());
        assert!(set.by_kid("other").is_none());
    }

    #[test]
    fn foreign_keys_are_skipped_and_broken_ones_reject_the_file() {
        let set = parse_json(json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "use": "enc", "kid": "e"},
            {"kty": "OKP", "crv": "X25519", "x": ED_X},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "alg": "HS256", "kid": "h"},
        ]}))
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 4, "{:?}", set.skipped);
        assert!(set.skipped[0].contains("symmetric"));

        for (broken, expected) in [
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
                "32 bytes",
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": "!!"}),
                "base64url",
            ),
            (json!({"kty": "OKP", "crv": "Ed25519"}), "x is missing"),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "d": ED_X}),
                "private key",
            ),
            (
                json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
                "at least 2048",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": ED_X, "y": ED_X}),
                "not a valid point",
            ),
            (json!("a string"), "not a JSON object"),
        ] {
            let err = parse_json(json!({"keys": [broken]})).unwrap_err();
            assert!(err.0.contains(expected), "{err} should say {expected}");
            assert!(!err.0.contains(ED_X), "{err} names key material");
        }
        let dup = json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "k"});
        let err = parse_json(json!({"keys": [dup.clone(), dup]})).unwrap_err();
        assert!(err.0.contains("duplicate kid"), "{err}");
    }

    #[test]
    fn a_set_without_usable_keys_is_rejected() {
        let err = parse_json(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).unwrap_err();
        assert!(err.0.contains("no key usable"), "{err}");
        assert!(err.0.contains("symmetric"), "{err}");
        assert!(parse_json(json!({"keys": []})).is_err());
        assert!(parse_json(json!({"nokeys": []})).is_err());
        assert!(parse(b"{not json").is_err());
    }
}
