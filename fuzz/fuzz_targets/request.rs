//! Any bytes sent as the body of a create (`POST /v1/sandboxes`) or a batch create, judged as
//! the daemon judges them before it fetches or compiles anything: parsed, the operator's
//! defaults applied, admitted by the policy, unset limits filled from the caps, the spec
//! validated, the name checked. Never a panic; and what the policy admits keeps its promises —
//! limits within the caps, stdin never the daemon's terminal or a file reopened later, HTTP
//! apps on loopback above 1023, and a mount whose host leads outside the allowed root (the
//! root holds a link to `/etc`) refused once resolved.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_api::model::{BatchRequest, CreateRequest, Defaults, check_name};
use spore_api::policy::{Policy, PolicySection};
use spore_spec::Input;
use std::path::PathBuf;
use std::sync::LazyLock;

/// The one mount root, at a fixed path so that inputs can name what is in it: `data/` (a
/// directory), `input` (a stdin file), `out` → `/etc`.
static ROOT: LazyLock<(PathBuf, Policy)> = LazyLock::new(|| {
    let root = std::env::temp_dir().join("spore-fuzz-request");
    std::fs::create_dir_all(root.join("data")).expect("data");
    std::fs::write(root.join("input"), b"hello\n").expect("input");
    if std::fs::symlink_metadata(root.join("out")).is_err() {
        std::os::unix::fs::symlink("/etc", root.join("out")).expect("out");
    }
    let root = root.canonicalize().expect("canonical");
    let toml = format!(
        "mount_roots = [{:?}]\nstdin_files = true\nmax_memory = \"32M\"\nmax_cpu_time = \"10s\"\nmax_timeout = \"1m\"\nmax_instances = 4\nmax_request_body = \"4K\"",
        root.display()
    );
    let section: PolicySection = toml::from_str(&toml).expect("section");
    let policy = Policy::from_config(&section, 64 << 20, &Defaults::default()).expect("policy");
    (root, policy)
});

fuzz_target!(|bytes: &[u8]| {
    let Some((&kind, body)) = bytes.split_first() else { return };
    let requests = match kind % 2 {
        0 => serde_json::from_slice::<CreateRequest>(body).map(|r| vec![r]),
        _ => serde_json::from_slice::<BatchRequest>(body).map(|b| vec![b.template; (b.count as usize).min(2)]),
    };
    let Ok(requests) = requests else { return };
    let (root, policy) = &*ROOT;
    for mut req in requests {
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
            Input::Bytes(text) => assert!(text.len() <= 4096),
            Input::Null => {}
        }
        if let Some(http) = &spec.http {
            let addr: std::net::SocketAddr = http.listen.parse().expect("admitted listen parses");
            assert!(addr.ip().is_loopback() && addr.port() >= 1024, "listen admitted on {addr}");
        }
        // The second judgement, once mounts are resolved: where a host leads is what counts.
        for m in &spec.mounts {
            if let Ok(real) = m.host.canonicalize() {
                let resolved = spore_spec::Mount { host: real.clone(), ..m.clone() };
                let judged = policy.check_mounts(std::slice::from_ref(&resolved));
                assert_eq!(judged.is_ok(), real.starts_with(root), "{} resolved to {}", m.host.display(), real.display());
            }
        }
        let _ = spec.validate();
        if let Some(name) = &req.name {
            let _ = check_name(name);
        }
    }
});
