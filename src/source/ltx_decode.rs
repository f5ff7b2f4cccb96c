//! `LtxVaeDecode`: a latent of the LTX family (LTX-Video 0.9.x, LTX-2.0, LTX-2.3) decoded into
//! frames chunk by chunk.

use std::sync::Arc;

use framestream_kernels::Element;

use crate::error::{Error, Result};
use crate::model::ltx::{DecodeParams, Latent, LtxVae, Precision, pipeline};
use crate::model::streaming::decode_stream;
use crate::model::with_element;
use crate::stream::{FrameStream, OpenRequest, Rational, Source, StreamInfo};

/// Frames of an LTX latent: `8·(T−1)+1` frames of `32h × 32w` for every released decoder
/// (the factors follow the decoder's upsamplers), values in [0, 1]. Memory stays the
/// decoder's carried state plus about one piece per level whatever the length; a decode
/// reserves that planned peak from the device's memory budget, when one is set (see
/// [`Device::set_memory_budget`](crate::Device::set_memory_budget)), and steps in smaller
/// pieces when it does not fit. Decode noise
/// and 0.9.1's injected noise come from a counter-based generator keyed by the seed and
/// absolute positions: every chunking and every replay of a seed give the same frames.
/// LTX-2.x decoders take no timestep and no noise: their decode is deterministic.
///
/// Opening the stream sends an [`EventKind::Info`](crate::EventKind::Info) with
/// [`description`](Self::description).
#[derive(Clone, Debug)]
pub struct LtxVaeDecode {
    vae: LtxVae,
    latent: Arc<Latent>,
    seed: Option<u64>,
    timestep: f32,
    noise_scale: f32,
    piece_bytes: usize,
    fps: Rational,
    precision: Precision,
}

impl LtxVaeDecode {
    /// ComfyUI's and LTX-Video's decode timestep.
    pub const DEFAULT_TIMESTEP: f32 = 0.05;
    /// ComfyUI's and LTX-Video's decode noise scale.
    pub const DEFAULT_NOISE_SCALE: f32 = 0.025;
    /// Device bytes a decoder step may produce. Each level may hold about one such piece
    /// besides the carried state, so this bounds memory; GPU launches stay large enough
    /// (a 768×512 decode still steps whole frames at the widest level).
    pub const DEFAULT_PIECE_BYTES: usize = 16 << 20;

    pub fn new(vae: LtxVae, latent: Latent) -> Result<Self> {
        let expected = vae.config().latent_channels;
        if latent.channels() != expected {
            return Err(Error::shape(format!(
                "a latent of {} channels for a VAE that decodes {expected}",
                latent.channels()
            )));
        }
        Ok(Self {
            vae,
            latent: Arc::new(latent),
            seed: None,
            timestep: Self::DEFAULT_TIMESTEP,
            noise_scale: Self::DEFAULT_NOISE_SCALE,
            piece_bytes: Self::DEFAULT_PIECE_BYTES,
            fps: Rational { num: 24, den: 1 },
            precision: Precision::F32,
        })
    }

    /// The noise seed; without one the request's seed is used.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The decode timestep of timestep-conditioned decoders (LTX-Video 0.9.1–0.9.8; LTX-2
    /// decoders take none).
    pub fn timestep(mut self, timestep: f32) -> Self {
        self.timestep = timestep;
        self
    }

    /// The share of noise mixed into the latent before decoding (0 for none); only
    /// timestep-conditioned decoders (LTX-Video 0.9.1–0.9.8) use it.
    pub fn noise_scale(mut self, scale: f32) -> Self {
        self.noise_scale = scale;
        self
    }

    /// Device bytes one decoder step may produce: smaller pieces lower peak memory, larger
    /// ones launch fewer, bigger kernels.
    pub fn piece_bytes(mut self, bytes: usize) -> Self {
        self.piece_bytes = bytes;
        self
    }

    /// The element type activations are computed in: f16 and bf16 halve the decoder's
    /// memory (weights and carried state) where the device has them; frames leave as f32.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The frame rate the stream reports (24 by default, LTX-Video's usual rate).
    pub fn fps(mut self, fps: Rational) -> Self {
        self.fps = fps;
        self
    }

    /// The decoder recognised and the geometry it decodes to, e.g. "LTX-2.3 VAE, 407 M
    /// parameters, zeros padding: 126 latent frames of 40×22 → 1001 frames of 1280×704
    /// (32× the latent: requests of 1280–1311 × 704–735 pixels come out 1280×704)".
    pub fn description(&self) -> String {
        let (h, w) = (self.latent.height(), self.latent.width());
        let (pw, ph, frames, factor) = self.geometry();
        format!(
            "{}: {} latent frames of {w}×{h} → {frames} frames of {pw}×{ph} ({factor}× the latent: \
             requests of {pw}–{} × {ph}–{} pixels come out {pw}×{ph})",
            self.vae.description(),
            self.latent.frames(),
            pw + factor - 1,
            ph + factor - 1,
        )
    }

    /// Width, height and count of the decoded frames, and the spatial factor.
    fn geometry(&self) -> (usize, usize, usize, usize) {
        let config = self.vae.config();
        let factor = config.spatial_factor();
        let frames = config.frames(self.latent.frames());
        (self.latent.width() * factor, self.latent.height() * factor, frames, factor)
    }

    fn check(&self) -> Result<()> {
        if !(self.timestep.is_finite() && self.timestep >= 0.0) {
            return Err(Error::config(format!("decode timestep {} (expected ≥ 0)", self.timestep)));
        }
        if !(0.0..=1.0).contains(&self.noise_scale) {
            return Err(Error::config(format!("decode noise scale {} (expected 0 to 1)", self.noise_scale)));
        }
        if self.piece_bytes == 0 {
            return Err(Error::config("a decoder piece of 0 bytes"));
        }
        Ok(())
    }
}

impl Source for LtxVaeDecode {
    fn name(&self) -> String {
        "ltx-decode".into()
    }

    fn info(&self) -> Result<StreamInfo> {
        self.check()?;
        let (width, height, frames, _) = self.geometry();
        Ok(StreamInfo::new(width, height, self.vae.config().out_channels, self.fps, Some(frames as u64)))
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let params = DecodeParams {
            seed: self.seed.unwrap_or(request.seed()),
            timestep: self.timestep,
            noise_scale: self.noise_scale,
            piece_bytes: self.piece_bytes,
        };
        request.emit(crate::EventKind::Info { message: self.description() });
        with_element!(self.precision, E => self.decode::<E>(request, params))
    }
}

impl LtxVaeDecode {
    /// The decoded frames, computed in `E` and handed on as f32.
    fn decode<E: Element>(&self, request: &OpenRequest, params: DecodeParams) -> FrameStream {
        let (vae, latent) = (self.vae.clone(), self.latent.clone());
        decode_stream::<E>(request.clone(), move |device| pipeline::<E>(&vae, latent, device, &params))
    }
}
