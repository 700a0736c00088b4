//! A key-value counter: `GET /count?store=NAME` (default `default`) adds one to `hits` and
//! answers the new value; a refused or failing store is answered with the interface's error.
use ::wasi::http::types::{IncomingRequest, ResponseOutparam};
use http_common::{query, respond};

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "spore:guests/kv", generate_all });
}

use bindings::wasi::keyvalue::{atomics, store};

struct Counter;

impl ::wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let name = query(&req, "store").unwrap_or_else(|| "default".into());
        let bucket = match store::open(&name) {
            Ok(b) => b,
            Err(store::Error::AccessDenied) => return respond(out, 403, b"access-denied\n"),
            Err(store::Error::NoSuchStore) => return respond(out, 404, b"no-such-store\n"),
            Err(store::Error::Other(e)) => return respond(out, 503, format!("other: {e}\n").as_bytes()),
        };
        match atomics::increment(&bucket, "hits", 1) {
            Ok(n) => {
                let stored = bucket.get("hits").ok().flatten().unwrap_or_default();
                respond(out, 200, format!("{n} {}\n", String::from_utf8_lossy(&stored)).as_bytes())
            }
            Err(e) => respond(out, 503, format!("{e:?}\n").as_bytes()),
        }
    }
}

::wasi::http::proxy::export!(Counter with_types_in ::wasi);
