//! What a saved video looks like: codec, container, pixel format, rate control, tags.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use framestream_kernels::planes::PlaneFormat;

use crate::error::{Error, Result};
use crate::stream::Rational;

/// A video codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 with libx264.
    H264,
    /// H.265/HEVC with libx265.
    H265,
    /// VP9 with libvpx.
    Vp9,
    /// AV1 with SVT-AV1, else libaom.
    Av1,
    /// Apple ProRes (prores_ks), 10-bit 4:2:2 by default.
    ProRes,
    /// FFV1, lossless.
    Ffv1,
}

impl Codec {
    /// FFmpeg encoders for this codec, most preferred first.
    pub(crate) fn encoders(self) -> &'static [&'static str] {
        match self {
            Codec::H264 => &["libx264"],
            Codec::H265 => &["libx265"],
            Codec::Vp9 => &["libvpx-vp9"],
            Codec::Av1 => &["libsvtav1", "libaom-av1"],
            Codec::ProRes => &["prores_ks"],
            Codec::Ffv1 => &["ffv1"],
        }
    }

    pub fn default_pixel_format(self) -> PixelFormat {
        match self {
            Codec::ProRes => PixelFormat::Yuv422p10,
            Codec::Ffv1 => PixelFormat::Bgr0,
            _ => PixelFormat::Yuv420p,
        }
    }

    /// The container used when a path's extension does not name one.
    pub fn default_container(self) -> Container {
        match self {
            Codec::ProRes => Container::Mov,
            Codec::Ffv1 => Container::Mkv,
            Codec::Vp9 => Container::Webm,
            _ => Container::Mp4,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Vp9 => "vp9",
            Codec::Av1 => "av1",
            Codec::ProRes => "prores",
            Codec::Ffv1 => "ffv1",
        })
    }
}

impl FromStr for Codec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "h264" | "avc" | "x264" | "libx264" => Ok(Codec::H264),
            "h265" | "hevc" | "x265" | "libx265" => Ok(Codec::H265),
            "vp9" | "libvpx-vp9" => Ok(Codec::Vp9),
            "av1" | "libsvtav1" | "libaom-av1" => Ok(Codec::Av1),
            "prores" | "prores_ks" => Ok(Codec::ProRes),
            "ffv1" => Ok(Codec::Ffv1),
            other => Err(Error::config(format!(
                "unknown codec `{other}` (h264, h265, vp9, av1, prores, ffv1)"
            ))),
        }
    }
}

/// A container format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Container {
    Mp4,
    Mkv,
    Mov,
    Webm,
}

impl Container {
    /// The container a path's extension names.
    pub fn from_path(path: &Path) -> Option<Self> {
        path.extension()?.to_str()?.parse().ok()
    }

    /// FFmpeg's muxer name.
    pub(crate) fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mkv => "matroska",
            Container::Mov => "mov",
            Container::Webm => "webm",
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Container::Mp4 => "mp4",
            Container::Mkv => "mkv",
            Container::Mov => "mov",
            Container::Webm => "webm",
        })
    }
}

impl FromStr for Container {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mp4" | "m4v" => Ok(Container::Mp4),
            "mkv" | "matroska" => Ok(Container::Mkv),
            "mov" | "qt" => Ok(Container::Mov),
            "webm" => Ok(Container::Webm),
            other => Err(Error::config(format!("unknown container `{other}` (mp4, mkv, mov, webm)"))),
        }
    }
}

/// How the output is timed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FpsMode {
    /// Every frame once, at its own timestamp: a variable-rate input stays variable. Frames
    /// without timestamps are evenly spaced at the stream's rate.
    #[default]
    Passthrough,
    /// A constant rate ([`VideoOptions::fps`], else the stream's): a frame is repeated or
    /// dropped so each output frame shows what is on screen at its middle.
    Cfr,
}

impl fmt::Display for FpsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FpsMode::Passthrough => "passthrough",
            FpsMode::Cfr => "cfr",
        })
    }
}

impl FromStr for FpsMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "passthrough" => Ok(FpsMode::Passthrough),
            "cfr" => Ok(FpsMode::Cfr),
            other => Err(Error::config(format!("unknown fps mode `{other}` (passthrough, cfr)"))),
        }
    }
}

/// The pixel format frames are encoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Yuv420p,
    Yuv422p,
    Yuv444p,
    Yuv420p10,
    Yuv422p10,
    Yuv444p10,
    /// Planar RGB, 8-bit (lossless codecs keep the frames exactly).
    Gbrp,
    /// Planar RGB, 10-bit.
    Gbrp10,
    /// Packed 8-bit RGB as B, G, R, 0 (FFV1's 8-bit RGB).
    Bgr0,
}

impl PixelFormat {
    pub(crate) fn planes(self) -> PlaneFormat {
        match self {
            PixelFormat::Yuv420p => PlaneFormat::YUV420P,
            PixelFormat::Yuv422p => PlaneFormat::YUV422P,
            PixelFormat::Yuv444p => PlaneFormat::YUV444P,
            PixelFormat::Yuv420p10 => PlaneFormat::YUV420P10,
            PixelFormat::Yuv422p10 => PlaneFormat::YUV422P10,
            PixelFormat::Yuv444p10 => PlaneFormat::YUV444P10,
            PixelFormat::Gbrp => PlaneFormat::GBRP,
            PixelFormat::Gbrp10 => PlaneFormat::GBRP10,
            PixelFormat::Bgr0 => PlaneFormat::BGR0,
        }
    }

    pub(crate) fn ffmpeg(self) -> ffmpeg_next::format::Pixel {
        use ffmpeg_next::format::Pixel;
        match self {
            PixelFormat::Yuv420p => Pixel::YUV420P,
            PixelFormat::Yuv422p => Pixel::YUV422P,
            PixelFormat::Yuv444p => Pixel::YUV444P,
            PixelFormat::Yuv420p10 => Pixel::YUV420P10LE,
            PixelFormat::Yuv422p10 => Pixel::YUV422P10LE,
            PixelFormat::Yuv444p10 => Pixel::YUV444P10LE,
            PixelFormat::Gbrp => Pixel::GBRP,
            PixelFormat::Gbrp10 => Pixel::GBRP10LE,
            PixelFormat::Bgr0 => Pixel::BGRZ,
        }
    }

    pub fn is_rgb(self) -> bool {
        matches!(self, PixelFormat::Gbrp | PixelFormat::Gbrp10 | PixelFormat::Bgr0)
    }

    pub(crate) const ALL: [PixelFormat; 9] = [
        PixelFormat::Yuv420p,
        PixelFormat::Yuv422p,
        PixelFormat::Yuv444p,
        PixelFormat::Yuv420p10,
        PixelFormat::Yuv422p10,
        PixelFormat::Yuv444p10,
        PixelFormat::Gbrp,
        PixelFormat::Gbrp10,
        PixelFormat::Bgr0,
    ];
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Yuv420p => "yuv420p",
            PixelFormat::Yuv422p => "yuv422p",
            PixelFormat::Yuv444p => "yuv444p",
            PixelFormat::Yuv420p10 => "yuv420p10le",
            PixelFormat::Yuv422p10 => "yuv422p10le",
            PixelFormat::Yuv444p10 => "yuv444p10le",
            PixelFormat::Gbrp => "gbrp",
            PixelFormat::Gbrp10 => "gbrp10le",
            PixelFormat::Bgr0 => "bgr0",
        })
    }
}

impl FromStr for PixelFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "yuv420p" => Ok(PixelFormat::Yuv420p),
            "yuv422p" => Ok(PixelFormat::Yuv422p),
            "yuv444p" => Ok(PixelFormat::Yuv444p),
            "yuv420p10" | "yuv420p10le" => Ok(PixelFormat::Yuv420p10),
            "yuv422p10" | "yuv422p10le" => Ok(PixelFormat::Yuv422p10),
            "yuv444p10" | "yuv444p10le" => Ok(PixelFormat::Yuv444p10),
            "gbrp" | "rgb" => Ok(PixelFormat::Gbrp),
            "gbrp10" | "gbrp10le" | "rgb10" => Ok(PixelFormat::Gbrp10),
            "bgr0" => Ok(PixelFormat::Bgr0),
            other => Err(Error::config(format!(
                "unknown pixel format `{other}` (yuv420p, yuv422p, yuv444p, their 10-bit \
                 `…10le` forms, gbrp, gbrp10le, bgr0)"
            ))),
        }
    }
}

/// How to save a video. Built with [`VideoOptions::new`] or a codec shortcut, then refined:
/// `VideoOptions::h264().crf(18).preset("slow")`.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoOptions {
    pub codec: Codec,
    /// The container; `None` picks it from the output's extension.
    pub container: Option<Container>,
    /// `None` uses the codec's default ([`Codec::default_pixel_format`]).
    pub pixel_format: Option<PixelFormat>,
    /// Constant-quality factor (x264/x265/VP9/AV1 `crf`).
    pub crf: Option<u32>,
    /// Speed/quality preset (x264/x265 `preset`, SVT-AV1 `preset`, libaom `cpu-used`,
    /// VP9 `deadline`).
    pub preset: Option<String>,
    /// Target bitrate in bits per second.
    pub bitrate: Option<u64>,
    /// The output's frame rate. With [`FpsMode::Passthrough`] the frames are re-timed evenly
    /// at this rate (one frame each, the duration changes); with [`FpsMode::Cfr`] they are
    /// resampled to it. `None` keeps the stream's timing.
    pub fps: Option<Rational>,
    /// Timestamps kept, or a constant rate.
    pub fps_mode: FpsMode,
    /// Container metadata (title, comment, …).
    pub metadata: Vec<(String, String)>,
    /// Other encoder options, passed to FFmpeg as they are.
    pub encoder_options: Vec<(String, String)>,
    /// Copy the first audio stream of this file into the output.
    pub audio_from: Option<PathBuf>,
    /// Replace an existing output.
    pub overwrite: bool,
    /// Frames per chunk when the sink opens the source.
    pub chunk_frames: Option<usize>,
    #[doc(hidden)]
    pub panic_after_frames: Option<u64>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self::new(Codec::H264)
    }
}

impl VideoOptions {
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            container: None,
            pixel_format: None,
            crf: None,
            preset: None,
            bitrate: None,
            fps: None,
            fps_mode: FpsMode::Passthrough,
            metadata: Vec::new(),
            encoder_options: Vec::new(),
            audio_from: None,
            overwrite: false,
            chunk_frames: None,
            panic_after_frames: None,
        }
    }

    pub fn h264() -> Self {
        Self::new(Codec::H264)
    }

    pub fn h265() -> Self {
        Self::new(Codec::H265)
    }

    pub fn vp9() -> Self {
        Self::new(Codec::Vp9)
    }

    pub fn av1() -> Self {
        Self::new(Codec::Av1)
    }

    pub fn prores() -> Self {
        Self::new(Codec::ProRes)
    }

    pub fn ffv1() -> Self {
        Self::new(Codec::Ffv1)
    }

    pub fn container(mut self, container: Container) -> Self {
        self.container = Some(container);
        self
    }

    pub fn pixel_format(mut self, format: PixelFormat) -> Self {
        self.pixel_format = Some(format);
        self
    }

    pub fn crf(mut self, crf: u32) -> Self {
        self.crf = Some(crf);
        self
    }

    pub fn preset(mut self, preset: impl Into<String>) -> Self {
        self.preset = Some(preset.into());
        self
    }

    pub fn bitrate(mut self, bits_per_second: u64) -> Self {
        self.bitrate = Some(bits_per_second);
        self
    }

    pub fn fps(mut self, fps: Rational) -> Self {
        self.fps = Some(fps);
        self
    }

    pub fn fps_mode(mut self, mode: FpsMode) -> Self {
        self.fps_mode = mode;
        self
    }

    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    pub fn encoder_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.encoder_options.push((key.into(), value.into()));
        self
    }

    pub fn audio_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.audio_from = Some(path.into());
        self
    }

    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    pub fn chunk_frames(mut self, frames: usize) -> Self {
        self.chunk_frames = Some(frames);
        self
    }

    /// Makes the encoder thread panic after this many frames (to test the clean-up).
    #[doc(hidden)]
    pub fn panic_after_frames(mut self, frames: u64) -> Self {
        self.panic_after_frames = Some(frames);
        self
    }

    pub fn effective_pixel_format(&self) -> PixelFormat {
        self.pixel_format.unwrap_or_else(|| self.codec.default_pixel_format())
    }

    /// The container for `path`: the option, else the extension.
    pub fn effective_container(&self, path: &Path) -> Result<Container> {
        match (self.container, Container::from_path(path)) {
            (Some(c), _) | (None, Some(c)) => Ok(c),
            (None, None) => Err(Error::config(format!(
                "{}: cannot tell the container from the extension (use .mp4, .mkv, .mov or \
                 .webm, or set the container)",
                path.display()
            ))),
        }
    }
}
