//! What a client asks the service to do: a job's source, stages and output as JSON. Every
//! field is bounded, unknown fields are errors, and every path is resolved inside the
//! service's roots before the job is accepted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Roots;
use crate::error::{Error, Result};
use crate::model::Precision;
use crate::stage::{Blend, Filter};
use crate::stream::{OpenRequest, Rational};
use crate::video::{Codec, Container, FpsMode, PixelFormat, VideoOptions};

/// Longest frame side a test pattern may have.
const MAX_SIDE: usize = 16384;
/// Most frames a test pattern may have.
const MAX_FRAMES: u64 = 100_000_000;
/// Most stages in one job.
const MAX_STAGES: usize = 16;
/// Longest free-text value (metadata, presets).
const MAX_TEXT: usize = 1024;
/// Most metadata entries.
const MAX_METADATA: usize = 64;
/// Largest chunk a job may ask for.
const MAX_CHUNK_FRAMES: usize = 1024;

/// A job: where frames come from, what is done to them, where they go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub source: SourceSpec,
    /// Applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageSpec>,
    pub output: OutputSpec,
    /// A preview image every this many frames (0: none; default: the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_every: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// The synthetic test video.
    Pattern {
        width: usize,
        height: usize,
        frames: u64,
        /// "30", "30000/1001" or "29.97" (default 30).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fps: Option<String>,
        #[serde(default)]
        seed: u64,
    },
    /// A video file in the input root.
    Video { path: String },
    /// A video latent decoded by its VAE (LTX-Video, LTX-2, Wan; told from the VAE file).
    Latent {
        vae: String,
        latent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_index: Option<usize>,
        /// Decode noise seed, timestep and noise share (timestep-conditioned LTX-Video only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestep: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        noise_scale: Option<f32>,
        /// f32, f16 or bf16.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        precision: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fps: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StageSpec {
    /// Classical resampling by a factor.
    Resize {
        scale: f64,
        /// lanczos, bicubic or bilinear (default lanczos).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// An upscaling model (ESRGAN family) in the input root.
    Upscale {
        model: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tile: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlap: Option<usize>,
        /// halo or feather.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blend: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        precision: Option<String>,
    },
    /// Frame interpolation by a RIFE 4.x model in the input root.
    Interpolate {
        model: String,
        /// Frame-rate multiplier, 2..=256 (default 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        multiplier: Option<u16>,
        /// Flow pyramid scale: 0.25, 0.5, 1, 2 or 4.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<f64>,
        /// Repeat instead of morphing below this SSIM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scene_cut: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        precision: Option<String>,
    },
}

/// A video file (by extension: .mp4, .mkv, .mov, .webm) or a tensor file (.safetensors) in the
/// output root, with the encoder's settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub path: String,
    #[serde(default)]
    pub overwrite: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_frames: Option<usize>,
    /// h264, h265, vp9, av1, prores, ffv1 (default h264).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pix_fmt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crf: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<String>,
    /// passthrough or cfr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps_mode: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Copy the audio of this file (in the input root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_from: Option<String>,
}

/// `value` parsed by `T`'s `FromStr`, the error naming `field`.
fn parse<T: FromStr>(field: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| Error::config(format!("{field}: {e}")))
}

fn parse_opt<T: FromStr>(field: &str, value: &Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    value.as_deref().map(|v| parse(field, v)).transpose()
}

fn bounded_text(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT {
        return Err(Error::config(format!("{field} is longer than {MAX_TEXT} bytes")));
    }
    Ok(())
}

/// A job's spec with its values parsed and its paths resolved inside the roots.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub source: PlannedSource,
    pub stages: Vec<PlannedStage>,
    pub output: PathBuf,
    pub tensor_file: bool,
    pub video: VideoOptions,
    pub chunk_frames: usize,
    pub preview_every: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum PlannedSource {
    Pattern { width: usize, height: usize, frames: u64, fps: Option<Rational>, seed: u64 },
    Video(PathBuf),
    Latent {
        vae: PathBuf,
        latent: PathBuf,
        batch_index: Option<usize>,
        seed: Option<u64>,
        timestep: Option<f32>,
        noise_scale: Option<f32>,
        precision: Precision,
        fps: Option<Rational>,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum PlannedStage {
    Resize { scale: f64, filter: Filter },
    Upscale { model: PathBuf, tile: Option<usize>, overlap: usize, blend: Blend, precision: Precision },
    Interpolate { model: PathBuf, multiplier: usize, scale: f64, scene_cut: Option<f64>, precision: Precision },
}

impl JobSpec {
    /// Checks every value and resolves every path; `preview_every` is the service's default.
    pub(crate) fn plan(&self, roots: &Roots, preview_every: u64) -> Result<Plan> {
        let source = self.source.plan(roots)?;
        if self.stages.len() > MAX_STAGES {
            return Err(Error::config(format!("more than {MAX_STAGES} stages")));
        }
        let stages = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, stage)| stage.plan(roots).map_err(|e| Error::config(format!("stages[{i}]: {}", message(&e)))))
            .collect::<Result<Vec<_>>>()?;
        let output = roots.output(&self.output.path).map_err(|e| Error::config(format!("output.path: {}", message(&e))))?;
        if !self.output.overwrite && output.exists() {
            return Err(Error::OutputExists(output));
        }
        let tensor_file = output.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let video = self.output.video_options(roots)?;
        if !tensor_file {
            video.effective_container(&output)?;
        }
        let chunk_frames = self.output.chunk_frames.unwrap_or(OpenRequest::DEFAULT_CHUNK_FRAMES);
        if !(1..=MAX_CHUNK_FRAMES).contains(&chunk_frames) {
            return Err(Error::config(format!("output.chunk_frames must be in 1..={MAX_CHUNK_FRAMES}")));
        }
        Ok(Plan {
            source,
            stages,
            output,
            tensor_file,
            video,
            chunk_frames,
            preview_every: self.preview_every.unwrap_or(preview_every),
        })
    }
}

/// An error's text without its kind's prefix ("invalid configuration: ").
fn message(error: &Error) -> String {
    match error {
        Error::InvalidConfig(message) => message.clone(),
        other => other.to_string(),
    }
}

impl SourceSpec {
    fn plan(&self, roots: &Roots) -> Result<PlannedSource> {
        let field = |name: &str, e: Error| Error::config(format!("source.{name}: {}", message(&e)));
        Ok(match self {
            SourceSpec::Pattern { width, height, frames, fps, seed } => {
                if !(1..=MAX_SIDE).contains(width) || !(1..=MAX_SIDE).contains(height) {
                    return Err(Error::config(format!("source.pattern: width and height must be in 1..={MAX_SIDE}")));
                }
                if !(1..=MAX_FRAMES).contains(frames) {
                    return Err(Error::config(format!("source.pattern.frames must be in 1..={MAX_FRAMES}")));
                }
                let fps = parse_opt("source.pattern.fps", fps)?;
                PlannedSource::Pattern { width: *width, height: *height, frames: *frames, fps, seed: *seed }
            }
            SourceSpec::Video { path } => PlannedSource::Video(roots.input(path).map_err(|e| field("video.path", e))?),
            SourceSpec::Latent { vae, latent, batch_index, seed, timestep, noise_scale, precision, fps } => {
                for (name, value) in [("timestep", timestep), ("noise_scale", noise_scale)] {
                    if value.is_some_and(|v| !v.is_finite()) {
                        return Err(Error::config(format!("source.latent.{name} must be finite")));
                    }
                }
                PlannedSource::Latent {
                    vae: roots.input(vae).map_err(|e| field("latent.vae", e))?,
                    latent: roots.input(latent).map_err(|e| field("latent.latent", e))?,
                    batch_index: *batch_index,
                    seed: *seed,
                    timestep: *timestep,
                    noise_scale: *noise_scale,
                    precision: parse_opt("source.latent.precision", precision)?.unwrap_or(Precision::F32),
                    fps: parse_opt("source.latent.fps", fps)?,
                }
            }
        })
    }
}

impl StageSpec {
    fn plan(&self, roots: &Roots) -> Result<PlannedStage> {
        let precision = |value: &Option<String>| parse_opt("precision", value).map(|p| p.unwrap_or(Precision::F32));
        Ok(match self {
            StageSpec::Resize { scale, filter } => {
                if !scale.is_finite() || *scale <= 0.0 || *scale > 16.0 {
                    return Err(Error::config("resize.scale must be in (0, 16]"));
                }
                PlannedStage::Resize { scale: *scale, filter: parse_opt("resize.filter", filter)?.unwrap_or(Filter::Lanczos3) }
            }
            StageSpec::Upscale { model, tile, overlap, blend, precision: p } => PlannedStage::Upscale {
                model: roots.input(model)?,
                tile: *tile,
                overlap: overlap.unwrap_or(32),
                blend: parse_opt("upscale.blend", blend)?.unwrap_or(Blend::Halo),
                precision: precision(p)?,
            },
            StageSpec::Interpolate { model, multiplier, scale, scene_cut, precision: p } => PlannedStage::Interpolate {
                model: roots.input(model)?,
                multiplier: multiplier.map_or(2, usize::from),
                scale: scale.unwrap_or(1.0),
                scene_cut: *scene_cut,
                precision: precision(p)?,
            },
        })
    }
}

impl OutputSpec {
    fn video_options(&self, roots: &Roots) -> Result<VideoOptions> {
        let codec: Codec = parse_opt("output.codec", &self.codec)?.unwrap_or(Codec::H264);
        if let Some(preset) = &self.preset {
            bounded_text("output.preset", preset)?;
        }
        if self.metadata.len() > MAX_METADATA {
            return Err(Error::config(format!("output.metadata has more than {MAX_METADATA} entries")));
        }
        for (key, value) in &self.metadata {
            bounded_text("output.metadata", key)?;
            bounded_text("output.metadata", value)?;
        }
        let audio_from = match &self.audio_from {
            Some(path) => Some(roots.input(path).map_err(|e| Error::config(format!("output.audio_from: {}", message(&e))))?),
            None => None,
        };
        Ok(VideoOptions {
            container: parse_opt::<Container>("output.container", &self.container)?,
            pixel_format: parse_opt::<PixelFormat>("output.pix_fmt", &self.pix_fmt)?,
            crf: self.crf,
            preset: self.preset.clone(),
            bitrate: self.bitrate,
            fps: parse_opt("output.fps", &self.fps)?,
            fps_mode: parse_opt::<FpsMode>("output.fps_mode", &self.fps_mode)?.unwrap_or(FpsMode::Passthrough),
            metadata: self.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            audio_from,
            overwrite: self.overwrite,
            ..VideoOptions::new(codec)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> std::result::Result<JobSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn unknown_fields_are_errors_at_every_level() {
        let good = r#"{"source":{"pattern":{"width":8,"height":8,"frames":2}},"output":{"path":"a.mp4"}}"#;
        assert!(spec(good).is_ok());
        for bad in [
            r#"{"source":{"pattern":{"width":8,"height":8,"frames":2}},"output":{"path":"a.mp4"},"x":1}"#,
            r#"{"source":{"pattern":{"width":8,"height":8,"frames":2,"x":1}},"output":{"path":"a.mp4"}}"#,
            r#"{"source":{"pattern":{"width":8,"height":8,"frames":2}},"output":{"path":"a.mp4","x":1}}"#,
            r#"{"source":{"pattern":{"width":8,"height":8,"frames":2}},"stages":[{"resize":{"scale":2,"x":1}}],"output":{"path":"a.mp4"}}"#,
            r#"{"source":{"webcam":{}},"output":{"path":"a.mp4"}}"#,
        ] {
            let error = spec(bad).unwrap_err().to_string();
            assert!(error.contains("unknown"), "{bad}: {error}");
        }
    }

    #[test]
    fn values_are_bounded_and_parsed() {
        let dir = std::env::temp_dir().join(format!("framestream-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let roots = Roots::new(&dir, &dir).unwrap();
        let plan = |json: &str| spec(json).unwrap().plan(&roots, 0).map(|_| ()).map_err(|e| e.to_string());
        let with = |source: &str, stages: &str, output: &str| {
            plan(&format!(r#"{{"source":{source},"stages":[{stages}],"output":{output}}}"#))
        };
        let pattern = r#"{"pattern":{"width":8,"height":8,"frames":2}}"#;
        assert_eq!(with(pattern, "", r#"{"path":"a.mp4","codec":"vp9","fps":"30000/1001"}"#), Ok(()));
        assert!(with(r#"{"pattern":{"width":0,"height":8,"frames":2}}"#, "", r#"{"path":"a.mp4"}"#).unwrap_err().contains("width"));
        assert!(with(r#"{"pattern":{"width":8,"height":8,"frames":0}}"#, "", r#"{"path":"a.mp4"}"#).unwrap_err().contains("frames"));
        assert!(with(pattern, "", r#"{"path":"a.mp4","codec":"mpeg1"}"#).unwrap_err().contains("output.codec"));
        assert!(with(pattern, "", r#"{"path":"a.txt"}"#).is_err());
        assert!(with(pattern, r#"{"resize":{"scale":1e9}}"#, r#"{"path":"a.mp4"}"#).unwrap_err().contains("stages[0]"));
        assert!(with(pattern, r#"{"upscale":{"model":"../x.pth"}}"#, r#"{"path":"a.mp4"}"#).unwrap_err().contains("stages[0]"));
        assert!(with(pattern, "", r#"{"path":"a.mp4","chunk_frames":0}"#).unwrap_err().contains("chunk_frames"));
        let long = "x".repeat(MAX_TEXT + 1);
        assert!(with(pattern, "", &format!(r#"{{"path":"a.mp4","preset":"{long}"}}"#)).unwrap_err().contains("preset"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
