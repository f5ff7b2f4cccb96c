//! Sources: where frames come from.

mod batch;
mod pattern;
mod video_file;

pub use batch::ImageBatch;
pub use pattern::TestPattern;
pub use video_file::VideoFile;
