//! The local image store from the command line: `load`, `save`, `images`, `tag`, `rmi`, and
//! the resolution of an image reference for `spore run`.

use crate::store::{open_store, resolve};
use anyhow::{Context, anyhow};
use clap::Args;
use spore_build::BuildFormat;
use spore_image::{CompatImage, OpenedImage, Reference, export_layout, extract_layer, import_layout, open_image};
use std::path::{Path, PathBuf};

/// Build an image from a Sporefile (Dockerfile syntax, without RUN).
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore build -t hello:v1 .
  spore build -f deploy/Sporefile --build-arg VERSION=2.0 -t ghcr.io/acme/app:2.0 .

A Sporefile:
  FROM scratch
  COPY target/wasm32-wasip1/release/app.wasm /app.wasm
  ENV LEVEL=info
  ENTRYPOINT [\"/app.wasm\"]")]
pub struct BuildArgs {
    /// The Sporefile [default: CONTEXT/Sporefile].
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name (and tag) for the image; repeatable.
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Value for an ARG: KEY=VALUE; repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = crate::flags::parse_env)]
    build_args: Vec<(String, String)>,
    /// Image format: compat (the wasm and its files; runs on containerd's wasm shims too) or
    /// artifact (the CNCF Wasm OCI artifact: the wasm alone).
    #[arg(long, default_value_t = BuildFormat::Compat, value_name = "compat|artifact")]
    format: BuildFormat,
    /// The platform names the image goes by: wasip1/wasm (a module's, the default) or
    /// wasip2/wasm (a component's), wasi/wasm (Docker's). Two, comma-separated, write an index
    /// listing the image under each (for tools that match the platform; containerd 1.6's CRI
    /// cannot pull an index).
    #[arg(long, value_name = "OS/wasm[,OS/wasm]")]
    platform: Option<String>,
    /// Pre-initialise the entrypoint: run EXPORT (default `wizer.initialize`) at build time,
    /// with the image's files read-only, and ship the state it leaves (as the Sporefile's
    /// INIT; this wins over it).
    #[arg(long, value_name = "EXPORT", num_args = 0..=1, require_equals = true, default_missing_value = spore_sandbox::DEFAULT_INIT_EXPORT)]
    init: Option<String>,
    /// The build context: what COPY can see.
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

pub fn build(args: BuildArgs, store_dir: &Path, cache_dir: PathBuf) -> anyhow::Result<i32> {
    let tags: Vec<Reference> = args.tags.iter().map(|t| t.parse()).collect::<Result<_, _>>()?;
    let store = open_store(store_dir)?;
    let opts = spore_build::BuildOptions {
        sporefile: args.file.clone().unwrap_or_else(|| args.context.join("Sporefile")),
        context: args.context.clone(),
        build_args: args.build_args.into_iter().collect(),
    };
    let mut planned = spore_build::plan(&opts, &store)?;
    for warning in &planned.warnings {
        eprintln!("warning: {warning}");
    }
    // Timed: an init at build time runs under a time limit.
    let config =
        spore_engine::EngineConfig::one_shot(Some(cache_dir), true).with_data_dirs(crate::paths::data_dirs(store_dir));
    let engine = spore_engine::SporeEngine::new(config)?;
    let init = match (&args.init, &planned.init) {
        (Some(export), _) => Some((export.clone(), "--init".to_owned())),
        (None, Some((export, line))) => Some((
            export.clone().unwrap_or_else(|| spore_sandbox::DEFAULT_INIT_EXPORT.into()),
            format!("Sporefile line {line}: INIT"),
        )),
        (None, None) => None,
    };
    if let Some((export, asked)) = init {
        crate::preinit::apply(&engine, &mut planned, &export).with_context(|| asked)?;
    }
    // Compile now, so the image's first run starts from the cache.
    let program = engine.load(&planned.entry_wasm).context("precompiling the entrypoint")?;
    let image = &planned.image;
    // Blobs are written before the tag names them: keep a concurrent prune off them.
    let _gc = store.gc_guard()?;
    let oses = match &args.platform {
        Some(list) => spore_build::platforms(list, &image.os).context("--platform")?,
        None => vec![image.os.clone()],
    };
    // What the format writes, made once; then written under each platform name.
    enum Target {
        Compat(CompatImage),
        Artifact(spore_image::ArtifactImage),
    }
    let mut target = match args.format {
        BuildFormat::Compat => Target::Compat(image.clone()),
        BuildFormat::Artifact => {
            let component = match &program.code {
                spore_engine::ProgramCode::Component(c) => {
                    let ty = c.component_type();
                    let names = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>();
                    Some((
                        names(&mut ty.imports(engine.wasmtime()).map(|(n, _)| n.to_owned())),
                        names(&mut ty.exports(engine.wasmtime()).map(|(n, _)| n.to_owned())),
                    ))
                }
                spore_engine::ProgramCode::Module(_) => None,
            };
            let (artifact, dropped) = spore_build::artifact(&planned, component).context("--format artifact")?;
            if !dropped.is_empty() {
                eprintln!(
                    "warning: the artifact format has no place for {}; they are not in the image",
                    dropped.join(", ")
                );
            }
            Target::Artifact(artifact)
        }
    };
    let mut each = Vec::new();
    for os in &oses {
        let written = match &mut target {
            Target::Compat(image) => {
                image.os = os.clone();
                image.write(&store)?
            }
            Target::Artifact(artifact) => {
                artifact.os = os.clone();
                artifact.write(&store)?
            }
        };
        each.push((written, os.clone()));
    }
    let written = match each.len() {
        1 => each.remove(0).0,
        _ => spore_image::write_index(&store, &each)?,
    };
    for tag in &tags {
        store.set_ref(tag, written.manifest)?;
        println!("Tagged {tag}");
    }
    let platforms: Vec<String> = oses.iter().map(|os| format!("{os}/wasm")).collect();
    println!("Built {} ({} bytes, {}, {})", written.manifest, written.total_size, platforms.join(", "), args.format);
    Ok(0)
}

/// Load images from an OCI layout (a directory, or a .tar of one).
#[derive(Args)]
#[command(after_help = "Examples:\n  spore load -i ./hello-layout\n  spore load -i hello.tar")]
pub struct LoadArgs {
    /// The layout directory or tar file.
    #[arg(short, long, value_name = "DIR|FILE.tar")]
    input: PathBuf,
}

pub fn load(args: LoadArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = open_store(store_dir)?;
    let meta = std::fs::metadata(&args.input).with_context(|| format!("-i {}", args.input.display()))?;
    let loaded = if meta.is_dir() {
        import_layout(&store, &args.input)
    } else {
        let tmp = tempfile::tempdir_in(store.root())?;
        let file = std::fs::File::open(&args.input).with_context(|| format!("-i {}", args.input.display()))?;
        extract_layer(std::io::BufReader::new(file), tmp.path())
            .with_context(|| format!("-i {}", args.input.display()))?;
        import_layout(&store, tmp.path())
    }
    .with_context(|| format!("loading {}", args.input.display()))?;
    for name in loaded {
        println!("Loaded image: {name}");
    }
    Ok(0)
}

/// Save an image as an OCI layout (a directory, or a .tar of one).
#[derive(Args)]
#[command(after_help = "Examples:\n  spore save hello -o ./hello-layout\n  spore save hello -o hello.tar")]
pub struct SaveArgs {
    /// The image.
    image: String,
    /// Where: a directory, or a path ending in .tar.
    #[arg(short, long, value_name = "DIR|FILE.tar")]
    output: PathBuf,
}

pub fn save(args: SaveArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = open_store(store_dir)?;
    let (name, manifest) = resolve(&store, &args.image, store_dir)?;
    if args.output.extension().is_some_and(|e| e == "tar") {
        let tmp = tempfile::tempdir_in(store.root())?;
        export_layout(&store, &name, manifest, tmp.path())?;
        let mut tar = tar::Builder::new(
            std::fs::File::create(&args.output).with_context(|| format!("-o {}", args.output.display()))?,
        );
        tar.mode(tar::HeaderMode::Deterministic);
        tar.append_dir_all(".", tmp.path())?;
        tar.finish()?;
    } else {
        export_layout(&store, &name, manifest, &args.output)
            .with_context(|| format!("-o {}", args.output.display()))?;
    }
    println!("Saved {name} to {}", args.output.display());
    Ok(0)
}

/// List images in the local store.
#[derive(Args)]
pub struct ImagesArgs {}

pub fn images(_args: ImagesArgs, store_dir: &Path, json: bool) -> anyhow::Result<i32> {
    let store = open_store(store_dir)?;
    let mut rows = Vec::new();
    for (name, digest) in store.refs()? {
        let size: u64 = open_image(&store, digest)
            .map(|o| blobs_of(&o).iter().filter_map(|d| std::fs::metadata(store.path(d)).ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
            + std::fs::metadata(store.path(&digest)).map(|m| m.len()).unwrap_or(0);
        rows.push((name, digest, size));
    }
    if json {
        let list: Vec<_> =
            rows.iter().map(|(n, d, s)| serde_json::json!({"name": n, "digest": d.to_string(), "size": s})).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    println!("{:<50}  {:<19}  {:>10}", "IMAGE", "DIGEST", "SIZE");
    for (name, digest, size) in rows {
        println!("{name:<50}  {:<19}  {:>10}", digest.short(), spore_sandbox::human_bytes(size));
    }
    Ok(0)
}

fn blobs_of(o: &OpenedImage) -> Vec<spore_engine::Digest> {
    o.tree_layers.iter().copied().chain(o.wasm_layer).collect()
}

/// Give an image another name.
#[derive(Args)]
pub struct TagArgs {
    /// Existing image.
    source: String,
    /// New name.
    target: String,
}

pub fn tag(args: TagArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = open_store(store_dir)?;
    let (_, manifest) = resolve(&store, &args.source, store_dir)?;
    let target: Reference = args.target.parse()?;
    store.set_ref(&target, manifest)?;
    Ok(0)
}

/// Remove image names (their blobs stay until pruned).
#[derive(Args)]
pub struct RmiArgs {
    /// Image names.
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn rmi(args: RmiArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = open_store(store_dir)?;
    let mut failed = false;
    for image in &args.images {
        let result =
            image.parse::<Reference>().map_err(anyhow::Error::from).and_then(|r| match store.remove_ref(&r)? {
                Some(_) => Ok(r),
                None => Err(anyhow!("no such image in the local store")),
            });
        match result {
            Ok(r) => println!("Untagged: {r}"),
            Err(e) => {
                eprintln!("spore: {image}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Work on images: inspect, prune.
#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Show an image's manifest, config and layers as JSON.
    Inspect(ImageInspectArgs),
    /// Delete every blob no image name (and no daemon program) uses.
    Prune(PruneArgs),
}

/// Show images as JSON.
#[derive(Args)]
pub struct ImageInspectArgs {
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Delete unreferenced blobs and unpacked roots.
#[derive(Args)]
pub struct PruneArgs {}

pub fn image(command: ImageCommand, store_dir: &Path, json: bool) -> anyhow::Result<i32> {
    match command {
        ImageCommand::Inspect(args) => {
            let mut failed = false;
            for image in &args.images {
                match inspect_one(image, store_dir) {
                    Ok(doc) => println!("{}", serde_json::to_string_pretty(&doc)?),
                    Err(e) => {
                        eprintln!("spore: {image}: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        ImageCommand::Prune(PruneArgs {}) => {
            let store = open_store(store_dir)?;
            let pruned = store.prune()?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"blobs": pruned.blobs, "bytes": pruned.bytes, "roots": pruned.roots, "leftovers": pruned.leftovers})
                );
            } else {
                println!(
                    "Deleted {} blob(s) and {} unpacked root(s); reclaimed {}",
                    pruned.blobs,
                    pruned.roots,
                    spore_sandbox::human_bytes(pruned.bytes)
                );
                if pruned.leftovers > 0 {
                    println!("Removed {} leftover(s) of interrupted writes", pruned.leftovers);
                }
            }
            Ok(0)
        }
    }
}

/// One image as JSON: its names, digests, format, process settings and layers.
pub fn inspect_one(image: &str, store_dir: &Path) -> anyhow::Result<serde_json::Value> {
    let store = open_store(store_dir)?;
    let (reference, top) = resolve(&store, image, store_dir)?;
    let opened = open_image(&store, top)?;
    let manifest_bytes = store.get(&opened.manifest)?;
    let doc = spore_image::Document::parse(&manifest_bytes, opened.manifest)?;
    let raw: serde_json::Value = serde_json::from_slice(&manifest_bytes)?;
    let config = match &doc.config {
        Some(c) => serde_json::from_slice::<serde_json::Value>(&store.get(&c.digest(opened.manifest)?)?)
            .unwrap_or(serde_json::Value::Null),
        None => serde_json::Value::Null,
    };
    let names: Vec<String> = store.refs()?.into_iter().filter(|(_, d)| *d == top).map(|(n, _)| n).collect();
    let layers: Vec<_> = doc
        .layers
        .iter()
        .map(|l| serde_json::json!({"digest": l.digest_text, "mediaType": l.media_type, "size": l.size}))
        .collect();
    let size: u64 = manifest_bytes.len() as u64 + doc.blobs().map(|b| b.size).sum::<u64>();
    let format = if opened.wasm_layer.is_some() && opened.tree_layers.is_empty() { "artifact" } else { "compat" };
    Ok(serde_json::json!({
        "Name": reference.to_string(),
        "Names": names,
        "Digest": top.to_string(),
        "Manifest": opened.manifest.to_string(),
        "MediaType": doc.media_type,
        "Format": format,
        "Architecture": "wasm",
        "Os": opened.os,
        "Entrypoint": opened.argv.iter().take(opened.entrypoint_len).collect::<Vec<_>>(),
        "Cmd": opened.argv.iter().skip(opened.entrypoint_len).collect::<Vec<_>>(),
        "Env": opened.env,
        "WorkingDir": opened.working_dir,
        "Annotations": raw.get("annotations"),
        "Layers": layers,
        "Size": size,
        "Config": config,
    }))
}
