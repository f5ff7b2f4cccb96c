//! Video files: encoding, decoding, round trips, tags, audio, and failures that leave nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use framestream::prelude::*;
use framestream_kernels::rgb8::rgb8_reference;
use futures::StreamExt;

use crate::common::{FailAt, host_frames, partial_files, request, temp_dir};

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn video_stream(probe: &serde_json::Value) -> &serde_json::Value {
    probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "video").unwrap()
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).status().unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Waits for the encoder thread of a cancelled output to remove its partial file.
fn assert_nothing_left(dir: &Path, target: &Path) {
    let start = Instant::now();
    while !partial_files(dir).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(partial_files(dir).is_empty(), "partial files left: {:?}", partial_files(dir));
    assert!(!target.exists(), "{} exists", target.display());
}

fn pattern(w: usize, h: usize, frames: u64) -> TestPattern {
    TestPattern::new(w, h, frames).unwrap().seed(17)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffv1_round_trip_gives_back_identical_8_bit_frames() {
    let dir = temp_dir("ffv1");
    let path = dir.join("lossless.mkv");
    let source = pattern(48, 30, 11);
    let report = save_video(&source, &path, &request(4), &VideoOptions::ffv1()).await.unwrap();
    assert_eq!(report.frames, 11);
    let original = host_frames(&source).await;
    let want = rgb8_reference(&original.data, 3);

    let decoded = VideoFile::open(&path).unwrap();
    let info = decoded.info().unwrap();
    assert_eq!((info.width, info.height, info.channels), (48, 30, 3));
    for chunk_frames in [1, 3, 11] {
        let (_, data) = crate::common::read_all(&decoded, chunk_frames).await;
        let bytes: Vec<u8> = data.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert!(bytes == want, "chunks of {chunk_frames}: decoded frames differ");
        assert!(data.iter().zip(&bytes).all(|(v, b)| *v == f32::from(*b) / 255.0));
    }
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_crf0_yuv444_keeps_45_db() {
    let dir = temp_dir("h264-444");
    let path = dir.join("near-lossless.mp4");
    let source = pattern(64, 48, 10);
    let options = VideoOptions::h264().crf(0).pixel_format(PixelFormat::Yuv444p);
    save_video(&source, &path, &request(4), &options).await.unwrap();
    let decoded = host_frames(&VideoFile::open(&path).unwrap()).await;
    let original = host_frames(&source).await;
    let db = psnr(&original.data, &decoded.data);
    assert!(db >= 45.0, "PSNR {db:.1} dB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_report_what_was_written() {
    let dir = temp_dir("containers");
    let fps: Rational = "24000/1001".parse().unwrap();
    let frames = 25;
    // SVT-AV1 takes frames from 64×64.
    let source = pattern(64, 64, frames).fps(fps);
    for (file, options) in [
        ("a.mp4", VideoOptions::h264().preset("ultrafast")),
        ("a.mkv", VideoOptions::h265().preset("ultrafast")),
        ("a.mov", VideoOptions::prores()),
        ("a.webm", VideoOptions::vp9().crf(40).preset("realtime")),
        ("b.mkv", VideoOptions::av1().preset("12")),
    ] {
        let path = dir.join(file);
        save_video(&source, &path, &request(8), &options).await.unwrap();
        let probe = ffprobe(&path);
        let stream = video_stream(&probe);
        assert_eq!(stream["nb_read_frames"], frames.to_string(), "{file}: frames");
        assert_eq!(stream["r_frame_rate"], "24000/1001", "{file}: rate");
        assert_eq!(stream["avg_frame_rate"], "24000/1001", "{file}: average rate");
        let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
        let want = frames as f64 * 1001.0 / 24000.0;
        assert!((duration - want).abs() < 0.002, "{file}: duration {duration} vs {want}");
        assert_eq!(stream["color_primaries"], "bt709", "{file}");
        assert_eq!(stream["color_transfer"], "bt709", "{file}");
        let decoded = VideoFile::open(&path).unwrap();
        assert_eq!(decoded.info().unwrap().fps, fps, "{file}: fps read back");
        assert_eq!(decoded.fps(), fps);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_colour_tags() {
    let dir = temp_dir("tags");
    let path = dir.join("tagged.mp4");
    let options = VideoOptions::h264().metadata("title", "framestream test").metadata("comment", "é ✓");
    save_video(&pattern(32, 32, 3), &path, &request(3), &options).await.unwrap();
    let probe = ffprobe(&path);
    assert_eq!(probe["format"]["tags"]["title"], "framestream test");
    assert_eq!(probe["format"]["tags"]["comment"], "é ✓");
    let stream = video_stream(&probe);
    assert_eq!(stream["color_space"], "bt709");
    assert_eq!(stream["color_range"], "tv");
    assert_eq!(stream["pix_fmt"], "yuv420p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_copied_alongside() {
    let dir = temp_dir("audio");
    let audio = dir.join("tone.m4a");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=5", "-c:a", "aac", audio.to_str().unwrap()]);
    let path = dir.join("with-audio.mp4");
    let options = VideoOptions::h264().audio_from(&audio);
    save_video(&pattern(32, 32, 60), &path, &request(8), &options).await.unwrap();
    let probe = ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    let audio_stream = streams.iter().find(|s| s["codec_type"] == "audio").expect("an audio stream");
    assert_eq!(audio_stream["codec_name"], "aac");
    let duration: f64 = audio_stream["duration"].as_str().unwrap().parse().unwrap();
    assert!((1.9..=2.1).contains(&duration), "audio trimmed to the video: {duration}");
    // A container that cannot hold the audio refuses it and leaves nothing.
    let webm = dir.join("with-audio.webm");
    let options = VideoOptions::vp9().audio_from(&audio);
    let err = save_video(&pattern(32, 32, 4), &webm, &request(4), &options).await.unwrap_err();
    assert!(err.to_string().contains("audio"), "{err}");
    assert_nothing_left(&dir, &webm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_failures_are_clear_and_leave_nothing() {
    let dir = temp_dir("open-fail");
    let source = pattern(32, 32, 4);
    let cases: Vec<(PathBuf, VideoOptions, &str)> = vec![
        (dir.join("missing").join("x.mp4"), VideoOptions::h264(), "No such file"),
        (dir.join("x.mp4"), VideoOptions::ffv1(), "cannot hold"),
        (dir.join("x.webm"), VideoOptions::h264(), "cannot hold"),
        (dir.join("x.mp4"), VideoOptions::h264().pixel_format(PixelFormat::Gbrp), "cannot encode"),
        (dir.join("x.avi"), VideoOptions::h264(), "container"),
        (dir.join("x.mp4"), VideoOptions::h264().encoder_option("profile", "nonsense"), "encoder"),
    ];
    for (path, options, says) in cases {
        let err = save_video(&source, &path, &request(4), &options).await.unwrap_err();
        assert!(err.to_string().contains(says), "{}: {err}", path.display());
        assert_nothing_left(&dir, &path);
    }
    let odd = pattern(31, 17, 2);
    let err = save_video(&odd, dir.join("odd.mp4"), &request(2), &VideoOptions::h264()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidShape(_)), "{err}");
    assert!(err.to_string().contains("odd width"), "{err}");
    // 4:4:4 takes odd sizes.
    let options = VideoOptions::h264().pixel_format(PixelFormat::Yuv444p);
    save_video(&odd, dir.join("odd.mkv"), &request(2), &options).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_mid_stream_leave_nothing_and_keep_the_old_file() {
    let dir = temp_dir("mid-fail");
    let path = dir.join("out.mp4");
    // An error injected at frame 7.
    let failing = pattern(32, 32, 30).pipe(FailAt(7));
    let err = save_video(&failing, &path, &request(2), &VideoOptions::h264()).await.unwrap_err();
    assert!(err.to_string().contains("frame 7"), "{err}");
    assert_nothing_left(&dir, &path);
    // An encoder thread that panics.
    let options = VideoOptions::h264().panic_after_frames(5);
    let err = save_video(&pattern(32, 32, 30), &path, &request(2), &options).await.unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_nothing_left(&dir, &path);
    // NaN frames are refused by frame number.
    let poisoned = pattern(8, 8, 6).map("poison", |chunk| {
        if chunk.end_frame() <= 3 {
            return Ok(chunk);
        }
        let data = vec![f32::NAN; chunk.frames() * chunk.frame_len()];
        Chunk::from_host(chunk.device(), &data, chunk.shape(), chunk.first_frame())
    });
    match save_video(&poisoned, &path, &request(3), &VideoOptions::h264()).await {
        Err(Error::InvalidFrame { frame, .. }) => assert_eq!(frame, 3),
        other => panic!("expected InvalidFrame, got {other:?}"),
    }
    assert_nothing_left(&dir, &path);
    // An existing target survives all of it, and is only replaced when asked.
    std::fs::write(&path, b"keep").unwrap();
    let err = save_video(&pattern(32, 32, 3), &path, &request(2), &VideoOptions::h264()).await.unwrap_err();
    assert!(matches!(err, Error::OutputExists(_)));
    let overwrite = VideoOptions::h264().overwrite(true);
    assert!(save_video(&failing, &path, &request(2), &overwrite).await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    save_video(&pattern(32, 32, 3), &path, &request(2), &overwrite).await.unwrap();
    assert_eq!(video_stream(&ffprobe(&path))["nb_read_frames"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_aborted_save_leaves_nothing() {
    let dir = temp_dir("dropped");
    // The passthrough stage, dropped after two chunks.
    let path = dir.join("dropped.mp4");
    let video = pattern(32, 32, 100).pipe(SaveVideo::new(&path, VideoOptions::h264()));
    let mut stream = video.open(&request(4));
    for _ in 0..2 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(partial_files(&dir).len(), 1);
    drop(stream);
    assert_nothing_left(&dir, &path);
    // The sink, its task aborted mid-way.
    let path = dir.join("aborted.mp4");
    let target = path.clone();
    let (sender, mut events) = crate::common::progress();
    let req = request(2).with_progress(sender);
    let task = tokio::spawn(async move {
        save_video(&pattern(32, 32, 100_000), &target, &req, &VideoOptions::h264()).await
    });
    while let Some(e) = events.recv().await {
        if &*e.name == "save_video" && matches!(e.kind, EventKind::Progress { frames_done } if frames_done >= 6) {
            break;
        }
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_nothing_left(&dir, &path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_video_stage_passes_frames_through() {
    let dir = temp_dir("passthrough");
    let path = dir.join("copy.mkv");
    let source = pattern(24, 16, 9);
    let video = source.clone().pipe(SaveVideo::new(&path, VideoOptions::ffv1()));
    let passed = host_frames(&video).await;
    assert_eq!(passed, host_frames(&source).await);
    let saved = host_frames(&VideoFile::open(&path).unwrap()).await;
    let want = rgb8_reference(&passed.data, 3);
    let got: Vec<u8> = saved.data.iter().map(|v| (v * 255.0).round() as u8).collect();
    assert!(got == want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_files_replay_and_chunk_alike() {
    let dir = temp_dir("replay");
    let path = dir.join("clip.mp4");
    save_video(&pattern(40, 24, 13), &path, &request(5), &VideoOptions::h264()).await.unwrap();
    let file = VideoFile::open(&path).unwrap();
    let info = file.info().unwrap();
    assert_eq!((info.total_frames, info.estimated_frames), (None, Some(13)), "the header count is an estimate");
    let (_, whole) = crate::common::read_all(&file, 13).await;
    for n in [1, 2, 3, 7] {
        let (shapes, data) = crate::common::read_all(&file, n).await;
        assert!(shapes.iter().all(|s| s[0] <= n && s[0] > 0));
        assert!(data == whole, "chunks of {n}");
    }
}

/// FFmpeg's own decode of `path` (with its autorotation) as RGB bytes.
fn ffmpeg_rgb(path: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_metadata_is_honoured_as_ffmpeg_does() {
    let dir = temp_dir("rotation");
    let plain = dir.join("plain.mov");
    save_video(&pattern(40, 24, 2), &plain, &request(2), &VideoOptions::ffv1()).await.unwrap();
    let unrotated = host_frames(&VideoFile::open(&plain).unwrap()).await;
    for (rotate, turns) in [("90", 3), ("180", 2), ("270", 1)] {
        let rotated = dir.join(format!("rotated-{rotate}.mov"));
        let tag = format!("rotate={rotate}");
        ffmpeg(&["-i", plain.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", &tag, rotated.to_str().unwrap()]);
        let file = VideoFile::open(&rotated).unwrap();
        assert_eq!(file.quarter_turns(), turns, "rotate={rotate}");
        let info = file.info().unwrap();
        let want_size = if turns % 2 == 1 { (24, 40) } else { (40, 24) };
        assert_eq!((info.width, info.height), want_size, "rotate={rotate}");
        let got = host_frames(&file).await;
        assert_ne!(got.data, unrotated.data);
        let bytes: Vec<u8> = got.data.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert!(bytes == ffmpeg_rgb(&rotated), "rotate={rotate}: differs from FFmpeg's autorotation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_name_the_file_and_frame() {
    let dir = temp_dir("broken");
    // Missing, and not a video at all.
    let missing = dir.join("missing.mp4");
    let err = VideoFile::open(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.mp4"), "{err}");
    let text = dir.join("notes.mp4");
    std::fs::write(&text, "not a video").unwrap();
    let err = VideoFile::open(&text).unwrap_err();
    assert!(matches!(err, Error::Video { .. }) && err.to_string().contains("notes.mp4"), "{err}");

    let good = dir.join("good.mkv");
    let options = VideoOptions::h264().preset("ultrafast").encoder_option("g", "5");
    save_video(&pattern(64, 48, 40), &good, &request(8), &options).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // Garbage in the middle of the data.
    let corrupt = dir.join("corrupt.mkv");
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    for (i, b) in damaged[mid..mid + 2000].iter_mut().enumerate() {
        *b = (i * 73 % 251) as u8;
    }
    std::fs::write(&corrupt, &damaged).unwrap();
    let err = drain(&VideoFile::open(&corrupt).unwrap(), &request(8)).await.unwrap_err();
    match &err {
        Error::Video { path, frame: Some(_), .. } => assert_eq!(path, &corrupt),
        other => panic!("expected a video error with a frame, got {other:?}"),
    }

    // Cut short: an MP4 without its index cannot be opened; an MP4 that knows its frame
    // count but lost frames says how many it got.
    let mp4 = dir.join("good.mp4");
    save_video(&pattern(64, 48, 40), &mp4, &request(8), &options).await.unwrap();
    let cut = dir.join("cut.mp4");
    let mp4_bytes = std::fs::read(&mp4).unwrap();
    std::fs::write(&cut, &mp4_bytes[..mp4_bytes.len() / 2]).unwrap();
    let err = VideoFile::open(&cut).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("cut.mp4"), "{err}");
    let faststart = dir.join("faststart.mp4");
    ffmpeg(&["-i", mp4.to_str().unwrap(), "-c", "copy", "-movflags", "+faststart", faststart.to_str().unwrap()]);
    let fs_bytes = std::fs::read(&faststart).unwrap();
    let cut = dir.join("cut-faststart.mp4");
    std::fs::write(&cut, &fs_bytes[..fs_bytes.len() * 2 / 3]).unwrap();
    let err = drain(&VideoFile::open(&cut).unwrap(), &request(8)).await.unwrap_err();
    match &err {
        Error::Video { path, frame: Some(_), .. } => assert_eq!(path, &cut),
        other => panic!("expected a video error with a frame, got {other:?}"),
    }
}
