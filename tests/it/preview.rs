//! Previews: which frames, and what they hold.

use framestream::prelude::*;
use framestream_kernels::rgb8::rgb8_reference;
use tokio::sync::mpsc;

use crate::common::{drain_events, host_frames, progress, request, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_deliver_the_right_frames() {
    let (w, h) = (24, 10);
    let pattern = TestPattern::new(w, h, 20).unwrap().seed(5);
    let frames = host_frames(&pattern).await;
    let dir = temp_dir("previews");
    let (tx, mut rx) = mpsc::channel(16);
    let (sender, mut events) = progress();
    let video = pattern.preview(Preview::every(5).to_channel(tx).to_png_dir(&dir));
    drain(&video, &request(3).with_progress(sender)).await.unwrap();
    drop(video);

    let mut got = Vec::new();
    while let Some(image) = rx.recv().await {
        got.push(image);
    }
    // Chunks end at 3, 6, 9, …; a preview is taken of the chunk that passes 5, 10, 15, 20.
    let indices: Vec<u64> = got.iter().map(|p| p.frame).collect();
    assert_eq!(indices, [5, 11, 14, 19]);
    for image in &got {
        assert_eq!((image.width, image.height), (w, h));
        let want = rgb8_reference(frames.frame(image.frame as usize), 3);
        assert_eq!(image.rgb.len(), want.len());
        let off = image.rgb.iter().zip(&want).filter(|(a, b)| a.abs_diff(**b) > 1).count();
        assert_eq!(off, 0, "frame {}", image.frame);

        let png = std::fs::read(dir.join(format!("preview-{:08}.png", image.frame))).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width as usize, info.height as usize), (w, h));
        assert_eq!(&buf[..info.buffer_size()], &image.rgb[..]);
    }
    let preview_stage = got[0].stage.expect("tagged with its stage");
    let preview_events: Vec<u64> = drain_events(&mut events)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Preview { frame, path } => {
                assert_eq!(e.stage, preview_stage);
                assert!(path.unwrap().exists());
                Some(frame)
            }
            _ => None,
        })
        .collect();
    assert_eq!(preview_events, indices);
}
