//! The shim's end-to-end tests: containerd 1.6 (and its CRI plugin, driven as a kubelet
//! would) running Spore images through `containerd-shim-spore-v1`, in one test binary.
//! Run one group with `cargo test -p containerd-shim-spore --test e2e cri::`.

mod support;

mod cri;
mod ctr;
