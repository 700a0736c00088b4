//! The Redis backend: each store is a key prefix in one Redis database:
//! `spore:{length of store}:{store}:{key}`. The length makes the prefix unambiguous — store
//! `a` key `b:c` and store `a:b` key `c` are different keys, and listing `a` never sees `a:b`'s
//! — and `spore:` keeps other programs' keys on a shared Redis out of every store.
//!
//! What each store holds (keys, bytes) is kept beside it in the hash `spore:usage:{length}:{store}`
//! (never a store's key: those have a digit after `spore:`), changed by the same Lua script
//! as the write, so a quota is checked atomically. Keys written to Redis by anything but Spore
//! are not counted.
//!
//! The connection is made on first use and kept by redis-rs's `ConnectionManager`, which
//! reconnects by itself; if Redis is down when a guest asks, the guest gets the interface's
//! error at once (timeouts are short) and a log line says which Redis and why, and the next
//! call tries again — so an app recovers when Redis returns, without a restart.

use crate::{Backend, KeyPage, KvError, Quota, Usage, parse_counter};
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::LazyLock;
use std::time::Duration;

static SET: LazyLock<Script> = LazyLock::new(|| Script::new(SET_LUA));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_LUA));
static INCREMENT: LazyLock<Script> = LazyLock::new(|| Script::new(INCREMENT_LUA));

/// Stores in a Redis server.
pub struct Redis {
    client: redis::Client,
    url: String,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    quota: Quota,
}

/// Sets `KEYS[2..]` to `ARGV[4..]` and keeps the usage hash `KEYS[1]`, unless the result
/// would be over the quota (`ARGV[1]` keys, `ARGV[2]` bytes; 0: none). `ARGV[3]`: the length
/// of the store's key prefix. After the values, an optional guard for one key: `0` (write
/// only if `KEYS[2]` is absent) or `1` and the value it must hold. Answers `{applied, keys
/// before, bytes before, keys after, bytes after}`; `applied` is -3 when the guard failed,
/// nothing changed.
const SET_LUA: &str = r#"
local guard = ARGV[#KEYS + 3]
if guard then
  local current = redis.call('GET', KEYS[2])
  if (guard == '0' and current) or (guard == '1' and current ~= ARGV[#KEYS + 4]) then
    return {-3, 0, 0, 0, 0}
  end
end
local keys = tonumber(redis.call('HGET', KEYS[1], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local k0, b0, plen = keys, bytes, tonumber(ARGV[3])
local held = {}
for i = 2, #KEYS do
  local k, v = KEYS[i], ARGV[i + 2]
  local old = held[k]
  if old == nil then
    old = -1
    if redis.call('EXISTS', k) == 1 then old = redis.call('STRLEN', k) end
  end
  if old >= 0 then bytes = bytes - (#k - plen) - old else keys = keys + 1 end
  bytes = bytes + (#k - plen) + #v
  held[k] = #v
end
-- A key written before usage was kept is not counted: never below nothing.
bytes = math.max(bytes, 0)
local mk, mb = tonumber(ARGV[1]), tonumber(ARGV[2])
if (mk > 0 and keys > mk and keys > k0) or (mb > 0 and bytes > mb and bytes > b0) then
  return {0, k0, b0, keys, bytes}
end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 2]) end
redis.call('HSET', KEYS[1], 'keys', keys, 'bytes', bytes)
return {1, k0, b0, keys, bytes}
"#;

/// Deletes `KEYS[2..]` and keeps the usage hash `KEYS[1]`; `ARGV[3]`: the prefix length
/// (`ARGV[1..2]`, the quota, are not needed to shrink).
const DELETE_LUA: &str = r#"
local keys = tonumber(redis.call('HGET', KEYS[1], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
for i = 2, #KEYS do
  local k = KEYS[i]
  if redis.call('EXISTS', k) == 1 then
    bytes = bytes - (#k - tonumber(ARGV[3])) - redis.call('STRLEN', k)
    keys = keys - 1
    redis.call('DEL', k)
  end
end
redis.call('HSET', KEYS[1], 'keys', math.max(keys, 0), 'bytes', math.max(bytes, 0))
return 1
"#;

/// Adds `ARGV[4]` to the counter `KEYS[2]` and keeps the usage hash `KEYS[1]`, undone if the
/// result would be over the quota (`ARGV[1..3]` as for SET). Answers as SET, with the new
/// value last (text: Lua numbers would round a large counter); `applied` is -1 for a value
/// that is not a counter and -2 for a sum Redis cannot hold, nothing changed for either.
const INCREMENT_LUA: &str = r#"
local keys = tonumber(redis.call('HGET', KEYS[1], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local k0, b0, k = keys, bytes, KEYS[2]
local klen = #k - tonumber(ARGV[3])
local current = redis.call('GET', k)
if current then
  -- A counter is decimal digits, as the embedded store reads it; anything else is left alone.
  if not string.match(current, '^%s*-?%d+%s*$') then return {-1, k0, b0, keys, bytes, ''} end
  bytes = bytes - klen - #current
else
  keys = keys + 1
end
local sum = redis.pcall('INCRBY', k, ARGV[4])
if type(sum) == 'table' and sum.err then return {-2, k0, b0, keys, bytes, ''} end
bytes = math.max(bytes + klen + redis.call('STRLEN', k), 0)
local mk, mb = tonumber(ARGV[1]), tonumber(ARGV[2])
if (mk > 0 and keys > mk and keys > k0) or (mb > 0 and bytes > mb and bytes > b0) then
  if current then redis.call('SET', k, current) else redis.call('DEL', k) end
  return {0, k0, b0, keys, bytes, ''}
end
redis.call('HSET', KEYS[1], 'keys', keys, 'bytes', bytes)
return {1, k0, b0, keys, bytes, redis.call('GET', k)}
"#;

impl Redis {
    /// A backend for the server at `url` (`redis://host:port[/db]`); nothing is connected yet.
    pub fn new(url: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url)
            .map_err(|e| KvError(format!("redis url {url:?}: {e}; write redis://HOST:PORT[/DB]")))?;
        Ok(Redis { client, url: url.to_owned(), conn: tokio::sync::Mutex::new(None), quota: Quota::default() })
    }

    /// This backend, its stores held to `quota`.
    pub fn with_quota(self, quota: Quota) -> Self {
        Redis { quota, ..self }
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

    /// The hash that counts what `store` holds.
    fn usage_key(store: &str) -> String {
        format!("spore:usage:{}:{store}", store.len())
    }

    /// Runs `script` on `store`'s usage hash and `keys`, its quota and key prefix first among
    /// the arguments, then `args`.
    fn invoke(&self, script: &'static Script, store: &str, keys: &[&str]) -> redis::ScriptInvocation<'static> {
        let mut call = script.key(Self::usage_key(store));
        for k in keys {
            call.key(Self::key(store, k));
        }
        call.arg(self.quota.max_keys.unwrap_or(0))
            .arg(self.quota.max_bytes.unwrap_or(0))
            .arg(Self::key(store, "").len());
        call
    }

    /// The quota's answer to a script's `{applied, keys before, bytes before, keys after, bytes after}`.
    fn admitted(&self, store: &str, answer: (i64, i64, i64, i64, i64)) -> Result<(), KvError> {
        let (applied, k0, b0, k, b) = answer;
        let usage = |keys: i64, bytes: i64| Usage { keys: keys.max(0) as u64, bytes: bytes.max(0) as u64 };
        let result = self.quota.admit(store, usage(k0, b0), usage(k, b));
        match (applied, result) {
            (1, _) => Ok(()),
            (_, Err(e)) => Err(e),
            // Lua and Quota::admit disagree: say so rather than claim a write that did not happen.
            (_, Ok(())) => Err(KvError(format!("store {store}: the write was not applied"))),
        }
    }
}

impl Backend for Redis {
    fn get<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move { self.conn().await?.get(Self::key(store, key)).await.map_err(|e| self.fail(e)) })
    }

    fn set<'a>(&'a self, store: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let answer = self.invoke(&SET, store, &[key]).arg(value).invoke_async(&mut self.conn().await?).await;
            self.admitted(store, answer.map_err(|e| self.fail(e))?)
        })
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let _: i64 = self
                .invoke(&DELETE, store, &[key])
                .invoke_async(&mut self.conn().await?)
                .await
                .map_err(|e| self.fail(e))?;
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

    fn increment<'a>(&'a self, store: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, KvError>> {
        Box::pin(async move {
            let result: Result<(i64, i64, i64, i64, i64, String), _> =
                self.invoke(&INCREMENT, store, &[key]).arg(delta).invoke_async(&mut self.conn().await?).await;
            match result {
                // Same words as the embedded store for a value that is not a counter.
                Ok((-1, ..)) => Err(parse_counter(store, key, Some(b"x"))
                    .err()
                    .unwrap_or_else(|| KvError(format!("{store}/{key}: not a counter")))),
                Ok((-2, ..)) => Err(KvError(format!("{store}/{key}: the counter would overflow"))),
                Ok((applied, k0, b0, k, b, value)) => {
                    self.admitted(store, (applied, k0, b0, k, b))?;
                    parse_counter(store, key, Some(value.as_bytes()))
                }
                Err(e) => Err(self.fail(e)),
            }
        })
    }

    fn swap_if<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        expected: Option<&'a [u8]>,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, KvError>> {
        Box::pin(async move {
            let mut call = self.invoke(&SET, store, &[key]);
            call.arg(value);
            match expected {
                None => call.arg("0"),
                Some(v) => call.arg("1").arg(v),
            };
            let answer: (i64, i64, i64, i64, i64) =
                call.invoke_async(&mut self.conn().await?).await.map_err(|e| self.fail(e))?;
            if answer.0 == -3 {
                return Ok(false);
            }
            self.admitted(store, answer).map(|()| true)
        })
    }

    fn set_many<'a>(&'a self, store: &'a str, pairs: &'a [(String, Vec<u8>)]) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            if pairs.is_empty() {
                return Ok(());
            }
            let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            let mut call = self.invoke(&SET, store, &keys);
            for (_, v) in pairs {
                call.arg(v.as_slice());
            }
            let answer = call.invoke_async(&mut self.conn().await?).await;
            self.admitted(store, answer.map_err(|e| self.fail(e))?)
        })
    }

    fn delete_many<'a>(&'a self, store: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let _: i64 = self
                .invoke(&DELETE, store, &keys)
                .invoke_async(&mut self.conn().await?)
                .await
                .map_err(|e| self.fail(e))?;
            Ok(())
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
        let quota = Quota { max_keys: Some(3), max_bytes: Some(30) };
        crate::conformance::quota(&Redis::new(&format!("redis://127.0.0.1:{port}")).unwrap().with_quota(quota)).await;
        drop(server);
        assert!(kv.get("s", "n").await.is_err(), "down again");
        let _server = Server::start(port);
        kv.set("s", "back", b"1").await.unwrap();
        assert_eq!(kv.get("s", "back").await.unwrap().as_deref(), Some(&b"1"[..]), "recovered");
    }
}
