//! The Redis backend: each store is a key prefix in one Redis database:
//! `spore:{length of store}:{store}:{key}`. The length makes the prefix unambiguous — store
//! `a` key `b:c` and store `a:b` key `c` are different keys, and listing `a` never sees `a:b`'s
//! — and `spore:` keeps other programs' keys on a shared Redis out of every store.
//!
//! The connection is made on first use and kept by redis-rs's `ConnectionManager`, which
//! reconnects by itself; if Redis is down when a guest asks, the guest gets the interface's
//! error at once (timeouts are short) and a log line says which Redis and why, and the next
//! call tries again — so an app recovers when Redis returns, without a restart.

use crate::{Backend, KeyPage, KvError, parse_counter};
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Stores in a Redis server.
pub struct Redis {
    client: redis::Client,
    url: String,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl Redis {
    /// A backend for the server at `url` (`redis://host:port[/db]`); nothing is connected yet.
    pub fn new(url: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url)
            .map_err(|e| KvError(format!("redis url {url:?}: {e}; write redis://HOST:PORT[/DB]")))?;
        Ok(Redis { client, url: url.to_owned(), conn: tokio::sync::Mutex::new(None) })
    }

    async fn conn(&self) -> Result<ConnectionManager, KvError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(1);
        let c = ConnectionManager::new_with_config(self.client.clone(), config).await.map_err(|e| self.fail(e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn fail(&self, e: redis::RedisError) -> KvError {
        let message = format!("redis {}: {e}", self.url);
        tracing::warn!("key-value: {message}");
        KvError(message)
    }

    fn key(store: &str, key: &str) -> String {
        format!("spore:{}:{store}:{key}", store.len())
    }
}

impl Backend for Redis {
    fn get<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move { self.conn().await?.get(Self::key(store, key)).await.map_err(|e| self.fail(e)) })
    }

    fn set<'a>(&'a self, store: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move { self.conn().await?.set(Self::key(store, key), value).await.map_err(|e| self.fail(e)) })
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let _: i64 = self.conn().await?.del(Self::key(store, key)).await.map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, KvError>> {
        Box::pin(async move { self.conn().await?.exists(Self::key(store, key)).await.map_err(|e| self.fail(e)) })
    }

    fn list<'a>(&'a self, store: &'a str, cursor: Option<u64>) -> BoxFuture<'a, Result<KeyPage, KvError>> {
        Box::pin(async move {
            let prefix = Self::key(store, "");
            let mut pattern = String::with_capacity(prefix.len() + 8);
            for c in prefix.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('*');
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor.unwrap_or(0))
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn().await?)
                .await
                .map_err(|e| self.fail(e))?;
            let keys = keys.into_iter().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)).collect();
            Ok(KeyPage { keys, cursor: (next != 0).then_some(next) })
        })
    }

    fn increment<'a>(&'a self, store: &'a str, key: &'a str, delta: u64) -> BoxFuture<'a, Result<u64, KvError>> {
        Box::pin(async move {
            let delta =
                i64::try_from(delta).map_err(|_| KvError(format!("{store}/{key}: delta {delta} is too large")))?;
            let result: Result<i64, _> = self.conn().await?.incr(Self::key(store, key), delta).await;
            match result {
                Ok(n) => Ok(n as u64),
                // Same words as the embedded store for a value that is not a counter.
                Err(e) if e.kind() == redis::ErrorKind::ResponseError => Err(parse_counter(store, key, Some(b"x"))
                    .err()
                    .unwrap_or_else(|| KvError(format!("{store}/{key}: {e}")))),
                Err(e) => Err(self.fail(e)),
            }
        })
    }

    fn set_many<'a>(&'a self, store: &'a str, pairs: &'a [(String, Vec<u8>)]) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            if pairs.is_empty() {
                return Ok(());
            }
            let items: Vec<(String, &[u8])> = pairs.iter().map(|(k, v)| (Self::key(store, k), v.as_slice())).collect();
            self.conn().await?.mset(&items).await.map_err(|e| self.fail(e))
        })
    }

    fn delete_many<'a>(&'a self, store: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let keys: Vec<String> = keys.iter().map(|k| Self::key(store, k)).collect();
            let _: i64 = self.conn().await?.del(keys).await.map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn get_many<'a>(
        &'a self,
        store: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, KvError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = keys.iter().map(|k| Self::key(store, k)).collect();
            redis::cmd("MGET").arg(keys).query_async(&mut self.conn().await?).await.map_err(|e| self.fail(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real redis-server on a free loopback port in a temp dir, stopped by PID.
    struct Server {
        child: std::process::Child,
        _dir: tempfile::TempDir,
    }

    impl Server {
        fn start(port: u16) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is not installed: run scripts/setup");
            // Owned from here on, so a failed start still stops it (Drop).
            let server = Server { child, _dir: dir };
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            panic!("redis-server did not come up on {port}");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn behaves_like_the_embedded_store_and_recovers_when_redis_returns() {
        let port = free_port();
        let kv = Redis::new(&format!("redis://127.0.0.1:{port}")).unwrap();
        // Down: an error naming the server, at once.
        let err = kv.get("s", "k").await.unwrap_err().0;
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        let server = Server::start(port);
        crate::conformance::check(&kv).await;
        drop(server);
        assert!(kv.get("s", "n").await.is_err(), "down again");
        let _server = Server::start(port);
        kv.set("s", "back", b"1").await.unwrap();
        assert_eq!(kv.get("s", "back").await.unwrap().as_deref(), Some(&b"1"[..]), "recovered");
    }
}
