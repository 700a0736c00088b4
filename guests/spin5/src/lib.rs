//! spin7's routes with spin-sdk 5 (fermyon:spin@2.0.0): `/hello` (variables), `/count`
//! (key-value), `/denied` (an ungranted store), `/fetch` (wasi:http/outgoing-handler),
//! `/sql` (sqlite), and `/wasi-kv`: the same store through wasi:keyvalue@0.2.0-draft2, which
//! every spin-sdk 5 world includes (a signed counter, a compare-and-swap that loses a race and
//! retries, batch calls, paged keys, an ungranted store).

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::{key_value, sqlite, variables};

#[http_component]
async fn handle(req: Request) -> Response {
    let path = req.path().to_owned();
    let answer = match path.rsplit('/').next().unwrap_or_default() {
        "hello" => hello(),
        "count" => count(),
        "denied" => denied(),
        "fetch" => fetch().await,
        "sql" => sql(),
        "wasi-kv" => wasi_kv(),
        _ => return Response::new(404, format!("no route {path}\n")),
    };
    match answer {
        Ok(text) => Response::new(200, text),
        Err(e) => Response::new(500, format!("{e}\n")),
    }
}

type Answer = Result<String, String>;

fn hello() -> Answer {
    let greeting = variables::get("greeting").map_err(|e| format!("variable: {e:?}"))?;
    Ok(format!("{greeting} from spin-sdk 5\n"))
}

fn count() -> Answer {
    let store = key_value::Store::open_default().map_err(|e| format!("open: {e:?}"))?;
    let n = match store.get("count").map_err(|e| format!("get: {e:?}"))? {
        Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0) + 1,
        None => 1,
    };
    store.set("count", n.to_string().as_bytes()).map_err(|e| format!("set: {e:?}"))?;
    let keys = store.get_keys().map_err(|e| format!("keys: {e:?}"))?;
    Ok(format!("{n} {}\n", keys.join(",")))
}

fn denied() -> Answer {
    match key_value::Store::open("secret") {
        Ok(_) => Ok("opened\n".into()),
        Err(e) => Ok(format!("refused: {e:?}\n")),
    }
}

async fn fetch() -> Answer {
    let url = variables::get("upstream").map_err(|e| format!("variable: {e:?}"))?;
    let res: Response = spin_sdk::http::send(Request::new(Method::Get, url.as_str()))
        .await
        .map_err(|e| format!("fetch {url}: {e}"))?;
    Ok(format!("{} {}", res.status(), String::from_utf8_lossy(res.body())))
}

fn sql() -> Answer {
    let db = sqlite::Connection::open_default().map_err(|e| format!("open: {e:?}"))?;
    let run = |statement: &str, params: &[sqlite::Value]| {
        db.execute(statement, params).map_err(|e| format!("{statement}: {e:?}"))
    };
    run("CREATE TABLE IF NOT EXISTS visits (n INTEGER PRIMARY KEY, note TEXT NOT NULL)", &[])?;
    run("INSERT INTO visits (note) VALUES (?)", &[sqlite::Value::Text("hi".into())])?;
    let result = run("SELECT COUNT(*), MAX(note) FROM visits", &[])?;
    let row = result.rows().next().ok_or("no row")?;
    let count: i64 = row.get("COUNT(*)").ok_or("no count")?;
    let note: &str = row.get("MAX(note)").ok_or("no note")?;
    Ok(format!("rows {count} {note}\n"))
}

fn wasi_kv() -> Answer {
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let e = |what: &'static str| move |e: store::Error| format!("{what}: {e:?}");
    let bucket = store::open("default").map_err(e("open"))?;
    let down = atomics::increment(&bucket, "level", -2).map_err(e("increment"))?;
    let level = atomics::increment(&bucket, "level", 5).map_err(e("increment"))?;

    // A compare-and-swap that another writer beats: the swap fails with a fresh handle, which
    // sees that writer's value, and the retry over it goes through.
    let cas = atomics::Cas::new(&bucket, "word").map_err(e("cas"))?;
    let first = cas.current().map_err(e("current"))?.map(|v| String::from_utf8_lossy(&v).into_owned());
    bucket.set("word", b"theirs").map_err(e("set"))?;
    let retried = match atomics::swap(cas, b"mine") {
        Ok(()) => return Err("the swap over a stale value went through".into()),
        Err(atomics::CasError::StoreError(err)) => return Err(format!("swap: {err:?}")),
        Err(atomics::CasError::CasFailed(fresh)) => {
            let seen = fresh.current().map_err(e("current"))?;
            atomics::swap(fresh, b"mine").map_err(|err| format!("retry: {err:?}"))?;
            String::from_utf8_lossy(&seen.unwrap_or_default()).into_owned()
        }
    };
    let word = bucket.get("word").map_err(e("get"))?.unwrap_or_default();

    batch::set_many(&bucket, &[("b1".into(), b"x".to_vec()), ("b2".into(), b"y".to_vec())]).map_err(e("set-many"))?;
    let got = batch::get_many(&bucket, &["b1".into(), "none".into(), "b2".into()]).map_err(e("get-many"))?;
    let got: Vec<String> = got.into_iter().map(|(k, v)| format!("{k}={}", v.map_or("-".into(), |v| String::from_utf8_lossy(&v).into_owned()))).collect();
    batch::delete_many(&bucket, &["b1".into(), "b2".into()]).map_err(e("delete-many"))?;

    let (mut keys, mut cursor) = (Vec::new(), None);
    loop {
        let page = bucket.list_keys(cursor.as_deref()).map_err(e("list-keys"))?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    keys.sort();
    let bad_cursor = match bucket.list_keys(Some("not-a-cursor")) {
        Ok(_) => "accepted".to_owned(),
        Err(err) => format!("{err:?}"),
    };
    let denied = match store::open("secret") {
        Ok(_) => "opened".to_owned(),
        Err(err) => format!("{err:?}"),
    };
    Ok(format!(
        "level {down} {level}; cas saw {first:?}, lost to {retried}, now {}; batch {}; keys {}; {bad_cursor}; secret {denied}\n",
        String::from_utf8_lossy(&word),
        got.join(","),
        keys.join(","),
    ))
}
