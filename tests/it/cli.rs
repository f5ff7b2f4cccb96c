//! The command line, as a user runs it.

use std::process::Command;

use crate::common::{ffprobe_frames, read_tensor_file, temp_dir};

fn framestream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framestream"))
}

#[test]
fn pattern_writes_a_resized_tensor_file() {
    let dir = temp_dir("cli-pattern");
    let out = dir.join("x.safetensors");
    let status = framestream()
        .args(["-q", "pattern", "--frames", "24", "--size", "32x18", "--scale", "2", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(read_tensor_file(&out).shape, [24, 36, 64, 3]);
    // Refuses to replace it without --overwrite.
    let again = framestream()
        .args(["-q", "pattern", "--frames", "2", "--size", "8x8", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn json_events_are_one_object_per_line() {
    let dir = temp_dir("cli-json");
    let out = dir.join("x.safetensors");
    let output = framestream()
        .args(["--json", "pattern", "--frames", "6", "--size", "16x8", "--chunk-frames", "4"])
        .args(["--filter", "bicubic", "--scale", "0.5", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "started").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "finished").count(), 3);
    let done = lines.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["frames"], 6);
    assert_eq!((done["width"].as_u64(), done["height"].as_u64()), (Some(8), Some(4)));
}

#[test]
fn bad_arguments_fail_cleanly() {
    let dir = temp_dir("cli-bad");
    for args in [
        vec!["pattern", "--frames", "2", "--size", "0x8", "-o", "x.safetensors"],
        vec!["pattern", "--frames", "2", "--size", "8x8", "--fps", "abc", "-o", "x.safetensors"],
        vec!["pattern", "--frames", "2", "--size", "8x8", "-o", "x.avi"],
        vec!["pattern", "--frames", "2", "--size", "9x8", "-o", "x.mp4"],
        vec!["pattern", "--frames", "2", "--size", "8x8", "--codec", "mpeg2", "-o", "x.mp4"],
        vec!["pattern", "--frames", "2", "--size", "8x8", "--bitrate", "fast", "-o", "x.mp4"],
        vec!["transcode", "missing.mp4", "-o", "y.mp4"],
        vec!["pattern", "--frames", "2", "--size", "8x8", "--chunk-frames", "0", "-o", "y.safetensors"],
        vec!["--device", "tpu", "info"],
    ] {
        let output = framestream().current_dir(&dir).args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "nothing written");
}

#[test]
fn pattern_transcode_and_upscale_write_videos() {
    let dir = temp_dir("cli-video");
    let mp4 = dir.join("pattern.mp4");
    let status = framestream()
        .args(["-q", "pattern", "--frames", "12", "--size", "32x18", "--scale", "2", "--crf", "20"])
        .args(["--preset", "ultrafast", "-o"])
        .arg(&mp4)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(ffprobe_frames(&mp4), ("64".into(), "36".into(), "12".into()));

    let mkv = dir.join("lossless.mkv");
    let status = framestream().args(["-q", "transcode"]).arg(&mp4).args(["--codec", "ffv1", "-o"]).arg(&mkv).status().unwrap();
    assert!(status.success());
    assert_eq!(ffprobe_frames(&mkv), ("64".into(), "36".into(), "12".into()));

    // 12 frames at 30 fps resampled to 15 fps: every other frame, 0.4 s either way.
    let half = dir.join("half-rate.mp4");
    let status = framestream()
        .args(["-q", "transcode"])
        .arg(&mp4)
        .args(["--fps-mode", "cfr", "--out-fps", "15", "-o"])
        .arg(&half)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(ffprobe_frames(&half), ("64".into(), "36".into(), "6".into()));
    let bad = framestream().args(["-q", "transcode"]).arg(&mp4).args(["--fps-mode", "vfr", "-o"]).arg(dir.join("x.mp4")).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("passthrough, cfr"));

    let webm = dir.join("small.webm");
    let status = framestream()
        .args(["-q", "upscale"])
        .arg(&mkv)
        .args(["--scale", "0.5", "--filter", "bicubic", "--codec", "vp9", "--metadata", "title=t", "-o"])
        .arg(&webm)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(ffprobe_frames(&webm), ("32".into(), "18".into(), "12".into()));

    let tensor = dir.join("frames.safetensors");
    let status = framestream().args(["-q", "upscale"]).arg(&webm).args(["--scale", "1", "-o"]).arg(&tensor).status().unwrap();
    assert!(status.success());
    assert_eq!(read_tensor_file(&tensor).shape, [12, 18, 32, 3]);
    // With a model, tiled, in f16.
    let model = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upscale/compact_x2.safetensors");
    let upscaled = dir.join("model.mkv");
    let status = framestream()
        .args(["-q", "upscale"])
        .arg(&webm)
        .arg("--model")
        .arg(&model)
        .args(["--tile", "12", "--overlap", "2", "--blend", "feather", "--upscale-precision", "f16", "--codec", "ffv1", "-o"])
        .arg(&upscaled)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(ffprobe_frames(&upscaled), ("64".into(), "36".into(), "12".into()));
    let wrong_scale = framestream()
        .args(["-q", "upscale"])
        .arg(&webm)
        .arg("--model")
        .arg(&model)
        .args(["--scale", "4", "-o"])
        .arg(dir.join("never.mkv"))
        .output()
        .unwrap();
    assert!(!wrong_scale.status.success());
    assert!(String::from_utf8_lossy(&wrong_scale.stderr).contains("upscales by 2"));
    // Never the input as the output.
    let same = framestream().args(["-q", "transcode"]).arg(&mkv).args(["--overwrite", "-o"]).arg(&mkv).output().unwrap();
    assert!(!same.status.success());
}

#[test]
fn info_names_the_device() {
    let output = framestream().args(["--json", "info"]).output().unwrap();
    assert!(output.status.success());
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["cubecl"], "0.10.0");
    assert_eq!(info["device"]["runtime"], "wgpu");
    assert!(!info["device"]["adapter"].as_str().unwrap().is_empty());
}

#[test]
fn decode_writes_the_reference_frames_and_upscales_them() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ltx");
    let dir = temp_dir("cli-decode");
    let out = dir.join("x.safetensors");
    let status = framestream()
        .args(["-q", "decode", "--noise-scale", "0", "--chunk-frames", "4", "--vae"])
        .arg(fixtures.join("v2.safetensors"))
        .arg("--latent")
        .arg(fixtures.join("v2.latent"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let got = read_tensor_file(&out);
    let want = framestream::model::WeightFile::open(fixtures.join("v2-expected.safetensors"))
        .unwrap()
        .tensor("frames")
        .unwrap();
    assert_eq!(got.shape, want.shape);
    let err = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(err < 1e-4, "max error {err}");
    // Decoded, upscaled ×2 and encoded as a video.
    let video = dir.join("x.mp4");
    let output = framestream()
        .args(["-q", "decode", "--scale", "2", "--padding", "reflect", "--vae"])
        .arg(fixtures.join("v2-diffusers"))
        .arg("--latent")
        .arg(fixtures.join("v2.latent"))
        .arg("-o")
        .arg(&video)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(ffprobe_frames(&video), ("192".into(), "128".into(), "9".into()));
    // A latent that does not fit the VAE: a clear error, no output.
    let bad = dir.join("bad.mp4");
    let output = framestream()
        .args(["-q", "decode", "--vae"])
        .arg(fixtures.join("v0.safetensors"))
        .arg("--latent")
        .arg(fixtures.join("v2-expected.safetensors"))
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("several 5-D tensors"));
    assert!(!bad.exists());
}

#[test]
fn decode_says_which_vae_it_recognised_and_what_it_decodes_to() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ltx");
    let dir = temp_dir("cli-decode-ltx2");
    let reference = framestream::model::WeightFile::open(fixtures.join("v23-expected.safetensors")).unwrap();
    let latent = reference.tensor("latent").unwrap();
    let latent_path = dir.join("v23.safetensors");
    framestream::model::save_safetensors(&latent_path, &[("samples".into(), latent.shape, latent.data)]).unwrap();
    let out = dir.join("x.safetensors");
    let output = framestream()
        .args(["--json", "decode", "--chunk-frames", "5", "--vae"])
        .arg(fixtures.join("v23-diffusers"))
        .arg("--latent")
        .arg(&latent_path)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let info = lines.iter().position(|l| l["event"] == "info").expect("an info event");
    let message = lines[info]["message"].as_str().unwrap();
    assert!(message.starts_with("LTX-2.3-like VAE") && message.contains("17 frames of 64×64"), "{message}");
    let first_progress = lines.iter().position(|l| l["event"] == "progress").unwrap();
    assert!(info < first_progress, "said before decoding");
    let want = reference.tensor("frames").unwrap();
    let got = read_tensor_file(&out);
    assert_eq!(got.shape, want.shape);
    let err = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(err < 1e-4, "max error {err}");
    // For people, on stderr, even where it is not a terminal (no progress bars drawn).
    let output = framestream()
        .args(["decode", "--vae"])
        .arg(fixtures.join("v23.safetensors"))
        .arg("--latent")
        .arg(&latent_path)
        .arg("-o")
        .arg(dir.join("y.safetensors"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ltx-decode: LTX-2.3-like VAE") && stderr.contains("→ 17 frames of 64×64"), "{stderr}");
}

#[test]
fn decode_tells_a_wan_vae_from_its_file() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wan");
    let dir = temp_dir("cli-decode-wan");
    let out = dir.join("x.safetensors");
    let output = framestream()
        .args(["--json", "decode", "--chunk-frames", "4", "--vae"])
        .arg(fixtures.join("w21.pth"))
        .arg("--latent")
        .arg(fixtures.join("w21.latent"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("Wan 2.1 VAE") && stdout.contains("9 frames of 24×16"), "{stdout}");
    let want = framestream::model::WeightFile::open(fixtures.join("w21-expected.safetensors")).unwrap().tensor("frames").unwrap();
    let got = read_tensor_file(&out);
    assert_eq!(got.shape, want.shape);
    let err = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(err < 1e-4, "max error {err}");
    // Wan 2.2 from a diffusers folder, upscaled ×2 and encoded at the model's 24 fps.
    let reference = framestream::model::WeightFile::open(fixtures.join("w22-expected.safetensors")).unwrap();
    let latent = reference.tensor("latent").unwrap();
    let latent_path = dir.join("w22.safetensors");
    framestream::model::save_safetensors(&latent_path, &[("samples".into(), latent.shape, latent.data)]).unwrap();
    let video = dir.join("x.mp4");
    let output = framestream()
        .args(["-q", "decode", "--scale", "2", "--vae"])
        .arg(fixtures.join("w22-diffusers"))
        .arg("--latent")
        .arg(&latent_path)
        .arg("-o")
        .arg(&video)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(ffprobe_frames(&video), ("96".into(), "64".into(), "9".into()));
    // LTX-only options are refused for Wan, with nothing written.
    let bad = dir.join("bad.mp4");
    let output = framestream()
        .args(["-q", "decode", "--padding", "reflect", "--vae"])
        .arg(fixtures.join("w21.safetensors"))
        .arg("--latent")
        .arg(fixtures.join("w21.latent"))
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("zeros"));
    assert!(!bad.exists());
}

/// Frame rate (as ffprobe writes it) and frame count of a video's first stream.
fn ffprobe_rate(path: &std::path::Path) -> (String, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=r_frame_rate,nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (rate, frames) = text.trim().split_once(',').unwrap();
    (rate.to_string(), frames.to_string())
}

#[test]
fn interpolation_multiplies_frames_and_rate_in_the_written_file() {
    let dir = temp_dir("cli-interpolate");
    let rife = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rife/v46.safetensors");
    let mp4 = dir.join("pattern.mp4");
    let status = framestream()
        .args(["-q", "pattern", "--frames", "8", "--size", "48x32", "--fps", "24", "--preset", "ultrafast", "-o"])
        .arg(&mp4)
        .status()
        .unwrap();
    assert!(status.success());
    let tripled = dir.join("tripled.mkv");
    let out = framestream()
        .args(["-q", "transcode"])
        .arg(&mp4)
        .args(["--interpolate", "3", "--rife"])
        .arg(&rife)
        .args(["--codec", "ffv1", "-o"])
        .arg(&tripled)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ffprobe_rate(&tripled), ("72/1".into(), "22".into()));

    // Interpolation before or after upscaling, as the options come: the outer stage starts first.
    for (args, order) in [
        (["--rife", "R", "--scale", "2"], ["upscale", "interpolate"]),
        (["--scale", "2", "--rife", "R"], ["interpolate", "upscale"]),
    ] {
        let args: Vec<std::ffi::OsString> = args.iter().map(|a| if *a == "R" { rife.clone().into() } else { a.into() }).collect();
        let out = framestream().args(["--json", "upscale"]).arg(&mp4).args(&args).arg("-o").arg(dir.join("x.safetensors")).arg("--overwrite").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let started: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "started")
            .map(|e| e["name"].as_str().unwrap_or_default().to_string())
            .filter(|s| order.contains(&s.as_str()))
            .collect();
        assert_eq!(started, order, "{args:?}");
        assert_eq!(read_tensor_file(&dir.join("x.safetensors")).shape, [15, 64, 96, 3]);
    }
    let out = framestream().args(["-q", "transcode"]).arg(&mp4).args(["--interpolate", "2", "-o"]).arg(dir.join("y.mkv")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interpolate needs a model"));
}
