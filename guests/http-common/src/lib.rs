//! What the HTTP test guests share: answering, reading the body, reading the query.
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// Sends `status` with `body` as text.
pub fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"text/plain");
    let resp = OutgoingResponse::new(headers);
    resp.set_status_code(status).expect("status");
    let outgoing = resp.body().expect("body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = outgoing.write().expect("stream");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish");
}

/// The whole request body (an error when the host cuts it off).
pub fn read_body(req: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = req.consume().map_err(|_| "body already taken")?;
    let stream = body.stream().map_err(|_| "no stream")?;
    let mut all = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => all.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(all)
}

/// The path without the query.
pub fn path(req: &IncomingRequest) -> String {
    let pq = req.path_with_query().unwrap_or_default();
    pq.split('?').next().unwrap_or("").to_owned()
}

/// A query parameter.
pub fn query(req: &IncomingRequest, key: &str) -> Option<String> {
    let pq = req.path_with_query().unwrap_or_default();
    let q = pq.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_owned()))
}
