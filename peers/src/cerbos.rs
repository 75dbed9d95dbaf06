//! The real Cerbos PDP, over gRPC: a `cerbos server` process (the binary of the npm package
//! `@cerbos/cerbos-linux-x64`, which `scripts/cerbos.sh` fetches at bench time; nothing of it is
//! committed) on the clinic translated in `cerbos/` (one resource policy per kind, the named
//! conditions and the scope gate as exported variables, the schema as JSON schemas with
//! enforcement `reject`), asked `cerbos.svc.v1.CerbosService/CheckResources`.
//!
//! The messages are declared here with prost, from the field numbers the server's own reflection
//! describes (`grpcurl describe cerbos.request.v1.CheckResourcesRequest`), only the fields used.
//!
//! A request is Verdict's [`CheckRequest`] translated: the principal's roles plus the neutral
//! role `principal` (Cerbos requires one role at least), its claims as attributes (nulls left
//! out: absent, as in Verdict), its capabilities and its SMART scopes parsed by the harness
//! ([`crate::smart_grants`], as for Cedar) as attributes; each resource's attributes (nulls left
//! out). Cerbos requires non-empty ids: an empty one is sent as `-`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use verdict::request::CheckRequest;

use crate::Effects;

/// `cerbos.request.v1.CheckResourcesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResourcesRequest {
    #[prost(string, tag = "1")]
    pub request_id: String,
    #[prost(message, optional, tag = "3")]
    pub principal: Option<Principal>,
    #[prost(message, repeated, tag = "4")]
    pub resources: Vec<ResourceEntry>,
}

/// `cerbos.engine.v1.Principal`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Principal {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, repeated, tag = "3")]
    pub roles: Vec<String>,
    #[prost(map = "string, message", tag = "4")]
    pub attr: HashMap<String, prost_types::Value>,
}

/// `cerbos.request.v1.CheckResourcesRequest.ResourceEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceEntry {
    #[prost(string, repeated, tag = "1")]
    pub actions: Vec<String>,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<Resource>,
}

/// `cerbos.engine.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(string, tag = "1")]
    pub kind: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(map = "string, message", tag = "4")]
    pub attr: HashMap<String, prost_types::Value>,
}

/// `cerbos.response.v1.CheckResourcesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResourcesResponse {
    #[prost(string, tag = "1")]
    pub request_id: String,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<ResultEntry>,
}

/// `cerbos.response.v1.CheckResourcesResponse.ResultEntry`: the effect of each action
/// (`cerbos.effect.v1.Effect`: 1 allow, 2 deny, 3 no match).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResultEntry {
    #[prost(map = "string, int32", tag = "2")]
    pub actions: HashMap<String, i32>,
}

/// `EFFECT_ALLOW`.
pub const ALLOW: i32 = 1;

/// The gRPC method.
pub const CHECK_RESOURCES: &str = "/cerbos.svc.v1.CerbosService/CheckResources";

/// A JSON value as a protobuf Value (what `google.protobuf.Struct` fields carry).
fn value(json: &Json) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value).collect(),
        }),
        Json::Object(members) => Kind::StructValue(prost_types::Struct {
            fields: members.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The non-null members of a JSON object (null counts as absent, as in Verdict).
fn attributes(object: &Json) -> HashMap<String, prost_types::Value> {
    match object {
        Json::Object(members) => members
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
        _ => HashMap::new(),
    }
}

fn strings(list: Vec<String>) -> prost_types::Value {
    value(&Json::Array(list.into_iter().map(Json::String).collect()))
}

fn non_empty(id: &str) -> String {
    if id.is_empty() {
        "-".to_string()
    } else {
        id.to_string()
    }
}

/// Verdict's request, as Cerbos is asked it.
pub fn request(check: &CheckRequest) -> CheckResourcesRequest {
    let p = &check.principal;
    let mut attr = attributes(&p.attr);
    let grants = crate::smart_grants(p);
    attr.insert("capabilities".into(), strings(p.capabilities.clone()));
    attr.insert("smart_user".into(), strings(grants.user));
    attr.insert("smart_patient".into(), strings(grants.patient));
    match grants.launch_patient {
        Some(launch) => {
            attr.insert("launch_patient".into(), value(&Json::String(launch)));
        }
        None => {
            attr.remove("launch_patient");
        }
    }
    let mut roles = p.roles.clone();
    roles.push("principal".into());
    CheckResourcesRequest {
        request_id: check.request_id.clone(),
        principal: Some(Principal {
            id: non_empty(&p.id),
            roles,
            attr,
        }),
        resources: check
            .resources
            .iter()
            .map(|c| ResourceEntry {
                actions: c.actions.clone(),
                resource: Some(Resource {
                    kind: c.resource.kind.clone(),
                    id: non_empty(&c.resource.id),
                    attr: attributes(&c.resource.attr),
                }),
            })
            .collect(),
    }
}

/// Cerbos's answer as effects, in request order (results come in the order of the resources).
pub fn effects(check: &CheckRequest, response: &CheckResourcesResponse) -> Effects {
    check
        .resources
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.actions
                .iter()
                .map(|action| {
                    response.results.get(i).and_then(|r| r.actions.get(action)) == Some(&ALLOW)
                })
                .collect()
        })
        .collect()
}

/// The policies of `cerbos/`.
pub fn policies() -> PathBuf {
    crate::repository().join("peers/cerbos")
}

/// A running `cerbos server`; killed when dropped.
pub struct CerbosServer {
    child: Child,
    pub grpc: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound, then released: the server binds it a moment later).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl CerbosServer {
    /// Starts `binary server` on the clinic's Cerbos policies, schema enforcement `reject`, up to
    /// 500 resources per request (Cerbos allows no more; its default is 50), audit and logs
    /// quiet, on loopback ports; `cpus` (`taskset -c`) pins it. Waits until it answers
    /// gRPC health.
    pub fn start(binary: &Path, cpus: Option<&str>) -> Result<CerbosServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (grpc, http) = (free_port(), free_port());
        let config = dir.path().join("cerbos.yaml");
        std::fs::write(
            &config,
            format!(
                "server:\n  grpcListenAddr: \"{grpc}\"\n  httpListenAddr: \"{http}\"\n\
                 \x20 requestLimits:\n    maxResourcesPerRequest: 500\n\
                 storage:\n  driver: disk\n  disk:\n    directory: {}\n    watchForChanges: false\n\
                 schema:\n  enforcement: reject\n\
                 audit:\n  enabled: false\n",
                policies().display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .args(["server", "--log-level=error", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut server = CerbosServer {
            child,
            grpc,
            _dir: dir,
        };
        let give_up = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(grpc).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("cerbos exited: {status}"));
            }
            if Instant::now() > give_up {
                return Err("cerbos never listened".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for CerbosServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
