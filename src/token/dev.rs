//! Development helpers, for trying token verification without an identity provider: a fresh
//! Ed25519 key pair, as the JWKS `verdict serve --jwks-file` reads and a PKCS#8 PEM private key,
//! and tokens signed with that key (`verdict token keygen`, `verdict token sign`).
//!
//! Not for production: the private key is a plain file, and nothing here rotates, protects or
//! revokes it. Production tokens come from the identity provider whose JWKS the daemon is given.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::SigningKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

/// An Ed25519 signing key and the key id its JWKS entry and its tokens carry.
pub struct DevKey {
    signing: SigningKey,
}

impl DevKey {
    /// A new key, from the operating system's random source.
    pub fn generate() -> Result<DevKey, String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| format!("no random source: {e}"))?;
        Ok(DevKey {
            signing: SigningKey::from_bytes(&secret),
        })
    }

    /// The key a PEM file written by [`DevKey::private_pem`] holds.
    pub fn from_pem(pem: &[u8]) -> Result<DevKey, String> {
        let der = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der,
            Ok(_) => return Err("not a PKCS#8 private key".into()),
            Err(e) => return Err(format!("not a PEM private key: {e}")),
        };
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        SigningKey::from_pkcs8_der(der.secret_pkcs8_der())
            .map(|signing| DevKey { signing })
            .map_err(|_| "not an Ed25519 private key".into())
    }

    /// Derived from the public key: the same key always has the same id.
    pub fn kid(&self) -> String {
        let digest = Sha256::digest(self.signing.verifying_key().as_bytes());
        format!("dev-{}", hex::encode(&digest[..6]))
    }

    /// The JWKS with the public key: what `--jwks-file` reads.
    pub fn jwks(&self) -> Json {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.kid(),
            "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        }]})
    }

    /// The private key, PKCS#8 in PEM: what `verdict token sign --key` reads.
    pub fn private_pem(&self) -> Result<String, String> {
        let der = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let encoded = STANDARD.encode(der.as_bytes());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    /// A token with these claims, signed EdDSA with this key's `kid`. `iat` and `exp` are added
    /// when absent: now, and now + `lifetime_secs`.
    pub fn sign(
        &self,
        mut claims: Map<String, Json>,
        lifetime_secs: u64,
    ) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        claims.entry("iat").or_insert(json!(now));
        claims
            .entry("exp")
            .or_insert(json!(now.saturating_add(lifetime_secs)));
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid());
        let der = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_its_pem_and_signs_what_its_jwks_verifies() {
        let key = DevKey::generate().unwrap();
        let again = DevKey::from_pem(key.private_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_ne!(DevKey::generate().unwrap().kid(), key.kid(), "fresh keys");
        let set = super::super::jwks::parse(key.jwks().to_string().as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some(key.kid().as_str()));
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("dr-house"));
        let token = again.sign(claims, 60).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
        assert_eq!(header.kid, Some(key.kid()));
        assert!(DevKey::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
