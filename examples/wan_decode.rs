//! Memory and speed of the streaming Wan VAE decode for several latent lengths, and the
//! memory of its attention kernel for several token counts.
//!
//! `cargo run --release --example wan_decode [-- --version 2.1 --latent 2x2 --frames 5,17,33
//!  --chunk-frames 8 --piece-kib 16 --precision f32 --tokens 900,1800,3600]`
//!
//! The decoder is the released architecture (`WanConfig::released`: Wan 2.1, 16 latent
//! channels and widths 384/384/192/96; or Wan 2.2, 48 and 1024/1024/1024/512/256) with random
//! bf16 weights built in memory, so nothing is downloaded. Each length runs in a fresh child
//! process so its peak RSS (VmHWM) is its own (each first decodes one latent frame, untimed, to
//! upload the weights and compile the kernels); on lavapipe device memory is host memory, so the
//! RSS includes the weights and the device's buffers. "Decode stream" memory is the stream's own
//! device pool (the weights live on a stream of their own).
//!
//! The attention table runs the middle block's kernel alone, one frame of `tokens` tokens at
//! the version's width, in a fresh process each: the device holds its input (q, k, v) and its
//! output and nothing else, against the tokens² scores a materialised softmax would hold.

mod common;

use std::time::Instant;

use cubecl::Runtime;
use framestream::model::wan::{WanConfig, WanVersion};
use framestream::prelude::*;
use framestream_kernels::DeviceBuffer;

struct Args {
    version: WanVersion,
    latent: FrameSize,
    frames: Vec<usize>,
    chunk_frames: usize,
    piece_kib: usize,
    precision: framestream::model::Precision,
    tokens: Vec<usize>,
    /// A child run of the attention kernel alone.
    attention: bool,
    child: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        version: WanVersion::V21,
        latent: "2x2".parse().unwrap(),
        frames: vec![5, 17, 33],
        chunk_frames: 8,
        piece_kib: 16,
        precision: Default::default(),
        tokens: vec![900, 1800, 3600],
        attention: false,
        child: false,
    };
    common::parse_flags(|flag, value| {
        match flag {
            "--version" => {
                args.version = match value().as_str() {
                    "2.1" => WanVersion::V21,
                    "2.2" => WanVersion::V22,
                    other => panic!("--version {other}: 2.1 or 2.2"),
                }
            }
            "--latent" => args.latent = common::parsed(flag, &value()),
            "--frames" => args.frames = common::list(flag, &value()),
            "--chunk-frames" => args.chunk_frames = common::parsed(flag, &value()),
            "--piece-kib" => args.piece_kib = common::parsed(flag, &value()),
            "--precision" => args.precision = common::parsed(flag, &value()),
            "--tokens" => args.tokens = common::list(flag, &value()),
            "--attention" => args.attention = value() == "1",
            "--child" => args.child = true,
            _ => return false,
        }
        true
    });
    args
}

fn version_flag(version: WanVersion) -> String {
    match version {
        WanVersion::V21 => "2.1".into(),
        WanVersion::V22 => "2.2".into(),
    }
}

/// The released decoder with bf16 weights uniform in ±1/√fan_in and RMS gains in [0.5, 1.5).
fn random_vae(version: WanVersion) -> Result<WanVae> {
    let tensors = WanConfig::released(version).tensors();
    let file = common::random_checkpoint("random-wan-vae.safetensors", &tensors, None, |name, u, fan_in| {
        if name.ends_with("gamma") { 0.5 + u } else { (2.0 * u - 1.0) / (fan_in as f32).sqrt() }
    });
    WanVae::from_weights(file)
}

/// Decodes one length and prints `frames seconds peak_kib max_in_use reserved planned`.
fn decode_child(args: &Args) -> Result<()> {
    let t = args.frames[0];
    let vae = random_vae(args.version)?;
    let z = vae.config().latent_channels;
    let (h, w) = (args.latent.height, args.latent.width);
    let data = common::random_values(z * t * h * w);
    let latent = Latent::from_tensor(&[1, z, t, h, w], &data, None)?;
    let source = WanVaeDecode::new(vae.clone(), latent)?.piece_bytes(args.piece_kib << 10).precision(args.precision);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    runtime.block_on(async {
        let device = Device::from_env()?;
        vae.upload_to(&device, args.precision)?;
        let one = Latent::from_tensor(&[1, z, 1, h, w], &data[..z * h * w], None)?;
        drain(&WanVaeDecode::new(vae.clone(), one)?.precision(args.precision), &OpenRequest::new(&device)).await?;
        common::measure_decode(&source, &device, args.chunk_frames).await
    })
}

/// Runs the attention kernel on one frame of `tokens` tokens and prints `seconds in_use`:
/// the device memory in use once it ran (its input and output, nothing else). On the device
/// `FRAMESTREAM_DEVICE` names (CUDA where built with it, else wgpu).
fn attention_child(args: &Args) -> Result<()> {
    let tokens = args.tokens[0];
    let channels = WanConfig::released(args.version).width;
    #[cfg(feature = "cuda")]
    if std::env::var("FRAMESTREAM_DEVICE").is_ok_and(|d| d.starts_with("cuda")) {
        return attention_on::<cubecl::cuda::CudaRuntime>(tokens, channels);
    }
    attention_on::<cubecl::wgpu::WgpuRuntime>(tokens, channels)
}

fn attention_on<R: Runtime>(tokens: usize, channels: usize) -> Result<()> {
    let client = R::client(&Default::default());
    let qkv = DeviceBuffer::from_f32(&client, &common::random_values(tokens * 3 * channels));
    let out = DeviceBuffer::empty_f32(&client, tokens * channels);
    let run = || {
        framestream_kernels::attention::attention::<R, f32>(&client, &qkv, (1, tokens, channels), &out);
        cubecl::future::block_on(client.sync()).expect("the device finishes");
    };
    // Compile first, then time.
    run();
    let start = Instant::now();
    run();
    let seconds = start.elapsed().as_secs_f64();
    println!("{seconds:.3} {}", client.memory_usage().expect("memory usage").bytes_in_use);
    Ok(())
}

fn main() {
    let args = parse_args();
    common::run_if_child(args.child, || if args.attention { attention_child(&args) } else { decode_child(&args) });
    let device = Device::from_env().expect("a device");
    let config = WanConfig::released(args.version);
    let (h, w) = (args.latent.height, args.latent.width);
    let factor = config.spatial_factor();
    println!(
        "{} VAE decoder ({} parameters), random bf16 weights; latent {w}x{h} -> {}x{}; chunks of {}, pieces of {} KiB, \
         activations in {}",
        config.version_name(),
        config.parameters(),
        w * factor,
        h * factor,
        args.chunk_frames,
        args.piece_kib,
        args.precision
    );
    println!("device: {}", device.info());
    println!();
    println!(
        "| latent frames | frames | time (s) | frames/s | peak RSS (MiB) | decode stream: max in use / reserved (MiB) \
         | planned peak (MiB) | decoded video f32 (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |b: f64| b / (1 << 20) as f64;
    let (mut rss, mut device_peaks) = (Vec::new(), Vec::new());
    for &t in &args.frames {
        let v = common::run_child(&[
            ("--version", version_flag(args.version)),
            ("--latent", args.latent.to_string()),
            ("--frames", t.to_string()),
            ("--chunk-frames", args.chunk_frames.to_string()),
            ("--piece-kib", args.piece_kib.to_string()),
            ("--precision", args.precision.to_string()),
        ]);
        let video = (config.frames(t) * h * w * factor * factor * 3 * 4) as f64;
        println!(
            "| {t} | {} | {:.2} | {:.2} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} |",
            v[0],
            v[1],
            v[0] / v[1],
            v[2] / 1024.0,
            mib(v[3]),
            mib(v[4]),
            mib(v[5]),
            mib(video),
        );
        rss.push(v[2]);
        device_peaks.push(v[4]);
    }
    println!();
    println!(
        "peak RSS spread: {:.1} %, decode stream reserved spread: {:.1} % (target < 10 %)",
        common::spread_percent(&rss),
        common::spread_percent(&device_peaks)
    );
    let element = if args.precision == framestream::model::Precision::F32 { 4 } else { 2 };
    let carried = |hw: (usize, usize)| (config.carried_state(hw) * element) as f64;
    let headline = if args.version == WanVersion::V21 { (90, 160) } else { (45, 80) };
    println!(
        "carried state in {}: {:.1} MiB at this latent, {:.2} GiB at 1280x720 (latent {}x{})",
        args.precision,
        mib(carried((h, w))),
        carried(headline) / (1u64 << 30) as f64,
        headline.1,
        headline.0
    );
    println!();
    let channels = config.width;
    println!("attention, one frame at width {channels} (f32):");
    println!();
    println!("| tokens | time (s) | device memory in use (MiB) | q, k, v and output (MiB) | tokens² scores, not held (MiB) |");
    println!("|---:|---:|---:|---:|---:|");
    for &tokens in &args.tokens {
        let v = common::run_child(&[
            ("--version", version_flag(args.version)),
            ("--attention", "1".into()),
            ("--tokens", tokens.to_string()),
        ]);
        let io = (4 * tokens * 4 * channels) as f64;
        let scores = (tokens * tokens * 4) as f64;
        println!("| {tokens} | {:.2} | {:.2} | {:.2} | {:.1} |", v[0], mib(v[1]), mib(io), mib(scores));
    }
}
