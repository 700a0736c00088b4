//! Drives a running `spore daemon` over its Unix socket (HTTP/1.1 keep-alive) and measures:
//!
//! * `density SOCKET PID WASM ARG STEPS` — live sandboxes at each step (e.g. 1000,10000), with
//!   the daemon's RSS, PSS and memory-map count read from /proc, per sandbox above the idle
//!   baseline;
//! * `starts SOCKET WASM ARG N CONCURRENCY` — creates per second one by one (CONCURRENCY
//!   connections in parallel) and as one batch, until all are running, with the daemon's
//!   create→running latency quantiles (launch to guest code entered) for the one-by-one creates.
//!
//! Prints markdown table rows; bench/daemon.sh adds the header and the machine line.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(socket: &str) -> Result<Conn> {
        let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| format!("connect {socket}: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    async fn call(&mut self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Bytes)> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "spore")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }
}

fn proc_kib(pid: &str, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn maps(pid: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|m| m.lines().count()).unwrap_or(0)
}

async fn upload(conn: &mut Conn, wasm: &str) -> Result<String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("{wasm}: {e}"))?;
    use sha2::Digest;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let (status, body) = conn.call(Method::PUT, &format!("/v1/programs/{digest}"), Some(bytes)).await?;
    if status >= 300 {
        return Err(format!("upload: {status} {}", String::from_utf8_lossy(&body)));
    }
    Ok(digest)
}

fn spec(digest: &str, arg: &str) -> serde_json::Value {
    serde_json::json!({ "program": { "digest": digest }, "args": [arg] })
}

async fn running(conn: &mut Conn) -> Result<u64> {
    let (_, body) = conn.call(Method::GET, "/v1/health", None).await?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v["sandboxes"]["running"].as_u64().unwrap_or(0))
}

async fn wait_running(conn: &mut Conn, target: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let n = running(conn).await?;
        if n >= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {n} of {target} running after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn latency(conn: &mut Conn) -> Result<(f64, f64)> {
    let (_, body) = conn.call(Method::GET, "/metrics", None).await?;
    let text = String::from_utf8_lossy(&body);
    let q = |q: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("spore_start_latency_seconds{{quantile=\"{q}\"}}")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((q("0.5") * 1e6, q("0.99") * 1e6))
}

async fn density(socket: &str, pid: &str, wasm: &str, arg: &str, steps: &str) -> Result<()> {
    let mut conn = Conn::open(socket).await?;
    let digest = upload(&mut conn, wasm).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (base_rss, base_pss, base_maps) =
        (proc_kib(pid, "status", "VmRSS:"), proc_kib(pid, "smaps_rollup", "Pss:"), maps(pid));
    println!(
        "| 0 (idle daemon) | {:.1} MiB | {:.1} MiB | – | – | {base_maps} | – |",
        base_rss as f64 / 1024.0,
        base_pss as f64 / 1024.0
    );
    let mut live = 0u64;
    for step in steps.split(',') {
        let target: u64 = step.parse().map_err(|_| format!("bad step {step}"))?;
        let started = Instant::now();
        while live < target {
            let count = (target - live).min(10_000);
            let body = serde_json::json!({ "template": { "name": format!("d{live}"), "spec": spec(&digest, arg) }, "count": count });
            let (status, resp) =
                conn.call(Method::POST, "/v1/sandboxes/batch", Some(body.to_string().into_bytes())).await?;
            if status != 201 {
                println!("| stopped at {live} | daemon answered {status}: {} |", String::from_utf8_lossy(&resp));
                return Ok(());
            }
            live += count;
        }
        if let Err(e) = wait_running(&mut conn, target, Duration::from_secs(600)).await {
            println!("| stopped at {target} | {e} |");
            return Ok(());
        }
        let create_secs = started.elapsed().as_secs_f64();
        // Let every guest print its first line and go to sleep before measuring.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss, pss, m) = (proc_kib(pid, "status", "VmRSS:"), proc_kib(pid, "smaps_rollup", "Pss:"), maps(pid));
        println!(
            "| {target} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} KiB | {m} | {:.0}/s |",
            rss as f64 / 1024.0,
            pss as f64 / 1024.0,
            (rss - base_rss) as f64 / target as f64,
            (pss.saturating_sub(base_pss)) as f64 / target as f64,
            (target - (live - target).min(target)) as f64 / create_secs,
        );
    }
    Ok(())
}

async fn starts(socket: &str, wasm: &str, arg: &str, n: u64, concurrency: u64) -> Result<()> {
    let mut conn = Conn::open(socket).await?;
    let digest = upload(&mut conn, wasm).await?;
    // One by one, `concurrency` connections in parallel.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let socket = socket.to_owned();
        let body = serde_json::json!({ "spec": spec(&digest, arg) }).to_string();
        let per = n / concurrency + u64::from(c < n % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&socket).await?;
            for _ in 0..per {
                let (status, resp) = conn.call(Method::POST, "/v1/sandboxes", Some(body.clone().into_bytes())).await?;
                if status != 201 {
                    return Err(format!("{status} {}", String::from_utf8_lossy(&resp)));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let acked = started.elapsed();
    wait_running(&mut conn, n, Duration::from_secs(600)).await?;
    let all = started.elapsed();
    let (p50, p99) = latency(&mut conn).await?;
    println!(
        "| one by one, {concurrency} connections | {n} | {:.2} s | {:.0}/s | {:.0}/s | {p50:.0} µs | {p99:.0} µs |",
        all.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    // One batch request.
    let started = Instant::now();
    let body = serde_json::json!({ "template": { "spec": spec(&digest, arg) }, "count": n });
    let (status, resp) = conn.call(Method::POST, "/v1/sandboxes/batch", Some(body.to_string().into_bytes())).await?;
    if status != 201 {
        return Err(format!("batch: {status} {}", String::from_utf8_lossy(&resp)));
    }
    let acked = started.elapsed();
    wait_running(&mut conn, 2 * n, Duration::from_secs(600)).await?;
    let all = started.elapsed();
    println!(
        "| one batch request | {n} | {:.2} s | {:.0}/s | {:.0}/s | (queued behind the batch) | |",
        all.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let result = match a(1) {
        "density" => density(a(2), a(3), a(4), a(5), a(6)).await,
        "starts" => starts(a(2), a(3), a(4), a(5).parse().unwrap_or(10_000), a(6).parse().unwrap_or(4)).await,
        _ => {
            Err("usage: spore-loadgen density SOCKET PID WASM ARG STEPS | starts SOCKET WASM ARG N CONCURRENCY".into())
        }
    };
    if let Err(e) = result {
        eprintln!("spore-loadgen: {e}");
        std::process::exit(1);
    }
}
