//! The claims of a verified token -> [`Principal`]: the one documented mapping.
//!
//! | claim | principal field |
//! |---|---|
//! | the subject claim (a dotted path, default `sub`), a non-empty string, required | `id` |
//! | the roles claim (a dotted path, default `roles`; e.g. `realm_access.roles`) | `roles` |
//! | `scope` and `scp`, each a space-separated string or a list | `scopes` (in order, without repeats) |
//! | the capabilities claim (a dotted path, default `capabilities`) | `capabilities` |
//! | `azp`, or else `client_id` | `client_id` |
//! | every other claim, registered ones included (`iss`, `aud`, `exp`, `iat`, `jti`...) | `attr` |
//!
//! A claim taken into a field is not repeated in `attr` (for a dotted path, only its last member
//! is taken out). A token without a subject, or with an empty one, is rejected: an empty id would
//! equal every empty attribute a condition compares it with (`P.id == R.attr.owner_id`). A list claim may also be a single string (one role). A claim of the wrong type
//! (`sub: 5`, `roles: {"a": 1}`) rejects the token: a mapping that guessed would decide on
//! something the issuer did not say.

use serde_json::{Map, Value as Json};

use super::TokenError;
use crate::request::Principal;

/// Where the subject, roles and capabilities are found in the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Dotted path of the claim that becomes the principal's id, e.g. `sub` or `ext.uid`.
    pub subject: String,
    /// Dotted path of the roles claim, e.g. `roles` or `realm_access.roles`.
    pub roles: String,
    /// Dotted path of the capabilities claim.
    pub capabilities: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject: "sub".into(),
            roles: "roles".into(),
            capabilities: "capabilities".into(),
        }
    }
}

impl ClaimMapping {
    /// Checks the paths: non-empty members, not a claim the mapping already uses, not each other.
    pub fn validate(&self) -> Result<(), String> {
        let paths = [
            ("subject", &self.subject),
            ("roles", &self.roles),
            ("capabilities", &self.capabilities),
        ];
        for (what, path) in paths {
            if path.split('.').any(str::is_empty) {
                return Err(format!(
                    "the {what} claim path {path:?} has an empty member"
                ));
            }
            if ["scope", "scp", "azp", "client_id"].contains(&path.as_str()) {
                return Err(format!(
                    "the {what} claim path {path:?} is a claim the mapping already uses"
                ));
            }
        }
        for (i, (a, x)) in paths.iter().enumerate() {
            for (b, y) in &paths[i + 1..] {
                if x == y {
                    return Err(format!("{a} and {b} cannot both come from claim {x:?}"));
                }
            }
        }
        Ok(())
    }
}

/// Maps verified claims to a principal.
pub fn principal(
    mut claims: Map<String, Json>,
    mapping: &ClaimMapping,
) -> Result<Principal, TokenError> {
    let id = match take_path(&mut claims, &mapping.subject) {
        None | Some(Json::Null) => return Err(TokenError::MissingClaim(mapping.subject.clone())),
        Some(Json::String(id)) if id.is_empty() => {
            return Err(TokenError::MalformedClaim(format!(
                "{} is empty",
                mapping.subject
            )))
        }
        Some(Json::String(id)) => id,
        Some(_) => return Err(malformed(&mapping.subject, "a string")),
    };
    let azp = take_string(&mut claims, "azp")?;
    let client_id = take_string(&mut claims, "client_id")?;
    let mut scopes: Vec<String> = Vec::new();
    for claim in ["scope", "scp"] {
        for scope in take_list(&mut claims, claim, true)? {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    let roles = take_path_list(&mut claims, &mapping.roles)?;
    let capabilities = take_path_list(&mut claims, &mapping.capabilities)?;
    Ok(Principal {
        id,
        roles,
        capabilities,
        scopes,
        client_id: azp.or(client_id).unwrap_or_default(),
        attr: Json::Object(claims),
    })
}

fn malformed(claim: &str, expected: &str) -> TokenError {
    TokenError::MalformedClaim(format!("{claim} is not {expected}"))
}

fn take_string(claims: &mut Map<String, Json>, claim: &str) -> Result<Option<String>, TokenError> {
    match claims.remove(claim) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(claim, "a string")),
    }
}

/// A list of strings, or one string (split on whitespace when `split`, as OAuth's `scope`).
fn list(value: Option<Json>, claim: &str, split: bool) -> Result<Vec<String>, TokenError> {
    match value {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::String(s)) if split => Ok(s.split_whitespace().map(str::to_string).collect()),
        Some(Json::String(s)) => Ok(vec![s]),
        Some(Json::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Json::String(s) => Ok(s),
                _ => Err(malformed(claim, "a list of strings")),
            })
            .collect(),
        Some(_) => Err(malformed(claim, "a list of strings")),
    }
}

fn take_list(
    claims: &mut Map<String, Json>,
    claim: &str,
    split: bool,
) -> Result<Vec<String>, TokenError> {
    list(claims.remove(claim), claim, split)
}

/// Takes the value at a dotted path out of the claims; a path through a non-object is absent.
fn take_path(claims: &mut Map<String, Json>, path: &str) -> Option<Json> {
    let mut members = path.split('.');
    let last = members.next_back().unwrap_or(path);
    let mut object = claims;
    for member in members {
        match object.get_mut(member) {
            Some(Json::Object(inner)) => object = inner,
            _ => return None,
        }
    }
    object.remove(last)
}

/// Takes the list at a dotted path out of the claims.
fn take_path_list(claims: &mut Map<String, Json>, path: &str) -> Result<Vec<String>, TokenError> {
    list(take_path(claims, path), path, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_documented_mapping() {
        let claims = map(json!({
            "sub": "dr-house", "iss": "https://idp", "aud": ["verdict"], "exp": 2000000000,
            "roles": ["physician"], "capabilities": "sign-a-note",
            "scope": "openid  user/*.cruds", "scp": ["user/*.cruds", "fhirUser"],
            "azp": "chart-app", "client_id": "ignored", "practice_id": "7",
        }));
        let p = principal(claims, &ClaimMapping::default()).unwrap();
        assert_eq!(p.id, "dr-house");
        assert_eq!(p.roles, ["physician"]);
        assert_eq!(p.capabilities, ["sign-a-note"]);
        assert_eq!(p.scopes, ["openid", "user/*.cruds", "fhirUser"]);
        assert_eq!(p.client_id, "chart-app");
        assert_eq!(
            p.attr,
            json!({"iss": "https://idp", "aud": ["verdict"], "exp": 2000000000, "practice_id": "7"})
        );
    }

    #[test]
    fn nested_role_paths_and_client_id_fallback() {
        let mapping = ClaimMapping {
            subject: "ext.uid".into(),
            roles: "realm_access.roles".into(),
            capabilities: "verdict.caps".into(),
        };
        let claims = map(json!({
            "realm_access": {"roles": ["nurse"], "other": 1}, "client_id": "svc", "roles": ["kept"],
            "sub": "kept too", "ext": {"uid": "n-joy"},
        }));
        let p = principal(claims, &mapping).unwrap();
        assert_eq!(p.id, "n-joy");
        assert_eq!(p.roles, ["nurse"]);
        assert!(p.capabilities.is_empty());
        assert_eq!(p.client_id, "svc");
        assert_eq!(
            p.attr,
            json!({"realm_access": {"other": 1}, "roles": ["kept"], "sub": "kept too", "ext": {}})
        );
        let claims = map(json!({"realm_access": "not an object", "ext": {"uid": "x"}}));
        assert!(principal(claims, &mapping).unwrap().roles.is_empty());
    }

    #[test]
    fn wrong_types_reject_the_token() {
        for claims in [
            json!({"sub": 5}),
            json!({"sub": "a", "roles": {"a": 1}}),
            json!({"sub": "a", "roles": ["a", 1]}),
            json!({"sub": "a", "scope": 7}),
            json!({"sub": "a", "azp": true}),
        ] {
            let err = principal(map(claims.clone()), &ClaimMapping::default()).unwrap_err();
            assert!(
                matches!(err, TokenError::MalformedClaim(_)),
                "{claims}: {err}"
            );
        }
    }

    #[test]
    fn a_principal_needs_a_non_empty_subject() {
        let mapping = ClaimMapping::default();
        for (claims, reason) in [
            (json!({"roles": ["physician"]}), "missing claim sub"),
            (json!({"sub": null}), "missing claim sub"),
            (json!({"sub": ""}), "claim sub is empty"),
            (json!({"sub": []}), "claim sub is not a string"),
        ] {
            let err = principal(map(claims.clone()), &mapping).unwrap_err();
            assert_eq!(err.to_string(), reason, "{claims}");
        }
        let custom = ClaimMapping {
            subject: "oid".into(),
            ..ClaimMapping::default()
        };
        let err = principal(map(json!({"sub": "x"})), &custom).unwrap_err();
        assert_eq!(err.to_string(), "missing claim oid");
        assert_eq!(
            principal(map(json!({"oid": "x"})), &custom).unwrap().id,
            "x"
        );
    }

    #[test]
    fn mapping_paths_are_checked() {
        let bad = |subject: &str, roles: &str, capabilities: &str| {
            ClaimMapping {
                subject: subject.into(),
                roles: roles.into(),
                capabilities: capabilities.into(),
            }
            .validate()
            .is_err()
        };
        assert!(!bad("sub", "realm_access.roles", "capabilities"));
        assert!(!bad("ext.uid", "roles", "capabilities"));
        assert!(bad("sub", "", "capabilities"));
        assert!(bad("sub", "a..b", "capabilities"));
        assert!(bad("", "roles", "capabilities"));
        assert!(bad("sub", "roles", "roles"));
        assert!(bad("roles", "roles", "capabilities"));
        assert!(bad("sub", "scope", "capabilities"));
        assert!(bad("azp", "roles", "capabilities"));
    }
}
