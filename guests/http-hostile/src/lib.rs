//! A hostile wasi:http app, one route per attack on the server that hosts it:
//! - `/linger`: answers, then computes forever (the instance outlives its response);
//! - `/linger-sleep`: answers, then sleeps for an hour;
//! - `/linger-log`: answers, then writes a line to stderr every 10 ms, forever;
//! - `/fd-bomb`: opens `/` until refused, then answers with how many it held.
use http_common::respond;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hostile;

impl wasi::exports::http::incoming_handler::Guest for Hostile {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        match http_common::path(&req).as_str() {
            "/linger" => {
                respond(out, 200, b"answered; now spinning\n");
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "/linger-sleep" => {
                respond(out, 200, b"answered; now sleeping\n");
                wasi::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000).block();
            }
            "/linger-log" => {
                respond(out, 200, b"answered; now logging\n");
                for n in 0u64.. {
                    eprintln!("still here {n}");
                    wasi::clocks::monotonic_clock::subscribe_duration(10_000_000).block();
                }
            }
            "/fd-bomb" => {
                let mut held = Vec::new();
                let why = loop {
                    match std::fs::File::open("/") {
                        Ok(f) => held.push(f),
                        Err(e) => break e.to_string(),
                    }
                };
                respond(out, 200, format!("held {} then: {why}\n", held.len()).as_bytes());
            }
            _ => respond(out, 404, b"no such attack\n"),
        }
    }
}

wasi::http::proxy::export!(Hostile);
