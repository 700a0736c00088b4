//! A Spin app built with spin-sdk 7, one route per capability it uses:
//! - `/hello`: the variable `greeting` (spin:variables);
//! - `/count`: a counter in the `default` store (spin:key-value), then its keys;
//! - `/denied`: opens the store `secret`, which the manifest does not grant;
//! - `/fetch`: a GET of the variable `upstream` (wasi:http/client@0.3.0);
//! - `/sql`: a row added to a table of the `default` database, then the rows counted
//!   (spin:sqlite).

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;
use spin_sdk::{key_value, sqlite, variables};

#[http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_owned();
    let answer = match path.rsplit('/').next().unwrap_or_default() {
        "hello" => hello().await,
        "count" => count().await,
        "denied" => denied().await,
        "fetch" => fetch().await,
        "sql" => sql().await,
        _ => return (spin_sdk::http::StatusCode::NOT_FOUND, format!("no route {path}\n")),
    };
    match answer {
        Ok(text) => (spin_sdk::http::StatusCode::OK, text),
        Err(e) => (spin_sdk::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

type Answer = Result<String, String>;

async fn hello() -> Answer {
    let greeting = variables::get("greeting").await.map_err(|e| format!("variable: {e:?}"))?;
    Ok(format!("{greeting} from spin-sdk 7\n"))
}

async fn count() -> Answer {
    let store = key_value::Store::open_default().await.map_err(|e| format!("open: {e:?}"))?;
    let n = match store.get("count").await.map_err(|e| format!("get: {e:?}"))? {
        Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0) + 1,
        None => 1,
    };
    store.set("count", n.to_string()).await.map_err(|e| format!("set: {e:?}"))?;
    let keys = store.get_keys().await.collect().await.map_err(|e| format!("keys: {e:?}"))?;
    Ok(format!("{n} {}\n", keys.join(",")))
}

async fn denied() -> Answer {
    match key_value::Store::open("secret").await {
        Ok(_) => Ok("opened\n".into()),
        Err(e) => Ok(format!("refused: {e:?}\n")),
    }
}

async fn fetch() -> Answer {
    let url = variables::get("upstream").await.map_err(|e| format!("variable: {e:?}"))?;
    let res = spin_sdk::http::get(&url).await.map_err(|e| format!("fetch {url}: {e}"))?;
    let status = res.status().as_u16();
    let body = res.into_body().bytes().await.map_err(|e| format!("body: {e:?}"))?;
    Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
}

async fn sql() -> Answer {
    let db = sqlite::Connection::open_default().await.map_err(|e| format!("open: {e:?}"))?;
    let run = async |statement: &str, params: Vec<sqlite::Value>| {
        db.execute(statement, params).await.map_err(|e| format!("{statement}: {e:?}"))?.collect().await.map_err(|e| format!("{statement}: {e:?}"))
    };
    run("CREATE TABLE IF NOT EXISTS visits (n INTEGER PRIMARY KEY, note TEXT NOT NULL)", vec![]).await?;
    run("INSERT INTO visits (note) VALUES (?)", vec![sqlite::Value::text("hi")]).await?;
    let rows = run("SELECT COUNT(*), MAX(note) FROM visits", vec![]).await?;
    let row = rows.first().ok_or("no row")?;
    let count: i64 = row.get(0).ok_or("no count")?;
    let note: &str = row.get(1).ok_or("no note")?;
    Ok(format!("rows {count} {note}\n"))
}
