//! The live progress bar on standard error: time (or requests) done,
//! requests per second, errors and the last second's p99. Drawn only when
//! the run's configuration asks for it ([`LoadConfig::progress`], which
//! the command turns off for `--json` and `--quiet`) and standard error
//! is a terminal. The run's notes are `tracing` events, emitted through
//! [`Progress::suspend`] so that a subscriber writing to standard error
//! does not tear the bar.
//!
//! [`LoadConfig::progress`]: super::LoadConfig::progress

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar, or nothing.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar when `wanted` and standard error is a terminal.
    pub fn new(wanted: bool) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self { bar }
    }

    /// Whether a bar is drawn.
    pub fn shown(&self) -> bool {
        self.bar.is_some()
    }

    /// Starts a phase named `prefix` of `length` (seconds or requests).
    pub fn phase(&self, prefix: String, length: u64) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(prefix);
            bar.set_length(length.max(1));
            bar.set_position(0);
        }
    }

    /// Moves to `position` with `message`.
    pub fn update(&self, position: u64, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.set_message(message);
        }
    }

    /// Runs `f` (which emits a `tracing` event, say) with the bar hidden,
    /// then draws it again.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
