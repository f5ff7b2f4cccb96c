//! Stages: interposers between a source and a sink.

mod map;
mod preview;
mod resize;

pub use map::Map;
pub use preview::{Preview, PreviewImage};
pub use resize::{Filter, Resize};
