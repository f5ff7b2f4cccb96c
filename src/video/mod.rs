//! FFmpeg behind dedicated threads: every FFmpeg context lives on one thread and is fed or
//! drained through a bounded channel, so the device works on the next chunk while FFmpeg
//! encodes or decodes this one.

mod decoder;
mod encoder;
mod options;
mod pacing;
mod writer;

use std::sync::OnceLock;

pub(crate) use decoder::{Probe, spawn as decoder_spawn};
pub use options::{Codec, Container, FpsMode, PixelFormat, VideoOptions};
pub(crate) use writer::VideoWriter;

/// Decodes a file on the host only, without a device, and counts the frames FFmpeg presents:
/// the demuxing and decoding of untrusted files, for the fuzz target.
#[doc(hidden)]
pub fn decode_on_host(path: &std::path::Path, chunk_frames: usize) -> crate::Result<u64> {
    let probe = Probe::read(path)?;
    let (mut chunks, thread) = decoder_spawn(path.to_path_buf(), probe, chunk_frames.max(1))?;
    let mut frames = Ok(0);
    while let Some(chunk) = chunks.blocking_recv() {
        frames = frames.and_then(|n| Ok(n + chunk?.frames as u64));
    }
    // Joined, so the thread's resources are gone when this returns (a leak check sees none).
    let _ = thread.join();
    frames
}

/// Initialises FFmpeg once; its log is limited to errors (encoders print statistics at the
/// default level).
pub(crate) fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // Registration cannot fail on FFmpeg ≥ 4; the call only sets up networking.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}

/// The frame rate as FFmpeg's rational.
pub(crate) fn ff_rational(r: crate::stream::Rational) -> ffmpeg_next::Rational {
    ffmpeg_next::Rational::new(r.num as i32, r.den as i32)
}
