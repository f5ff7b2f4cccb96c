//! `channel`: frames pushed from outside (a capture card, a network feed, another pipeline)
//! into a stream any sink consumes.

use futures::StreamExt;
use tokio::sync::mpsc;

use super::Opened;
use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::stream::StreamInfo;

/// The sending half of a [`channel`]. Dropping every sender ends the stream.
#[derive(Clone, Debug)]
pub struct FrameSender {
    sender: mpsc::Sender<Result<Chunk>>,
}

impl FrameSender {
    /// Queues frames (any number a chunk, on the device the consumer uses), waiting while
    /// `capacity` chunks are queued. Fails when the consumer is gone.
    pub async fn send(&self, chunk: Chunk) -> Result<()> {
        self.sender
            .send(Ok(chunk))
            .await
            .map_err(|_| Error::config("the channel's consumer is gone (it ended or failed)"))
    }

    /// Ends the stream with `error` instead of its frames' end.
    pub async fn fail(self, error: Error) {
        let _ = self.sender.send(Err(error)).await;
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A push source: chunks sent on the [`FrameSender`] come out of the [`Opened`] source, in
/// order, regrouped to its consumer's chunk size and numbered from 0. `info` describes the
/// frames (size, channels, rate; `time_base` when they carry timestamps); at most `capacity`
/// chunks wait (at least 1). Like any opened stream it is consumed once: it cannot be replayed.
pub fn channel(info: StreamInfo, capacity: usize) -> (FrameSender, Opened) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed();
    (FrameSender { sender }, Opened::new("channel", info, stream))
}
