//! The shim's benchmark, side by side with runc in the same containerd 1.6 (CRI plugin on,
//! both runtimes configured), against a real registry, one machine:
//!
//! 1. `ctr run --rm` end to end: Spore's hello image with `io.containerd.spore.v1` vs a
//!    busybox `echo` with `io.containerd.runc.v2` (whole `ctr` processes, interleaved);
//! 2. pods one after another through the CRI, as a kubelet starts them: run the pod sandbox,
//!    create and start its container, wait until it has exited (its log read) — per pod, and
//!    the total; each pod is then stopped and removed (not timed).
//!
//! Run by `bench/k8s.sh`, which builds this and the shim in release; prints markdown tables.
//! Usage: `k8s_bench SHIM [PODS] [CTR_RUNS]`.

#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::cri::{Container, CriClient};
use support::peers::{Containerd, Cri, Registry};
use support::{Image, guest, pause_image, shim_dir};

/// Milliseconds: mean, p50, p99, min, max.
fn stats(mut ms: Vec<f64>) -> [f64; 5] {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    [ms.iter().sum::<f64>() / ms.len() as f64, at(0.5), at(0.99), ms[0], ms[ms.len() - 1]]
}

fn row(name: &str, ms: Vec<f64>) -> String {
    let [mean, p50, p99, min, max] = stats(ms);
    format!("| {name} | {mean:.1} | {p50:.1} | {p99:.1} | {min:.1} | {max:.1} |")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let shim = PathBuf::from(args.next().expect("usage: k8s_bench SHIM [PODS] [CTR_RUNS]"));
    let pods: usize = args.next().map_or(100, |n| n.parse().expect("PODS is a number"));
    let ctr_runs: usize = args.next().map_or(30, |n| n.parse().expect("CTR_RUNS is a number"));

    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let pause = pause_image().push(&reg, work.path());
    let hello = Image::wasm("hello", "/hello.wasm", guest("hello"), &["/hello.wasm"]).push(&reg, work.path());
    let bin = shim_dir(work.path(), &shim);
    let cri = Cri {
        sandbox_image: &pause,
        registry: &reg.addr,
        runtimes: &[("spore", "io.containerd.spore.v1"), ("runc", "io.containerd.runc.v2")],
    };
    let ctd = Containerd::start_cri(&bin, &cri);
    let mut client = CriClient::connect(&ctd.socket(), &work.path().join("pods"))
        .await
        .unwrap_or_else(|e| panic!("the CRI does not answer: {e}\n{}", ctd.log()));
    client.pull(&pause).await;
    client.pull(&hello).await;

    // 1. `ctr run`, the two runtimes interleaved; the first of each is a warm-up.
    let ctr_run = |runtime: &str, image: &str, id: &str, args: &[&str]| {
        let mut all = vec!["run", "--rm", "--runtime", runtime, image, id];
        all.extend_from_slice(args);
        let start = Instant::now();
        let out = ctd.ctr(&all);
        let took = ms(start.elapsed());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with("Hello"),
            "{id}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    let (mut spore_ctr, mut runc_ctr) = (Vec::new(), Vec::new());
    for i in 0..=ctr_runs {
        let s = ctr_run("io.containerd.spore.v1", &hello, &format!("ctr-spore-{i}"), &[]);
        let r = ctr_run("io.containerd.runc.v2", &pause, &format!("ctr-runc-{i}"), &["/bin/busybox", "echo", "Hello"]);
        if i > 0 {
            spore_ctr.push(s);
            runc_ctr.push(r);
        }
    }

    // 2. Pods through the CRI, one runtime after the other.
    let mut pod_times = Vec::new();
    let spore_app = Container { name: "app", image: &hello, ..Default::default() };
    let runc_app =
        Container { name: "app", image: &pause, command: &["/bin/busybox", "echo", "Hello"], ..Default::default() };
    for (handler, app) in [("spore", &spore_app), ("runc", &runc_app)] {
        let (mut each, started) = (Vec::new(), Instant::now());
        let mut timed = Duration::ZERO;
        for i in 0..pods {
            let t = Instant::now();
            let pod = client.run_pod(&format!("{handler}-{i}"), handler).await.unwrap_or_else(|e| panic!("{e}"));
            let id = client.start(&pod, app).await.unwrap_or_else(|e| panic!("{e}"));
            let done = client.wait(&pod, &id, Duration::from_secs(60)).await;
            let took = t.elapsed();
            assert!(done.exit_code == 0 && done.log.starts_with("Hello"), "{handler} pod {i}: {done:?}");
            timed += took;
            each.push(ms(took));
            client.remove_pod(&pod).await;
        }
        pod_times.push((handler, each, timed, started.elapsed()));
    }

    println!("`ctr run --rm` end to end, {ctr_runs} runs each (ms):\n");
    println!("| runtime | mean | p50 | p99 | min | max |\n|---|---|---|---|---|---|");
    println!("{}", row("spore shim, hello.wasm", spore_ctr));
    println!("{}", row("runc, busybox echo", runc_ctr));
    println!(
        "\n{pods} pods one after another through the CRI: pod sandbox + container started, exited, log read (ms):\n"
    );
    println!(
        "| runtime | total (timed part) | total with teardown | mean | p50 | p99 | min | max |\n|---|---|---|---|---|---|---|---|"
    );
    for (handler, each, timed, whole) in pod_times {
        let [mean, p50, p99, min, max] = stats(each);
        println!(
            "| {handler} | {:.2} s | {:.2} s | {mean:.1} | {p50:.1} | {p99:.1} | {min:.1} | {max:.1} |",
            timed.as_secs_f64(),
            whole.as_secs_f64()
        );
    }
}
