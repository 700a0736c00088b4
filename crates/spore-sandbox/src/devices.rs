//! The host's devices for core wasm programs: plugins its operator loaded (docs/devices.md),
//! linked beside WASI preview 1 and granted per sandbox by name, as an edge runner grants them.
//! A program that imports a device's function runs only in a sandbox granted that device;
//! every start checks, so a grant the spec lost is never outlived.

use crate::state::SandboxState;
use spore_plugin::Plugin;
use spore_spec::{SandboxSpec, SpecError};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Caller, Extern, FuncType, Module, Val, ValType};

/// The devices a host has.
#[derive(Debug, Default)]
pub struct Devices {
    plugins: Vec<Arc<Plugin>>,
}

impl Devices {
    /// The devices of these plugins.
    pub fn new(plugins: Vec<Arc<Plugin>>) -> Devices {
        Devices { plugins }
    }

    /// Their names, for messages.
    fn names(&self) -> String {
        match self.plugins.is_empty() {
            true => "none".into(),
            false => self.plugins.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        }
    }

    /// Links every device's functions. A function with nothing yet (`SPORE_AGAIN`) is asked
    /// again every millisecond, the sandbox's task waiting (a kill or a timeout drops it).
    pub(crate) fn add_to_linker(&self, linker: &mut wasmtime::Linker<SandboxState>) -> wasmtime::Result<()> {
        for plugin in &self.plugins {
            for (index, f) in plugin.functions().iter().enumerate() {
                let params = f.params.iter().map(|t| match t {
                    spore_wasip1::Ty::I32 => ValType::I32,
                    spore_wasip1::Ty::I64 => ValType::I64,
                });
                let ty = FuncType::new(linker.engine(), params, [ValType::I32]);
                let plugin = plugin.clone();
                linker.func_new_async(f.module, f.name, ty, move |caller, params, results| {
                    let plugin = plugin.clone();
                    Box::new(async move { call(caller, &plugin, index, params, results).await })
                })?;
            }
        }
        Ok(())
    }

    /// Whether `spec` grants every device it names here, and every device whose functions
    /// `module` imports.
    pub(crate) fn check(&self, module: &Module, spec: &SandboxSpec) -> Result<(), SpecError> {
        let granted = &spec.capabilities.devices;
        // The common case, on every start: nothing to look at.
        if self.plugins.is_empty() && granted.is_empty() {
            return Ok(());
        }
        if let Some(missing) = granted.iter().find(|g| !self.plugins.iter().any(|p| p.name() == *g)) {
            return Err(SpecError::NoDevice { name: missing.clone(), has: self.names() });
        }
        for import in module.imports() {
            let Some(plugin) = self.plugins.iter().find(|p| p.interface() == import.module()) else { continue };
            if !granted.iter().any(|g| g == plugin.name()) {
                return Err(SpecError::Ungranted {
                    import: format!("{}::{}", import.module(), import.name()),
                    device: plugin.name().to_string(),
                });
            }
        }
        Ok(())
    }
}

async fn call(
    mut caller: Caller<'_, SandboxState>,
    plugin: &Plugin,
    index: usize,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let args: Vec<u64> = params
        .iter()
        .map(|v| match v {
            Val::I32(x) => *x as u32 as u64,
            Val::I64(x) => *x as u64,
            _ => 0,
        })
        .collect();
    loop {
        let mut none: [u8; 0] = [];
        let answer = match caller.get_export("memory").and_then(Extern::into_memory) {
            Some(memory) => plugin.call(index, memory.data_mut(&mut caller), &args),
            None => plugin.call(index, &mut none, &args),
        };
        if answer != spore_plugin::AGAIN {
            results[0] = Val::I32(answer);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
