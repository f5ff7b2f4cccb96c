//! `drain`: run a pipeline to the end and discard the frames.

use super::{Report, SinkRun};
use crate::error::Result;
use crate::stream::{OpenRequest, Source};

/// Computes every frame (waiting for the device on each chunk) and counts them.
pub async fn drain<S: Source + ?Sized>(source: &S, request: &OpenRequest) -> Result<Report> {
    let mut run = SinkRun::open("drain", source, request)?;
    while let Some(chunk) = run.next().await {
        let frames = match chunk {
            Ok(chunk) => chunk.frames(),
            Err(e) => return Err(run.fail(e)),
        };
        if let Err(e) = request.device().sync().await {
            return Err(run.fail(e));
        }
        run.advance(frames);
    }
    Ok(run.finish(None))
}
