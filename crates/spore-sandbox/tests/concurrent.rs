//! The sandbox library as the daemon will use it: one pooling engine, one `Runnable` per
//! program, many sandboxes as async tasks on one runtime — and a runaway stopped alone.

use spore_engine::{Allocation, EngineConfig, PoolConfig, SporeEngine};
use spore_sandbox::{ExitStatus, LimitKind, Output, Runnable, SandboxSpec};
use std::sync::Arc;

/// Writes "hi\n" to stdout through WASI preview 1.
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Never returns, never calls the host.
const SPIN: &str = r#"(module (func (export "_start") (loop (br 0))))"#;

fn pooling_engine(instances: u32) -> SporeEngine {
    let pool = PoolConfig {
        instances,
        memories: instances,
        tables: instances,
        max_memory_bytes: 1 << 20,
        ..PoolConfig::default()
    };
    SporeEngine::new(EngineConfig { allocation: Allocation::Pooling(pool), ..EngineConfig::default() }).unwrap()
}

fn runnable(engine: &SporeEngine, wat: &str, name: &str) -> Arc<Runnable> {
    let program = engine.load(&wat::parse_str(wat).unwrap()).unwrap();
    Arc::new(Runnable::new(engine, program, name).unwrap())
}

fn piped() -> SandboxSpec {
    let mut spec = SandboxSpec::default();
    spec.stdio.stdout = Output::Pipe;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sandboxes_share_one_pooled_program() {
    let engine = pooling_engine(64);
    let hello = runnable(&engine, HELLO, "hello");
    let tasks: Vec<_> = (0..256)
        .map(|_| {
            let hello = hello.clone();
            tokio::spawn(async move { hello.run(&piped()).await.unwrap() })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let report = task.await.unwrap();
        match &report.status {
            ExitStatus::Exited { code: 0 } => {
                assert_eq!(report.stdout.as_deref(), Some(&b"hi\n"[..]));
                ok += 1;
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!(ok, 256);
}

#[tokio::test(flavor = "current_thread")]
async fn a_runaway_is_stopped_alone_and_its_neighbours_finish() {
    // One thread for everything: if the spinning guest did not yield at epochs, the
    // neighbours could never run and this test would hang instead of passing.
    let engine = pooling_engine(8);
    let spin = runnable(&engine, SPIN, "spin");
    let hello = runnable(&engine, HELLO, "hello");
    let mut limited = SandboxSpec::default();
    limited.limits.cpu_time_ms = Some(300);
    let runaway = tokio::spawn(async move { spin.run(&limited).await.unwrap() });
    let neighbours: Vec<_> = (0..4)
        .map(|_| {
            let hello = hello.clone();
            tokio::spawn(async move { hello.run(&piped()).await.unwrap() })
        })
        .collect();
    for n in neighbours {
        let report = n.await.unwrap();
        assert!(report.status.success(), "{:?}", report.status);
    }
    assert!(!runaway.is_finished(), "the neighbours finished while the runaway was still running");
    let report = runaway.await.unwrap();
    assert!(
        matches!(report.status, ExitStatus::LimitExceeded { limit: LimitKind::CpuTime, .. }),
        "{:?}",
        report.status
    );
    assert!(report.cpu_time.as_millis() >= 300, "stopped after its allowance, not before: {:?}", report.cpu_time);
}

#[tokio::test(flavor = "current_thread")]
async fn file_output_and_bytes_input() {
    let engine = pooling_engine(2);
    let hello = runnable(&engine, HELLO, "hello");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let mut spec = SandboxSpec::default();
    spec.stdio.stdout = Output::File(out.clone());
    for _ in 0..2 {
        assert!(hello.run(&spec).await.unwrap().status.success());
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hi\nhi\n", "file output appends");
}

#[tokio::test(flavor = "current_thread")]
async fn pool_exhaustion_is_an_error_not_a_crash() {
    let engine = pooling_engine(1);
    let spin = runnable(&engine, SPIN, "spin");
    let hello = runnable(&engine, HELLO, "hello");
    let mut limited = SandboxSpec::default();
    limited.limits.timeout_ms = Some(500);
    let holder = tokio::spawn(async move { spin.run(&limited).await.unwrap() });
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!holder.is_finished(), "the runaway must still hold the only slot");
    let err = hello.run(&piped()).await.unwrap_err();
    assert!(matches!(err, spore_sandbox::SandboxError::Capacity { .. }), "{err:?}");
    assert!(err.to_string().contains("no free instance slot"), "{err}");
    assert!(matches!(holder.await.unwrap().status, ExitStatus::LimitExceeded { limit: LimitKind::Timeout, .. }));
    // The slot is free again once the runaway is gone.
    assert!(hello.run(&piped()).await.unwrap().status.success());
}

#[test]
fn a_spin_interface_spore_does_not_back_fails_at_link_naming_the_import() {
    let engine = SporeEngine::new(EngineConfig::default()).unwrap();
    let component =
        wat::parse_str(r#"(component (import "spin:mqtt/mqtt@3.0.0" (instance (export "publish" (func)))))"#).unwrap();
    let program = engine.load(&component).unwrap();
    let err = Runnable::new(&engine, program, "mqtt.wasm").err().expect("linked without an mqtt host");
    let text = err.to_string();
    assert!(
        text.contains(
            "cannot link mqtt.wasm: it imports spin:mqtt/mqtt@3.0.0, an interface of Spin's that Spore does not back"
        ),
        "{text}"
    );
}
