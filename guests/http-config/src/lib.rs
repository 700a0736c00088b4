//! Echoes configuration: `GET /…/NAME` answers the wasi:config value of NAME, the path's last
//! segment (404 if unset).
use ::wasi::http::types::{IncomingRequest, ResponseOutparam};
use http_common::{path, respond};

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "spore:guests/config", generate_all });
}

struct Echo;

impl ::wasi::exports::http::incoming_handler::Guest for Echo {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let key = path(&req).rsplit('/').next().unwrap_or_default().to_owned();
        match bindings::wasi::config::store::get(&key) {
            Ok(Some(v)) => respond(out, 200, v.as_bytes()),
            Ok(None) => respond(out, 404, b"unset"),
            Err(e) => respond(out, 500, format!("{e:?}").as_bytes()),
        }
    }
}

::wasi::http::proxy::export!(Echo with_types_in ::wasi);
