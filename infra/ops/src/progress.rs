//! Progress of long dead-letter runs, on stderr: a bar on a terminal, a line every so many
//! letters otherwise (logs, CI), so a redrive of thousands never looks hung.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};

/// Lines are printed every this many letters when stderr is not a terminal.
pub const LINE_EVERY: u64 = 25;

pub struct Progress {
    label: &'static str,
    total: Option<u64>,
    done: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `total`: roughly how many letters there are (SQS counts approximately).
    pub fn new(label: &'static str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/~{len} ({elapsed})")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label);
            b
        });
        Progress {
            label,
            total,
            done: 0,
            bar,
        }
    }

    /// One more letter handled.
    pub fn tick(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(b) => {
                if self.total.is_some_and(|t| self.done > t) {
                    b.set_length(self.done);
                }
                b.set_position(self.done);
            }
            None if self.done.is_multiple_of(LINE_EVERY) => self.line(),
            None => {}
        }
    }

    fn line(&self) {
        let total = self
            .total
            .map(|t| format!(" of ~{}", t.max(self.done)))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "{}: {} letters{total}",
            self.label,
            self.done
        );
    }

    pub fn finish(self) {
        match &self.bar {
            Some(b) => b.finish_and_clear(),
            // Short runs print nothing; long ones end with the final count.
            None if self.done > LINE_EVERY && !self.done.is_multiple_of(LINE_EVERY) => self.line(),
            None => {}
        }
    }
}
