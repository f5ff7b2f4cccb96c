//! Progress and lifecycle events.
//!
//! Every stage of an opened pipeline (its source, each stage, the sink) reports `Started`,
//! monotonic `Progress`, then exactly one of `Finished`, `Failed` or `Cancelled`, and nothing
//! after that. [`StageReporter`] enforces this: the terminal event is sent once, and dropping
//! a reporter that has not ended sends `Cancelled`.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

/// Identifies one stage of one opened pipeline (unique in the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(pub u64);

impl StageId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        StageId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One event of one stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub stage: StageId,
    /// The stage's name, e.g. "pattern", "resize", "write_tensor".
    pub name: Arc<str>,
    pub kind: EventKind,
}

/// New kinds may be added: match with a wildcard arm.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The stage was opened; `total_frames` when the length is known or estimated (a
    /// container's count: the stage may end before or after it).
    Started { total_frames: Option<u64> },
    /// Frames delivered so far (monotonic).
    Progress { frames_done: u64 },
    /// A preview of frame `frame` was taken (delivered on the preview's channel and/or
    /// written to `path`).
    Preview { frame: u64, path: Option<PathBuf> },
    /// The stage changed course to keep going (e.g. smaller tiles after exceeding the memory
    /// budget).
    Retry { reason: String },
    /// What the stage recognised or will produce, for people (e.g. the model a decoder
    /// loaded and the frame size it decodes to), sent before its first frame.
    Info { message: String },
    /// The stage delivered its last frame.
    Finished,
    /// The stage failed; nothing follows.
    Failed { error: String },
    /// The stage was dropped before it ended.
    Cancelled,
}

impl EventKind {
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Finished | EventKind::Failed { .. } | EventKind::Cancelled)
    }
}

/// Where events go.
pub type ProgressSender = UnboundedSender<Event>;

/// Sends the events of one stage and guarantees the lifecycle.
pub struct StageReporter {
    id: StageId,
    name: Arc<str>,
    sender: Option<ProgressSender>,
    frames_done: u64,
    ended: bool,
}

impl fmt::Debug for StageReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageReporter").field("id", &self.id).field("name", &self.name).finish()
    }
}

impl StageReporter {
    /// Starts a stage: allocates its id and sends `Started`.
    pub fn start(
        name: impl Into<Arc<str>>,
        total_frames: Option<u64>,
        sender: Option<ProgressSender>,
    ) -> Self {
        let reporter = Self {
            id: StageId::next(),
            name: name.into(),
            sender,
            frames_done: 0,
            ended: false,
        };
        reporter.send(EventKind::Started { total_frames });
        reporter
    }

    pub fn id(&self) -> StageId {
        self.id
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn frames_done(&self) -> u64 {
        self.frames_done
    }

    fn send(&self, kind: EventKind) {
        if let Some(sender) = &self.sender {
            // A closed receiver only means nobody listens any more.
            let _ = sender.send(Event { stage: self.id, name: self.name.clone(), kind });
        }
    }

    /// Counts `frames` more frames done.
    pub fn advance(&mut self, frames: u64) {
        if self.ended || frames == 0 {
            return;
        }
        self.frames_done += frames;
        self.send(EventKind::Progress { frames_done: self.frames_done });
    }

    /// Sends a non-lifecycle event (a preview) while the stage runs.
    pub fn event(&self, kind: EventKind) {
        debug_assert!(!kind.is_terminal());
        if !self.ended {
            self.send(kind);
        }
    }

    pub fn finish(&mut self) {
        self.end(EventKind::Finished);
    }

    pub fn fail(&mut self, error: &dyn fmt::Display) {
        self.end(EventKind::Failed { error: error.to_string() });
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn end(&mut self, kind: EventKind) {
        if !self.ended {
            self.ended = true;
            self.send(kind);
        }
    }
}

impl Drop for StageReporter {
    fn drop(&mut self) {
        self.end(EventKind::Cancelled);
    }
}
