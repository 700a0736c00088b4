//! The Sporefile parser: comments, `\` continuations, case-insensitive keywords, the exec (JSON)
//! and plain forms, `KEY=VALUE` lists with quotes, and `$VAR` / `${VAR}` / `${VAR:-default}`
//! substitution from `ARG` and `ENV`, as Docker reads them.

use std::collections::BTreeMap;

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM scratch` (`None`) or `FROM image` — its layers become the base.
    From(Option<String>),
    /// `COPY [--chown=…] SRC… DEST` (`add` for `ADD`, which also unpacks local tar archives).
    Copy {
        /// Sources, relative to the build context (globs allowed).
        sources: Vec<String>,
        /// Destination in the image.
        dest: String,
        /// `ADD` rather than `COPY`.
        add: bool,
        /// `--chown` was given (accepted, with a warning: wasm images have no users).
        chown: bool,
    },
    /// `ENV KEY=VALUE…` (or the old `ENV KEY VALUE`).
    Env(Vec<(String, String)>),
    /// `ARG NAME[=DEFAULT]`.
    Arg(String, Option<String>),
    /// `WORKDIR PATH`.
    Workdir(String),
    /// `LABEL KEY=VALUE…`.
    Label(Vec<(String, String)>),
    /// `ENTRYPOINT ["…"]`.
    Entrypoint(Vec<String>),
    /// `CMD ["…"]`.
    Cmd(Vec<String>),
    /// `EXPOSE PORT[/PROTO]…` (recorded in the config).
    Expose(Vec<String>),
    /// `INIT [EXPORT]`: pre-initialise the entrypoint by running EXPORT (default
    /// `wizer.initialize`) at build time and keeping the state it leaves.
    Init(Option<String>),
}

/// An instruction and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The instruction.
    pub instruction: Instruction,
}

/// A parsed Sporefile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sporefile {
    /// Instructions in order.
    pub lines: Vec<Line>,
    /// Things accepted but worth telling (e.g. `--chown`), with their line numbers.
    pub warnings: Vec<String>,
}

/// A Sporefile that cannot be built; names the line and says why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Sporefile line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl Sporefile {
    /// Parses Sporefile text.
    pub fn parse(text: &str) -> Result<Sporefile, ParseError> {
        let mut file = Sporefile::default();
        let mut from_seen = false;
        for (number, logical) in logical_lines(text) {
            let err = |message: String| ParseError { line: number, message };
            let (keyword, rest) = match logical.split_once(char::is_whitespace) {
                Some((k, r)) => (k.to_ascii_uppercase(), r.trim()),
                None => (logical.to_ascii_uppercase(), ""),
            };
            if keyword != "ARG" && keyword != "FROM" && !from_seen {
                return Err(err(format!("{keyword} before FROM; a Sporefile starts with FROM scratch or FROM IMAGE")));
            }
            let instruction = match keyword.as_str() {
                "FROM" => {
                    if from_seen {
                        return Err(err("a second FROM: multi-stage builds are not supported; build the wasm first, then COPY it".into()));
                    }
                    from_seen = true;
                    let mut words = rest.split_whitespace();
                    let image = words.next().ok_or_else(|| err("FROM needs an image, or scratch".into()))?;
                    match (words.next().map(str::to_ascii_uppercase).as_deref(), words.next()) {
                        (None, _) | (Some("AS"), Some(_)) => {}
                        _ => return Err(err(format!("FROM {rest}: expected FROM IMAGE [AS NAME]"))),
                    }
                    Instruction::From((!image.eq_ignore_ascii_case("scratch")).then(|| image.to_owned()))
                }
                "COPY" | "ADD" => {
                    let mut args = words_or_json(rest).map_err(&err)?;
                    let mut chown = false;
                    while let Some(flag) = args.first().filter(|a| a.starts_with("--")).cloned() {
                        args.remove(0);
                        if flag.starts_with("--chown=") || flag.starts_with("--chmod=") {
                            chown = true;
                            file.warnings.push(format!("line {number}: {flag} is accepted and ignored: wasm images have no users"));
                        } else if flag.starts_with("--from=") {
                            return Err(err(format!("{keyword} --from needs multi-stage builds, which Spore does not support; COPY from the context")));
                        } else {
                            return Err(err(format!("{keyword} {flag}: unknown flag; {keyword} takes --chown")));
                        }
                    }
                    if args.len() < 2 {
                        return Err(err(format!("{keyword} needs at least one source and a destination: {keyword} SRC... DEST")));
                    }
                    if keyword == "ADD" && args.iter().any(|a| a.contains("://")) {
                        return Err(err("ADD from a URL is not supported (builds do not use the network); download it into the context and COPY it".into()));
                    }
                    let dest = args.pop().expect("two or more");
                    Instruction::Copy { sources: args, dest, add: keyword == "ADD", chown }
                }
                "ENV" => Instruction::Env(pairs(rest, true).map_err(&err)?),
                "LABEL" => Instruction::Label(pairs(rest, false).map_err(&err)?),
                "ARG" => {
                    let (name, default) = match rest.split_once('=') {
                        Some((n, d)) => (n.trim(), Some(unquote(d.trim()))),
                        None => (rest, None),
                    };
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(err("ARG takes one NAME or NAME=DEFAULT".into()));
                    }
                    Instruction::Arg(name.to_owned(), default)
                }
                "WORKDIR" => {
                    if rest.is_empty() {
                        return Err(err("WORKDIR needs a path".into()));
                    }
                    Instruction::Workdir(rest.to_owned())
                }
                "ENTRYPOINT" | "CMD" => {
                    if !rest.starts_with('[') {
                        return Err(err(format!(
                            "{keyword} in shell form needs a shell, which wasm images do not have; write the exec form, e.g. {keyword} [\"/app.wasm\"]"
                        )));
                    }
                    let argv = json_array(rest).map_err(&err)?;
                    if keyword == "ENTRYPOINT" { Instruction::Entrypoint(argv) } else { Instruction::Cmd(argv) }
                }
                "EXPOSE" => Instruction::Expose(rest.split_whitespace().map(str::to_owned).collect()),
                "INIT" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
                    [] => Instruction::Init(None),
                    [export] => Instruction::Init(Some(export.to_owned())),
                    _ => return Err(err(format!("INIT {rest}: expected INIT [EXPORT], one export name"))),
                },
                "RUN" => return Err(err("RUN needs a Linux kernel to execute commands, and a Spore build has none; do the work before the build (e.g. cargo build) and COPY the result".into())),
                "SHELL" => return Err(err("SHELL: wasm images have no shell".into())),
                "HEALTHCHECK" => return Err(err("HEALTHCHECK runs commands in the container, which needs a kernel; check health from outside (e.g. an HTTP route)".into())),
                "ONBUILD" => return Err(err("ONBUILD is not supported".into())),
                "USER" => return Err(err("USER: wasm sandboxes have no users; grant files with --dir instead".into())),
                "VOLUME" => return Err(err("VOLUME: map directories at run time with --dir instead".into())),
                "STOPSIGNAL" => return Err(err("STOPSIGNAL: WASI has no signals".into())),
                "MAINTAINER" => Instruction::Label(vec![("maintainer".into(), rest.to_owned())]),
                other => {
                    return Err(err(format!(
                        "unknown instruction {other}; a Sporefile has FROM, COPY, ADD, ENV, ARG, WORKDIR, LABEL, ENTRYPOINT, CMD, EXPOSE, INIT"
                    )));
                }
            };
            file.lines.push(Line { number, instruction });
        }
        if !from_seen {
            return Err(ParseError {
                line: 1,
                message: "no FROM; a Sporefile starts with FROM scratch or FROM IMAGE".into(),
            });
        }
        Ok(file)
    }
}

/// Joins `\` continuations and drops comments and blank lines; yields (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() && !body.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body);
        if !continues {
            out.extend(current.take().filter(|(_, t)| !t.is_empty()));
        }
    }
    out.extend(current.filter(|(_, t)| !t.is_empty()));
    out
}

fn json_array(s: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(s).map_err(|e| format!("not a JSON array of strings ({e}): {s}"))
}

fn words_or_json(s: &str) -> Result<Vec<String>, String> {
    if s.starts_with('[') { json_array(s) } else { Ok(s.split_whitespace().map(str::to_owned).collect()) }
}

fn unquote(s: &str) -> String {
    let quoted =
        s.len() >= 2 && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
    if quoted { s[1..s.len() - 1].to_owned() } else { s.to_owned() }
}

/// `KEY=VALUE KEY2="a b"` (values may be quoted), or for ENV the old `KEY VALUE` form.
fn pairs(s: &str, legacy_space_form: bool) -> Result<Vec<(String, String)>, String> {
    let first_word = s.split_whitespace().next().unwrap_or("");
    if legacy_space_form && !first_word.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace).ok_or("ENV needs KEY=VALUE")?;
        return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("expected KEY=VALUE, found {key:?}"));
        }
        let mut value = String::new();
        match chars.peek() {
            Some(&q) if q == '"' || q == '\'' => {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' if q == '"' => value.extend(chars.next()),
                        c if c == q => {
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(format!("the value of {key} has an unclosed quote"));
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key, value));
    }
    if out.is_empty() {
        return Err("expected KEY=VALUE".into());
    }
    Ok(out)
}

/// Replaces `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` from `vars`; `\$` is a
/// literal dollar. Unknown names become empty, as in Docker.
pub fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => out.push(chars.next().expect("peeked")),
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let (name, op) = match inner.find(":-").or_else(|| inner.find(":+")) {
                    Some(i) => (&inner[..i], Some((&inner[i..i + 2], &inner[i + 2..]))),
                    None => (inner.as_str(), None),
                };
                let value = vars.get(name).filter(|v| !v.is_empty());
                match (op, value) {
                    (Some((":-", default)), None) => out.push_str(default),
                    (Some((":+", alt)), Some(_)) => out.push_str(alt),
                    (Some((":+", _)), None) => {}
                    (_, v) => out.push_str(v.map_or("", String::as_str)),
                }
            }
            '$' if chars.peek().is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                out.push_str(vars.get(&name).map_or("", String::as_str));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_instruction() {
        let text = r#"
# a comment
ARG VERSION=1.0
from scratch
COPY --chown=1000 target/app.wasm /app.wasm
ADD assets/ \
    /srv/assets/
ENV GREETING="hello world" LEVEL=info
ENV LEGACY some value
WORKDIR /srv
LABEL org.opencontainers.image.version=$VERSION maintainer='me'
EXPOSE 8080 9090/udp
ENTRYPOINT ["/app.wasm"]
CMD ["--port", "8080"]
INIT
init setup
"#;
        let f = Sporefile::parse(text).unwrap();
        let got: Vec<(usize, &Instruction)> = f.lines.iter().map(|l| (l.number, &l.instruction)).collect();
        use Instruction::*;
        assert_eq!(
            got,
            vec![
                (3, &Arg("VERSION".into(), Some("1.0".into()))),
                (4, &From(None)),
                (
                    5,
                    &Copy {
                        sources: vec!["target/app.wasm".into()],
                        dest: "/app.wasm".into(),
                        add: false,
                        chown: true
                    }
                ),
                (6, &Copy { sources: vec!["assets/".into()], dest: "/srv/assets/".into(), add: true, chown: false }),
                (8, &Env(vec![("GREETING".into(), "hello world".into()), ("LEVEL".into(), "info".into())])),
                (9, &Env(vec![("LEGACY".into(), "some value".into())])),
                (10, &Workdir("/srv".into())),
                (
                    11,
                    &Label(vec![
                        ("org.opencontainers.image.version".into(), "$VERSION".into()),
                        ("maintainer".into(), "me".into())
                    ])
                ),
                (12, &Expose(vec!["8080".into(), "9090/udp".into()])),
                (13, &Entrypoint(vec!["/app.wasm".into()])),
                (14, &Cmd(vec!["--port".into(), "8080".into()])),
                (15, &Init(None)),
                (16, &Init(Some("setup".into()))),
            ]
        );
        assert_eq!(f.warnings, vec!["line 5: --chown=1000 is accepted and ignored: wasm images have no users"]);
        assert_eq!(
            Sporefile::parse("FROM ghcr.io/acme/base:1 AS base").unwrap().lines[0].instruction,
            From(Some("ghcr.io/acme/base:1".into()))
        );
    }

    #[test]
    fn refuses_what_needs_a_kernel_with_the_line_and_the_reason() {
        for (text, line, needle) in [
            ("FROM scratch\nRUN cargo build", 2, "RUN needs a Linux kernel"),
            ("FROM scratch\n\n# c\nFROB x", 4, "unknown instruction FROB"),
            ("FROM scratch\nCMD /app.wasm --port 80", 2, "exec form"),
            ("FROM scratch\nCOPY --from=build /a /b", 2, "multi-stage"),
            ("FROM scratch\nFROM scratch", 2, "second FROM"),
            ("COPY a b", 1, "before FROM"),
            ("FROM scratch\nADD https://example.com/x.wasm /x.wasm", 2, "URL"),
            ("FROM scratch\nCOPY onlyone", 2, "source and a destination"),
            ("FROM scratch\nENV A=\"unclosed", 2, "unclosed quote"),
            ("FROM scratch\nENTRYPOINT [\"/a.wasm\",]", 2, "JSON array"),
            ("FROM scratch\nUSER app", 2, "no users"),
            ("# only comments", 1, "no FROM"),
        ] {
            let err = Sporefile::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
            assert!(err.to_string().starts_with(&format!("Sporefile line {line}: ")));
        }
    }

    #[test]
    fn substitutes_like_docker() {
        let vars: BTreeMap<String, String> =
            [("V".to_owned(), "1.2".to_owned()), ("EMPTY".to_owned(), String::new())].into();
        assert_eq!(substitute("app-$V.wasm", &vars), "app-1.2.wasm");
        assert_eq!(substitute("${V}x ${NOPE:-def} ${EMPTY:-d2} ${V:+set} ${NOPE:+no}", &vars), "1.2x def d2 set ");
        assert_eq!(substitute(r"cost \$5 $NOPE!", &vars), "cost $5 !");
    }
}
