//! `SaveVideo`: save the frames flowing through to a video file and pass them on unchanged.

use std::path::PathBuf;

use futures::StreamExt;

use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};
use crate::video::{VideoOptions, VideoWriter};

/// Encodes the frames that pass (as [`save_video`](crate::sink::save_video) does) and yields
/// them downstream unchanged. The file is finalised when the stream ends and discarded when
/// the stream is dropped or fails first.
#[derive(Clone, Debug)]
pub struct SaveVideo {
    path: PathBuf,
    options: VideoOptions,
}

impl SaveVideo {
    pub fn new(path: impl Into<PathBuf>, options: VideoOptions) -> Self {
        Self { path: path.into(), options }
    }
}

impl Stage for SaveVideo {
    fn name(&self) -> String {
        "save_video".into()
    }

    fn apply(&self, upstream: FrameStream, info: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let (path, options, info) = (self.path.clone(), self.options.clone(), info.clone());
        let (chunk_frames, device) = (request.chunk_frames(), request.device().clone());
        let mut upstream = upstream;
        Box::pin(async_stream::try_stream! {
            let mut writer = VideoWriter::open(&path, &options, &info, chunk_frames, &device).await?;
            while let Some(chunk) = upstream.next().await {
                let chunk = chunk?;
                writer.write(&chunk).await?;
                yield chunk;
            }
            writer.finish().await?;
        })
    }
}
