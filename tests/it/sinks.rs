//! Sinks: tensor files (atomic), collect, drain.

use framestream::prelude::*;

use crate::common::{
    FailAt, UnknownLength, host_frames, partial_files, read_tensor_file, request, temp_dir,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_file_round_trip() {
    let dir = temp_dir("tensor");
    let path = dir.join("frames.safetensors");
    let video = TestPattern::new(20, 12, 7).unwrap().fps("30000/1001".parse().unwrap());
    let report = write_tensor(&video, &path, &request(3), &Default::default()).await.unwrap();
    assert_eq!(report.frames, 7);
    assert_eq!(report.output.as_deref(), Some(path.as_path()));
    let file = read_tensor_file(&path);
    assert_eq!(file.shape, [7, 12, 20, 3]);
    assert_eq!(file.metadata["fps"], "30000/1001");
    assert_eq!(file.data, host_frames(&video).await.data);
    assert!(partial_files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_file_of_unknown_length_is_patched() {
    let dir = temp_dir("tensor-unknown");
    let path = dir.join("frames.safetensors");
    let video = UnknownLength(TestPattern::new(9, 5, 10).unwrap());
    write_tensor(&video, &path, &request(4), &Default::default()).await.unwrap();
    let file = read_tensor_file(&path);
    assert_eq!(file.shape, [10, 5, 9, 3]);
    assert_eq!(file.data, host_frames(&video).await.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_nothing() {
    let dir = temp_dir("tensor-fail");
    let path = dir.join("frames.safetensors");
    let video = TestPattern::new(16, 16, 20).unwrap().pipe(FailAt(9));
    let err = write_tensor(&video, &path, &request(4), &Default::default()).await.unwrap_err();
    assert!(err.to_string().contains("frame 9"), "{err}");
    assert!(!path.exists());
    assert!(partial_files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_frames_are_refused() {
    let dir = temp_dir("tensor-nan");
    let path = dir.join("frames.safetensors");
    let video = TestPattern::new(4, 4, 6).unwrap().map("poison", |chunk| {
        if chunk.first_frame() == 0 {
            return Ok(chunk);
        }
        let mut data = vec![0.5f32; chunk.frames() * chunk.frame_len()];
        data[chunk.frame_len() + 1] = f32::NAN;
        Chunk::from_host(chunk.device(), &data, chunk.shape(), chunk.first_frame())
    });
    match write_tensor(&video, &path, &request(2), &Default::default()).await {
        Err(Error::InvalidFrame { frame, .. }) => assert_eq!(frame, 3),
        other => panic!("expected InvalidFrame, got {other:?}"),
    }
    assert!(!path.exists());
    assert!(partial_files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_target_survives_unless_overwritten() {
    let dir = temp_dir("tensor-exists");
    let path = dir.join("frames.safetensors");
    std::fs::write(&path, b"keep me").unwrap();
    let video = TestPattern::new(4, 4, 2).unwrap();
    let err = write_tensor(&video, &path, &request(2), &Default::default()).await.unwrap_err();
    assert!(matches!(err, Error::OutputExists(_)));
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    // A failing run with overwrite set leaves the old file too.
    let failing = video.clone().pipe(FailAt(1));
    let options = TensorFileOptions { overwrite: true };
    assert!(write_tensor(&failing, &path, &request(1), &options).await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    write_tensor(&video, &path, &request(2), &options).await.unwrap();
    assert_eq!(read_tensor_file(&path).shape, [2, 4, 4, 3]);
    assert!(partial_files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_nothing() {
    let dir = temp_dir("tensor-cancel");
    let path = dir.join("frames.safetensors");
    let video = TestPattern::new(64, 64, 100_000).unwrap();
    let (sender, mut events) = crate::common::progress();
    let req = request(2).with_progress(sender);
    let target = path.clone();
    let task = tokio::spawn(async move {
        write_tensor(&video, &target, &req, &Default::default()).await
    });
    // Wait until some frames were written.
    while let Some(e) = events.recv().await {
        if &*e.name == "write_tensor" && matches!(e.kind, EventKind::Progress { frames_done } if frames_done >= 4) {
            break;
        }
    }
    assert_eq!(partial_files(&dir).len(), 1, "the output is written under a partial name");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!path.exists());
    assert!(partial_files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_a_clear_error() {
    let path = temp_dir("tensor-nodir").join("missing").join("x.safetensors");
    let err = write_tensor(&TestPattern::new(4, 4, 1).unwrap(), &path, &request(1), &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_guards_its_frame_limit() {
    let video = TestPattern::new(6, 4, 10).unwrap();
    let batch = collect(&video, &request(3), 10).await.unwrap();
    assert_eq!(batch.frames.as_ref().unwrap().shape(), [10, 4, 6, 3]);
    assert_eq!(batch.report.frames, 10);
    assert!(matches!(collect(&video, &request(3), 9).await, Err(Error::FrameLimit { limit: 9 })));
    let unknown = UnknownLength(video);
    assert!(matches!(collect(&unknown, &request(3), 9).await, Err(Error::FrameLimit { .. })));
    let empty = collect(&TestPattern::new(6, 4, 0).unwrap(), &request(3), 9).await.unwrap();
    assert!(empty.frames.is_none());
    assert_eq!(empty.to_host().await.unwrap().shape, [0, 4, 6, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_counts_frames() {
    let report = drain(&TestPattern::new(8, 8, 13).unwrap(), &request(5)).await.unwrap();
    assert_eq!(report.frames, 13);
    assert_eq!(report.output, None);
}
