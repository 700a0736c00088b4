//! What the commands that describe and start sandboxes share: the sandbox flags
//! ([`SpecArgs`]: `run`, `serve`, `deploy`), this machine's key-value stores, and the CLI's
//! words for what stopped a sandbox from starting.

use crate::flags;
use anyhow::bail;
use clap::Args;
use spore_sandbox::launch::{AppKind, LaunchError};
use spore_sandbox::{Invoke, KvStores, LimitKind, ProgramSource, SandboxError, SandboxSpec, SpecError};
use spore_serve::runtime_config;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The flags that describe a sandbox: program, arguments, environment, mounts, limits, network.
#[derive(Args)]
pub struct SpecArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to copy the host's value). Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = flags::parse_env)]
    env: Vec<(String, String)>,
    /// Read environment variables from a file of KEY=VALUE lines (# comments allowed).
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Map a host directory: HOST[:GUEST][:ro]. GUEST defaults to HOST; `ro` denies writes.
    #[arg(long = "dir", value_name = "HOST[:GUEST][:ro]", value_parser = flags::parse_dir)]
    dirs: Vec<spore_sandbox::Mount>,
    /// Linear memory ceiling, e.g. 64M, 1G.
    #[arg(long, value_name = "SIZE", value_parser = flags::parse_size)]
    memory: Option<u64>,
    /// CPU time the guest may use, e.g. 2s, 500ms (sleeping does not count).
    #[arg(long, value_name = "DURATION", value_parser = flags::parse_duration)]
    cpu_time: Option<std::time::Duration>,
    /// Wall-clock limit from start to exit, e.g. 5s, 1m.
    #[arg(long, value_name = "DURATION", value_parser = flags::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Files, sockets and other host handles the guest may hold open at once [default: 1024].
    #[arg(long, value_name = "N")]
    max_open_files: Option<usize>,
    /// Network access: none (default), allow=HOST:PORT,... (connect), listen=ADDR:PORT,...
    #[arg(long, value_name = "POLICY")]
    net: Vec<String>,
    /// Let the app send HTTP requests to SCHEME://HOST[:PORT] (`*` wildcards as Spin writes
    /// them); repeatable. Private and loopback hosts must be named exactly.
    #[arg(long = "allow-outbound", value_name = "URL")]
    allow_outbound: Vec<String>,
    /// Let the app open this key-value store (`default` is the embedded one); repeatable.
    #[arg(long = "key-value", value_name = "STORE")]
    key_value: Vec<String>,
    /// Let the app open this SQLite database (Spin's sqlite; `default` is the data dir's); repeatable.
    #[arg(long = "sqlite", value_name = "LABEL")]
    sqlite: Vec<String>,
    /// A wasi:config variable, KEY=VALUE; repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = flags::parse_var)]
    vars: Vec<(String, String)>,
    /// Call this exported function (reactors and libraries) instead of `_start`; ARGS are its
    /// parameters and its results are printed one per line.
    #[arg(long, value_name = "EXPORT")]
    invoke: Option<String>,
    /// Grant the app a device of its host (`gpio`, `uart1`, a plugin's name): it may import
    /// that device's functions. Repeatable; an edge runner's or the daemon's (docs/devices.md).
    /// A name the host does not have is refused with the names it has.
    #[arg(long = "device", value_name = "NAME")]
    devices: Vec<String>,
    /// argv[0] as the guest sees it [default: the file name, or the image's entrypoint].
    #[arg(long, value_name = "NAME")]
    argv0: Option<String>,
    /// For an image: when to fetch it from its registry.
    #[arg(long, default_value = "missing", value_name = "WHEN", value_parser = crate::store::pull_flag())]
    pub pull: spore_registry::PullPolicy,
    /// The .wasm file (core module or component, detected from its bytes), or an image
    /// reference, whose files become the sandbox's read-only `/`.
    #[arg(value_name = "FILE.wasm|IMAGE")]
    pub file: PathBuf,
    /// Arguments passed to the guest (for an image: they replace its Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl SpecArgs {
    /// Whether FILE names a wasm file rather than an image: it exists, or ends in `.wasm`.
    pub fn is_file(&self) -> bool {
        self.file.is_file() || self.file.extension().is_some_and(|e| e == "wasm")
    }

    /// The spec these flags describe, for `program`. argv\[0\] defaults to the file name
    /// for a file; an image's entrypoint supplies it otherwise.
    pub fn spec(&self, program: ProgramSource) -> anyhow::Result<SandboxSpec> {
        let argv0 = self.argv0.clone().or_else(|| {
            self.is_file().then(|| self.file.file_name().map(|f| f.to_string_lossy().into_owned())).flatten()
        });
        let mut spec = SandboxSpec { program, argv0, ..Default::default() };
        for file in &self.env_file {
            spec.env.extend(flags::read_env_file(file).map_err(anyhow::Error::msg)?);
        }
        spec.env.extend(self.env.iter().cloned());
        spec.mounts = self.dirs.clone();
        spec.limits.memory_bytes = self.memory;
        spec.limits.cpu_time_ms = self.cpu_time.map(|d| spore_types::HumanDuration(d).millis());
        spec.limits.timeout_ms = self.timeout.map(|d| spore_types::HumanDuration(d).millis());
        spec.limits.max_open_files = self.max_open_files;
        spec.capabilities.allowed_outbound_hosts = self.allow_outbound.clone();
        spec.capabilities.key_value_stores = self.key_value.clone();
        spec.capabilities.sqlite_databases = self.sqlite.clone();
        spec.capabilities.variables = self.vars.iter().cloned().collect();
        spec.capabilities.devices = self.devices.clone();
        for net in &self.net {
            flags::apply_net(&mut spec.network, net).map_err(|e| anyhow::anyhow!("--net {e}"))?;
        }
        match &self.invoke {
            Some(export) => spec.invoke = Some(Invoke { export: export.clone(), args: self.args.clone() }),
            None => spec.args = self.args.clone(),
        }
        Ok(spec)
    }

    /// The wasm bytes, with a message naming the file when it cannot be read.
    pub fn read_program(&self) -> anyhow::Result<Vec<u8>> {
        let name = self.file.display();
        match std::fs::read(&self.file) {
            Ok(bytes) => Ok(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!("{name}: no such file"),
            Err(err) => bail!("cannot read {name}: {err}"),
        }
    }
}

/// The flag that raises a limit: the CLI's words for what the library calls a spec field.
pub fn flag(limit: LimitKind) -> &'static str {
    match limit {
        LimitKind::Memory => "--memory",
        LimitKind::CpuTime => "--cpu-time",
        LimitKind::Timeout => "--timeout",
        LimitKind::OpenFiles => "--max-open-files (or the shell's ulimit -n)",
    }
}

/// A sandbox that may not be launched, with what to do about it in the CLI's terms.
pub fn launch_failed(err: LaunchError, file: &str) -> anyhow::Error {
    match err {
        LaunchError::Spec(SpecError::MountHost { host, problem }) => {
            anyhow::anyhow!("--dir {host}: {problem}; create it or fix the path")
        }
        LaunchError::Link(err) => with_fix(err, file),
        LaunchError::WrongKind { program, is: AppKind::Http, .. } => {
            anyhow::anyhow!("{program} is {}: serve it with `spore serve {file}`", AppKind::Http)
        }
        LaunchError::WrongKind { program, is, wanted: AppKind::Http, exports } => {
            let what = match is {
                AppKind::Command => "it targets the wasi:cli/command world (a command: run it with `spore run`)",
                _ => "it is a library or reactor",
            };
            anyhow::anyhow!(
                "{program} is not an HTTP app: it exports neither wasi:http/incoming-handler@0.2 (the wasi:http/proxy world) nor wasi:http/handler@0.3 (the wasi:http/service world); {what}. Its exports: {exports}"
            )
        }
        other => other.into(),
    }
}

/// A sandbox that could not start, with what to do about it in the CLI's terms.
pub fn with_fix(err: SandboxError, file: &str) -> anyhow::Error {
    let fix = match &err {
        SandboxError::MemoryBelowMinimum { minimum, .. } => format!("; raise --memory to at least {minimum}"),
        SandboxError::NoEntryPoint { .. } => "; run one with --invoke NAME".into(),
        SandboxError::HttpApp { .. } => format!(" with `spore serve {file}`"),
        SandboxError::InvokeArgs { .. } => " (--invoke EXPORT ARGS...)".into(),
        _ => String::new(),
    };
    anyhow::anyhow!("{err}{fix}")
}

/// The stores of this machine, for `run`, `serve` and `up`: key-value (the data dir's embedded
/// store) and SQLite databases (under the data dir), unless a runtime config says otherwise.
pub fn kv_stores(runtime_config: Option<&Path>) -> anyhow::Result<Arc<KvStores>> {
    let data = crate::paths::daemon_paths().1;
    let loaded = runtime_config::load(runtime_config, &data).map_err(anyhow::Error::msg)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(Arc::new(loaded.stores))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `spore run`'s sandbox flags alone, parsed as the CLI parses them.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: SpecArgs,
    }

    fn spec(args: &[&str]) -> SandboxSpec {
        let cli = Cli::try_parse_from(std::iter::once("spore").chain(args.iter().copied())).unwrap();
        cli.spec.spec(ProgramSource::Path(cli.spec.file.clone())).unwrap()
    }

    #[test]
    fn each_flag_lands_in_its_spec_field() {
        let s = spec(&["app.wasm", "a", "--b"]);
        assert_eq!((s.argv0.as_deref(), s.args.clone()), (Some("app.wasm"), vec!["a".to_owned(), "--b".to_owned()]));
        let s = spec(&["-e", "K=V", "--env", "X=1", "--argv0", "tool", "app.wasm"]);
        assert_eq!(s.env.get("K").map(String::as_str), Some("V"));
        assert_eq!(s.env.get("X").map(String::as_str), Some("1"));
        assert_eq!(s.argv0.as_deref(), Some("tool"));
        let s = spec(&["--dir", "/srv/data:/data:ro", "--dir", "/tmp", "app.wasm"]);
        assert_eq!(s.mounts.len(), 2);
        assert_eq!((s.mounts[0].guest.as_str(), s.mounts[0].read_only), ("/data", true));
        assert_eq!((s.mounts[1].guest.as_str(), s.mounts[1].read_only), ("/tmp", false));
        let s =
            spec(&["--memory", "64M", "--cpu-time", "1500ms", "--timeout", "2m", "--max-open-files", "64", "app.wasm"]);
        assert_eq!(s.limits.memory_bytes, Some(64 << 20));
        assert_eq!((s.limits.cpu_time_ms, s.limits.timeout_ms), (Some(1500), Some(120_000)));
        assert_eq!(s.limits.max_open_files, Some(64));
        let s = spec(&["--net", "allow=db.internal:5432,10.0.0.0/8", "--net", "listen=127.0.0.1:8080", "app.wasm"]);
        assert_eq!(s.network.connect.len(), 2);
        assert_eq!(s.network.listen.len(), 1);
        let s = spec(&[
            "--allow-outbound",
            "https://api.example.com",
            "--key-value",
            "default",
            "--sqlite",
            "default",
            "--var",
            "k=v",
            "app.wasm",
        ]);
        assert_eq!(s.capabilities.allowed_outbound_hosts, ["https://api.example.com"]);
        assert_eq!(s.capabilities.key_value_stores, ["default"]);
        assert_eq!(s.capabilities.sqlite_databases, ["default"]);
        assert_eq!(s.capabilities.variables.get("k").map(String::as_str), Some("v"));
        let s = spec(&["--invoke", "add", "calc.wasm", "2", "3"]);
        let invoke = s.invoke.unwrap();
        assert_eq!((invoke.export.as_str(), invoke.args), ("add", vec!["2".to_owned(), "3".to_owned()]));
        assert!(s.args.is_empty(), "arguments go to the export, not to main");
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag() {
        for args in [
            &["--memory", "lots", "app.wasm"][..],
            &["--cpu-time", "0s", "app.wasm"],
            &["-e", "=x", "app.wasm"],
            &["--var", "novalue", "app.wasm"],
        ] {
            let err = Cli::try_parse_from(std::iter::once("spore").chain(args.iter().copied())).err().unwrap();
            assert!(err.to_string().contains(args[0]), "{args:?}: {err}");
        }
        let cli = Cli::try_parse_from(["spore", "--net", "allow=nohost", "app.wasm"]).unwrap();
        let err = cli.spec.spec(ProgramSource::Path("app.wasm".into())).unwrap_err().to_string();
        assert!(err.starts_with("--net") && err.contains("nohost"), "{err}");
    }
}
