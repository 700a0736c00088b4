//! WASI preview 1 as core wasm sees it: every function of `wasi_snapshot_preview1` with its
//! parameter types, and the error numbers. An engine binds each entry of [`IMPORTS`] to
//! [`crate::Wasi::call`] with the entry's index, so a module that imports any preview 1
//! function links, and one it cannot have answers with an errno instead of failing to load.

/// The import module name.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// A core wasm parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

/// One host function a guest may import: a preview 1 function, or one of its runner's own
/// ([`crate::Host::functions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Import {
    /// Its import module ([`MODULE`] for WASI's).
    pub module: &'static str,
    /// Its name in the module.
    pub name: &'static str,
    /// Its parameters.
    pub params: &'static [Ty],
    /// Whether it answers an `i32` (an errno, a count); only `proc_exit` of WASI's does not.
    pub returns: bool,
}

impl Import {
    /// Its core wasm type as the text format writes it, e.g. `(i32, i64) -> i32`: what a
    /// refusal of a module that imports it with another type shows.
    pub fn signature(&self) -> alloc::string::String {
        signature(self.params.iter().map(|t| t.name()), if self.returns { &["i32"][..] } else { &[] })
    }
}

/// A function type written as [`Import::signature`] writes it.
pub fn signature<'a>(params: impl Iterator<Item = &'a str>, results: &[&str]) -> alloc::string::String {
    let params: alloc::vec::Vec<&str> = params.collect();
    let mut text = alloc::format!("({})", params.join(", "));
    if !results.is_empty() {
        text.push_str(" -> ");
        text.push_str(&results.join(", "));
    }
    text
}

impl Ty {
    /// As the text format writes it.
    pub fn name(self) -> &'static str {
        match self {
            I32 => "i32",
            I64 => "i64",
        }
    }
}

use Ty::{I32, I64};

macro_rules! imports {
    ($($name:ident($($ty:ident),*) $(-> $ret:ident)?;)*) => {
        /// Every function of `wasi_snapshot_preview1`, in the order [`Func`] numbers them.
        pub const IMPORTS: &[Import] = &[
            $(Import { module: MODULE, name: stringify!($name), params: &[$($ty),*], returns: imports!(@ret $($ret)?) },)*
        ];

        /// A preview 1 function, by its place in [`IMPORTS`].
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Func { $($name,)* }

        impl Func {
            /// The function at `index` of [`IMPORTS`].
            pub fn from_index(index: usize) -> Option<Func> {
                const ALL: &[Func] = &[$(Func::$name,)*];
                ALL.get(index).copied()
            }
        }
    };
    (@ret errno) => { true };
    (@ret) => { false };
}

imports! {
    args_get(I32, I32) -> errno;
    args_sizes_get(I32, I32) -> errno;
    environ_get(I32, I32) -> errno;
    environ_sizes_get(I32, I32) -> errno;
    clock_res_get(I32, I32) -> errno;
    clock_time_get(I32, I64, I32) -> errno;
    fd_advise(I32, I64, I64, I32) -> errno;
    fd_allocate(I32, I64, I64) -> errno;
    fd_close(I32) -> errno;
    fd_datasync(I32) -> errno;
    fd_fdstat_get(I32, I32) -> errno;
    fd_fdstat_set_flags(I32, I32) -> errno;
    fd_fdstat_set_rights(I32, I64, I64) -> errno;
    fd_filestat_get(I32, I32) -> errno;
    fd_filestat_set_size(I32, I64) -> errno;
    fd_filestat_set_times(I32, I64, I64, I32) -> errno;
    fd_pread(I32, I32, I32, I64, I32) -> errno;
    fd_prestat_get(I32, I32) -> errno;
    fd_prestat_dir_name(I32, I32, I32) -> errno;
    fd_pwrite(I32, I32, I32, I64, I32) -> errno;
    fd_read(I32, I32, I32, I32) -> errno;
    fd_readdir(I32, I32, I32, I64, I32) -> errno;
    fd_renumber(I32, I32) -> errno;
    fd_seek(I32, I64, I32, I32) -> errno;
    fd_sync(I32) -> errno;
    fd_tell(I32, I32) -> errno;
    fd_write(I32, I32, I32, I32) -> errno;
    path_create_directory(I32, I32, I32) -> errno;
    path_filestat_get(I32, I32, I32, I32, I32) -> errno;
    path_filestat_set_times(I32, I32, I32, I32, I64, I64, I32) -> errno;
    path_link(I32, I32, I32, I32, I32, I32, I32) -> errno;
    path_open(I32, I32, I32, I32, I32, I64, I64, I32, I32) -> errno;
    path_readlink(I32, I32, I32, I32, I32, I32) -> errno;
    path_remove_directory(I32, I32, I32) -> errno;
    path_rename(I32, I32, I32, I32, I32, I32) -> errno;
    path_symlink(I32, I32, I32, I32, I32) -> errno;
    path_unlink_file(I32, I32, I32) -> errno;
    poll_oneoff(I32, I32, I32, I32) -> errno;
    proc_exit(I32);
    proc_raise(I32) -> errno;
    sched_yield() -> errno;
    random_get(I32, I32) -> errno;
    sock_accept(I32, I32, I32) -> errno;
    sock_recv(I32, I32, I32, I32, I32, I32) -> errno;
    sock_send(I32, I32, I32, I32, I32) -> errno;
    sock_shutdown(I32, I32) -> errno;
}

/// WASI preview 1 error numbers (`errno`), the ones this crate answers with.
pub mod errno {
    /// No error.
    pub const SUCCESS: i32 = 0;
    /// Resource unavailable, try again.
    pub const AGAIN: i32 = 6;
    /// Bad file descriptor.
    pub const BADF: i32 = 8;
    /// Bad address: a pointer outside the guest's memory.
    pub const FAULT: i32 = 21;
    /// Invalid argument.
    pub const INVAL: i32 = 28;
    /// I/O error.
    pub const IO: i32 = 29;
    /// Function not supported here.
    pub const NOSYS: i32 = 52;
    /// Not supported on this descriptor.
    pub const NOTSUP: i32 = 58;
    /// No such device or address.
    pub const NXIO: i32 = 60;
    /// Value too large to be stored.
    pub const OVERFLOW: i32 = 61;
    /// Invalid seek: the descriptor is a stream.
    pub const SPIPE: i32 = 70;
    /// File exists.
    pub const EXIST: i32 = 20;
    /// Illegal byte sequence (a path that is not UTF-8).
    pub const ILSEQ: i32 = 25;
    /// Is a directory.
    pub const ISDIR: i32 = 31;
    /// Too many open files.
    pub const MFILE: i32 = 33;
    /// Name too long.
    pub const NAMETOOLONG: i32 = 37;
    /// No such file or directory.
    pub const NOENT: i32 = 44;
    /// Not a directory.
    pub const NOTDIR: i32 = 54;
    /// Read-only file system.
    pub const ROFS: i32 = 69;
    /// Outside what the guest was given (a path above its preopened directory).
    pub const NOTCAPABLE: i32 = 76;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preview1_function_is_listed_once() {
        assert_eq!(IMPORTS.len(), 46);
        for (i, import) in IMPORTS.iter().enumerate() {
            assert_eq!(Func::from_index(i).map(|f| f as usize), Some(i));
            assert_eq!(IMPORTS.iter().filter(|other| other.name == import.name).count(), 1);
        }
        assert_eq!(Func::from_index(46), None);
        assert!(!IMPORTS[Func::proc_exit as usize].returns);
        assert_eq!(IMPORTS[Func::path_open as usize].params.len(), 9);
    }
}
