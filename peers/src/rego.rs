//! Rego through regorus: `rego/clinic.rego`, one evaluation of `data.verdict.clinic.allow` per
//! (resource, action), with the input `{"principal", "resource", "action"}` built from Verdict's
//! request types serialized to JSON. An evaluation error (none is expected: the policy tests types
//! before it uses values) denies.

use std::collections::BTreeMap;
use std::path::Path;

use regorus::{Engine, Value};
use verdict::request::CheckRequest;

use crate::Effects;

/// The clinic in Rego, compiled once.
#[derive(Clone)]
pub struct Rego {
    engine: Engine,
}

/// The rule every decision evaluates.
const ALLOW: &str = "data.verdict.clinic.allow";

impl Rego {
    /// `peers/rego/clinic.rego`.
    pub fn clinic() -> Rego {
        Rego::load(&crate::repository().join("peers/rego/clinic.rego")).expect("clinic.rego")
    }

    pub fn load(path: &Path) -> Result<Rego, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut engine = Engine::new();
        engine
            .add_policy(path.display().to_string(), text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut rego = Rego { engine };
        // Compile (regorus prepares on first evaluation), so that no timing pays for it.
        rego.engine.set_input(Value::new_object());
        rego.engine
            .eval_rule(ALLOW.to_string())
            .map_err(|e| format!("{ALLOW}: {e}"))?;
        Ok(rego)
    }

    /// The inputs of a request, one per (resource, action), in request order.
    pub fn inputs(request: &CheckRequest) -> Vec<Vec<Value>> {
        let principal = to_value(serde_json::to_value(&request.principal));
        request
            .resources
            .iter()
            .map(|check| {
                let resource = to_value(serde_json::to_value(&check.resource));
                check
                    .actions
                    .iter()
                    .map(|action| {
                        Value::from(BTreeMap::from([
                            (Value::from("principal"), principal.clone()),
                            (Value::from("resource"), resource.clone()),
                            (Value::from("action"), Value::from(action.as_str())),
                        ]))
                    })
                    .collect()
            })
            .collect()
    }

    /// Evaluates prepared inputs.
    pub fn decide(&mut self, inputs: &[Vec<Value>]) -> Effects {
        inputs
            .iter()
            .map(|actions| {
                actions
                    .iter()
                    .map(|input| {
                        self.engine.set_input(input.clone());
                        matches!(
                            self.engine.eval_rule(ALLOW.to_string()),
                            Ok(Value::Bool(true))
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// Decides a whole request: builds the inputs, then evaluates them.
    pub fn check(&mut self, request: &CheckRequest) -> Effects {
        let inputs = Rego::inputs(request);
        self.decide(&inputs)
    }
}

/// A JSON value as a regorus value (`Undefined` if it cannot be serialized, which denies).
fn to_value(json: serde_json::Result<serde_json::Value>) -> Value {
    json.map(Value::from).unwrap_or(Value::Undefined)
}
