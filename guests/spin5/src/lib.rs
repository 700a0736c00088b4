//! spin7's routes with spin-sdk 5 (fermyon:spin@2.0.0): `/hello` (variables), `/count`
//! (key-value), `/denied` (an ungranted store), `/fetch` (wasi:http/outgoing-handler),
//! `/sql` (sqlite).

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
