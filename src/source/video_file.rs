//! `VideoFile`: any file FFmpeg reads, decoded into chunks on the device.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use framestream_kernels::unpack::unpack;

use crate::chunk::Chunk;
use crate::device::with_client;
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Rational, Source, StreamInfo};
use crate::video::{Probe, decoder_spawn};

/// A video file. Each open decodes it from the start on a thread of its own (two chunks are
/// decoded ahead at most) and gives exactly the frames FFmpeg presents: edit lists applied,
/// B-frames in display order, each frame with the file's timestamp (a variable-rate file
/// keeps its timing), a rotation in the display matrix applied, 10- and 12-bit samples and
/// alpha kept. The container's frame count is only an estimate for progress; interlaced
/// pictures are decoded as woven fields (see [`interlaced`](Self::interlaced)).
#[derive(Clone, Debug)]
pub struct VideoFile {
    path: Arc<PathBuf>,
    probe: Arc<Probe>,
}

impl VideoFile {
    /// Reads the file's header; errors name the file. Blocking (FFmpeg probes the file, which
    /// may be on a slow disk): async code uses [`open_async`](Self::open_async).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let probe = Probe::read(&path)?;
        Ok(Self { path: Arc::new(path), probe: Arc::new(probe) })
    }

    /// [`open`](Self::open) on a thread of its own.
    pub async fn open_async(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("video probing", move || Self::open(path)).await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Clockwise quarter turns applied to the decoded frames.
    pub fn quarter_turns(&self) -> u32 {
        self.probe.packed.quarter_turns
    }

    /// The nominal (average) frame rate.
    pub fn fps(&self) -> Rational {
        self.probe.fps
    }

    /// Whether the stream holds interlaced pictures. They are decoded as FFmpeg decodes them,
    /// both fields woven into each frame, not deinterlaced.
    pub fn interlaced(&self) -> bool {
        self.probe.interlaced
    }
}

impl Source for VideoFile {
    fn name(&self) -> String {
        "video_file".into()
    }

    fn info(&self) -> Result<StreamInfo> {
        let p = &*self.probe;
        let (width, height) = p.packed.output_size(p.width, p.height);
        Ok(StreamInfo {
            estimated_frames: p.estimated_frames,
            time_base: Some(p.time_base),
            ..StreamInfo::new(width, height, p.packed.channels as usize, p.fps, None)
        })
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let (path, probe) = (self.path.clone(), self.probe.clone());
        let device = request.device().clone();
        let chunk_frames = request.chunk_frames();
        let (width, height) = (probe.width, probe.height);
        let (out_w, out_h) = probe.packed.output_size(width, height);
        let channels = probe.packed.channels as usize;
        if probe.interlaced {
            request.emit(crate::EventKind::Info {
                message: format!(
                    "{}: interlaced; frames are decoded with both fields woven, not deinterlaced",
                    path.display()
                ),
            });
        }
        Box::pin(async_stream::try_stream! {
            // The thread ends by itself once the stream is dropped.
            let (mut chunks, _thread) = decoder_spawn((*path).clone(), (*probe).clone(), chunk_frames)?;
            let mut first = 0u64;
            while let Some(host) = chunks.recv().await {
                let host = host?;
                let expected = host.frames * probe.packed.bytes_per_frame(width, height);
                if host.bytes.len() != expected {
                    Err(Error::video(&path, Some(first), "the decoder returned a short frame"))?;
                }
                let packed = device.upload_bytes(&host.bytes)?;
                let out = device.alloc_frames(host.frames, out_w * out_h * channels, chunk_frames)?;
                with_client!(device, client => {
                    unpack(client, &packed, (host.frames, height, width), probe.packed, &out)
                });
                yield Chunk::new(&device, out, [host.frames, out_h, out_w, channels], first)?
                    .with_timestamps(host.timestamps)?;
                first += host.frames as u64;
            }
        })
    }
}
