//! Sources: where frames come from.

mod batch;
mod channel;
mod concat;
mod ltx_decode;
mod wan_decode;
mod opened;
mod pattern;
#[cfg(feature = "video")]
mod video_file;

pub use batch::ImageBatch;
pub use channel::{FrameSender, channel};
pub use concat::Concat;
pub use opened::{Opened, rechunk};
pub use ltx_decode::LtxVaeDecode;
pub use wan_decode::WanVaeDecode;
pub use pattern::TestPattern;
#[cfg(feature = "video")]
pub use video_file::VideoFile;
