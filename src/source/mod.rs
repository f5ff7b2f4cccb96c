//! Sources: where frames come from.

mod batch;
mod pattern;

pub use batch::ImageBatch;
pub use pattern::TestPattern;
