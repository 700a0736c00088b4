//! WASI for a bundle's app: the process's own stdin, stdout and stderr, and the system's
//! clocks and entropy as the runner's apps have them.

use crate::system::{self, Clocks};
use spore_edge::{Interrupt, Stop};
use spore_wasip1::{Clock, Host, Stream, Taken};
use std::io::{Read, Write};

pub(crate) struct BundleHost {
    pub(crate) clocks: Clocks,
    pub(crate) interrupt: Interrupt,
}

impl Host for BundleHost {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<Taken, Stop> {
        // Unbuffered, as a WASI stream is. A closed pipe (`./app | head -1`) is not the app's
        // problem: the bytes go nowhere, as `spore run` has it.
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().lock().flush()),
            Stream::Stderr => std::io::stderr().lock().write_all(bytes),
        };
        Ok(Taken::All)
    }

    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Stop> {
        // A stdin that cannot be read (closed, a directory) is an empty one.
        Ok(std::io::stdin().lock().read(buf).unwrap_or(0))
    }

    fn now(&mut self, clock: Clock) -> Option<u64> {
        self.clocks.now(clock)
    }

    fn resolution(&mut self, _: Clock) -> Option<u64> {
        Some(1)
    }

    fn random(&mut self, buf: &mut [u8]) {
        system::fill_random(buf);
    }

    fn sleep_until(&mut self, deadline: u64) -> Result<(), Stop> {
        self.clocks.sleep_until(deadline, &self.interrupt)
    }

    fn yield_now(&mut self) -> Result<(), Stop> {
        system::yield_now(&self.interrupt)
    }
}
