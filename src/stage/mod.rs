//! Stages: interposers between a source and a sink.

mod interpolate;
mod map;
mod preview;
mod resize;
#[cfg(feature = "video")]
mod save_passthrough;
mod skip;
mod take;
mod tee;
mod then;
mod upscale;

pub use interpolate::Interpolate;
pub use map::Map;
pub use preview::{Preview, PreviewImage};
pub use resize::{Filter, Resize};
#[cfg(feature = "video")]
pub use save_passthrough::SaveVideo;
pub use skip::Skip;
pub use take::Take;
pub use tee::Tee;
pub use then::Then;
pub use upscale::{Blend, Upscale};
