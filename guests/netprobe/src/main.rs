//! Network probe (a WASI 0.2 component): `netprobe connect ADDR` sends "ping" and prints the
//! reply; `netprobe listen ADDR` binds a listener. Errors print and exit 1, so tests can see
//! what the sandbox's network policy allowed.
use std::io::{Read, Write};
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("connect"), Some(addr)) => std::net::TcpStream::connect(addr.as_str()).and_then(|mut s| {
            s.write_all(b"ping")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            println!("connected to {addr}: {reply}");
            Ok(())
        }),
        (Some("listen"), Some(addr)) => std::net::TcpListener::bind(addr.as_str()).map(|l| {
            println!("listening on {}", l.local_addr().map(|a| a.to_string()).unwrap_or_default());
        }),
        _ => {
            eprintln!("usage: netprobe connect ADDR | netprobe listen ADDR");
            exit(2);
        }
    };
    if let Err(err) = result {
        eprintln!("netprobe {}: {err}", args[1]);
        exit(1);
    }
}
