//! The `principals` and `resources` documents as written: what the decision point knows of the
//! subjects and resources that requests name by id only (an AuthZEN gateway sends a user id and
//! expects the roles to be known here; a search lists the stored resources a subject may see).
//! Only the shape is checked here; the `entities` module indexes the documents of a set, holds
//! them to the schema and merges them into requests.
//!
//! ```yaml
//! principals:
//!   type: user                  # the AuthZEN subject type (default: user)
//!   entries:
//!     - {id: alice, roles: [member], attr: {department: Sales}}
//! ---
//! resources:
//!   kind: record
//!   request_overrides: [status] # request attributes that win over stored ones (default: none)
//!   entries:
//!     - {id: record-1, attr: {status: active}}
//! ```

use serde::Deserialize;
use serde_json::Value as Json;

/// The principal type when a `principals` document names none.
pub const DEFAULT_PRINCIPAL_TYPE: &str = "user";

fn default_principal_type() -> String {
    DEFAULT_PRINCIPAL_TYPE.to_string()
}

/// A `principals` document: stored principals of one type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntities {
    /// The subject type AuthZEN requests name them by (`subject.type`).
    #[serde(rename = "type", default = "default_principal_type")]
    pub principal_type: String,
    /// Attributes a request may give another value than the stored one (by default the stored
    /// value wins: a caller cannot talk its way into another department).
    #[serde(default)]
    pub request_overrides: Vec<String>,
    pub entries: Vec<PrincipalEntry>,
}

/// One stored principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    pub id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Its attributes (`P.attr`), a map.
    #[serde(default)]
    pub attr: Json,
}

/// A `resources` document: stored resources of one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntities {
    pub kind: String,
    /// Attributes a request may give another value than the stored one.
    #[serde(default)]
    pub request_overrides: Vec<String>,
    pub entries: Vec<ResourceEntry>,
}

/// One stored resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntry {
    pub id: String,
    /// Its attributes (`R.attr`), a map.
    #[serde(default)]
    pub attr: Json,
}
