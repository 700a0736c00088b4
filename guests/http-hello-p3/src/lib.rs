//! A WASI 0.3 HTTP app with http-hello's routes: `/` greets, `/echo` returns the request body,
//! `/slow` takes 10 s, `/trap` traps, `/env/NAME` shows an environment variable. Its body is
//! written by a task that runs on after `handle` has returned the response, as 0.3 apps do.

use http_common_p3::respond;
use wasip3::http::types::{ErrorCode, Request, Response};
use wasip3::wit_future;

wasip3::http::service::export!(Hello);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        let path = req.get_path_with_query().unwrap_or_else(|| "/".into());
        let (status, body) = match path.as_str() {
            "/echo" => {
                let (_, read) = wit_future::new(|| Ok(()));
                let (contents, trailers) = Request::consume_body(req, read);
                let body = contents.collect().await;
                // A body cut short (over the host's limit) ends in an error, not its trailers.
                match trailers.await {
                    Ok(_) => (200, body),
                    Err(e) => (400, format!("{e:?}").into_bytes()),
                }
            }
            "/slow" => {
                wasip3::clocks::monotonic_clock::wait_for(10_000_000_000).await;
                (200, b"late\n".to_vec())
            }
            "/trap" => panic!("the guest failed on purpose"),
            _ if path.starts_with("/env/") => {
                (200, std::env::var(&path["/env/".len()..]).unwrap_or_default().into_bytes())
            }
            _ => (200, format!("Hello from Spore over HTTP at {path}\n").into_bytes()),
        };
        respond(status, body)
    }
}
