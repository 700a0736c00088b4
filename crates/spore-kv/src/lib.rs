//! Key-value storage for sandboxes, behind one trait so an app never learns whether the
//! operator chose the embedded store or Redis.
//!
//! A [`Backend`] holds any number of named stores (Spin's "key_value_stores"): the embedded
//! one keeps each store as a table of one redb file (ACID, durable across restarts); Redis
//! keeps each as a key prefix (`spore:{length}:{store}:{key}`). Counters are decimal text on both, so
//! `increment` then `get` reads the same bytes whichever backend holds them.
//!
//! Depends on no other Spore crate (redb, redis, tokio); must not know of sandboxes or guests
//! (it stores bytes under names).

mod embedded;
mod redis_backend;

pub use embedded::Embedded;
pub use redis_backend::Redis;

use futures_util::future::BoxFuture;

/// A backend could not do what was asked. The message is for the guest's `other(string)`
/// error and for the host log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

/// How much one store may hold, set by the operator per store label (`max_keys`, `max_bytes` in
/// the runtime config). A write that would take a store past either is refused whole — the
/// guest gets the interface's error, the host log a line — and nothing already stored is lost.
/// Writes that shrink a store always pass, so a store over a lowered quota can be emptied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// At most this many keys.
    pub max_keys: Option<u64>,
    /// At most this many bytes, keys and values together.
    pub max_bytes: Option<u64>,
}

/// What a store holds: its keys, and their bytes plus their values' bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
}

impl Usage {
    /// `key` = `value` was added.
    fn add(&mut self, key: &str, value: usize) {
        self.keys += 1;
        self.bytes += (key.len() + value) as u64;
    }

    /// `key`, holding `value` bytes, went.
    fn remove(&mut self, key: &str, value: usize) {
        self.keys = self.keys.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub((key.len() + value) as u64);
    }
}

impl Quota {
    /// Whether a write that takes `store` from `before` to `after` may happen; the refusal
    /// names the store, the quota and what to do, and is logged.
    pub(crate) fn admit(&self, store: &str, before: Usage, after: Usage) -> Result<(), KvError> {
        let over = |max: Option<u64>, before: u64, after: u64| max.filter(|&m| after > m && after > before);
        let refusal = if let Some(max) = over(self.max_keys, before.keys, after.keys) {
            format!("store {store} is full: this write would make {} keys, over its max_keys of {max}", after.keys)
        } else if let Some(max) = over(self.max_bytes, before.bytes, after.bytes) {
            format!("store {store} is full: this write would make {} bytes, over its max_bytes of {max}", after.bytes)
        } else {
            return Ok(());
        };
        tracing::warn!(
            "key-value: {refusal}; nothing was written (delete keys, or raise the quota in the runtime config)"
        );
        Err(KvError(format!("{refusal}; nothing was written")))
    }
}

/// One page of keys: the keys and, when more follow, the cursor for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// Keys of this page.
    pub keys: Vec<String>,
    /// Where the next page starts, if there is one.
    pub cursor: Option<u64>,
}

/// Storage behind `wasi:keyvalue`. Every method names the store (bucket) it works on.
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`.
    fn get<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>>;
    /// Sets `key`.
    fn set<'a>(&'a self, store: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KvError>>;
    /// Removes `key` (no error when absent).
    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>>;
    /// Whether `key` is set.
    fn exists<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, KvError>>;
    /// A page of keys from `cursor` (None: the first page).
    fn list<'a>(&'a self, store: &'a str, cursor: Option<u64>) -> BoxFuture<'a, Result<KeyPage, KvError>>;
    /// Adds `delta` (negative: subtracts) to the counter at `key` (absent counts as 0),
    /// atomically; returns the new value. A counter is signed 64-bit decimal text.
    fn increment<'a>(&'a self, store: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, KvError>>;
    /// Sets `key` to `value` only if it still holds `expected` (`None`: only if it is absent),
    /// atomically, as one write under the store's quota; answers whether it did. The guest's
    /// compare-and-swap: read, compute, write back unless another writer came between.
    fn swap_if<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        expected: Option<&'a [u8]>,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, KvError>>;
    /// Sets several keys at once (atomically where the backend can).
    fn set_many<'a>(&'a self, store: &'a str, pairs: &'a [(String, Vec<u8>)]) -> BoxFuture<'a, Result<(), KvError>>;
    /// Removes several keys at once.
    fn delete_many<'a>(&'a self, store: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), KvError>>;
    /// Values of several keys (None where absent), in order: one read each, refused once the
    /// answer (keys and values) passes [`MAX_BATCH_BYTES`]. Asked for one large key many times
    /// over, the host would otherwise hold its value as many times before the guest's memory
    /// (and its limit) is reached.
    fn get_many<'a>(
        &'a self,
        store: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, KvError>> {
        Box::pin(async move {
            let (mut values, mut held) = (Vec::new(), 0usize);
            for key in keys {
                let value = self.get(store, key).await?;
                held = held.saturating_add(key.len() + value.as_ref().map_or(0, Vec::len));
                if held > MAX_BATCH_BYTES {
                    return Err(KvError(format!(
                        "get-many of {} keys answers more than {} bytes: ask for fewer keys at a time",
                        keys.len(),
                        MAX_BATCH_BYTES
                    )));
                }
                values.push(value);
            }
            Ok(values)
        })
    }
}

/// The most a batch read answers, keys and values together.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// The counter text a backend stores, parsed (`None`: absent).
fn parse_counter(store: &str, key: &str, value: Option<&[u8]>) -> Result<i64, KvError> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes).ok().and_then(|s| s.trim().parse::<i64>().ok()).ok_or_else(|| {
            KvError(format!(
                "{store}/{key} holds a value that is not a counter (decimal digits, maybe a leading -); increment needs one"
            ))
        }),
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The behaviour every backend must show, run against each.
    use super::*;

    pub async fn check(b: &dyn Backend) {
        assert_eq!(b.get("s", "k").await.unwrap(), None);
        b.set("s", "k", b"v1").await.unwrap();
        assert_eq!(b.get("s", "k").await.unwrap().as_deref(), Some(&b"v1"[..]));
        assert!(b.exists("s", "k").await.unwrap());
        assert_eq!(b.get("other", "k").await.unwrap(), None, "stores are separate");
        assert_eq!(b.increment("s", "n", 2).await.unwrap(), 2);
        assert_eq!(b.increment("s", "n", 3).await.unwrap(), 5);
        assert_eq!(b.get("s", "n").await.unwrap().as_deref(), Some(&b"5"[..]));
        assert!(b.increment("s", "k", 1).await.unwrap_err().0.contains("not a counter"));
        assert_eq!(b.increment("s", "m", -7).await.unwrap(), -7, "counters are signed");
        assert_eq!(b.increment("s", "m", 10).await.unwrap(), 3);
        assert_eq!(b.get("s", "m").await.unwrap().as_deref(), Some(&b"3"[..]));
        b.set("s", "m", i64::MAX.to_string().as_bytes()).await.unwrap();
        assert!(b.increment("s", "m", 1).await.unwrap_err().0.contains("overflow"));
        assert_eq!(b.get("s", "m").await.unwrap(), Some(i64::MAX.to_string().into_bytes()), "unchanged");
        b.delete("s", "m").await.unwrap();
        // Compare-and-swap: only over the value the writer last saw.
        assert!(b.swap_if("s", "c", None, b"first").await.unwrap(), "absent, as expected");
        assert!(!b.swap_if("s", "c", None, b"again").await.unwrap(), "no longer absent");
        assert!(!b.swap_if("s", "c", Some(b"stale"), b"x").await.unwrap());
        assert_eq!(b.get("s", "c").await.unwrap().as_deref(), Some(&b"first"[..]), "a failed swap writes nothing");
        assert!(b.swap_if("s", "c", Some(b"first"), b"second").await.unwrap());
        assert_eq!(b.get("s", "c").await.unwrap().as_deref(), Some(&b"second"[..]));
        b.delete("s", "c").await.unwrap();
        assert!(!b.swap_if("s", "c", Some(b"second"), b"x").await.unwrap(), "deleted since");
        assert!(!b.exists("s", "c").await.unwrap());
        b.set_many("s", &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]).await.unwrap();
        let got = b.get_many("s", &["a".into(), "zz".into(), "b".into()]).await.unwrap();
        assert_eq!(got, vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())]);
        // One large value asked for many times over: refused, not held that many times.
        b.set("s", "big", &vec![7u8; 1 << 20]).await.unwrap();
        let err = b.get_many("s", &vec!["big".to_owned(); 100]).await.unwrap_err();
        assert!(err.0.contains("get-many of 100 keys answers more than"), "{err:?}");
        assert_eq!(b.get_many("s", &vec!["big".to_owned(); 8]).await.unwrap().len(), 8, "within the cap");
        b.delete("s", "big").await.unwrap();
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = b.list("s", cursor).await.unwrap();
            keys.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        keys.sort();
        assert_eq!(keys, ["a", "b", "k", "n"]);
        b.delete_many("s", &["a".into(), "b".into()]).await.unwrap();
        b.delete("s", "k").await.unwrap();
        b.delete("s", "k").await.unwrap();
        assert!(!b.exists("s", "k").await.unwrap());
        assert_eq!(b.list("s", None).await.unwrap().keys, ["n"]);
        // No (store, key) pair meets another, whatever separators either holds.
        b.set("x", "y:z", b"first").await.unwrap();
        b.set("x:y", "z", b"second").await.unwrap();
        assert_eq!(b.get("x", "y:z").await.unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(b.list("x", None).await.unwrap().keys, ["y:z"], "x lists none of x:y's keys");
        assert_eq!(b.list("x:y", None).await.unwrap().keys, ["z"]);
        // A store's name is a name, never a pattern.
        b.set("g*", "k", b"1").await.unwrap();
        b.set("gx", "other", b"2").await.unwrap();
        assert_eq!(b.list("g*", None).await.unwrap().keys, ["k"]);
    }

    /// The quota every backend keeps; `b` holds each store to 3 keys and 30 bytes.
    pub async fn quota(b: &dyn Backend) {
        let pair = |k: &str, v: &[u8]| (k.to_owned(), v.to_vec());
        b.set("q", "a", b"1234").await.unwrap(); // 1 key, 5 bytes
        b.set_many("q", &[pair("b", b"12345678"), pair("c", b"1"), pair("c", b"2")]).await.unwrap(); // 3, 16
        let err = b.set("q", "d", b"x").await.unwrap_err().0;
        assert!(err.contains("store q is full") && err.contains("4 keys, over its max_keys of 3"), "{err}");
        assert!(!b.exists("q", "d").await.unwrap(), "a refused write leaves nothing");
        let err = b.increment("q", "n", 1).await.unwrap_err().0;
        assert!(err.contains("max_keys of 3"), "{err}");
        assert!(!b.exists("q", "n").await.unwrap(), "a refused increment is undone");
        // A refused batch is refused whole: "a" keeps its value.
        let err = b.set_many("q", &[pair("a", b"9"), pair("e", b"9")]).await.unwrap_err().0;
        assert!(err.contains("max_keys"), "{err}");
        assert_eq!(b.get("q", "a").await.unwrap().as_deref(), Some(&b"1234"[..]));
        // Overwrites count the difference: 16 - 5 + 16 = 27 fits, 16 - 5 + 20 = 31 does not.
        b.set("q", "a", &[b'x'; 15]).await.unwrap();
        let err = b.set("q", "a", &[b'x'; 19]).await.unwrap_err().0;
        assert!(err.contains("31 bytes, over its max_bytes of 30"), "{err}");
        assert_eq!(b.get("q", "a").await.unwrap().map(|v| v.len()), Some(15));
        // Deleting makes room; a counter's digits count.
        b.delete_many("q", &["b".into(), "zz".into()]).await.unwrap();
        b.delete("q", "c").await.unwrap();
        assert_eq!(b.increment("q", "n", 5).await.unwrap(), 5);
        b.set("q", "c", b"1").await.unwrap();
        b.set("q", "d", b"1").await.unwrap_err();
        assert_eq!(b.increment("q", "n", 5).await.unwrap(), 10, "a counter may grow by a digit within the quota");
        // The count after all that is exact: a(16) + n(3) + c(2) = 21 of 30 bytes.
        b.set("q", "c", &[b'x'; 10]).await.unwrap(); // c: 11, 30 in all
        let err = b.set("q", "c", &[b'x'; 11]).await.unwrap_err().0;
        assert!(err.contains("31 bytes, over its max_bytes of 30"), "deletes were counted exactly: {err}");
        // A value that is not a counter is left alone by increment, however it is spelled.
        b.delete("q", "c").await.unwrap();
        b.set("q", "c", b"3-").await.unwrap();
        assert!(b.increment("q", "c", 1).await.unwrap_err().0.contains("not a counter"));
        assert_eq!(b.get("q", "c").await.unwrap().as_deref(), Some(&b"3-"[..]));
        // A swap is a write like any other: held to the quota (n, a, c already: no fourth key).
        assert!(b.swap_if("q", "d", None, b"1").await.unwrap_err().0.contains("max_keys of 3"));
        assert!(!b.exists("q", "d").await.unwrap());
        assert!(b.swap_if("q", "c", Some(b"3-"), b"4").await.unwrap(), "an overwrite within the quota");
        // Another store has its own room.
        b.set_many("r", &[pair("a", b"1"), pair("b", b"2"), pair("c", b"3")]).await.unwrap();
    }
}
