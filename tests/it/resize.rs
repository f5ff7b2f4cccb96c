//! The resize stage against the CPU reference.

use framestream::prelude::*;
use framestream_kernels::resize::resize_reference;

use crate::common::host_frames;

async fn check(width: usize, height: usize, factor: f64, filter: Filter) {
    let pattern = TestPattern::new(width, height, 3).unwrap().seed(11);
    let input = host_frames(&pattern).await;
    let video = pattern.resize(factor, filter);
    let info = video.info().unwrap();
    let output = host_frames(&video).await;
    assert_eq!(output.shape, [3, info.height, info.width, 3]);
    let want =
        resize_reference(&input.data, (3, height, width, 3), (info.height, info.width), filter);
    let max_err = output
        .data
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (f64::from(g) - w).abs())
        .fold(0.0f64, |a, b| if b.is_nan() { f64::INFINITY } else { a.max(b) });
    assert!(max_err < 1e-4, "{filter:?} x{factor} on {width}x{height}: max error {max_err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscaling_matches_the_reference() {
    check(37, 23, 2.0, Filter::Lanczos3).await;
    check(37, 23, 1.7, Filter::Bicubic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downscaling_matches_the_reference() {
    check(64, 40, 0.5, Filter::Bicubic).await;
    check(64, 40, 0.3, Filter::Lanczos3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_one_passes_frames_through() {
    let pattern = TestPattern::new(20, 10, 2).unwrap();
    let same = pattern.clone().resize(1.0, Filter::Lanczos3);
    assert_eq!(host_frames(&pattern).await.data, host_frames(&same).await.data);
}
