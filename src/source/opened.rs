//! `Opened`: a stream already opened, as a source a sink consumes once; and `rechunk`, which
//! regroups any chunk sizes into the sizes a request asks for.

use std::sync::Mutex;

use futures::StreamExt;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Source, StreamInfo, failed};

/// A stream that is already running (a [`Tee`](crate::stage::Tee) branch, a
/// [`channel`](crate::source::channel), or any opened pipeline), as a [`Source`] that can be
/// opened **once**: every sink takes it. Its chunks are regrouped to the chunk size of the
/// request that opens it; a second open is an error, since the frames are gone.
///
/// Frames computed on another stream of the device are copied onto the request's stream
/// (after both streams are synchronised): open it with a clone of the request that computed
/// them (`request.clone().with_chunk_frames(n)`) to skip that copy.
pub struct Opened {
    name: String,
    info: StreamInfo,
    stream: Mutex<Option<FrameStream>>,
}

impl Opened {
    /// `stream` carries what `info` says (frames of any chunk size, numbered from 0).
    pub fn new(name: impl Into<String>, info: StreamInfo, stream: FrameStream) -> Self {
        Self { name: name.into(), info, stream: Mutex::new(Some(stream)) }
    }

    /// Opens `source` now with `request`: its frames run once, into whatever consumes this.
    pub fn open<S: Source + ?Sized>(source: &S, request: &OpenRequest) -> Result<Self> {
        Ok(Self::new(source.name(), source.info()?, source.open(request)))
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("name", &self.name).field("info", &self.info).finish_non_exhaustive()
    }
}

impl Source for Opened {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn info(&self) -> Result<StreamInfo> {
        Ok(self.info.clone())
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let taken = self.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(stream) = taken else {
            return failed(Error::config(format!(
                "`{}` is an opened stream: its frames can be consumed once (open the source again \
                 to replay it, or tee it)",
                self.name
            )));
        };
        // Frames computed on another stream of the device are copied onto the consumer's.
        let device = request.device().clone();
        let handed = stream.then(move |chunk| {
            let device = device.clone();
            async move {
                match chunk? {
                    chunk if chunk.device().same_stream(&device) => Ok(chunk),
                    chunk if chunk.device().same_device(&device) => chunk.handed_to(&device).await,
                    _ => Err(Error::Device("frames live on another device".into())),
                }
            }
        });
        rechunk(Box::pin(handed), request.chunk_frames())
    }
}

/// Regroups a stream's chunks, whatever their sizes, into chunks of `chunk_frames` frames (the
/// last may be shorter), numbered consecutively from 0; timestamps follow their frames. A
/// chunk that already has the size passes without a copy; others are sliced and joined on the
/// device, holding at most one output chunk.
pub fn rechunk(upstream: FrameStream, chunk_frames: usize) -> FrameStream {
    let mut upstream = upstream;
    Box::pin(async_stream::try_stream! {
        if chunk_frames == 0 {
            Err(Error::config("chunk size 0 (a chunk holds at least one frame)"))?;
        }
        let mut pending: Vec<Chunk> = Vec::new();
        let (mut held, mut next) = (0usize, 0u64);
        while let Some(chunk) = upstream.next().await {
            let chunk = chunk?;
            let mut start = 0;
            while start < chunk.frames() {
                let take = (chunk_frames - held).min(chunk.frames() - start);
                pending.push(chunk.slice(start, take)?.with_first_frame(next + held as u64));
                held += take;
                start += take;
                if held == chunk_frames {
                    let out = Chunk::concat(&pending)?;
                    pending.clear();
                    next += held as u64;
                    held = 0;
                    yield out;
                }
            }
        }
        if held > 0 {
            yield Chunk::concat(&pending)?;
        }
    })
}
