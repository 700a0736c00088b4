//! Any bytes sent as the body of a create (`POST /v1/sandboxes`) or a batch create, judged as
//! the daemon judges them before it fetches or compiles anything: parsed, the operator's
//! defaults applied, admitted by the policy, unset limits filled from the caps, the spec
//! validated, the name checked. Never a panic; and what the policy admits keeps its promises —
//! limits within the caps, stdin never the daemon's terminal or a file reopened later (a file
//! is read once, under the body limit), HTTP apps on loopback above 1023. (Where a mount's
//! host leads once resolved is judged after pinning, in the daemon: tests/daemon.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_api::model::{BatchRequest, CreateRequest, Defaults, check_name};
use spore_api::policy::{Policy, PolicySection};
use spore_spec::Input;
use std::sync::LazyLock;

/// The policy judged under: one mount root, at a fixed path so that inputs can name what is in
/// it: `data/` (a directory), `input` (a stdin file), `out` → `/etc`.
static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    let root = std::env::temp_dir().join("spore-fuzz-request");
    std::fs::create_dir_all(root.join("data")).expect("data");
    std::fs::write(root.join("input"), b"hello\n").expect("input");
    // Several fuzzing processes may get here at once: a link already made is the same link.
    let _ = std::os::unix::fs::symlink("/etc", root.join("out"));
    let root = root.canonicalize().expect("canonical");
    let toml = format!(
        "mount_roots = [{:?}]\nstdin_files = true\nmax_memory = \"32M\"\nmax_cpu_time = \"10s\"\nmax_timeout = \"1m\"\nmax_instances = 4\nmax_request_body = \"4K\"",
        root.display()
    );
    let section: PolicySection = toml::from_str(&toml).expect("section");
    Policy::from_config(&section, 64 << 20, &Defaults::default()).expect("policy")
});

fuzz_target!(|bytes: &[u8]| {
    let Some((&kind, body)) = bytes.split_first() else { return };
    let requests = match kind % 2 {
        0 => serde_json::from_slice::<CreateRequest>(body).map(|r| vec![r]),
        _ => serde_json::from_slice::<BatchRequest>(body).map(|b| vec![b.template; (b.count as usize).min(2)]),
    };
    let Ok(requests) = requests else { return };
    let policy = &*POLICY;
    for mut req in requests {
        let stdin_file = matches!(req.spec.stdio.stdin, Input::File(_));
        Defaults::default().apply(&mut req);
        if policy.admit_request(&mut req.spec).is_err() {
            continue;
        }
        policy.fill_unset(&mut req.spec.limits);
        let spec = &req.spec;
        let l = &spec.limits;
        assert!(l.memory_bytes.is_none_or(|m| m <= 32 << 20), "memory over its cap: {l:?}");
        assert!(l.cpu_time_ms.is_some_and(|c| c <= 10_000), "cpu time unset or over its cap: {l:?}");
        assert!(l.timeout_ms.is_some_and(|t| t <= 60_000), "timeout unset or over its cap: {l:?}");
        assert!(l.max_instances.is_some_and(|n| n <= 4), "instances unset or over the cap: {l:?}");
        match &spec.stdio.stdin {
            Input::Inherit | Input::File(_) => panic!("stdin admitted as {:?}", spec.stdio.stdin),
            Input::Bytes(text) => assert!(!stdin_file || text.len() <= 4096, "a stdin file over the body limit"),
            Input::Null => {}
        }
        if let Some(http) = &spec.http {
            let addr: std::net::SocketAddr = http.listen.parse().expect("admitted listen parses");
            assert!(addr.ip().is_loopback() && addr.port() >= 1024, "listen admitted on {addr}");
        }
        let _ = spec.validate();
        if let Some(name) = &req.name {
            let _ = check_name(name);
        }
    }
});
