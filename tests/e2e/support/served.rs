//! `spore serve` / `spore up` as a user runs them, and a small HTTP/1.1 client to talk to
//! them (one request per connection, so every answer is read to its end).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `spore serve|up`; SIGTERM (then kill) when dropped.
pub struct Served {
    pub addr: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Served {
    /// Starts `cmd` (which must not set --addr) on a free port and waits until it listens.
    pub fn start(mut cmd: Command, log_dir: &std::path::Path) -> Served {
        let addr = format!("127.0.0.1:{}", super::peers::free_port());
        let log = log_dir.join(format!("served-{}.log", addr.replace(':', "-")));
        let child = cmd
            .arg("--addr")
            .arg(&addr)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("cannot start spore");
        let mut s = Served { addr, log, child: Some(child) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if s.output().contains("Serving on http://") {
                return s;
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("spore exited with {status} before serving:\n{}", s.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("spore did not start serving:\n{}", s.output());
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request: (status, body).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        request(&self.addr, method, path, &[("content-length", &body.len().to_string())], body)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, b"")
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("spore did not stop on SIGTERM:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A request with extra headers, on its own connection.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    super::parse_response(&exchange(addr, method, path, headers, body))
}

/// A request with extra headers, on its own connection: the whole response, as sent.
pub fn exchange(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    raw
}
