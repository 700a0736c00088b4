//! The two image formats a build writes, and what the artifact format can hold of a build.

use crate::Planned;
use spore_image::ArtifactImage;

/// The image format `spore build --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildFormat {
    /// The wasm and its files as tar layers, config `architecture: wasm` (runs on containerd's
    /// wasm shims too).
    #[default]
    Compat,
    /// The CNCF Wasm OCI artifact: the wasm alone.
    Artifact,
}

impl std::str::FromStr for BuildFormat {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        match s {
            "compat" => Ok(BuildFormat::Compat),
            "artifact" => Ok(BuildFormat::Artifact),
            other => Err(FormatError::Unknown(other.to_owned())),
        }
    }
}

impl std::fmt::Display for BuildFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildFormat::Compat => "compat",
            BuildFormat::Artifact => "artifact",
        })
    }
}

/// A build the chosen format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not a format.
    #[error("format {0:?}: write compat (the default) or artifact")]
    Unknown(String),
    /// The artifact holds only the wasm.
    #[error(
        "the artifact format holds only the wasm, but the Sporefile also puts {} in the image; build the compat format for images with files",
        .0.join(", ")
    )]
    FilesBesideTheWasm(Vec<String>),
    /// A platform the image cannot be named for.
    #[error("platform {given:?}: {why}")]
    Platform {
        /// As given.
        given: String,
        /// What is wrong and what would do.
        why: String,
    },
}

/// The OS names of the platforms an image is written for, from a `--platform` list
/// (`wasi/wasm,wasip1/wasm`); `detected` is the entrypoint's own (`wasip1` for a core module,
/// `wasip2` for a component). Docker names every wasm platform `wasi/wasm`; runwasi and Go name
/// a module's `wasip1/wasm`, and the Wasm OCI artifact a component's `wasip2/wasm`. A name the
/// wasm is not for is refused.
pub fn platforms(list: &str, detected: &str) -> Result<Vec<String>, FormatError> {
    let allowed = ["wasi", detected];
    let mut oses: Vec<String> = Vec::new();
    for given in list.split(',').map(str::trim) {
        let refuse = |why: String| FormatError::Platform { given: given.to_owned(), why };
        let Some((os, "wasm")) = given.split_once('/') else {
            return Err(refuse("write OS/wasm, as wasi/wasm or wasip1/wasm".into()));
        };
        if !allowed.contains(&os) {
            return Err(refuse(format!(
                "the entrypoint is a {} wasm; name it {}",
                match detected {
                    "wasip2" => "component",
                    _ => "core module",
                },
                allowed.map(|os| format!("{os}/wasm")).join(" or ")
            )));
        }
        if oses.iter().any(|o| o == os) {
            return Err(refuse("named twice".into()));
        }
        oses.push(os.to_owned());
    }
    Ok(oses)
}

/// The artifact image of `planned` — its entrypoint's wasm and OS, with a component's imports
/// and exports (`component`, read by whoever compiled it) — and the settings the artifact has
/// no place for, to be reported. Refused when the image has files besides the wasm.
pub fn artifact(
    planned: &Planned,
    component: Option<(Vec<String>, Vec<String>)>,
) -> Result<(ArtifactImage, Vec<&'static str>), FormatError> {
    let image = &planned.image;
    let others: Vec<String> =
        image.files.iter().filter(|(_, (bytes, _))| *bytes != planned.entry_wasm).map(|(f, _)| f.clone()).collect();
    if !others.is_empty() {
        return Err(FormatError::FilesBesideTheWasm(others));
    }
    let dropped = [
        ("ENV", !image.env.is_empty()),
        ("CMD", !image.cmd.is_empty()),
        ("WORKDIR", image.working_dir.is_some()),
        ("LABEL", !image.labels.is_empty()),
        ("EXPOSE", !image.exposed_ports.is_empty()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    Ok((ArtifactImage { wasm: planned.entry_wasm.clone(), os: image.os.clone(), component }, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildOptions, plan};
    use spore_image::ContentStore;

    fn planned(files: &[(&str, &[u8])], sporefile: &str) -> Planned {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        for (path, bytes) in files {
            std::fs::write(ctx.join(path), bytes).unwrap();
        }
        std::fs::write(ctx.join("Sporefile"), sporefile).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let opts =
            BuildOptions { context: ctx.clone(), sporefile: ctx.join("Sporefile"), build_args: Default::default() };
        plan(&opts, &store).unwrap()
    }

    #[test]
    fn platforms_are_the_names_the_wasm_may_go_by() {
        assert_eq!(platforms("wasi/wasm, wasip1/wasm", "wasip1").unwrap(), ["wasi", "wasip1"]);
        assert_eq!(platforms("wasip2/wasm", "wasip2").unwrap(), ["wasip2"]);
        for (list, detected, why) in [
            ("wasip2/wasm", "wasip1", "a core module wasm; name it wasi/wasm or wasip1/wasm"),
            ("wasip1/wasm", "wasip2", "a component wasm; name it wasi/wasm or wasip2/wasm"),
            ("linux/amd64", "wasip1", "write OS/wasm"),
            ("wasi", "wasip1", "write OS/wasm"),
            ("wasi/wasm,wasi/wasm", "wasip1", "named twice"),
        ] {
            let err = platforms(list, detected).unwrap_err().to_string();
            assert!(err.contains(why), "{list}: {err}");
        }
    }

    #[test]
    fn formats_read_as_written_and_the_artifact_holds_only_the_wasm() {
        for f in [BuildFormat::Compat, BuildFormat::Artifact] {
            assert_eq!(f.to_string().parse::<BuildFormat>(), Ok(f));
        }
        assert!("oci".parse::<BuildFormat>().unwrap_err().to_string().contains("compat (the default) or artifact"));

        let wasm = b"\0asm\x01\0\0\0";
        let only =
            planned(&[("app.wasm", wasm)], "FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n");
        let (image, dropped) = artifact(&only, None).unwrap();
        assert_eq!((image.wasm.as_slice(), dropped.len()), (&wasm[..], 0));

        let settings = planned(
            &[("app.wasm", wasm)],
            "FROM scratch\nCOPY app.wasm /app.wasm\nENV A=1\nCMD [\"x\"]\nENTRYPOINT [\"/app.wasm\"]\n",
        );
        assert_eq!(artifact(&settings, None).unwrap().1, ["ENV", "CMD"], "what the artifact drops is named");

        let files = planned(
            &[("app.wasm", wasm), ("extra.txt", b"x")],
            "FROM scratch\nCOPY app.wasm /app.wasm\nCOPY extra.txt /extra.txt\nENTRYPOINT [\"/app.wasm\"]\n",
        );
        let err = artifact(&files, None).unwrap_err().to_string();
        assert!(err.contains("holds only the wasm") && err.contains("/extra.txt"), "{err}");
    }
}
