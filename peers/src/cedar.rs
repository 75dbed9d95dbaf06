//! Cedar through `cedar-policy` 4: `cedar/clinic.cedar` over the schema
//! `cedar/clinic.cedarschema`, one `Authorizer::is_authorized` per (resource, action), over
//! entities built from Verdict's request types and validated against the schema:
//!
//! - the principal is `User::"<id>"` whose parents are `Role::"<role>"`, with attributes `id`,
//!   `client_id`, `roles` and `capabilities` (sets), `claims` (the claims the schema declares, a
//!   record) and `smart` (its SMART scopes, pre-parsed here with Verdict's own parser, see
//!   [`smart_record`]);
//! - each resource is `<Kind>::"<id>"` with its attributes at top level;
//! - the action is `Action::"<action>"`; the context is empty (no clinic policy reads one).
//!
//! JSON values become Cedar values: null is absent (as in Verdict), numbers `decimal`s (four
//! places; Verdict's numbers are doubles), arrays sets, objects records.
//!
//! The schema: a principal that does not conform denies every action, a resource that does not
//! (a kind the schema does not declare included) every action on it, an action its kind does not
//! declare that action: what Verdict does with a request its schema refuses.
//!
//! Errors: Cedar skips a policy whose condition errors, a forbid included. Verdict fails closed.
//! [`ForbidErrors::Deny`] (what [`Cedar::check`] uses) restores Verdict's semantics by denying when
//! the response's diagnostics name an erroring forbid; [`ForbidErrors::Skip`] is plain Cedar. The
//! policies guard what they read (`has`), so on entities that conform none errors.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
};
use serde_json::Value as Json;
use verdict::request::{CheckRequest, Principal, Resource};

use crate::Effects;

/// What a forbid policy whose condition errors does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbidErrors {
    /// Verdict's semantics: the request is denied.
    Deny,
    /// Cedar's own semantics: the policy is skipped.
    Skip,
}

/// The clinic in Cedar, parsed once.
pub struct Cedar {
    authorizer: Authorizer,
    policies: PolicySet,
    schema: Schema,
    forbids: HashSet<PolicyId>,
    user: EntityTypeName,
    role: EntityTypeName,
    /// Entity types of the kinds the clinic names, parsed once; others are parsed per request.
    kinds: HashMap<String, EntityTypeName>,
    /// `Action::"<action>"` for the actions the clinic names; others are built per request.
    actions: HashMap<String, EntityUid>,
}

/// A request's entities, built once for all its (resource, action) pairs.
pub struct Prepared {
    entities: Entities,
    principal: EntityUid,
    /// `None` for a resource that cannot be an entity (a kind that is no Cedar type name, or
    /// attributes the schema refuses).
    resources: Vec<Option<EntityUid>>,
}

const KINDS: [&str; 5] = [
    "Patient",
    "Note",
    "Observation",
    "MedicationRequest",
    "Invoice",
];
const ACTIONS: [&str; 6] = ["read", "search", "create", "update", "delete", "sign"];

/// The principal's claims the clinic's schema declares (the others no condition may read).
const CLAIMS: [&str; 4] = ["practice_id", "licensed_states", "patient_id", "patient"];

impl Cedar {
    /// `peers/cedar/clinic.cedar` over `peers/cedar/clinic.cedarschema`.
    pub fn clinic() -> Cedar {
        let dir = crate::repository().join("peers/cedar");
        Cedar::load(&dir.join("clinic.cedar"), &dir.join("clinic.cedarschema"))
            .expect("clinic.cedar")
    }

    pub fn load(path: &Path, schema: &Path) -> Result<Cedar, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let policies =
            PolicySet::from_str(&text).map_err(|e| format!("{}: {e:?}", path.display()))?;
        let schema_text =
            std::fs::read_to_string(schema).map_err(|e| format!("{}: {e}", schema.display()))?;
        let schema =
            Schema::from_str(&schema_text).map_err(|e| format!("{}: {e:?}", schema.display()))?;
        let forbids = policies
            .policies()
            .filter(|p| p.effect() == Effect::Forbid)
            .map(|p| p.id().clone())
            .collect();
        let type_name = |name: &str| EntityTypeName::from_str(name).expect("a type name");
        let action = type_name("Action");
        Ok(Cedar {
            authorizer: Authorizer::new(),
            policies,
            schema,
            forbids,
            user: type_name("User"),
            role: type_name("Role"),
            kinds: KINDS
                .iter()
                .map(|k| (k.to_string(), type_name(k)))
                .collect(),
            actions: ACTIONS
                .iter()
                .map(|a| {
                    let uid = EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a));
                    (a.to_string(), uid)
                })
                .collect(),
        })
    }

    /// The schema the entities and requests are validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The policy set, as parsed.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The policy text's Verdict annotation (`@verdict("policy/rule")`) of a policy.
    pub fn verdict_rule(&self, id: &PolicyId) -> Option<&str> {
        self.policies.annotation(id, "verdict")
    }

    /// Decides a whole request with Verdict's semantics (an erroring forbid denies).
    pub fn check(&self, request: &CheckRequest) -> Effects {
        self.check_with(request, ForbidErrors::Deny)
    }

    pub fn check_with(&self, request: &CheckRequest, errors: ForbidErrors) -> Effects {
        match self.prepare(request) {
            Ok(prepared) => self.decide(&prepared, request, errors),
            Err(_) => crate::all_denied(request),
        }
    }

    /// Builds the principal and resource entities of a request, validated against the schema:
    /// `Err` when the principal does not conform (every action denied); a resource that does not
    /// is left out (every action on it denied).
    pub fn prepare(&self, request: &CheckRequest) -> Result<Prepared, String> {
        let (principal, principal_entity) = self.principal_entity(&request.principal)?;
        let mut entities = Vec::with_capacity(request.resources.len() + 1);
        entities.push(principal_entity);
        let mut resources = Vec::with_capacity(request.resources.len());
        for check in &request.resources {
            match self.resource_entity(&check.resource) {
                Ok((uid, entity)) => {
                    entities.push(entity);
                    resources.push(Some(uid));
                }
                Err(_) => resources.push(None),
            }
        }
        let entities = match Entities::from_entities(entities, Some(&self.schema)) {
            Ok(entities) => entities,
            // Some entity does not conform: find which, one by one (only on this path), with
            // entities built again (the happy path pays for no copy).
            Err(_) => self.conforming(request, &mut resources)?,
        };
        Ok(Prepared {
            entities,
            principal,
            resources,
        })
    }

    /// The entities of a request that conform to the schema; the resources that do not become
    /// `None`. `Err` if the principal does not conform.
    fn conforming(
        &self,
        request: &CheckRequest,
        resources: &mut [Option<EntityUid>],
    ) -> Result<Entities, String> {
        let fits =
            |entity: &Entity| Entities::from_entities([entity.clone()], Some(&self.schema)).is_ok();
        let (_, principal) = self.principal_entity(&request.principal)?;
        if !fits(&principal) {
            return Err("the principal does not conform to the schema".into());
        }
        let mut kept = vec![principal];
        for (check, uid) in request.resources.iter().zip(resources.iter_mut()) {
            match self.resource_entity(&check.resource) {
                Ok((_, entity)) if fits(&entity) => kept.push(entity),
                _ => *uid = None,
            }
        }
        Entities::from_entities(kept, Some(&self.schema)).map_err(|e| e.to_string())
    }

    /// Decides every (resource, action) of a request over prepared entities.
    pub fn decide(
        &self,
        prepared: &Prepared,
        request: &CheckRequest,
        errors: ForbidErrors,
    ) -> Effects {
        request
            .resources
            .iter()
            .zip(&prepared.resources)
            .map(|(check, uid)| {
                check
                    .actions
                    .iter()
                    .map(|action| match uid {
                        Some(resource) => self.allows(prepared, resource, action, errors),
                        None => false,
                    })
                    .collect()
            })
            .collect()
    }

    fn allows(
        &self,
        prepared: &Prepared,
        resource: &EntityUid,
        action: &str,
        errors: ForbidErrors,
    ) -> bool {
        let action = match self.actions.get(action) {
            Some(uid) => uid.clone(),
            None => EntityUid::from_type_name_and_id(
                self.actions["read"].type_name().clone(),
                EntityId::new(action),
            ),
        };
        // With the schema: an action the resource's kind does not declare is no request.
        let Ok(request) = Request::new(
            prepared.principal.clone(),
            action,
            resource.clone(),
            Context::empty(),
            Some(&self.schema),
        ) else {
            return false;
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &prepared.entities);
        if response.decision() != Decision::Allow {
            return false;
        }
        errors == ForbidErrors::Skip
            || !response.diagnostics().errors().any(|error| match error {
                AuthorizationError::PolicyEvaluationError(e) => {
                    self.forbids.contains(e.policy_id())
                }
            })
    }

    fn principal_entity(&self, principal: &Principal) -> Result<(EntityUid, Entity), String> {
        let uid = EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(&principal.id));
        let parents = principal
            .roles
            .iter()
            .map(|role| EntityUid::from_type_name_and_id(self.role.clone(), EntityId::new(role)))
            .collect();
        let strings = |values: &[String]| {
            RestrictedExpression::new_set(
                values
                    .iter()
                    .map(|v| RestrictedExpression::new_string(v.clone())),
            )
        };
        let claims = match &principal.attr {
            Json::Object(object) => CLAIMS
                .iter()
                .filter_map(|name| Some((name.to_string(), expression(object.get(*name)?)?)))
                .map(|(name, value)| value.map(|v| (name, v)))
                .collect::<Result<Vec<_>, String>>()?,
            Json::Null => Vec::new(),
            _ => return Err("the principal's attributes are not an object".into()),
        };
        let claims = RestrictedExpression::new_record(claims).map_err(|e| e.to_string())?;
        let attrs = HashMap::from([
            (
                "id".to_string(),
                RestrictedExpression::new_string(principal.id.clone()),
            ),
            (
                "client_id".to_string(),
                RestrictedExpression::new_string(principal.client_id.clone()),
            ),
            ("roles".to_string(), strings(&principal.roles)),
            ("capabilities".to_string(), strings(&principal.capabilities)),
            ("claims".to_string(), claims),
            ("smart".to_string(), smart_record(principal)?),
        ]);
        let entity = Entity::new(uid.clone(), attrs, parents).map_err(|e| e.to_string())?;
        Ok((uid, entity))
    }

    fn resource_entity(&self, resource: &Resource) -> Result<(EntityUid, Entity), String> {
        let kind = match self.kinds.get(&resource.kind) {
            Some(kind) => kind.clone(),
            None => EntityTypeName::from_str(&resource.kind).map_err(|e| e.to_string())?,
        };
        let uid = EntityUid::from_type_name_and_id(kind, EntityId::new(&resource.id));
        let attrs = match &resource.attr {
            Json::Object(object) => object
                .iter()
                .filter_map(|(k, v)| Some((k, expression(v)?)))
                .map(|(k, e)| e.map(|e| (k.clone(), e)))
                .collect::<Result<HashMap<_, _>, String>>()?,
            Json::Null => HashMap::new(),
            _ => return Err("the resource's attributes are not an object".into()),
        };
        let entity = Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
        Ok((uid, entity))
    }
}

/// A JSON value as a Cedar value; `None` for null (an absent attribute). Every number is a
/// `decimal` (Verdict's numbers are doubles); a null inside a list, or a number a decimal cannot
/// hold, is an error (the entity is refused, as Verdict's schema refuses the value).
fn expression(value: &Json) -> Option<Result<RestrictedExpression, String>> {
    Some(Ok(match value {
        Json::Null => return None,
        Json::Bool(b) => RestrictedExpression::new_bool(*b),
        Json::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if !f.is_finite() || f.abs() >= 9.0e14 {
                return Some(Err(format!("{n} is beyond what a decimal holds")));
            }
            RestrictedExpression::new_decimal(format!("{f:.4}"))
        }
        Json::String(s) => RestrictedExpression::new_string(s.clone()),
        Json::Array(items) => {
            let items = items
                .iter()
                .map(|item| expression(item).unwrap_or_else(|| Err("a null in a list".into())))
                .collect::<Result<Vec<_>, String>>();
            match items {
                Ok(items) => RestrictedExpression::new_set(items),
                Err(e) => return Some(Err(e)),
            }
        }
        Json::Object(object) => {
            let fields = object
                .iter()
                .filter_map(|(k, v)| Some((k, expression(v)?)))
                .map(|(k, e)| e.map(|e| (k.clone(), e)))
                .collect::<Result<Vec<_>, String>>();
            match fields
                .and_then(|f| RestrictedExpression::new_record(f).map_err(|e| e.to_string()))
            {
                Ok(record) => record,
                Err(e) => return Some(Err(e)),
            }
        }
    }))
}

/// The principal's SMART scopes, flattened for Cedar (which has no quantifier over a set of
/// records): `user` holds `"<Kind or *>.<letter>"` for every user/ and system/ scope, `patient`
/// the same for patient/ scopes, and `launch_patient` the `patient` claim when it is a string.
/// Parsed by Verdict's own parser (`verdict::smart`). Scopes with v2 granular parameters
/// (`?category=...`) are left out: Cedar cannot compare a resource attribute named at run time,
/// so such a scope never covers anything here (Verdict and Rego honor them).
pub fn smart_record(principal: &Principal) -> Result<RestrictedExpression, String> {
    let grants = crate::smart_grants(principal);
    let set = |grants: Vec<String>| {
        RestrictedExpression::new_set(grants.into_iter().map(RestrictedExpression::new_string))
    };
    let mut fields = vec![
        ("user".to_string(), set(grants.user)),
        ("patient".to_string(), set(grants.patient)),
    ];
    if let Some(launch) = grants.launch_patient {
        fields.push((
            "launch_patient".to_string(),
            RestrictedExpression::new_string(launch),
        ));
    }
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}
