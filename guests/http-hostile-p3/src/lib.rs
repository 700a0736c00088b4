//! http-hostile's attacks from a WASI 0.3 app, where the work after the answer is a task the
//! guest leaves running once `handle` has returned:
//! - `/linger`: answers, then computes forever;
//! - `/linger-sleep`: answers, then sleeps for an hour;
//! - `/linger-log`: answers, then writes a line to stderr every 10 ms, forever;
//! - `/fd-bomb`: opens the first preopened directory's `.` until refused (wasi:filesystem 0.3),
//!   then answers with how many it held.

use http_common_p3::{respond, respond_then};
use wasip3::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
use wasip3::http::types::{ErrorCode, Request, Response};

wasip3::http::service::export!(Hostile);

struct Hostile;

impl wasip3::exports::http::handler::Guest for Hostile {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        match req.get_path_with_query().unwrap_or_default().as_str() {
            "/linger" => respond_then(200, b"answered; now spinning\n".to_vec(), async {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }),
            "/linger-sleep" => respond_then(200, b"answered; now sleeping\n".to_vec(), async {
                wasip3::clocks::monotonic_clock::wait_for(3_600_000_000_000).await;
            }),
            "/linger-log" => respond_then(200, b"answered; now logging\n".to_vec(), async {
                for n in 0u64.. {
                    eprintln!("still here {n}");
                    wasip3::clocks::monotonic_clock::wait_for(10_000_000).await;
                }
            }),
            "/fd-bomb" => {
                let Some((root, _)) = wasip3::filesystem::preopens::get_directories().into_iter().next() else {
                    return respond(500, b"no directory to open\n".to_vec());
                };
                let mut held = Vec::new();
                let why = loop {
                    match root.open_at(PathFlags::empty(), ".".into(), OpenFlags::empty(), DescriptorFlags::READ).await {
                        Ok(d) => held.push(d),
                        Err(e) => break format!("{e:?}"),
                    }
                };
                respond(200, format!("held {} then: {why}\n", held.len()).into_bytes())
            }
            _ => respond(404, b"no such attack\n".to_vec()),
        }
    }
}
