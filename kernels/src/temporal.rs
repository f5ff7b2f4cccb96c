//! `TemporalConv3d`: a 3-D convolution fed a video chunk by chunk, equal to one run over the
//! whole sequence.
//!
//! The temporal padding is one of [`TimePadding`]'s. Non-causal (one frame of look-ahead): the
//! sequence is `[x₀] ‖ X ‖ [x_{T−1}]`, so the first push emits n − 1 frames, later pushes n,
//! and the end emits the last frame (its right neighbour replicated). Causal:
//! `[x₀, x₀] ‖ X` (LTX) or `[0, 0] ‖ X` (Wan), n frames per push. The last two frames of the padded input are kept as a
//! cache (copied, 2 frames) and read as the head of the convolution's [`Sequence`] together
//! with the new frames, without concatenating them. A 1-frame temporal kernel keeps no state.

use cubecl::prelude::*;

use std::marker::PhantomData;

use crate::{DeviceBuffer, Element};
use crate::conv::{Activation, ConvInput, ConvOutput, ConvWeights, Padding, Residual, Sequence, Strategy, conv};
use crate::copy::copy;
use crate::elementwise::fill;

/// Frames on the device: `frames × height × width × channels` values.
#[derive(Clone, Debug)]
pub struct Frames {
    pub buffer: DeviceBuffer,
    pub frames: usize,
}

/// How a temporal convolution pads the time axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimePadding {
    /// `[x₀] ‖ X ‖ [x_{T−1}]`: one frame of look-ahead, an end flush (LTX, non-causal).
    Replicate,
    /// `[x₀, x₀] ‖ X` (LTX, causal).
    CausalReplicate,
    /// `[0, 0] ‖ X`: two zero frames of history (Wan's causal convolution).
    CausalZeros,
}

impl TimePadding {
    fn causal(self) -> bool {
        self != TimePadding::Replicate
    }
}

/// Holds its cache in `E`, the element type of its weights and activations.
pub struct TemporalConv3d<E: Element> {
    weights: ConvWeights,
    padding: Padding,
    strategy: Strategy,
    time: TimePadding,
    height: usize,
    width: usize,
    /// The last frames of the padded input so far (at most 2).
    cache: Option<Frames>,
    started: bool,
    finished: bool,
    elem: PhantomData<E>,
}

impl<E: Element> TemporalConv3d<E> {
    pub fn new(
        weights: ConvWeights,
        (height, width): (usize, usize),
        padding: Padding,
        time: TimePadding,
        strategy: Strategy,
    ) -> Self {
        Self {
            weights,
            padding,
            strategy,
            time,
            height,
            width,
            cache: None,
            started: false,
            finished: false,
            elem: PhantomData,
        }
    }

    pub fn weights(&self) -> &ConvWeights {
        &self.weights
    }

    /// Elements its cache holds at most between pushes (2 padded frames; none for a 1-frame
    /// temporal kernel).
    pub fn cache_len(&self) -> usize {
        if self.weights.kt == 1 { 0 } else { 2 * self.height * self.width * self.weights.cin }
    }

    /// Forgets the stream: the next push is frame 0 again.
    pub fn reset(&mut self) {
        self.cache = None;
        self.started = false;
        self.finished = false;
    }

    /// How many frames a [`push`](Self::push) of `frames` frames (and `end`) returns.
    pub fn output_frames(&self, frames: usize, end: bool) -> usize {
        if self.weights.kt == 1 {
            return frames;
        }
        if !self.started && frames == 0 {
            return 0;
        }
        let head = match &self.cache {
            Some(c) => c.frames,
            None if self.time.causal() => 2,
            None => 1,
        };
        let tail = usize::from(end && !self.time.causal());
        (head + frames + tail).saturating_sub(self.weights.kt - 1)
    }

    /// Feeds `frames` new frames (`body`, may be none) and, with `end`, the end of the stream.
    /// Returns the output frames now complete (with `activation` and, when given, the
    /// residual `out = r + scale · y` over them), or `None` when there are none yet.
    pub fn push<R: Runtime>(
        &mut self,
        client: &ComputeClient<R>,
        body: Option<&DeviceBuffer>,
        frames: usize,
        end: bool,
        activation: Activation,
        residual: Option<(&DeviceBuffer, f32)>,
    ) -> Option<Frames> {
        assert!(!self.finished, "push after the end of the stream");
        let cin = self.weights.cin;
        let frame_len = self.height * self.width * cin;
        let empty = DeviceBuffer::empty::<R, E>(client, 0);
        let body = match body {
            Some(b) => {
                assert!(b.len() >= frames * frame_len, "fewer values than frames");
                b
            }
            None => {
                assert_eq!(frames, 0, "frames without a buffer");
                &empty
            }
        };
        if self.weights.kt == 1 {
            self.finished = end;
            return self.run(client, None, body, Sequence::plain(frames), activation, residual);
        }
        if !self.started {
            if frames == 0 {
                self.finished = end;
                return None;
            }
            self.started = true;
        }
        // The padded sequence: cache (or the first frame replicated, or zeros), the new frames,
        // and at the end the last frame once more (non-causal only).
        let head_frames = self.cache.as_ref().map_or(0, |c| c.frames);
        let lead = match (&self.cache, self.time.causal()) {
            (Some(_), _) => 0,
            (None, true) => 2,
            (None, false) => 1,
        };
        let trail = usize::from(end && !self.time.causal());
        let zero_lead = self.time == TimePadding::CausalZeros;
        let sequence = Sequence { head_frames, frames: head_frames + frames, lead, trail, zero_lead };
        let cache = self.cache.take();
        let out = self.run(client, cache.as_ref().map(|c| &c.buffer), body, sequence, activation, residual);
        if end {
            self.finished = true;
        } else {
            // Keep the last two padded frames for the next push.
            let padded = lead + sequence.frames + trail;
            let keep: Vec<Option<usize>> = (padded.saturating_sub(2)..padded).map(|p| sequence.frame(p)).collect();
            let buffer = DeviceBuffer::empty::<R, E>(client, keep.len() * frame_len);
            // Zero frames of history stay (fewer than two frames so far).
            if keep.contains(&None) {
                fill::<R, E>(client, &buffer, 0.0);
            }
            for (i, &f) in keep.iter().enumerate() {
                let (src, at) = match (f, &cache) {
                    (None, _) => continue,
                    (Some(f), Some(c)) if f < head_frames => (&c.buffer, f),
                    (Some(f), _) => (body, f - head_frames),
                };
                copy::<R, E>(client, src, at * frame_len, &buffer, i * frame_len, frame_len);
            }
            self.cache = Some(Frames { buffer, frames: keep.len() });
        }
        out
    }

    fn run<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        head: Option<&DeviceBuffer>,
        body: &DeviceBuffer,
        sequence: Sequence,
        activation: Activation,
        residual: Option<(&DeviceBuffer, f32)>,
    ) -> Option<Frames> {
        let kt = self.weights.kt;
        let padded = sequence.padded_len().expect("a chunk's frame count");
        if sequence.frames == 0 || padded < kt {
            return None;
        }
        let out_frames = padded + 1 - kt;
        let cout = self.weights.cout;
        let out = DeviceBuffer::empty::<R, E>(client, out_frames * self.height * self.width * cout);
        let input = ConvInput {
            head,
            body,
            sequence,
            height: self.height,
            width: self.width,
            stride: self.weights.cin,
        };
        let output = ConvOutput {
            out: &out,
            stride: cout,
            offset: 0,
            activation,
            residual: residual.map(|(r, scale)| Residual::dense(r, cout, scale)),
        };
        conv::<R, E>(client, &self.weights, &input, &output, self.padding, self.strategy);
        Some(Frames { buffer: out, frames: out_frames })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::conv_reference;
    use crate::test_util::{Rng, assert_close, client, read_f32};

    /// Feeds `x` (`t` frames) in pushes of the given sizes (then an end), returns all output.
    fn run_chunked(
        client: &ComputeClient<crate::test_util::TestRuntime>,
        conv: &mut TemporalConv3d<f32>,
        x: &[f32],
        frame_len: usize,
        sizes: &[usize],
        separate_end: bool,
    ) -> Vec<f32> {
        conv.reset();
        let mut out = Vec::new();
        let mut at = 0;
        for (i, &n) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            let end = last && !separate_end;
            let body = (n > 0).then(|| DeviceBuffer::from_f32(client, &x[at * frame_len..(at + n) * frame_len]));
            let expected = conv.output_frames(n, end);
            let got = conv.push(client, body.as_ref(), n, end, Activation::None, None);
            assert_eq!(got.as_ref().map_or(0, |f| f.frames), expected, "predicted output frames");
            if let Some(f) = got {
                out.extend(read_f32(client, f.buffer.handle().clone()));
            }
            at += n;
        }
        if separate_end {
            let expected = conv.output_frames(0, true);
            let got = conv.push(client, None, 0, true, Activation::None, None);
            assert_eq!(got.as_ref().map_or(0, |f| f.frames), expected, "predicted output frames");
            if let Some(f) = got {
                out.extend(read_f32(client, f.buffer.handle().clone()));
            }
        }
        out
    }

    fn schedules(t: usize) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for n in [1, 2, 3, 7, t] {
            let mut sizes = vec![n; t / n];
            if !t.is_multiple_of(n) {
                sizes.push(t % n);
            }
            out.push((format!("chunks of {n}"), sizes));
        }
        // Empty pushes mid-stream.
        let mut sizes = vec![0, 1];
        sizes.extend(std::iter::repeat_n(1, t - 1).flat_map(|s| [s, 0]));
        out.push(("with empty pushes".into(), sizes));
        out
    }

    #[test]
    fn chunked_equals_whole_sequence() {
        let client = client();
        let mut rng = Rng::new(41);
        for time in [TimePadding::Replicate, TimePadding::CausalReplicate, TimePadding::CausalZeros] {
            for t in [1, 2, 3, 9, 17] {
                let (h, w, cin, cout) = (rng.range(2, 4), rng.range(2, 4), rng.range(1, 5), rng.range(1, 5));
                let frame_len = h * w * cin;
                let x = rng.vec_f32(t * frame_len, -1.0, 1.0);
                let torch_weights = rng.vec_f32(cout * cin * 27, -0.5, 0.5);
                let bias = rng.vec_f32(cout, -0.5, 0.5);
                let weights =
                    ConvWeights::upload::<_, f32>(&client, &torch_weights, Some(&bias), None, (cout, cin, 3, 3));
                let strategy = if t % 2 == 0 { Strategy::Tiled } else { Strategy::Direct };
                let mut conv = TemporalConv3d::new(weights, (h, w), Padding::Reflect, time, strategy);

                let frames: Vec<&[f32]> = (0..t).map(|i| &x[i * frame_len..(i + 1) * frame_len]).collect();
                let zeros = vec![0.0; frame_len];
                let mut padded = match time {
                    TimePadding::Replicate => vec![frames[0]],
                    TimePadding::CausalReplicate => vec![frames[0], frames[0]],
                    TimePadding::CausalZeros => vec![&zeros[..], &zeros[..]],
                };
                padded.extend(&frames);
                if time == TimePadding::Replicate {
                    padded.push(frames[t - 1]);
                }
                let want = conv_reference(
                    &padded,
                    (h, w, cin),
                    &torch_weights,
                    &bias,
                    (cout, cin, 3, 3),
                    Padding::Reflect,
                    Activation::None,
                    &[],
                    None,
                );
                let whole = run_chunked(&client, &mut conv, &x, frame_len, &[t], false);
                assert_close(&whole, &want, 1e-5, &format!("{time:?}, T = {t}, whole"));
                for (name, sizes) in schedules(t) {
                    for separate_end in [false, true] {
                        let got = run_chunked(&client, &mut conv, &x, frame_len, &sizes, separate_end);
                        assert!(
                            got == whole,
                            "{time:?}, T = {t}, {name}, separate end {separate_end}: \
                             differs from the whole-sequence run"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn first_push_lags_one_frame_when_not_causal() {
        let client = client();
        let (h, w, c) = (2, 2, 1);
        let weights = ConvWeights::upload::<_, f32>(&client, &[0.1; 27], None, None, (c, c, 3, 3));
        let mut conv = TemporalConv3d::<f32>::new(weights, (h, w), Padding::Zeros, TimePadding::Replicate, Strategy::Direct);
        let x = DeviceBuffer::from_f32(&client, &vec![1.0; 3 * h * w * c]);
        let emitted = |f: Option<Frames>| f.map_or(0, |f| f.frames);
        assert_eq!(emitted(conv.push(&client, Some(&x), 3, false, Activation::None, None)), 2);
        assert_eq!(emitted(conv.push(&client, Some(&x), 3, false, Activation::None, None)), 3);
        assert_eq!(emitted(conv.push(&client, None, 0, false, Activation::None, None)), 0);
        assert_eq!(emitted(conv.push(&client, None, 0, true, Activation::None, None)), 1);
    }
}
