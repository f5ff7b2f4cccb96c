//! The decoder thread: demuxes and decodes one video stream, converts each frame to packed
//! RGB(A) with swscale, and hands chunks of frames over a channel of 2 chunks. The device
//! unpacks, scales to [0, 1] and applies the file's rotation.

use std::path::{Path, PathBuf};

use ffmpeg_next::{self as ffmpeg, Dictionary, Packet, codec, color, format, frame, media};
use ffmpeg_next::software::scaling;
use framestream_kernels::unpack::PackedFormat;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::stream::Rational;

/// The largest frame side taken (16K): larger sizes in a header are damage or hostility, and
/// a chunk of them would not fit in memory.
const MAX_SIDE: usize = 16384;

/// What a file holds, read once when the source is made.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Probe {
    pub stream: usize,
    /// Coded size (before rotation).
    pub width: usize,
    pub height: usize,
    pub fps: Rational,
    /// The frame count the header suggests (edit lists and damaged headers make it wrong).
    pub estimated_frames: Option<u64>,
    /// Seconds a tick of the stream's timestamps.
    pub time_base: Rational,
    /// Stream ticks per frame when the stream says its rate is constant.
    pub frame_ticks: Option<f64>,
    /// The decoder to use instead of FFmpeg's default for the codec (VP8/VP9 with alpha:
    /// only libvpx decodes the alpha plane).
    pub decoder: Option<&'static str>,
    /// The stream holds interlaced pictures (decoded as woven fields).
    pub interlaced: bool,
    /// How the decoded frames are packed, and the clockwise quarter turns to apply.
    pub packed: PackedFormat,
}

/// Frames ready for the device: `frames` packed frames and their timestamps.
pub(crate) struct HostChunk {
    pub bytes: Vec<u8>,
    pub frames: usize,
    pub timestamps: Vec<i64>,
}

fn ff_error(path: &Path, frame: Option<u64>, what: &str, e: ffmpeg::Error) -> Error {
    Error::video(path, frame, format!("{what}: {e}"))
}

/// Clockwise quarter turns asked by a display matrix.
fn quarter_turns(matrix: &[u8]) -> u32 {
    if matrix.len() < 36 {
        return 0;
    }
    let values: Vec<i32> =
        matrix[..36].chunks_exact(4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
    // SAFETY: nine i32 values, as the function reads.
    let counter_clockwise = unsafe { ffmpeg::ffi::av_display_rotation_get(values.as_ptr()) };
    if counter_clockwise.is_nan() {
        return 0;
    }
    ((-counter_clockwise / 90.0).round() as i64).rem_euclid(4) as u32
}

/// The packed RGB layout for a decoded pixel format: alpha kept, depth above 8 bits kept.
fn packed_layout(pixel: format::Pixel) -> (format::Pixel, u32, u32) {
    // SAFETY: the descriptor table is static; a null pointer means an unknown format.
    let (alpha, deep) = unsafe {
        let desc = ffmpeg::ffi::av_pix_fmt_desc_get(pixel.into());
        if desc.is_null() {
            (false, false)
        } else {
            let alpha = (*desc).flags & ffmpeg::ffi::AV_PIX_FMT_FLAG_ALPHA as u64 != 0;
            (alpha, (*desc).comp[0].depth > 8)
        }
    };
    match (alpha, deep) {
        (false, false) => (format::Pixel::RGB24, 3, 1),
        (true, false) => (format::Pixel::RGBA, 4, 1),
        (false, true) => (format::Pixel::RGB48LE, 3, 2),
        (true, true) => (format::Pixel::RGBA64LE, 4, 2),
    }
}

fn open_input(path: &Path) -> Result<format::context::Input> {
    super::init();
    if !path.exists() {
        return Err(Error::video(path, None, "no such file"));
    }
    // Damaged container data is an error, not a silent resync past lost frames.
    let mut options = Dictionary::new();
    options.set("err_detect", "explode");
    format::input_with_dictionary(path, options).map_err(|e| ff_error(path, None, "not a readable video", e))
}

impl Probe {
    pub fn read(path: &Path) -> Result<Self> {
        let input = open_input(path)?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| Error::video(path, None, "no video stream"))?;
        let decoder = codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(|e| ff_error(path, None, "unsupported video stream", e))?;
        let (width, height) = (decoder.width() as usize, decoder.height() as usize);
        if width == 0 || height == 0 {
            return Err(Error::video(path, None, "the video stream has no frame size"));
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(Error::video(
                path,
                None,
                format!("frames of {width}x{height} are larger than {MAX_SIDE} pixels a side"),
            ));
        }
        let rate = |r: ffmpeg::Rational| {
            (r.numerator() > 0 && r.denominator() > 0)
                .then(|| Rational::new(r.numerator() as u32, r.denominator() as u32).ok())
                .flatten()
        };
        let (average, nominal) = (rate(stream.avg_frame_rate()), rate(stream.rate()));
        let fps = average.or(nominal).unwrap_or_default();
        let time_base = rate(stream.time_base()).unwrap_or(Rational { num: fps.den, den: fps.num });
        let seconds = |ticks: i64, base: f64| (ticks > 0).then_some(ticks as f64 * base);
        let duration = seconds(stream.duration(), time_base.as_f64())
            .or_else(|| seconds(input.duration(), 1.0 / f64::from(ffmpeg::ffi::AV_TIME_BASE)));
        // The presented duration counts what edit lists trim; the header count does not.
        let estimated_frames = duration
            .map(|d| (d * fps.as_f64()).round() as u64)
            .or(u64::try_from(stream.frames()).ok())
            .filter(|&n| n > 0);
        let frame_ticks = (average.is_some() && average == nominal)
            .then(|| 1.0 / (fps.as_f64() * time_base.as_f64()));
        let turns = stream
            .side_data()
            .find(|d| d.kind() == codec::packet::side_data::Type::DisplayMatrix)
            .map(|d| quarter_turns(d.data()))
            .unwrap_or(0);
        let alpha_decoder = match decoder.id() {
            codec::Id::VP9 => Some("libvpx-vp9"),
            codec::Id::VP8 => Some("libvpx"),
            _ => None,
        }
        .filter(|_| stream.metadata().get("alpha_mode") == Some("1"))
        .filter(|name| ffmpeg::decoder::find_by_name(name).is_some());
        let (_, mut channels, bytes_per_sample) = packed_layout(decoder.format());
        if alpha_decoder.is_some() {
            channels = 4;
        }
        // SAFETY: the parameters outlive the read of one field.
        let field_order = unsafe { (*stream.parameters().as_ptr()).field_order };
        let interlaced = !matches!(
            field_order,
            ffmpeg::ffi::AVFieldOrder::AV_FIELD_PROGRESSIVE | ffmpeg::ffi::AVFieldOrder::AV_FIELD_UNKNOWN
        );
        Ok(Self {
            stream: stream.index(),
            width,
            height,
            fps,
            estimated_frames,
            time_base,
            frame_ticks,
            decoder: alpha_decoder,
            interlaced,
            packed: PackedFormat { channels, bytes_per_sample, quarter_turns: turns },
        })
    }
}

/// Starts decoding `path` from the start; chunks of `chunk_frames` frames arrive on the
/// returned channel (the last may be shorter), then the channel closes. Dropping the receiver
/// stops the thread; its handle says when it has ended.
pub(crate) fn spawn(
    path: PathBuf,
    probe: Probe,
    chunk_frames: usize,
) -> Result<(mpsc::Receiver<Result<HostChunk>>, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = mpsc::channel(2);
    let thread = std::thread::Builder::new()
        .name("framestream-decoder".into())
        .spawn(move || {
            let mut decode = Decode { path: &path, probe: &probe, chunk_frames, sender: &sender };
            // A panic must not read as the end of the file.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode.run()))
                .unwrap_or_else(|_| Err(Error::video(&path, None, "the decoder thread panicked")));
            if let Err(e) = result {
                let _ = sender.blocking_send(Err(e));
            }
        })
        .map_err(|e| Error::io("starting the decoder thread", e))?;
    Ok((receiver, thread))
}

struct Decode<'a> {
    path: &'a Path,
    probe: &'a Probe,
    chunk_frames: usize,
    sender: &'a mpsc::Sender<Result<HostChunk>>,
}

/// Decoding stopped because nobody listens any more.
struct Closed;

impl Decode<'_> {
    fn run(&mut self) -> Result<()> {
        let path = self.path;
        let mut input = open_input(path)?;
        let parameters = input
            .stream(self.probe.stream)
            .ok_or_else(|| Error::video(path, None, "the video stream disappeared"))?
            .parameters();
        let mut options = Dictionary::new();
        options.set("threads", "auto");
        // Damaged data is an error, not a concealed picture.
        options.set("err_detect", "crccheck+bitstream+buffer+explode");
        let codec = match self.probe.decoder {
            Some(name) => ffmpeg::decoder::find_by_name(name),
            None => ffmpeg::decoder::find(parameters.id()),
        }
        .ok_or_else(|| Error::video(path, None, format!("no decoder for {:?}", parameters.id())))?;
        let mut decoder = codec::context::Context::from_parameters(parameters)
            .and_then(|c| c.decoder().open_as_with(codec, options))
            .and_then(|d| d.video())
            .map_err(|e| ff_error(path, None, "opening the decoder", e))?;

        let mut state = Frames::new(self.probe, self.chunk_frames);
        loop {
            // A fresh packet each read: reading into one still holding data leaks that data.
            let mut packet = Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(ff_error(path, Some(state.decoded), "reading", e)),
            }
            if packet.stream() != self.probe.stream {
                continue;
            }
            decoder
                .send_packet(&packet)
                .map_err(|e| ff_error(path, Some(state.decoded), "decoding", e))?;
            if self.receive(&mut decoder, &mut state)?.is_err() {
                return Ok(());
            }
        }
        decoder.send_eof().map_err(|e| ff_error(path, Some(state.decoded), "decoding", e))?;
        if self.receive(&mut decoder, &mut state)?.is_err() {
            return Ok(());
        }
        if state.decoded == 0 {
            return Err(Error::video(path, None, "the video stream holds no frame"));
        }
        if state.pending > 0 {
            let _ = self.send(&mut state);
        }
        Ok(())
    }

    /// Converts every decoded frame ready; `Err(Closed)` when the receiver is gone.
    fn receive(
        &mut self,
        decoder: &mut ffmpeg::decoder::Video,
        state: &mut Frames,
    ) -> Result<std::result::Result<(), Closed>> {
        let mut decoded = frame::Video::empty();
        loop {
            match decoder.receive_frame(&mut decoded) {
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => break,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(ff_error(self.path, Some(state.decoded), "decoding", e)),
            }
            state.check_timestamp(&decoded, self.probe.frame_ticks, self.path)?;
            state.append(&decoded, self.path)?;
            if state.pending == self.chunk_frames && self.send(state).is_err() {
                return Ok(Err(Closed));
            }
        }
        Ok(Ok(()))
    }

    fn send(&mut self, state: &mut Frames) -> std::result::Result<(), Closed> {
        let chunk = HostChunk {
            bytes: std::mem::take(&mut state.bytes),
            frames: state.pending,
            timestamps: std::mem::take(&mut state.timestamps),
        };
        state.pending = 0;
        self.sender.blocking_send(Ok(chunk)).map_err(|_| Closed)
    }
}

/// Decoded frames converted to packed RGB, gathered into a chunk.
struct Frames {
    scaler: Option<scaling::Context>,
    rgb: frame::Video,
    format: format::Pixel,
    row_bytes: usize,
    width: u32,
    height: u32,
    bytes: Vec<u8>,
    pending: usize,
    decoded: u64,
    /// The file's timestamp of the last frame, for the damage check.
    last_timestamp: Option<i64>,
    /// Timestamps of the pending frames, as they leave: increasing, none missing.
    timestamps: Vec<i64>,
    last_given: Option<i64>,
    /// Ticks a frame lasts, for frames the file does not time.
    frame_step: i64,
}

impl Frames {
    fn new(probe: &Probe, chunk_frames: usize) -> Self {
        let packed = probe.packed;
        let format = match (packed.channels, packed.bytes_per_sample) {
            (3, 1) => format::Pixel::RGB24,
            (4, 1) => format::Pixel::RGBA,
            (3, _) => format::Pixel::RGB48LE,
            _ => format::Pixel::RGBA64LE,
        };
        let row_bytes = probe.width * (packed.channels * packed.bytes_per_sample) as usize;
        Self {
            scaler: None,
            rgb: frame::Video::empty(),
            format,
            row_bytes,
            width: probe.width as u32,
            height: probe.height as u32,
            // One frame reserved: the chunk grows as frames arrive, so a damaged header's size
            // costs nothing before a frame is decoded.
            bytes: Vec::with_capacity(row_bytes * probe.height),
            pending: 0,
            decoded: 0,
            last_timestamp: None,
            timestamps: Vec::with_capacity(chunk_frames),
            last_given: None,
            frame_step: probe.fps.frame_ticks(probe.time_base),
        }
    }

    /// The frame's timestamp as it leaves: the file's (FFmpeg's best effort), one frame after
    /// the last when the file has none, and never at or before the last (as players show them).
    fn timestamp(&mut self, decoded: &frame::Video) -> i64 {
        let given = match (decoded.timestamp(), self.last_given) {
            (Some(t), Some(last)) if t > last => t,
            (Some(t), None) => t,
            (_, Some(last)) => last.saturating_add(if decoded.timestamp().is_some() { 1 } else { self.frame_step }),
            (None, None) => 0,
        };
        self.last_given = Some(given);
        given
    }

    /// In a constant-rate stream a jump of more than a frame and a half means frames were
    /// lost to damaged data the demuxer skipped.
    fn check_timestamp(&mut self, decoded: &frame::Video, frame_ticks: Option<f64>, path: &Path) -> Result<()> {
        let Some(now) = decoded.timestamp() else { return Ok(()) };
        if let (Some(last), Some(ticks)) = (self.last_timestamp, frame_ticks)
            && now.saturating_sub(last) as f64 > 1.5 * ticks
        {
            let missing = (now.saturating_sub(last) as f64 / ticks).round() as u64 - 1;
            return Err(Error::video(
                path,
                Some(self.decoded),
                format!("about {missing} frames are missing before this one (damaged data)"),
            ));
        }
        self.last_timestamp = Some(now);
        Ok(())
    }

    fn append(&mut self, decoded: &frame::Video, path: &Path) -> Result<()> {
        let index = self.decoded;
        if (decoded.width(), decoded.height()) != (self.width, self.height) {
            return Err(Error::video(
                path,
                Some(index),
                format!(
                    "the frame size changes from {}x{} to {}x{}",
                    self.width,
                    self.height,
                    decoded.width(),
                    decoded.height()
                ),
            ));
        }
        if self.scaler.as_ref().is_none_or(|s| s.input().format != decoded.format()) {
            self.scaler = Some(self.scaler_for(decoded, path)?);
        }
        let scaler = self.scaler.as_mut().expect("made above");
        scaler
            .run(decoded, &mut self.rgb)
            .map_err(|e| ff_error(path, Some(index), "converting to RGB", e))?;
        let stride = self.rgb.stride(0);
        let data = self.rgb.data(0);
        for y in 0..self.height as usize {
            self.bytes.extend_from_slice(&data[y * stride..y * stride + self.row_bytes]);
        }
        let timestamp = self.timestamp(decoded);
        self.timestamps.push(timestamp);
        self.pending += 1;
        self.decoded += 1;
        Ok(())
    }

    fn scaler_for(&self, decoded: &frame::Video, path: &Path) -> Result<scaling::Context> {
        let flags = scaling::Flags::POINT
            | scaling::Flags::ACCURATE_RND
            | scaling::Flags::FULL_CHR_H_INT
            | scaling::Flags::BITEXACT;
        let mut scaler = scaling::Context::get(
            decoded.format(),
            self.width,
            self.height,
            self.format,
            self.width,
            self.height,
            flags,
        )
        .map_err(|e| ff_error(path, Some(self.decoded), "setting up the RGB conversion", e))?;
        // Untagged video: BT.709 from HD up, BT.601 below (what players assume).
        let space = match decoded.color_space() {
            color::Space::BT709 => ffmpeg::ffi::SWS_CS_ITU709,
            color::Space::FCC => ffmpeg::ffi::SWS_CS_FCC,
            color::Space::SMPTE240M => ffmpeg::ffi::SWS_CS_SMPTE240M,
            color::Space::BT2020NCL | color::Space::BT2020CL => ffmpeg::ffi::SWS_CS_BT2020,
            color::Space::Unspecified if self.width >= 1280 || self.height > 576 => {
                ffmpeg::ffi::SWS_CS_ITU709
            }
            _ => ffmpeg::ffi::SWS_CS_ITU601,
        };
        let full_range = i32::from(decoded.color_range() == color::Range::JPEG);
        // SAFETY: a valid context and swscale's static coefficient tables.
        unsafe {
            let table = ffmpeg::ffi::sws_getCoefficients(space);
            ffmpeg::ffi::sws_setColorspaceDetails(
                scaler.as_mut_ptr(),
                table,
                full_range,
                table,
                1,
                0,
                1 << 16,
                1 << 16,
            );
        }
        Ok(scaler)
    }
}
