//! Any bytes unpacked as a layer (tar or tar+gzip) either unpack inside the root — no file
//! outside it, every link resolving inside — or fail with an `ExtractError`; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_image::{ExtractLimits, Unpacker};

fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let limits = ExtractLimits { max_bytes: 1 << 20, max_entries: 256 };
    let mut unpacker = Unpacker::new(&root, limits).expect("root");
    if unpacker.layer(bytes).is_ok() {
        let _ = unpacker.finish();
    }
    // Nothing was written beside the root.
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, ["root"], "the layer wrote outside its root");
});
