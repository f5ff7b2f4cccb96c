//! Sources: where frames come from.

mod batch;
mod ltx_decode;
mod pattern;
#[cfg(feature = "video")]
mod video_file;

pub use batch::ImageBatch;
pub use ltx_decode::LtxVaeDecode;
pub use pattern::TestPattern;
#[cfg(feature = "video")]
pub use video_file::VideoFile;
