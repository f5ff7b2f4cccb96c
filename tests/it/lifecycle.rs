//! Progress events and cancellation.

use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{drain_events, lifecycles, progress, request, FailAt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_finishes_every_stage_once() {
    let (sender, mut receiver) = progress();
    let video = TestPattern::new(16, 8, 10)
        .unwrap()
        .resize(2.0, Filter::Bicubic)
        .preview(Preview::every(4));
    let report = drain(&video, &request(3).with_progress(sender)).await.unwrap();
    assert_eq!(report.frames, 10);
    let events = drain_events(&mut receiver);
    let stages = lifecycles(&events);
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["drain", "preview", "resize", "pattern"]);
    assert!(stages.iter().all(|(_, end)| *end == EventKind::Finished));
    for e in &events {
        if let EventKind::Started { total_frames } = e.kind {
            assert_eq!(total_frames, Some(10), "{}", e.name);
        }
    }
    let last_progress = events
        .iter()
        .filter(|e| &*e.name == "pattern")
        .filter_map(|e| match e.kind {
            EventKind::Progress { frames_done } => Some(frames_done),
            _ => None,
        })
        .next_back();
    assert_eq!(last_progress, Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_fails_downstream_and_cancels_upstream() {
    let (sender, mut receiver) = progress();
    let video = TestPattern::new(16, 8, 20).unwrap().pipe(FailAt(5)).resize(2.0, Filter::Bicubic);
    let err = drain(&video, &request(2).with_progress(sender)).await.unwrap_err();
    assert!(err.to_string().contains("injected failure at frame 5"), "{err}");
    let stages = lifecycles(&drain_events(&mut receiver));
    let ends: Vec<(&str, &EventKind)> = stages.iter().map(|(n, k)| (n.as_str(), k)).collect();
    assert!(matches!(ends[0], ("drain", EventKind::Failed { .. })));
    assert!(matches!(ends[1], ("resize", EventKind::Failed { .. })));
    assert!(matches!(ends[2], ("fail_at", EventKind::Failed { .. })));
    assert!(matches!(ends[3], ("pattern", EventKind::Cancelled)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_cancels_and_releases_device_memory() {
    let (sender, mut receiver) = progress();
    let req = request(4).with_progress(sender);
    let before = req.device().memory_usage().unwrap();
    let video = TestPattern::new(64, 48, 100).unwrap().resize(2.0, Filter::Lanczos3);
    let mut stream = video.open(&req);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stream.next().await.unwrap().unwrap());
    }
    let during = req.device().memory_usage().unwrap();
    assert!(during.bytes_in_use > before.bytes_in_use, "chunks occupy device memory");
    drop(held);
    drop(stream);
    req.device().sync().await.unwrap();
    let after = req.device().memory_usage().unwrap();
    assert_eq!(after.bytes_in_use, before.bytes_in_use, "all device memory released");
    let stages = lifecycles(&drain_events(&mut receiver));
    assert_eq!(stages.len(), 2);
    assert!(stages.iter().all(|(_, end)| *end == EventKind::Cancelled), "{stages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_sink_cancels_every_stage() {
    let (sender, mut receiver) = progress();
    let video = TestPattern::new(64, 36, 100_000).unwrap().resize(2.0, Filter::Bicubic);
    let req = request(2).with_progress(sender);
    let task = tokio::spawn(async move { drain(&video, &req).await });
    // Wait until frames flow, then abort the task mid-way.
    loop {
        match receiver.recv().await.unwrap().kind {
            EventKind::Progress { .. } => break,
            _ => continue,
        }
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let mut events = Vec::new();
    while let Some(e) = receiver.recv().await {
        events.push(e);
    }
    // The earlier events were consumed above; every stage still ends exactly once.
    let ends: Vec<&EventKind> = events.iter().map(|e| &e.kind).filter(|k| k.is_terminal()).collect();
    assert_eq!(ends.len(), 3, "{events:?}");
    assert!(ends.iter().all(|k| **k == EventKind::Cancelled));
}
