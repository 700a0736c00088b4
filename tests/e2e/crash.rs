//! The crash campaign: clients create, start, stop and remove sandboxes through the API while
//! the daemon is SIGKILLed at random instants, again and again, restarting it each time. After
//! every restart the daemon must hold exactly what it acknowledged: every acknowledged create
//! present once, no acknowledged remove back, every sandbox's desired state as last
//! acknowledged, every sandbox desired running running, the database opening.
//!
//! `SPORE_CRASH_KILLS` sets the number of kills (default 12; `bench/crash.sh` runs 1000) and
//! `SPORE_CRASH_SEED` the random seed (printed, so a failing run can be repeated). The run
//! prints its table.

use crate::support::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the acknowledged operations say of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Running,
    Stopped,
    Gone,
}

/// The clients' shared knowledge: per name, what was last acknowledged — or `None` while an
/// operation on it is in flight or was cut off by a kill (then only the daemon knows).
#[derive(Default)]
struct Model {
    names: BTreeMap<String, Option<Known>>,
}

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default)]
struct Counts {
    acknowledged: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    resurrected: AtomicU64,
    wrong_desired: AtomicU64,
    not_running: AtomicU64,
}

/// One client: operations until `stop`, each on a name no other client is working on.
fn client(
    socket: std::path::PathBuf,
    digest: String,
    model: Arc<Mutex<Model>>,
    counts: Arc<Counts>,
    seed: u64,
    next_name: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        let choice = rng.below(10);
        // Pick the operation and its name, and mark the name in flight.
        let (name, op) = {
            let mut m = model.lock().unwrap();
            let settled: Vec<(String, Known)> = m
                .names
                .iter()
                .filter_map(|(n, k)| match k {
                    Some(k @ (Known::Running | Known::Stopped)) => Some((n.clone(), *k)),
                    _ => None,
                })
                .collect();
            if choice < 3 || settled.is_empty() {
                let name = format!("c{}", next_name.fetch_add(1, Ordering::Relaxed));
                m.names.insert(name.clone(), None);
                (name, if rng.below(4) == 0 { "create-stopped" } else { "create" })
            } else {
                let (name, known) = settled[rng.below(settled.len() as u64) as usize].clone();
                m.names.insert(name.clone(), None);
                let op = match (choice, known) {
                    (3..=5, _) => "remove",
                    (_, Known::Running) => "stop",
                    _ => "start",
                };
                (name, op)
            }
        };
        let (status, body) = match op {
            "create" | "create-stopped" => {
                let start = op == "create";
                let body = format!(
                    r#"{{"name":"{name}","start":{start},"spec":{{"program":{{"digest":"{digest}"}},"args":["3600"]}}}}"#
                );
                http(&socket, "POST", "/v1/sandboxes", Some(("application/json", body.as_bytes())))
            }
            "remove" => http(&socket, "DELETE", &format!("/v1/sandboxes/{name}?force=true"), None),
            "stop" => http(&socket, "POST", &format!("/v1/sandboxes/{name}/stop?timeout=0"), None),
            _ => http(&socket, "POST", &format!("/v1/sandboxes/{name}/start"), None),
        };
        let known = match (op, status) {
            ("create", 201) | ("start", 200) => Some(Known::Running),
            ("create-stopped", 201) | ("stop", 200) => Some(Known::Stopped),
            ("remove", 204) => Some(Known::Gone),
            // The daemon went away mid-call: the name stays unknown until the next check.
            (_, 0) => None,
            ("remove" | "stop" | "start", 404) => {
                counts.lost.fetch_add(1, Ordering::Relaxed);
                eprintln!("{op} {name}: 404 for a sandbox whose create was acknowledged: {body}");
                None
            }
            (_, status) => panic!("{op} {name}: unexpected {status}: {body}"),
        };
        if known.is_some() {
            counts.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        model.lock().unwrap().names.insert(name, known);
        if status == 0 {
            // Killed: wait for the next round.
            return;
        }
    }
}

/// Compares the restarted daemon with the model, counting what differs, then adopts the
/// daemon's view for the names nobody knew.
fn check(d: &Daemon, model: &Mutex<Model>, counts: &Counts) {
    let (status, body) = http(&d.socket(), "GET", "/v1/sandboxes", None);
    assert_eq!(status, 200, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let mut present: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for r in &list {
        let entry = present.entry(r["name"].as_str().unwrap().to_owned()).or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = r["desired"].as_str().unwrap().to_owned();
    }
    let mut m = model.lock().unwrap();
    for (name, known) in m.names.iter_mut() {
        let here = present.get(name);
        if here.is_some_and(|(n, _)| *n > 1) {
            counts.duplicated.fetch_add(1, Ordering::Relaxed);
            eprintln!("{name} is listed {} times", here.unwrap().0);
        }
        match (*known, here) {
            (Some(Known::Gone), Some(_)) => {
                counts.resurrected.fetch_add(1, Ordering::Relaxed);
                eprintln!("{name} was removed (acknowledged) and is back");
            }
            (Some(Known::Running | Known::Stopped), None) => {
                counts.lost.fetch_add(1, Ordering::Relaxed);
                eprintln!("{name} was acknowledged and is gone");
            }
            (Some(k @ (Known::Running | Known::Stopped)), Some((_, desired))) => {
                let want = if k == Known::Running { "running" } else { "stopped" };
                if desired != want {
                    counts.wrong_desired.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{name}: desired {desired}, acknowledged {want}");
                }
            }
            _ => {}
        }
        // The daemon's word settles what nobody knew (and, after a finding, what it says now).
        *known = Some(match here {
            None => Known::Gone,
            Some((_, desired)) if desired == "running" => Known::Running,
            Some(_) => Known::Stopped,
        });
    }
    m.names.retain(|_, k| *k != Some(Known::Gone));
    // Everything desired running runs again.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, _) in m.names.iter().filter(|(_, k)| **k == Some(Known::Running)) {
        loop {
            let (_, body) = http(&d.socket(), "GET", &format!("/v1/sandboxes/{name}"), None);
            let r: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if r["state"] == "running" {
                break;
            }
            if Instant::now() > deadline {
                counts.not_running.fetch_add(1, Ordering::Relaxed);
                eprintln!("{name} is desired running but {}", r["state"]);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_daemon_keeps_exactly_what_it_acknowledged_through_sigkills() {
    let kills: u64 = std::env::var("SPORE_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed: u64 = std::env::var("SPORE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash campaign: {kills} kills, seed {seed} (SPORE_CRASH_SEED to repeat)");
    let mut d = Daemon::start(&[]);
    let wasm = std::fs::read(guest("refdaemon")).unwrap();
    let digest = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&wasm)))
    };
    let (status, body) = http(&d.socket(), "PUT", &format!("/v1/programs/{digest}"), Some(("application/wasm", &wasm)));
    assert_eq!(status, 201, "{body}");
    let model = Arc::new(Mutex::new(Model::default()));
    let counts = Arc::new(Counts::default());
    let next_name = Arc::new(AtomicU64::new(0));
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|i| {
                let (socket, digest, model, counts, names, stop) =
                    (d.socket(), digest.clone(), model.clone(), counts.clone(), next_name.clone(), stop.clone());
                let seed = rng.next() ^ i;
                std::thread::spawn(move || client(socket, digest, model, counts, seed, names, stop))
            })
            .collect();
        // A random instant: early in a burst, or well into it.
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        d.spawn();
        check(&d, &model, &counts);
        // Keep the population bounded: the clients create as much as they remove, roughly.
        let live = model.lock().unwrap().names.len();
        if round % 50 == 49 {
            eprintln!("after {} kills: {live} sandboxes, {:?}", round + 1, started.elapsed());
        }
    }
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "| kills | operations acknowledged | lost | duplicated | resurrected | wrong desired state | desired running, not running | corrupt | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {kills} | {} | {} | {} | {} | {} | {} | 0 | {:.0} s |",
        c(&counts.acknowledged),
        c(&counts.lost),
        c(&counts.duplicated),
        c(&counts.resurrected),
        c(&counts.wrong_desired),
        c(&counts.not_running),
        started.elapsed().as_secs_f64()
    );
    assert!(c(&counts.acknowledged) > kills, "the clients got work done between kills");
    let failures = c(&counts.lost)
        + c(&counts.duplicated)
        + c(&counts.resurrected)
        + c(&counts.wrong_desired)
        + c(&counts.not_running);
    assert_eq!(failures, 0, "the daemon lost, duplicated, resurrected or misremembered sandboxes (seed {seed})");
}
