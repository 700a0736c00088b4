//! The wasmi backend: every engine's behaviours (`common::behaves`), and what only it has —
//! runs in slices of deterministic fuel.

mod common;

use common::{Backend, behaves};
use spore_edge::interpreter::Interpreter;
use spore_edge::{LimitKind, Limits, Outcome};

fn wasmi() -> Backend<Interpreter> {
    Backend { engine: Interpreter::default(), prepare: <[u8]>::to_vec }
}

#[test]
fn wasmi_behaves_as_every_engine() {
    behaves(&wasmi());
}

#[test]
fn nbody_runs_in_many_slices_to_the_same_result() {
    let (outcome, out, pauses) = wasmi().run("nbody", &["nbody", "1000"], Limits::default(), Some(10_000));
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(0), "-0.169075164\n-0.169087605\n"));
    // A thousand steps of five bodies take many slices: the run was preemptible throughout.
    assert!(pauses > 10, "{pauses} pauses");
}

#[test]
fn a_spinning_guest_pauses_at_every_slice_and_ends_at_its_fuel_budget() {
    let limits = Limits { fuel: Some(5_000_000), ..Limits::default() };
    let (outcome, out, pauses) = wasmi().run("spin", &["spin"], limits, Some(100_000));
    assert_eq!(out, "spinning\n");
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Fuel, .. }), "{outcome:?}");
    assert!((45..=50).contains(&pauses), "{pauses} pauses of 100,000 in a budget of 5,000,000");
}

#[test]
fn a_boards_bounds_hold_a_start_function_and_the_value_stack() {
    use spore_edge::interpreter::Bounds;
    use spore_edge::{EdgeError, Engine, Instance, Interrupt};
    let bounds = Bounds { start_fuel: 100_000, max_stack_bytes: 64 << 10, cached_stacks: 0 };
    let board = Backend { engine: Interpreter::new(bounds), prepare: <[u8]>::to_vec };
    // A start function that spins: refused when the instance is made, naming the bound.
    let spins = wat::parse_str(r#"(module (func $s (loop (br 0))) (start $s))"#).unwrap();
    let made = board.instance(&spins, common::wasi(&["s"], &[]), Limits::default(), Interrupt::new());
    match made {
        Err(EdgeError::Limit(m)) => assert!(m.contains("start function") && m.contains("100000"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a spinning start function was let run"),
    }
    // Recursion 500 deep with 100 locals a frame (400 KB of wasmi's stack): a host's bound
    // holds it, a board's traps it.
    let locals = "(local i64) ".repeat(100);
    let deep = wat::parse_str(format!(
        r#"(module
             (func $down (param i32) (result i32) {locals}
               (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
                 (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1)))))))
             (func (export "go") (param i32) (result i32) (call $down (local.get 0))))"#
    ))
    .unwrap();
    let host = Interpreter::default();
    for (engine, depth, fits) in [(&host, 500, true), (&board.engine, 50, true), (&board.engine, 500, false)] {
        let module = engine.load(&deep).unwrap();
        let mut run =
            engine.instantiate(&module, common::wasi(&["d"], &[]), &Limits::default(), Interrupt::new()).unwrap();
        let args = [spore_edge::Value::I32(depth)];
        let step = run.start(spore_edge::Call::Export { name: "go", args: &args }, None);
        let spore_edge::Step::Ended(outcome) = step else { panic!("{step:?}") };
        match fits {
            true => assert_eq!(outcome, Outcome::Returned(vec![spore_edge::Value::I32(depth)])),
            false => assert!(matches!(outcome, Outcome::Trapped(_)), "{outcome:?}"),
        }
    }
}
