//! Pipelines never block the async runtime that drives them: device work runs on the lanes'
//! threads, so a single-threaded runtime keeps serving its other tasks, a timeout fires on
//! time, and device streams are reused across jobs.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use framestream::model::esrgan::UpscaleModel;
use framestream::MAX_LANES;
use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{device, request, temp_dir};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// An RRDB ×4 upscale of `frames` 48×32 frames (seconds of work on lavapipe).
fn upscale(frames: u64) -> impl Source + Clone {
    let model = UpscaleModel::load(fixture("upscale/rrdb_x4_old.safetensors")).unwrap();
    TestPattern::new(48, 32, frames).unwrap().pipe(Upscale::model(model))
}

/// `work`'s output, and the worst lateness of a 10 ms interval ticking on the same runtime
/// while it ran.
async fn worst_tick_lateness<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let worst = Cell::new(Duration::ZERO);
    let ticker = async {
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        loop {
            let due = interval.tick().await;
            worst.set(worst.get().max(Instant::now().saturating_duration_since(due.into_std())));
        }
    };
    tokio::pin!(ticker);
    let out = tokio::select! {
        biased;
        () = &mut ticker => unreachable!("the ticker never ends"),
        out = work => out,
    };
    // Ticks missed while `work` last ran are counted now.
    let _ = tokio::time::timeout(Duration::from_millis(15), &mut ticker).await;
    (out, worst.get())
}

#[test]
fn a_current_thread_runtime_keeps_ticking_while_an_upscale_and_a_decode_run() {
    current_thread().block_on(async {
        let decode = ltx_decode();
        let upscale = upscale(8);
        let started = Instant::now();
        let (first, second) = (request(4), request(4));
        let work = async { tokio::join!(drain(&upscale, &first), drain(&decode, &second)) };
        let ((upscaled, decoded), lateness) = worst_tick_lateness(work).await;
        let elapsed = started.elapsed();
        assert_eq!(upscaled.unwrap().frames, 8);
        assert_eq!(decoded.unwrap().frames, 25);
        eprintln!("upscale + decode: {elapsed:?}, worst tick lateness {lateness:?}");
        assert!(elapsed > Duration::from_millis(500), "too little work to measure anything ({elapsed:?})");
        assert!(lateness < Duration::from_millis(50), "a tick was {lateness:?} late");
    });
}

#[test]
fn a_timeout_fires_on_time_and_leaves_no_file() {
    current_thread().block_on(async {
        let dir = temp_dir("runtime-timeout");
        let output = dir.join("out.mkv");
        let deadline = Duration::from_millis(400);
        let started = Instant::now();
        let saved = tokio::time::timeout(deadline, save_video(&upscale(64), &output, &request(4), &VideoOptions::default())).await;
        let late = started.elapsed().saturating_sub(deadline);
        assert!(saved.is_err(), "the upscale finished before the deadline");
        assert!(late < Duration::from_millis(100), "the timeout fired {late:?} after its deadline");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    });
}

#[test]
fn sequential_and_concurrent_jobs_reuse_the_device_streams() {
    run_alone("runtime::stream_reuse_probe");
}

#[test]
#[ignore = "run alone, in a process of its own, by sequential_and_concurrent_jobs_reuse_the_device_streams"]
fn stream_reuse_probe() {
    current_thread().block_on(async {
        let device = device();
        let source = TestPattern::new(16, 8, 3).unwrap();
        let concurrent = async || {
            let requests: Vec<_> = (0..20).map(|_| OpenRequest::new(&device).with_chunk_frames(2)).collect();
            let jobs: Vec<_> = requests.iter().map(|r| drain(&source, r)).collect();
            for report in futures::future::join_all(jobs).await {
                assert_eq!(report.unwrap().frames, 3);
            }
        };
        concurrent().await;
        let (lanes, threads) = (device.lanes_opened(), thread_count());
        let memory = device.lanes_memory_usage().unwrap();
        assert_eq!(lanes, MAX_LANES, "20 concurrent jobs share the lanes");
        for _ in 0..1000 {
            drain(&source, &OpenRequest::new(&device).with_chunk_frames(2)).await.unwrap();
        }
        concurrent().await;
        let after = device.lanes_memory_usage().unwrap();
        eprintln!(
            "{lanes} lanes, {threads} threads, {memory:?}; after 1000 sequential and 20 concurrent jobs more: {} lanes, {} threads, {after:?}",
            device.lanes_opened(),
            thread_count()
        );
        assert_eq!(device.lanes_opened(), lanes);
        assert_eq!(thread_count(), threads);
        assert_eq!(after, memory, "device memory of the lanes");
    });
}
#[test]
fn concurrent_jobs_share_the_device_memory_budget() {
    run_alone("runtime::memory_budget_probe");
}

#[test]
#[ignore = "run alone, in a process of its own, by concurrent_jobs_share_the_device_memory_budget"]
fn memory_budget_probe() {
    current_thread().block_on(async {
        let device = device();
        let most = Arc::new(AtomicU64::new(0));
        let sampled = |frames| {
            let (most, device) = (most.clone(), device.clone());
            upscale(frames).map("sample", move |chunk| {
                most.fetch_max(device.memory_reserved(), Ordering::Relaxed);
                Ok(chunk)
            })
        };
        // What one job reserves.
        drain(&sampled(4), &request(4)).await.unwrap();
        let one = most.swap(0, Ordering::Relaxed);
        assert!(one > 0, "an upscale reserves its memory");
        assert_eq!(device.memory_reserved(), 0, "a finished job returns its reservation");
        // Room for one and a half: three jobs take turns instead of failing.
        device.set_memory_budget(Some(one * 3 / 2));
        let (a, b, c) = (request(4), request(4), request(4));
        let (x, y, z) = (sampled(4), sampled(4), sampled(4));
        let (ra, rb, rc) = tokio::join!(drain(&x, &a), drain(&y, &b), drain(&z, &c));
        for report in [ra, rb, rc] {
            assert_eq!(report.unwrap().frames, 4);
        }
        let together = most.load(Ordering::Relaxed);
        eprintln!("one job reserves {one} bytes; three under a budget of {}: at most {together} at once", one * 3 / 2);
        assert_eq!(together, one, "one job at a time fits the budget");
        // A budget no plan fits is a clear error, not a wait.
        device.set_memory_budget(Some(1024));
        let err = drain(&upscale(4), &request(4)).await.unwrap_err().to_string();
        assert!(err.contains("memory budget"), "{err}");
        let err = drain(&ltx_decode(), &request(4)).await.unwrap_err().to_string();
        assert!(err.contains("memory budget"), "{err}");
        // An LTX decode reserves its plan too, and under a smaller budget steps in smaller
        // pieces, giving the same frames.
        device.set_memory_budget(None);
        let decode = ltx_decode();
        let frames = |source| {
            let (most, device) = (most.clone(), device.clone());
            collect_frames(source, move || {
                most.fetch_max(device.memory_reserved(), Ordering::Relaxed);
            })
        };
        most.store(0, Ordering::Relaxed);
        let whole = frames(decode.clone()).await;
        let planned = most.swap(0, Ordering::Relaxed);
        assert!(planned > 0, "a decode reserves its memory");
        device.set_memory_budget(Some(planned / 2));
        let stepped = frames(decode).await;
        let smaller = most.load(Ordering::Relaxed);
        eprintln!("an LTX decode plans {planned} bytes; under a budget of {}: {smaller}", planned / 2);
        assert!(smaller > 0 && smaller <= planned / 2);
        assert!(whole == stepped, "smaller steps, the same frames");
        // A stage waiting for memory another job holds stops waiting when its consumer goes.
        device.set_memory_budget(Some(1 << 20));
        let held = device.reserve(1 << 20).await.unwrap();
        let started = Arc::new(tokio::sync::Notify::new());
        let waits = TestPattern::new(8, 8, 8).unwrap().pipe(WaitsForMemory { started: started.clone() });
        let waiting = request(4);
        tokio::select! {
            _ = drain(&waits, &waiting) => panic!("the reservation was served"),
            () = started.notified() => {}
        }
        tokio::time::timeout(Duration::from_secs(60), waiting.device().settle()).await.expect("the wait ended").unwrap();
        drop(held);
        device.set_memory_budget(None);
    });
}

/// A stage that, on its first chunk, says it has started and reserves the whole budget.
struct WaitsForMemory {
    started: Arc<tokio::sync::Notify>,
}

impl Stage for WaitsForMemory {
    fn name(&self) -> String {
        "waits_for_memory".into()
    }
    fn apply(&self, upstream: FrameStream, _: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let (started, device) = (self.started.clone(), request.device().clone());
        Box::pin(upstream.then(move |chunk| {
            let (started, device) = (started.clone(), device.clone());
            async move {
                started.notify_one();
                let _memory = device.reserve(1 << 20).await?;
                chunk
            }
        }))
    }
}

/// A small LTX decode (25 frames).
fn ltx_decode() -> LtxVaeDecode {
    let vae = LtxVae::load(fixture("ltx/v2.safetensors")).unwrap();
    let channels = vae.config().latent_channels;
    let data: Vec<f32> = (0..channels * 4 * 3 * 4).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let latent = Latent::from_tensor(&[1, channels, 4, 3, 4], &data, None).unwrap();
    LtxVaeDecode::new(vae, latent).unwrap()
}

/// Every value `source` yields (chunks of 4), calling `sample` at each chunk.
async fn collect_frames(source: impl Source, sample: impl Fn() + Send + Sync + 'static) -> Vec<f32> {
    let source = source.map("sample", move |chunk| {
        sample();
        Ok(chunk)
    });
    crate::common::read_all(&source, 4).await.1
}

/// Threads of this process (Linux).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Runs the `#[ignore]`d test `probe` of this binary alone in a child process (what it
/// measures is device-wide: other tests would share the device, its lanes and its budget).
fn run_alone(probe: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([probe, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
fn a_dropped_stream_stops_its_device_work() {
    run_alone("runtime::cancellation_probe");
}

#[test]
#[ignore = "run alone, in a process of its own, by a_dropped_stream_stops_its_device_work"]
fn cancellation_probe() {
    current_thread().block_on(async {
        let device = device();
        let request = OpenRequest::new(&device).with_chunk_frames(64);
        // One chunk of 64 frames in tiles: hundreds of launches, tens of seconds on lavapipe.
        let model = UpscaleModel::load(fixture("upscale/rrdb_x4_old.safetensors")).unwrap();
        let long = TestPattern::new(48, 32, 64).unwrap().pipe(Upscale::model(model).tile(16, 4));
        let _ = tokio::time::timeout(Duration::from_millis(300), drain(&long, &request)).await;
        drop(long);
        // The same lane, once the cancelled chunk has stopped submitting.
        let started = Instant::now();
        let small = TestPattern::new(8, 8, 2).unwrap();
        drain(&small, &request).await.unwrap();
        let waited = started.elapsed();
        eprintln!("a job after the cancelled one finished in {waited:?}");
        // The whole chunk takes about 40 s here; a lane stays at most a dozen launches ahead.
        assert!(waited < Duration::from_secs(5), "the cancelled chunk kept the device {waited:?}");
    });
}

#[test]
fn settling_waits_for_the_work_a_dropped_pipeline_is_doing() {
    current_thread().block_on(async {
        let device = device();
        let request = OpenRequest::new(&device).with_chunk_frames(4);
        let (started, finished) = (Arc::new(tokio::sync::Notify::new()), Arc::new(AtomicBool::new(false)));
        let (signal, done) = (started.clone(), finished.clone());
        // Blocking work on the lane thread, under way when the consumer goes.
        let slow = TestPattern::new(8, 8, 8).unwrap().map("slow", move |chunk| {
            signal.notify_one();
            std::thread::sleep(Duration::from_millis(500));
            done.store(true, Ordering::SeqCst);
            Ok(chunk)
        });
        tokio::select! {
            _ = drain(&slow, &request) => panic!("the pipeline ended before it was dropped"),
            () = started.notified() => {}
        }
        request.device().settle().await.unwrap();
        assert!(finished.load(Ordering::SeqCst), "settle returned while the stage still worked");
    });
}
