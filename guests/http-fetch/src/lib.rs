//! Fetches `?url=http://HOST:PORT/PATH` through wasi:http/outgoing-handler and answers the
//! upstream's status and body, or 502 with the error code the host gave.
use http_common::{query, respond};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme};

struct Fetch;

fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|_| "scheme")?;
    req.set_authority(Some(authority)).map_err(|_| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let resp = pending.get().ok_or("no response")?.map_err(|_| "taken")?.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.consume().map_err(|_| "body")?;
    let stream = body.stream().map_err(|_| "stream")?;
    let mut all = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        all.extend(chunk);
    }
    Ok((status, all))
}

impl wasi::exports::http::incoming_handler::Guest for Fetch {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let Some(url) = query(&req, "url") else { return respond(out, 400, b"give ?url=") };
        match fetch(&url) {
            Ok((status, body)) => respond(out, 200, format!("{status} {}", String::from_utf8_lossy(&body)).as_bytes()),
            Err(e) => respond(out, 502, e.as_bytes()),
        }
    }
}

wasi::http::proxy::export!(Fetch);
