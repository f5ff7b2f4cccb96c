//! The video sink: peak memory against length, and throughput against the ffmpeg CLI.
//!
//! `cargo run --release --example save_video [-- --size 1280x720 --frames 300,3000 --compare 150]`
//!
//! 1. Pattern → save_video (H.264, ultrafast) for each length, each in a fresh child process,
//!    printing its peak RSS (VmHWM; on lavapipe this includes the device's buffers).
//! 2. The same frames, already rendered, encoded by the sink (f32 frames on the device) and by
//!    `ffmpeg -f rawvideo -pix_fmt rgb24 -i - -c:v libx264 -preset ultrafast` (the frames as
//!    bytes in memory, piped), in one run; the best of two runs each.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use framestream::prelude::*;
use futures::StreamExt;

struct Args {
    size: FrameSize,
    frames: Vec<u64>,
    compare: u64,
    chunk_frames: usize,
    child: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        size: "1280x720".parse().unwrap(),
        frames: vec![300, 3000],
        compare: 150,
        chunk_frames: 8,
        child: false,
    };
    common::parse_flags(|flag, value| {
        match flag {
            "--size" => args.size = common::parsed(flag, &value()),
            "--frames" => args.frames = common::list(flag, &value()),
            "--compare" => args.compare = common::parsed(flag, &value()),
            "--chunk-frames" => args.chunk_frames = common::parsed(flag, &value()),
            "--child" => args.child = true,
            _ => return false,
        }
        true
    });
    args
}

fn h264() -> VideoOptions {
    VideoOptions::h264().preset("ultrafast").overwrite(true)
}

fn out_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("framestream-bench-{}-{name}", std::process::id()))
}

/// Chunks already on the device, yielded without copying.
#[derive(Clone)]
struct Prepared {
    chunks: Arc<Vec<Chunk>>,
    info: StreamInfo,
}

impl Source for Prepared {
    fn name(&self) -> String {
        "prepared".into()
    }
    fn info(&self) -> Result<StreamInfo> {
        Ok(self.info.clone())
    }
    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let device = request.device().clone();
        let chunks = self.chunks.clone();
        Box::pin(futures::stream::iter((0..chunks.len()).map(move |i| chunks[i].rebind(&device))))
    }
}

/// One length: `frames seconds peak_kib`.
async fn child(args: &Args) -> Result<()> {
    let device = Device::from_env()?;
    let frames = args.frames[0];
    let video = TestPattern::new(args.size.width, args.size.height, frames)?;
    let request = OpenRequest::new(&device).with_chunk_frames(args.chunk_frames);
    let path = out_path("rss.mp4");
    let start = Instant::now();
    let report = save_video(&video, &path, &request, &h264()).await?;
    let _ = std::fs::remove_file(&path);
    println!("{} {:.3} {}", report.frames, start.elapsed().as_secs_f64(), common::peak_rss_kib());
    Ok(())
}

async fn compare(args: &Args, device: &Device) -> Result<(f64, f64)> {
    let (w, h, n) = (args.size.width, args.size.height, args.compare);
    let pattern = TestPattern::new(w, h, n)?;
    let request = OpenRequest::new(device).with_chunk_frames(args.chunk_frames);
    let mut chunks = Vec::new();
    let mut rgb = Vec::with_capacity(n as usize * w * h * 3);
    let mut stream = pattern.open(&request);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        rgb.extend(chunk.to_rgb8().await?);
        chunks.push(chunk);
    }
    let prepared = Prepared { chunks: Arc::new(chunks), info: pattern.info()? };
    let path = out_path("sink.mp4");
    let mut ours = f64::MAX;
    let mut theirs = f64::MAX;
    for _ in 0..2 {
        let start = Instant::now();
        save_video(&prepared, &path, &request, &h264()).await?;
        ours = ours.min(start.elapsed().as_secs_f64());

        let start = Instant::now();
        let mut ffmpeg = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
            .arg(format!("{w}x{h}"))
            .args(["-r", "30", "-i", "-", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-pix_fmt", "yuv420p", "-f", "mp4"])
            .arg(out_path("ffmpeg.mp4"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("ffmpeg on the PATH");
        ffmpeg.stdin.take().unwrap().write_all(&rgb).expect("feeding ffmpeg");
        assert!(ffmpeg.wait().unwrap().success());
        theirs = theirs.min(start.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(out_path("ffmpeg.mp4"));
    Ok((n as f64 / ours, n as f64 / theirs))
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    common::run_if_child(args.child, || runtime.block_on(child(&args)));
    let device = Device::from_env().expect("a device");
    let (w, h) = (args.size.width, args.size.height);
    println!("device: {}", device.info());
    println!();
    println!("pattern {w}x{h} -> save_video (H.264 ultrafast, yuv420p), chunks of {}", args.chunk_frames);
    println!();
    println!("| frames | time (s) | frames/s | peak RSS (MiB) | frames as f32 (MiB) |");
    println!("|---:|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    for &frames in &args.frames {
        let v = common::run_child(&[
            ("--size", args.size.to_string()),
            ("--frames", frames.to_string()),
            ("--chunk-frames", args.chunk_frames.to_string()),
        ]);
        let whole = frames as f64 * (w * h * 3 * 4) as f64 / (1 << 20) as f64;
        println!(
            "| {frames} | {:.2} | {:.1} | {:.1} | {whole:.0} |",
            v[1],
            v[0] / v[1],
            v[2] / 1024.0
        );
        peaks.push(v[2]);
    }
    println!();
    println!("peak RSS spread: {:.1} % (target < 10 %)", common::spread_percent(&peaks));
    println!();
    match runtime.block_on(compare(&args, &device)) {
        Ok((ours, theirs)) => {
            println!("{} rendered frames of {w}x{h}, H.264 ultrafast, best of 2:", args.compare);
            println!();
            println!("| encoder | frames/s |");
            println!("|---|---:|");
            println!("| save_video (f32 on the device) | {ours:.1} |");
            println!("| ffmpeg CLI (rgb24 piped) | {theirs:.1} |");
            println!();
            println!("ratio: {:.2} (target >= 0.9)", ours / theirs);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
