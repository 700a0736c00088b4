//! App manifests: `spore.toml`, which is Spin's `spin.toml` (manifest version 2) where the two
//! overlap, so a Spin app runs with `spore up` unchanged.
//!
//! ```toml
//! spin_manifest_version = 2
//! [application]
//! name = "shop"
//! trigger.http.base = "/shop"                # Spin 2's prefix of every route (default /)
//! [variables]
//! greeting = { default = "Hello" }
//! api_key = { required = true, secret = true }
//! [[trigger.http]]
//! route = "/hello/..."
//! component = "hello"
//! [[trigger.http]]
//! route = "/health"
//! static_response = { status_code = 200, headers = { content-type = "text/plain" }, body = "ok" }
//! [[trigger.http]]
//! route = { private = true }                 # loaded and checked, reachable by no URL
//! component = "worker"
//! [component.hello]
//! source = "hello.wasm"                      # a file (relative to the manifest) or an image
//! files = [{ source = "static", destination = "/static" }, "assets/**/*.png"]
//! exclude_files = ["**/*.psd"]
//! allowed_outbound_hosts = ["https://api.example.com"]
//! key_value_stores = ["default"]
//! environment = { LEVEL = "debug" }
//! [component.hello.variables]
//! message = "{{ greeting }}, world"
//! ```
//!
//! Keys Spore does not read are warnings, one per key. Errors (an unknown component, a bad or
//! duplicate route, a missing required variable) name the file and line. A secret variable's
//! value is never part of a message.

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
    /// `(route, what answers it)`, in file order, the base applied. A component whose only
    /// route is private has none.
    pub routes: Vec<(String, Handler)>,
    /// What was ignored, named.
    pub warnings: Vec<String>,
}

/// What answers a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// The component with this id.
    Component(String),
    /// A response the host gives itself, no component run.
    Static(StaticResponse),
}

/// A trigger's `static_response`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResponse {
    /// The status (default 200).
    #[serde(default = "ok")]
    pub status_code: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body (default empty).
    #[serde(default)]
    pub body: String,
}

fn ok() -> u16 {
    200
}

/// One component, resolved.
#[derive(Debug, Clone)]
pub struct Component {
    /// A file path (resolved against the manifest's directory) or an image reference.
    pub source: Source,
    /// Its files: directories mounted read-only, or files to copy into a root of its own.
    pub files: Files,
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
    #[serde(default)]
    trigger: Option<RawApplicationTriggers>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

/// `[application.trigger.http]`: Spin 2's settings for every HTTP trigger.
#[derive(Deserialize)]
struct RawApplicationTriggers {
    #[serde(default)]
    http: Option<RawApplicationHttp>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawApplicationHttp {
    #[serde(default)]
    base: Option<String>,
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
    route: Spanned<RawRoute>,
    #[serde(default)]
    component: Option<Spanned<String>>,
    #[serde(default)]
    static_response: Option<Spanned<toml::Value>>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
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
    exclude_files: Vec<String>,
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
    let (mut name, mut base) = ("app".to_owned(), "/".to_owned());
    if let Some(app) = &raw.application {
        unknown(&mut warnings, "[application] ", &app.extra);
        name = app.name.clone().unwrap_or(name);
        if let Some(t) = &app.trigger {
            unknown(&mut warnings, "[application.trigger] ", &t.extra);
            if let Some(http) = &t.http {
                unknown(&mut warnings, "[application.trigger.http] ", &http.extra);
                base = http.base.clone().unwrap_or(base);
                if !base.starts_with('/') {
                    return Err(format!("{shown}: [application.trigger.http] base {base:?} must start with /"));
                }
            }
        }
    }

    // Application variables: command line, then environment, then default.
    let mut values = BTreeMap::new();
    let secrets: Vec<&str> = raw.variables.iter().filter(|(_, d)| d.secret).map(|(k, _)| k.as_str()).collect();
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
        let entries: Vec<files::Entry> = c
            .files
            .iter()
            .map(|f| match f {
                RawFile::Path(p) => files::Entry::Pattern(p),
                RawFile::Map { source, destination } => files::Entry::Map { source, destination },
            })
            .collect();
        let files = files::resolve(&dir, &entries, &c.exclude_files)
            .map_err(|e| at(offset, format!("[component.{id}] files: {e}")))?;
        let mut variables = BTreeMap::new();
        for (k, template) in &c.variables {
            variables.insert(
                k.clone(),
                fill(template, &values).map_err(|e| at(offset, format!("[component.{id}.variables] {k}: {e}")))?,
            );
        }
        // Spin fills application variables into outbound hosts and the environment as well. A
        // host is shown in logs and messages, so no secret goes into one.
        let allowed_outbound_hosts = c
            .allowed_outbound_hosts
            .iter()
            .map(|h| {
                let named = |e: String| at(offset, format!("[component.{id}] allowed_outbound_hosts {h:?}: {e}"));
                if let Some(secret) = secrets.iter().find(|s| names(h).any(|n| n == **s)) {
                    return Err(named(format!("{secret} is a secret variable; a host may not hold a secret")));
                }
                fill(h, &values).map_err(named)
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
                files,
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
            let handler = match (&tr.component, &tr.static_response) {
                (Some(component), None) => {
                    let id = component.get_ref();
                    if !components.contains_key(id) {
                        return Err(at(
                            component.span().start,
                            format!(
                                "[[trigger.http]] names component {id:?}, which has no [component.{id}]; components: {}",
                                components.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    Handler::Component(id.clone())
                }
                (None, Some(response)) => Handler::Static(
                    static_response(response.get_ref().clone())
                        .map_err(|e| at(response.span().start, format!("[[trigger.http]] static_response: {e}")))?,
                ),
                (Some(_), Some(_)) | (None, None) => {
                    return Err(at(
                        trigger.span().start,
                        "[[trigger.http]] needs either component or static_response (exactly one)".into(),
                    ));
                }
            };
            let route = match tr.route.get_ref() {
                RawRoute::Path(route) => route,
                RawRoute::Private { private: true } if matches!(handler, Handler::Component(_)) => continue,
                RawRoute::Private { .. } => {
                    return Err(at(
                        tr.route.span().start,
                        "[[trigger.http]] route = { private = true } is for a component (reachable by no URL); give a path otherwise".into(),
                    ));
                }
            };
            let route = with_base(&base, route);
            seen.add(&route, ()).map_err(|e| at(tr.route.span().start, e.to_string()))?;
            routes.push((route, handler));
        }
    }
    if routes.is_empty() {
        return Err(format!(
            "{shown}: no [[trigger.http]] routes; add one with route = \"/...\" and component = \"ID\""
        ));
    }
    Ok(Manifest { name, components, routes, warnings })
}

use crate::files;
pub use crate::files::Files;
use crate::router;

/// `route` under the application's `base`.
fn with_base(base: &str, route: &str) -> String {
    match base.trim_end_matches('/') {
        "" => route.to_owned(),
        base => format!("{base}{route}"),
    }
}

/// Checks a static response: a status a response can have, headers HTTP can carry.
fn static_response(value: toml::Value) -> Result<StaticResponse, String> {
    let response: StaticResponse = value.try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
    if !(100..=999).contains(&response.status_code) {
        return Err(format!("status_code {} is not an HTTP status (100 to 999)", response.status_code));
    }
    for (name, value) in &response.headers {
        let token =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(format!("header name {name:?} is not a valid HTTP header name"));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("header {name}'s value holds a control character"));
        }
    }
    Ok(response)
}

/// The variable names a template's `{{ … }}` hold.
fn names(template: &str) -> impl Iterator<Item = &str> {
    template.split("{{").skip(1).filter_map(|part| part.split_once("}}").map(|(name, _)| name.trim()))
}

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
        assert_eq!(m.routes, [("/hello/...".to_owned(), Handler::Component("hello".to_owned()))]);
        let c = &m.components["hello"];
        assert_eq!(c.source, Source::File(dir.path().join("hello.wasm")));
        assert_eq!(c.variables["message"], "Hello, world");
        assert!(matches!(&c.files, Files::Mounts(m) if m.len() == 2), "{:?}", c.files);
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
    fn static_responses_private_routes_the_base_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            r#"spin_manifest_version = 2
[application]
name = "shop"
[application.trigger.http]
base = "/shop/"
[variables]
token = { required = true, secret = true }
host = { default = "api.example.com" }
[[trigger.http]]
route = "/..."
component = "web"
[[trigger.http]]
route = "/health"
static_response = { status_code = 418, headers = { x-kind = "teapot" }, body = "short and stout" }
[[trigger.http]]
route = { private = true }
component = "worker"
[component.web]
source = "web.wasm"
allowed_outbound_hosts = ["https://{{ host }}"]
environment = { TOKEN = "{{ token }}" }
[component.worker]
source = "worker.wasm"
"#,
        );
        let given = Given { flags: BTreeMap::from([("token".to_owned(), "s3cret".to_owned())]), ..Given::default() };
        let m = load(&f, &given).unwrap();
        let teapot = StaticResponse {
            status_code: 418,
            headers: BTreeMap::from([("x-kind".to_owned(), "teapot".to_owned())]),
            body: "short and stout".to_owned(),
        };
        assert_eq!(
            m.routes,
            [
                ("/shop/...".to_owned(), Handler::Component("web".to_owned())),
                ("/shop/health".to_owned(), Handler::Static(teapot)),
            ]
        );
        assert!(m.components.contains_key("worker"), "a private component is loaded all the same");
        assert_eq!(m.components["web"].environment["TOKEN"], "s3cret");
        assert_eq!(m.components["web"].allowed_outbound_hosts, ["https://api.example.com"]);

        // A secret in a host would end up in messages: refused, naming the variable only.
        let text =
            std::fs::read_to_string(&f).unwrap().replace("https://{{ host }}", "https://{{ token }}.example.com");
        let err = load(&write(dir.path(), &text), &given).unwrap_err().to_string();
        assert!(err.contains("token is a secret variable") && !err.contains("s3cret"), "{err}");
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
            (format!("{base}[[trigger.http]]\nroute = \"/x\"\n"), 3, "needs either component or static_response"),
            (
                format!("{base}[[trigger.http]]\nroute = \"/x\"\nstatic_response = {{ status_code = 42 }}\n"),
                5,
                "status_code 42 is not an HTTP status",
            ),
            (
                format!(
                    "{base}[[trigger.http]]\nroute = \"/x\"\nstatic_response = {{ headers = {{ \"a b\" = \"c\" }} }}\n"
                ),
                5,
                "header name \"a b\" is not a valid",
            ),
            (
                format!("{base}[[trigger.http]]\nroute = \"/x\"\nstatic_response = {{ bdy = \"typo\" }}\n"),
                5,
                "unknown field `bdy`",
            ),
            (
                format!("{base}[[trigger.http]]\nroute = {{ private = true }}\nstatic_response = {{ body = \"x\" }}\n"),
                4,
                "is for a component",
            ),
            ("[application.trigger.http]\nbase = \"shop\"\n".to_owned(), 0, "base \"shop\" must start with /"),
            (format!("{base}exclude_files = [\"[\"]\n"), 1, "not a glob pattern"),
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
