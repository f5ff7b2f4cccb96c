//! The stream contract: `StreamInfo`, `FrameStream`, `OpenRequest`, `Source`, `Stage`.

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::chunk::{check_frame_shape, Chunk};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::progress::{EventKind, ProgressSender, StageId, StageReporter};

/// The frames of an opened pipeline, chunk by chunk.
///
/// Every chunk holds exactly the requested number of frames except the last (1..=N);
/// chunks are consecutive from frame 0; when the stream's [`StreamInfo::time_base`] is set,
/// every chunk carries timestamps, increasing across chunks; an error ends the stream.
/// Dropping it cancels.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Chunk>> + Send>>;

/// A positive fraction: a frame rate (30000/1001) or a time base (1/90000 s a tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rational {
    pub num: u32,
    pub den: u32,
}

impl Rational {
    /// `num/den` in lowest terms; `den` must not be 0.
    pub fn new(num: u32, den: u32) -> Result<Self> {
        if den == 0 || num == 0 {
            return Err(Error::config(format!("{num}/{den} is not a positive fraction")));
        }
        let g = gcd(num, den);
        Ok(Self { num: num / g, den: den / g })
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// `self · k` in lowest terms; `None` when the numerator overflows.
    pub(crate) fn times(self, k: u32) -> Option<Self> {
        let g = gcd(self.den, k);
        Some(Self { num: self.num.checked_mul(k / g)?, den: self.den / g })
    }

    /// `self / k` in lowest terms; `None` when the denominator overflows.
    pub(crate) fn divided_by(self, k: u32) -> Option<Self> {
        let g = gcd(self.num, k);
        Some(Self { num: self.num / g, den: self.den.checked_mul(k / g)? })
    }

    /// Ticks of `time_base` one frame at this rate lasts (rounded, at least 1).
    pub(crate) fn frame_ticks(self, time_base: Rational) -> i64 {
        (1.0 / (self.as_f64() * time_base.as_f64())).round().max(1.0) as i64
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Default for Rational {
    fn default() -> Self {
        Self { num: 30, den: 1 }
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl FromStr for Rational {
    type Err = Error;

    /// Accepts `30`, `30000/1001` and decimals such as `29.97`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::config(format!("`{s}` is not a frame rate (try 30, 30000/1001, 29.97)"));
        let s = s.trim();
        if let Some((n, d)) = s.split_once('/') {
            let n = n.trim().parse().map_err(|_| bad())?;
            let d = d.trim().parse().map_err(|_| bad())?;
            return Rational::new(n, d).map_err(|_| bad());
        }
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty()
            || frac.len() > 6
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let den = 10u32.pow(frac.len() as u32);
        let num = format!("{int}{frac}").parse::<u64>().map_err(|_| bad())?;
        let num = u32::try_from(num).map_err(|_| bad())?;
        Rational::new(num, den).map_err(|_| bad())
    }
}

/// A frame size written `WIDTHxHEIGHT`, e.g. `1280x720`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameSize {
    pub width: usize,
    pub height: usize,
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for FrameSize {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::config(format!("`{s}` is not a frame size (try 1280x720)"));
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let side = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0 && n <= 1 << 16);
        Ok(FrameSize { width: side(w).ok_or_else(bad)?, height: side(h).ok_or_else(bad)? })
    }
}

/// What a stream carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    /// The nominal rate (the average one for a variable-rate file).
    pub fps: Rational,
    /// The number of frames, when known before the end: a promise the stream keeps.
    pub total_frames: Option<u64>,
    /// A frame count for progress when the exact one is not known (a container's header
    /// count or duration); the stream may end before or after it.
    pub estimated_frames: Option<u64>,
    /// Seconds a tick of the chunks' timestamps, when frames carry them (files read from
    /// disk); `None`: frame `i` is shown at `i / fps`.
    pub time_base: Option<Rational>,
}

impl StreamInfo {
    /// Evenly timed frames at `fps`, `total_frames` of them when known.
    pub fn new(width: usize, height: usize, channels: usize, fps: Rational, total_frames: Option<u64>) -> Self {
        Self { width, height, channels, fps, total_frames, estimated_frames: None, time_base: None }
    }

    /// Values in one frame.
    pub fn frame_len(&self) -> usize {
        self.width * self.height * self.channels
    }

    /// The frame count to show progress against: the exact one, else the estimate.
    pub fn progress_frames(&self) -> Option<u64> {
        self.total_frames.or(self.estimated_frames)
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_frame_shape(self.height, self.width, self.channels)
    }
}

/// How a sink opens a source: the device and stream to compute on, the chunk size, the seed
/// of anything random, and where progress events go.
#[derive(Clone, Debug)]
pub struct OpenRequest {
    device: Device,
    chunk_frames: usize,
    seed: u64,
    progress: Option<ProgressSender>,
    /// The stage being opened (set by [`Source::open`]).
    stage: Option<(StageId, Arc<str>)>,
}

impl OpenRequest {
    /// The chunk size when the caller does not choose one.
    pub const DEFAULT_CHUNK_FRAMES: usize = 8;

    /// A request on a fresh stream of `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.fork(),
            chunk_frames: Self::DEFAULT_CHUNK_FRAMES,
            seed: 0,
            progress: None,
            stage: None,
        }
    }

    pub fn with_chunk_frames(mut self, frames: usize) -> Self {
        self.chunk_frames = frames;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_progress(mut self, sender: ProgressSender) -> Self {
        self.progress = Some(sender);
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Frames per chunk (the last chunk may hold fewer).
    pub fn chunk_frames(&self) -> usize {
        self.chunk_frames
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn progress(&self) -> Option<&ProgressSender> {
        self.progress.as_ref()
    }

    /// Errors for a request no stream can serve.
    pub fn validate(&self) -> Result<()> {
        if self.chunk_frames == 0 {
            return Err(Error::config("chunk size 0 (a chunk holds at least one frame)"));
        }
        Ok(())
    }

    /// Sends a non-lifecycle event (a preview) for the stage being opened.
    pub fn emit(&self, kind: EventKind) {
        debug_assert!(!kind.is_terminal());
        if let (Some(sender), Some((stage, name))) = (&self.progress, &self.stage) {
            let _ = sender.send(crate::progress::Event { stage: *stage, name: name.clone(), kind });
        }
    }

    /// The id of the stage being opened, once [`Source::open`] has assigned it.
    pub fn stage_id(&self) -> Option<StageId> {
        self.stage.as_ref().map(|s| s.0)
    }

    /// Starts the lifecycle of a sink (or any consumer that is not a stream).
    pub fn start_stage(&self, name: &str, total_frames: Option<u64>) -> StageReporter {
        StageReporter::start(name, total_frames, self.progress.clone())
    }
}

/// A restartable factory of frame streams.
///
/// Every [`open`](Source::open) starts at frame 0 and yields the same frames; state lives in
/// the opened stream, never in the source. Implementors provide [`stream`](Source::stream);
/// callers use [`open`](Source::open), which adds the lifecycle events and checks the
/// contract.
pub trait Source: Send + Sync {
    /// A short name for events and errors.
    fn name(&self) -> String;

    /// What the stream will carry.
    fn info(&self) -> Result<StreamInfo>;

    /// The frames, for [`open`](Source::open) to wrap.
    fn stream(&self, request: &OpenRequest) -> FrameStream;

    /// Opens a stream of the frames, reporting to `request`'s progress channel.
    fn open(&self, request: &OpenRequest) -> FrameStream {
        Tracked::open(self, request)
    }
}

impl<S: Source + ?Sized> Source for Arc<S> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn info(&self) -> Result<StreamInfo> {
        (**self).info()
    }
    fn stream(&self, request: &OpenRequest) -> FrameStream {
        (**self).stream(request)
    }
    fn open(&self, request: &OpenRequest) -> FrameStream {
        (**self).open(request)
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn info(&self) -> Result<StreamInfo> {
        (**self).info()
    }
    fn stream(&self, request: &OpenRequest) -> FrameStream {
        (**self).stream(request)
    }
    fn open(&self, request: &OpenRequest) -> FrameStream {
        (**self).open(request)
    }
}

/// An interposer: wraps an upstream stream into a new one.
pub trait Stage: Send + Sync {
    /// A short name for events and errors.
    fn name(&self) -> String;

    /// What comes out, given what goes in.
    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        Ok(upstream.clone())
    }

    /// The request to open the upstream with (a stage that changes the frame count
    /// translates the chunk size here).
    fn upstream_request(&self, request: &OpenRequest) -> OpenRequest {
        request.clone()
    }

    /// Builds the output stream from the opened upstream.
    fn apply(&self, upstream: FrameStream, upstream_info: &StreamInfo, request: &OpenRequest)
        -> FrameStream;
}

/// `source.pipe(stage)`: again a source.
#[derive(Clone, Debug)]
pub struct Piped<S, T> {
    upstream: S,
    stage: T,
}

impl<S: Source, T: Stage> Piped<S, T> {
    pub fn new(upstream: S, stage: T) -> Self {
        Self { upstream, stage }
    }
}

impl<S: Source, T: Stage> Source for Piped<S, T> {
    fn name(&self) -> String {
        self.stage.name()
    }

    fn info(&self) -> Result<StreamInfo> {
        self.stage.info(&self.upstream.info()?)
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let upstream_info = match self.upstream.info() {
            Ok(info) => info,
            Err(e) => return failed(e),
        };
        let upstream = self.upstream.open(&self.stage.upstream_request(request));
        self.stage.apply(upstream, &upstream_info, request)
    }
}

/// A stream that yields one error.
pub fn failed(error: Error) -> FrameStream {
    Box::pin(futures::stream::once(async move { Err(error) }))
}

/// The wrapper [`Source::open`] puts around every stream: lifecycle events, and a check of
/// the contract so a faulty stage is named instead of corrupting what follows.
struct Tracked {
    inner: Option<FrameStream>,
    reporter: StageReporter,
    info: Option<StreamInfo>,
    device: Device,
    chunk_frames: usize,
    next_frame: u64,
    short_seen: bool,
    last_timestamp: Option<i64>,
}

impl Tracked {
    fn open<S: Source + ?Sized>(source: &S, request: &OpenRequest) -> FrameStream {
        let name: Arc<str> = source.name().into();
        let info = source.info();
        let total = info.as_ref().ok().and_then(StreamInfo::progress_frames);
        let reporter = StageReporter::start(name.clone(), total, request.progress.clone());
        let mut request = request.clone();
        request.stage = Some((reporter.id(), name));
        let (inner, info) = match (request.validate(), info.and_then(|i| i.check().map(|_| i))) {
            // Polled on the request's lane thread, off the caller's runtime.
            (Ok(()), Ok(info)) => (request.device.drive(source.stream(&request)), Some(info)),
            (Err(e), _) | (_, Err(e)) => (failed(e), None),
        };
        Box::pin(Tracked {
            inner: Some(inner),
            reporter,
            info,
            device: request.device.clone(),
            chunk_frames: request.chunk_frames,
            next_frame: 0,
            short_seen: false,
            last_timestamp: None,
        })
    }

    fn contract(&self, message: String) -> Error {
        Error::Contract { stage: self.reporter.name().to_string(), message }
    }

    fn check(&self, chunk: &Chunk) -> Result<()> {
        let info = self.info.as_ref().expect("a stream only runs with its info");
        if self.short_seen {
            return Err(self.contract("a chunk after a short chunk".into()));
        }
        if chunk.frames() > self.chunk_frames {
            return Err(self.contract(format!(
                "a chunk of {} frames where {} were asked for",
                chunk.frames(),
                self.chunk_frames
            )));
        }
        if chunk.first_frame() != self.next_frame {
            return Err(self.contract(format!(
                "a chunk starting at frame {} where {} was next",
                chunk.first_frame(),
                self.next_frame
            )));
        }
        let [_, h, w, c] = chunk.shape();
        if (h, w, c) != (info.height, info.width, info.channels) {
            return Err(self.contract(format!(
                "frames of {w}x{h}x{c} in a stream of {}x{}x{}",
                info.width, info.height, info.channels
            )));
        }
        if let Some(total) = info.total_frames && chunk.end_frame() > total {
            return Err(self.contract(format!("frames past the announced {total}")));
        }
        if !chunk.device().same_device(&self.device) {
            return Err(self.contract("a chunk on another device".into()));
        }
        match (info.time_base, chunk.timestamps()) {
            (Some(_), None) => return Err(self.contract("a chunk without timestamps in a timed stream".into())),
            (None, Some(_)) => return Err(self.contract("timestamps in a stream without a time base".into())),
            (Some(_), Some(pts)) if self.last_timestamp.is_some_and(|last| pts[0] <= last) => {
                return Err(self.contract(format!(
                    "frame {} is timed {} ticks, not after the frame before it",
                    chunk.first_frame(),
                    pts[0]
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_end(&self) -> Result<()> {
        match self.info.as_ref().and_then(|i| i.total_frames) {
            Some(total) if total != self.next_frame => Err(self.contract(format!(
                "the stream ended after {} of the announced {total} frames",
                self.next_frame
            ))),
            _ => Ok(()),
        }
    }
}

impl Stream for Tracked {
    type Item = Result<Chunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let outcome = match inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => this.check(&chunk).map(|()| Some(chunk)),
            Poll::Ready(Some(Err(e))) => Err(e),
            Poll::Ready(None) => this.check_end().map(|()| None),
        };
        match outcome {
            Ok(Some(chunk)) => {
                this.next_frame = chunk.end_frame();
                this.last_timestamp = chunk.timestamps().and_then(|t| t.last().copied());
                this.short_seen = chunk.frames() < this.chunk_frames;
                this.reporter.advance(chunk.frames() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(None) => {
                this.inner = None;
                this.reporter.finish();
                Poll::Ready(None)
            }
            Err(e) => {
                this.inner = None;
                this.reporter.fail(&e);
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}
