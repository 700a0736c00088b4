//! Finding the app attached to the runner's own executable, and mapping it once for the life
//! of the process (so the embedded files are borrowed, never copied, and only the pages a
//! guest reads are ever read from disk).

use spore_wire::bundle::{Bundle, Span, Trailer};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// An attached app: its header, and the bytes its spans point into.
pub struct Payload {
    /// What the bundle holds and how it starts.
    pub header: Bundle,
    bytes: &'static [u8],
}

impl Payload {
    /// The bytes at `span` (checked against the payload when it was read).
    pub(crate) fn at(&self, span: Span) -> &'static [u8] {
        &self.bytes[span.offset as usize..(span.offset + span.len) as usize]
    }
}

/// The app attached to this executable, if it is a bundle: `Ok(None)` for a plain runner.
/// A bundle whose payload does not hold together is an error that says so.
pub fn attached() -> Result<Option<Payload>, String> {
    let file = own_executable()?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let Some(at) = len.checked_sub(Trailer::LEN as u64) else { return Ok(None) };
    let mut last = [0u8; Trailer::LEN];
    if file.read_exact_at(&mut last, at).is_err() {
        return Ok(None);
    }
    let Some(trailer) = Trailer::parse(&last) else { return Ok(None) };
    let whole = map(&file, len).map_err(|e| format!("cannot map the bundle into memory: {e}"))?;
    read(whole, trailer)
        .map(Some)
        .map_err(|why| format!("this bundle is damaged ({why}); make it again with spore bundle"))
}

/// This process's executable: `/proc/self/exe`, the file itself even if it was renamed or
/// removed since it started; where `/proc` is not mounted, the path it was started by (its
/// `argv[0]`, looked up in `PATH` when it names no directory). Not finding itself is an error,
/// not "no app": a bundle would otherwise take its app's arguments as a runner's flags.
fn own_executable() -> Result<File, String> {
    let proc = match File::open("/proc/self/exe") {
        Ok(file) => return Ok(file),
        Err(e) => e,
    };
    let argv0 = std::env::args_os().next().map(PathBuf::from).unwrap_or_default();
    let found = match argv0.components().count() {
        0 => None,
        1 => std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(&argv0)).find(|p| p.is_file())),
        _ => Some(argv0.clone()),
    };
    found.and_then(|path| File::open(path).ok()).ok_or_else(|| {
        format!(
            "cannot open its own executable to look for an attached app (/proc/self/exe: {proc}; \
             nor {argv0:?} from its command line); mount /proc, or start it by its path"
        )
    })
}

/// The payload and header `trailer` points at in `whole` (the executable, trailer last).
fn read(whole: &'static [u8], trailer: Trailer) -> Result<Payload, String> {
    let end = whole.len() - Trailer::LEN;
    let header_start = usize::try_from(trailer.header_len)
        .ok()
        .and_then(|l| end.checked_sub(l))
        .ok_or("its header is longer than the file")?;
    let start = usize::try_from(trailer.payload)
        .ok()
        .filter(|&p| p <= header_start)
        .ok_or("its payload starts after its header")?;
    let header = Bundle::decode(&whole[header_start..end]).map_err(|e| format!("its header does not read: {e}"))?;
    let bytes = &whole[start..header_start];
    let fits = |s: &Span| s.offset.checked_add(s.len).is_some_and(|e| e <= bytes.len() as u64);
    if !fits(&header.artifact) || !header.files.iter().filter_map(|f| f.data.as_ref()).all(fits) {
        return Err("a part of it lies outside its payload".into());
    }
    // Each file's path names a place below the root, once: `a/b`, never `/a`, `a//b` or `../a`.
    let below_root = |path: &str| path.split('/').all(|part| !matches!(part, "" | "." | ".."));
    if let Some(bad) = header.files.iter().find(|f| !below_root(&f.path)) {
        return Err(format!("its file {:?} is not a path inside its root", bad.path));
    }
    Ok(Payload { header, bytes })
}

/// `len` bytes of `file`, mapped read-only and never unmapped.
fn map(file: &File, len: u64) -> std::io::Result<&'static [u8]> {
    use std::os::fd::AsRawFd;
    let len = usize::try_from(len).map_err(|_| std::io::Error::other("the file is larger than memory"))?;
    // SAFETY: a fresh private read-only mapping of a file we hold open; the mapping outlives the
    // descriptor, and is never unmapped, so the slice is valid for the rest of the process.
    // A bundle that is rewritten while it runs is the same hazard as any running executable's.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the mapping above is `len` readable bytes that live as long as the process.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spore_wire::bundle::File as Entry;
    use spore_wire::{Limits, ModuleKind};

    fn leak(v: Vec<u8>) -> &'static [u8] {
        Box::leak(v.into_boxed_slice())
    }

    /// A runner of `pad` bytes with `payload` and a header of `files` attached.
    fn bundle(pad: usize, payload: &[u8], files: Vec<Entry>) -> (Vec<u8>, Trailer) {
        let header = Bundle {
            image: "img".into(),
            digest: "sha256:00".into(),
            kind: ModuleKind::Native,
            compat: "c".into(),
            artifact: Span { offset: 0, len: 2 },
            argv: vec!["/app.wasm".into()],
            entrypoint_len: 1,
            env: vec![],
            limits: Limits::default(),
            files,
        };
        let layout = spore_wire::bundle::Layout::new(pad, &header).unwrap();
        let parts: [&[u8]; 4] = [&vec![0x7f; pad], &vec![0; layout.padding], payload, &layout.tail];
        let out = parts.concat();
        let trailer = Trailer::parse(&out[out.len() - Trailer::LEN..]).unwrap();
        (out, trailer)
    }

    #[test]
    fn a_payload_reads_back_and_its_spans_are_checked() {
        let file = Entry { path: "a.txt".into(), data: Some(Span { offset: 2, len: 3 }) };
        let (whole, trailer) = bundle(100, b"ARabc", vec![file]);
        let payload = read(leak(whole), trailer).unwrap();
        assert_eq!(payload.at(payload.header.artifact), b"AR");
        assert_eq!(payload.at(payload.header.files[0].data.unwrap()), b"abc");

        let past = Entry { path: "b".into(), data: Some(Span { offset: 4, len: 2 }) };
        let (whole, trailer) = bundle(100, b"ARabc", vec![past]);
        let err = read(leak(whole), trailer).err().unwrap();
        assert!(err.contains("outside its payload"), "{err}");

        for path in ["", "..", "a/../../etc", "/etc/passwd", "a//b", "./a"] {
            let odd = Entry { path: path.into(), data: None };
            let (whole, trailer) = bundle(100, b"ARabc", vec![odd]);
            let err = read(leak(whole), trailer).err().unwrap();
            assert!(err.contains("not a path inside its root"), "{path:?}: {err}");
        }

        let huge = Entry { path: "c".into(), data: Some(Span { offset: u64::MAX, len: 2 }) };
        let (whole, trailer) = bundle(100, b"ARabc", vec![huge]);
        assert!(read(leak(whole), trailer).is_err(), "an offset that overflows is refused");
    }

    #[test]
    fn a_trailer_that_points_outside_the_file_is_refused() {
        let (whole, trailer) = bundle(10, b"AR", vec![]);
        let long = Trailer { header_len: whole.len() as u64, ..trailer };
        assert!(read(leak(whole.clone()), long).err().unwrap().contains("longer than the file"));
        let late = Trailer { payload: whole.len() as u64, ..trailer };
        assert!(read(leak(whole.clone()), late).err().unwrap().contains("after its header"));
        let short = Trailer { header_len: 1, ..trailer };
        assert!(read(leak(whole), short).err().unwrap().contains("does not read"));
    }
}
