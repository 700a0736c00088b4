//! Any bytes are an OCI manifest or index (whose descriptors then yield digests or errors, and
//! whose wasm platform is found or refused) or an `ImageError` — never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_image::Document;
use spore_types::Digest;

fuzz_target!(|bytes: &[u8]| {
    let digest = Digest::of(bytes);
    let Ok(doc) = Document::parse(bytes, digest) else { return };
    for d in doc.manifests.iter().chain(doc.blobs()) {
        let _ = d.digest(digest);
    }
    if doc.is_index() {
        let _ = doc.wasm_platform(digest);
    }
});
