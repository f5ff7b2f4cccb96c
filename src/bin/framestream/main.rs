//! The `framestream` command line.

mod events;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use framestream::model::esrgan::UpscaleModel;
use framestream::model::rife::RifeModel;
use framestream::model::VideoVae;
use framestream::model::ltx::Precision;
use framestream::prelude::*;
use framestream::service::{OnShutdown, Service, ServiceConfig};
use framestream::sink::Report;

use events::Output;

/// The pinned CubeCL release (see Cargo.toml).
const CUBECL_VERSION: &str = "0.10.0";

#[derive(Parser)]
#[command(name = "framestream", version, about = "Stream video frames through GPU pipelines in chunks")]
struct Cli {
    /// No progress bars or summary.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print events and the result as JSON lines on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Compute device: auto, wgpu, wgpu:N (the N-th adapter), cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto", env = "FRAMESTREAM_DEVICE")]
    device: DeviceKind,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the compute device and versions.
    Info,
    /// Render the synthetic test video, optionally resized, to a file.
    Pattern(PatternArgs),
    /// Re-encode a video file, optionally interpolated.
    Transcode(TranscodeArgs),
    /// Resize a video file by a factor, optionally interpolated (before or after, in the
    /// order the options are given).
    Upscale(UpscaleArgs),
    /// Decode a video latent with its VAE — LTX-Video 0.9.x, LTX-2.0, LTX-2.3, Wan 2.1 or Wan
    /// 2.2, told from the VAE file — optionally upscaled, to a file.
    Decode(DecodeArgs),
    /// Run the job service: a JSON API under /v1, live events, a web page at /, /metrics.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (another host than 127.0.0.1 exposes the service: set --token).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// Folder jobs read their inputs and models from.
    #[arg(long)]
    inputs: PathBuf,
    /// Folder jobs write their outputs to.
    #[arg(long)]
    outputs: PathBuf,
    /// The job records (SQLite; created if missing).
    #[arg(long, default_value = "framestream-jobs.sqlite")]
    database: PathBuf,
    /// Jobs running at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Jobs waiting for a slot; more are refused with HTTP 429.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Requests must carry this bearer token.
    #[arg(long, env = "FRAMESTREAM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Device memory all jobs reserve together, in MiB (default: no limit).
    #[arg(long)]
    memory_budget_mib: Option<u64>,
    /// A preview image every this many frames, unless a job says otherwise (0: none).
    #[arg(long, default_value_t = 24)]
    preview_every: u64,
    /// Seconds a model no job uses stays loaded (and its weights on the device).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    model_idle: u64,
    /// A host name (with its port) the API answers besides the address it listens on, e.g.
    /// a reverse proxy's (repeatable). Listening on a loopback address, the API answers
    /// only to 127.0.0.1, localhost and [::1] with the port, and these.
    #[arg(long = "allow-host", value_name = "HOST:PORT")]
    allow_hosts: Vec<String>,
    /// On SIGTERM or Ctrl-C: cancel the running jobs, or let them finish (a second signal
    /// cancels them).
    #[arg(long, default_value = "cancel")]
    on_shutdown: OnShutdown,
}

#[derive(Args)]
struct PatternArgs {
    /// Number of frames.
    #[arg(long)]
    frames: u64,
    /// Frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x360")]
    size: FrameSize,
    /// Frame rate: 30, 30000/1001 or 29.97.
    #[arg(long, default_value = "30")]
    fps: Rational,
    /// Seed of the pattern's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Resize by this factor.
    #[arg(long)]
    scale: Option<f64>,
    /// Resampling filter: lanczos or bicubic.
    #[arg(long, default_value = "lanczos")]
    filter: Filter,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct TranscodeArgs {
    /// The input video.
    input: PathBuf,
    #[command(flatten)]
    interpolate: InterpolateOptions,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct UpscaleArgs {
    /// The input video.
    input: PathBuf,
    #[command(flatten)]
    upscale: UpscaleOptions,
    #[command(flatten)]
    interpolate: InterpolateOptions,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct DecodeArgs {
    /// The VAE: an LTX .safetensors checkpoint (official, combined or diffusers naming), a
    /// Wan .safetensors or .pth file (official or diffusers naming), or a diffusers vae/
    /// folder of either.
    #[arg(long)]
    vae: PathBuf,
    /// The latent: a ComfyUI .latent file or a .safetensors file with one 5-D tensor (Wan
    /// latents in VAE space, as ComfyUI keeps them).
    #[arg(long)]
    latent: PathBuf,
    /// Which latent of a batch to decode.
    #[arg(long)]
    batch_index: Option<usize>,
    /// Seed of the decode noise (LTX-Video 0.9.1–0.9.8; LTX-2 and Wan take none).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Decode timestep (the timestep-conditioned LTX-Video 0.9.1–0.9.8; LTX-2 and Wan take
    /// none).
    #[arg(long, default_value_t = LtxVaeDecode::DEFAULT_TIMESTEP)]
    timestep: f32,
    /// Share of noise mixed into the latent, 0 for none (LTX-Video 0.9.1–0.9.8; LTX-2 and Wan
    /// take none).
    #[arg(long, default_value_t = LtxVaeDecode::DEFAULT_NOISE_SCALE)]
    noise_scale: f32,
    /// Spatial padding of the convolutions: zeros, reflect or replicate (default: the
    /// checkpoint's; without a config, the release's its layout matches, else reflect).
    /// LTX only: Wan pads with zeros.
    #[arg(long)]
    padding: Option<String>,
    /// Device memory one decoder step may produce, in MiB.
    #[arg(long, default_value_t = LtxVaeDecode::DEFAULT_PIECE_BYTES >> 20)]
    piece_mib: usize,
    /// Frame rate of the decoded video (default: the model's — 24 for LTX and Wan 2.2, 16
    /// for Wan 2.1).
    #[arg(long)]
    fps: Option<Rational>,
    /// Element type of the decoder's activations: f32, f16 or bf16 (half the memory, where
    /// the device has it).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    #[command(flatten)]
    upscale: UpscaleOptions,
    #[command(flatten)]
    interpolate: InterpolateOptions,
    #[command(flatten)]
    output: OutputArgs,
}

/// Frame interpolation by a RIFE model.
#[derive(Args)]
struct InterpolateOptions {
    /// Multiply the frame rate by K (K − 1 new frames between every two), with --rife.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(2..=256))]
    interpolate: Option<u16>,
    /// RIFE 4.x model (flownet.pkl, .pth or .safetensors); alone, it doubles the frame rate.
    #[arg(long, value_name = "MODEL")]
    rife: Option<PathBuf>,
    /// Scale of RIFE's flow pyramid: 0.25, 0.5 (for 4K), 1, 2 or 4.
    #[arg(long, default_value_t = 1.0, requires = "rife")]
    rife_scale: f64,
    /// Repeat instead of morphing where two frames' likeness (SSIM of thumbnails) is below
    /// this (0.3 is a good start).
    #[arg(long, value_name = "SSIM", requires = "rife")]
    scene_cut: Option<f64>,
    /// Element type of RIFE's activations: f32, f16 or bf16.
    #[arg(long, default_value = "f32", requires = "rife")]
    rife_precision: Precision,
}

impl InterpolateOptions {
    /// The stage these options describe, if any.
    async fn stage(&self) -> Result<Option<Interpolate>> {
        let Some(path) = &self.rife else {
            return match self.interpolate {
                Some(_) => Err(Error::InvalidConfig("--interpolate needs a model: give --rife MODEL".into())),
                None => Ok(None),
            };
        };
        let mut stage = Interpolate::rife(RifeModel::load_async(path).await?)
            .multiplier(self.interpolate.map_or(2, usize::from))
            .scale(self.rife_scale)
            .precision(self.rife_precision);
        if let Some(threshold) = self.scene_cut {
            stage = stage.scene_cut(threshold);
        }
        Ok(Some(stage))
    }

    /// `video` with the interpolation and `upscale` in the order their options came on the
    /// command line (`matches`: the subcommand's).
    async fn around(&self, video: Box<dyn Source>, upscale: Option<Upscale>, matches: &ArgMatches) -> Result<Box<dyn Source>> {
        let Some(interpolate) = self.stage().await? else {
            return Ok(match upscale {
                Some(upscale) => video.pipe(upscale).boxed(),
                None => video,
            });
        };
        let Some(upscale) = upscale else {
            return Ok(video.pipe(interpolate).boxed());
        };
        let first = |ids: &[&str]| ids.iter().filter_map(|id| matches.index_of(id)).min();
        let upscale_at = first(&["model", "scale"]);
        let interpolate_at = first(&["interpolate", "rife"]);
        Ok(if interpolate_at < upscale_at {
            video.pipe(interpolate).pipe(upscale).boxed()
        } else {
            video.pipe(upscale).pipe(interpolate).boxed()
        })
    }
}

/// How to upscale: a model (ESRGAN family) or classical resampling.
#[derive(Args)]
struct UpscaleOptions {
    /// Upscaling model (.safetensors or .pth): RRDBNet/ESRGAN/Real-ESRGAN or SRVGGNetCompact.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Resize factor without a model (with a model it must equal the model's scale).
    #[arg(long)]
    scale: Option<f64>,
    /// Resampling filter without a model: lanczos, bicubic or bilinear.
    #[arg(long, default_value = "lanczos")]
    filter: Filter,
    /// Model tile side in input pixels (default: whole frames while they fit, else 512).
    #[arg(long)]
    tile: Option<usize>,
    /// Feather overlap between tiles, in input pixels.
    #[arg(long, default_value_t = 32)]
    overlap: usize,
    /// Tile blending: halo (exact with enough context) or feather (as ComfyUI).
    #[arg(long, default_value = "halo")]
    blend: Blend,
    /// Device memory a chunk's model upscale may use, in MiB.
    #[arg(long, default_value_t = 4096)]
    memory_budget: usize,
    /// Element type of the upscaling model's activations: f32, f16 or bf16 (half the
    /// memory and, on most GPUs, faster; where the device has it).
    #[arg(long, default_value = "f32")]
    upscale_precision: Precision,
}

impl UpscaleOptions {
    /// The stage these options describe.
    async fn stage(&self) -> Result<Upscale> {
        let Some(path) = &self.model else {
            let factor = self.scale.ok_or_else(|| Error::InvalidConfig("give --scale or --model".into()))?;
            return Ok(Upscale::resample(factor, self.filter));
        };
        let model = UpscaleModel::load_async(path).await?;
        if let Some(factor) = self.scale && factor != model.scale() as f64 {
            return Err(Error::InvalidConfig(format!(
                "--scale {factor} but {} upscales by {}",
                path.display(),
                model.scale()
            )));
        }
        let mut stage = Upscale::model(model)
            .blend(self.blend)
            .memory_budget(self.memory_budget << 20)
            .precision(self.upscale_precision);
        if let Some(tile) = self.tile {
            stage = stage.tile(tile, self.overlap);
        }
        Ok(stage)
    }
}

/// Where and how to write.
#[derive(Args)]
struct OutputArgs {
    /// Output file: a video (.mp4, .mkv, .mov, .webm) or a tensor file (.safetensors).
    #[arg(short, long)]
    output: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Frames per chunk.
    #[arg(long, default_value_t = OpenRequest::DEFAULT_CHUNK_FRAMES)]
    chunk_frames: usize,
    /// Video codec: h264, h265, vp9, av1, prores, ffv1.
    #[arg(long, default_value = "h264")]
    codec: Codec,
    /// Container, when the extension does not say: mp4, mkv, mov, webm.
    #[arg(long)]
    container: Option<Container>,
    /// Pixel format: yuv420p, yuv422p, yuv444p (…10le), gbrp (the codec's default if unset).
    #[arg(long)]
    pix_fmt: Option<PixelFormat>,
    /// Constant-quality factor.
    #[arg(long)]
    crf: Option<u32>,
    /// Encoder preset (e.g. ultrafast … veryslow for H.264).
    #[arg(long)]
    preset: Option<String>,
    /// Target bitrate, e.g. 8M or 2500k.
    #[arg(long, value_parser = parse_bitrate)]
    bitrate: Option<u64>,
    /// Frame rate of the output: frames re-timed evenly at it, or resampled to it with
    /// `--fps-mode cfr` (default: the source's timing).
    #[arg(long = "out-fps")]
    out_fps: Option<Rational>,
    /// passthrough: every frame at its own timestamp (variable-rate input stays variable);
    /// cfr: a constant rate, frames repeated or dropped by timestamp.
    #[arg(long, default_value = "passthrough")]
    fps_mode: FpsMode,
    /// Container metadata, KEY=VALUE (repeatable).
    #[arg(long, value_parser = parse_key_value)]
    metadata: Vec<(String, String)>,
    /// Encoder option passed to FFmpeg, KEY=VALUE (repeatable).
    #[arg(long = "encoder-option", value_parser = parse_key_value)]
    encoder_options: Vec<(String, String)>,
    /// Copy the audio of this file into the output.
    #[arg(long)]
    audio_from: Option<PathBuf>,
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

fn parse_bitrate(s: &str) -> std::result::Result<u64, String> {
    let (digits, factor) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000.0),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    digits
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| (v * factor) as u64)
        .ok_or_else(|| format!("`{s}` is not a bitrate (try 8M or 2500k)"))
}

impl OutputArgs {
    fn video_options(&self) -> VideoOptions {
        VideoOptions {
            codec: self.codec,
            container: self.container,
            pixel_format: self.pix_fmt,
            crf: self.crf,
            preset: self.preset.clone(),
            bitrate: self.bitrate,
            fps: self.out_fps,
            fps_mode: self.fps_mode,
            metadata: self.metadata.clone(),
            encoder_options: self.encoder_options.clone(),
            audio_from: self.audio_from.clone(),
            overwrite: self.overwrite,
            ..VideoOptions::new(self.codec)
        }
    }

    fn is_tensor_file(&self) -> bool {
        self.output.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    }

    /// Checks what can be checked before any work starts.
    fn check(&self) -> Result<()> {
        if !self.is_tensor_file() {
            self.video_options().effective_container(&self.output)?;
        }
        Ok(())
    }

    /// Streams `video` into the output file.
    async fn write(&self, video: &dyn Source, request: &OpenRequest) -> Result<Report> {
        let request = request.clone().with_chunk_frames(self.chunk_frames);
        if self.is_tensor_file() {
            let options = TensorFileOptions { overwrite: self.overwrite };
            write_tensor(video, &self.output, &request, &options).await
        } else {
            save_video(video, &self.output, &request, &self.video_options()).await
        }
    }
}

fn main() -> ExitCode {
    // Without a runtime directory the Vulkan loader's Wayland probe prints errors on every
    // start; an empty one makes it skip quietly. Set before any thread exists.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: single-threaded here, nothing reads the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The subcommand's own matches tell the order its options came in.
    let given = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(run(cli, given))
}

async fn run(cli: Cli, given: ArgMatches) -> ExitCode {
    let output = Output::new(cli.quiet, cli.json);
    // The service handles its signals itself: it stops in order.
    if let Command::Serve(args) = &cli.command {
        return match serve(&cli, args, &output).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                output.error(&e);
                ExitCode::FAILURE
            }
        };
    }
    let work = async {
        match &cli.command {
            Command::Info => info(&cli, &output),
            Command::Pattern(args) => pattern(&cli, args, &output).await,
            Command::Transcode(args) => transcode(&cli, args, &given, &output).await,
            Command::Upscale(args) => upscale(&cli, args, &given, &output).await,
            Command::Decode(args) => decode(&cli, args, &given, &output).await,
            Command::Serve(_) => unreachable!("served above"),
        }
    };
    // Ctrl-C drops the pipeline, which cancels every stage and removes partial outputs.
    let result = tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => {
            output.error(&Error::InvalidConfig("interrupted".into()));
            settle_before_exit().await;
            return ExitCode::from(130);
        }
    };
    settle_before_exit().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output.error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Waits for the device work of dropped pipelines to end (their stages stop at their next
/// await or allocation), since exiting under it tears the device down beneath its threads;
/// a few seconds at most, or until another Ctrl-C.
async fn settle_before_exit() {
    tokio::select! {
        settled = tokio::time::timeout(std::time::Duration::from_secs(10), Device::settle_opened()) => {
            if !matches!(settled, Ok(Ok(()))) {
                eprintln!("framestream: exiting before the device finished its work");
            }
        }
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn info(cli: &Cli, output: &Output) -> Result<()> {
    let device = Device::open(cli.device);
    let features: Vec<&str> = [cfg!(feature = "cuda").then_some("cuda")].into_iter().flatten().collect();
    if output.json {
        let device = match &device {
            Ok(d) => {
                let i = d.info();
                serde_json::json!({
                    "runtime": i.runtime, "adapter": i.adapter, "api": i.api,
                    "device_type": i.device_type, "driver": i.driver,
                })
            }
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        println!(
            "{}",
            serde_json::json!({
                "framestream": env!("CARGO_PKG_VERSION"),
                "cubecl": CUBECL_VERSION,
                "features": features,
                "device": device,
            })
        );
    } else {
        println!("framestream {}", env!("CARGO_PKG_VERSION"));
        println!("cubecl      {CUBECL_VERSION}");
        println!("features    {}", if features.is_empty() { "-".into() } else { features.join(", ") });
        if let Ok(d) = &device {
            println!("device      {}", d.info());
        }
    }
    device.map(|_| ())
}

/// Runs `video` into `args`'s output with progress shown.
async fn run_pipeline(cli: &Cli, video: &dyn Source, args: &OutputArgs, output: &Output) -> Result<()> {
    let device = Device::open(cli.device)?;
    let (sender, events) = output.start_events();
    let request = OpenRequest::new(&device).with_progress(sender);
    let result = args.write(video, &request).await;
    drop(request);
    events.await;
    output.done(&result?);
    Ok(())
}

async fn pattern(cli: &Cli, args: &PatternArgs, output: &Output) -> Result<()> {
    args.output.check()?;
    let pattern = TestPattern::new(args.size.width, args.size.height, args.frames)?
        .fps(args.fps)
        .seed(args.seed);
    let video = match args.scale {
        Some(factor) => pattern.resize(factor, args.filter).boxed(),
        None => pattern.boxed(),
    };
    run_pipeline(cli, &video, &args.output, output).await
}

async fn transcode(cli: &Cli, args: &TranscodeArgs, given: &ArgMatches, output: &Output) -> Result<()> {
    args.output.check()?;
    check_not_same_file(&args.input, &args.output.output)?;
    let video = VideoFile::open_async(&args.input).await?.boxed();
    let video = args.interpolate.around(video, None, given).await?;
    run_pipeline(cli, &video, &args.output, output).await
}

async fn upscale(cli: &Cli, args: &UpscaleArgs, given: &ArgMatches, output: &Output) -> Result<()> {
    args.output.check()?;
    check_not_same_file(&args.input, &args.output.output)?;
    let video = VideoFile::open_async(&args.input).await?.boxed();
    let video = args.interpolate.around(video, Some(args.upscale.stage().await?), given).await?;
    run_pipeline(cli, &video, &args.output, output).await
}

async fn decode(cli: &Cli, args: &DecodeArgs, given: &ArgMatches, output: &Output) -> Result<()> {
    args.output.check()?;
    check_not_same_file(&args.latent, &args.output.output)?;
    let vae = VideoVae::load_async(&args.vae).await?;
    let latent = Latent::open_async(&args.latent, args.batch_index).await?;
    let decoded = match vae {
        VideoVae::Ltx(mut vae) => {
            if let Some(padding) = &args.padding {
                vae = vae.with_padding(framestream::model::ltx::parse_padding(padding)?);
            }
            let decode = LtxVaeDecode::new(vae, latent)?
                .seed(args.seed)
                .timestep(args.timestep)
                .noise_scale(args.noise_scale)
                .piece_bytes(args.piece_mib << 20)
                .precision(args.precision);
            match args.fps {
                Some(fps) => decode.fps(fps).boxed(),
                None => decode.boxed(),
            }
        }
        VideoVae::Wan(vae) => {
            if args.padding.is_some() {
                return Err(Error::InvalidConfig("--padding: a Wan VAE always pads with zeros".into()));
            }
            let decode = WanVaeDecode::new(vae, latent)?.piece_bytes(args.piece_mib << 20).precision(args.precision);
            match args.fps {
                Some(fps) => decode.fps(fps).boxed(),
                None => decode.boxed(),
            }
        }
    };
    let upscale = match args.upscale.model.is_some() || args.upscale.scale.is_some() {
        true => Some(args.upscale.stage().await?),
        false => None,
    };
    let video = args.interpolate.around(decoded, upscale, given).await?;
    run_pipeline(cli, &video, &args.output, output).await
}

/// Resolves at SIGTERM or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(cli: &Cli, args: &ServeArgs, output: &Output) -> Result<()> {
    let mut config = ServiceConfig {
        running_jobs: args.jobs,
        queued_jobs: args.queue,
        token: args.token.clone().filter(|t| !t.is_empty()),
        device: cli.device,
        memory_budget: args.memory_budget_mib.map(|mib| mib << 20),
        preview_every: args.preview_every,
        model_idle: std::time::Duration::from_secs(args.model_idle),
        on_shutdown: args.on_shutdown,
        ..ServiceConfig::new(&args.inputs, &args.outputs, &args.database)
    };
    if !args.bind.ip().is_loopback() && config.token.is_none() {
        eprintln!("warning: serving on {} without --token: anyone who reaches it can run jobs", args.bind);
    }
    // Listening first: a second service started by mistake fails before it opens the records.
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| Error::InvalidConfig(format!("cannot listen on {}: {e}", args.bind)))?;
    let address = listener.local_addr().map_err(|e| Error::InvalidConfig(format!("{}: {e}", args.bind)))?;
    if address.ip().is_loopback() {
        // No other name reaches a loopback address, except a rebinding page's.
        let port = address.port();
        config.allowed_hosts = [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]
            .into_iter()
            .chain(args.allow_hosts.iter().cloned())
            .collect();
    } else {
        config.allowed_hosts = args.allow_hosts.clone();
    }
    let service = Service::new(config).await?;
    output.serving(&address, &service);
    let stopping = service.clone();
    let quiet = output.quiet || output.json;
    let shutdown = async move {
        stop_signal().await;
        if !quiet {
            eprintln!("framestream: stopping (no new jobs; a second signal cancels the running ones)");
        }
        // A second signal cancels what the first let finish.
        tokio::select! {
            () = stopping.shutdown() => {}
            () = async { stop_signal().await; stopping.cancel_all(); stopping.shutdown().await } => {}
        }
    };
    axum::serve(listener, service.router())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::InvalidConfig(format!("serving on {address}: {e}")))
}

fn check_not_same_file(input: &Path, output: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) && a == b {
        return Err(Error::InvalidConfig(format!(
            "{} is both the input and the output",
            input.display()
        )));
    }
    Ok(())
}
