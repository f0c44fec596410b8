//! The event trace of a simulation run: one human-readable line per event, stamped with the
//! simulated time since the run began.
//!
//! Every part of the run (fault schedule, clients, state machines, checkers) writes through a
//! cloned [`Tracer`] into one channel, in the order the single-threaded runtime runs them, so two
//! runs of one seed produce the same lines. A disabled tracer formats nothing.

use std::fmt::Display;

/// Where a run's events go; cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    inner: Option<(flume::Sender<String>, tokio::time::Instant)>,
}

/// Collects the lines written through a [`Tracer`].
pub struct TraceLog {
    rx: Option<flume::Receiver<String>>,
}

/// A tracer whose time starts now, and its log. With `enabled` false the tracer does nothing.
pub fn new(enabled: bool) -> (Tracer, TraceLog) {
    if !enabled {
        return (Tracer { inner: None }, TraceLog { rx: None });
    }
    // Bounded only by the run's length; a full channel drops lines (never blocks a task).
    let (tx, rx) = flume::bounded(1 << 24);
    (
        Tracer {
            inner: Some((tx, tokio::time::Instant::now())),
        },
        TraceLog { rx: Some(rx) },
    )
}

impl Tracer {
    /// Whether lines are recorded.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records `what` (formatted only when enabled), as `[   12.345s] what`. Simulated time
    /// moves in whole milliseconds, so the stamp is exact and equal across runs of a seed.
    pub fn event(&self, what: impl FnOnce() -> String) {
        if let Some((tx, epoch)) = &self.inner {
            let ms = epoch.elapsed().as_millis();
            let _ = tx.try_send(format!("[{:>6}.{:03}s] {}", ms / 1000, ms % 1000, what()));
        }
    }

    /// Records a line that needs no formatting work.
    pub fn line(&self, what: impl Display) {
        self.event(|| what.to_string());
    }
}

impl TraceLog {
    /// Every line recorded so far.
    pub fn drain(&self) -> Vec<String> {
        self.rx
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }
}
