//! The command line, as a user runs it.

use std::process::Command;

use crate::common::{read_tensor_file, temp_dir};

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
        vec!["pattern", "--frames", "2", "--size", "8x8", "-o", "x.mp4"],
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
fn info_names_the_device() {
    let output = framestream().args(["--json", "info"]).output().unwrap();
    assert!(output.status.success());
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["cubecl"], "0.10.0");
    assert_eq!(info["device"]["runtime"], "wgpu");
    assert!(!info["device"]["adapter"].as_str().unwrap().is_empty());
}
