//! The stream contract: chunking, replay, lengths, no empty chunks.

use framestream::prelude::*;

use crate::common::{device, read_all, request};

/// The chunk shapes a stream of `total` frames must have for chunk size `n`.
fn expected_chunks(total: usize, n: usize) -> Vec<usize> {
    let mut sizes = vec![n; total / n];
    if !total.is_multiple_of(n) {
        sizes.push(total % n);
    }
    sizes
}

async fn check_chunking(source: &impl Source, total: usize) {
    let (_, whole) = read_all(source, total.max(1)).await;
    for n in [1, 2, 3, 7, total.max(1), total + 5] {
        let (shapes, data) = read_all(source, n).await;
        let sizes: Vec<usize> = shapes.iter().map(|s| s[0]).collect();
        assert_eq!(sizes, expected_chunks(total, n), "chunk sizes for n = {n}");
        assert!(sizes.iter().all(|&s| s > 0), "no empty chunk");
        assert!(data == whole, "chunk size {n} changes the frames");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_chunking_is_bit_identical() {
    let pattern = TestPattern::new(24, 16, 17).unwrap().seed(3);
    check_chunking(&pattern, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resized_pattern_chunking_is_bit_identical() {
    let video = TestPattern::new(20, 12, 9).unwrap().resize(1.5, Filter::Lanczos3);
    check_chunking(&video, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_chunking_returns_the_input() {
    let (t, h, w, c) = (11, 5, 6, 4);
    let data: Vec<f32> = (0..t * h * w * c).map(|i| (i % 997) as f32 / 997.0).collect();
    let host = ImageBatch::from_host(data.clone(), [t, h, w, c]).unwrap();
    check_chunking(&host, t).await;
    assert_eq!(read_all(&host, 4).await.1, data);

    let chunk = Chunk::from_host(&device(), &data, [t, h, w, c], 0).unwrap();
    let on_device = ImageBatch::from_chunk(chunk);
    check_chunking(&on_device, t).await;
    assert_eq!(read_all(&on_device, 3).await.1, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_bit_identical() {
    let video = TestPattern::new(33, 21, 10).unwrap().seed(42).resize(2.0, Filter::Bicubic);
    let again = video.clone();
    let (_, a) = read_all(&video, 4).await;
    let (_, b) = read_all(&again, 4).await;
    let (_, c) = read_all(&video, 4).await;
    assert!(a == b && b == c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_change_the_noise_only() {
    let (_, a) = read_all(&TestPattern::new(16, 16, 2).unwrap().seed(1), 2).await;
    let (_, b) = read_all(&TestPattern::new(16, 16, 2).unwrap().seed(2), 2).await;
    assert!(a != b);
    let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(max_diff <= 1.0 / 32.0 + 1e-6, "noise amplitude: {max_diff}");
    // The request's seed is used when the pattern has none.
    let unseeded = TestPattern::new(16, 16, 2).unwrap();
    let mut stream = unseeded.open(&request(2).with_seed(2));
    let chunk = futures::StreamExt::next(&mut stream).await.unwrap().unwrap();
    assert_eq!(chunk.to_host().await.unwrap().data, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lengths_that_are_multiples_of_the_chunk_and_single_frames() {
    let (shapes, _) = read_all(&TestPattern::new(8, 8, 12).unwrap(), 4).await;
    assert_eq!(shapes.iter().map(|s| s[0]).collect::<Vec<_>>(), vec![4, 4, 4]);
    let (shapes, data) = read_all(&TestPattern::new(8, 8, 1).unwrap(), 8).await;
    assert_eq!(shapes, vec![[1, 8, 8, 3]]);
    assert_eq!(data.len(), 8 * 8 * 3);
    let (shapes, _) = read_all(&TestPattern::new(8, 8, 0).unwrap(), 8).await;
    assert!(shapes.is_empty(), "an empty video yields no chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_breaks_the_contract_is_named() {
    // A map that turns every chunk into one of another frame count.
    let video = TestPattern::new(8, 8, 6).unwrap().map("shrink", |chunk| chunk.slice(0, 1));
    let report = drain(&video, &request(3)).await;
    match report {
        Err(Error::Contract { stage, .. }) => assert_eq!(stage, "shrink"),
        other => panic!("expected a contract error, got {other:?}"),
    }
    // A map that changes the frame size.
    let video = TestPattern::new(8, 8, 6).unwrap().map("resize_inside", |chunk| {
        let host = futures::executor::block_on(chunk.to_host())?;
        Chunk::from_host(chunk.device(), &host.data[..host.data.len() / 2], [chunk.frames(), 4, 8, 3], chunk.first_frame())
    });
    let report = drain(&video, &request(3)).await;
    assert!(matches!(report, Err(Error::Contract { .. })), "{report:?}");
}

#[test]
fn frame_rates_and_sizes_parse() {
    assert_eq!("30000/1001".parse::<Rational>().unwrap(), Rational { num: 30000, den: 1001 });
    assert_eq!("29.97".parse::<Rational>().unwrap(), Rational { num: 2997, den: 100 });
    assert_eq!("25".parse::<Rational>().unwrap(), Rational { num: 25, den: 1 });
    assert_eq!("50/2".parse::<Rational>().unwrap(), Rational { num: 25, den: 1 });
    for bad in ["", "0", "1/0", "x", "30/", "-5", "1e3", "."] {
        assert!(bad.parse::<Rational>().is_err(), "{bad:?}");
    }
    assert_eq!("320x180".parse::<FrameSize>().unwrap(), FrameSize { width: 320, height: 180 });
    for bad in ["320", "0x10", "10x0", "x", "320x180x3", "-1x5"] {
        assert!(bad.parse::<FrameSize>().is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_follow_their_frames_and_are_checked() {
    let device = device();
    let frames = |n: usize, first: u64| Chunk::from_host(&device, &vec![0.5; n * 12], [n, 2, 2, 3], first).unwrap();
    let timed = frames(3, 0).with_timestamps(vec![0, 512, 1536]).unwrap();
    // Sliced, joined and given new pixels, frames keep their times.
    assert_eq!(timed.slice(1, 2).unwrap().timestamps(), Some(&[512, 1536][..]));
    let next = frames(2, 3).with_timestamps(vec![2048, 2560]).unwrap();
    let joined = Chunk::concat(&[timed.clone(), next]).unwrap();
    assert_eq!(joined.timestamps(), Some(&[0, 512, 1536, 2048, 2560][..]));
    let pixels = device.upload(&vec![0.0; 3 * 48]).unwrap();
    assert_eq!(timed.with_pixels(pixels, [4, 4, 3]).unwrap().timestamps(), timed.timestamps());
    // One a frame, increasing.
    assert!(frames(3, 0).with_timestamps(vec![0, 1]).is_err());
    let err = frames(3, 0).with_timestamps(vec![0, 2, 2]).unwrap_err();
    assert!(err.to_string().contains("increase"), "{err}");

    // A timed stream: a map whose closure drops them gets them back; chunks without them, or
    // going back in time, break the contract.
    struct Timed;
    impl Source for Timed {
        fn name(&self) -> String {
            "timed".into()
        }
        fn info(&self) -> Result<StreamInfo> {
            let fps = Rational::new(25, 1)?;
            Ok(StreamInfo { time_base: Some(Rational::new(1, 12_800)?), ..StreamInfo::new(2, 2, 3, fps, Some(4)) })
        }
        fn stream(&self, request: &OpenRequest) -> FrameStream {
            let device = request.device().clone();
            Box::pin(futures::stream::iter((0..2u64).map(move |c| {
                let chunk = Chunk::from_host(&device, &[0.25; 24], [2, 2, 2, 3], c * 2)?;
                chunk.with_timestamps(vec![c as i64 * 1024, c as i64 * 1024 + 512])
            })))
        }
    }
    let kept = Timed.map("fresh_chunk", |chunk| {
        Chunk::from_host(chunk.device(), &[0.75; 24], chunk.shape(), chunk.first_frame())
    });
    let mut stream = kept.open(&request(2));
    let mut times = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        times.extend_from_slice(chunk.unwrap().timestamps().unwrap());
    }
    assert_eq!(times, [0, 512, 1024, 1536]);
    let rewinding = Timed.map("rewinding", |chunk| {
        let fresh = Chunk::from_host(chunk.device(), &[0.75; 24], chunk.shape(), chunk.first_frame())?;
        fresh.with_timestamps(vec![0, 1])
    });
    match drain(&rewinding, &request(2)).await {
        Err(Error::Contract { stage, message }) => assert!(stage == "rewinding" && message.contains("not after"), "{message}"),
        other => panic!("expected a contract error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_skip_concat_and_then_keep_the_contract() {
    let source = TestPattern::new(8, 6, 10).unwrap().seed(3);
    let (_, all) = read_all(&source, 10).await;
    let frame = 8 * 6 * 3;
    for n in [1, 3, 4, 10] {
        let (shapes, data) = read_all(&source.clone().take(7), n).await;
        assert_eq!(shapes.iter().map(|s| s[0]).sum::<usize>(), 7);
        assert!(data == all[..7 * frame], "take, chunks of {n}");
        let (shapes, data) = read_all(&source.clone().skip(3), n).await;
        assert_eq!(shapes.iter().map(|s| s[0]).collect::<Vec<_>>(), expected_chunks(7, n), "skip");
        assert!(data == all[3 * frame..], "skip, chunks of {n}");
        let joined = source.clone().take(4).concat(source.clone().skip(6));
        let (shapes, data) = read_all(&joined, n).await;
        assert_eq!(shapes.iter().map(|s| s[0]).collect::<Vec<_>>(), expected_chunks(8, n), "concat");
        assert!(data[..4 * frame] == all[..4 * frame] && data[4 * frame..] == all[6 * frame..], "concat, chunks of {n}");
    }
    assert_eq!(source.clone().take(20).info().unwrap().total_frames, Some(10));
    assert_eq!(source.clone().skip(20).info().unwrap().total_frames, Some(0));
    assert_eq!(source.clone().take(4).concat(source.clone()).info().unwrap().total_frames, Some(14));
    let wrong = source.clone().concat(TestPattern::new(6, 8, 2).unwrap());
    assert!(matches!(drain(&wrong, &request(4)).await, Err(Error::InvalidShape(_))));

    // An async step, cloned maps, and a step that drops frames named.
    let halve = Map::new("halve", |chunk: Chunk| Ok(chunk));
    let waited = source.clone().pipe(halve.clone()).pipe(halve).then("later", |chunk| async move {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        Ok(chunk)
    });
    let (_, data) = read_all(&waited, 4).await;
    assert!(data == all);
    let dropping = source.clone().then("dropping", |chunk| async move { chunk.slice(0, 1) });
    match drain(&dropping, &request(3)).await {
        Err(Error::Contract { stage, .. }) => assert_eq!(stage, "dropping"),
        other => panic!("expected a contract error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_and_chunks_cannot_claim_what_they_do_not_hold() {
    let device = device();
    let values = vec![0.5f32; 2 * 4 * 4 * 3];
    // Lengths that do not match the allocation, or the shape, are refused.
    assert!(Chunk::from_host(&device, &values, [3, 4, 4, 3], 0).is_err());
    assert!(Chunk::from_host(&device, &values, [usize::MAX, 2, 2, 3], 0).is_err());
    assert!(Chunk::new(&device, device.upload(&values).unwrap(), [1, 4, 4, 3], 0).is_err());
    assert!(Chunk::new(&device, device.upload(&values).unwrap(), [usize::MAX / 2, 4, 4, 3], 0).is_err());
    // Bytes are 4-byte words, but not f32 frames; f16 values are not either.
    let words = device.upload_bytes(&[0u8; 96 * 4]).unwrap();
    assert_eq!(words.elem_bytes(), 4);
    let halves = device.upload_as::<half::f16>(&values).unwrap();
    let err = Chunk::new(&device, halves, [2, 4, 4, 3], 0).unwrap_err();
    assert!(err.to_string().contains("2-byte"), "{err}");
    // A buffer of one device is not a chunk of another (wgpu:0 opens a device of its own).
    let other = Device::open(DeviceKind::Wgpu(Some(0))).unwrap();
    assert!(!other.same_device(&device));
    let err = Chunk::new(&other, device.upload(&values).unwrap(), [2, 4, 4, 3], 0).unwrap_err();
    assert!(err.to_string().contains("another device"), "{err}");
    // Slices past the end, or whose end overflows, are errors.
    let chunk = Chunk::from_host(&device, &values, [2, 4, 4, 3], 0).unwrap();
    for (start, frames) in [(0, 3), (2, 1), (1, 0), (usize::MAX, 2), (1, usize::MAX)] {
        assert!(chunk.slice(start, frames).is_err(), "slice {start}+{frames}");
    }
    assert_eq!(chunk.slice(1, 1).unwrap().first_frame(), 1);
    // A kernel's output shape is checked before anything is allocated.
    struct Nothing;
    impl framestream::kernel::FrameKernel for Nothing {
        fn launch<R: framestream::kernel::cubecl::prelude::Runtime>(
            &self,
            _: framestream::kernel::KernelArgs<'_, R>,
        ) -> Result<()> {
            Ok(())
        }
    }
    assert!(chunk.launch(&Nothing, [0, 4, 3]).is_err());
    assert!(chunk.launch(&Nothing, [usize::MAX, usize::MAX, 3]).is_err());
    assert_eq!(chunk.launch(&Nothing, [2, 2, 1]).unwrap().shape(), [2, 2, 2, 1]);
}

#[test]
fn devices_are_chosen_by_runtime_and_index() {
    let parse = |s: &str| s.parse::<DeviceKind>();
    assert_eq!(parse("wgpu").unwrap(), DeviceKind::Wgpu(None));
    assert_eq!(parse("Vulkan:1").unwrap(), DeviceKind::Wgpu(Some(1)));
    assert_eq!(parse("cuda").unwrap(), DeviceKind::Cuda(0));
    assert_eq!(parse("cuda:2").unwrap(), DeviceKind::Cuda(2));
    for bad in ["auto:1", "cuda:x", "metal", "wgpu:-1"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    // The first adapter wgpu lists exists here (lavapipe at least); one past the last is named.
    let first = Device::open(DeviceKind::Wgpu(Some(0))).unwrap();
    assert!(!first.info().adapter.is_empty());
    let err = Device::open(DeviceKind::Wgpu(Some(99))).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("wgpu:0"), "{err}");
}
