//! Key-value storage for sandboxes, behind one trait so an app never learns whether the
//! operator chose the embedded store or Redis.
//!
//! A [`Backend`] holds any number of named stores (Spin's "key_value_stores"): the embedded
//! one keeps each store as a table of one redb file (ACID, durable across restarts); Redis
//! keeps each as a key prefix (`{store}:{key}`). Counters are decimal text on both, so
//! `increment` then `get` reads the same bytes whichever backend holds them.

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
    /// Adds `delta` to the counter at `key` (absent counts as 0), atomically; returns the new value.
    fn increment<'a>(&'a self, store: &'a str, key: &'a str, delta: u64) -> BoxFuture<'a, Result<u64, KvError>>;
    /// Sets several keys at once (atomically where the backend can).
    fn set_many<'a>(&'a self, store: &'a str, pairs: &'a [(String, Vec<u8>)]) -> BoxFuture<'a, Result<(), KvError>>;
    /// Removes several keys at once.
    fn delete_many<'a>(&'a self, store: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), KvError>>;
    /// Values of several keys (None where absent), in order.
    fn get_many<'a>(
        &'a self,
        store: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, KvError>>;
}

/// The counter text a backend stores, parsed (`None`: absent).
fn parse_counter(store: &str, key: &str, value: Option<&[u8]>) -> Result<u64, KvError> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes).ok().and_then(|s| s.trim().parse::<u64>().ok()).ok_or_else(|| {
            KvError(format!("{store}/{key} holds a value that is not a counter (decimal digits); increment needs one"))
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
        b.set_many("s", &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]).await.unwrap();
        let got = b.get_many("s", &["a".into(), "zz".into(), "b".into()]).await.unwrap();
        assert_eq!(got, vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())]);
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
}
