//! `WanVaeDecode`: a Wan 2.1 or Wan 2.2 latent decoded into frames chunk by chunk.

use std::sync::Arc;

use framestream_kernels::Element;

use crate::error::{Error, Result};
use crate::model::{Latent, Precision};
use crate::model::streaming::decode_stream;
use crate::model::with_element;
use crate::model::wan::{WanVae, WanVersion, pipeline};
use crate::stream::{FrameStream, OpenRequest, Rational, Source, StreamInfo};

/// Frames of a Wan latent: `4·(T−1)+1` frames of `8h × 8w` (Wan 2.1) or `16h × 16w` (Wan
/// 2.2), values in [0, 1]. The latent is in VAE space, as ComfyUI's `LATENT` and `.latent`
/// files hold it (a latent normalised by a pipeline's `latents_mean`/`latents_std` needs
/// `x·std + mean` first). The decode is causal with no look-ahead: after N latent frames,
/// 4N−3 frames are final, and memory stays the decoder's carried state plus about one piece
/// per level whatever the length; a decode reserves that planned peak from the device's
/// memory budget when one is set and steps in smaller pieces when it does not fit. The decode
/// has no randomness: every chunking and every replay give the same frames.
///
/// Opening the stream sends an [`EventKind::Info`](crate::EventKind::Info) with
/// [`description`](Self::description).
#[derive(Clone, Debug)]
pub struct WanVaeDecode {
    vae: WanVae,
    latent: Arc<Latent>,
    piece_bytes: usize,
    fps: Rational,
    precision: Precision,
}

impl WanVaeDecode {
    /// Device bytes a decoder step may produce (see [`LtxVaeDecode::DEFAULT_PIECE_BYTES`](crate::source::LtxVaeDecode::DEFAULT_PIECE_BYTES)).
    pub const DEFAULT_PIECE_BYTES: usize = 16 << 20;

    pub fn new(vae: WanVae, latent: Latent) -> Result<Self> {
        let expected = vae.config().latent_channels;
        if latent.channels() != expected {
            return Err(Error::shape(format!(
                "a latent of {} channels for a {} VAE that decodes {expected}",
                latent.channels(),
                vae.config().version_name()
            )));
        }
        // Wan 2.1 generates at 16 frames per second, Wan 2.2 TI2V-5B at 24.
        let fps = match vae.config().version {
            WanVersion::V21 => 16,
            WanVersion::V22 => 24,
        };
        Ok(Self {
            vae,
            latent: Arc::new(latent),
            piece_bytes: Self::DEFAULT_PIECE_BYTES,
            fps: Rational { num: fps, den: 1 },
            precision: Precision::F32,
        })
    }

    /// Device bytes one decoder step may produce: smaller pieces lower peak memory, larger
    /// ones launch fewer, bigger kernels.
    pub fn piece_bytes(mut self, bytes: usize) -> Self {
        self.piece_bytes = bytes;
        self
    }

    /// The element type activations are computed in: f16 and bf16 halve the decoder's
    /// memory where the device has them; frames leave as f32.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The frame rate the stream reports (by default the model's: 16 for Wan 2.1, 24 for
    /// Wan 2.2).
    pub fn fps(mut self, fps: Rational) -> Self {
        self.fps = fps;
        self
    }

    /// The decoder recognised and the geometry it decodes to, e.g. "Wan 2.1 VAE, 73 M
    /// parameters: 21 latent frames of 104×60 → 81 frames of 832×480".
    pub fn description(&self) -> String {
        let (w, h, frames) = self.geometry();
        format!(
            "{}: {} latent frames of {}×{} → {frames} frames of {w}×{h}",
            self.vae.description(),
            self.latent.frames(),
            self.latent.width(),
            self.latent.height(),
        )
    }

    /// Width, height and count of the decoded frames.
    fn geometry(&self) -> (usize, usize, usize) {
        let config = self.vae.config();
        let factor = config.spatial_factor();
        (self.latent.width() * factor, self.latent.height() * factor, config.frames(self.latent.frames()))
    }

    /// The decoded frames, computed in `E` and handed on as f32.
    fn decode<E: Element>(&self, request: &OpenRequest) -> FrameStream {
        let (vae, latent, piece_bytes) = (self.vae.clone(), self.latent.clone(), self.piece_bytes);
        decode_stream::<E>(request.clone(), move |device| pipeline::<E>(&vae, latent, device, piece_bytes))
    }
}

impl Source for WanVaeDecode {
    fn name(&self) -> String {
        "wan-decode".into()
    }

    fn info(&self) -> Result<StreamInfo> {
        if self.piece_bytes == 0 {
            return Err(Error::config("a decoder piece of 0 bytes"));
        }
        let (width, height, frames) = self.geometry();
        Ok(StreamInfo::new(width, height, 3, self.fps, Some(frames as u64)))
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        request.emit(crate::EventKind::Info { message: self.description() });
        with_element!(self.precision, E => self.decode::<E>(request))
    }
}
