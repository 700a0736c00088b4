//! Mounts that cannot be redirected.
//!
//! A guest with a read-write mount can replace any directory under it — by a symlink that
//! climbs out, or by another directory — and a sandbox whose *other* mount lies there would,
//! at its next start, see whatever the guest put in its place (the host's `/`, say). So a
//! mount's host directory is resolved once, when the sandbox is created ([`pin`]: symlinks the
//! operator wrote are followed then, and the directory's device and inode recorded), and every
//! start opens it again without following any symlink and checks it is still that directory
//! ([`open`]); if not, the start fails naming the mount.
//!
//! The directory is handed to WASI as `/proc/self/fd/N` of the descriptor just checked, so
//! nothing can be swapped between the check and the open.

use spore_spec::{Mount, MountPin, SpecError};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Resolves `mount.host` now: its canonical path and the identity of the directory there.
pub(crate) fn pin(mount: &mut Mount) -> Result<(), SpecError> {
    let host = mount.host.display().to_string();
    let problem = |problem: String| SpecError::MountHost { host: host.clone(), problem };
    let canonical = std::fs::canonicalize(&mount.host).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => problem("host path does not exist".into()),
        _ => problem(e.to_string()),
    })?;
    let meta = std::fs::metadata(&canonical).map_err(|e| problem(e.to_string()))?;
    if !meta.is_dir() {
        return Err(problem("is not a directory".into()));
    }
    mount.host = canonical;
    mount.pin = Some(MountPin { dev: meta.dev(), ino: meta.ino() });
    Ok(())
}

/// Refuses a mount whose host directory contains, or lies inside, a protected path (the
/// compile cache and its key: see [`spore_engine::SporeEngine::protected_paths`]), or that
/// contains one of Spore's data directories ([`spore_engine::SporeEngine::data_paths`]).
///
/// Compared by identity (device and inode, walking `..` up from each), not by path text: a
/// symlink, a bind mount or a `..` in either path changes nothing, and a protected path this
/// process reaches only through a descriptor (the shim's `/proc/self/fd/N`, outside the
/// container's root) is correctly found to be outside every mount.
///
/// `dir` names the mount's directory: its host path at create, the [`Opened::path`] of the
/// checked directory at start.
pub(crate) fn check_exposure(
    mount: &Mount,
    dir: &Path,
    protected: &[PathBuf],
    data: &[PathBuf],
) -> Result<(), SpecError> {
    let Ok(host) = std::fs::metadata(dir) else { return Ok(()) };
    let host = (host.dev(), host.ino());
    let host_and_up = ancestry(dir);
    for p in protected {
        let Ok(meta) = std::fs::metadata(p) else { continue };
        let dir = if meta.is_dir() { p.clone() } else { p.parent().map(Path::to_path_buf).unwrap_or_default() };
        let inside_mount = (meta.dev(), meta.ino()) == host || ancestry(&dir).contains(&host);
        let mount_inside = meta.is_dir() && host_and_up.contains(&(meta.dev(), meta.ino()));
        if inside_mount || mount_inside {
            return Err(SpecError::MountExposesCache {
                guest: mount.guest.clone(),
                host: mount.host.display().to_string(),
                protected: p.display().to_string(),
            });
        }
    }
    for d in data {
        // Not made yet, it would be made where it is named: judged by what stands there now.
        let Some(d) = d.ancestors().find(|a| a.exists()) else { continue };
        let Ok(meta) = std::fs::metadata(d) else { continue };
        if (meta.dev(), meta.ino()) == host || ancestry(d).contains(&host) {
            return Err(SpecError::MountExposesData {
                guest: mount.guest.clone(),
                host: mount.host.display().to_string(),
                data: d.display().to_string(),
            });
        }
    }
    Ok(())
}

/// `(device, inode)` of a directory and of each directory above it, up to the root.
fn ancestry(dir: &Path) -> Vec<(u64, u64)> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let mut out = Vec::new();
    let Ok(mut fd) = open_at(libc::AT_FDCWD, dir, flags) else { return out };
    while let Ok(st) = fstat(&fd) {
        let id = identity(&st);
        if out.last() == Some(&id) || out.len() > 4096 {
            break;
        }
        out.push(id);
        match open_at(fd.as_raw_fd(), Path::new(".."), flags) {
            Ok(up) => fd = up,
            Err(_) => break,
        }
    }
    out
}

/// A pinned mount's directory, opened and checked: keep it until the WASI context is built
/// from [`Opened::path`].
pub(crate) struct Opened(OwnedFd);

impl Opened {
    /// A path that names exactly the directory checked.
    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }
}

/// Opens a mount's host directory component by component, following no symlink, and checks
/// it is the directory pinned at create (a mount never pinned is pinned now).
pub(crate) fn open(mount: &Mount) -> Result<Opened, SpecError> {
    let mut mount = mount.clone();
    if mount.pin.is_none() {
        pin(&mut mount)?;
    }
    let pin = mount.pin.expect("pinned above");
    let changed = |problem: String| SpecError::MountChanged {
        guest: mount.guest.clone(),
        host: mount.host.display().to_string(),
        problem,
    };
    let dir = open_no_symlinks(&mount.host).map_err(|(at, e)| {
        if e.raw_os_error() == Some(libc::ENOTDIR) || e.raw_os_error() == Some(libc::ELOOP) {
            changed(format!("{} is no longer a directory (a symlink or file stands there now)", at.display()))
        } else if e.kind() == std::io::ErrorKind::NotFound {
            changed(format!("{} no longer exists", at.display()))
        } else {
            changed(format!("{}: {e}", at.display()))
        }
    })?;
    let meta = fstat(&dir).map_err(|e| changed(e.to_string()))?;
    if identity(&meta) != (pin.dev, pin.ino) {
        return Err(changed("another directory stands there now".into()));
    }
    Ok(Opened(dir))
}

/// `openat(…, O_PATH | O_DIRECTORY | O_NOFOLLOW)` for each component of an absolute path: a
/// symlink anywhere on the way is `ENOTDIR`. On error, the path up to the failing component.
fn open_no_symlinks(path: &Path) -> Result<OwnedFd, (PathBuf, std::io::Error)> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let mut at = PathBuf::from("/");
    let mut fd = open_at(libc::AT_FDCWD, Path::new("/"), flags).map_err(|e| (at.clone(), e))?;
    for component in path.components() {
        let name = match component {
            Component::RootDir => continue,
            Component::Normal(name) => name,
            // A canonical path has neither; refuse rather than interpret them.
            other => {
                let e = std::io::Error::other(format!("unexpected path component {other:?}"));
                return Err((at, e));
            }
        };
        at.push(name);
        fd = open_at(fd.as_raw_fd(), Path::new(name), flags).map_err(|e| (at.clone(), e))?;
    }
    Ok(fd)
}

fn open_at(dir: libc::c_int, name: &Path, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let name = CString::new(name.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `name` is a valid NUL-terminated string; `dir` is AT_FDCWD or an open descriptor.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `(device, inode)` of a `stat` (whose field types differ between platforms).
#[allow(clippy::unnecessary_cast)]
fn identity(st: &libc::stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(host: &Path) -> Mount {
        Mount { host: host.to_owned(), guest: "/sub".into(), read_only: true, pin: None }
    }

    #[test]
    fn a_pinned_directory_opens_while_it_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut m = mount(&dir.path().join("sub"));
        pin(&mut m).unwrap();
        let opened = open(&m).unwrap();
        assert_eq!(std::fs::canonicalize(opened.path()).unwrap(), m.host);
    }

    #[test]
    fn a_symlink_or_another_directory_in_its_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let mut m = mount(&sub);
        pin(&mut m).unwrap();

        std::fs::rename(&sub, dir.path().join("away")).unwrap();
        std::os::unix::fs::symlink("/", &sub).unwrap();
        let err = open(&m).err().expect("a symlink is refused").to_string();
        assert!(err.contains("mount /sub") && err.contains("no longer a directory"), "{err}");

        std::fs::remove_file(&sub).unwrap();
        std::fs::create_dir(&sub).unwrap();
        let err = open(&m).err().expect("another directory is refused").to_string();
        assert!(err.contains("another directory stands there now"), "{err}");
    }

    #[test]
    fn a_mount_over_or_inside_a_protected_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache/compiled");
        std::fs::create_dir_all(cache.join("abc")).unwrap();
        let protected = [cache.clone()];
        for host in [dir.path().to_owned(), dir.path().join("cache"), cache.clone(), cache.join("abc")] {
            let err = check_exposure(&mount(&host), &host, &protected, &[]).unwrap_err().to_string();
            assert!(err.contains("would expose Spore's compiled code"), "{err}");
        }
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let data = dir.path().join("data");
        assert!(check_exposure(&mount(&data), &data, &protected, &[]).is_ok());
    }

    /// Spore's data may not be inside a mount (a home directory given to a guest); a mount
    /// inside it is named on purpose, and an image's own root is one.
    #[test]
    fn a_mount_containing_sporess_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("share/spore");
        let root = data.join("store/rootfs/sha256-1");
        std::fs::create_dir_all(&root).unwrap();
        let datas = [data.clone()];
        for host in [dir.path().to_owned(), dir.path().join("share"), data.clone()] {
            let err = check_exposure(&mount(&host), &host, &[], &datas).unwrap_err().to_string();
            assert!(err.contains("contains Spore's data") && err.contains("every app's key-value stores"), "{err}");
        }
        assert!(check_exposure(&mount(&root), &root, &[], &datas).is_ok(), "an image's root");
        // Not made yet: a guest given its parent could make it.
        let later = [dir.path().join("home/.local/share/spore")];
        std::fs::create_dir_all(dir.path().join("home/.local")).unwrap();
        let home = dir.path().join("home");
        assert!(check_exposure(&mount(&home), &home, &[], &later).is_err());
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        assert!(check_exposure(&mount(&elsewhere), &elsewhere, &[], &datas).is_ok());
    }

    #[test]
    fn a_symlink_the_operator_wrote_is_followed_once_at_pin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let mut m = mount(&dir.path().join("link"));
        pin(&mut m).unwrap();
        assert_eq!(m.host, std::fs::canonicalize(dir.path().join("real")).unwrap());
        assert!(open(&m).is_ok());
    }
}
