//! The claims of a verified token -> [`Principal`]: the one documented mapping.
//!
//! | claim | principal field |
//! |---|---|
//! | `sub` | `id` |
//! | the roles claim (a dotted path, default `roles`; e.g. `realm_access.roles`) | `roles` |
//! | `scope` and `scp`, each a space-separated string or a list | `scopes` (in order, without repeats) |
//! | the capabilities claim (a dotted path, default `capabilities`) | `capabilities` |
//! | `azp`, or else `client_id` | `client_id` |
//! | every other claim, registered ones included (`iss`, `aud`, `exp`, `iat`, `jti`...) | `attr` |
//!
//! A claim taken into a field is not repeated in `attr` (for a dotted path, only its last member
//! is taken out). A list claim may also be a single string (one role). A claim of the wrong type
//! (`sub: 5`, `roles: {"a": 1}`) rejects the token: a mapping that guessed would decide on
//! something the issuer did not say.

use serde_json::{Map, Value as Json};

use super::TokenError;
use crate::request::Principal;

/// Where roles and capabilities are found in the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Dotted path of the roles claim, e.g. `roles` or `realm_access.roles`.
    pub roles: String,
    /// Dotted path of the capabilities claim.
    pub capabilities: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            roles: "roles".into(),
            capabilities: "capabilities".into(),
        }
    }
}

impl ClaimMapping {
    /// Checks the paths: non-empty members, not a claim the mapping already uses, not each other.
    pub fn validate(&self) -> Result<(), String> {
        for (what, path) in [("roles", &self.roles), ("capabilities", &self.capabilities)] {
            if path.split('.').any(str::is_empty) {
                return Err(format!(
                    "the {what} claim path {path:?} has an empty member"
                ));
            }
            if ["sub", "scope", "scp", "azp", "client_id"].contains(&path.as_str()) {
                return Err(format!(
                    "the {what} claim path {path:?} is a claim the mapping already uses"
                ));
            }
        }
        if self.roles == self.capabilities {
            return Err(format!(
                "roles and capabilities cannot both come from claim {:?}",
                self.roles
            ));
        }
        Ok(())
    }
}

/// Maps verified claims to a principal.
pub fn principal(
    mut claims: Map<String, Json>,
    mapping: &ClaimMapping,
) -> Result<Principal, TokenError> {
    let id = take_string(&mut claims, "sub")?.unwrap_or_default();
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

/// Takes the list at a dotted path out of the claims; a path through a non-object is absent.
fn take_path_list(claims: &mut Map<String, Json>, path: &str) -> Result<Vec<String>, TokenError> {
    let mut members = path.split('.');
    let last = members.next_back().unwrap_or(path);
    let mut object = claims;
    for member in members {
        match object.get_mut(member) {
            Some(Json::Object(inner)) => object = inner,
            _ => return Ok(Vec::new()),
        }
    }
    list(object.remove(last), path, false)
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
            roles: "realm_access.roles".into(),
            capabilities: "verdict.caps".into(),
        };
        let claims = map(json!({
            "realm_access": {"roles": ["nurse"], "other": 1}, "client_id": "svc", "roles": ["kept"],
        }));
        let p = principal(claims, &mapping).unwrap();
        assert_eq!(p.roles, ["nurse"]);
        assert!(p.capabilities.is_empty());
        assert_eq!(p.client_id, "svc");
        assert_eq!(
            p.attr,
            json!({"realm_access": {"other": 1}, "roles": ["kept"]})
        );
        let claims = map(json!({"realm_access": "not an object"}));
        assert!(principal(claims, &mapping).unwrap().roles.is_empty());
    }

    #[test]
    fn wrong_types_reject_the_token() {
        for claims in [
            json!({"sub": 5}),
            json!({"roles": {"a": 1}}),
            json!({"roles": ["a", 1]}),
            json!({"scope": 7}),
            json!({"azp": true}),
        ] {
            let err = principal(map(claims.clone()), &ClaimMapping::default()).unwrap_err();
            assert!(
                matches!(err, TokenError::MalformedClaim(_)),
                "{claims}: {err}"
            );
        }
    }

    #[test]
    fn mapping_paths_are_checked() {
        let bad = |roles: &str, capabilities: &str| {
            ClaimMapping {
                roles: roles.into(),
                capabilities: capabilities.into(),
            }
            .validate()
            .is_err()
        };
        assert!(!bad("realm_access.roles", "capabilities"));
        assert!(bad("", "capabilities"));
        assert!(bad("a..b", "capabilities"));
        assert!(bad("roles", "roles"));
        assert!(bad("scope", "capabilities"));
    }
}
