//! Images against the real tools people already have: a registry (distribution 2.8), skopeo
//! and containerd 1.6, all started by the tests on 127.0.0.1 and stopped by PID.

use crate::support::peers::{Containerd, Registry};
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A client with its own store and credentials file (and no Docker config of the machine's).
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        Client { dir: tempfile::tempdir().unwrap() }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn cmd(&self) -> Command {
        let mut cmd = spore();
        cmd.env("SPORE_STORE", self.store())
            .env("SPORE_AUTH_FILE", self.auth_file())
            .env("DOCKER_CONFIG", self.dir.path().join("docker"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Seen {
        self.cmd().args(args).seen()
    }

    fn ok(&self, args: &[&str]) -> Seen {
        let seen = self.run(args);
        assert_eq!(seen.code, 0, "spore {}: {seen:?}", args.join(" "));
        seen
    }

    /// Builds the hello guest into an image named `tag` (`format`: compat or artifact).
    fn build_hello(&self, tag: &str, format: &str) -> String {
        let ctx = self.dir.path().join(format!("ctx-{format}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(guest("hello"), ctx.join("hello.wasm")).unwrap();
        std::fs::write(
            ctx.join("Sporefile"),
            "FROM scratch\nCOPY hello.wasm /hello.wasm\nENTRYPOINT [\"/hello.wasm\"]\n",
        )
        .unwrap();
        let seen = self.ok(&["build", "--format", format, "-t", tag, ctx.to_str().unwrap()]);
        let digest = seen.stdout.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap();
        digest.to_owned()
    }

    fn blob_count(&self) -> usize {
        std::fs::read_dir(self.store().join("blobs/sha256")).map(|d| d.count()).unwrap_or(0)
    }
}

const HELLO: &str = "Hello from Spore!";

#[test]
fn build_push_rmi_pull_run_against_a_real_registry() {
    let reg = Registry::start(None);
    let me = Client::new();
    let image = format!("{}/demo/hello:v1", reg.addr);
    let built = me.build_hello(&image, "compat");

    let seen = me.ok(&["push", &image]);
    assert!(seen.stdout.contains(&format!("{image}@{built}")), "{seen:?}");
    assert_eq!(seen.stderr.matches(": Pushed").count(), 2, "config and layer: {seen:?}");
    // The registry has them now: a second push sends no blob.
    let seen = me.ok(&["push", &image]);
    assert_eq!(seen.stderr.matches(": Already exists").count(), 2, "{seen:?}");
    assert!(seen.stderr.contains("(0 blob(s), 0 B; 2 already there)"), "{seen:?}");

    // Gone locally: the name, then the blobs.
    me.ok(&["rmi", &image]);
    let seen = me.ok(&["image", "prune"]);
    assert!(seen.stdout.contains("Deleted 3 blob(s)"), "{seen:?}");
    assert_eq!(me.blob_count(), 0);
    let seen = me.run(&["run", "--pull", "never", &image]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains(&format!("spore pull {image}")), "says how to get it: {seen:?}");

    // `run` pulls what is missing, verifies it, and runs it.
    let seen = me.ok(&["run", &image]);
    assert_eq!(seen.stdout.trim(), HELLO, "{seen:?}");
    assert!(seen.stderr.contains(&format!("Pulled {image} ({built}; 2 blob(s)")), "{seen:?}");
    // Present now: no pull (nothing on stderr).
    let seen = me.ok(&["run", &image]);
    assert_eq!((seen.stdout.trim(), seen.stderr.as_str()), (HELLO, ""), "{seen:?}");
    // --pull always asks again; the blobs are already here.
    let seen = me.ok(&["run", "--pull", "always", &image]);
    assert!(seen.stderr.contains("0 blob(s), 0 B; 2 already here"), "{seen:?}");

    // By digest, into a second store; inspect shows what came.
    let other = Client::new();
    let pinned = format!("{}/demo/hello@{built}", reg.addr);
    other.ok(&["pull", &pinned]);
    let inspect: serde_json::Value =
        serde_json::from_str(&other.ok(&["inspect", "--type", "image", &pinned]).stdout).unwrap();
    assert_eq!(inspect["Digest"], built.as_str());
    assert_eq!((inspect["Os"].as_str(), inspect["Format"].as_str()), (Some("wasip1"), Some("compat")));
    assert_eq!(inspect["Annotations"]["module.wasm.image/variant"], "compat-smart");
    assert_eq!(inspect["Entrypoint"][0], "/hello.wasm");
    // Hello's image is far below the 100 KB goal.
    assert!(inspect["Size"].as_u64().unwrap() < 100_000, "{inspect}");

    let seen = me.run(&["pull", &format!("{}/demo/nothing:v1", reg.addr)]);
    assert_eq!(seen.code, 125);
    assert!(seen.stderr.contains("not found in") && seen.stderr.contains("manifest unknown"), "{seen:?}");
}

#[test]
fn a_pull_verifies_every_blob_and_names_nothing_of_a_bad_image() {
    let reg = Registry::start(None);
    let me = Client::new();
    let image = format!("{}/demo/hello:v1", reg.addr);
    me.build_hello(&image, "compat");
    me.ok(&["push", &image]);
    let inspect: serde_json::Value =
        serde_json::from_str(&me.ok(&["inspect", "--type", "image", &image]).stdout).unwrap();
    let layer = inspect["Layers"][0]["digest"].as_str().unwrap();

    // A blob cap below the layer's size: refused before anything is written.
    let fresh = Client::new();
    let seen = fresh.run(&["pull", "--max-blob-size", "1K", &image]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("larger than the 1024-byte limit"), "{seen:?}");
    // The refused blob is not stored; what was verified before it (manifest, config) stays
    // for prune, since a pull beside this one may have named an image that needs it.
    let stored = |digest: &str| fresh.store().join("blobs/sha256").join(digest.trim_start_matches("sha256:")).exists();
    assert!(!stored(layer), "the refused layer is not kept: {seen:?}");
    assert_eq!(fresh.blob_count(), 2, "{seen:?}");

    // The registry's copy of the layer is tampered with (same size, other bytes).
    let file = reg.blob_file(layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let seen = fresh.run(&["pull", &image]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(
        seen.stderr.contains(&format!("{layer}: the registry sent content that does not match its digest")),
        "{seen:?}"
    );
    assert!(!stored(layer), "the tampered layer is not kept: {seen:?}");
    let seen = fresh.run(&["images", "--json"]);
    assert_eq!(seen.stdout.trim(), "[]", "no image is named: {seen:?}");
    let prune = fresh.ok(&["image", "prune"]);
    assert!(prune.stdout.contains("Deleted 2 blob(s)"), "the verified ones go with a prune: {prune:?}");
    assert_eq!(fresh.blob_count(), 0);
}

#[test]
fn basic_auth_login_logout_and_docker_credentials() {
    let reg = Registry::start(Some(("alice", "s3cret")));
    let me = Client::new();
    let image = format!("{}/team/hello:v1", reg.addr);
    me.build_hello(&image, "compat");

    let seen = me.run(&["push", &image]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains(&format!("log in with `spore login {}`", reg.addr)), "{seen:?}");

    let seen = me.run(&["login", "-u", "alice", "-p", "wrong", &reg.addr]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("rejected the user name or password"), "{seen:?}");
    assert!(!me.auth_file().exists(), "nothing stored for a failed login");

    let mut login = me.cmd();
    login.args(["login", "-u", "alice", "--password-stdin", &reg.addr]).stdin(std::process::Stdio::piped());
    login.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"s3cret\n").unwrap();
    let seen = Seen::from(child.wait_with_output().unwrap());
    assert_eq!((seen.code, seen.stdout.trim()), (0, "Login Succeeded"), "{seen:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(me.auth_file()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    me.ok(&["push", &image]);
    me.ok(&["rmi", &image]);
    me.ok(&["pull", &image]);
    me.ok(&["logout", &reg.addr]);
    let seen = me.run(&["pull", &image]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("refused access"), "{seen:?}");

    // A machine where `docker login` was run: Docker's config.json is enough.
    let docker = me.dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#, reg.addr), // alice:s3cret
    )
    .unwrap();
    let seen = me.ok(&["run", "--pull", "always", &image]);
    assert_eq!(seen.stdout.trim(), HELLO, "{seen:?}");
}

#[test]
fn skopeo_reads_what_spore_pushed_and_spore_pulls_what_skopeo_pushed() {
    let reg = Registry::start(None);
    let me = Client::new();
    let image = format!("{}/demo/hello:v1", reg.addr);
    let artifact = format!("{}/demo/hello:artifact", reg.addr);
    me.build_hello(&image, "compat");
    me.build_hello(&artifact, "artifact");
    me.ok(&["push", &image]);
    me.ok(&["push", &artifact]);

    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo").args(args).output().expect("skopeo is not installed: run scripts/setup");
        assert!(out.status.success(), "skopeo {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let raw: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")]))
            .unwrap();
    assert_eq!(raw["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    assert_eq!(raw["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(raw["annotations"]["module.wasm.image/variant"], "compat-smart");
    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", "--tls-verify=false", &format!("docker://{image}")]))
            .unwrap();
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip1")));
    let raw: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{artifact}")]))
            .unwrap();
    assert_eq!(raw["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(raw["layers"][0]["mediaType"], "application/wasm");

    // skopeo copies both into an OCI layout, and pushes the compat one back from there.
    let layout = me.dir.path().join("layout");
    let oci = |tag: &str| format!("oci:{}:{tag}", layout.display());
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{image}"), &oci("v1")]);
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{artifact}"), &oci("artifact")]);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let theirs = format!("{}/other/hello:v2", reg.addr);
    skopeo(&["copy", "--dest-tls-verify=false", &oci("v1"), &format!("docker://{theirs}")]);

    let fresh = Client::new();
    fresh.ok(&["pull", &theirs]);
    assert_eq!(fresh.ok(&["run", &theirs]).stdout.trim(), HELLO);
    assert_eq!(fresh.ok(&["run", &artifact]).stdout.trim(), HELLO, "the artifact runs too");
    // And Spore loads the layout skopeo wrote.
    let seen = fresh.ok(&["load", "-i", layout.to_str().unwrap()]);
    assert_eq!(seen.stdout.matches("Loaded image").count(), 2, "{seen:?}");
}

#[test]
fn containerd_pulls_and_unpacks_the_compat_image() {
    let reg = Registry::start(None);
    let me = Client::new();
    let image = format!("{}/demo/hello:v1", reg.addr);
    let built = me.build_hello(&image, "compat");
    me.ok(&["push", &image]);

    let ctd = Containerd::start();
    let out =
        ctd.ctr(&["images", "pull", "--plain-http", "--platform", "wasip1/wasm", "--snapshotter", "native", &image]);
    assert!(
        out.status.success(),
        "ctr pull: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&ctd.ctr(&["images", "ls"]).stdout).into_owned();
    let line = list.lines().find(|l| l.starts_with(&image)).unwrap_or_else(|| panic!("not listed:\n{list}"));
    assert!(line.contains(&built) && line.contains("wasip1/wasm"), "{line}");
    // Unpacked: the snapshot holds the very wasm that was built in.
    let wasm = std::fs::read(guest("hello")).unwrap();
    let unpacked = find_files(&ctd.dir.path().join("root"), "hello.wasm");
    assert!(!unpacked.is_empty(), "no hello.wasm in containerd's snapshots");
    assert!(unpacked.iter().all(|p| std::fs::read(p).unwrap() == wasm), "{unpacked:?}");
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(find_files(&path, name));
        } else if kind.is_file() && entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_daemon_runs_an_image_it_pulls_itself() {
    let reg = Registry::start(None);
    let me = Client::new();
    let image = format!("{}/demo/hello:v1", reg.addr);
    me.build_hello(&image, "compat");
    me.ok(&["push", &image]);

    // A registry on the box is pulled from only when the operator names it: the daemon's own
    // network and logins are not a client's to point at the box's services or its LAN.
    let d = Daemon::start(&[]);
    let seen = d.run(["deploy", "--name", "hi", image.as_str()]);
    assert_eq!(seen.code, 125, "{seen:?}");
    let said = format!("its registry {} is a loopback or private address", reg.addr);
    assert!(seen.stderr.contains(&said) && seen.stderr.contains("[policy] registries"), "{seen:?}");
    let listed = spore().env("SPORE_STORE", d.dir.path().join("data/store")).args(["images"]).seen();
    assert!(!listed.stdout.contains("demo/hello"), "nothing was pulled: {listed:?}");
    drop(d);
    // Nor from a registry the operator did not list.
    let d = Daemon::start_with_config("[policy]\nregistries = [\"ghcr.io\"]\n", &[]);
    let seen = d.run(["deploy", "--name", "hi", image.as_str()]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains(&format!("add {} to [policy] registries", reg.addr)), "{seen:?}");
    drop(d);

    let d = Daemon::start_with_config(&format!("[policy]\nregistries = [\"{}\"]\n", reg.addr), &[]);
    let seen = d.run(["deploy", "--name", "hi", image.as_str()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let record = d.wait_for("hi", 10, |r| r["state"] == "exited");
    assert_eq!(record["exit"], serde_json::json!({"kind": "exited", "code": 0}), "{record}");
    let logs = d.run(["logs", "hi"]);
    assert_eq!(logs.stdout.trim(), HELLO, "{logs:?}");
    // The image went into the daemon's own store, pinned: a prune there keeps it.
    let store = d.dir.path().join("data/store");
    let prune = spore().env("SPORE_STORE", &store).args(["image", "prune"]).seen();
    assert!(prune.stdout.contains("Deleted 0 blob(s)"), "{prune:?}");
    let seen = d.run(["start", "hi"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    d.wait_for("hi", 10, |r| r["state"] == "exited");
    // Its name removed, the image stays while a sandbox uses it; the last one removed, a prune
    // frees it (the daemon's pin goes with its last sandbox).
    let in_store = |args: &[&str]| spore().env("SPORE_STORE", &store).args(args).seen();
    let rmi = in_store(&["rmi", &image]);
    assert_eq!(rmi.code, 0, "{rmi:?}");
    let prune = in_store(&["image", "prune"]);
    assert!(prune.stdout.contains("Deleted 0 blob(s)"), "pinned while used: {prune:?}");
    let seen = d.run(["rm", "hi"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let prune = in_store(&["image", "prune"]);
    assert!(prune.code == 0 && prune.stdout.contains("Deleted 3 blob(s)"), "manifest, config, layer: {prune:?}");

    // Bad references are the client's error, named.
    let seen = d.run(["deploy", "--pull", "never", &format!("{}/demo/absent:v1", reg.addr)]);
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("pull policy is never"), "{seen:?}");
    let seen = d.run(["deploy", &format!("{}/demo/absent:v1", reg.addr)]);
    assert!(seen.stderr.contains("not found in"), "{seen:?}");
}

#[test]
fn an_index_travels_whole_and_a_pull_takes_only_its_wasm_platform() {
    use spore_image::{CompatImage, ContentStore, Reference};
    let reg = Registry::start(None);
    let me = Client::new();
    let store = ContentStore::open(&me.store()).unwrap();
    let image = |entry: &str, bytes: Vec<u8>| {
        let mut image = CompatImage { os: "wasip1".into(), entrypoint: vec![entry.into()], ..Default::default() };
        image.files.insert(entry.into(), (bytes, 0o755));
        image.write(&store).unwrap()
    };
    let wasm = image("/hello.wasm", std::fs::read(guest("hello")).unwrap());
    let native = image("/hello", b"#!/bin/sh\necho native\n".to_vec());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": native.manifest.to_string(),
             "size": store.get(&native.manifest).unwrap().len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": wasm.manifest.to_string(),
             "size": store.get(&wasm.manifest).unwrap().len(), "platform": {"architecture": "wasm", "os": "wasip1"}},
        ]
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = spore_engine::Digest::of(&bytes);
    store.put(&digest, &bytes).unwrap();
    let name = format!("{}/demo/multi:v1", reg.addr);
    store.set_ref(&name.parse::<Reference>().unwrap(), digest).unwrap();

    let seen = me.ok(&["push", &name]);
    assert!(seen.stdout.contains(&digest.to_string()), "the index itself: {seen:?}");
    assert_eq!(seen.stderr.matches(": Pushed").count(), 4, "two configs, two layers: {seen:?}");

    let fresh = Client::new();
    let seen = fresh.ok(&["run", &name]);
    assert_eq!(seen.stdout.trim(), HELLO, "{seen:?}");
    let fresh_store = ContentStore::open(&fresh.store()).unwrap();
    assert!(fresh_store.has(&digest) && fresh_store.has(&wasm.manifest));
    assert!(!fresh_store.has(&native.manifest), "other platforms are not pulled");
    // Pushed on from there, the wasm manifest goes alone (the index is not whole here).
    let copy = format!("{}/demo/wasm-only:v1", reg.addr);
    fresh.ok(&["tag", &name, &copy]);
    let seen = fresh.ok(&["push", &copy]);
    assert!(seen.stdout.contains(&wasm.manifest.to_string()), "{seen:?}");
}

#[test]
fn a_failed_pull_leaves_its_blobs_for_prune_instead_of_deleting_what_others_may_use() {
    let reg = Registry::start(None);
    let me = Client::new();
    let image = format!("{}/demo/half:v1", reg.addr);
    me.build_hello(&image, "compat");
    me.ok(&["push", &image]);
    // The registry loses the image's layer: a pull stores the manifest and config, then fails.
    let inspect: serde_json::Value = serde_json::from_str(&me.ok(&["image", "inspect", &image]).stdout).unwrap();
    let layer = inspect["Layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let data = reg.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&layer[..2]).join(&layer).join("data");
    std::fs::remove_file(&data).unwrap();
    let other = Client::new();
    let seen = other.run(&["pull", &image]);
    assert_ne!(seen.code, 0, "{seen:?}");
    // What it stored stays: a pull running beside it may have found those blobs there and
    // named an image that needs them (before, they were deleted from under it).
    assert_eq!(other.blob_count(), 2, "manifest and config");
    // Nothing names them, so a prune collects them.
    let prune = other.ok(&["image", "prune"]);
    assert!(prune.stdout.contains("Deleted 2 blob(s)"), "{prune:?}");
}

/// A registry that means harm, on a loopback port: `/v2/` lets anyone in (or, with
/// `token_bomb`, sends clients to a token service of its own whose answer never ends); the
/// manifest `endless` is an answer that never ends (chunked, no length); `liar` says it is
/// 100 MB; `wide` lists 200 layers, `huge` one layer of 5 GiB, and `blob` a layer of 8 bytes
/// whose blob never ends. It counts the bytes its endless answers got out and the requests
/// for the blobs of refused images.
struct HostileRegistry {
    addr: String,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    blob_requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HostileRegistry {
    fn start(token_bomb: bool) -> HostileRegistry {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering::Relaxed;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let blob_requests = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (counted, blobs) = (sent.clone(), blob_requests.clone());
        let descriptor = |media: &str, size: u64| {
            format!(r#"{{"mediaType":"{media}","digest":"sha256:{}","size":{size}}}"#, "ab".repeat(32))
        };
        let manifest = move |layers: Vec<String>| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
                // `{}`, served.
                r#"{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#,
                layers.join(",")
            )
        };
        let wide = manifest((0..200).map(|_| descriptor("application/wasm", 8)).collect());
        let huge = manifest(vec![descriptor("application/wasm", 5 << 30)]);
        let endless_blob =
            format!(r#"{{"mediaType":"application/wasm","digest":"sha256:{}","size":8}}"#, "cd".repeat(32));
        let blob = manifest(vec![endless_blob]);
        let here = addr.clone();
        // Detached: each connection ends when the client goes, and the listener with the test.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (counted, blobs) = (counted.clone(), blobs.clone());
                let (wide, huge, blob, addr) = (wide.clone(), huge.clone(), blob.clone(), here.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap_or(0);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {}
                    let mut out = stream;
                    let answer = |out: &mut std::net::TcpStream, body: &str| {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = out.write_all(head.as_bytes()).and_then(|()| out.write_all(body.as_bytes()));
                    };
                    let endless = |out: &mut std::net::TcpStream| {
                        let _ = out.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                        );
                        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                        while out.write_all(chunk.as_bytes()).is_ok() {
                            counted.fetch_add(0x10000, Relaxed);
                        }
                    };
                    if token_bomb && path == "/v2/" {
                        let head = format!(
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"evil\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = out.write_all(head.as_bytes());
                    } else if path.starts_with("/token") || path.contains(&"cd".repeat(32)) {
                        endless(&mut out);
                    } else if path.contains("/blobs/") {
                        blobs.fetch_add(1, Relaxed);
                        if path.ends_with("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a") {
                            return answer(&mut out, "{}");
                        }
                        let _ =
                            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    } else if path.ends_with("/manifests/endless") {
                        endless(&mut out);
                    } else if path.ends_with("/manifests/liar") {
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n{");
                    } else if path.ends_with("/manifests/wide") {
                        answer(&mut out, &wide);
                    } else if path.ends_with("/manifests/huge") {
                        answer(&mut out, &huge);
                    } else if path.ends_with("/manifests/blob") {
                        answer(&mut out, &blob);
                    } else {
                        answer(&mut out, "{}");
                    }
                });
            }
        });
        HostileRegistry { addr, sent, blob_requests }
    }
}

#[test]
fn a_hostile_registry_can_neither_make_a_pull_read_without_end_nor_have_an_oversized_image_fetched() {
    use std::sync::atomic::Ordering::Relaxed;
    let me = Client::new();
    let pull = |evil: &HostileRegistry, tag: &str| {
        let mut child = me
            .cmd()
            .args(["pull", &format!("{}/evil:{tag}", evil.addr)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("spore pull {tag} was still reading after 60 s ({} bytes sent)", evil.sent.load(Relaxed));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Seen::from(child.wait_with_output().unwrap())
    };

    let evil = HostileRegistry::start(false);
    let seen = pull(&evil, "endless");
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("the limit is 4194304 bytes (read no further)"), "{seen:?}");
    // What the registry got out: the cap plus what the sockets' buffers held.
    let sent = evil.sent.load(Relaxed);
    assert!(sent < 64 << 20, "the pull read {sent} bytes of an endless manifest");

    let seen = pull(&evil, "liar");
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("a manifest of 100000000 bytes; the limit is 4194304"), "{seen:?}");

    let seen = pull(&evil, "wide");
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("its manifest lists 201 blobs; the limit is 128; nothing was pulled"), "{seen:?}");
    let seen = pull(&evil, "huge");
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("gives its blobs 5.0 GiB together; the limit is 4 GiB"), "{seen:?}");
    assert_eq!(evil.blob_requests.load(Relaxed), 0, "no blob of a refused image was asked for");

    // A blob longer than its descriptor says stops at its size.
    let before = evil.sent.load(Relaxed);
    let seen = pull(&evil, "blob");
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("but 8 were announced; nothing was stored"), "{seen:?}");
    let sent = evil.sent.load(Relaxed) - before;
    assert!(sent < 64 << 20, "the pull read {sent} bytes of an endless blob");

    // The token service a registry's challenge names is held to a cap too.
    let evil = HostileRegistry::start(true);
    let seen = pull(&evil, "any");
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("the registry's token service sent an endless answer (read no further)"), "{seen:?}");
    let sent = evil.sent.load(Relaxed);
    assert!(sent < 64 << 20, "the pull read {sent} bytes of an endless token");
    let seen = me.run(&["images", "--json"]);
    assert_eq!(seen.stdout.trim(), "[]", "nothing is named: {seen:?}");
}

/// A token registry whose bearer tokens are each good for one request, as a token that has run
/// out is for the next: it serves a wasm artifact to whoever presents the newest unused token.
#[test]
fn a_pull_renews_a_bearer_token_that_ran_out() {
    use sha2::Digest as _;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let (wasm, config) = (b"\0asm\x01\0\0\0".to_vec(), b"{}".to_vec());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.wasm.config.v0+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"{}","size":8}}]}}"#,
        sha(&config),
        sha(&wasm)
    );
    let content: Vec<(String, Vec<u8>)> = vec![
        ("/v2/app/manifests/v1".into(), manifest.into_bytes()),
        (format!("/v2/app/blobs/{}", sha(&config)), config),
        (format!("/v2/app/blobs/{}", sha(&wasm)), wasm),
    ];
    // (tokens issued, the newest one while it is unused)
    let tokens = Arc::new(Mutex::new((0u32, None::<String>)));
    let (issued, realm) = (tokens.clone(), format!("http://{addr}/token"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or(0);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut presented = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
                if let Some(token) =
                    header.strip_prefix("authorization: Bearer ").or(header.strip_prefix("Authorization: Bearer "))
                {
                    presented = Some(token.trim().to_owned());
                }
            }
            let mut out = stream;
            let reply = |out: &mut std::net::TcpStream, status: &str, extra: &str, body: &[u8]| {
                let head =
                    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = out.write_all(head.as_bytes()).and_then(|()| out.write_all(body));
            };
            let mut t = tokens.lock().unwrap();
            if path.starts_with("/token") {
                t.0 += 1;
                let token = format!("t{}", t.0);
                t.1 = Some(token.clone());
                reply(&mut out, "200 OK", "", format!(r#"{{"token":"{token}"}}"#).as_bytes());
            } else if presented.is_some() && presented == t.1 {
                t.1 = None; // used up
                match content.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        reply(&mut out, "200 OK", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n", body);
                    }
                    None => reply(&mut out, "404 Not Found", "", b""),
                }
            } else {
                let challenge = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\n");
                reply(&mut out, "401 Unauthorized", &challenge, b"");
            }
        }
    });
    let me = Client::new();
    let seen = me.run(&["pull", &format!("{addr}/app:v1")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(issued.lock().unwrap().0, 3, "one handshake for the manifest, one renewal for each blob");
    let seen = me.ok(&["images", "--json"]);
    assert!(seen.stdout.contains("app"), "{seen:?}");
}

/// The daemon's pulls keep to public addresses but for the registries named: a named registry
/// that redirects to another address of the box is not followed there.
#[test]
fn the_daemons_pulls_follow_no_redirect_to_the_box() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let target = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for mut conn in target.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    let stub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stub_addr = stub.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in stub.incoming().flatten() {
            let _ = conn.read(&mut [0u8; 4096]);
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target_addr}/v2/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    let d = Daemon::start_with_config(&format!("[policy]\nregistries = [\"{stub_addr}\"]\n"), &[]);
    let seen = d.run(["deploy", "--name", "x", &format!("{stub_addr}/demo/hello:v1")]);
    assert_ne!(seen.code, 0, "{seen:?}");
    assert!(seen.stderr.contains("a loopback or private address this daemon does not pull from"), "{seen:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was not followed");
}
