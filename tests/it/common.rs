//! Helpers shared by the integration tests.

use std::path::Path;

use framestream::prelude::*;
use framestream::{HostFrames, StageId};
use futures::StreamExt;
use tokio::sync::mpsc;

pub fn device() -> Device {
    Device::wgpu().expect("a wgpu adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
}

pub fn request(chunk_frames: usize) -> OpenRequest {
    OpenRequest::new(&device()).with_chunk_frames(chunk_frames)
}

/// Opens `source` and reads every chunk back: (shape of each chunk, all frames).
pub async fn read_all(source: &impl Source, chunk_frames: usize) -> (Vec<[usize; 4]>, Vec<f32>) {
    let req = request(chunk_frames);
    let mut stream = source.open(&req);
    let mut shapes = Vec::new();
    let mut data = Vec::new();
    let mut next = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("a chunk");
        assert_eq!(chunk.first_frame(), next, "chunks are consecutive");
        next = chunk.end_frame();
        shapes.push(chunk.shape());
        data.extend(chunk.to_host().await.expect("read back").data);
    }
    (shapes, data)
}

/// All frames of `source` on the host.
pub async fn host_frames(source: &impl Source) -> HostFrames {
    let batch = collect(source, &request(4), 10_000).await.expect("collect");
    batch.to_host().await.expect("read back")
}

/// Hides the length of a source.
pub struct UnknownLength<S>(pub S);

impl<S: Source> Source for UnknownLength<S> {
    fn name(&self) -> String {
        "unknown_length".into()
    }
    fn info(&self) -> Result<StreamInfo> {
        Ok(StreamInfo { total_frames: None, ..self.0.info()? })
    }
    fn stream(&self, request: &OpenRequest) -> FrameStream {
        self.0.open(request)
    }
}

/// A stage that fails on the chunk holding frame `frame`.
pub struct FailAt(pub u64);

impl Stage for FailAt {
    fn name(&self) -> String {
        "fail_at".into()
    }
    fn apply(&self, upstream: FrameStream, _: &StreamInfo, _: &OpenRequest) -> FrameStream {
        let at = self.0;
        Box::pin(upstream.map(move |chunk| {
            let chunk = chunk?;
            if (chunk.first_frame()..chunk.end_frame()).contains(&at) {
                return Err(Error::stage("fail_at", format!("injected failure at frame {at}")));
            }
            Ok(chunk)
        }))
    }
}

pub fn progress() -> (ProgressSender, mpsc::UnboundedReceiver<Event>) {
    mpsc::unbounded_channel()
}

/// Every event received so far.
pub fn drain_events(receiver: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(e) = receiver.try_recv() {
        events.push(e);
    }
    events
}

/// Checks the lifecycle of every stage in `events` and returns (name, terminal) per stage in
/// order of appearance.
pub fn lifecycles(events: &[Event]) -> Vec<(String, EventKind)> {
    let mut order: Vec<StageId> = Vec::new();
    for e in events {
        if !order.contains(&e.stage) {
            order.push(e.stage);
        }
    }
    order
        .iter()
        .map(|id| {
            let mine: Vec<&Event> = events.iter().filter(|e| e.stage == *id).collect();
            let name = mine[0].name.to_string();
            assert!(
                matches!(mine[0].kind, EventKind::Started { .. }),
                "{name}: first event is Started, got {:?}",
                mine[0].kind
            );
            let terminals: Vec<usize> =
                (0..mine.len()).filter(|&i| mine[i].kind.is_terminal()).collect();
            assert_eq!(terminals.len(), 1, "{name}: exactly one terminal event in {mine:?}");
            assert_eq!(terminals[0], mine.len() - 1, "{name}: nothing after the terminal event");
            let mut done = 0;
            for e in &mine {
                if let EventKind::Progress { frames_done } = e.kind {
                    assert!(frames_done > done, "{name}: progress is monotonic");
                    done = frames_done;
                }
            }
            (name, mine[mine.len() - 1].kind.clone())
        })
        .collect()
}

/// A parsed safetensors file with one f32 tensor `frames`.
pub struct TensorFile {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub metadata: serde_json::Value,
}

pub fn read_tensor_file(path: &Path) -> TensorFile {
    let bytes = std::fs::read(path).expect("tensor file");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header length keeps the data aligned");
    let header: serde_json::Value =
        serde_json::from_str(std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end())
            .expect("header JSON");
    let t = &header["frames"];
    assert_eq!(t["dtype"], "F32");
    let shape: Vec<usize> =
        t["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let offsets: Vec<usize> =
        t["data_offsets"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let body = &bytes[8 + n..];
    assert_eq!(offsets, vec![0, body.len()], "data offsets cover the data exactly");
    assert_eq!(body.len(), shape.iter().product::<usize>() * 4);
    let data = body.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    TensorFile { shape, data, metadata: header["__metadata__"].clone() }
}

/// Files in `dir` whose name contains `.partial-`.
pub fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect()
}

/// A fresh empty directory for a test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("framestream-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file under `tests/fixtures/{family}/`.
pub fn fixture(family: &str, name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(family).join(name)
}

/// The latent stored as tensor `name` of a reference file.
pub fn latent_of(file: &framestream::model::WeightFile, name: &str) -> Latent {
    let t = file.tensor(name).unwrap();
    Latent::from_tensor(&t.shape, &t.data, None).unwrap()
}

pub fn max_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "frame counts differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The tensors of `file`, with `edit` applied (`None` removes one), written without metadata
/// as `name` in a fresh directory.
pub fn rewritten(
    file: &framestream::model::WeightFile,
    name: &str,
    edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>,
) -> std::path::PathBuf {
    let tensors: Vec<_> = file
        .names()
        .filter_map(|n| {
            let t = file.tensor(n).unwrap();
            edit(n, t.shape, t.data).map(|(s, d)| (n.to_string(), s, d))
        })
        .collect();
    let path = temp_dir(&format!("rewritten-{name}")).join(name);
    framestream::model::save_safetensors(&path, &tensors).unwrap();
    path
}

/// A video file's width, height and decoded frame count, as ffprobe reads them.
pub fn ffprobe_frames(path: &Path) -> (String, String, String) {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames,width,height"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<String> = text.trim().split(',').map(String::from).collect();
    (parts[0].clone(), parts[1].clone(), parts[2].clone())
}
