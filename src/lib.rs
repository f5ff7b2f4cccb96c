//! framestream: video frames through GPU pipelines in chunks, with memory constant in the
//! video's length.
//!
//! A [`Source`] is a restartable factory of [`FrameStream`]s; a [`Stage`] wraps a stream
//! into another; a sink (`drain`, `collect`, `write_tensor`) opens a source with its chunk
//! size and drives it to the end. Frames stay on the compute device ([`Device`]) between
//! stages as [`Chunk`]s.
//!
//! ```no_run
//! use framestream::prelude::*;
//!
//! # async fn run() -> framestream::Result<()> {
//! let device = Device::from_env()?;
//! let video = TestPattern::new(320, 180, 240)?.resize(2.0, Filter::Lanczos3);
//! let request = OpenRequest::new(&device).with_chunk_frames(16);
//! let report = write_tensor(&video, "out.safetensors", &request, &Default::default()).await?;
//! println!("{} frames in {:?}", report.frames, report.elapsed);
//! # Ok(())
//! # }
//! ```
//!
//! Features: `video` (on by default) reads and writes video files through FFmpeg (`VideoFile`,
//! `save_video`, `SaveVideo`); without it the crate needs no FFmpeg libraries. `cli` (on by
//! default) builds the `framestream` command; `server` (on by default) the job service
//! ([`service`]); `cuda` adds the CUDA runtime.
//!
//! File outputs are atomic: they are written as `NAME.partial-XXXXXXXX` beside the target
//! and renamed when complete; an error, a cancelled future or a dropped stream removes the
//! partial file, and an existing target is only replaced when the options say so.

mod atomic_file;
mod blocking;
pub mod chunk;
pub mod device;
pub mod error;
mod ext;
pub mod kernel;
pub mod model;
pub mod progress;
#[cfg(feature = "server")]
pub mod service;
pub mod sink;
pub mod source;
pub mod stage;
pub mod stream;
mod sync;
#[cfg(feature = "video")]
pub mod video;

pub use chunk::{Chunk, HostFrames, Shape};
pub use device::{Device, DeviceInfo, DeviceKind, MAX_LANES, MemoryUsage};
pub use error::{Error, Result};
pub use ext::SourceExt;
pub use progress::{Event, EventKind, ProgressSender, StageId, StageReporter};
pub use stream::{
    failed, FrameSize, FrameStream, OpenRequest, Piped, Rational, Source, Stage, StreamInfo,
};

/// Everything a pipeline needs, in one import.
pub mod prelude {
    pub use crate::model::Latent;
    pub use crate::model::ltx::LtxVae;
    pub use crate::model::rife::RifeModel;
    pub use crate::model::wan::WanVae;
    pub use crate::sink::{Batch, Report, TensorFileOptions, collect, drain, write_tensor};
    pub use crate::source::{Concat, FrameSender, ImageBatch, LtxVaeDecode, Opened, TestPattern, WanVaeDecode, channel};
    pub use crate::stage::{Blend, Filter, Interpolate, Map, Preview, PreviewImage, Resize, Skip, Take, Tee, Then, Upscale};
    #[cfg(feature = "video")]
    pub use crate::{
        sink::save_video,
        source::VideoFile,
        stage::SaveVideo,
        video::{Codec, Container, FpsMode, PixelFormat, VideoOptions},
    };
    pub use crate::{
        Chunk, Device, DeviceKind, Error, Event, EventKind, FrameSize, FrameStream, OpenRequest,
        ProgressSender, Rational, Result, Source, SourceExt, Stage, StageId, StreamInfo,
    };
}
