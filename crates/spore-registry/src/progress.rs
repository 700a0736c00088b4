//! Transfer progress: a bar per blob on a terminal, one line per blob otherwise (so logs and
//! CI output still say what moved and what was skipped).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use spore_types::Digest;

/// Where progress goes.
pub struct Progress {
    multi: Option<MultiProgress>,
}

/// One blob's progress.
pub struct BlobProgress {
    bar: Option<ProgressBar>,
    label: String,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn stderr() -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress { multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    /// No output at all (the daemon logs pulls itself).
    pub fn hidden() -> Self {
        Progress { multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden())) }
    }

    /// Starts a blob's line: `verb` is what happens to it (Pulling, Pushing).
    pub fn blob(&self, verb: &str, digest: &Digest, size: u64) -> BlobProgress {
        let label = digest.hex()[..12].to_owned();
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template("{prefix} {msg:<10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            bar.set_message(verb.to_owned());
            bar
        });
        BlobProgress { bar, label }
    }
}

impl BlobProgress {
    /// `n` more bytes moved.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Done: `outcome` says how (Pulled, Pushed, Already exists).
    pub fn finish(self, outcome: &str, size: u64) {
        match self.bar {
            Some(bar) => {
                bar.set_position(size);
                bar.finish_with_message(outcome.to_owned());
            }
            None => eprintln!("{}: {outcome} ({})", self.label, spore_types::human_bytes(size)),
        }
    }
}
