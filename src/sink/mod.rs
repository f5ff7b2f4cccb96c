//! Sinks: open a source with their chunk size and drive it to the end.

mod collect;
mod drain;
#[cfg(feature = "video")]
mod save_video;
mod tensor_file;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;

pub use collect::{collect, Batch};
pub use drain::drain;
#[cfg(feature = "video")]
pub use save_video::save_video;
pub use tensor_file::{write_tensor, TensorFileOptions};

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::progress::StageReporter;
use crate::stream::{FrameStream, OpenRequest, Source, StreamInfo};

/// What a sink did.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Frames consumed.
    pub frames: u64,
    pub elapsed: Duration,
    /// The stream that was consumed.
    pub info: StreamInfo,
    /// The file written, for file sinks.
    pub output: Option<PathBuf>,
}

impl Report {
    /// Frames per second over the whole run.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One sink's run: the opened stream and the sink's own lifecycle events.
pub(crate) struct SinkRun {
    stream: FrameStream,
    reporter: StageReporter,
    info: StreamInfo,
    started: Instant,
}

impl SinkRun {
    pub fn open<S: Source + ?Sized>(name: &str, source: &S, request: &OpenRequest) -> Result<Self> {
        request.validate()?;
        let info = source.info()?;
        let reporter = request.start_stage(name, info.progress_frames());
        let stream = source.open(request);
        Ok(Self { stream, reporter, info, started: Instant::now() })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    pub async fn next(&mut self) -> Option<Result<Chunk>> {
        self.stream.next().await
    }

    /// Records `frames` more frames consumed.
    pub fn advance(&mut self, frames: usize) {
        self.reporter.advance(frames as u64);
    }

    pub fn finish(mut self, output: Option<PathBuf>) -> Report {
        self.reporter.finish();
        Report {
            frames: self.reporter.frames_done(),
            elapsed: self.started.elapsed(),
            info: self.info.clone(),
            output,
        }
    }

    /// Ends the run with `error`.
    pub fn fail(mut self, error: Error) -> Error {
        self.reporter.fail(&error);
        error
    }
}
