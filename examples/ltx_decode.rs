//! Memory and speed of the streaming LTX VAE decode, for several latent lengths.
//!
//! `cargo run --release --example ltx_decode [-- --layout 2.3 --latent 2x2 --frames 5,17,33
//!  --chunk-frames 8 --layers 5 --base 128 --piece-kib 16 --precision f32]`
//!
//! The decoder has a released architecture with random bf16 weights built in memory, so
//! nothing is downloaded: `--layout 0.9.5` (the default; base 128: conv_in 128→1024, four Mid
//! blocks of `--layers` resblocks at 1024/512/256/128 channels, three residual upsamplers and
//! timestep conditioning), `2.0` (the same graph without conditioning, reflect padding) or `2.3` (its own
//! depths, 2/2/4/6/4 resblocks at 1024/512/512/256/128 channels, spatiotemporal, temporal and
//! spatial upsamplers; `--layers` does not apply). The line under the table gives the state
//! the decode carries between chunks (`LtxConfig::carried_state`) at this latent and for a
//! 1280×704 video (a 40×22 latent). Each length runs in a fresh child
//! process so its peak RSS (VmHWM) is its own (each first decodes one latent frame, untimed,
//! to upload the weights and compile the kernels); on lavapipe device memory is host memory, so
//! the RSS includes the weights and the device's buffers. "Decode stream" memory is the
//! stream's own device pool (the weights live on a stream of their own).
//!
//! Memory is bounded by the piece size (what one decoder step may produce), not by the frame
//! count: the default 16 KiB makes every step one frame at this small latent, so the run shows
//! the carried state alone; with pieces larger than the whole video (e.g. `--piece-kib 65536`
//! at 2×2) every level takes the video in one step and memory follows its length.

mod common;

use framestream::model::WeightFile;
use framestream::prelude::*;

struct Args {
    layout: String,
    latent: FrameSize,
    frames: Vec<usize>,
    chunk_frames: usize,
    layers: usize,
    base: usize,
    piece_kib: usize,
    precision: framestream::model::ltx::Precision,
    child: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        layout: "0.9.5".into(),
        latent: "2x2".parse().unwrap(),
        frames: vec![5, 17, 33],
        chunk_frames: 8,
        layers: 5,
        base: 128,
        piece_kib: 16,
        precision: Default::default(),
        child: false,
    };
    common::parse_flags(|flag, value| {
        match flag {
            "--layout" => args.layout = value(),
            "--latent" => args.latent = common::parsed(flag, &value()),
            "--frames" => args.frames = common::list(flag, &value()),
            "--chunk-frames" => args.chunk_frames = common::parsed(flag, &value()),
            "--layers" => args.layers = common::parsed(flag, &value()),
            "--base" => args.base = common::parsed(flag, &value()),
            "--piece-kib" => args.piece_kib = common::parsed(flag, &value()),
            "--precision" => args.precision = common::parsed(flag, &value()),
            "--child" => args.child = true,
            _ => return false,
        }
        true
    });
    args
}

fn config(args: &Args) -> serde_json::Value {
    use serde_json::json;
    let mid = |layers: usize| json!(["res_x", { "num_layers": layers, "inject_noise": false }]);
    let up = |kind: &str, multiplier: usize, residual: bool| json!([kind, { "residual": residual, "multiplier": multiplier }]);
    let (blocks, conditioned) = match args.layout.as_str() {
        "0.9.5" | "2.0" => {
            let (m, u) = (mid(args.layers), up("compress_all", 2, true));
            (json!([m, u, m, u, m, u, m]), args.layout == "0.9.5")
        }
        "2.3" => (
            json!([mid(4), up("compress_space", 2, false), mid(6), up("compress_time", 2, false), mid(4),
                up("compress_all", 1, false), mid(2), up("compress_all", 2, false), mid(2)]),
            false,
        ),
        other => panic!("--layout {other}: 0.9.5, 2.0 or 2.3"),
    };
    json!({
        "_class_name": "CausalVideoAutoencoder", "dims": 3, "out_channels": 3, "latent_channels": 128,
        "norm_layer": "pixel_norm", "patch_size": 4, "causal_decoder": false, "timestep_conditioning": conditioned,
        "decoder_base_channels": args.base, "decoder_blocks": blocks,
        "spatial_padding_mode": if args.layout == "2.0" { "reflect" } else { "zeros" },
    })
}

/// A checkpoint of bf16 values uniform in ±1/√fan_in, with the config in its metadata.
fn random_checkpoint(config: &serde_json::Value) -> WeightFile {
    let tensors = framestream::model::ltx::LtxConfig::from_official(config).expect("config").tensors();
    let metadata = serde_json::json!({ "config": serde_json::json!({ "vae": config }).to_string() });
    common::random_checkpoint("random-ltx-vae.safetensors", &tensors, Some(metadata), |name, u, fan_in| {
        if name.ends_with("multiplier") {
            1000.0
        } else if name.starts_with("per_channel") {
            0.5 + u
        } else {
            (2.0 * u - 1.0) / (fan_in as f32).sqrt()
        }
    })
}

/// Decodes one length and prints `frames seconds peak_kib max_in_use reserved planned`.
fn child(args: &Args) -> Result<()> {
    let t = args.frames[0];
    let vae = LtxVae::from_weights(random_checkpoint(&config(args)))?;
    let (h, w) = (args.latent.height, args.latent.width);
    let data = common::random_values(128 * t * h * w);
    let latent = Latent::from_tensor(&[1, 128, t, h, w], &data, None)?;
    let source = LtxVaeDecode::new(vae.clone(), latent)?.piece_bytes(args.piece_kib << 10).precision(args.precision);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    runtime.block_on(async {
        let device = Device::from_env()?;
        // Upload the weights and compile the kernels before timing: decode one latent frame.
        vae.upload_to(&device, args.precision)?;
        let one = Latent::from_tensor(&[1, 128, 1, h, w], &data[..128 * h * w], None)?;
        drain(&LtxVaeDecode::new(vae.clone(), one)?.precision(args.precision), &OpenRequest::new(&device)).await?;
        common::measure_decode(&source, &device, args.chunk_frames).await
    })
}

/// Bytes of the largest activation a whole-sequence decode of `t` latent frames holds (an
/// upsampler's convolution output or a level's resblock output, f32).
fn whole_sequence_peak(config: &framestream::model::ltx::LtxConfig, t: usize, (h, w): (usize, usize)) -> usize {
    use framestream::model::ltx::Block;
    let (mut frames, mut pixels) = (t, h * w);
    let mut peak = frames * pixels * config.width();
    for block in &config.blocks {
        match *block {
            Block::Upsample { cin, axes, reduction, .. } => {
                let (st, sh, sw) = axes.stride();
                peak = peak.max(frames * pixels * axes.factor() * cin / reduction);
                frames = st * frames - (st - 1);
                pixels *= sh * sw;
            }
            b => peak = peak.max(frames * pixels * b.out_channels()),
        }
    }
    4 * peak
}

fn main() {
    let args = parse_args();
    common::run_if_child(args.child, || child(&args));
    let device = Device::from_env().expect("a device");
    let config = framestream::model::ltx::LtxConfig::from_official(&config(&args)).expect("config");
    let (h, w) = (args.latent.height, args.latent.width);
    let factor = config.spatial_factor();
    let depth = if args.layout == "2.3" { String::new() } else { format!(", {} resblocks per level", args.layers) };
    println!(
        "{} decoder ({} parameters, base {}{depth}), random bf16 weights; latent {w}x{h} -> {}x{}; \
         chunks of {}, pieces of {} KiB, activations in {}",
        config.version(),
        config.parameters(),
        args.base,
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
         | planned peak, reserved from the budget (MiB) | decoded video f32 (MiB) | whole-sequence largest activation (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |b: f64| b / (1 << 20) as f64;
    let (mut rss, mut device_peaks) = (Vec::new(), Vec::new());
    for &t in &args.frames {
        let v = common::run_child(&[
            ("--layout", args.layout.clone()),
            ("--latent", args.latent.to_string()),
            ("--frames", t.to_string()),
            ("--chunk-frames", args.chunk_frames.to_string()),
            ("--layers", args.layers.to_string()),
            ("--base", args.base.to_string()),
            ("--piece-kib", args.piece_kib.to_string()),
            ("--precision", args.precision.to_string()),
        ]);
        let video = (config.frames(t) * h * w * factor * factor * 3 * 4) as f64;
        println!(
            "| {t} | {} | {:.2} | {:.2} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} |",
            v[0],
            v[1],
            v[0] / v[1],
            v[2] / 1024.0,
            mib(v[3]),
            mib(v[4]),
            mib(v[5]),
            mib(video),
            mib(whole_sequence_peak(&config, t, (h, w)) as f64)
        );
        rss.push(v[2]);
        device_peaks.push(v[4]);
    }
    println!();
    println!("peak RSS spread: {:.1} %, decode stream reserved spread: {:.1} % (target < 10 %)", common::spread_percent(&rss),
        common::spread_percent(&device_peaks));
    let element = if args.precision == framestream::model::ltx::Precision::F32 { 4 } else { 2 };
    let carried = |hw: (usize, usize)| (config.carried_state(hw) * element) as f64;
    let gib = |b: f64| b / (1u64 << 30) as f64;
    println!(
        "carried state in {}: {:.1} MiB at this latent, {:.2} GiB at 1280x704 (latent 40x22); a whole-latent \
         decode of 1001 such frames holds {:.1} GiB in its largest activation alone (f32)",
        args.precision,
        mib(carried((h, w))),
        gib(carried((22, 40))),
        gib(whole_sequence_peak(&config, 126, (22, 40)) as f64)
    );
}
