//! Stages: interposers between a source and a sink.

mod map;
mod preview;
mod resize;
#[cfg(feature = "video")]
mod save_passthrough;
mod tee;
mod upscale;

pub use map::Map;
pub use preview::{Preview, PreviewImage};
pub use resize::{Filter, Resize};
#[cfg(feature = "video")]
pub use save_passthrough::SaveVideo;
pub use tee::Tee;
pub use upscale::{Blend, Upscale};
