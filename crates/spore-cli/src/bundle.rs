//! `spore bundle`: an image as one executable — a runtime-only `spore-runner` with the image's
//! app (compiled ahead of time for the target), its files and its settings attached to its
//! end (layout: `spore_wire::bundle`; the running side: `spore_runner::bundle`).

use crate::flags;
use anyhow::{Context, bail};
use clap::Args;
use spore_edge::compiled::{compat, compiles_for, precompile};
use spore_image::{Resolved, open_image};
use spore_types::{HumanDuration, WasmKind, human_bytes};
use spore_wire::bundle::{Bundle, File, Layout, Span, Trailer};
use spore_wire::{BackendKind, Limits, ModuleKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Make one executable of an image, to run where Spore is not installed.
///
/// The executable holds the runtime (no compiler), the image's app compiled for the target,
/// the image's files as a read-only root, and its Entrypoint, Cmd and Env. Run it as
/// `./FILE ARGS`: ARGS replace the Cmd; flags under --spore- (--spore-help) are its own.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore bundle hello -o hello && ./hello
  spore bundle --memory 64M -e MODE=edge app:1.2 -o app
  spore bundle --target aarch64-unknown-linux-gnu --runtime ./spore-runner-aarch64 app -o app-arm64")]
pub struct BundleArgs {
    /// The image (a name in the local store, pulled if missing as --pull says).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to write the executable.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The machine it is for, as a Rust target triple [default: this one].
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// The runtime to attach the app to: a spore-runner built for the target [default: the
    /// spore-runner beside spore; for another target, spore-runner-TRIPLE beside spore].
    #[arg(long, value_name = "FILE")]
    runtime: Option<PathBuf>,
    /// Set an environment variable in the bundle (KEY=VALUE, or KEY to copy the host's value),
    /// over the image's. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = flags::parse_env)]
    env: Vec<(String, String)>,
    /// Linear memory ceiling the bundle runs with unless --spore-memory says otherwise.
    #[arg(long, value_name = "SIZE", value_parser = flags::parse_size)]
    memory: Option<u64>,
    /// CPU time the bundle's app may use unless --spore-cpu-time says otherwise.
    #[arg(long, value_name = "DURATION", value_parser = flags::parse_duration)]
    cpu_time: Option<Duration>,
    /// Wall-clock limit of the bundle's app unless --spore-timeout says otherwise.
    #[arg(long, value_name = "DURATION", value_parser = flags::parse_duration)]
    timeout: Option<Duration>,
    /// When to pull the image: missing, always or never.
    #[arg(long, default_value = "missing", value_name = "WHEN", value_parser = crate::store::pull_flag())]
    pull: spore_registry::PullPolicy,
}

pub fn bundle(args: BundleArgs, store_dir: &Path, insecure: &[String]) -> anyhow::Result<i32> {
    let target = args.target.clone().unwrap_or_else(|| spore_edge::TARGET.to_string());
    // What can be refused without work is refused first: nothing is compiled or written.
    if !compiles_for(&target) {
        bail!("--target {target}: Spore compiles for x86_64, aarch64 and riscv64 (e.g. aarch64-unknown-linux-gnu)");
    }
    let (runtime_path, runtime) = runtime(args.runtime.as_deref(), &target)?;
    let store = crate::store::open_store(store_dir)?;
    let manifest = crate::store::ensure(&store, &args.image, store_dir, args.pull, insecure)?;
    let image = open_image(&store, manifest).with_context(|| args.image.clone())?;
    let (wasm, root) = image.entrypoint_wasm(&store).with_context(|| args.image.clone())?;
    let wasm_bytes = wasm.bytes().with_context(|| args.image.clone())?;
    if spore_types::detect(&wasm_bytes).ok() != Some(WasmKind::Module) {
        bail!(
            "{}: its entrypoint is a component; a bundle runs WASI preview 1 modules (the edge runtime has no \
             component model): run it with spore run, or build the app for wasm32-wasip1",
            args.image
        );
    }

    let started = Instant::now();
    eprintln!("Compiling {} for {target}…", args.image);
    let artifact = precompile(BackendKind::Native, &target, &wasm_bytes)
        .map_err(|e| anyhow::anyhow!("{}: cannot compile its app for {target}: {e}", args.image))?;
    let mut payload = artifact;
    let artifact = Span { offset: 0, len: payload.len() as u64 };
    let files = match &root {
        Some(root) => embed(root, image.entrypoint_in(root).ok().as_deref(), &mut payload)?,
        None => Vec::new(),
    };
    let entrypoint_len = u32::try_from(image.entrypoint_len).unwrap_or(u32::MAX);
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !args.env.iter().any(|(set, _)| set == k))
        .collect();
    env.extend(args.env.iter().cloned());
    let millis = |d: Option<Duration>| d.map(|d| HumanDuration(d).millis());
    let header = Bundle {
        image: args.image.clone(),
        digest: manifest.to_string(),
        kind: ModuleKind::Native,
        compat: compat(BackendKind::Native, &target),
        artifact,
        argv: image.argv.clone(),
        entrypoint_len,
        env,
        limits: Limits {
            memory_bytes: args.memory,
            cpu_ms: millis(args.cpu_time),
            wall_ms: millis(args.timeout),
            fuel: None,
        },
        files,
    };
    let layout = Layout::new(runtime.len(), &header).context("cannot encode the bundle's header")?;
    let whole: [&[u8]; 4] = [&runtime, &vec![0; layout.padding], &payload, &layout.tail];
    write_executable(&args.output, &whole)?;
    eprintln!(
        "Bundled {} ({manifest}) for {target} in {:.1?}: {} ({}: runtime {} from {}, app {}, {} file(s) {})",
        args.image,
        started.elapsed(),
        args.output.display(),
        human_bytes(whole.iter().map(|part| part.len() as u64).sum()),
        human_bytes(runtime.len() as u64),
        runtime_path.display(),
        human_bytes(artifact.len),
        header.files.iter().filter(|f| f.data.is_some()).count(),
        human_bytes(payload.len() as u64 - artifact.len),
    );
    Ok(0)
}

/// The runtime for `target`: `given`, or the runner beside `spore` (named for the target
/// unless it is this machine's). Checked to be an executable for that machine and not a
/// bundle already.
fn runtime(given: Option<&Path>, target: &str) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let native = target == spore_edge::TARGET;
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe().context("cannot find spore's own executable")?;
            exe.with_file_name(if native { "spore-runner".to_string() } else { format!("spore-runner-{target}") })
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if given.is_none() => bail!(
            "no runtime for {target}: {} ({e}); build spore-runner for it (cargo build --release \
             --manifest-path runner/Cargo.toml{}) and give it with --runtime FILE",
            path.display(),
            if native { String::new() } else { format!(" --target {target}") }
        ),
        Err(e) => bail!("--runtime {}: {e}", path.display()),
    };
    let elf_machine = (bytes.len() > 20 && bytes.starts_with(b"\x7fELF")).then(|| match bytes[5] {
        2 => u16::from_be_bytes([bytes[18], bytes[19]]),
        _ => u16::from_le_bytes([bytes[18], bytes[19]]),
    });
    let Some(machine) = elf_machine else {
        bail!("--runtime {}: not an executable (a spore-runner is an ELF file)", path.display());
    };
    if let Some(wanted) = elf_machine_of(target)
        && machine != wanted
    {
        bail!(
            "the runtime {} is for another machine (ELF machine {machine}) than {target} ({wanted}); give a \
             spore-runner built for {target} with --runtime",
            path.display()
        );
    }
    if bytes.len() >= Trailer::LEN && Trailer::parse(&bytes[bytes.len() - Trailer::LEN..]).is_some() {
        bail!("the runtime {} is a bundle already; give a plain spore-runner", path.display());
    }
    Ok((path, bytes))
}

/// The ELF machine number of a target triple's architecture, where Spore knows it.
fn elf_machine_of(target: &str) -> Option<u16> {
    match target.split('-').next()? {
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        "riscv64" | "riscv64gc" => Some(243),
        _ => None,
    }
}

/// The files under `root` (the image's unpacked root), appended to `payload`, as entries of
/// the bundle's read-only root: directories and regular files in name order, and symbolic
/// links that end at a file inside the image (resolved with the image as `/`) as copies of it.
/// `entry`, the entrypoint's wasm, is left out: the bundle holds it compiled.
fn embed(root: &Path, entry: Option<&Path>, payload: &mut Vec<u8>) -> anyhow::Result<Vec<File>> {
    let entry = entry.and_then(|e| e.strip_prefix(root).ok());
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let item = item.with_context(|| format!("reading the image's root {}", root.display()))?;
        let rel = item.path().strip_prefix(root).unwrap_or(item.path());
        let path = rel.to_str().with_context(|| format!("{}: a file name that is not UTF-8", rel.display()))?;
        let kind = item.file_type();
        let file = if kind.is_dir() {
            None
        } else if kind.is_file() {
            Some(rel.to_path_buf())
        } else if kind.is_symlink() {
            match spore_image::resolve_in_root(root, rel) {
                Resolved::Inside(to) if root.join(&to).is_file() => Some(to),
                _ => {
                    eprintln!(
                        "warning: /{path} is a link to a directory, to nothing or out of the image; it is not bundled"
                    );
                    continue;
                }
            }
        } else {
            continue;
        };
        let data = match file {
            None => None,
            Some(f) if entry.is_some_and(|e| e == f) => continue,
            Some(f) => {
                let f = root.join(f);
                let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let span = Span { offset: payload.len() as u64, len: bytes.len() as u64 };
                payload.extend_from_slice(&bytes);
                Some(span)
            }
        };
        files.push(File { path: path.to_string(), data });
    }
    Ok(files)
}

/// Writes `parts` one after another to `path` as an executable, whole or not at all: a temporary
/// file beside it, synced, then renamed over it (as `cp` and `go build -o`, an existing file is
/// replaced; a running one keeps running from its old inode). Executable by whom the umask allows.
fn write_executable(path: &Path, parts: &[&[u8]]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let written = (|| {
        let mut tmp = tempfile::Builder::new()
            .prefix(".spore-bundle")
            .permissions(std::fs::Permissions::from_mode(0o777))
            .tempfile_in(dir)?;
        for part in parts {
            tmp.write_all(part)?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        std::io::Result::Ok(())
    })();
    written.with_context(|| format!("cannot write -o {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Links are read with the image as `/`: an absolute one ends at the image's file (never
    /// the host's at the same path), one to nothing in the image, a directory or above it is
    /// left out, and the entrypoint is left out however it is reached.
    #[test]
    fn links_are_bundled_as_the_image_resolves_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/share/zoneinfo")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("usr/share/zoneinfo/UTC"), "TZif-image").unwrap();
        std::fs::write(root.join("app.wasm"), "wasm").unwrap();
        symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
        symlink("../usr/share/zoneinfo/UTC", root.join("etc/tz")).unwrap();
        symlink("/etc/passwd", root.join("etc/passwd-link")).unwrap();
        symlink("../../../../etc/hostname", root.join("etc/up")).unwrap();
        symlink("/usr", root.join("usr-link")).unwrap();
        symlink("/app.wasm", root.join("entry-link")).unwrap();

        let mut payload = Vec::new();
        let files = embed(root, Some(&root.join("app.wasm")), &mut payload).unwrap();
        let content = |path: &str| {
            let file = files.iter().find(|f| f.path == path)?;
            let span = file.data?;
            Some(
                String::from_utf8_lossy(&payload[span.offset as usize..(span.offset + span.len) as usize]).into_owned(),
            )
        };
        assert_eq!(content("etc/localtime").as_deref(), Some("TZif-image"), "{files:?}");
        assert_eq!(content("etc/tz").as_deref(), Some("TZif-image"));
        assert_eq!(content("usr/share/zoneinfo/UTC").as_deref(), Some("TZif-image"));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        for left_out in ["etc/passwd-link", "etc/up", "usr-link", "entry-link", "app.wasm"] {
            assert!(!paths.contains(&left_out), "{left_out}: {paths:?}");
        }
    }
}
