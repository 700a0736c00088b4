//! A bundle's command line: its own flags under the reserved `--spore-` prefix, wherever they
//! are, and everything else — the app's flags included — passed to the app untouched.

use spore_types::{ByteSize, HumanDuration, env_setting};
use std::ffi::OsString;

/// The prefix no argument meant for the app may have.
pub(crate) const PREFIX: &str = "--spore-";

/// The bundle's flags, as `--spore-help` shows them.
pub(crate) const USAGE: &str = "\
flags of the bundle itself (every other argument goes to the app, replacing the image's Cmd):
  --spore-memory SIZE      linear memory ceiling, e.g. 64M, 1G [the bundle's, else 4G]
  --spore-cpu-time DUR     CPU time the app may use, e.g. 2s, 500ms [the bundle's, else none]
  --spore-timeout DUR      wall-clock limit from start to exit, e.g. 5s, 1m [the bundle's, else none]
  --spore-env KEY=VALUE    set an environment variable (KEY alone copies this shell's); repeatable
  --spore-info             describe the bundle (image, engine, files) and exit
  --spore-help             this help
Each may also be written --spore-FLAG=VALUE. Exit codes are spore run's: the app's own, 134 for
a trap, 137 over --spore-memory, 152 over --spore-cpu-time, 124 past --spore-timeout, 125 when
the bundle cannot start it.
";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub memory: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub wall_ms: Option<u64>,
    /// `--spore-env` settings, in order.
    pub env: Vec<(String, String)>,
    pub info: bool,
    pub help: bool,
    /// The app's arguments, in order.
    pub args: Vec<String>,
}

/// Parses the arguments after the program's name. `lookup` is this shell's environment, for
/// `--spore-env KEY`.
pub(crate) fn parse(
    argv: impl IntoIterator<Item = OsString>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Flags, String> {
    let mut flags = Flags::default();
    let mut argv = argv.into_iter().enumerate();
    while let Some((i, arg)) = argv.next() {
        let arg =
            arg.into_string().map_err(|a| format!("argument {} ({a:?}) is not UTF-8, which WASI needs", i + 1))?;
        let Some(flag) = arg.strip_prefix(PREFIX) else {
            flags.args.push(arg);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let mut value = || -> Result<String, String> {
            let needs = || format!("{PREFIX}{name} needs a value, e.g. {PREFIX}{name} {}", example(name));
            match inline.clone() {
                Some(v) => Ok(v),
                None => match argv.next() {
                    // Another of the bundle's flags is not a value: the value was left out.
                    Some((_, v)) if v.to_str().is_some_and(|v| v.starts_with(PREFIX)) => Err(needs()),
                    Some((j, v)) => {
                        v.into_string().map_err(|v| format!("{PREFIX}{name}: argument {} ({v:?}) is not UTF-8", j + 1))
                    }
                    None => Err(needs()),
                },
            }
        };
        match name {
            "memory" => {
                let v = value()?;
                let size = v.parse::<ByteSize>().map_err(|e| format!("{PREFIX}memory {v}: {e}"))?.bytes();
                flags.memory = Some(size);
            }
            "cpu-time" => flags.cpu_ms = Some(millis("cpu-time", &value()?)?),
            "timeout" => flags.wall_ms = Some(millis("timeout", &value()?)?),
            "env" => flags.env.push(env_setting(&value()?, &lookup).map_err(|e| format!("{PREFIX}env {e}"))?),
            "info" | "help" if inline.is_some() => return Err(format!("{PREFIX}{name} takes no value")),
            "info" => flags.info = true,
            "help" => flags.help = true,
            _ => {
                return Err(format!(
                    "{arg}: not a flag of this bundle; its flags are --spore-memory, --spore-cpu-time, \
                     --spore-timeout, --spore-env, --spore-info and --spore-help (arguments starting \
                     with {PREFIX} are the bundle's, never the app's)"
                ));
            }
        }
    }
    Ok(flags)
}

fn example(name: &str) -> &'static str {
    match name {
        "memory" => "64M",
        "env" => "KEY=VALUE",
        _ => "5s",
    }
}

/// A duration flag's value in whole milliseconds; zero is refused, as `spore run` does.
fn millis(name: &str, v: &str) -> Result<u64, String> {
    HumanDuration::limit(v).map(HumanDuration::millis).map_err(|e| format!("{PREFIX}{name} {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(args: &[&str]) -> Result<Flags, String> {
        parse(args.iter().map(OsString::from), |k| (k == "HOME").then(|| "/home/x".to_string()))
    }

    #[test]
    fn the_bundles_flags_are_taken_wherever_they_are_and_the_rest_pass_through() {
        let f =
            parse_all(&["-v", "--spore-memory", "64M", "--name=x", "--spore-timeout=2s", "--", "--spore-env", "A=1"])
                .unwrap();
        assert_eq!(f.memory, Some(64 << 20));
        assert_eq!(f.wall_ms, Some(2000));
        assert_eq!(f.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(f.args, ["-v", "--name=x", "--"]);
        let f = parse_all(&["--spore-env", "HOME", "--spore-cpu-time", "1500ms", "--spore-info"]).unwrap();
        assert_eq!(f.env, vec![("HOME".to_string(), "/home/x".to_string())]);
        assert_eq!((f.cpu_ms, f.info, f.args.len()), (Some(1500), true, 0));
    }

    #[test]
    fn a_malformed_or_unknown_reserved_flag_is_refused_by_name() {
        for (args, says) in [
            (&["--spore-memory", "lots"][..], "--spore-memory lots"),
            (&["--spore-memory"][..], "needs a value"),
            (&["--spore-timeout", "0s"][..], "zero"),
            (&["--spore-cpu-time=soon"][..], "--spore-cpu-time \"soon\" is not a duration"),
            (&["--spore-env", "--spore-info"][..], "--spore-env needs a value"),
            (&["--spore-env", "=1"][..], "KEY=VALUE"),
            (&["--spore-dir", "/x"][..], "--spore-dir: not a flag of this bundle"),
            (&["--spore-info=yes"][..], "takes no value"),
        ] {
            let err = parse_all(args).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}
