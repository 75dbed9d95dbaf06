//! SMART on FHIR scopes: parsing granted scope strings (v1 and v2) and deciding whether one covers
//! a (kind, permission, resource).
//!
//! v1: `patient/Observation.read`, `user/*.write`, `system/*.*` (`read` = r+s, `write` = c+u+d).
//! v2: `patient/Observation.rs`, `user/Patient.cruds`, with optional granular parameters
//! (`patient/Observation.rs?category=laboratory`), which require resource attributes to equal
//! the given values. A `patient/` scope covers only resources of the launch patient: both the
//! principal's launch patient and the resource's patient must be non-empty strings, and equal
//! (SMART: granting a patient scope means a patient is in context; an empty id is none).
//!
//! Pure functions over strings and JSON; knows nothing of policies or CEL.

use crate::request::attribute;
use serde_json::Value as Json;

/// A SMART v2 permission letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    pub fn from_letter(letter: &str) -> Option<Permission> {
        Some(match letter {
            "c" => Permission::Create,
            "r" => Permission::Read,
            "u" => Permission::Update,
            "d" => Permission::Delete,
            "s" => Permission::Search,
            _ => return None,
        })
    }

    fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }
}

/// Whose data a scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compartment {
    /// Only the launch patient's resources.
    Patient,
    /// Whatever the user may access.
    User,
    /// Backend services.
    System,
}

/// One parsed SMART scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartScope {
    pub compartment: Compartment,
    /// `None` for `*`.
    pub kind: Option<String>,
    permissions: u8,
    /// v2 granular parameters: attribute name = required value.
    pub params: Vec<(String, String)>,
}

impl SmartScope {
    /// Parses a scope; `None` for scopes that are not SMART resource scopes (`openid`,
    /// `launch/patient`, `fhirUser`...) or are malformed.
    pub fn parse(scope: &str) -> Option<SmartScope> {
        let (compartment, rest) = scope.split_once('/')?;
        let compartment = match compartment {
            "patient" => Compartment::Patient,
            "user" => Compartment::User,
            "system" => Compartment::System,
            _ => return None,
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (kind, permissions) = rest.rsplit_once('.')?;
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '*') {
            return None;
        }
        let permissions = match permissions {
            "read" => Permission::Read.bit() | Permission::Search.bit(),
            "write" => {
                Permission::Create.bit() | Permission::Update.bit() | Permission::Delete.bit()
            }
            "*" => 31,
            letters => parse_v2_letters(letters)?,
        };
        let mut params = Vec::new();
        if let Some(query) = query {
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=')?;
                if k.is_empty() {
                    return None;
                }
                params.push((k.to_string(), v.to_string()));
            }
        }
        Some(SmartScope {
            compartment,
            kind: (kind != "*").then(|| kind.to_string()),
            permissions,
            params,
        })
    }

    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
    }

    pub fn names_kind(&self, kind: &str) -> bool {
        self.kind.as_deref().is_none_or(|k| k == kind)
    }

    /// Whether this scope covers `permission` on a resource of `kind` with attributes
    /// `resource_attr`, for a principal whose attributes are `principal_attr`.
    pub fn covers(
        &self,
        kind: &str,
        permission: Permission,
        resource_attr: &Json,
        principal_attr: &Json,
        compartment: &PatientCompartment,
    ) -> bool {
        if !self.names_kind(kind) || !self.allows(permission) {
            return false;
        }
        if self.compartment == Compartment::Patient {
            let launch = compartment.launch_patient(principal_attr);
            let owner = non_empty_string(attribute(resource_attr, &compartment.patient_attribute));
            match (launch, owner) {
                (Some(l), Some(o)) if l == o => {}
                _ => return false,
            }
        }
        self.params.iter().all(|(name, value)| {
            matches!(attribute(resource_attr, name), Some(Json::String(v)) if v == value)
        })
    }
}

/// How `patient/` scopes find the launch patient and a resource's patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientCompartment {
    /// Principal attribute holding the launch patient id (default `patient`).
    pub patient_claim: String,
    /// Resource attribute naming the resource's patient (default `patient_id`).
    pub patient_attribute: String,
}

impl PatientCompartment {
    /// The launch patient of a principal: its `patient_claim` attribute, if a non-empty string.
    /// Without one, no `patient/` scope covers anything.
    pub fn launch_patient<'a>(&self, principal_attr: &'a Json) -> Option<&'a str> {
        non_empty_string(attribute(principal_attr, &self.patient_claim))
    }
}

fn non_empty_string(value: Option<&Json>) -> Option<&str> {
    match value {
        Some(Json::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

impl Default for PatientCompartment {
    fn default() -> Self {
        PatientCompartment {
            patient_claim: "patient".to_string(),
            patient_attribute: "patient_id".to_string(),
        }
    }
}

/// v2 letters must be a non-empty subsequence of "cruds", in that order.
fn parse_v2_letters(letters: &str) -> Option<u8> {
    let mut bits = 0;
    let mut order = "cruds".chars();
    for letter in letters.chars() {
        // advance through the canonical order until this letter: enforces order and uniqueness
        order.by_ref().find(|c| *c == letter)?;
        bits |= Permission::from_letter(&letter.to_string())?.bit();
    }
    (bits != 0).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_v1_and_v2() {
        let s = SmartScope::parse("patient/Observation.read").unwrap();
        assert_eq!(s.compartment, Compartment::Patient);
        assert!(s.allows(Permission::Read) && s.allows(Permission::Search));
        assert!(!s.allows(Permission::Update));
        let s = SmartScope::parse("user/*.write").unwrap();
        assert!(s.kind.is_none() && s.allows(Permission::Update) && !s.allows(Permission::Read));
        let s = SmartScope::parse("system/*.*").unwrap();
        assert!(s.allows(Permission::Delete) && s.allows(Permission::Search));
        let s = SmartScope::parse("user/Patient.cruds").unwrap();
        assert!(s.allows(Permission::Create) && s.allows(Permission::Search));
        let s = SmartScope::parse("patient/Observation.rs?category=laboratory").unwrap();
        assert_eq!(s.params, vec![("category".into(), "laboratory".into())]);
    }

    #[test]
    fn rejects_non_resource_and_malformed_scopes() {
        for bad in [
            "openid",
            "launch/patient",
            "fhirUser",
            "patient/Observation.sr",
            "user/Patient.rr",
            "user/Patient.x",
            "admin/*.*",
            "patient/.read",
            "user/Patient",
        ] {
            assert_eq!(SmartScope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn patient_scopes_cover_only_the_launch_patient() {
        let s = SmartScope::parse("patient/Observation.read").unwrap();
        let c = PatientCompartment::default();
        let principal = json!({"patient": "123"});
        assert!(s.covers(
            "Observation",
            Permission::Read,
            &json!({"patient_id": "123"}),
            &principal,
            &c
        ));
        assert!(!s.covers(
            "Observation",
            Permission::Read,
            &json!({"patient_id": "124"}),
            &principal,
            &c
        ));
        assert!(!s.covers("Observation", Permission::Read, &json!({}), &principal, &c));
        assert!(!s.covers(
            "Observation",
            Permission::Read,
            &json!({"patient_id": "123"}),
            &json!({}),
            &c
        ));
        assert!(!s.covers(
            "Patient",
            Permission::Read,
            &json!({"patient_id": "123"}),
            &principal,
            &c
        ));
        // An empty id is no patient: "" does not cover "", nor anything else.
        for (launch, owner) in [("", ""), ("", "123"), ("123", "")] {
            assert!(
                !s.covers(
                    "Observation",
                    Permission::Read,
                    &json!({ "patient_id": owner }),
                    &json!({ "patient": launch }),
                    &c
                ),
                "launch {launch:?}, resource {owner:?}"
            );
        }
        assert_eq!(c.launch_patient(&json!({"patient": ""})), None);
        assert_eq!(c.launch_patient(&json!({"patient": 123})), None);
        assert_eq!(c.launch_patient(&principal), Some("123"));
        assert!(!s.covers(
            "Observation",
            Permission::Update,
            &json!({"patient_id": "123"}),
            &principal,
            &c
        ));
    }

    #[test]
    fn granular_parameters_restrict_by_attribute() {
        let s = SmartScope::parse("user/Observation.rs?category=laboratory").unwrap();
        let c = PatientCompartment::default();
        assert!(s.covers(
            "Observation",
            Permission::Read,
            &json!({"category": "laboratory"}),
            &json!({}),
            &c
        ));
        assert!(!s.covers(
            "Observation",
            Permission::Read,
            &json!({"category": "vital-signs"}),
            &json!({}),
            &c
        ));
        assert!(!s.covers("Observation", Permission::Read, &json!({}), &json!({}), &c));
    }
}
