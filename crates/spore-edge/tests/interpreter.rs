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
