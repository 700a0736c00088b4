//! A component's `files` and `exclude_files`, as Spin writes them, resolved against the app's
//! directory.
//!
//! Whole directories are mounted as they are (read-only, nothing copied). Single files, glob
//! patterns and exclusions cannot be preopened one by one, so a component that uses any of them
//! gets its files copied into a root of its own ([`Files::Staged`]) — what `spin up` does too.
//! Nothing outside the app's directory is ever taken, however a path, a pattern or a symlink
//! spells it: a manifest may be someone else's.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::{Component, Path, PathBuf};

/// What a component's files become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Files {
    /// Host directory → guest path, mounted read-only.
    Mounts(Vec<(PathBuf, String)>),
    /// Host file → guest path: copied into a fresh root that is mounted at `/`.
    Staged(Vec<(PathBuf, String)>),
}

impl Default for Files {
    fn default() -> Self {
        Files::Mounts(Vec::new())
    }
}

/// One `files` entry.
pub(crate) enum Entry<'a> {
    /// A path or glob pattern, relative to the app's directory; placed at the same path in the
    /// guest.
    Pattern(&'a str),
    /// A file or directory placed at `destination`.
    Map { source: &'a str, destination: &'a str },
}

/// Resolves `entries` less `exclude` (glob patterns relative to `dir`). The message says which
/// entry is wrong and why.
pub(crate) fn resolve(dir: &Path, entries: &[Entry<'_>], exclude: &[String]) -> Result<Files, String> {
    let root = std::fs::canonicalize(dir).map_err(|e| format!("the app's directory {}: {e}", dir.display()))?;
    let excluded = globs(exclude).map_err(|e| format!("exclude_files: {e}"))?;
    // Only whole directories and no exclusions: mounts.
    if exclude.is_empty() {
        let mut mounts = Vec::new();
        for entry in entries {
            let (source, destination) = match entry {
                Entry::Pattern(p) if !is_glob(p) => (*p, format!("/{}", p.trim_start_matches("./"))),
                Entry::Map { source, destination } => (*source, (*destination).to_owned()),
                Entry::Pattern(_) => break,
            };
            let host = inside(&root, dir, source)?;
            if !host.is_dir() {
                break;
            }
            mounts.push((host, guest_path(&destination)?));
        }
        if mounts.len() == entries.len() {
            return Ok(Files::Mounts(mounts));
        }
    }
    let mut staged = Vec::new();
    for entry in entries {
        match entry {
            Entry::Pattern(p) if is_glob(p) => {
                let pattern = globs(std::slice::from_ref(&(*p).to_owned()))?;
                // Walked from the pattern's literal start, not the whole app directory.
                let start: PathBuf =
                    Path::new(p).components().take_while(|c| !is_glob(&c.as_os_str().to_string_lossy())).collect();
                let base = inside(&root, dir, start.to_str().unwrap_or(""))?;
                let keep = |relative: &Path| pattern.is_match(relative) && !excluded.is_match(relative);
                for (host, relative) in walk(&root, &base, keep)? {
                    staged.push((host, format!("/{}", relative.display())));
                }
            }
            Entry::Pattern(p) => {
                place(&root, dir, p, &format!("/{}", p.trim_start_matches("./")), &excluded, &mut staged)?;
            }
            Entry::Map { source, destination } => place(&root, dir, source, destination, &excluded, &mut staged)?,
        }
    }
    Ok(Files::Staged(staged))
}

/// A file at `destination`, or a directory's files under it.
fn place(
    root: &Path,
    dir: &Path,
    source: &str,
    destination: &str,
    excluded: &GlobSet,
    staged: &mut Vec<(PathBuf, String)>,
) -> Result<(), String> {
    let destination = guest_path(destination)?;
    let host = inside(root, dir, source)?;
    if host.is_dir() {
        let top = host.strip_prefix(root).unwrap_or(&host);
        for (file, relative) in walk(root, &host, |relative| !excluded.is_match(relative))? {
            let under = relative.strip_prefix(top).unwrap_or(&relative);
            staged.push((file, format!("{}/{}", destination.trim_end_matches('/'), under.display())));
        }
    } else if host.is_file() {
        if !excluded.is_match(host.strip_prefix(root).unwrap_or(&host)) {
            staged.push((host, destination));
        }
    } else {
        return Err(format!("{source:?} does not exist in the app's directory {}", dir.display()));
    }
    Ok(())
}

/// Every file under `base` whose path relative to `root` passes `keep`, with that path.
/// Symlinks are resolved; one that leads out of `root` is refused if it would be kept.
fn walk(root: &Path, base: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(base).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(path);
        if !keep(relative) {
            continue;
        }
        let real = match entry.path_is_symlink() {
            true => std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?,
            false => path.to_path_buf(),
        };
        if !real.starts_with(root) {
            return Err(format!(
                "{} leads outside the app's directory {}; an app's files must be inside it",
                path.display(),
                root.display()
            ));
        }
        if real.is_file() {
            files.push((real, relative.to_path_buf()));
        }
    }
    Ok(files)
}

/// `source` under `dir`, refused if it leads outside (`root` is `dir` canonical).
fn inside(root: &Path, dir: &Path, source: &str) -> Result<PathBuf, String> {
    let path = dir.join(source);
    let outside = Path::new(source).is_absolute()
        || match std::fs::canonicalize(&path) {
            Ok(real) => !real.starts_with(root),
            Err(_) => Path::new(source).components().any(|c| c == Component::ParentDir),
        };
    if outside {
        return Err(format!(
            "{source:?} is outside the app's directory {}; an app's files must be inside it",
            dir.display()
        ));
    }
    std::fs::canonicalize(&path)
        .map_err(|_| format!("{source:?} does not exist in the app's directory {}", dir.display()))
}

/// A guest path: absolute, without `..`.
fn guest_path(path: &str) -> Result<String, String> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("destination {path:?} must be an absolute guest path without .."));
    }
    Ok(path.to_owned())
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        // As Spin's patterns: `*` stays within one path segment, `**` crosses them.
        let glob = GlobBuilder::new(p.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{p:?} is not a glob pattern: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["static/a.txt", "static/b.md", "static/sub/c.txt", "notes.txt", "secret.key"] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        dir
    }

    fn guest(files: &Files) -> Vec<&str> {
        match files {
            Files::Mounts(m) | Files::Staged(m) => m.iter().map(|(_, g)| g.as_str()).collect(),
        }
    }

    #[test]
    fn directories_are_mounted_and_the_rest_is_copied() {
        let dir = app();
        let d = dir.path();
        let mounts =
            resolve(d, &[Entry::Pattern("static"), Entry::Map { source: "static", destination: "/www" }], &[]).unwrap();
        assert!(matches!(mounts, Files::Mounts(_)));
        assert_eq!(guest(&mounts), ["/static", "/www"]);
        let staged = resolve(d, &[Entry::Pattern("static/**/*.txt"), Entry::Pattern("notes.txt")], &[]).unwrap();
        assert!(matches!(staged, Files::Staged(_)));
        assert_eq!(guest(&staged), ["/static/a.txt", "/static/sub/c.txt", "/notes.txt"]);
        let excluded = resolve(
            d,
            &[
                Entry::Map { source: "static", destination: "/www" },
                Entry::Map { source: "notes.txt", destination: "/n" },
            ],
            &["static/sub/**".to_owned(), "**/*.md".to_owned()],
        )
        .unwrap();
        assert_eq!(guest(&excluded), ["/www/a.txt", "/n"]);
    }

    #[test]
    fn nothing_outside_the_app_is_taken() {
        let dir = app();
        let d = dir.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), d.join("static/link")).unwrap();
        for entries in [
            vec![Entry::Pattern("../**/*")],
            vec![Entry::Map { source: "/etc", destination: "/e" }],
            vec![Entry::Pattern("static/**/*")],
            vec![Entry::Map { source: "static", destination: "/www" }, Entry::Pattern("static/*")],
        ] {
            let err = resolve(d, &entries, &[]).unwrap_err();
            assert!(err.contains("outside the app's directory"), "{err}");
        }
        let err = resolve(d, &[Entry::Map { source: "notes.txt", destination: "../x" }], &[]).unwrap_err();
        assert!(err.contains("absolute guest path"), "{err}");
        let err = resolve(d, &[Entry::Pattern("missing.txt")], &[]).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let err = resolve(d, &[Entry::Pattern("static")], &["[".to_owned()]).unwrap_err();
        assert!(err.contains("not a glob pattern"), "{err}");
    }
}
