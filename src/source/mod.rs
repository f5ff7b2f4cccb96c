//! Sources: where frames come from.

mod batch;
mod ltx_decode;
mod pattern;
mod video_file;

pub use batch::ImageBatch;
pub use ltx_decode::LtxVaeDecode;
pub use pattern::TestPattern;
pub use video_file::VideoFile;
