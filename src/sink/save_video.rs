//! `save_video`: a stream encoded into a video file as it arrives.

use std::path::Path;

use super::{Report, SinkRun};
use crate::error::Result;
use crate::stream::{OpenRequest, Source};
use crate::video::{VideoOptions, VideoWriter};

/// Encodes every frame of `source` into `path` with `options` (codec, container, pixel
/// format, rate control, tags, audio). Frames are converted to the encoder's 8/10-bit planes
/// on the device and encoded on a dedicated thread while the next chunk is computed; memory
/// does not grow with the video's length. The output is atomic (see the crate docs).
///
/// `options.chunk_frames`, when set, overrides the request's chunk size.
pub async fn save_video<S: Source + ?Sized>(
    source: &S,
    path: impl AsRef<Path>,
    request: &OpenRequest,
    options: &VideoOptions,
) -> Result<Report> {
    let request = match options.chunk_frames {
        Some(n) => request.clone().with_chunk_frames(n),
        None => request.clone(),
    };
    let mut run = SinkRun::open("save_video", source, &request)?;
    let mut writer = match VideoWriter::open(path.as_ref(), options, run.info(), request.chunk_frames(), request.device()).await {
        Ok(writer) => writer,
        Err(e) => return Err(run.fail(e)),
    };
    while let Some(chunk) = run.next().await {
        let written = match chunk {
            Ok(chunk) => writer.write(&chunk).await.map(|()| chunk.frames()),
            Err(e) => Err(e),
        };
        match written {
            Ok(frames) => run.advance(frames),
            Err(e) => return Err(run.fail(e)),
        }
    }
    match writer.finish().await {
        Ok(path) => Ok(run.finish(Some(path))),
        Err(e) => Err(run.fail(e)),
    }
}
