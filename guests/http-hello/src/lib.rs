//! A wasi:http app: `/` greets, `/echo` returns the request body, `/slow` takes 10 s, `/trap`
//! traps, `/env/NAME` shows an environment variable.
use http_common::{path, read_body, respond};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let p = path(&req);
        match p.as_str() {
            "/echo" => match read_body(&req) {
                Ok(body) => respond(out, 200, &body),
                Err(e) => respond(out, 400, e.as_bytes()),
            },
            "/slow" => {
                wasi::clocks::monotonic_clock::subscribe_duration(10_000_000_000).block();
                respond(out, 200, b"late\n");
            }
            "/trap" => panic!("the guest failed on purpose"),
            _ if p.starts_with("/env/") => {
                let name = &p["/env/".len()..];
                let value = std::env::var(name).unwrap_or_default();
                respond(out, 200, value.as_bytes());
            }
            _ => respond(out, 200, format!("Hello from Spore over HTTP at {p}\n").as_bytes()),
        }
    }
}

wasi::http::proxy::export!(Hello);
