//! `Preview`: every k frames, the last frame of a chunk as an 8-bit RGB image.

use std::path::PathBuf;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::atomic_file::write_atomic;
use crate::error::{Error, Result};
use crate::progress::{EventKind, StageId};
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// A preview frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewImage {
    /// The preview stage that took it.
    pub stage: Option<StageId>,
    /// Absolute frame index.
    pub frame: u64,
    pub width: usize,
    pub height: usize,
    /// `height × width × 3` bytes, row-major.
    pub rgb: Vec<u8>,
}

impl PreviewImage {
    /// The image encoded as PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let to_error = |e: png::EncodingError| Error::io("encoding a preview PNG", std::io::Error::other(e));
        let mut writer = encoder.write_header().map_err(to_error)?;
        writer.write_image_data(&self.rgb).map_err(to_error)?;
        writer.finish().map_err(to_error)?;
        Ok(out)
    }
}

/// Passes frames through unchanged; whenever the stream passes another multiple of `every`
/// frames, the last frame of the chunk is converted to 8-bit RGB on the device and delivered
/// on a channel and/or written as `preview-FRAME.png` into a folder. Each preview is also
/// reported as an event of this stage.
#[derive(Clone, Debug)]
pub struct Preview {
    every: u64,
    sender: Option<mpsc::Sender<PreviewImage>>,
    png_dir: Option<PathBuf>,
}

impl Preview {
    pub fn every(frames: u64) -> Self {
        Self { every: frames, sender: None, png_dir: None }
    }

    /// Delivers previews on `sender` (waiting for room: a full channel slows the stream).
    pub fn to_channel(mut self, sender: mpsc::Sender<PreviewImage>) -> Self {
        self.sender = Some(sender);
        self
    }

    /// Writes previews as PNG files into `dir` (which must exist).
    pub fn to_png_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.png_dir = Some(dir.into());
        self
    }
}

impl Stage for Preview {
    fn name(&self) -> String {
        "preview".into()
    }

    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        if self.every == 0 {
            return Err(Error::config("preview every 0 frames"));
        }
        Ok(upstream.clone())
    }

    fn apply(&self, upstream: FrameStream, info: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let this = self.clone();
        let request = request.clone();
        let (width, height) = (info.width, info.height);
        let mut upstream = upstream;
        Box::pin(async_stream::try_stream! {
            let mut next_at = this.every;
            while let Some(chunk) = upstream.next().await {
                let chunk = chunk?;
                if chunk.end_frame() >= next_at {
                    let frame = chunk.end_frame() - 1;
                    let rgb = chunk.slice(chunk.frames() - 1, 1)?.to_rgb8().await?;
                    let image = PreviewImage { stage: request.stage_id(), frame, width, height, rgb };
                    let path = match &this.png_dir {
                        Some(dir) => Some(write_png(dir.join(format!("preview-{frame:08}.png")), image.clone()).await?),
                        None => None,
                    };
                    if let Some(sender) = &this.sender {
                        // A dropped receiver only stops the previews, not the stream.
                        let _ = sender.send(image).await;
                    }
                    request.emit(EventKind::Preview { frame, path });
                    next_at = (chunk.end_frame() / this.every + 1) * this.every;
                }
                yield chunk;
            }
        })
    }
}

async fn write_png(path: PathBuf, image: PreviewImage) -> Result<PathBuf> {
    tokio::task::spawn_blocking(move || {
        write_atomic(&path, &image.to_png()?, true)?;
        Ok(path)
    })
    .await
    .map_err(|e| Error::io("writing a preview", std::io::Error::other(e)))?
}
