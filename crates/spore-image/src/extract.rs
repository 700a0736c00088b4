//! Unpacking layers (tar, optionally gzip) into an image's root without letting them reach
//! outside it, grow without bound, or leave what an upper layer deleted.
//!
//! Each entry's path is normalised and checked before anything is written: absolute paths and
//! `..` are refused; symlinks and hard links must resolve inside the root, and an absolute link
//! target means the image's root, as it will inside the sandbox — it is written relative, so it
//! resolves there under WASI too; no entry may be written *through* a symlink an earlier entry
//! created; device files and FIFOs are refused. OCI whiteouts are applied: `.wh.NAME` deletes
//! `NAME` from the layers below, `.wh..wh..opq` empties its directory of them. Once all layers
//! are in, every symlink is resolved through the links it meets ([`Unpacker::finish`]), since
//! a link may only escape by way of another. The bytes and entries written are capped
//! ([`ExtractLimits`]), so a gzip bomb stops at the cap. Errors name the entry, so a bad layer
//! is diagnosable from the message alone.

use flate2::read::GzDecoder;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

/// The most an image's layers may write together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Bytes of file contents.
    pub max_bytes: u64,
    /// Entries (files, directories, links, whiteouts).
    pub max_entries: u64,
}

impl ExtractLimits {
    /// Room for any wasm app's files (an interpreter's whole library is tens of MB and tens of
    /// thousands of files), far below what would fill a disk or its inodes.
    pub const DEFAULT: ExtractLimits = ExtractLimits { max_bytes: 4 << 30, max_entries: 1_000_000 };
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Why a layer was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Absolute path or `..` reaching above the root.
    #[error("layer entry {entry:?} points outside the image root; the layer was refused")]
    Escapes {
        /// The entry's path as written in the archive.
        entry: String,
    },
    /// A symlink or hard link whose target resolves outside the root.
    #[error("layer entry {entry:?} links to {target:?}, outside the image root; the layer was refused")]
    LinkEscapes {
        /// The link's path.
        entry: String,
        /// Its target as written.
        target: String,
    },
    /// An entry that would be written through a symlink made by an earlier entry.
    #[error("layer entry {entry:?} would be written through the symlink {link:?}; the layer was refused")]
    ThroughSymlink {
        /// The entry's path.
        entry: String,
        /// The symlink on its way.
        link: String,
    },
    /// Device files, FIFOs and the like.
    #[error("layer entry {entry:?} is a {kind}, which wasm images cannot contain; the layer was refused")]
    Special {
        /// The entry's path.
        entry: String,
        /// What it is.
        kind: &'static str,
    },
    /// The layers would write more than the limits allow.
    #[error("the image's layers hold more than {limit} {what}; the image was refused")]
    TooLarge {
        /// "bytes" or "entries".
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// Not a readable tar (or gzip) stream.
    #[error("layer is not a valid tar archive: {0}")]
    Corrupt(String),
    /// Disk trouble while writing an entry.
    #[error("layer entry {entry:?}: {source}")]
    Io {
        /// The entry's path.
        entry: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Unpacks a single tar or tar+gzip archive into `dest` (created if needed), under the
/// default limits. Returns the number of entries written.
pub fn extract_layer(reader: impl Read, dest: &Path) -> Result<u64, ExtractError> {
    let mut unpacker = Unpacker::new(dest, ExtractLimits::DEFAULT)?;
    let written = unpacker.layer(reader)?;
    unpacker.finish()?;
    Ok(written)
}

/// Unpacks an image's layers, lowest first, into one root.
pub struct Unpacker {
    dest: PathBuf,
    limits: ExtractLimits,
    bytes: u64,
    entries: u64,
}

impl Unpacker {
    /// An unpacker into `dest` (created if needed).
    pub fn new(dest: &Path, limits: ExtractLimits) -> Result<Self, ExtractError> {
        std::fs::create_dir_all(dest).map_err(|source| ExtractError::Io { entry: ".".into(), source })?;
        Ok(Unpacker { dest: dest.to_owned(), limits, bytes: 0, entries: 0 })
    }

    /// Unpacks the next layer over the ones before it. Returns the number of entries written.
    pub fn layer(&mut self, reader: impl Read) -> Result<u64, ExtractError> {
        let dest = self.dest.clone();
        let dest = dest.as_path();
        let mut reader = BufReader::new(reader);
        let gzip = reader.fill_buf().map_err(|e| ExtractError::Corrupt(e.to_string()))?.starts_with(&[0x1f, 0x8b]);
        let stream: Box<dyn Read> = if gzip { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
        let mut archive = tar::Archive::new(stream);
        // What this layer wrote (and the directories above it): whiteouts hide the layers
        // below only.
        let mut ours: HashSet<PathBuf> = HashSet::new();
        let mut written = 0;
        for entry in archive.entries().map_err(|e| ExtractError::Corrupt(e.to_string()))? {
            let mut entry = entry.map_err(|e| ExtractError::Corrupt(e.to_string()))?;
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(ExtractError::TooLarge { what: "entries", limit: self.limits.max_entries });
            }
            let raw = entry.path().map_err(|e| ExtractError::Corrupt(e.to_string()))?.into_owned();
            let shown = raw.display().to_string();
            let rel = entry_path(&raw).ok_or_else(|| ExtractError::Escapes { entry: shown.clone() })?;
            if rel.as_os_str().is_empty() {
                continue; // "./" itself
            }
            check_no_symlink_on_the_way(dest, &rel, &shown)?;
            let io = |source| ExtractError::Io { entry: shown.clone(), source };
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == OPAQUE {
                let dir = rel.parent().unwrap_or(Path::new(""));
                hide_below(dest, dir, &ours, true).map_err(io)?;
                mark(&mut ours, dir);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT) {
                // It names one entry beside it: `.wh.` alone, `.wh..` or `.wh...` would name the
                // directory itself or the one above the root.
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(ExtractError::Escapes { entry: shown });
                }
                hide_below(dest, &rel.with_file_name(hidden), &ours, false).map_err(io)?;
                continue;
            }
            let target = dest.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            match entry.header().entry_type() {
                EntryType::Directory => {
                    // A directory takes the place of a file or link an earlier entry left there.
                    if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                        std::fs::remove_file(&target).map_err(io)?;
                    }
                    std::fs::create_dir_all(&target).map_err(io)?;
                }
                EntryType::Regular | EntryType::Continuous => {
                    let room = self.limits.max_bytes - self.bytes;
                    if entry.size() > room {
                        return Err(ExtractError::TooLarge { what: "bytes", limit: self.limits.max_bytes });
                    }
                    remove_existing(&target).map_err(io)?;
                    let mut file = std::fs::File::create(&target).map_err(io)?;
                    self.bytes += std::io::copy(&mut (&mut entry).take(room), &mut file).map_err(io)?;
                    let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).map_err(io)?;
                }
                EntryType::Symlink => {
                    let link = link_name(&entry, &shown)?;
                    let base = rel.parent().unwrap_or(Path::new(""));
                    let Some(relative) = inside_target(&link, base) else {
                        return Err(ExtractError::LinkEscapes { entry: shown, target: link.display().to_string() });
                    };
                    remove_existing(&target).map_err(io)?;
                    std::os::unix::fs::symlink(&relative, &target).map_err(io)?;
                }
                EntryType::Link => {
                    let link = link_name(&entry, &shown)?;
                    let escapes =
                        || ExtractError::LinkEscapes { entry: shown.clone(), target: link.display().to_string() };
                    let source = entry_path(&link).ok_or_else(escapes)?;
                    check_no_symlink_on_the_way(dest, &source, &shown)?;
                    remove_existing(&target).map_err(io)?;
                    std::fs::hard_link(dest.join(&source), &target).map_err(io)?;
                }
                EntryType::Char => return Err(ExtractError::Special { entry: shown, kind: "character device" }),
                EntryType::Block => return Err(ExtractError::Special { entry: shown, kind: "block device" }),
                EntryType::Fifo => return Err(ExtractError::Special { entry: shown, kind: "FIFO" }),
                _ => return Err(ExtractError::Special { entry: shown, kind: "special tar entry" }),
            }
            mark(&mut ours, &rel);
            written += 1;
        }
        Ok(written)
    }

    /// Checks the finished root: every symlink, resolved through the links it meets on its
    /// way, stays inside it. (Checked once all layers are in, because a later link can change
    /// where an earlier one leads: `a/up -> ..` makes `t -> a/up/..` leave the root.)
    pub fn finish(self) -> Result<(), ExtractError> {
        let mut todo = vec![PathBuf::new()];
        while let Some(dir) = todo.pop() {
            let io = |source| ExtractError::Io { entry: dir.display().to_string(), source };
            for child in std::fs::read_dir(self.dest.join(&dir)).map_err(io)? {
                let child = child.map_err(io)?;
                let rel = dir.join(child.file_name());
                let kind = child.file_type().map_err(io)?;
                if kind.is_dir() {
                    todo.push(rel);
                } else if kind.is_symlink() && !resolves_inside(&self.dest, &rel) {
                    let target = std::fs::read_link(child.path()).map_err(io)?;
                    return Err(ExtractError::LinkEscapes {
                        entry: rel.display().to_string(),
                        target: target.display().to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Records that this layer wrote `rel`, and so the directories above it.
fn mark(ours: &mut HashSet<PathBuf>, rel: &Path) {
    let mut at = Some(rel);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
        if !ours.insert(p.to_owned()) {
            break;
        }
        at = p.parent();
    }
}

/// Deletes what the layers below left at `rel` (only its contents when `contents_only`), but
/// nothing this layer wrote. Never follows a symlink: one is removed as itself.
fn hide_below(dest: &Path, rel: &Path, ours: &HashSet<PathBuf>, contents_only: bool) -> std::io::Result<()> {
    let at = dest.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&at) else { return Ok(()) };
    if !contents_only && !ours.contains(rel) {
        return if meta.is_dir() { std::fs::remove_dir_all(&at) } else { std::fs::remove_file(&at) };
    }
    if meta.is_dir() {
        for child in std::fs::read_dir(&at)? {
            hide_below(dest, &rel.join(child?.file_name()), ours, false)?;
        }
    }
    Ok(())
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<PathBuf, ExtractError> {
    match entry.link_name() {
        Ok(Some(name)) => Ok(name.into_owned()),
        Ok(None) => Err(ExtractError::Corrupt(format!("link entry {shown:?} has no target"))),
        Err(e) => Err(ExtractError::Corrupt(e.to_string())),
    }
}

/// An archive entry's path, normalised: relative, without `..` (refused, even when it would
/// stay inside — no legitimate layer needs one).
fn entry_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The target a symlink at directory `base` (inside the root) should be written with, if
/// `target` stays inside the root read as written: relative, with an absolute target taken
/// from the image's root (`/app/x` at `bin/sh` becomes `../app/x`), so that it resolves the
/// same on the host and under WASI, which refuses absolute links.
fn inside_target(target: &Path, base: &Path) -> Option<PathBuf> {
    let mut depth: usize = if target.is_absolute() { 0 } else { base.components().count() };
    for c in target.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth = depth.checked_sub(1)?,
            Component::Prefix(_) => return None,
        }
    }
    if !target.is_absolute() {
        return Some(target.to_owned());
    }
    let up = base.components().map(|_| Component::ParentDir);
    let relative: PathBuf = up.chain(target.components().filter(|c| *c != Component::RootDir)).collect();
    Some(if relative.as_os_str().is_empty() { PathBuf::from(".") } else { relative })
}

/// Whether the symlink at `rel` inside `root` resolves inside it. A loop is not an escape: it
/// resolves nowhere.
fn resolves_inside(root: &Path, rel: &Path) -> bool {
    !matches!(resolve_in_root(root, rel), Resolved::Outside)
}

/// Where a path inside a root leads when its links are followed.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// To this path below the root, which has no link on it (it may not exist).
    Inside(PathBuf),
    /// Out of the root (a `..` above it).
    Outside,
    /// Round in circles (more than 40 links).
    Loop,
}

/// Where `rel` inside `root` leads, following every link on the way and at its end as the
/// kernel would with `root` as `/` (an absolute target starts again from `root`), without
/// leaving it: what an image's link means inside the image, whatever the host has at the
/// same path.
pub fn resolve_in_root(root: &Path, rel: &Path) -> Resolved {
    // Where resolution stands (components below `root`), and what is left to walk, last first.
    let mut at: Vec<OsString> = Vec::new();
    let mut todo: Vec<OsString> = Vec::new();
    let follow = |target: &Path, at: &mut Vec<OsString>, todo: &mut Vec<OsString>| {
        if target.is_absolute() {
            at.clear();
        }
        let parts = target.components().filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        });
        let parts: Vec<OsString> = parts.collect();
        todo.extend(parts.into_iter().rev());
    };
    follow(rel, &mut at, &mut todo);
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            if at.pop().is_none() {
                return Resolved::Outside;
            }
            continue;
        }
        at.push(part);
        if let Ok(next) = std::fs::read_link(root.join(at.iter().collect::<PathBuf>())) {
            hops += 1;
            if hops > 40 {
                return Resolved::Loop;
            }
            at.pop();
            follow(&next, &mut at, &mut todo);
        }
    }
    Resolved::Inside(at.iter().collect())
}

/// Refuses `rel` if any directory on its way inside `dest` is a symlink.
fn check_no_symlink_on_the_way(dest: &Path, rel: &Path, shown: &str) -> Result<(), ExtractError> {
    match symlink_on_the_way(dest, rel, false) {
        Some(link) => Err(ExtractError::ThroughSymlink { entry: shown.to_owned(), link }),
        None => Ok(()),
    }
}

/// The first symlink met walking `rel` down from `root` (its path below `root`), checking the
/// last component too when `including_last`. Anything read or written through such a link
/// could land anywhere on the host, so callers refuse it.
pub(crate) fn symlink_on_the_way(root: &Path, rel: &Path, including_last: bool) -> Option<String> {
    let parts: Vec<_> = rel.components().collect();
    let checked = if including_last { parts.len() } else { parts.len().saturating_sub(1) };
    let mut at = root.to_path_buf();
    for c in &parts[..checked] {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(at.strip_prefix(root).unwrap_or(&at).display().to_string());
        }
    }
    None
}

/// Makes room for a file or link: later layers and entries replace earlier ones, a directory
/// too (never followed: a directory here was checked to be no link). A directory entry over a
/// directory merges instead (see `Unpacker::layer`).
fn remove_existing(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, kind, link target, contents) of one raw tar entry.
    type Raw<'a> = (&'a str, EntryType, &'a str, &'a [u8]);

    /// A tar with entries written raw, so tests can build archives the tar crate's safe
    /// builder would refuse to make.
    fn archive(entries: &[Raw<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn unpack(entries: &[Raw<'_>]) -> (tempfile::TempDir, Result<u64, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let result = extract_layer(&archive(entries)[..], &root);
        (dir, result)
    }

    #[test]
    fn unpacks_files_dirs_and_inside_links() {
        let (dir, r) = unpack(&[
            ("app/", EntryType::Directory, "", b""),
            ("app/main.wasm", EntryType::Regular, "", b"\0asm"),
            ("app/current", EntryType::Symlink, "main.wasm", b""),
            ("bin/sh", EntryType::Symlink, "/app/main.wasm", b""),
            ("app/again.wasm", EntryType::Link, "app/main.wasm", b""),
            ("./etc/conf", EntryType::Regular, "", b"x=1"),
        ]);
        assert_eq!(r.unwrap(), 6);
        let root = dir.path().join("root");
        assert_eq!(std::fs::read(root.join("app/current")).unwrap(), b"\0asm");
        assert_eq!(std::fs::read(root.join("app/again.wasm")).unwrap(), b"\0asm");
        assert_eq!(std::fs::read(root.join("etc/conf")).unwrap(), b"x=1");
    }

    #[test]
    fn gzip_layers_are_read_too() {
        let tar = archive(&[("hello.txt", EntryType::Regular, "", b"hi")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract_layer(&gz.finish().unwrap()[..], dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("hello.txt")).unwrap(), b"hi");
    }

    #[test]
    fn refuses_every_escape_and_names_the_entry() {
        let cases: &[(&[Raw<'_>], &str)] = &[
            (&[("../evil", EntryType::Regular, "", b"x")], "\"../evil\" points outside"),
            (&[("/etc/passwd", EntryType::Regular, "", b"x")], "\"/etc/passwd\" points outside"),
            (&[("a/../../evil", EntryType::Regular, "", b"x")], "points outside"),
            (&[("link", EntryType::Symlink, "../../etc", b"")], "\"link\" links to \"../../etc\""),
            (&[("d/link", EntryType::Symlink, "../..", b"")], "links to \"../..\", outside"),
            (&[("hard", EntryType::Link, "../outside", b"")], "\"hard\" links to \"../outside\""),
            (
                &[("dir", EntryType::Symlink, "/", b""), ("dir/x", EntryType::Regular, "", b"x")],
                "\"dir/x\" would be written through the symlink \"dir\"",
            ),
            (&[("dev/null", EntryType::Char, "", b"")], "\"dev/null\" is a character device"),
            (&[("disk", EntryType::Block, "", b"")], "block device"),
            (&[("pipe", EntryType::Fifo, "", b"")], "FIFO"),
            (&[(".wh...", EntryType::Regular, "", b"")], "\".wh...\" points outside"),
            (&[("d/.wh..", EntryType::Regular, "", b"")], "\"d/.wh..\" points outside"),
            (&[(".wh.", EntryType::Regular, "", b"")], "\".wh.\" points outside"),
        ];
        for (entries, needle) in cases {
            let (dir, r) = unpack(entries);
            let err = r.expect_err(needle).to_string();
            assert!(err.contains(needle), "expected {needle:?} in {err:?}");
            assert!(!dir.path().join("evil").exists() && !dir.path().join("outside").exists());
        }
    }

    /// Unpacks layers in order into one root, as an image's are.
    fn unpack_layers(layers: &[&[Raw<'_>]], limits: ExtractLimits) -> (tempfile::TempDir, Result<(), ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = (|| {
            let mut u = Unpacker::new(&dir.path().join("root"), limits)?;
            for layer in layers {
                u.layer(&archive(layer)[..])?;
            }
            u.finish()
        })();
        (dir, result)
    }

    #[test]
    fn whiteouts_delete_what_the_layers_below_left() {
        let lower: &[Raw<'_>] = &[
            ("secret", EntryType::Regular, "", b"password"),
            ("keep", EntryType::Regular, "", b"k"),
            ("cache/", EntryType::Directory, "", b""),
            ("cache/a", EntryType::Regular, "", b"a"),
            ("conf/", EntryType::Directory, "", b""),
            ("conf/old", EntryType::Regular, "", b"o"),
        ];
        let upper: &[Raw<'_>] = &[
            ("conf/new", EntryType::Regular, "", b"n"),
            ("conf/.wh..wh..opq", EntryType::Regular, "", b""),
            (".wh.secret", EntryType::Regular, "", b""),
            (".wh.cache", EntryType::Regular, "", b""),
            (".wh.absent", EntryType::Regular, "", b""),
        ];
        let (dir, r) = unpack_layers(&[lower, upper], ExtractLimits::DEFAULT);
        r.unwrap();
        let root = dir.path().join("root");
        let names = |d: &Path| {
            let mut n: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&root), ["conf", "keep"], "the deleted file, directory and the markers are gone");
        assert_eq!(names(&root.join("conf")), ["new"], "an opaque directory keeps only this layer's entries");
    }

    #[test]
    fn an_upper_layer_may_put_a_file_where_a_directory_was_and_the_other_way_round() {
        let lower: &[Raw<'_>] = &[
            ("x/", EntryType::Directory, "", b""),
            ("x/f", EntryType::Regular, "", b"in x"),
            ("y", EntryType::Regular, "", b"a file"),
        ];
        let upper: &[Raw<'_>] = &[
            ("x", EntryType::Regular, "", b"now a file"),
            ("y/", EntryType::Directory, "", b""),
            ("y/z", EntryType::Regular, "", b"z"),
        ];
        let (dir, r) = unpack_layers(&[lower, upper], ExtractLimits::DEFAULT);
        r.unwrap();
        let root = dir.path().join("root");
        assert_eq!(std::fs::read(root.join("x")).unwrap(), b"now a file");
        assert_eq!(std::fs::read(root.join("y/z")).unwrap(), b"z");
    }

    #[test]
    fn absolute_links_are_written_relative_to_resolve_inside_the_sandbox() {
        let (dir, r) = unpack(&[
            ("app/main.wasm", EntryType::Regular, "", b"\0asm"),
            ("usr/local/bin/app", EntryType::Symlink, "/app/main.wasm", b""),
            ("root", EntryType::Symlink, "/", b""),
        ]);
        r.unwrap();
        let root = dir.path().join("root");
        assert_eq!(std::fs::read_link(root.join("usr/local/bin/app")).unwrap(), Path::new("../../../app/main.wasm"));
        assert_eq!(std::fs::read(root.join("usr/local/bin/app")).unwrap(), b"\0asm");
        assert_eq!(std::fs::read_link(root.join("root")).unwrap(), Path::new("."));
    }

    #[test]
    fn a_link_that_escapes_by_way_of_another_is_refused() {
        // Each link looks inside read as written; `a/up` is the root, so `t` is its parent.
        let cases: &[&[Raw<'_>]] = &[
            &[("a/up", EntryType::Symlink, "..", b""), ("t", EntryType::Symlink, "a/up/..", b"")],
            // The later link changes where the earlier one leads.
            &[
                ("t", EntryType::Symlink, "x/..", b""),
                ("a/up", EntryType::Symlink, "..", b""),
                ("x", EntryType::Symlink, "a/up", b""),
            ],
        ];
        for layer in cases {
            let (_dir, r) = unpack_layers(&[layer], ExtractLimits::DEFAULT);
            let err = r.expect_err("escapes").to_string();
            assert!(err.contains("\"t\" links to") && err.contains("outside the image root"), "{err}");
        }
        // A loop resolves nowhere; it is not an escape.
        let (_dir, r) = unpack(&[("l1", EntryType::Symlink, "l2", b""), ("l2", EntryType::Symlink, "l1", b"")]);
        r.unwrap();
    }

    #[test]
    fn a_bomb_stops_at_the_limits() {
        let big = vec![0u8; 4096];
        let layer: &[Raw<'_>] = &[("a", EntryType::Regular, "", &big), ("b", EntryType::Regular, "", &big)];
        let (_d, r) = unpack_layers(&[layer], ExtractLimits { max_bytes: 6000, max_entries: 10 });
        assert!(r.unwrap_err().to_string().contains("more than 6000 bytes"));
        let (_d, r) = unpack_layers(&[layer, layer], ExtractLimits { max_bytes: 1 << 20, max_entries: 3 });
        assert!(r.unwrap_err().to_string().contains("more than 3 entries"), "counted across layers");
        // A gzip bomb: 64 MiB of zeros in a few KiB, stopped at 1 MiB without writing it all.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(64 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "zeros", std::io::repeat(0).take(64 << 20)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 200 << 10);
        let dir = tempfile::tempdir().unwrap();
        let mut u = Unpacker::new(dir.path(), ExtractLimits { max_bytes: 1 << 20, max_entries: 10 }).unwrap();
        assert!(u.layer(&bomb[..]).unwrap_err().to_string().contains("more than 1048576 bytes"));
        assert!(
            !dir.path().join("zeros").exists() || std::fs::metadata(dir.path().join("zeros")).unwrap().len() <= 1 << 20
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = extract_layer(&[0x1f, 0x8b, 1, 2, 3][..], dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("layer is not a valid tar archive"), "{err}");
    }
}
