//! What a pod's guest may see of its container: the image's files, read-only, and the
//! volumes the pod mounts (read-write where the pod says so) — never what the container
//! runtime keeps beside them: `/proc` (the runtime's own memory through `/proc/self/mem`, its
//! environment), `/sys`, `/dev`, the service-account token.
//!
//! Inside a container these are all beneath `/`, and WASI's path resolution stays beneath a
//! preopened directory but crosses mount points (`/proc/self` is an ordinary symlink to a
//! directory beneath `/`). The runtime cannot unmount them (it has no `CAP_SYS_ADMIN`), so two
//! fences are set instead, each sufficient for what it covers:
//!
//! 1. **WASI**: `/` is preopened read-only; each writable volume is its own read-write
//!    preopen at its mount point ([`View::mounts`]).
//! 2. **Landlock** ([`View::enforce`]): the thread that runs the guest (and every thread it
//!    starts) may open files only beneath the image's own top-level entries and the volumes,
//!    and may write only in writable volumes; `/proc`, `/sys`, `/dev` and the token's
//!    directory are not among them, so no path to them opens, however it is spelled.
//!    Directories anywhere may be listed (the guest's `/` itself must open), files not.
//!
//! A kernel without Landlock would leave only the first fence, which `/proc/self/mem` walks
//! through: the guest is then refused with a message, unless the operator accepts that with
//! `SPORE_SHIM_UNCONFINED=1` in the shim's environment.

use anyhow::{Context, bail};
use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use spore_sandbox::Mount;
use std::path::{Path, PathBuf};

/// What the container runtime mounts for itself, never shown to a guest.
const RUNTIME_ONLY: &[&str] = &["/proc", "/sys", "/dev"];

/// The token Kubernetes mounts into every pod (a mount point below these).
const SERVICE_ACCOUNT: &[&str] = &["/var/run/secrets/kubernetes.io", "/run/secrets/kubernetes.io"];

/// One container's view for its guest.
#[derive(Debug)]
pub struct View {
    /// Readable hierarchies (the image's top-level entries, read-only volumes).
    read: Vec<PathBuf>,
    /// Writable volumes.
    write: Vec<PathBuf>,
    /// Every mount of the container (the root, the runtime's own, the pod's volumes).
    mounted: Vec<Mounted>,
    /// Writable volumes the runtime keeps for itself (the stores' data dir): still writable
    /// for the runtime's threads, not mounted for the guest.
    hidden: Vec<PathBuf>,
}

/// A mount of this container, from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
pub struct Mounted {
    /// Where it is mounted.
    pub point: PathBuf,
    /// Whether it is mounted read-write.
    pub writable: bool,
}

impl View {
    /// Reads the container's mounts and its root's entries; call before [`Self::enforce`].
    pub fn of_container() -> anyhow::Result<View> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
        let mounted = mounts(&info);
        let volumes = mounted.iter().filter(|m| is_volume(&m.point));
        let excluded: Vec<PathBuf> = RUNTIME_ONLY.iter().chain(SERVICE_ACCOUNT).map(PathBuf::from).collect();
        let mut read = Vec::new();
        allow_all_except(Path::new("/"), &excluded, &mut read)?;
        let mut write = Vec::new();
        for v in volumes {
            if v.writable {
                write.push(v.point.clone());
            } else {
                read.push(v.point.clone());
            }
        }
        Ok(View { read, write, mounted, hidden: Vec::new() })
    }

    /// The pod volume `path` lies on once its symlinks are resolved, or `None` when it is the
    /// image's own file (or does not exist) — which the image's author, not the pod's, wrote.
    pub fn volume_of(&self, path: &Path) -> Option<&Mounted> {
        let real = std::fs::canonicalize(path).ok()?;
        // The innermost mount holding it; one of the runtime's own, or the root, is no volume.
        mounts_holding(&self.mounted, &real).filter(|m| is_volume(&m.point))
    }

    /// Keeps the writable volume mounted at `point` from the guest (not among
    /// [`Self::mounts`]), the runtime's threads still writing there; false when `point` is
    /// no writable volume's mount point.
    pub fn hide(&mut self, point: &Path) -> bool {
        if !self.mounted.iter().any(|v| v.writable && v.point == point && is_volume(point)) {
            return false;
        }
        self.hidden.push(point.to_path_buf());
        true
    }

    /// The guest's mounts: `/` read-only, each writable volume read-write at its place (but
    /// those kept for the runtime).
    pub fn mounts(&self) -> Vec<Mount> {
        let root = Mount { host: "/".into(), guest: "/".into(), read_only: true, pin: None };
        let volumes = self.write.iter().filter(|p| !self.hidden.contains(p)).map(|p| Mount {
            host: p.clone(),
            guest: p.display().to_string(),
            read_only: false,
            pin: None,
        });
        std::iter::once(root).chain(volumes).collect()
    }

    /// Confines the calling thread, and the threads it starts from now on, to this view.
    /// Fails (and the guest must not run) when the kernel cannot enforce it.
    pub fn enforce(&self) -> anyhow::Result<()> {
        let abi = ABI::V5;
        let all = AccessFs::from_all(abi);
        let read = AccessFs::from_read(abi) & !AccessFs::Execute;
        let mut rules: Vec<(PathBuf, landlock::BitFlags<AccessFs>)> =
            vec![(PathBuf::from("/"), AccessFs::ReadDir.into())];
        rules.extend(self.read.iter().map(|p| (p.clone(), read)));
        rules.extend(self.write.iter().map(|p| (p.clone(), all & !AccessFs::Execute)));
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(all)
            .context("Landlock")?
            .create()
            .context("Landlock")?;
        for (path, access) in rules {
            // Best effort per rule: a file takes only the rights that apply to files.
            let Ok(fd) = PathFd::new(&path) else { continue };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access).set_compatibility(CompatLevel::BestEffort))
                .with_context(|| format!("Landlock rule for {}", path.display()))?;
        }
        let status = ruleset.restrict_self().context("Landlock")?;
        if status.ruleset == RulesetStatus::NotEnforced {
            bail!(
                "this node's kernel does not enforce Landlock, so the guest could reach the container runtime's /proc; enable Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock) or set SPORE_SHIM_UNCONFINED=1 in the shim's environment to run guests without it"
            );
        }
        Ok(())
    }
}

/// Every entry of `dir` except the excluded paths; directories on the way to an excluded path
/// are entered and their other entries allowed one by one. Symlinks are left out: what they
/// point to inside the image is allowed under its own name, and one pointing anywhere else
/// (a hostile image's `/x -> /proc/self`) must not become a rule.
fn allow_all_except(dir: &Path, excluded: &[PathBuf], out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() || excluded.contains(&path) {
            continue;
        }
        if excluded.iter().any(|x| x.starts_with(&path)) {
            if kind.is_dir() {
                allow_all_except(&path, excluded, out)?;
            }
            continue;
        }
        out.push(path);
    }
    Ok(())
}

/// The mounts listed in `/proc/self/mountinfo` text.
fn mounts(info: &str) -> Vec<Mounted> {
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = unescape(fields.get(4)?);
            let writable = fields.get(5)?.split(',').any(|o| o == "rw");
            Some(Mounted { point: PathBuf::from(point), writable })
        })
        .collect()
}

/// The innermost of `mounted` whose mount point holds `path`.
fn mounts_holding<'m>(mounted: &'m [Mounted], path: &Path) -> Option<&'m Mounted> {
    mounted.iter().filter(|m| path.starts_with(&m.point)).max_by_key(|m| m.point.components().count())
}

/// Whether a mount point is a pod volume (not the root, not the runtime's own, not the token).
fn is_volume(point: &Path) -> bool {
    point != Path::new("/")
        && !RUNTIME_ONLY.iter().chain(SERVICE_ACCOUNT).any(|r| point.starts_with(r))
        // The files the runtime writes for name resolution; readable as part of /etc anyway.
        && !["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].iter().any(|f| point == Path::new(f))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
1 0 0:1 / / rw,relatime - overlay overlay rw
2 1 0:2 / /proc rw,nosuid - proc proc rw
3 1 0:3 / /dev rw - tmpfs tmpfs rw
4 1 0:4 / /etc/hosts ro - ext4 /dev/vda rw
5 1 0:5 / /data rw - ext4 /dev/vda rw
6 1 0:6 / /config\\040files ro - ext4 /dev/vda rw
7 1 0:7 / /var/run/secrets/kubernetes.io/serviceaccount ro - tmpfs tmpfs rw
8 1 0:8 / /sys/fs/cgroup ro - cgroup2 cgroup rw";

    #[test]
    fn volumes_are_the_pods_mounts_and_nothing_of_the_runtime() {
        let volumes: Vec<Mounted> = mounts(INFO).into_iter().filter(|m| is_volume(&m.point)).collect();
        assert_eq!(
            volumes,
            vec![
                Mounted { point: "/data".into(), writable: true },
                Mounted { point: "/config files".into(), writable: false },
            ]
        );
    }

    #[test]
    fn a_path_is_on_the_innermost_mount_holding_it() {
        let all = mounts(INFO);
        let on = |p: &str| mounts_holding(&all, Path::new(p)).filter(|m| is_volume(&m.point)).map(|m| &m.point);
        assert_eq!(on("/data/kv/x"), Some(&PathBuf::from("/data")));
        assert_eq!(on("/config files/grants.toml"), Some(&PathBuf::from("/config files")));
        assert_eq!(on("/etc/spore/grants.toml"), None, "the image's own file");
        assert_eq!(on("/database"), None, "a prefix of a name is not its directory");
        assert_eq!(on("/var/run/secrets/kubernetes.io/serviceaccount/token"), None, "the runtime's own");
    }

    #[test]
    fn the_allowed_entries_leave_out_the_excluded_and_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["bin", "proc", "var/lib", "var/run/secrets/kubernetes.io/serviceaccount", "var/run/other"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("app.wasm"), "x").unwrap();
        std::os::unix::fs::symlink("/proc/self", r.join("sneaky")).unwrap();
        let excluded = [r.join("proc"), r.join("var/run/secrets/kubernetes.io")];
        let mut out = Vec::new();
        allow_all_except(r, &excluded, &mut out).unwrap();
        out.sort();
        let expected: Vec<PathBuf> =
            ["app.wasm", "bin", "var/lib", "var/run/other"].iter().map(|p| r.join(p)).collect();
        assert_eq!(out, expected);
    }
}
