//! The `framestream` command line.

mod events;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use framestream::prelude::*;

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
    /// Compute device: auto, wgpu or cuda.
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
    /// Frames per chunk.
    #[arg(long, default_value_t = OpenRequest::DEFAULT_CHUNK_FRAMES)]
    chunk_frames: usize,
    /// Replace OUT if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Output file (.safetensors).
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> ExitCode {
    // Without a runtime directory the Vulkan loader's Wayland probe prints errors on every
    // start; an empty one makes it skip quietly. Set before any thread exists.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: single-threaded here, nothing reads the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let output = Output::new(cli.quiet, cli.json);
    let result = match &cli.command {
        Command::Info => info(&cli, &output),
        Command::Pattern(args) => pattern(&cli, args, &output).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output.error(&e);
            ExitCode::FAILURE
        }
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

async fn pattern(cli: &Cli, args: &PatternArgs, output: &Output) -> Result<()> {
    check_output_extension(&args.output)?;
    let device = Device::open(cli.device)?;
    let pattern = TestPattern::new(args.size.width, args.size.height, args.frames)?
        .fps(args.fps)
        .seed(args.seed);
    let video = match args.scale {
        Some(factor) => pattern.resize(factor, args.filter).boxed(),
        None => pattern.boxed(),
    };
    let (sender, events) = output.start_events();
    let request = OpenRequest::new(&device).with_chunk_frames(args.chunk_frames).with_progress(sender);
    let options = TensorFileOptions { overwrite: args.overwrite };
    let result = write_tensor(&video, &args.output, &request, &options).await;
    drop(request);
    events.await;
    output.done(&result?);
    Ok(())
}

fn check_output_extension(path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("safetensors") => Ok(()),
        _ => Err(Error::InvalidConfig(format!(
            "{}: the output must be a .safetensors file",
            path.display()
        ))),
    }
}
