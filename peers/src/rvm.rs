//! Rego through regorus' RVM: `rego/clinic.rego` compiled once to RVM bytecode
//! (`compile_with_entrypoint`, then the RVM compiler) and executed by its register VM, one run of
//! the `data.verdict.clinic.allow` entry point per (resource, action), with the same input
//! documents as the interpreter ([`crate::rego::Rego::inputs`]). The fastest path regorus offers
//! for Rego. An execution error denies.

use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value};
use verdict::request::CheckRequest;

use crate::rego::Rego;
use crate::Effects;

/// The entry point every decision runs.
const ALLOW: &str = "data.verdict.clinic.allow";

/// The clinic as an RVM program, loaded in a VM.
pub struct Rvm {
    vm: RegoVM,
}

impl Rvm {
    /// `peers/rego/clinic.rego`, compiled.
    pub fn clinic() -> Rvm {
        Rvm::load(&crate::repository().join("peers/rego/clinic.rego")).expect("clinic.rego")
    }

    pub fn load(path: &std::path::Path) -> Result<Rvm, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut engine = Engine::new();
        engine
            .add_policy(path.display().to_string(), text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let compiled = engine
            .compile_with_entrypoint(&ALLOW.into())
            .map_err(|e| format!("{ALLOW}: {e}"))?;
        let program: Arc<_> =
            Compiler::compile_from_policy(&compiled, &[ALLOW]).map_err(|e| format!("{e}"))?;
        let mut vm = RegoVM::new_with_policy(compiled);
        vm.load_program(program);
        vm.set_data(Value::new_object())
            .map_err(|e| format!("data: {e}"))?;
        Ok(Rvm { vm })
    }

    /// Runs prepared inputs (the interpreter's, [`Rego::inputs`]).
    pub fn decide(&mut self, inputs: &[Vec<Value>]) -> Effects {
        inputs
            .iter()
            .map(|actions| {
                actions
                    .iter()
                    .map(|input| {
                        self.vm.set_input(input.clone());
                        matches!(
                            self.vm.execute_entry_point_by_name(ALLOW),
                            Ok(Value::Bool(true))
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// Decides a whole request: builds the inputs, then runs them.
    pub fn check(&mut self, request: &CheckRequest) -> Effects {
        let inputs = Rego::inputs(request);
        self.decide(&inputs)
    }
}
