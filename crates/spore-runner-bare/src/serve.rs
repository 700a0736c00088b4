//! The firmware's one loop: bytes off the UART into the session, its answers back out; a slice
//! of the next app; what runs wrote out within their credit; a short wait when there is
//! nothing to do.

use crate::board::Board;
use crate::runner::Bare;
use alloc::vec::Vec;
use spore_session::Session;
use spore_wire::Deframer;

/// Bytes taken off the link per turn, so a stream of input cannot hold the apps up.
const READ_PER_TURN: usize = 512;

/// The runner, its link and the board.
pub struct Firmware<B: Board> {
    board: B,
    session: Session<Bare<B>>,
    deframer: Deframer,
}

impl<B: Board> Firmware<B> {
    /// The firmware on `board`, with `memory_bytes` of RAM for modules and apps.
    pub fn new(board: B, memory_bytes: u64) -> Firmware<B> {
        let session = Session::new(Bare::new(board.clone(), memory_bytes), false);
        let deframer = Deframer::new(session.frame_limit());
        Firmware { board, session, deframer }
    }

    /// Serves for ever.
    #[cfg(target_os = "none")]
    pub fn serve(mut self) -> ! {
        loop {
            if !self.turn() {
                self.board.idle(self.session.runner.next_wake());
            }
        }
    }

    /// One turn of the loop; whether it did anything.
    pub fn turn(&mut self) -> bool {
        let mut input = [0u8; READ_PER_TURN];
        let mut n = 0;
        while n < input.len() {
            match self.board.read() {
                Some(byte) => {
                    input[n] = byte;
                    n += 1;
                }
                None => break,
            }
        }
        let frames: Vec<_> = self.deframer.feed(&input[..n]).collect();
        for frame in frames {
            let answers = self.session.frame(frame.as_deref().map_err(Clone::clone));
            // What runs sent first: a killed run's EXIT comes before the DONE to its KILL.
            self.send_outgoing();
            for (id, answer) in answers {
                self.board.write(&spore_wire::to_stream(id, 0, &answer));
            }
            self.deframer.set_max(self.session.frame_limit());
        }
        let busy = self.session.runner.busy();
        self.session.runner.step();
        let sent = self.send_outgoing();
        n > 0 || busy || sent
    }

    /// Sends the frames runs have for the agent; whether there were any.
    fn send_outgoing(&mut self) -> bool {
        let mut sent = false;
        while let Some((id, message)) = self.session.runner.outgoing.pop_front() {
            self.board.write(&spore_wire::to_stream(id, 0, &message));
            sent = true;
        }
        sent
    }
}
