//! The wasmtime backends, native and Pulley, with artifacts compiled as the agent compiles
//! them: every engine's behaviours (`common::behaves`), and what only artifacts have.

mod common;

use common::{Backend, behaves, guest, wasi};
use spore_edge::compiled::{Compiled, compat, compiles_for, precompile};
use spore_edge::{BackendKind, EdgeError, Engine, Interrupt, Limits};

fn native() -> Backend<Compiled> {
    Backend { engine: Compiled::new(BackendKind::Native).unwrap(), prepare: |wasm| native_artifact(wasm) }
}

fn pulley() -> Backend<Compiled> {
    Backend { engine: Compiled::new(BackendKind::Pulley).unwrap(), prepare: |wasm| pulley_artifact(wasm) }
}

fn native_artifact(wasm: &[u8]) -> Vec<u8> {
    let target = Compiled::new(BackendKind::Native).unwrap().target();
    precompile(BackendKind::Native, target, wasm).unwrap()
}

fn pulley_artifact(wasm: &[u8]) -> Vec<u8> {
    let target = Compiled::new(BackendKind::Pulley).unwrap().target();
    precompile(BackendKind::Pulley, target, wasm).unwrap()
}

#[test]
fn native_behaves_as_every_engine() {
    behaves(&native());
}

#[test]
fn pulley_behaves_as_every_engine() {
    behaves(&pulley());
}

#[test]
fn an_artifact_for_another_engine_is_refused_naming_both() {
    let wasm = guest("hello");
    let native = Compiled::new(BackendKind::Native).unwrap();
    let pulley = Compiled::new(BackendKind::Pulley).unwrap();

    let err = native.load(&pulley_artifact(&wasm)).err().unwrap();
    let EdgeError::Invalid(message) = &err else { panic!("{err:?}") };
    assert!(message.contains(&native.compat()), "{message}");
    assert!(message.contains("pulley"), "{message}");

    let err = pulley.load(&native_artifact(&wasm)).err().unwrap();
    assert!(err.to_string().contains(&pulley.compat()), "{err}");

    // Plain wasm is not an artifact: the agent compiles for these backends.
    let err = native.load(&wasm).err().unwrap();
    assert!(err.to_string().contains("not a wasmtime artifact"), "{err}");

    assert_ne!(compat(BackendKind::Native, native.target()), compat(BackendKind::Pulley, pulley.target()));
}

#[test]
fn fuel_is_refused_with_what_to_use_instead() {
    let b = native();
    let limits = Limits { fuel: Some(1000), ..Limits::default() };
    let err = b.instance(&guest("hello"), wasi(&["hello"], &[]), limits, Interrupt::new()).err().unwrap();
    assert!(matches!(&err, EdgeError::Limit(m) if m.contains("cpu_ms")), "{err:?}");
}

#[test]
fn the_agent_compiles_for_every_runner_architecture_and_a_runner_refuses_another_ones() {
    let wasm = guest("hello");
    let native = Compiled::new(BackendKind::Native).unwrap();
    for target in ["aarch64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu", "x86_64-unknown-linux-gnu"] {
        assert!(compiles_for(target), "{target}");
        let artifact = precompile(BackendKind::Native, target, &wasm).unwrap();
        if target == native.target() {
            assert!(native.load(&artifact).is_ok(), "{target}");
        } else {
            let err = native.load(&artifact).err().unwrap();
            let EdgeError::Invalid(message) = &err else { panic!("{err:?}") };
            let arch = target.split('-').next().unwrap().trim_end_matches("gc");
            assert!(message.contains(arch), "{target}: {message}");
        }
    }
    assert!(!compiles_for("mips-unknown-linux-gnu"));
    let err = precompile(BackendKind::Native, "mips-unknown-linux-gnu", &wasm).err().unwrap();
    assert!(err.to_string().contains("cannot compile for mips-unknown-linux-gnu"), "{err}");
}
