//! A read-only tree of files that a guest sees as its preopened `/` (descriptor 3): a bundle's
//! embedded root. The bytes are borrowed for the life of the process (a bundle maps its own
//! executable once), so opening and reading a file copies nothing but what the guest reads.
//!
//! Everything that would write — create, truncate, open for writing, remove, rename, link —
//! answers `EROFS`; a path that climbs above `/` answers `ENOTCAPABLE`, as wasmtime's does.

use crate::memory::{Fault, Guest};
use crate::{MAX_VECTORS, errno};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// What a path names.
#[derive(Debug, Clone, Copy)]
enum Node {
    Dir,
    File(&'static [u8]),
}

/// Read-only files and directories, by path from the root (`""` is the root itself).
#[derive(Debug, Default)]
pub struct Tree {
    /// Path → its inode number (its index in `nodes`).
    paths: BTreeMap<String, usize>,
    nodes: Vec<Node>,
}

impl Tree {
    /// A tree with only its root directory.
    pub fn new() -> Tree {
        let mut tree = Tree::default();
        tree.paths.insert(String::new(), 0);
        tree.nodes.push(Node::Dir);
        tree
    }

    /// Adds the file `path` (`/`-separated; `.`, `..` and empty parts are dropped) with its
    /// bytes, and the directories above it. A later entry of the same path replaces it.
    pub fn file(&mut self, path: &str, bytes: &'static [u8]) {
        let path = clean(path);
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.put(path, Node::File(bytes));
    }

    /// Adds the directory `path` and those above it.
    pub fn dir(&mut self, path: &str) {
        let path = clean(path);
        let mut at = 0;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at += part.len();
            if !matches!(self.get(&path[..at]), Some((_, Node::Dir))) {
                self.put(String::from(&path[..at]), Node::Dir);
            }
            at += 1;
        }
    }

    fn put(&mut self, path: String, node: Node) {
        match self.paths.get(&path) {
            Some(&ino) => self.nodes[ino] = node,
            None => {
                self.paths.insert(path, self.nodes.len());
                self.nodes.push(node);
            }
        }
    }

    fn get(&self, path: &str) -> Option<(u64, Node)> {
        self.paths.get(path).map(|&ino| (ino as u64 + 1, self.nodes[ino]))
    }

    /// The entries directly inside the directory `dir`: name, inode, node.
    fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, u64, Node)> + 'a {
        let prefix = if dir.is_empty() { String::new() } else { alloc::format!("{dir}/") };
        let len = prefix.len();
        self.paths
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(prefix.as_str()))
            .filter(move |(p, _)| p.len() > len && !p[len..].contains('/'))
            .map(move |(p, &ino)| (&p[len..], ino as u64 + 1, self.nodes[ino]))
    }
}

/// `path` without a leading `/`, `.` or empty parts; `..` drops the part before it.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// `filetype` values.
const DIRECTORY: u8 = 3;
const REGULAR_FILE: u8 = 4;
/// Rights that mean writing: an open asking for any of them is refused.
const WRITE_RIGHTS: u64 = (1 << 0) | (1 << 6) | (1 << 8) | (1 << 22);
/// Rights a file descriptor has: read, seek, fdstat/advise, tell, filestat, poll.
const FILE_RIGHTS: u64 = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 7) | (1 << 21) | (1 << 27);
/// Rights a directory descriptor has: open, readdir, readlink, filestat of paths and itself.
const DIR_RIGHTS: u64 = (1 << 13) | (1 << 14) | (1 << 15) | (1 << 18) | (1 << 21);
/// Descriptors a guest may hold open at once (besides 0–2), as a process's `ulimit -n`.
const MAX_OPEN: usize = 1024;

/// `oflags`.
const O_CREAT: u32 = 1;
const O_DIRECTORY: u32 = 2;
const O_EXCL: u32 = 4;
const O_TRUNC: u32 = 8;

/// An open descriptor: the path it names and, for a file, where it reads next.
struct Open {
    path: String,
    ino: u64,
    node: Node,
    pos: u64,
}

/// A guest's open files in a [`Tree`]: descriptors from 3 (the root, preopened) up.
pub(crate) struct Files {
    tree: Tree,
    open: Vec<Option<Open>>,
}

/// The errors of a file call, as the guest gets them.
type Answer = Result<i32, Fault>;

impl Files {
    pub(crate) fn new(tree: Tree) -> Files {
        let root = Open { path: String::new(), ino: 1, node: Node::Dir, pos: 0 };
        Files { tree, open: alloc::vec![Some(root)] }
    }

    fn fd(&self, fd: u32) -> Option<&Open> {
        self.open.get((fd as usize).checked_sub(3)?)?.as_ref()
    }

    fn fd_mut(&mut self, fd: u32) -> Option<&mut Open> {
        self.open.get_mut((fd as usize).checked_sub(3)?)?.as_mut()
    }

    /// Whether `fd` is one of these files' descriptors.
    pub(crate) fn has(&self, fd: u32) -> bool {
        self.fd(fd).is_some()
    }

    pub(crate) fn prestat_get(&self, mem: &mut Guest<'_>, fd: u32, out: u32) -> Answer {
        if fd != 3 || !self.has(3) {
            return Ok(errno::BADF);
        }
        // `prestat`: tag 0 (a directory), then the length of its name, "/".
        mem.u32(out, 0)?;
        mem.u32(out + 4, 1)?;
        Ok(errno::SUCCESS)
    }

    pub(crate) fn prestat_dir_name(&self, mem: &mut Guest<'_>, fd: u32, ptr: u32, len: u32) -> Answer {
        if fd != 3 || !self.has(3) {
            return Ok(errno::BADF);
        }
        if len < 1 {
            return Ok(errno::NAMETOOLONG);
        }
        mem.bytes(ptr, b"/")?;
        Ok(errno::SUCCESS)
    }

    /// The path `ptr`/`len` names from the directory `fd`, or why it names none.
    fn resolve(&self, mem: &Guest<'_>, fd: u32, ptr: u32, len: u32) -> Result<Result<String, i32>, Fault> {
        let Some(dir) = self.fd(fd) else { return Ok(Err(errno::BADF)) };
        if !matches!(dir.node, Node::Dir) {
            return Ok(Err(errno::NOTDIR));
        }
        let Ok(path) = core::str::from_utf8(mem.slice(ptr, len)?) else { return Ok(Err(errno::ILSEQ)) };
        if path.starts_with('/') {
            return Ok(Err(errno::NOTCAPABLE));
        }
        let mut parts: Vec<&str> = dir.path.split('/').filter(|p| !p.is_empty()).collect();
        let base = parts.len();
        let mut depth = base;
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." if depth == 0 => return Ok(Err(errno::NOTCAPABLE)),
                ".." => {
                    parts.pop();
                    depth -= 1;
                }
                part => {
                    parts.push(part);
                    depth += 1;
                }
            }
        }
        Ok(Ok(parts.join("/")))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn path_open(
        &mut self,
        mem: &mut Guest<'_>,
        fd: u32,
        ptr: u32,
        len: u32,
        oflags: u32,
        rights: u64,
        out: u32,
    ) -> Answer {
        let path = match self.resolve(mem, fd, ptr, len)? {
            Ok(path) => path,
            Err(e) => return Ok(e),
        };
        let Some((ino, node)) = self.tree.get(&path) else {
            return Ok(if oflags & O_CREAT != 0 { errno::ROFS } else { errno::NOENT });
        };
        if oflags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL {
            return Ok(errno::EXIST);
        }
        if oflags & O_TRUNC != 0 || rights & WRITE_RIGHTS != 0 {
            return Ok(if matches!(node, Node::Dir) { errno::ISDIR } else { errno::ROFS });
        }
        if oflags & O_DIRECTORY != 0 && !matches!(node, Node::Dir) {
            return Ok(errno::NOTDIR);
        }
        let open = Open { path, ino, node, pos: 0 };
        let slot = match self.open.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.open.len() < MAX_OPEN => {
                self.open.push(None);
                self.open.len() - 1
            }
            None => return Ok(errno::MFILE),
        };
        mem.u32(out, slot as u32 + 3)?;
        self.open[slot] = Some(open);
        Ok(errno::SUCCESS)
    }

    pub(crate) fn close(&mut self, fd: u32) -> i32 {
        match self.has(fd) {
            true => {
                self.open[fd as usize - 3] = None;
                errno::SUCCESS
            }
            false => errno::BADF,
        }
    }

    /// `fd_read` (`at` None: from the descriptor's position, which moves) and `fd_pread`.
    pub(crate) fn read(
        &mut self,
        mem: &mut Guest<'_>,
        fd: u32,
        iovs: u32,
        count: u32,
        at: Option<u64>,
        out: u32,
    ) -> Answer {
        let Some(open) = self.fd_mut(fd) else { return Ok(errno::BADF) };
        let Node::File(bytes) = open.node else { return Ok(errno::ISDIR) };
        if count > MAX_VECTORS {
            return Ok(errno::INVAL);
        }
        let mut pos = at.unwrap_or(open.pos);
        let mut total: u32 = 0;
        for i in 0..count {
            let (ptr, len) = mem.iovec(iovs, i)?;
            let start = usize::try_from(pos).unwrap_or(usize::MAX).min(bytes.len());
            let n = (len as usize).min(bytes.len() - start);
            mem.bytes(ptr, &bytes[start..start + n])?;
            total += n as u32;
            pos += n as u64;
            if n < len as usize {
                break;
            }
        }
        if at.is_none() {
            open.pos = pos;
        }
        mem.u32(out, total)?;
        Ok(errno::SUCCESS)
    }

    pub(crate) fn seek(&mut self, mem: &mut Guest<'_>, fd: u32, offset: i64, whence: u32, out: u32) -> Answer {
        let Some(open) = self.fd_mut(fd) else { return Ok(errno::BADF) };
        let Node::File(bytes) = open.node else { return Ok(errno::ISDIR) };
        let from = match whence {
            0 => 0,
            1 => open.pos as i64,
            2 => bytes.len() as i64,
            _ => return Ok(errno::INVAL),
        };
        let Some(pos) = from.checked_add(offset).filter(|p| *p >= 0) else { return Ok(errno::INVAL) };
        open.pos = pos as u64;
        mem.u64(out, open.pos)?;
        Ok(errno::SUCCESS)
    }

    pub(crate) fn tell(&self, mem: &mut Guest<'_>, fd: u32, out: u32) -> Answer {
        let Some(open) = self.fd(fd) else { return Ok(errno::BADF) };
        if matches!(open.node, Node::Dir) {
            return Ok(errno::ISDIR);
        }
        mem.u64(out, open.pos)?;
        Ok(errno::SUCCESS)
    }

    pub(crate) fn fdstat_get(&self, mem: &mut Guest<'_>, fd: u32, out: u32) -> Answer {
        let Some(open) = self.fd(fd) else { return Ok(errno::BADF) };
        let (filetype, rights, inherit) = match open.node {
            Node::Dir => (DIRECTORY, DIR_RIGHTS, DIR_RIGHTS | FILE_RIGHTS),
            Node::File(_) => (REGULAR_FILE, FILE_RIGHTS, 0),
        };
        // `fdstat`: filetype, flags (u16 at 2), rights base (8), rights inheriting (16).
        let mut stat = [0u8; 24];
        stat[0] = filetype;
        stat[8..16].copy_from_slice(&rights.to_le_bytes());
        stat[16..24].copy_from_slice(&inherit.to_le_bytes());
        mem.bytes(out, &stat)?;
        Ok(errno::SUCCESS)
    }

    pub(crate) fn filestat_get(&self, mem: &mut Guest<'_>, fd: u32, out: u32) -> Answer {
        let Some(open) = self.fd(fd) else { return Ok(errno::BADF) };
        mem.bytes(out, &filestat(open.ino, open.node))?;
        Ok(errno::SUCCESS)
    }

    pub(crate) fn path_filestat_get(&self, mem: &mut Guest<'_>, fd: u32, ptr: u32, len: u32, out: u32) -> Answer {
        let path = match self.resolve(mem, fd, ptr, len)? {
            Ok(path) => path,
            Err(e) => return Ok(e),
        };
        let Some((ino, node)) = self.tree.get(&path) else { return Ok(errno::NOENT) };
        mem.bytes(out, &filestat(ino, node))?;
        Ok(errno::SUCCESS)
    }

    /// `fd_readdir`: entries from `cookie` (an entry's index), as many as fit; the last may be
    /// cut short, which tells the guest's libc to ask again with a larger buffer.
    pub(crate) fn readdir(&self, mem: &mut Guest<'_>, fd: u32, buf: u32, len: u32, cookie: u64, out: u32) -> Answer {
        let Some(open) = self.fd(fd) else { return Ok(errno::BADF) };
        if !matches!(open.node, Node::Dir) {
            return Ok(errno::NOTDIR);
        }
        let mut used: u32 = 0;
        let entries = self.tree.children(&open.path).enumerate().skip(usize::try_from(cookie).unwrap_or(usize::MAX));
        for (i, (name, ino, node)) in entries {
            // `dirent`: next cookie, inode, name length (u32), type (u8), padding; the name.
            let mut entry = Vec::with_capacity(24 + name.len());
            entry.extend_from_slice(&(i as u64 + 1).to_le_bytes());
            entry.extend_from_slice(&ino.to_le_bytes());
            entry.extend_from_slice(&(name.len() as u32).to_le_bytes());
            entry.extend_from_slice(&[filetype(node), 0, 0, 0]);
            entry.extend_from_slice(name.as_bytes());
            let room = (len - used) as usize;
            let n = entry.len().min(room);
            mem.bytes(buf.checked_add(used).ok_or(Fault)?, &entry[..n])?;
            used += n as u32;
            if used == len {
                break;
            }
        }
        mem.u32(out, used)?;
        Ok(errno::SUCCESS)
    }

    /// A call that would change the tree, on a descriptor of it.
    pub(crate) fn read_only(&self, fd: u32) -> i32 {
        match self.has(fd) {
            true => errno::ROFS,
            false => errno::BADF,
        }
    }
}

fn filetype(node: Node) -> u8 {
    match node {
        Node::Dir => DIRECTORY,
        Node::File(_) => REGULAR_FILE,
    }
}

/// `filestat`: device, inode, filetype (at 16), links (24), size (32), times (all 0).
fn filestat(ino: u64, node: Node) -> [u8; 64] {
    let mut stat = [0u8; 64];
    stat[8..16].copy_from_slice(&ino.to_le_bytes());
    stat[16] = filetype(node);
    stat[24..32].copy_from_slice(&1u64.to_le_bytes());
    let size = match node {
        Node::Dir => 0,
        Node::File(bytes) => bytes.len() as u64,
    };
    stat[32..40].copy_from_slice(&size.to_le_bytes());
    stat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_lists_each_directory_s_own_entries() {
        let mut tree = Tree::new();
        tree.file("/a.txt", b"A");
        tree.file("/dir/b.txt", b"B");
        tree.file("dir/sub/c.txt", b"C");
        tree.file("dir2/d.txt", b"D");
        tree.file("dir-x/e.txt", b"E");
        let names = |dir: &str| tree.children(dir).map(|(n, ..)| String::from(n)).collect::<Vec<_>>();
        assert_eq!(names(""), ["a.txt", "dir", "dir-x", "dir2"]);
        assert_eq!(names("dir"), ["b.txt", "sub"]);
        assert_eq!(names("dir/sub"), ["c.txt"]);
        assert!(matches!(tree.get("dir/sub/c.txt"), Some((_, Node::File(b"C")))));
        assert!(matches!(tree.get("dir/sub"), Some((_, Node::Dir))));
    }
}
