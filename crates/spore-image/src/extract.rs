//! Unpacking a layer (tar, optionally gzip) into a directory without letting it reach outside.
//!
//! Each entry's path is normalised and checked before anything is written: absolute paths and
//! `..` are refused; symlinks and hard links must resolve inside the root (an absolute link
//! target means the image's root, as it will inside the sandbox); no entry may be written
//! *through* a symlink an earlier entry created; device files and FIFOs are refused. Errors
//! name the entry, so a bad layer is diagnosable from the message alone.

use flate2::read::GzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

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

/// Unpacks a tar or tar+gzip layer into `dest` (created if needed). Returns the number of
/// entries written.
pub fn extract_layer(reader: impl Read, dest: &Path) -> Result<u64, ExtractError> {
    let mut reader = BufReader::new(reader);
    let gzip = reader.fill_buf().map_err(|e| ExtractError::Corrupt(e.to_string()))?.starts_with(&[0x1f, 0x8b]);
    let stream: Box<dyn Read> = if gzip { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
    let mut archive = tar::Archive::new(stream);
    std::fs::create_dir_all(dest).map_err(|source| ExtractError::Io { entry: ".".into(), source })?;
    let mut written = 0;
    for entry in archive.entries().map_err(|e| ExtractError::Corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| ExtractError::Corrupt(e.to_string()))?;
        let raw = entry.path().map_err(|e| ExtractError::Corrupt(e.to_string()))?.into_owned();
        let shown = raw.display().to_string();
        let rel = entry_path(&raw).ok_or_else(|| ExtractError::Escapes { entry: shown.clone() })?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        check_no_symlink_on_the_way(dest, &rel, &shown)?;
        let target = dest.join(&rel);
        let io = |source| ExtractError::Io { entry: shown.clone(), source };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match entry.header().entry_type() {
            EntryType::Directory => std::fs::create_dir_all(&target).map_err(io)?,
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&target).map_err(io)?;
                let mut file = std::fs::File::create(&target).map_err(io)?;
                std::io::copy(&mut entry, &mut file).map_err(io)?;
                let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).map_err(io)?;
            }
            EntryType::Symlink => {
                let link = link_name(&entry, &shown)?;
                let base = rel.parent().unwrap_or(Path::new(""));
                if !link_stays_inside(&link, base) {
                    return Err(ExtractError::LinkEscapes { entry: shown, target: link.display().to_string() });
                }
                remove_existing(&target).map_err(io)?;
                std::os::unix::fs::symlink(&link, &target).map_err(io)?;
            }
            EntryType::Link => {
                let link = link_name(&entry, &shown)?;
                let escapes = || ExtractError::LinkEscapes { entry: shown.clone(), target: link.display().to_string() };
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
        written += 1;
    }
    Ok(written)
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

/// Whether a symlink at directory `base` (inside the root) pointing at `target` stays inside
/// the root. An absolute target means the image's root, as it will once the image is the
/// sandbox's `/`.
fn link_stays_inside(target: &Path, base: &Path) -> bool {
    let mut depth: usize = if target.is_absolute() { 0 } else { base.components().count() };
    for c in target.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(_) => depth += 1,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::Prefix(_) => return false,
        }
    }
    true
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

/// Later layers and entries replace earlier ones; a directory stays (its contents merge).
fn remove_existing(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
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
        ];
        for (entries, needle) in cases {
            let (dir, r) = unpack(entries);
            let err = r.expect_err(needle).to_string();
            assert!(err.contains(needle), "expected {needle:?} in {err:?}");
            assert!(!dir.path().join("evil").exists() && !dir.path().join("outside").exists());
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = extract_layer(&[0x1f, 0x8b, 1, 2, 3][..], dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("layer is not a valid tar archive"), "{err}");
    }
}
