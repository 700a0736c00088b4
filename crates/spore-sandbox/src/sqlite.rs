//! SQLite for guests, as Spin gives it: `fermyon:spin/sqlite@2.0.0` (spin-sdk 5) and
//! `spin:sqlite/sqlite@3.1.0` (spin-sdk 7, with its WIT `async` functions), on an embedded
//! SQLite file per app and label.
//!
//! A guest opens a database by label; it gets `access-denied` unless its spec grants the label
//! (`sqlite_databases`) and `no-such-database` when the host has none by that name. The file
//! is the host's choice ([`Databases`]); the guest never names a path. SQL is the guest's, so
//! what SQL could reach beyond the file is shut: no `ATTACH` (or `VACUUM INTO`, which attaches),
//! no pragmas but a few that only read the schema, SQLite's defensive mode on, the file capped
//! at its size (`database-full` past it), results capped at [`MAX_RESULT_BYTES`]. A statement
//! runs on the blocking pool, its time charged to the guest's CPU, and is interrupted when the
//! guest's CPU time runs out or the sandbox stops waiting for it (wall-clock timeout, kill).

use crate::bindings::fermyon::spin::sqlite as v2;
use crate::bindings::spin::sqlite::sqlite as v3;
use crate::limits::Meter;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as Cell, ValueRef};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

/// A database holds at most this much unless the host's runtime config says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// One statement's rows, as the host holds them before the guest gets them.
pub const MAX_RESULT_BYTES: usize = 16 << 20;
/// Connections one sandbox may hold open at once: each keeps a page cache of up to
/// [`CACHE_KIB`] in host memory, outside the guest's memory limit (without a cap, its open
/// handles — 1024 — times SQLite's default 2 MiB).
pub const MAX_CONNECTIONS: usize = 16;
/// Each connection's page cache, KiB (SQLite's default is 2000).
const CACHE_KIB: i64 = 512;

/// The host's SQLite databases: where each label's file lives and how large it may grow.
#[derive(Debug, Clone, Default)]
pub struct Databases {
    dir: PathBuf,
    declared: HashMap<String, Declared>,
}

#[derive(Debug, Clone)]
struct Declared {
    file: Option<PathBuf>,
    max_bytes: u64,
}

impl Databases {
    /// Databases under `dir`, with the label `default` declared (as Spin has it).
    pub fn new(dir: &Path) -> Databases {
        let mut dbs = Databases { dir: dir.to_path_buf(), declared: HashMap::new() };
        dbs.insert("default", None, None);
        dbs
    }

    /// Declares `label`: in `file` (else a file of the host's under its directory), at most
    /// `max_bytes` (else [`DEFAULT_MAX_BYTES`]).
    pub fn insert(&mut self, label: &str, file: Option<PathBuf>, max_bytes: Option<u64>) {
        let declared = Declared { file, max_bytes: max_bytes.unwrap_or(DEFAULT_MAX_BYTES) };
        self.declared.insert(label.to_owned(), declared);
    }

    /// Whether `label` is declared.
    pub fn has(&self, label: &str) -> bool {
        self.declared.contains_key(label)
    }

    /// The file of `label` for the app `namespace` (`None`: the host's only app). Each app has
    /// its own file of a label: for a declared file `F`, `F.apps/APP.db` — a directory of the
    /// file's own with one file per app, so no app name and file name can spell another pair's
    /// (as `APP-NAME` could: `a` + `b-x.db` and `a-b` + `x.db`). Labels and app names are plain
    /// names, so no two (app, label) pairs meet.
    fn file(&self, label: &str, namespace: Option<&str>) -> Option<(PathBuf, u64)> {
        let d = self.declared.get(label)?;
        // The host names apps (the daemon checks the names it is given); a name that could
        // lead elsewhere as a path component gets no file at all.
        let plain =
            |app: &str| !app.starts_with('.') && app.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if namespace.is_some_and(|app| app.is_empty() || !plain(app)) {
            return None;
        }
        let file = match (&d.file, namespace) {
            (Some(file), None) => file.clone(),
            (Some(file), Some(app)) => {
                let mut apps = file.clone().into_os_string();
                apps.push(".apps");
                PathBuf::from(apps).join(format!("{app}.db"))
            }
            (None, None) => self.dir.join(format!("{label}.db")),
            (None, Some(app)) => self.dir.join("app").join(app).join(format!("{label}.db")),
        };
        Some((file, d.max_bytes))
    }
}

/// What one sandbox may reach: the host's databases, the labels its spec grants, and whose.
pub(crate) struct SqliteGrant {
    pub(crate) databases: Arc<Databases>,
    pub(crate) granted: Arc<[String]>,
    pub(crate) namespace: Option<String>,
    /// The guest's CPU limit, for interrupting a long statement.
    pub(crate) cpu_limit_ns: Option<u64>,
    /// One statement (or open) of the sandbox at a time: statements run off the guest's
    /// thread, so without it a guest running K at once would spend K times its CPU limit and
    /// hold K of the host's blocking threads.
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
    /// Connections the sandbox holds open, at most [`MAX_CONNECTIONS`].
    pub(crate) connections: Arc<AtomicUsize>,
}

/// An open database, as the guest's `connection` resource.
pub struct Connection {
    db: Arc<Mutex<rusqlite::Connection>>,
    /// Its place among the sandbox's [`MAX_CONNECTIONS`], given back when it is closed.
    _slot: Option<Slot>,
}

/// One of a sandbox's connections, counted while it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot, unless the sandbox holds [`MAX_CONNECTIONS`] already.
    fn take(held: &Arc<AtomicUsize>) -> Option<Slot> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_CONNECTIONS).then_some(n + 1))
            .ok()
            .map(|_| Slot(held.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a call failed, for either version's `error`.
#[derive(Debug)]
enum DbError {
    NoSuchDatabase,
    AccessDenied,
    DatabaseFull,
    Io(String),
}

/// A statement's outcome: its columns and rows.
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

/// The view the bindings work on.
pub(crate) struct SqliteView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) grant: &'a SqliteGrant,
    pub(crate) meter: &'a Arc<Meter>,
}

pub(crate) struct HasSqlite;

impl HasData for HasSqlite {
    type Data<'a> = SqliteView<'a>;
}

/// Links both versions.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> SqliteView<'_>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, HasSqlite>(linker, view)?;
    v3::add_to_linker::<T, HasSqlite>(linker, view)?;
    Ok(())
}

fn lock(db: &Mutex<rusqlite::Connection>) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    db.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pragmas a guest may run: they read the schema and change nothing.
const READ_ONLY_PRAGMAS: &[&str] =
    &["table_info", "table_xinfo", "table_list", "index_list", "index_info", "foreign_key_list"];

/// What a guest's SQL may do on its connection (see the module's doc). Denied besides files
/// and pragmas: `fts3_tokenizer`, which with a bound argument returns and registers raw
/// function pointers (the host's addresses, then a call to one of the guest's choosing), and
/// temporary tables, whose file is outside the database's size cap.
fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. } if !READ_ONLY_PRAGMAS.contains(&pragma_name) => Authorization::Deny,
        AuthAction::Function { function_name } if function_name.eq_ignore_ascii_case("fts3_tokenizer") => {
            Authorization::Deny
        }
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

impl SqliteGrant {
    /// Where the database `label` of the guest is, or why it may not have it (in the host's
    /// log too, with the file, which the guest is not told).
    fn locate(&self, label: &str) -> Result<(PathBuf, u64), DbError> {
        if !self.granted.iter().any(|g| g == label) {
            let label = spore_types::shown(label, 64);
            tracing::warn!(
                "sqlite: denied opening database \"{label}\": not granted to this sandbox (grant it with sqlite_databases = [\"{label}\"])"
            );
            return Err(DbError::AccessDenied);
        }
        self.databases.file(label, self.namespace.as_deref()).ok_or_else(|| {
            tracing::warn!(
                "sqlite: database {label:?} is granted but the host has no such database (declare it in runtime-config.toml [sqlite_database.{label}])"
            );
            DbError::NoSuchDatabase
        })
    }
}

/// Opens the database `label` at `located`, on the blocking pool in the sandbox's turn (the
/// open reads the file and may wait on another connection's lock).
async fn open(
    label: String,
    located: Result<(PathBuf, u64), DbError>,
    turn: Arc<tokio::sync::Mutex<()>>,
) -> Result<Connection, DbError> {
    let (file, max_bytes) = located?;
    let turn = turn.lock_owned().await;
    let opened = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        open_file(&file, max_bytes).map_err(|e| {
            tracing::warn!("sqlite: database {label:?} ({}): {e}", file.display());
            DbError::Io(format!("database {label:?} could not be opened: {e}"))
        })
    });
    opened.await.unwrap_or_else(|e| Err(DbError::Io(format!("the open failed: {e}"))))
}

/// Opens (creating) `file` with the guest's SQL shut in, and checks that it is a database.
fn open_file(file: &Path, max_bytes: u64) -> Result<Connection, String> {
    // The apps' data is the user's alone, as the key-value files are (SQLite gives its journal
    // the database file's mode).
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut db = rusqlite::Connection::open(file).map_err(|e| e.to_string())?;
    db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0).map_err(|e| e.to_string())?;
    // No one value past the result cap: SQLite refuses to build it (`zeroblob(1e9)`).
    db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, MAX_RESULT_BYTES as i32).map_err(|e| e.to_string())?;
    db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true).map_err(|e| e.to_string())?;
    db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false).map_err(|e| e.to_string())?;
    // A corrupt or foreign file fails here, at open, not at the guest's first statement.
    let page_size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    db.pragma_update(None, "max_page_count", (max_bytes / page_size.max(512) as u64).max(1) as i64)
        .map_err(|e| e.to_string())?;
    db.pragma_update(None, "cache_size", -CACHE_KIB).map_err(|e| e.to_string())?;
    db.authorizer(Some(authorize)).map_err(|e| e.to_string())?;
    Ok(Connection { db: Arc::new(Mutex::new(db)), _slot: None })
}

/// Set when the guest's call is dropped (the sandbox stopped waiting): the statement stops.
struct Abandoned(Arc<AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `statement` with `params` on the blocking pool, in the sandbox's turn (held until the
/// statement has stopped, even if the guest stops waiting); its time is the guest's CPU time.
async fn execute(taken: Taken, statement: String, params: Vec<Cell>) -> Result<Rows, DbError> {
    let Taken { db, meter, cpu_limit_ns, turn } = taken;
    let abandoned = Abandoned(Arc::new(AtomicBool::new(false)));
    let (stop, charged) = (abandoned.0.clone(), meter.clone());
    let turn = turn.lock_owned().await;
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let mut db = lock(&db);
        let over = move || {
            let spent = charged.cpu_ns().saturating_add(started.elapsed().as_nanos() as u64);
            stop.load(Ordering::Relaxed) || cpu_limit_ns.is_some_and(|limit| spent > limit)
        };
        db.progress_handler(10_000, Some(over)).map_err(|e| DbError::Io(e.to_string()))?;
        let rows = run(&db, &statement, params);
        let _ = db.progress_handler(0, None::<fn() -> bool>);
        rows
    });
    let out = run.await.unwrap_or_else(|e| Err(DbError::Io(format!("the statement failed: {e}"))));
    meter.charge(started.elapsed());
    drop(abandoned);
    out
}

fn run(db: &rusqlite::Connection, statement: &str, params: Vec<Cell>) -> Result<Rows, DbError> {
    let mut stmt = db.prepare(statement).map_err(db_error)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(db_error)?;
    let (mut out, mut held) = (Vec::new(), 0usize);
    while let Some(row) = rows.next().map_err(db_error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let value = row.get_ref(i).map_err(db_error)?;
            // Counted before it is copied, with what a cell costs the host beside its bytes.
            held += size_of::<Cell>()
                + match value {
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
                    _ => 0,
                };
            if held > MAX_RESULT_BYTES {
                return Err(DbError::Io(format!(
                    "the result is larger than {}: select fewer rows or columns",
                    spore_types::human_bytes(MAX_RESULT_BYTES as u64)
                )));
            }
            values.push(Cell::try_from(value).map_err(|e| DbError::Io(e.to_string()))?);
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

fn db_error(e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => DbError::DatabaseFull,
        Some(rusqlite::ErrorCode::OperationInterrupted) => {
            DbError::Io("the statement was interrupted: the app's CPU time ran out or it was stopped".into())
        }
        Some(rusqlite::ErrorCode::AuthorizationForStatementDenied) => DbError::Io(format!(
            "{e}: Spore does not let an app ATTACH files, run pragmas that change the connection, create temporary tables or call fts3_tokenizer"
        )),
        _ => DbError::Io(e.to_string()),
    }
}

impl SqliteView<'_> {
    async fn open_into_table(&mut self, label: String) -> wasmtime::Result<Result<Resource<Connection>, DbError>> {
        let located = self.grant.locate(&label);
        let Some(slot) = Slot::take(&self.grant.connections) else {
            tracing::warn!(
                "sqlite: denied opening database {label:?}: the sandbox holds {MAX_CONNECTIONS} connections"
            );
            return Ok(Err(DbError::Io(format!(
                "this app holds {MAX_CONNECTIONS} open database connections, the most a sandbox may; close one first"
            ))));
        };
        match open(label, located, self.grant.turn.clone()).await {
            Ok(conn) => Ok(Ok(self.table.push(Connection { _slot: Some(slot), ..conn })?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// A call's connection, meter, CPU limit and the sandbox's turn, taken from the view so the
/// statement runs without holding the store.
struct Taken {
    db: Arc<Mutex<rusqlite::Connection>>,
    meter: Arc<Meter>,
    cpu_limit_ns: Option<u64>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Taken {
    fn of(view: &SqliteView<'_>, conn: &Resource<Connection>) -> wasmtime::Result<Taken> {
        Ok(Taken {
            db: view.table.get(conn)?.db.clone(),
            meter: view.meter.clone(),
            cpu_limit_ns: view.grant.cpu_limit_ns,
            turn: view.grant.turn.clone(),
        })
    }

    /// Reads the connection in the sandbox's turn (no statement of it is running then, so
    /// its lock is free).
    async fn read<R>(self, f: impl FnOnce(&rusqlite::Connection) -> R) -> R {
        let _turn = self.turn.lock().await;
        f(&lock(&self.db))
    }
}

/// The same conversions for each version's generated types.
macro_rules! version {
    ($v:ident) => {
        impl From<DbError> for $v::Error {
            fn from(e: DbError) -> Self {
                match e {
                    DbError::NoSuchDatabase => $v::Error::NoSuchDatabase,
                    DbError::AccessDenied => $v::Error::AccessDenied,
                    DbError::DatabaseFull => $v::Error::DatabaseFull,
                    DbError::Io(why) => $v::Error::Io(why),
                }
            }
        }

        impl From<$v::Value> for Cell {
            fn from(v: $v::Value) -> Cell {
                match v {
                    $v::Value::Integer(i) => Cell::Integer(i),
                    $v::Value::Real(r) => Cell::Real(r),
                    $v::Value::Text(t) => Cell::Text(t),
                    $v::Value::Blob(b) => Cell::Blob(b),
                    $v::Value::Null => Cell::Null,
                }
            }
        }

        impl From<Cell> for $v::Value {
            fn from(c: Cell) -> $v::Value {
                match c {
                    Cell::Integer(i) => $v::Value::Integer(i),
                    Cell::Real(r) => $v::Value::Real(r),
                    Cell::Text(t) => $v::Value::Text(t),
                    Cell::Blob(b) => $v::Value::Blob(b),
                    Cell::Null => $v::Value::Null,
                }
            }
        }

        impl From<Vec<Cell>> for $v::RowResult {
            fn from(values: Vec<Cell>) -> $v::RowResult {
                $v::RowResult { values: values.into_iter().map(Into::into).collect() }
            }
        }

        impl From<Rows> for $v::QueryResult {
            fn from(r: Rows) -> $v::QueryResult {
                $v::QueryResult { columns: r.columns, rows: r.rows.into_iter().map(Into::into).collect() }
            }
        }

        impl $v::Host for SqliteView<'_> {}
    };
}

version!(v2);
version!(v3);

impl v2::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        Ok(self.open_into_table(database).await?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let taken = Taken::of(self, &conn)?;
        let params = parameters.into_iter().map(Into::into).collect();
        Ok(execute(taken, statement, params).await.map(Into::into).map_err(Into::into))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl v3::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        Ok(self.open_into_table(database).await?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let taken = Taken::of(self, &conn)?;
        let params = parameters.into_iter().map(Into::into).collect();
        Ok(execute(taken, statement, params).await.map(Into::into).map_err(Into::into))
    }

    async fn last_insert_rowid(&mut self, conn: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(Taken::of(self, &conn)?.read(|db| db.last_insert_rowid()).await)
    }

    async fn changes(&mut self, conn: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(Taken::of(self, &conn)?.read(|db| db.changes()).await)
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl<U: 'static> v3::HostConnectionWithStore<U> for HasSqlite {
    async fn open_async(
        accessor: &Accessor<U, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        let (located, turn) = accessor.with(|mut access| {
            let view = access.get();
            (view.grant.locate(&database), view.grant.turn.clone())
        });
        match open(database, located, turn).await {
            Ok(conn) => Ok(Ok(accessor.with(|mut access| access.get().table.push(conn))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    /// The rows come as a stream and the outcome as its future; Spore runs the statement to
    /// its end first (its rows are capped), so a failure is the call's error.
    async fn execute_async(
        accessor: &Accessor<U, Self>,
        conn: Resource<Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<
        Result<(Vec<String>, StreamReader<v3::RowResult>, FutureReader<Result<(), v3::Error>>), v3::Error>,
    > {
        let taken = accessor.with(|mut access| Taken::of(&access.get(), &conn))?;
        let params = parameters.into_iter().map(Into::into).collect();
        let rows = match execute(taken, statement, params).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(e.into())),
        };
        let results: Vec<v3::RowResult> = rows.rows.into_iter().map(Into::into).collect();
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, results)?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((rows.columns, stream, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<U, Self>,
        conn: Resource<Connection>,
    ) -> wasmtime::Result<i64> {
        let taken = accessor.with(|mut access| Taken::of(&access.get(), &conn))?;
        Ok(taken.read(|db| db.last_insert_rowid()).await)
    }

    async fn changes_async(accessor: &Accessor<U, Self>, conn: Resource<Connection>) -> wasmtime::Result<u64> {
        let taken = accessor.with(|mut access| Taken::of(&access.get(), &conn))?;
        Ok(taken.read(|db| db.changes()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_app_has_its_own_file_of_a_label_and_no_two_pairs_meet() {
        let mut dbs = Databases::new(Path::new("data/sqlite"));
        dbs.insert("x", Some(PathBuf::from("/srv/b-x.db")), None);
        dbs.insert("y", Some(PathBuf::from("/srv/x.db")), Some(1 << 20));
        let file = |label, app| dbs.file(label, app).map(|(f, _)| f);
        assert_eq!(file("default", None), Some(PathBuf::from("data/sqlite/default.db")));
        assert_eq!(file("default", Some("shop")), Some(PathBuf::from("data/sqlite/app/shop/default.db")));
        assert_eq!(file("x", None), Some(PathBuf::from("/srv/b-x.db")));
        assert_eq!(file("x", Some("a")), Some(PathBuf::from("/srv/b-x.db.apps/a.db")));
        assert_ne!(file("x", Some("a")), file("y", Some("a-b")), "app a's b-x.db is not app a-b's x.db");
        assert_eq!(dbs.file("y", Some("a-b")), Some((PathBuf::from("/srv/x.db.apps/a-b.db"), 1 << 20)));
        for hostile in ["", "..", ".hidden", "a/b", "a\nb"] {
            assert_eq!(file("x", Some(hostile)), None, "{hostile:?}");
        }
        assert_eq!(file("undeclared", None), None);
    }

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_file(&dir.path().join("t.db"), DEFAULT_MAX_BYTES).unwrap();
        (dir, conn)
    }

    fn sql(conn: &Connection, statement: &str) -> Result<Rows, DbError> {
        run(&lock(&conn.db), statement, Vec::new())
    }

    #[test]
    fn a_guests_sql_cannot_reach_past_its_file() {
        let (dir, conn) = db();
        let outside = dir.path().join("outside.db");
        for attack in [
            format!("ATTACH DATABASE '{}' AS x", outside.display()),
            format!("VACUUM INTO '{}'", outside.display()),
            "PRAGMA journal_mode = OFF".to_owned(),
            "PRAGMA writable_schema = ON".to_owned(),
        ] {
            assert!(matches!(sql(&conn, &attack), Err(DbError::Io(_))), "{attack} ran");
        }
        assert!(!outside.exists(), "a file was written outside the database");
        sql(&conn, "CREATE TABLE t (a INTEGER)").unwrap();
        assert_eq!(sql(&conn, "PRAGMA table_info(t)").unwrap().rows.len(), 1, "schema reads still work");
    }

    /// FTS3's `fts3_tokenizer` hands out and takes raw function pointers when its argument is
    /// a bound parameter (its safety switch does not cover those): a guest could learn the
    /// host's addresses and make it call one of its choosing.
    #[test]
    fn a_guest_cannot_reach_host_pointers_through_fts3_tokenizer() {
        let (_dir, conn) = db();
        for (statement, params) in [
            ("SELECT fts3_tokenizer(?)", vec![Cell::Text("simple".into())]),
            ("SELECT fts3_tokenizer('t', ?)", vec![Cell::Blob(vec![0x41; 8])]),
        ] {
            let ran = run(&lock(&conn.db), statement, params);
            assert!(
                matches!(&ran, Err(DbError::Io(why)) if why.contains("not authorized")),
                "{statement}: {:?}",
                ran.map(|r| r.rows)
            );
        }
        sql(&conn, "CREATE VIRTUAL TABLE docs USING fts3(body)").unwrap();
        sql(&conn, "INSERT INTO docs VALUES ('full text search works')").unwrap();
        assert_eq!(sql(&conn, "SELECT body FROM docs WHERE docs MATCH 'search'").unwrap().rows.len(), 1);
    }

    /// What a statement may make the host hold: no value past the result cap (SQLite's own
    /// length limit, so `zeroblob(1e9)` is never built), no temporary tables (their file is
    /// outside the database's size cap).
    #[test]
    fn a_statement_cannot_make_the_host_hold_more_than_the_cap() {
        let (_dir, conn) = db();
        for statement in [
            "SELECT zeroblob(1000000000)",
            "SELECT zeroblob(10000000), zeroblob(10000000)",
            "CREATE TEMP TABLE t AS SELECT 1",
        ] {
            assert!(matches!(sql(&conn, statement), Err(DbError::Io(_))), "{statement} ran");
        }
        assert_eq!(sql(&conn, "SELECT zeroblob(1000000)").unwrap().rows.len(), 1, "a large value within the cap");
    }

    /// Statements run off the guest's thread; a sandbox's run one at a time, so that running
    /// several at once (on connections of their own) neither multiplies its CPU limit nor
    /// takes several of the host's blocking threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sandboxs_statements_take_turns() {
        let ((_a_dir, a), (_b_dir, b)) = (db(), db());
        let turn: Arc<tokio::sync::Mutex<()>> = Default::default();
        let meter: Arc<Meter> = Default::default();
        let slow =
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000000) SELECT count(*) FROM c";
        let timed = |conn: &Connection| {
            let taken = Taken { db: conn.db.clone(), meter: meter.clone(), cpu_limit_ns: None, turn: turn.clone() };
            async move {
                let start = Instant::now();
                execute(taken, slow.to_owned(), Vec::new()).await.map_err(|e| format!("{e:?}")).unwrap();
                (start, Instant::now())
            }
        };
        let (first, second) = tokio::join!(timed(&a), timed(&b));
        let (earlier, later) = if first.1 <= second.1 { (first, second) } else { (second, first) };
        let alone = earlier.1 - earlier.0;
        assert!(
            later.1 - later.0 >= alone + alone / 2,
            "the second statement ran beside the first: {:?} and {alone:?}",
            later.1 - later.0
        );
    }

    #[test]
    fn a_database_is_held_to_its_size_and_a_corrupt_file_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_file(&dir.path().join("small.db"), 64 << 10).unwrap();
        sql(&conn, "CREATE TABLE t (b BLOB)").unwrap();
        let fill = "INSERT INTO t VALUES (zeroblob(100000))";
        assert!(matches!(sql(&conn, fill), Err(DbError::DatabaseFull)));
        let corrupt = dir.path().join("corrupt.db");
        std::fs::write(&corrupt, vec![7u8; 8192]).unwrap();
        let err = open_file(&corrupt, DEFAULT_MAX_BYTES).err().expect("a corrupt file opened");
        assert!(err.contains("not a database"), "{err}");
    }

    #[test]
    fn an_apps_database_is_the_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sqlite/app/a/default.db");
        let conn = open_file(&file, DEFAULT_MAX_BYTES).unwrap();
        sql(&conn, "CREATE TABLE t (a INTEGER)").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        for d in [dir.path().join("sqlite"), dir.path().join("sqlite/app/a")] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
    }

    /// A sandbox holds at most MAX_CONNECTIONS connections (each a page cache of host memory
    /// outside its limit, capped too); one closed, another may open.
    #[tokio::test]
    async fn a_sandbox_holds_a_bounded_number_of_connections_of_bounded_cache() {
        let dir = tempfile::tempdir().unwrap();
        let grant = SqliteGrant {
            databases: Arc::new(Databases::new(dir.path())),
            granted: vec!["default".to_owned()].into(),
            namespace: None,
            cpu_limit_ns: None,
            turn: Default::default(),
            connections: Default::default(),
        };
        let mut table = ResourceTable::new();
        let meter = Arc::<Meter>::default();
        let mut view = SqliteView { table: &mut table, grant: &grant, meter: &meter };
        let mut open = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            open.push(view.open_into_table("default".into()).await.unwrap().expect("within the cap"));
        }
        let refused = view.open_into_table("default".into()).await.unwrap().expect_err("past the cap");
        assert!(matches!(&refused, DbError::Io(m) if m.contains("holds 16 open database connections")), "{refused:?}");
        let first = open.remove(0);
        let conn = view.table.delete(first).unwrap();
        let db = conn.db.clone();
        drop(conn);
        assert!(view.open_into_table("default".into()).await.unwrap().is_ok(), "a closed one's place is free");
        let mut db = lock(&db);
        db.authorizer(None::<fn(AuthContext<'_>) -> Authorization>).unwrap();
        let cache: i64 = db.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(cache, -CACHE_KIB);
    }
}
