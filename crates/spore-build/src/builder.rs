//! From a Sporefile and a build context to a [`CompatImage`], ready to be written to the store.
//!
//! The context is what COPY can see: files under the context directory, minus those matched by
//! `.sporeignore` (or, failing that, `.dockerignore`; `!` re-includes). Sources may be globs;
//! none may leave the context. `FROM IMAGE` takes the base image's files and settings from the
//! local store (flattened into the new image's one layer).

use crate::sporefile::{Instruction, ParseError, Sporefile, substitute};
use globset::{Glob, GlobMatcher};
use spore_image::{CompatImage, ContentStore, Reference, open_image};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Inputs of a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Sporefile (default: `CONTEXT/Sporefile`).
    pub sporefile: PathBuf,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
}

/// What a build produced, before it is written.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The image.
    pub image: CompatImage,
    /// The entrypoint's wasm bytes (precompiled at build time).
    pub entry_wasm: Vec<u8>,
    /// The entrypoint's path in the image.
    pub entry_path: String,
    /// `INIT`: the export to pre-initialise the entrypoint with (`None`: the default one),
    /// and the Sporefile line that asked for it.
    pub init: Option<(Option<String>, usize)>,
    /// Things worth telling the user.
    pub warnings: Vec<String>,
}

/// A build that cannot proceed; names the line, file or setting and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Sporefile is wrong.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Anything else, with its message.
    #[error("{0}")]
    Other(String),
}

fn at(line: usize, message: impl std::fmt::Display) -> BuildError {
    BuildError::Other(format!("Sporefile line {line}: {message}"))
}

/// Reads the Sporefile and the context and plans the image.
pub fn plan(opts: &BuildOptions, store: &ContentStore) -> Result<Planned, BuildError> {
    let text = std::fs::read_to_string(&opts.sporefile).map_err(|e| {
        BuildError::Other(format!("cannot read {}: {e}; pass the Sporefile with -f", opts.sporefile.display()))
    })?;
    let file = Sporefile::parse(&text)?;
    let mut warnings = file.warnings.clone();
    let ignore = Ignore::load(&opts.context)?;
    let context_files = walk(&opts.context, &ignore, &mut warnings)?;

    let mut image = CompatImage::default();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut workdir = String::from("/");
    let mut used_args = std::collections::BTreeSet::new();
    let mut init = None;
    for line in &file.lines {
        let n = line.number;
        match &line.instruction {
            Instruction::From(None) => {}
            Instruction::From(Some(base)) => {
                let base = substitute(base, &vars);
                let reference: Reference = base.parse().map_err(|e| at(n, e))?;
                let manifest = store.resolve(&reference).map_err(|e| at(n, e))?.ok_or_else(|| {
                    at(n, format!("base image {reference} is not in the local store; load it first (spore load -i)"))
                })?;
                let opened = open_image(store, manifest).map_err(|e| at(n, e))?;
                let root = opened.rootfs(store).map_err(|e| at(n, e))?;
                for rel in walk(&root, &Ignore::default(), &mut warnings)? {
                    let bytes = std::fs::read(root.join(&rel)).map_err(|e| at(n, e))?;
                    image.files.insert(format!("/{}", rel.display()), (bytes, 0o644));
                }
                env = opened
                    .env
                    .iter()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                image.entrypoint = opened.argv[..opened.entrypoint_len].to_vec();
                image.cmd = opened.argv[opened.entrypoint_len..].to_vec();
                workdir = opened.working_dir.clone().unwrap_or_else(|| "/".into());
            }
            Instruction::Arg(name, default) => {
                used_args.insert(name.clone());
                if let Some(value) = opts.build_args.get(name).or(default.as_ref()) {
                    vars.insert(name.clone(), value.clone());
                }
            }
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    let v = substitute(v, &vars);
                    vars.insert(k.clone(), v.clone());
                    env.retain(|(ek, _)| ek != k);
                    env.push((k.clone(), v));
                }
            }
            Instruction::Workdir(dir) => workdir = join_abs(&workdir, &substitute(dir, &vars)),
            Instruction::Label(pairs) => {
                for (k, v) in pairs {
                    image.labels.insert(substitute(k, &vars), substitute(v, &vars));
                }
            }
            Instruction::Expose(ports) => image.exposed_ports.extend(ports.iter().map(|p| substitute(p, &vars))),
            Instruction::Entrypoint(argv) => image.entrypoint = argv.clone(),
            Instruction::Cmd(argv) => image.cmd = argv.clone(),
            Instruction::Init(export) => init = Some((export.as_ref().map(|e| substitute(e, &vars)), n)),
            Instruction::Copy { sources, dest, add, .. } => {
                let dest = join_abs(&workdir, &substitute(dest, &vars));
                let mut matched: Vec<(PathBuf, PathBuf)> = Vec::new(); // (context path, path below dest)
                for source in sources {
                    let source = substitute(source, &vars);
                    let rel = inside_context(&source).ok_or_else(|| {
                        at(
                            n,
                            format!(
                                "COPY source {source} is outside the build context; copy it into {} first",
                                opts.context.display()
                            ),
                        )
                    })?;
                    let found = resolve_source(&rel, &context_files)
                        .map_err(|e| at(n, format!("COPY source {source}: {e}")))?;
                    matched.extend(found);
                }
                let into_dir = dest.ends_with('/') || matched.len() > 1 || sources.len() > 1;
                for (from, below) in matched {
                    // ADD unpacks a local tar (or tar.gz) archive into DEST, as docker does.
                    if *add && is_archive(&opts.context.join(&from)) {
                        unpack_archive(&opts.context.join(&from), &dest, &mut image.files)
                            .map_err(|e| at(n, format!("ADD {}: {e}", from.display())))?;
                        continue;
                    }
                    let target = if into_dir || below.components().count() > 1 {
                        format!("{}/{}", dest.trim_end_matches('/'), below.display())
                    } else {
                        dest.clone()
                    };
                    let bytes = std::fs::read(opts.context.join(&from))
                        .map_err(|e| at(n, format!("{}: {e}", from.display())))?;
                    let mode = file_mode(&opts.context.join(&from));
                    image.files.insert(target.replace("//", "/"), (bytes, mode));
                }
            }
        }
    }
    for arg in opts.build_args.keys().filter(|a| !used_args.contains(*a)) {
        warnings.push(format!("--build-arg {arg} was given but the Sporefile has no ARG {arg}"));
    }
    image.env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    image.working_dir = (workdir != "/").then_some(workdir.clone());

    let entry = image
        .entrypoint
        .first()
        .or(image.cmd.first())
        .ok_or_else(|| {
            BuildError::Other(
                "the Sporefile has no ENTRYPOINT or CMD: say which wasm to run, e.g. ENTRYPOINT [\"/app.wasm\"]".into(),
            )
        })?
        .clone();
    let entry_path = join_abs(&workdir, &entry);
    let entry_wasm = image.files.get(&entry_path).map(|(bytes, _)| bytes.clone()).ok_or_else(|| {
        BuildError::Other(format!("the entrypoint {entry_path} is not in the image; COPY the wasm there"))
    })?;
    image.os = match spore_types::detect(&entry_wasm) {
        Ok(spore_types::WasmKind::Module) => "wasip1".into(),
        Ok(spore_types::WasmKind::Component) => "wasip2".into(),
        Err(e) => return Err(BuildError::Other(format!("the entrypoint {entry_path}: {e}"))),
    };
    Ok(Planned { image, entry_wasm, entry_path, init, warnings })
}

/// Writes `image`'s files under `dir`, as the image's root would hold them (for an init run
/// at build time). Image paths are absolute and normalised by the build; one that is not is
/// refused rather than written elsewhere.
pub fn write_root(image: &CompatImage, dir: &Path) -> std::io::Result<()> {
    for (path, (bytes, mode)) in &image.files {
        let rel = Path::new(path.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(std::io::Error::other(format!("image path {path} is not a plain path")));
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode & 0o777))?;
    }
    Ok(())
}

/// `path` against `base` (both image paths), normalised, absolute.
/// Whether `path` is a tar archive, plain or gzipped (`ustar` at offset 257 of the tar
/// stream); ADD copies other files as they are.
fn is_archive(path: &Path) -> bool {
    archive_head(path).is_some()
}

fn archive_head(path: &Path) -> Option<()> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    let is_tar = |b: &[u8]| b.len() >= 262 && &b[257..262] == b"ustar";
    if head[..n].starts_with(&[0x1f, 0x8b]) {
        let mut inner = [0u8; 512];
        let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(path).ok()?);
        let mut got = 0;
        while got < inner.len() {
            match gz.read(&mut inner[got..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k,
            }
        }
        return is_tar(&inner[..got]).then_some(());
    }
    is_tar(&head[..n]).then_some(())
}

/// Unpacks an archive (refusing entries that escape, links and devices, as for image layers)
/// and adds its regular files under `dest`.
fn unpack_archive(path: &Path, dest: &str, files: &mut BTreeMap<String, (Vec<u8>, u32)>) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    spore_image::extract_layer(std::io::BufReader::new(file), tmp.path()).map_err(|e| e.to_string())?;
    let mut todo = vec![tmp.path().to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            let rel = entry.path().strip_prefix(tmp.path()).expect("inside").to_path_buf();
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
                let target = format!("{}/{}", dest.trim_end_matches('/'), rel.display());
                files.insert(target, (bytes, file_mode(&entry.path())));
            } else {
                return Err(format!(
                    "the archive holds {}, which is not a regular file; Spore images hold files and directories only",
                    rel.display()
                ));
            }
        }
    }
    Ok(())
}

fn join_abs(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { PathBuf::from(path) } else { Path::new(base).join(path) };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let trailing = if path.ends_with('/') && !parts.is_empty() { "/" } else { "" };
    format!("/{}{trailing}", parts.join("/"))
}

/// A COPY source as a context-relative path, if it stays inside the context.
fn inside_context(source: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(source).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The context files a source names: a glob, a file, or a directory (all files below it).
fn resolve_source(rel: &Path, files: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let text = rel.to_string_lossy();
    if text.is_empty() {
        return Ok(files.iter().map(|f| (f.clone(), f.clone())).collect());
    }
    if text.contains(['*', '?', '[']) {
        let glob = Glob::new(&text).map_err(|e| e.to_string())?.compile_matcher();
        let found: Vec<_> = files
            .iter()
            .filter(|f| glob.is_match(f))
            .map(|f| (f.clone(), PathBuf::from(f.file_name().unwrap_or_default())))
            .collect();
        return if found.is_empty() { Err("matches no file in the build context".into()) } else { Ok(found) };
    }
    if files.iter().any(|f| f == rel) {
        return Ok(vec![(rel.to_path_buf(), PathBuf::from(rel.file_name().unwrap_or_default()))]);
    }
    let below: Vec<_> =
        files.iter().filter_map(|f| f.strip_prefix(rel).ok().map(|b| (f.clone(), b.to_path_buf()))).collect();
    if below.is_empty() {
        Err("no such file or directory in the build context (or it is ignored)".into())
    } else {
        Ok(below)
    }
}

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| if m.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 }).unwrap_or(0o644)
}

/// `.sporeignore` (or `.dockerignore`) patterns: the last match wins, `!` re-includes.
#[derive(Default)]
struct Ignore(Vec<(GlobMatcher, bool)>);

impl Ignore {
    fn load(context: &Path) -> Result<Ignore, BuildError> {
        let Some((name, text)) = [".sporeignore", ".dockerignore"]
            .iter()
            .find_map(|n| std::fs::read_to_string(context.join(n)).ok().map(|t| (*n, t)))
        else {
            return Ok(Ignore::default());
        };
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
            let glob = Glob::new(pattern)
                .map_err(|e| BuildError::Other(format!("{name} line {}: {e}", i + 1)))?
                .compile_matcher();
            patterns.push((glob, negate));
        }
        Ok(Ignore(patterns))
    }

    /// Whether `rel` (or a directory above it) is ignored.
    fn ignores(&self, rel: &Path) -> bool {
        let mut ignored = false;
        for (glob, negate) in &self.0 {
            if rel.ancestors().filter(|a| !a.as_os_str().is_empty()).any(|a| glob.is_match(a)) {
                ignored = !negate;
            }
        }
        ignored
    }
}

/// Every regular file under `root`, relative, sorted; symlinks are skipped with a warning.
fn walk(root: &Path, ignore: &Ignore, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>, BuildError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .map_err(|e| BuildError::Other(format!("build context {}: {e}", root.join(&dir).display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::Other(e.to_string()))?;
            let rel = dir.join(entry.file_name());
            if ignore.ignores(&rel) {
                continue;
            }
            let kind = entry.file_type().map_err(|e| BuildError::Other(e.to_string()))?;
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                out.push(rel);
            } else if kind.is_symlink() {
                warnings.push(format!("{} is a symlink and was left out of the context", rel.display()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn context(files: &[(&str, &[u8])], sporefile: &str) -> (tempfile::TempDir, BuildOptions, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        for (path, bytes) in files {
            let p = ctx.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Sporefile"), sporefile).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let opts = BuildOptions { context: ctx.clone(), sporefile: ctx.join("Sporefile"), build_args: BTreeMap::new() };
        (dir, opts, store)
    }

    #[test]
    fn builds_files_settings_and_substitutions() {
        let (_d, mut opts, store) = context(
            &[
                ("target/app.wasm", WASM),
                ("static/index.html", b"<h1>"),
                ("static/css/a.css", b"a{}"),
                ("notes.md", b"x"),
                ("secret.key", b"k"),
            ],
            "ARG VERSION=0.1\nFROM scratch\nWORKDIR /srv\nCOPY target/*.wasm /bin/\nCOPY static web/\nENV V=$VERSION\nLABEL version=${VERSION}\nEXPOSE 8080\nENTRYPOINT [\"/bin/app.wasm\"]\nCMD [\"--port\", \"8080\"]\n",
        );
        std::fs::write(opts.context.join(".sporeignore"), "*.key\nnotes.md\n").unwrap();
        opts.build_args.insert("VERSION".into(), "2.0".into());
        let planned = plan(&opts, &store).unwrap();
        let files: Vec<&str> = planned.image.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["/bin/app.wasm", "/srv/web/css/a.css", "/srv/web/index.html"], "ignored files stay out");
        assert_eq!(planned.image.env, ["V=2.0"]);
        assert_eq!(planned.image.labels["version"], "2.0");
        assert_eq!(planned.image.working_dir.as_deref(), Some("/srv"));
        assert_eq!(planned.image.os, "wasip1");
        assert_eq!(planned.entry_wasm, WASM);
    }

    /// A tar(.gz) of `entries` (path, bytes; `None` bytes: a symlink to /etc/passwd).
    fn tarball(entries: &[(&str, Option<&[u8]>)], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut h = tar::Header::new_ustar();
            match bytes {
                Some(bytes) => {
                    h.set_size(bytes.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append_data(&mut h, path, *bytes).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, "/etc/passwd").unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn add_unpacks_local_archives_and_copy_does_not() {
        let plain = tarball(&[("conf/a.toml", Some(b"a = 1")), ("b.txt", Some(b"b"))], false);
        let gz = tarball(&[("www/index.html", Some(b"<h1>"))], true);
        let (_d, opts, store) = context(
            &[("app.wasm", WASM), ("site.tar", &plain), ("www.tar.gz", &gz), ("raw.tar", &plain)],
            "FROM scratch\nADD site.tar /etc/app/\nADD www.tar.gz /\nCOPY raw.tar /raw.tar\nADD app.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n",
        );
        let planned = plan(&opts, &store).unwrap();
        let files: Vec<&str> = planned.image.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["/app.wasm", "/etc/app/b.txt", "/etc/app/conf/a.toml", "/raw.tar", "/www/index.html"]);
        assert_eq!(planned.image.files["/etc/app/conf/a.toml"].0, b"a = 1");
        assert_eq!(planned.image.files["/raw.tar"].0, plain, "COPY keeps an archive whole");

        let evil = tarball(&[("ok.txt", Some(b"x")), ("link", None)], false);
        let (_d, opts, store) =
            context(&[("app.wasm", WASM), ("evil.tar", &evil)], "FROM scratch\nADD evil.tar /\nCOPY app.wasm /\n");
        let err = plan(&opts, &store).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("ADD evil.tar") && err.contains("link"), "{err}");
    }

    #[test]
    fn bad_sources_and_entrypoints_name_the_line() {
        for (sporefile, needle) in [
            (
                "FROM scratch\nCOPY ../outside /x\nENTRYPOINT [\"/x\"]",
                "line 2: COPY source ../outside is outside the build context",
            ),
            (
                "FROM scratch\nCOPY missing.wasm /x\nENTRYPOINT [\"/x\"]",
                "line 2: COPY source missing.wasm: no such file",
            ),
            ("FROM scratch\nCOPY *.nothing /x/\nENTRYPOINT [\"/x\"]", "matches no file"),
            ("FROM scratch\nCOPY app.wasm /app.wasm", "no ENTRYPOINT or CMD"),
            ("FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/other.wasm\"]", "/other.wasm is not in the image"),
            ("FROM scratch\nCOPY notes.md /n\nENTRYPOINT [\"/n\"]", "not a WebAssembly binary"),
            (
                "FROM base:1\nENTRYPOINT [\"/x\"]",
                "line 1: base image docker.io/library/base:1 is not in the local store",
            ),
        ] {
            let (_d, opts, store) = context(&[("app.wasm", WASM), ("notes.md", b"text")], sporefile);
            let err = plan(&opts, &store).unwrap_err().to_string();
            assert!(err.contains(needle), "{sporefile:?}: {err}");
        }
    }
}
