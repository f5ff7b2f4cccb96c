//! Helpers shared by the benchmark examples: flag parsing, child processes so each
//! measured run's peak RSS is its own, random checkpoints and latents.

// Each example uses a subset.
#![allow(dead_code)]

use std::process::Command;
use std::str::FromStr;

/// Reads the `--flag [value]` arguments in order: `on(flag, value)` handles one, taking its
/// value with `value()`, and returns false for a flag it does not know (which panics).
/// `--bench`, which `cargo bench` passes, is skipped.
pub fn parse_flags(mut on: impl FnMut(&str, &mut dyn FnMut() -> String) -> bool) {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        assert!(on(&flag, &mut value), "unknown argument {flag}");
    }
}

/// `text` parsed, or a panic naming the flag.
pub fn parsed<T: FromStr>(flag: &str, text: &str) -> T {
    text.parse().unwrap_or_else(|_| panic!("{flag}: cannot read {text:?}"))
}

/// A comma-separated list, e.g. `--frames 5,17,33`.
pub fn list<T: FromStr>(flag: &str, text: &str) -> Vec<T> {
    text.split(',').map(|v| parsed(flag, v)).collect()
}

/// Peak resident memory of this process (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs this example again with `--child` and the `(flag, value)` pairs; returns the numbers
/// the child printed on stdout. Exits with the child's stderr when it fails.
pub fn run_child(flags: &[(&str, String)]) -> Vec<f64> {
    let out = Command::new(std::env::current_exe().expect("the example's path"))
        .arg("--child")
        .args(flags.iter().flat_map(|(flag, value)| [*flag, value.as_str()]))
        .output()
        .expect("run the child");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    line.split_whitespace().map(|x| x.parse().expect("a number from the child")).collect()
}

/// `(max − min) / min` in percent.
pub fn spread_percent(values: &[f64]) -> f64 {
    let (lo, hi) = values.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    (hi - lo) / lo * 100.0
}

/// In a child run (`is_child`), runs `child` and exits, with status 1 and the error on
/// failure; in the parent, returns.
pub fn run_if_child(is_child: bool, child: impl FnOnce() -> framestream::Result<()>) {
    if !is_child {
        return;
    }
    if let Err(e) = child() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// A safetensors file held in memory with the tensors `(name, shape)`, bf16 values from
/// `value(name, u, fan_in)` with `u` uniform in [0, 1) and `fan_in` from the shape, and
/// `metadata` (string values) when given.
pub fn random_checkpoint(
    name: &str,
    tensors: &[(String, Vec<usize>)],
    metadata: Option<serde_json::Value>,
    value: impl Fn(&str, f32, usize) -> f32,
) -> framestream::model::WeightFile {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = 2 * shape.iter().product::<usize>();
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    if let Some(metadata) = metadata {
        header.insert("__metadata__".into(), metadata);
    }
    let header = serde_json::Value::Object(header).to_string().into_bytes();
    let mut file = Vec::with_capacity(8 + header.len() + offset);
    file.extend((header.len() as u64).to_le_bytes());
    file.extend(&header);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (name, shape) in tensors {
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        for _ in 0..shape.iter().product::<usize>() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            file.extend(half::bf16::from_f32(value(name, u, fan_in)).to_le_bytes());
        }
    }
    framestream::model::WeightFile::from_bytes(name, file).expect("a valid file")
}

/// `n` deterministic values uniform in [−1, 1).
pub fn random_values(n: usize) -> Vec<f32> {
    let mut state = 7u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Reads `source` to the end in chunks of `chunk_frames` on `device` and prints
/// `frames seconds peak_rss_kib max_in_use reserved planned` for the parent's table: the
/// stream's own device pool in use at most and reserved at the end, and the most it reserved
/// from the device's budget (its planned peak).
pub async fn measure_decode(source: &impl framestream::Source, device: &framestream::Device, chunk_frames: usize) -> framestream::Result<()> {
    use futures::StreamExt;
    let request = framestream::OpenRequest::new(device).with_chunk_frames(chunk_frames);
    let start = std::time::Instant::now();
    let mut stream = source.open(&request);
    let (mut frames, mut max_in_use, mut planned) = (0, 0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        frames += chunk.frames();
        drop(chunk);
        request.device().sync().await?;
        max_in_use = max_in_use.max(request.device().memory_usage()?.bytes_in_use);
        planned = planned.max(request.device().memory_reserved());
    }
    let reserved = request.device().memory_usage()?.bytes_reserved;
    println!("{frames} {:.3} {} {max_in_use} {reserved} {planned}", start.elapsed().as_secs_f64(), peak_rss_kib());
    Ok(())
}
