//! Bad input gives errors, not panics.

use framestream::prelude::*;
use futures::StreamExt;

use crate::common::request;

#[test]
fn zero_size_frames() {
    assert!(matches!(TestPattern::new(0, 10, 5), Err(Error::InvalidShape(_))));
    assert!(matches!(TestPattern::new(10, 0, 5), Err(Error::InvalidShape(_))));
    assert!(matches!(ImageBatch::from_host(vec![], [2, 0, 4, 3]), Err(Error::InvalidShape(_))));
    assert!(matches!(ImageBatch::from_host(vec![], [2, 4, 4, 2]), Err(Error::InvalidShape(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_size_resize_fails_at_open() {
    let video = TestPattern::new(8, 8, 4).unwrap().pipe(Resize::to_size(0, 8, Filter::Bicubic));
    assert!(matches!(video.info(), Err(Error::InvalidShape(_))));
    let first = video.open(&request(2)).next().await.unwrap();
    assert!(matches!(first, Err(Error::InvalidShape(_))));
    let bad_scale = TestPattern::new(8, 8, 4).unwrap().resize(-1.0, Filter::Bicubic);
    assert!(matches!(drain(&bad_scale, &request(2)).await, Err(Error::InvalidConfig(_))));
}

#[test]
fn mismatched_frame_sizes_in_a_batch() {
    let frames = vec![vec![0.5; 2 * 2 * 3], vec![0.5; 3 * 2 * 3]];
    let err = ImageBatch::from_frames(frames, 2, 2, 3).unwrap_err();
    assert!(matches!(err, Error::InvalidShape(_)));
    assert!(err.to_string().contains("frame 1"), "{err}");
    // A flat buffer of the wrong length.
    assert!(ImageBatch::from_host(vec![0.0; 10], [1, 2, 2, 3]).is_err());
}

#[test]
fn values_outside_the_unit_range() {
    let mut data = vec![0.25f32; 2 * 2 * 2 * 3];
    data[13] = f32::NAN;
    match ImageBatch::from_host(data, [2, 2, 2, 3]) {
        Err(Error::InvalidFrame { frame, .. }) => assert_eq!(frame, 1),
        other => panic!("expected InvalidFrame, got {other:?}"),
    }
    assert!(ImageBatch::from_host(vec![255.0; 12], [1, 2, 2, 3]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_size_zero() {
    let pattern = TestPattern::new(8, 8, 4).unwrap();
    let first = pattern.open(&request(0)).next().await.unwrap();
    assert!(matches!(first, Err(Error::InvalidConfig(_))));
    assert!(matches!(drain(&pattern, &request(0)).await, Err(Error::InvalidConfig(_))));
    let dir = crate::common::temp_dir("chunk0");
    let out = dir.join("x.safetensors");
    assert!(write_tensor(&pattern, &out, &request(0), &Default::default()).await.is_err());
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_every_zero() {
    let video = TestPattern::new(8, 8, 4).unwrap().preview(Preview::every(0));
    assert!(matches!(drain(&video, &request(2)).await, Err(Error::InvalidConfig(_))));
}

#[test]
fn chunks_check_their_shape() {
    let device = crate::common::device();
    assert!(Chunk::from_host(&device, &[0.0; 12], [1, 2, 2, 3], 0).is_ok());
    assert!(Chunk::from_host(&device, &[0.0; 12], [0, 2, 2, 3], 0).is_err());
    assert!(Chunk::from_host(&device, &[0.0; 11], [1, 2, 2, 3], 0).is_err());
    assert!(Chunk::from_host(&device, &[0.0; 8], [1, 2, 2, 2], 0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_over_the_device_buffer_limit_are_refused() {
    let device = crate::common::device();
    let (w, h) = (640, 360);
    let frame_bytes = (w * h * 3 * 4) as u64;
    let too_many = (device.max_buffer_bytes() / frame_bytes + 1) as usize;
    let pattern = TestPattern::new(w, h, too_many as u64).unwrap();
    let request = OpenRequest::new(&device).with_chunk_frames(too_many);
    match drain(&pattern, &request).await {
        Err(Error::Device(message)) => {
            assert!(message.contains("smaller chunks of at most"), "{message}");
        }
        other => panic!("expected a device error, got {other:?}"),
    }
    // The device is still usable afterwards.
    let ok = drain(&pattern, &OpenRequest::new(&device).with_chunk_frames(2)).await.unwrap();
    assert_eq!(ok.frames, too_many as u64);
}
