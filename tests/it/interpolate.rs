//! RIFE frame interpolation against the PyTorch reference (tests/fixtures/rife, made by
//! tools/make_rife_fixtures.py), and the stage's guarantees: frame counts, chunk invariance,
//! timestamps, scene cuts and bad inputs.

use std::path::PathBuf;

use framestream::model::WeightFile;
use framestream::model::Precision;
use framestream::model::rife::RifeModel;
use framestream::prelude::*;

use futures::StreamExt;

use crate::common::{self, max_error, read_all, rewritten};

fn fixture(name: &str) -> PathBuf {
    common::fixture("rife", name)
}

fn reference(layout: &str) -> WeightFile {
    WeightFile::open(fixture(&format!("{layout}_reference.safetensors"))).unwrap()
}

/// The reference's input frames as a source.
fn frames(reference: &WeightFile) -> ImageBatch {
    let t = reference.tensor("frames").unwrap();
    ImageBatch::from_host(t.data, [t.shape[0], t.shape[1], t.shape[2], t.shape[3]]).unwrap()
}

/// Frames `(i − 1)·k + j` of an interpolated stream: input `i` at j = 0, else the reference's
/// frame between inputs `i` and `i + 1` at t = j / k.
fn expected(reference: &WeightFile, timesteps: &[&str]) -> Vec<f32> {
    let inputs = reference.tensor("frames").unwrap();
    let frame_len = inputs.shape[1..].iter().product::<usize>();
    let between: Vec<_> = timesteps.iter().map(|t| reference.tensor(t).unwrap().data).collect();
    let mut out = Vec::new();
    for i in 0..inputs.shape[0] {
        out.extend_from_slice(&inputs.data[i * frame_len..(i + 1) * frame_len]);
        if i + 1 < inputs.shape[0] {
            for b in &between {
                out.extend_from_slice(&b[i * frame_len..(i + 1) * frame_len]);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layout_matches_the_reference() {
    // (model file, reference, timesteps it holds, family)
    let cases: [(&str, &str, &[&str], &str); 9] = [
        ("v45.safetensors", "v45", &["t0.5"], "RIFE 4.5/4.6"),
        ("v46.safetensors", "v46", &["t0.25", "t0.5", "t0.75"], "RIFE 4.5/4.6"),
        ("v49.safetensors", "v49", &["t0.5"], "RIFE 4.7–4.20"),
        ("v412.safetensors", "v412", &["t0.5"], "RIFE 4.7–4.20"),
        ("v414lite.safetensors", "v414lite", &["t0.5"], "RIFE 4.7–4.20"),
        ("v418.safetensors", "v418", &["t0.25", "t0.5", "t0.75"], "RIFE 4.7–4.20"),
        ("v422.safetensors", "v422", &["t0.5"], "RIFE 4.21–4.23"),
        ("v426.safetensors", "v426", &["t0.25", "t0.5", "t0.75"], "RIFE 4.25/4.26"),
        ("v426.pkl", "v426", &["t0.5"], "RIFE 4.25/4.26"),
    ];
    for (file, layout, timesteps, family) in cases {
        let model = RifeModel::load(fixture(file)).unwrap();
        assert_eq!(model.config().family(), family, "{file}");
        let reference = reference(layout);
        let k = timesteps.len() + 1;
        let source = frames(&reference).pipe(Interpolate::rife(model).multiplier(k));
        let info = source.info().unwrap();
        assert_eq!(info.total_frames, Some(3 * k as u64 + 1), "{file}");
        let (_, got) = read_all(&source, 4).await;
        let err = max_error(&got, &expected(&reference, timesteps));
        assert!(err < 1e-4, "{file}, ×{k}: max error {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_half_scale_pyramid_matches_the_reference() {
    let reference = reference("v418");
    let model = RifeModel::load(fixture("v418.safetensors")).unwrap();
    let source = frames(&reference).pipe(Interpolate::rife(model).scale(0.5));
    let (_, got) = read_all(&source, 3).await;
    let err = max_error(&got, &expected(&reference, &["scale0.5_t0.5"]));
    assert!(err < 1e-4, "scale 0.5: max error {err}");
}

/// The reference's frames repeated to `n` frames (0, 1, 2, 3, 0, 1, …).
fn looped(reference: &WeightFile, n: usize) -> ImageBatch {
    let t = reference.tensor("frames").unwrap();
    let frame_len = t.shape[1..].iter().product::<usize>();
    let data: Vec<f32> = (0..n).flat_map(|i| t.data[(i % 4) * frame_len..(i % 4 + 1) * frame_len].to_vec()).collect();
    ImageBatch::from_host(data, [n, t.shape[1], t.shape[2], t.shape[3]]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunking_never_changes_a_frame() {
    let reference = reference("v426");
    let model = RifeModel::load(fixture("v426.safetensors")).unwrap();
    let source = looped(&reference, 6).pipe(Interpolate::rife(model).multiplier(3));
    assert_eq!(source.info().unwrap().total_frames, Some(16));
    let (_, whole) = read_all(&source, 16).await;
    for n in [1, 2, 3, 8] {
        let (shapes, got) = read_all(&source, n).await;
        assert!(shapes.iter().rev().skip(1).all(|s| s[0] == n), "chunks of {n}: {shapes:?}");
        assert_eq!(shapes.iter().map(|s| s[0]).sum::<usize>(), 16);
        assert!(got == whole, "chunks of {n} differ from one chunk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_and_two_frame_inputs() {
    let reference = reference("v46");
    let model = RifeModel::load(fixture("v46.safetensors")).unwrap();
    let one = looped(&reference, 1);
    let (shapes, got) = read_all(&one.clone().pipe(Interpolate::rife(model.clone()).multiplier(4)), 8).await;
    assert_eq!(shapes, [[1, 38, 70, 3]]);
    assert_eq!(got, reference.tensor("frames").unwrap().data[..38 * 70 * 3]);
    let two = looped(&reference, 2).pipe(Interpolate::rife(model).timesteps([0.25, 0.5, 0.75]));
    assert_eq!(two.info().unwrap().total_frames, Some(5));
    let (shapes, got) = read_all(&two, 8).await;
    assert_eq!(shapes, [[5, 38, 70, 3]]);
    let want = expected(&reference, &["t0.25", "t0.5", "t0.75"]);
    let err = max_error(&got, &want[..5 * 38 * 70 * 3]);
    assert!(err < 1e-4, "two frames: {err}");
}

/// `inner`'s frames timed at the given ticks of 1/90000 s.
struct Timed<S>(S, Vec<i64>);

impl<S: Source> Source for Timed<S> {
    fn name(&self) -> String {
        "timed".into()
    }
    fn info(&self) -> Result<StreamInfo> {
        Ok(StreamInfo { time_base: Some(Rational::new(1, 90_000)?), ..self.0.info()? })
    }
    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let ticks = self.1.clone();
        Box::pin(self.0.open(request).map(move |chunk| {
            let chunk = chunk?;
            let (a, b) = (chunk.first_frame() as usize, chunk.end_frame() as usize);
            chunk.with_timestamps(ticks[a..b].to_vec())
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_frames_are_timed_between_their_neighbours() {
    let reference = reference("v46");
    let model = RifeModel::load(fixture("v46.safetensors")).unwrap();
    // Uneven gaps: 3000, 4500, 3001 ticks.
    let source = Timed(looped(&reference, 4), vec![1000, 4000, 8500, 11501]).pipe(Interpolate::rife(model).multiplier(3));
    let info = source.info().unwrap();
    assert_eq!(info.time_base, Some(Rational::new(1, 270_000).unwrap()));
    assert_eq!(info.fps, Rational::new(90, 1).unwrap());
    let mut stream = source.open(&common::request(4));
    let mut ticks = Vec::new();
    while let Some(chunk) = stream.next().await {
        ticks.extend_from_slice(chunk.unwrap().timestamps().unwrap());
    }
    assert_eq!(ticks, [3000, 6000, 9000, 12000, 16500, 21000, 25500, 28501, 31502, 34503]);

    // Uneven timesteps on one-tick gaps: the new frames still get ticks of their own.
    let model = RifeModel::load(fixture("v46.safetensors")).unwrap();
    let source = Timed(looped(&reference, 3), vec![0, 1, 2]).pipe(Interpolate::rife(model).timesteps([0.1, 0.2]));
    let mut stream = source.open(&common::request(2));
    let mut ticks = Vec::new();
    while let Some(chunk) = stream.next().await {
        ticks.extend_from_slice(chunk.unwrap().timestamps().unwrap());
    }
    assert_eq!(ticks, [0, 1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scene_cut_repeats_instead_of_morphing() {
    let reference = reference("v46");
    let model = RifeModel::load(fixture("v46.safetensors")).unwrap();
    let frames = reference.tensor("frames").unwrap();
    let len = 38 * 70 * 3;
    // Frames 0 and 1 of one scene, then an unrelated one: frame 1 upside down and inverted.
    let cut: Vec<f32> = frames.data[len..2 * len].chunks(70 * 3).rev().flatten().map(|v| 1.0 - v).collect();
    let data = [&frames.data[..2 * len], &cut[..]].concat();
    let source = ImageBatch::from_host(data.clone(), [3, 38, 70, 3]).unwrap();
    let detecting = source.clone().pipe(Interpolate::rife(model.clone()).scene_cut(0.3));
    let (_, got) = read_all(&detecting, 5).await;
    assert!(got[3 * len..4 * len] == data[len..2 * len], "the frame after the cut's first repeats it");
    assert!(got[len..2 * len] != data[..len], "frames of one scene are interpolated");
    let morphing = source.pipe(Interpolate::rife(model));
    let (_, plain) = read_all(&morphing, 5).await;
    assert!(plain[..3 * len] == got[..3 * len], "detection changes nothing within a scene");
    assert!(plain[3 * len..4 * len] != data[len..2 * len], "without detection the cut is morphed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_streams_are_refused() {
    let model = RifeModel::load(fixture("v46.safetensors")).unwrap();
    let rgb = ImageBatch::from_host(vec![0.5; 2 * 8 * 8 * 3], [2, 8, 8, 3]).unwrap();
    let cases: [(Interpolate, &str); 7] = [
        (Interpolate::rife(model.clone()).multiplier(1), "interpolation multiplier 1 (2 to 256)"),
        (Interpolate::rife(model.clone()).multiplier(usize::MAX), "interpolation multiplier 18446744073709551615"),
        (Interpolate::rife(model.clone()).timesteps([]), "at least one timestep"),
        (Interpolate::rife(model.clone()).timesteps([0.5, 0.25]), "do not increase"),
        (Interpolate::rife(model.clone()).timesteps([1.0]), "strictly between 0 and 1"),
        (Interpolate::rife(model.clone()).scale(0.3), "RIFE scale 0.3"),
        (Interpolate::rife(model.clone()).scene_cut(2.0), "scene-cut threshold"),
    ];
    for (stage, message) in cases {
        let err = rgb.clone().pipe(stage).info().unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
    }
    let grey = ImageBatch::from_host(vec![0.5; 2 * 8 * 8], [2, 8, 8, 1]).unwrap();
    let err = grey.pipe(Interpolate::rife(model)).info().unwrap_err().to_string();
    assert!(err.contains("RGB frames; this stream has 1 channel"), "{err}");
}

type Edit = Box<dyn Fn(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>>;

/// Keeps every tensor but `name`.
fn without(name: &'static str) -> Edit {
    Box::new(move |n, s, v| (n != name).then_some((s, v)))
}

#[test]
fn hostile_or_foreign_weights_give_errors() {
    let cases: [(&str, Edit, &str); 7] = [
        ("v46", Box::new(|n, s, v| (!n.ends_with(".beta")).then_some((s, v))), "blocks without residual convolutions"),
        ("v418", without("block2.convblock.3.beta"), "missing tensor block2.convblock.3.beta"),
        (
            "v418",
            Box::new(|n, s, v| Some(if n == "block1.lastconv.0.weight" { (vec![s[0], s[1], 2, 8], v) } else { (s, v) })),
            "block1.lastconv.0.weight has shape",
        ),
        ("v418", Box::new(|n, s, v| (!n.starts_with("block3.")).then_some((s, v))), "a RIFE model of 3 blocks"),
        ("v426", without("block4.conv0.0.0.weight"), "block4 has tensors but no block4.conv0.0.0.weight"),
        ("v418", without("encode.cnn0.weight"), "a feature encoder (encode.*) of a layout this build does not know"),
        (
            "v46",
            Box::new(|n, s, v| Some(if n == "block0.conv0.0.0.weight" { (vec![s[0], 8, 3, 3], vec![0.0; s[0] * 72]) } else { (s, v) })),
            "block0 reads 8 channels, expected 7",
        ),
    ];
    for (i, (layout, edit, message)) in cases.into_iter().enumerate() {
        let file = WeightFile::open(fixture(&format!("{layout}.safetensors"))).unwrap();
        let path = rewritten(&file, &format!("rife-hostile-{i}.safetensors"), edit);
        let err = RifeModel::load(&path).unwrap_err().to_string();
        assert!(err.contains(message), "case {i}: {err}");
    }
    let err = RifeModel::load(common::fixture("wan", "w21.safetensors")).unwrap_err().to_string();
    assert!(err.contains("not a RIFE (IFNet) model"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_releases_device_memory() {
    let reference = reference("v418");
    let model = RifeModel::load(fixture("v418.safetensors")).unwrap();
    let source = looped(&reference, 6).pipe(Interpolate::rife(model).multiplier(2));
    let req = common::request(2);
    // Weights uploaded first, so only the stream's own memory is compared.
    drop(read_all(&source, 2).await);
    req.device().sync().await.unwrap();
    let before = req.device().memory_usage().unwrap();
    let mut stream = source.open(&req);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.shape()[0], 2);
    drop(first);
    drop(stream);
    req.device().sync().await.unwrap();
    let after = req.device().memory_usage().unwrap();
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_precision_stays_close() {
    let reference = reference("v426");
    let model = RifeModel::load(fixture("v426.safetensors")).unwrap();
    let device = common::device();
    for precision in [Precision::F16, Precision::BF16] {
        if model.on_in(&device, precision).is_err() {
            continue; // the device lacks the type (lavapipe has f16, not bf16)
        }
        let source = frames(&reference).pipe(Interpolate::rife(model.clone()).precision(precision));
        let (_, got) = read_all(&source, 4).await;
        let err = max_error(&got, &expected(&reference, &["t0.5"]));
        assert!(err < 3e-2, "{precision}: max error {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pyramid_scale_matches_the_reference() {
    let reference = WeightFile::open(fixture("v426_scales_reference.safetensors")).unwrap();
    let model = RifeModel::load(fixture("v426.safetensors")).unwrap();
    for scale in [0.25, 2.0, 4.0] {
        let source = frames(&reference).pipe(Interpolate::rife(model.clone()).scale(scale));
        let (_, got) = read_all(&source, 3).await;
        let err = max_error(&got, &expected(&reference, &[&format!("scale{scale}_t0.5")]));
        assert!(err < 1e-4, "scale {scale}: max error {err}");
    }
}
