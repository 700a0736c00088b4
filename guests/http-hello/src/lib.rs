//! A wasi:http app: `/` greets, `/echo` returns the request body, `/slow` takes 10 s, `/trap`
//! traps, `/env/NAME` shows an environment variable, `/header/NAME` a request header (`-` if
//! absent), `/file/PATH` a file's text (404 if it cannot be read).
use http_common::{path, read_body, respond};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        // Routed on what the server's route left of the path (Spin's `spin-path-info`, as a
        // Spin SDK's router does), or the whole path where the route is exact.
        let rest = req.headers().get(&"spin-path-info".to_owned()).into_iter().next().unwrap_or_default();
        let p = match rest.is_empty() {
            true => path(&req),
            false => String::from_utf8_lossy(&rest).into_owned(),
        };
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
            _ if p.starts_with("/header/") => {
                let values = req.headers().get(&p["/header/".len()..].to_owned());
                let value = values.first().map_or("-".into(), |v| String::from_utf8_lossy(v).into_owned());
                respond(out, 200, value.as_bytes());
            }
            _ if p.starts_with("/file/") => match std::fs::read(&p["/file".len()..]) {
                Ok(text) => respond(out, 200, &text),
                Err(e) => respond(out, 404, format!("{e}\n").as_bytes()),
            },
            _ => respond(out, 200, format!("Hello from Spore over HTTP at {p}\n").as_bytes()),
        }
    }
}

wasi::http::proxy::export!(Hello);
