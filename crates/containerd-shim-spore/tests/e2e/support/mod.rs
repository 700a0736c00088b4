#![allow(dead_code)]
//! What the shim's tests (and the Kubernetes benchmark) share: the guests, a PATH dir holding
//! only the shim, images pushed to a real registry, and a CRI client.

pub mod cri;
#[path = "../../../../../tests/e2e/support/peers.rs"]
pub mod peers;

use peers::Registry;
use spore_image::{CompatImage, ContentStore, Reference, export_layout};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test guest built by `guests/build.sh`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../guests/out")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|_| panic!("{} is missing: run guests/build.sh", path.display()))
}

/// A directory holding only the shim (`shim` is its path), for containerd's PATH.
pub fn shim_dir(dir: &Path, shim: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(shim, bin.join("containerd-shim-spore-v1")).unwrap();
    bin
}

/// An image to push: Spore's compat format (one tar.gz layer).
pub struct Image<'a> {
    pub name: &'a str,
    /// `wasip1`/`wasip2` for Spore images; `linux` for the pod sandbox image.
    pub os: &'a str,
    pub files: Vec<(&'a str, Vec<u8>)>,
    pub entrypoint: &'a [&'a str],
}

impl Image<'_> {
    /// A Spore image holding one wasm file, which is its entrypoint.
    pub fn wasm<'a>(name: &'a str, path: &'a str, bytes: Vec<u8>, entrypoint: &'a [&'a str]) -> Image<'a> {
        Image { name, os: "wasip1", files: vec![(path, bytes)], entrypoint }
    }

    /// Pushes it to the registry with skopeo (from an OCI layout written by Spore's image code),
    /// as `<registry>/shim/<name>:v1`, which it returns.
    pub fn push(&self, reg: &Registry, work: &Path) -> String {
        let store = ContentStore::open(&work.join("store")).unwrap();
        let mut image = CompatImage { os: self.os.into(), ..Default::default() };
        for (path, bytes) in &self.files {
            image.files.insert((*path).into(), (bytes.clone(), 0o755));
        }
        image.entrypoint = self.entrypoint.iter().map(|s| s.to_string()).collect();
        let written = image.write(&store).unwrap();
        let reference = format!("{}/shim/{}:v1", reg.addr, self.name);
        let layout = work.join(format!("layout-{}", self.name));
        export_layout(&store, &reference.parse::<Reference>().unwrap(), written.manifest, &layout).unwrap();
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo is not installed: run scripts/setup");
        assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
        reference
    }
}

/// Builds the Sporefile in `context` as `spore build` does, and saves the image as `spore save
/// -o FILE.tar` does (an OCI layout in a tar, named `reference`): what `ctr images import` reads.
pub fn build_archive(context: &Path, reference: &str, archive: &Path) -> PathBuf {
    build_archive_for(context, reference, archive, &[])
}

/// As [`build_archive`], for the platforms `oses` names as `spore build --platform` does (none:
/// the wasm's own; two or more: an index listing the image under each).
pub fn build_archive_for(context: &Path, reference: &str, archive: &Path, oses: &[&str]) -> PathBuf {
    let store = ContentStore::open(&context.join("../build-store")).unwrap();
    let opts = spore_build::BuildOptions {
        context: context.to_owned(),
        sporefile: context.join("Sporefile"),
        build_args: Default::default(),
    };
    let planned = spore_build::plan(&opts, &store).unwrap_or_else(|e| panic!("spore build: {e}"));
    let top = match oses {
        [] => planned.image.write(&store).unwrap().manifest,
        _ => {
            let each: Vec<_> = oses
                .iter()
                .map(|os| {
                    (CompatImage { os: (*os).into(), ..planned.image.clone() }.write(&store).unwrap(), (*os).into())
                })
                .collect();
            spore_image::write_index(&store, &each).unwrap().manifest
        }
    };
    let layout = tempfile::tempdir().unwrap();
    export_layout(&store, &reference.parse::<Reference>().unwrap(), top, layout.path()).unwrap();
    let mut tar = tar::Builder::new(std::fs::File::create(archive).unwrap());
    tar.append_dir_all(".", layout.path()).unwrap();
    tar.finish().unwrap();
    archive.to_owned()
}

/// The pod sandbox ("pause") image every pod needs, made here from Debian's static busybox
/// (there is no internet to pull `registry.k8s.io/pause`): it sleeps until killed.
pub fn pause_image() -> Image<'static> {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox is missing: run scripts/setup (busybox-static)");
    Image {
        name: "pause",
        os: "linux",
        files: vec![("/bin/busybox", busybox)],
        entrypoint: &["/bin/busybox", "sleep", "2147483647"],
    }
}
