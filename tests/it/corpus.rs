//! Files as real tools write them, made by the `ffmpeg` CLI: each is decoded by `VideoFile`
//! and compared with FFmpeg's own decode (frame count, timestamps, pixels), then transcoded.

use std::path::{Path, PathBuf};
use std::process::Command;

use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{request, temp_dir};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One field of every video frame as `ffprobe` prints it (`N/A` when the frame has none).
fn ffprobe_frames(path: &Path, field: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", &format!("frame={field}")])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().filter(|l| !l.is_empty()).map(|l| l.trim_end_matches(',').to_string()).collect()
}

/// The video frames' timestamps as FFmpeg presents them (`None`: it has none).
fn ffprobe_timestamps(path: &Path) -> Vec<Option<i64>> {
    ffprobe_frames(path, "best_effort_timestamp").iter().map(|t| t.parse().ok()).collect()
}

/// The video frames' times in seconds, as written.
fn ffprobe_seconds(path: &Path) -> Vec<f64> {
    ffprobe_frames(path, "best_effort_timestamp_time").iter().map(|t| t.parse().unwrap()).collect()
}

/// FFmpeg's decode as values in [0, 1]: 8- or 16-bit RGB(A), converted with the flags the
/// decoder thread uses.
fn ffmpeg_decode(path: &Path, channels: usize, deep: bool, decoder: Option<&str>) -> Vec<f32> {
    let pix_fmt = match (channels, deep) {
        (3, false) => "rgb24",
        (4, false) => "rgba",
        (3, true) => "rgb48le",
        _ => "rgba64le",
    };
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error"]);
    if let Some(decoder) = decoder {
        command.args(["-c:v", decoder]);
    }
    let out = command
        .arg("-i")
        .arg(path)
        .args(["-sws_flags", "neighbor+accurate_rnd+full_chroma_int+bitexact"])
        .args(["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    match deep {
        false => out.stdout.iter().map(|&b| f32::from(b) / 255.0).collect(),
        true => out.stdout.chunks_exact(2).map(|b| f32::from(u16::from_le_bytes([b[0], b[1]])) / 65535.0).collect(),
    }
}

struct Decoded {
    info: StreamInfo,
    data: Vec<f32>,
    timestamps: Vec<i64>,
    frames: usize,
}

async fn decode(file: &VideoFile) -> Decoded {
    let info = file.info().unwrap();
    let req = request(4);
    let mut stream = file.open(&req);
    let (mut data, mut timestamps, mut frames) = (Vec::new(), Vec::new(), 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{}: {e}", file.path().display()));
        timestamps.extend_from_slice(chunk.timestamps().expect("a file's frames are timed"));
        frames += chunk.frames();
        data.extend(chunk.to_host().await.unwrap().data);
    }
    Decoded { info, data, timestamps, frames }
}

/// One file of the corpus: what it is and how FFmpeg writes it.
struct Case {
    name: &'static str,
    file: &'static str,
    make: &'static [&'static str],
    /// Samples above 8 bits (compared at 16 bits).
    deep: bool,
    /// The decoder FFmpeg needs to see what we see (alpha in VP9).
    decoder: Option<&'static str>,
    interlaced: bool,
    /// The estimate is exact (no edit list, a count or duration in the header).
    estimate_exact: bool,
}

/// An 8-bit progressive file whose header tells its length.
const PLAIN: Case = Case {
    name: "",
    file: "",
    make: &[],
    deep: false,
    decoder: None,
    interlaced: false,
    estimate_exact: true,
};

const CASES: &[Case] = &[
    Case {
        name: "trimmed by stream copy (edit list, B-frames)",
        file: "trimmed.mp4",
        make: &["-ss", "1.3", "-i", "{full}", "-c", "copy"],
        estimate_exact: false,
        ..PLAIN
    },
    Case {
        name: "variable frame rate",
        file: "vfr.mp4",
        make: &[
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=2",
            "-vf", "select='lt(n\\,10)+not(mod(n\\,3))'", "-fps_mode", "vfr", "-c:v", "libx264", "-bf", "2",
        ],
        ..PLAIN
    },
    Case {
        name: "interlaced MPEG-2",
        file: "interlaced.mpg",
        make: &[
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=1",
            "-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1", "-q:v", "2",
        ],
        interlaced: true,
        estimate_exact: false,
        ..PLAIN
    },
    Case {
        name: "animated GIF",
        file: "animated.gif",
        make: &["-f", "lavfi", "-i", "testsrc2=size=50x30:rate=10:duration=1"],
        ..PLAIN
    },
    Case {
        name: "odd-size 10-bit ProRes 4:2:2",
        file: "odd.mov",
        make: &[
            "-f", "lavfi", "-i", "testsrc=size=63x35:rate=24:duration=0.5",
            "-c:v", "prores_ks", "-profile:v", "2", "-pix_fmt", "yuv422p10le",
        ],
        deep: true,
        ..PLAIN
    },
    Case {
        name: "MKV without a frame count or duration (written to a pipe)",
        file: "piped.mkv",
        make: &[
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=1",
            "-c:v", "libx264", "-f", "matroska", "pipe:1",
        ],
        estimate_exact: false,
        ..PLAIN
    },
    Case {
        name: "rotated phone-style MP4",
        file: "rotated.mp4",
        // FFmpeg writes the display matrix when it copies the stream.
        make: &["-i", "{full}", "-c", "copy", "-metadata:s:v:0", "rotate=90"],
        ..PLAIN
    },
    Case {
        name: "HDR 10-bit HEVC",
        file: "hdr.mp4",
        make: &[
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=1",
            "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020",
            "-color_trc", "smpte2084", "-colorspace", "bt2020nc", "-x265-params", "log-level=error",
        ],
        deep: true,
        ..PLAIN
    },
    Case {
        name: "12-bit HEVC 4:4:4 in MKV",
        file: "deep.mkv",
        make: &[
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=0.3",
            "-c:v", "libx265", "-pix_fmt", "yuv444p12le", "-x265-params", "log-level=error",
        ],
        deep: true,
        ..PLAIN
    },
    Case {
        name: "VP9 with alpha",
        file: "alpha.webm",
        make: &[
            "-f", "lavfi", "-i", "testsrc2=size=48x32:rate=10:duration=1,format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='X*5'",
            "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p",
        ],
        decoder: Some("libvpx-vp9"),
        ..PLAIN
    },
];

/// Writes the case's file with the `ffmpeg` CLI.
fn make(dir: &Path, case: &Case, full: &Path) -> PathBuf {
    let path = dir.join(case.file);
    let full = full.to_str().unwrap();
    let mut args: Vec<&str> = case.make.iter().map(|&a| if a == "{full}" { full } else { a }).collect();
    if args.last() == Some(&"pipe:1") {
        // Not seekable: the muxer cannot go back to write a duration or an index.
        args.pop();
        let out = Command::new("ffmpeg").args(["-v", "error"]).args(&args).arg("-").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&path, out.stdout).unwrap();
    } else {
        args.push(path.to_str().unwrap());
        ffmpeg(&args);
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_world_files_decode_as_ffmpeg_decodes_them_and_transcode() {
    let dir = temp_dir("corpus");
    // The source of the trimmed clip: 3 s at 25 fps, a keyframe a second, B-frames.
    let full = dir.join("full.mp4");
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=3",
        "-c:v", "libx264", "-g", "25", "-bf", "2", full.to_str().unwrap(),
    ]);
    for case in CASES {
        let path = make(&dir, case, &full);
        let file = VideoFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = decode(&file).await;
        let want_pts = ffprobe_timestamps(&path);
        assert_eq!(got.frames, want_pts.len(), "{}: frame count", case.name);
        // A frame FFmpeg leaves untimed comes one nominal frame after the one before.
        let time_base = got.info.time_base.expect("a file's stream is timed");
        let step = (1.0 / (got.info.fps.as_f64() * time_base.as_f64())).round() as i64;
        let want_pts: Vec<i64> = want_pts.iter().scan(0, |last, t| {
            *last = t.unwrap_or(*last + step);
            Some(*last)
        }).collect();
        assert_eq!(got.timestamps, want_pts, "{}: timestamps", case.name);
        assert_eq!(file.interlaced(), case.interlaced, "{}: interlaced flag", case.name);
        assert_eq!(got.info.total_frames, None, "{}: a file promises no count", case.name);
        if case.estimate_exact {
            assert_eq!(got.info.estimated_frames, Some(got.frames as u64), "{}: estimate", case.name);
        }
        let want = ffmpeg_decode(&path, got.info.channels, case.deep, case.decoder);
        assert_eq!(got.data.len(), want.len(), "{}: decoded size", case.name);
        let worst = got.data.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst <= 1.0 / 255.0, "{}: pixels differ from FFmpeg's by up to {worst}", case.name);

        // Transcoded, every frame arrives at its time (4:4:4 takes the odd size).
        let out = dir.join(format!("{}.out.mp4", case.file));
        let options = VideoOptions::h264().preset("ultrafast").pixel_format(PixelFormat::Yuv444p);
        let report = save_video(&file, &out, &request(4), &options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(report.frames, got.frames as u64, "{}: transcoded frames", case.name);
        let input: Vec<f64> = got.timestamps.iter().map(|&t| t as f64 * time_base.as_f64()).collect();
        let output = ffprobe_seconds(&out);
        assert_eq!(output.len(), input.len(), "{}: frames in the transcode", case.name);
        for (i, (a, b)) in input.iter().zip(&output).enumerate() {
            assert!((b - (a - input[0])).abs() < 1e-3, "{}: frame {i} at {b} s, was {a} s", case.name);
        }
    }
    // The channel counts the files hold.
    let channels = |file: &str| VideoFile::open(dir.join(file)).unwrap().info().unwrap().channels;
    assert_eq!((channels("alpha.webm"), channels("animated.gif"), channels("hdr.mp4")), (4, 4, 3));
    assert_eq!(VideoFile::open(dir.join("rotated.mp4")).unwrap().quarter_turns(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_rate_file_resamples_to_a_constant_rate_by_timestamp() {
    let dir = temp_dir("cfr");
    let vfr = make(&dir, CASES.iter().find(|c| c.file == "vfr.mp4").unwrap(), Path::new(""));
    let file = VideoFile::open(&vfr).unwrap();
    let input = decode(&file).await;
    let seconds = ffprobe_seconds(&vfr);
    let out = dir.join("cfr.mkv");
    let options = VideoOptions::ffv1().fps_mode(FpsMode::Cfr).fps(Rational::new(10, 1).unwrap());
    save_video(&file, &out, &request(4), &options).await.unwrap();
    let output = decode(&VideoFile::open(&out).unwrap()).await;
    // The last frame lasts one frame at the file's average rate.
    let end = seconds.last().unwrap() + 1.0 / input.info.fps.as_f64();
    assert_eq!(output.frames, (end * 10.0 - 0.5).ceil() as usize, "frames of 0.1 s up to {end} s");
    let times = ffprobe_seconds(&out);
    for (n, t) in times.iter().enumerate() {
        assert!((t - n as f64 / 10.0).abs() < 1e-3, "frame {n} at {t} s");
    }
    // Frame n shows the input frame on screen at its middle.
    let len = input.data.len() / input.frames;
    for n in 0..output.frames {
        let middle = (n as f64 + 0.5) / 10.0;
        let shown = seconds.iter().rposition(|&t| t <= middle).unwrap();
        let (got, want) = (&output.data[n * len..(n + 1) * len], &input.data[shown * len..(shown + 1) * len]);
        assert!(got == want, "output frame {n} is not input frame {shown}");
    }
}

#[test]
fn a_header_claiming_huge_frames_is_refused_before_anything_is_read() {
    let dir = temp_dir("huge-header");
    let path = dir.join("huge.y4m");
    std::fs::write(&path, b"YUV4MPEG2 W17000 H100 F30:1 Ip A1:1 C444\nFRAME\n\x10\x10\x10").unwrap();
    let err = VideoFile::open(&path).map(|_| ()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("huge.y4m") && text.contains("17000x100") && text.contains("16384"), "{text}");
}

/// Resident memory of this process, from /proc.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn decoding_a_file_again_and_again_leaks_nothing() {
    // Measured in a process of its own: the other tests of this binary allocate meanwhile.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["corpus::decoding_leak_probe", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run alone, in a process of its own, by decoding_a_file_again_and_again_leaks_nothing"]
fn decoding_leak_probe() {
    // ~0.5 MB a packet: a packet leaked per read (the fuzzer found one) shows as ~15 MB a run.
    let dir = temp_dir("leak");
    let path = dir.join("noisy.mkv");
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30:duration=1,noise=alls=60:allf=t",
        "-c:v", "ffv1", path.to_str().unwrap(),
    ]);
    let packets = std::fs::metadata(&path).unwrap().len();
    assert!(packets > 8 << 20, "the file is {packets} bytes");
    for _ in 0..2 {
        assert_eq!(framestream::video::decode_on_host(&path, 4).unwrap(), 30);
    }
    let before = resident_bytes();
    for _ in 0..3 {
        framestream::video::decode_on_host(&path, 4).unwrap();
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < packets / 2, "three decodes of a {packets}-byte file grew memory by {grown} bytes");
}
