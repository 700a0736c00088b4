//! What the WASI 0.3 HTTP test apps share: a response whose body a spawned task writes after
//! `handle` has returned it (the 0.3 way: the body streams while the host sends the head).

use wasip3::http::types::{ErrorCode, Fields, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

/// A response of `status` with `body`, and a task left running that writes the body; `then`
/// runs in that task after the body is written (an app's work after its answer).
pub fn respond_then(
    status: u16,
    body: Vec<u8>,
    then: impl Future<Output = ()> + 'static,
) -> Result<Response, ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(rx), trailers_rx);
    response.set_status_code(status).map_err(|()| ErrorCode::InternalError(None))?;
    drop(trailers_tx);
    wit_bindgen::spawn(async move {
        let left = tx.write_all(body).await;
        assert!(left.is_empty(), "the client went away");
        drop(tx);
        then.await;
    });
    Ok(response)
}

/// [`respond_then`] with nothing after the body.
pub fn respond(status: u16, body: Vec<u8>) -> Result<Response, ErrorCode> {
    respond_then(status, body, async {})
}
