//! Spore's end-to-end tests: the real `spore` binary on real guests, against the real peers a
//! user has (a registry, skopeo, containerd, Redis), started on loopback by the tests. One test
//! binary for them all: one link instead of seven. Run one group with
//! `cargo test -p spore-cli --test e2e daemon::`.

mod support;

mod bare;
mod bundle;
mod containment;
mod crash;
mod daemon;
mod edge;
mod images;
mod registry;
mod run;
mod serve;
