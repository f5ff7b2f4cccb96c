//! Fan-out and frames from outside: `Tee`, `channel`, `Opened` streams into sinks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{FailAt, device, host_frames, read_all, request, temp_dir};

/// A source that counts how often it is opened.
struct Counted {
    inner: TestPattern,
    opens: Arc<AtomicUsize>,
}

impl Source for Counted {
    fn name(&self) -> String {
        "counted".into()
    }
    fn info(&self) -> Result<StreamInfo> {
        self.inner.info()
    }
    fn stream(&self, request: &OpenRequest) -> FrameStream {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.inner.open(request)
    }
}

fn pattern(frames: u64) -> TestPattern {
    TestPattern::new(24, 16, frames).unwrap().seed(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sinks_from_one_run_equal_three_runs() {
    let dir = temp_dir("tee");
    let opens = Arc::new(AtomicUsize::new(0));
    let source = Counted { inner: pattern(11), opens: opens.clone() };
    let mut tee = Tee::open(&source, &request(3), 3, 2).unwrap();
    let [to_file, to_batch, to_drain]: [Opened; 3] = tee.branches().try_into().unwrap();
    let path = dir.join("tee.mkv");
    // Each sink with its own chunk size.
    let (r4, r2, r5, ffv1) = (request(4), request(2), request(5), VideoOptions::ffv1());
    let (saved, collected, drained) = tokio::join!(
        save_video(&to_file, &path, &r4, &ffv1),
        collect(&to_batch, &r2, 100),
        drain(&to_drain, &r5),
    );
    assert_eq!(opens.load(Ordering::SeqCst), 1, "the source ran once");
    assert_eq!((saved.unwrap().frames, drained.unwrap().frames), (11, 11));
    let once = host_frames(&pattern(11)).await;
    let batch = collected.unwrap().to_host().await.unwrap();
    assert_eq!((batch.shape, batch.first_frame), (once.shape, once.first_frame));
    let differ = batch.data.iter().zip(&once.data).position(|(a, b)| a != b);
    assert!(differ.is_none(), "the collected frames differ from value {differ:?}");
    let separate = dir.join("separate.mkv");
    save_video(&pattern(11), &separate, &request(4), &VideoOptions::ffv1()).await.unwrap();
    let decoded = |p| async move { host_frames(&VideoFile::open(p).unwrap()).await.data };
    assert!(decoded(path.clone()).await == decoded(separate.clone()).await, "the saved frames differ");
    assert!(tee.peak_buffered() <= 2, "peak {}", tee.peak_buffered());
    // A branch is consumed once.
    let err = drain(&to_drain, &request(5)).await.unwrap_err();
    assert!(err.to_string().contains("consumed once"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slowest_branch_sets_the_pace_and_a_dropped_one_releases_it() {
    let mut tee = Tee::open(&pattern(12), &request(2), 2, 2).unwrap();
    let [fast, slow]: [Opened; 2] = tee.branches().try_into().unwrap();
    let (fast_req, slow_req) = (request(2), request(2));
    let mut fast = fast.open(&fast_req);
    let mut slow = slow.open(&slow_req);
    let wait = Duration::from_millis(300);
    for _ in 0..2 {
        fast.next().await.unwrap().unwrap();
    }
    // Two chunks wait for the slow branch: the fast one cannot run ahead.
    assert!(tokio::time::timeout(wait, fast.next()).await.is_err(), "ran past the capacity");
    assert_eq!(tee.peak_buffered(), 2);
    slow.next().await.unwrap().unwrap();
    assert_eq!(fast.next().await.unwrap().unwrap().first_frame(), 4);
    // Dropped, the slow branch holds nothing back.
    drop(slow);
    let mut rest = 0;
    while let Some(chunk) = fast.next().await {
        rest += chunk.unwrap().frames();
    }
    assert_eq!(rest, 6);
    assert_eq!(tee.peak_buffered(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reaches_every_branch() {
    let failing = pattern(10).pipe(FailAt(5));
    let base = request(2);
    let mut tee = Tee::open(&failing, &base, 2, 3).unwrap();
    let [a, b]: [Opened; 2] = tee.branches().try_into().unwrap();
    // On the tee's own stream: no copies.
    let (r2, r3) = (base.clone(), base.clone().with_chunk_frames(3));
    let (a, b) = tokio::join!(drain(&a, &r2), collect(&b, &r3, 100));
    for err in [a.unwrap_err(), b.unwrap_err()] {
        assert!(matches!(err, Error::Shared(_)) && err.to_string().contains("frame 5"), "{err}");
    }
    assert!(Tee::open(&pattern(2), &request(2), 0, 1).is_err());
    assert!(Tee::open(&pattern(2), &request(2), 1, 0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_pushed_from_outside_are_saved_in_any_chunk_sizes() {
    let dir = temp_dir("channel");
    let device = device();
    let whole = host_frames(&pattern(9)).await;
    let info = pattern(9).info().unwrap();
    let (sender, frames) = channel(StreamInfo { total_frames: None, ..info.clone() }, 2);
    let frame_len = whole.frame_len();
    let producer = tokio::spawn(async move {
        // Chunks of 3, 1 and 5 frames, numbered as the sender likes.
        let mut at = 0;
        for n in [3, 1, 5] {
            let data = &whole.data[at * frame_len..(at + n) * frame_len];
            let chunk = Chunk::from_host(&device, data, [n, 16, 24, 3], 100).unwrap();
            sender.send(chunk).await.unwrap();
            at += n;
        }
    });
    let path = dir.join("pushed.mkv");
    let report = save_video(&frames, &path, &request(4), &VideoOptions::ffv1()).await.unwrap();
    producer.await.unwrap();
    assert_eq!(report.frames, 9);
    let saved = host_frames(&VideoFile::open(&path).unwrap()).await.data;
    let direct = dir.join("direct.mkv");
    save_video(&pattern(9), &direct, &request(4), &VideoOptions::ffv1()).await.unwrap();
    assert!(saved == host_frames(&VideoFile::open(&direct).unwrap()).await.data);

    // Regrouped to the consumer's size, consecutive from 0.
    let (sender, frames) = channel(StreamInfo { total_frames: None, ..info.clone() }, 1);
    let device = crate::common::device();
    let producer = tokio::spawn(async move {
        for _ in 0..3 {
            let chunk = Chunk::from_host(&device, &vec![0.5; 3 * 24 * 16 * 3], [3, 16, 24, 3], 0).unwrap();
            sender.send(chunk).await.unwrap();
        }
    });
    let (shapes, _) = read_all(&frames, 4).await;
    assert_eq!(shapes.iter().map(|s| s[0]).collect::<Vec<_>>(), [4, 4, 1]);
    producer.await.unwrap();
    // A sender learns that the consumer left.
    let (sender, frames) = channel(StreamInfo { total_frames: None, ..info }, 1);
    drop(frames);
    assert!(sender.is_closed());
    let chunk = Chunk::from_host(&crate::common::device(), &[0.5; 24 * 16 * 3], [1, 16, 24, 3], 0).unwrap();
    assert!(sender.send(chunk).await.is_err());
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_decoded_once_feeds_two_sinks() {
    // The decoder thread wakes the tee from outside the runtime, the case a lost wake-up hangs.
    let dir = temp_dir("tee-file");
    let path = dir.join("clip.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=1"])
        .args(["-c:v", "libx264", "-bf", "2"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let file = VideoFile::open(&path).unwrap();
    for capacity in [1, 3] {
        let base = request(4);
        let mut tee = Tee::open(&file, &base, 2, capacity).unwrap();
        let [a, b]: [Opened; 2] = tee.branches().try_into().unwrap();
        let (ra, rb) = (base.clone(), base.clone().with_chunk_frames(7));
        let both = async move {
            tokio::join!(async move { collect(&a, &ra, 100).await }, async move { drain(&b, &rb).await })
        };
        let (batch, drained) = tokio::time::timeout(Duration::from_secs(60), both).await.expect("the tee stalled");
        assert_eq!(drained.unwrap().frames, 30);
        let batch = batch.unwrap();
        assert_eq!(batch.frames.as_ref().unwrap().timestamps().map(<[i64]>::len), Some(30));
        // A collected file's frames make an evenly timed batch.
        let again = ImageBatch::from_chunk(batch.frames.unwrap());
        assert_eq!(drain(&again, &request(8)).await.unwrap().frames, 30);
    }
}
