//! `write_tensor`: frames into a `.safetensors` file, streamed to disk chunk by chunk.
//!
//! The file holds one tensor `frames`, `[T, H, W, C]` f32 little-endian. The header is
//! written first with room reserved for the largest possible frame count (JSON allows
//! trailing spaces); when the length was not known up front it is patched at the end.

use std::io::SeekFrom;
use std::path::Path;

use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{Report, SinkRun};
use crate::atomic_file::AtomicFile;
use crate::error::{Error, Result};
use crate::stream::{OpenRequest, Source, StreamInfo};

/// Options of [`write_tensor`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorFileOptions {
    /// Replace an existing file.
    pub overwrite: bool,
}

fn header_json(info: &StreamInfo, frames: u64, bytes: u64) -> String {
    format!(
        concat!(
            r#"{{"__metadata__":{{"format":"framestream","fps":"{}/{}"}},"#,
            r#""frames":{{"dtype":"F32","shape":[{},{},{},{}],"data_offsets":[0,{}]}}}}"#
        ),
        info.fps.num, info.fps.den, frames, info.height, info.width, info.channels, bytes
    )
}

/// Header room: enough for any frame count, a multiple of 8 so the data is aligned.
fn reserved_len(info: &StreamInfo) -> usize {
    header_json(info, u64::MAX, u64::MAX).len().div_ceil(8) * 8
}

/// The length prefix and header JSON for `frames` frames, padded with spaces to `len`.
fn header(info: &StreamInfo, frames: u64, len: usize) -> Result<Vec<u8>> {
    let bytes = (info.frame_len() as u64)
        .checked_mul(4)
        .and_then(|b| b.checked_mul(frames))
        .ok_or_else(|| Error::shape(format!("{frames} frames overflow a tensor file")))?;
    let json = header_json(info, frames, bytes);
    let mut out = Vec::with_capacity(8 + len);
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(8 + len, b' ');
    Ok(out)
}

/// Writes every frame of `source` to `path` as a safetensors file; atomic (see the crate
/// docs): on any error or cancellation no file is left behind.
pub async fn write_tensor<S: Source + ?Sized>(
    source: &S,
    path: impl AsRef<Path>,
    request: &OpenRequest,
    options: &TensorFileOptions,
) -> Result<Report> {
    let path = path.as_ref();
    let mut run = SinkRun::open("write_tensor", source, request)?;
    let mut file = match AtomicFile::create(path, options.overwrite).await {
        Ok(file) => file,
        Err(e) => return Err(run.fail(e)),
    };
    let info = run.info().clone();
    let reserved = reserved_len(&info);
    let announced = info.total_frames.unwrap_or(0);
    let context = file.context();
    let io = |e| Error::io(&context, e);
    let start = async {
        let header = header(&info, announced, reserved)?;
        file.file().write_all(&header).await.map_err(io)
    };
    if let Err(e) = start.await {
        return Err(run.fail(e));
    }
    let mut frames = 0u64;
    while let Some(chunk) = run.next().await {
        let written = async {
            let chunk = chunk?;
            let host = chunk.to_host().await?;
            if let Some(i) = host.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidFrame {
                    frame: chunk.first_frame() + (i / chunk.frame_len()) as u64,
                    message: format!("value {} is not finite", host.data[i]),
                });
            }
            let bytes: Vec<u8> = host.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            file.file().write_all(&bytes).await.map_err(io)?;
            Ok(chunk.frames())
        }
        .await;
        match written {
            Ok(n) => {
                frames += n as u64;
                run.advance(n);
            }
            Err(e) => return Err(run.fail(e)),
        }
    }
    if frames != announced {
        let patched = async {
            let header = header(&info, frames, reserved)?;
            file.file().seek(SeekFrom::Start(0)).await.map_err(io)?;
            file.file().write_all(&header).await.map_err(io)
        };
        if let Err(e) = patched.await {
            return Err(run.fail(e));
        }
    }
    match file.commit().await {
        Ok(path) => Ok(run.finish(Some(path))),
        Err(e) => Err(run.fail(e)),
    }
}
