//! App manifests: `spore.toml`, which is Spin's `spin.toml` (manifest version 2) where the two
//! overlap, so a Spin app runs with `spore up` unchanged.
//!
//! ```toml
//! spin_manifest_version = 2
//! [application]
//! name = "shop"
//! [variables]
//! greeting = { default = "Hello" }
//! api_key = { required = true }
//! [[trigger.http]]
//! route = "/hello/..."
//! component = "hello"
//! [component.hello]
//! source = "hello.wasm"                      # a file (relative to the manifest) or an image
//! files = [{ source = "static", destination = "/static" }, "assets"]
//! allowed_outbound_hosts = ["https://api.example.com"]
//! key_value_stores = ["default"]
//! environment = { LEVEL = "debug" }
//! [component.hello.variables]
//! message = "{{ greeting }}, world"
//! ```
//!
//! Keys Spore does not read are warnings, one per key. Errors (an unknown component, a bad or
//! duplicate route, a missing required variable) name the file and line.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A manifest, checked and resolved against variables.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `[application] name`.
    pub name: String,
    /// Components by id.
    pub components: BTreeMap<String, Component>,
    /// `(route, component id)`, in file order.
    pub routes: Vec<(String, String)>,
    /// What was ignored, named.
    pub warnings: Vec<String>,
}

/// One component, resolved.
#[derive(Debug, Clone)]
pub struct Component {
    /// A file path (resolved against the manifest's directory) or an image reference.
    pub source: Source,
    /// Host directory → guest path, read-only.
    pub mounts: Vec<(PathBuf, String)>,
    /// Outbound HTTP grants.
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store grants.
    pub key_value_stores: Vec<String>,
    /// SQLite database grants.
    pub sqlite_databases: Vec<String>,
    /// Environment.
    pub environment: BTreeMap<String, String>,
    /// `wasi:config` values, templates filled in.
    pub variables: BTreeMap<String, String>,
}

/// Where a component's wasm comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// An image reference.
    Image(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    spin_manifest_version: Option<toml::Value>,
    #[serde(default)]
    application: Option<RawApplication>,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: Option<RawTriggers>,
    #[serde(default)]
    component: BTreeMap<String, Spanned<RawComponent>>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawApplication {
    #[serde(default)]
    name: Option<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawVariable {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<Spanned<RawHttpTrigger>>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: Spanned<String>,
    component: Spanned<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFile {
    Path(String),
    Map { source: String, destination: String },
}

#[derive(Deserialize)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

/// Values for a manifest's variables from outside it. The command line's win over the
/// environment's, which win over the manifest's defaults.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--var NAME=VALUE`.
    pub flags: BTreeMap<String, String>,
    /// `SPORE_VARIABLE_<NAME>` (over `SPIN_VARIABLE_<NAME>`), by lower-cased name: see
    /// [`Given::from_environment`].
    pub environment: BTreeMap<String, String>,
}

impl Given {
    /// The variables an environment gives (`vars` as `std::env::vars()` lists them; the binary
    /// reads its environment, this only picks from it): `SPORE_VARIABLE_<NAME>` over
    /// `SPIN_VARIABLE_<NAME>`, NAME upper-case as Spin writes it, lower-cased as manifests do.
    pub fn from_environment(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
        let mut spin = BTreeMap::new();
        let mut spore = BTreeMap::new();
        for (key, value) in vars {
            let upper = |name: &str| name == name.to_ascii_uppercase();
            if let Some(name) = key.strip_prefix("SPORE_VARIABLE_").filter(|n| upper(n)) {
                spore.insert(name.to_ascii_lowercase(), value);
            } else if let Some(name) = key.strip_prefix("SPIN_VARIABLE_").filter(|n| upper(n)) {
                spin.insert(name.to_ascii_lowercase(), value);
            }
        }
        spin.extend(spore);
        spin
    }
}

/// Line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A manifest that cannot be read; the message names the file, the line where it helps, and
/// the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(String);

/// Reads `file`, its variables filled from `given` and then from their defaults.
pub fn load(file: &Path, given: &Given) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(file).map_err(|e| ManifestError(format!("{}: {e}", file.display())))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &file.display().to_string(), &dir, given)
}

/// Reads a manifest's `text`, shown in messages as `shown`, whose relative paths are under
/// `dir` (which it looks at: files must lie inside it).
pub fn parse(text: &str, shown: &str, dir: &Path, given: &Given) -> Result<Manifest, ManifestError> {
    read(text, shown, dir, given).map_err(ManifestError)
}

fn read(text: &str, shown: &str, dir: &Path, given: &Given) -> Result<Manifest, String> {
    let at = |offset: usize, message: String| format!("{shown}:{}: {message}", line_of(text, offset));
    let raw: Raw = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span.start, e.message().to_owned()),
        None => format!("{shown}: {e}"),
    })?;
    let dir = dir.to_path_buf();
    let mut warnings = Vec::new();
    let unknown = |warnings: &mut Vec<String>, what: &str, extra: &BTreeMap<String, toml::Value>| {
        for key in extra.keys() {
            warnings.push(format!("{shown}: {what}{key} is not supported by Spore; ignored"));
        }
    };
    if let Some(v) = &raw.spin_manifest_version
        && v.as_integer() != Some(2)
    {
        return Err(format!("{shown}: spin_manifest_version {v} is not supported; Spore reads version 2"));
    }
    unknown(&mut warnings, "", &raw.extra);
    let name = match &raw.application {
        Some(app) => {
            unknown(&mut warnings, "[application] ", &app.extra);
            app.name.clone().unwrap_or_else(|| "app".into())
        }
        None => "app".into(),
    };

    // Application variables: command line, then environment, then default.
    let mut values = BTreeMap::new();
    for (key, decl) in &raw.variables {
        let value = given.flags.get(key).or_else(|| given.environment.get(&key.to_ascii_lowercase())).cloned();
        match value.or_else(|| decl.default.clone()) {
            Some(v) => {
                values.insert(key.clone(), v);
            }
            None if decl.required => {
                return Err(format!(
                    "{shown}: variable {key} is required; give it with --var {key}=VALUE or SPORE_VARIABLE_{}",
                    key.to_ascii_uppercase()
                ));
            }
            None => {}
        }
        let _ = decl.secret;
    }
    for key in given.flags.keys().filter(|k| !raw.variables.contains_key(*k)) {
        warnings.push(format!("--var {key}: the manifest declares no variable {key}; ignored"));
    }

    let mut components = BTreeMap::new();
    for (id, spanned) in &raw.component {
        let c = spanned.get_ref();
        let offset = spanned.span().start;
        unknown(&mut warnings, &format!("[component.{id}] "), &c.extra);
        let source = match &c.source {
            toml::Value::String(s) => {
                let path = dir.join(s);
                if path.exists() || s.ends_with(".wasm") { Source::File(path) } else { Source::Image(s.clone()) }
            }
            _ => {
                return Err(at(
                    offset,
                    format!(
                        "[component.{id}] source must be a file path or an image reference; URL sources are not fetched (download the wasm first)"
                    ),
                ));
            }
        };
        let mut mounts = Vec::new();
        // An app's files are the app's: a manifest (perhaps someone else's) mounts nothing
        // from outside its own directory, however it spells the path.
        let inside = |source: &str| -> Result<PathBuf, String> {
            let path = dir.join(source);
            let outside = Path::new(source).is_absolute()
                || match (std::fs::canonicalize(&path), std::fs::canonicalize(&dir)) {
                    (Ok(real), Ok(root)) => !real.starts_with(root),
                    _ => Path::new(source).components().any(|c| c == std::path::Component::ParentDir),
                };
            match outside {
                true => Err(at(
                    offset,
                    format!(
                        "[component.{id}] files: {source:?} is outside the app's directory {}; an app's files must be inside it",
                        dir.display()
                    ),
                )),
                false => Ok(path),
            }
        };
        for f in &c.files {
            match f {
                RawFile::Map { source, destination } => mounts.push((inside(source)?, destination.clone())),
                RawFile::Path(p) => {
                    // Directories (or `dir/**`) are mounted where the guest expects them; single
                    // files and other globs cannot be preopened one by one.
                    let d = p.trim_end_matches("/**").trim_end_matches("/*");
                    inside(d)?;
                    if dir.join(d).is_dir() {
                        mounts.push((dir.join(d), format!("/{}", d.trim_start_matches("./"))));
                    } else {
                        warnings.push(format!(
                            "{shown}: [component.{id}] files entry {p:?} is not a directory; Spore mounts directories (write {{ source = \"DIR\", destination = \"/DIR\" }})"
                        ));
                    }
                }
            }
        }
        let mut variables = BTreeMap::new();
        for (k, template) in &c.variables {
            variables.insert(
                k.clone(),
                fill(template, &values).map_err(|e| at(offset, format!("[component.{id}.variables] {k}: {e}")))?,
            );
        }
        // Spin fills application variables into outbound hosts and the environment as well.
        let allowed_outbound_hosts = c
            .allowed_outbound_hosts
            .iter()
            .map(|h| {
                fill(h, &values).map_err(|e| at(offset, format!("[component.{id}] allowed_outbound_hosts {h:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut environment = BTreeMap::new();
        for (k, template) in &c.environment {
            let value =
                fill(template, &values).map_err(|e| at(offset, format!("[component.{id}] environment {k}: {e}")))?;
            environment.insert(k.clone(), value);
        }
        components.insert(
            id.clone(),
            Component {
                source,
                mounts,
                allowed_outbound_hosts,
                key_value_stores: c.key_value_stores.clone(),
                sqlite_databases: c.sqlite_databases.clone(),
                environment,
                variables,
            },
        );
    }

    let mut routes = Vec::new();
    let mut seen = router::Router::default();
    if let Some(t) = &raw.trigger {
        // An app with another kind of trigger would run only in part: refused, not warned.
        if let Some(kind) = t.extra.keys().next() {
            return Err(format!(
                "{shown}: [[trigger.{kind}]]: Spore runs HTTP apps only ([[trigger.http]]); the {kind} trigger is not supported"
            ));
        }
        for trigger in &t.http {
            let tr = trigger.get_ref();
            unknown(&mut warnings, "[[trigger.http]] ", &tr.extra);
            let component = tr.component.get_ref();
            if !components.contains_key(component) {
                return Err(at(
                    tr.component.span().start,
                    format!(
                        "[[trigger.http]] names component {component:?}, which has no [component.{component}]; components: {}",
                        components.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let route = tr.route.get_ref();
            seen.add(route, ()).map_err(|e| at(tr.route.span().start, e.to_string()))?;
            routes.push((route.clone(), component.clone()));
        }
    }
    if routes.is_empty() {
        return Err(format!(
            "{shown}: no [[trigger.http]] routes; add one with route = \"/...\" and component = \"ID\""
        ));
    }
    Ok(Manifest { name, components, routes, warnings })
}

use crate::router;

/// Fills `{{ name }}` from `values`.
fn fill(template: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("an unclosed {{")? + start;
        let name = rest[start + 2..end].trim();
        let value =
            values.get(name).ok_or_else(|| format!("{{{{ {name} }}}} names no application variable with a value"))?;
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("spin.toml");
        std::fs::write(&f, text).unwrap();
        f
    }

    #[test]
    fn reads_a_spin_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        let f = write(
            dir.path(),
            r#"spin_manifest_version = 2
[application]
name = "shop"
authors = ["x"]
[variables]
greeting = { default = "Hello" }
[[trigger.http]]
route = "/hello/..."
component = "hello"
[component.hello]
source = "hello.wasm"
files = ["static", { source = "static", destination = "/www" }]
allowed_outbound_hosts = ["https://api.example.com"]
key_value_stores = ["default"]
environment = { LEVEL = "debug" }
build = { command = "cargo build" }
[component.hello.variables]
message = "{{ greeting }}, world"
"#,
        );
        let m = load(&f, &Given::default()).unwrap();
        assert_eq!(m.name, "shop");
        assert_eq!(m.routes, [("/hello/...".to_owned(), "hello".to_owned())]);
        let c = &m.components["hello"];
        assert_eq!(c.source, Source::File(dir.path().join("hello.wasm")));
        assert_eq!(c.variables["message"], "Hello, world");
        assert_eq!(c.mounts.len(), 2);
        assert!(
            m.warnings.iter().any(|w| w.contains("authors")) && m.warnings.iter().any(|w| w.contains("build")),
            "{:?}",
            m.warnings
        );
        // The command line over the environment (SPORE_ over SPIN_) over the default.
        let environment = Given::from_environment([
            ("SPIN_VARIABLE_GREETING".to_owned(), "Spin".to_owned()),
            ("SPORE_VARIABLE_GREETING".to_owned(), "Hey".to_owned()),
            ("HOME".to_owned(), "/home/app".to_owned()),
            ("SPORE_VARIABLE_greeting".to_owned(), "lower-case names are not Spin's".to_owned()),
        ]);
        assert_eq!(environment, BTreeMap::from([("greeting".to_owned(), "Hey".to_owned())]));
        let mut given = Given { flags: BTreeMap::new(), environment };
        assert_eq!(load(&f, &given).unwrap().components["hello"].variables["message"], "Hey, world");
        given.flags.insert("greeting".to_owned(), "Hi".to_owned());
        assert_eq!(load(&f, &given).unwrap().components["hello"].variables["message"], "Hi, world");
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let base = "[component.a]\nsource = \"a.wasm\"\n";
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
        let cases = [
            (format!("{base}[[trigger.http]]\nroute = \"/x\"\ncomponent = \"b\"\n"), 5, "no [component.b]"),
            (format!("{base}[[trigger.http]]\nroute = \"x\"\ncomponent = \"a\"\n"), 4, "must start with /"),
            (
                format!(
                    "{base}[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\n[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\n"
                ),
                7,
                "duplicates",
            ),
            ("[variables]\nk = { required = true }\n".to_owned(), 0, "required"),
            (
                format!("{base}files = [{{ source = \"/etc\", destination = \"/e\" }}]\n"),
                0,
                "outside the app's directory",
            ),
            (format!("{base}files = [\"../..\"]\n"), 0, "\"../..\" is outside the app's directory"),
            (format!("{base}files = [\"escape\"]\n"), 0, "\"escape\" is outside the app's directory"),
            (base.to_owned(), 0, "no [[trigger.http]]"),
            (
                format!("{base}[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\n"),
                0,
                "[[trigger.redis]]: Spore runs HTTP apps only",
            ),
            (
                format!(
                    "{base}[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\n[component.a.variables]\nv = \"{{{{ nope }}}}\"\n"
                ),
                0,
                "{{ nope }} names no application variable",
            ),
        ];
        for (text, line, what) in cases {
            let err = load(&write(dir.path(), &text), &Given::default()).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
            if line > 0 {
                assert!(err.contains(&format!("spin.toml:{line}:")), "{err}");
            }
        }
    }
}
