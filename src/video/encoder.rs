//! The encoder thread: opens the output, encodes planar frames as they arrive, copies audio
//! alongside, and on `Finish` drains the encoder, writes the trailer, syncs and publishes the
//! file. Any other end (an error, a dropped channel, a panic) drops the partial file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ffmpeg_next::{self as ffmpeg, Dictionary, Packet, codec, color, encoder, format, frame, media};
use tokio::sync::{mpsc, oneshot};

use super::pacing::{Emit, Pacer};
use super::{Container, PixelFormat, ff_rational};
use crate::atomic_file::PartialPath;
use crate::device::Busy;
use crate::error::{Error, Result};
use crate::stream::Rational;

/// What to open.
pub(crate) struct EncoderSpec {
    pub output: PartialPath,
    pub container: Container,
    pub encoder: &'static str,
    pub pixel_format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Seconds a tick of the frames' timestamps.
    pub time_base: Rational,
    /// The rate the frames nominally have (the last frame lasts one frame of it).
    pub nominal: Rational,
    /// A constant rate to resample to, or `None` to keep the timestamps.
    pub resample_to: Option<Rational>,
    pub crf: Option<u32>,
    pub preset: Option<String>,
    pub bitrate: Option<u64>,
    pub encoder_options: Vec<(String, String)>,
    pub metadata: Vec<(String, String)>,
    pub audio_from: Option<PathBuf>,
    pub panic_after_frames: Option<u64>,
}

pub(crate) enum Command {
    /// Planar samples of `frames` consecutive frames, and their timestamps.
    Frames { samples: Vec<u8>, frames: usize, timestamps: Vec<i64> },
    /// No more frames: finish and publish the file.
    Finish,
}

/// The async side's ends of an encoder thread.
pub(crate) struct EncoderThread {
    pub commands: mpsc::Sender<Command>,
    pub opened: oneshot::Receiver<Result<()>>,
    pub done: oneshot::Receiver<Result<PathBuf>>,
}

/// Starts the thread; chunks queue in a channel of `capacity`.
/// `busy` is held until the thread ends (a cancelled encoder still finishes its frame and
/// removes its file), so settling the device that fed it waits for it.
pub(crate) fn spawn(spec: EncoderSpec, capacity: usize, busy: Busy) -> Result<EncoderThread> {
    let (commands, receiver) = mpsc::channel(capacity);
    let (opened_tx, opened) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("framestream-encoder".into())
        .spawn(move || {
            let _busy = busy;
            run(spec, receiver, opened_tx, done_tx)
        })
        .map_err(|e| Error::io("starting the encoder thread", e))?;
    Ok(EncoderThread { commands, opened, done })
}

fn run(
    spec: EncoderSpec,
    mut commands: mpsc::Receiver<Command>,
    opened: oneshot::Sender<Result<()>>,
    done: oneshot::Sender<Result<PathBuf>>,
) {
    let mut encoder = match Encoder::open(&spec) {
        Ok(encoder) => encoder,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    if opened.send(Ok(())).is_err() {
        return; // The writer is gone; dropping `spec.output` removes the file.
    }
    while let Some(command) = commands.blocking_recv() {
        let result = match command {
            Command::Frames { samples, frames, timestamps } => {
                encoder.encode(&samples, frames, &timestamps, &spec)
            }
            Command::Finish => {
                let result = encoder.finish(&spec).and_then(|()| {
                    sync(spec.output.partial())?;
                    spec.output.commit_blocking()
                });
                let _ = done.send(result);
                return;
            }
        };
        if let Err(e) = result {
            let _ = done.send(Err(e));
            return;
        }
    }
    // The channel closed without `Finish`: cancelled. The contexts and the file go.
}

fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

struct AudioCopy {
    input: format::context::Input,
    input_stream: usize,
    input_time_base: ffmpeg::Rational,
    output_stream: usize,
    output_time_base: ffmpeg::Rational,
    codec: codec::Id,
    /// A packet read but not yet due, with its start in seconds.
    pending: Option<(Packet, f64)>,
    /// The input has no packet left.
    ended: bool,
}

/// The longest a resampled frame may be repeated: longer means a broken timestamp.
const MAX_REPEAT_SECONDS: u64 = 3600;

struct Encoder {
    output: format::context::Output,
    encoder: encoder::Video,
    encoder_time_base: ffmpeg::Rational,
    stream_time_base: ffmpeg::Rational,
    pacer: Pacer,
    /// The frame waiting for the next one's timestamp, and its index.
    held: Option<(frame::Video, u64)>,
    /// Frames received, frames sent to the encoder.
    frames_in: u64,
    frames_written: u64,
    /// Durations of the frames sent, by timestamp, until their packets come out.
    durations: BTreeMap<i64, i64>,
    /// Seconds of video sent to the encoder (the audio is copied up to it).
    until: f64,
    audio: Option<AudioCopy>,
    target: PathBuf,
}

impl Encoder {
    fn error(target: &Path, frame: Option<u64>, what: &str, e: ffmpeg::Error) -> Error {
        Error::video(target, frame, format!("{what}: {e}"))
    }

    fn open(spec: &EncoderSpec) -> Result<Self> {
        super::init();
        let target = spec.output.target().to_path_buf();
        let fail = |what: &str, e: ffmpeg::Error| Self::error(&target, None, what, e);
        let codec = encoder::find_by_name(spec.encoder).ok_or_else(|| {
            Error::video(&target, None, format!("FFmpeg has no encoder {}", spec.encoder))
        })?;
        let mut output = format::output_as(spec.output.partial(), spec.container.muxer())
            .map_err(|e| fail("opening the output", e))?;
        // Muxer descriptions are static in FFmpeg.
        let muxer = unsafe { output.format().as_ptr() };
        // The muxer's codec table is incomplete (MOV takes FFV1 it does not list), so it only
        // explains a refusal by the header.
        let listed = |id: codec::Id| {
            // SAFETY: `muxer` points at a static muxer description.
            unsafe {
                ffmpeg::ffi::avformat_query_codec(muxer, id.into(), ffmpeg::ffi::FF_COMPLIANCE_NORMAL)
                    != 0
            }
        };
        let global_header = output.format().flags().contains(format::Flags::GLOBAL_HEADER);

        let mut video = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(|e| fail("creating the encoder", e))?;
        // Resampled frames count slots of the constant rate; the others keep their ticks.
        let rate = spec.resample_to.unwrap_or(spec.nominal);
        let time_base = match spec.resample_to {
            Some(rate) => Rational { num: rate.den, den: rate.num },
            None => spec.time_base,
        };
        let time_base = ff_rational(time_base);
        video.set_width(spec.width as u32);
        video.set_height(spec.height as u32);
        video.set_format(spec.pixel_format.ffmpeg());
        video.set_time_base(time_base);
        video.set_frame_rate(Some(ff_rational(rate)));
        if spec.pixel_format.is_rgb() {
            video.set_colorspace(color::Space::RGB);
            video.set_color_range(color::Range::JPEG);
        } else {
            video.set_colorspace(color::Space::BT709);
            video.set_color_range(color::Range::MPEG);
        }
        video.set_color_primaries(color::Primaries::BT709);
        video.set_color_transfer_characteristic(color::TransferCharacteristic::BT709);
        if let Some(bitrate) = spec.bitrate {
            video.set_bit_rate(bitrate as usize);
        } else {
            // The context's default is 200 kb/s; constant quality wants no target.
            video.set_bit_rate(0);
        }
        if global_header {
            video.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = Dictionary::new();
        if let Some(crf) = spec.crf {
            options.set("crf", &crf.to_string());
        }
        if let Some(preset) = &spec.preset {
            let key = match spec.encoder {
                "libvpx-vp9" => "deadline",
                "libaom-av1" => "cpu-used",
                _ => "preset",
            };
            options.set(key, preset);
        }
        if spec.encoder == "libx265" {
            // x265 prints its own banner and statistics unless told.
            options.set("x265-params", "log-level=error");
        }
        for (k, v) in &spec.encoder_options {
            options.set(k, v);
        }
        let encoder = video.open_with(options).map_err(|e| fail("opening the encoder", e))?;

        let mut stream = output.add_stream(codec).map_err(|e| fail("adding the video stream", e))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        stream.set_avg_frame_rate(ff_rational(rate));
        stream.set_rate(ff_rational(rate));
        let video_index = stream.index();

        let audio = match &spec.audio_from {
            Some(path) => Some(Self::add_audio(&mut output, path, &target)?),
            None => None,
        };

        let mut metadata = Dictionary::new();
        for (k, v) in &spec.metadata {
            metadata.set(k, v);
        }
        output.set_metadata(metadata);
        if let Err(e) = output.write_header() {
            let mut unlisted = Vec::new();
            if !listed(codec.id()) {
                unlisted.push(format!("{} video", spec.encoder));
            }
            if let Some((a, _)) = &audio && !listed(a.codec) {
                unlisted.push(format!("{:?} audio", a.codec));
            }
            return Err(match unlisted.is_empty() {
                true => fail("writing the header", e),
                false => Error::video(
                    &target,
                    None,
                    format!("{} cannot hold {} ({e})", spec.container, unlisted.join(" or ")),
                ),
            });
        }
        let stream_time_base = output.stream(video_index).expect("the stream was added").time_base();
        let audio = audio.map(|(mut a, index)| {
            a.output_time_base = output.stream(index).expect("the stream was added").time_base();
            a
        });
        Ok(Self {
            output,
            encoder,
            encoder_time_base: time_base,
            stream_time_base,
            pacer: Pacer::new(spec.time_base, spec.nominal, spec.resample_to),
            held: None,
            frames_in: 0,
            frames_written: 0,
            durations: BTreeMap::new(),
            until: 0.0,
            audio,
            target,
        })
    }

    fn add_audio(
        output: &mut format::context::Output,
        path: &Path,
        target: &Path,
    ) -> Result<(AudioCopy, usize)> {
        let input = format::input(path)
            .map_err(|e| Error::video(path, None, format!("opening the audio source: {e}")))?;
        let stream = input
            .streams()
            .best(media::Type::Audio)
            .ok_or_else(|| Error::video(path, None, "no audio stream to copy"))?;
        let parameters = stream.parameters();
        let codec = parameters.id();
        let (input_stream, input_time_base) = (stream.index(), stream.time_base());
        let mut out = output
            .add_stream(encoder::find(codec::Id::None))
            .map_err(|e| Error::video(target, None, format!("adding the audio stream: {e}")))?;
        out.set_parameters(parameters);
        // SAFETY: the stream's parameters are valid; a zero tag lets the muxer pick its own.
        unsafe { (*out.parameters().as_mut_ptr()).codec_tag = 0 };
        let output_stream = out.index();
        let copy = AudioCopy {
            input,
            input_stream,
            input_time_base,
            output_stream,
            output_time_base: input_time_base,
            codec,
            pending: None,
            ended: false,
        };
        Ok((copy, output_stream))
    }

    /// Encodes `frames` frames of planar samples timed `timestamps`. Each frame waits for the
    /// next one, whose timestamp says how long it lasts.
    fn encode(&mut self, samples: &[u8], frames: usize, timestamps: &[i64], spec: &EncoderSpec) -> Result<()> {
        let planes = spec.pixel_format.planes();
        let bps = planes.bytes_per_sample();
        let sizes = planes.plane_sizes(spec.width, spec.height);
        let frame_bytes = planes.bytes_per_frame(spec.width, spec.height);
        assert_eq!(samples.len(), frames * frame_bytes, "whole frames of samples");
        assert_eq!(timestamps.len(), frames, "a timestamp a frame");
        for (f, &pts) in timestamps.iter().enumerate() {
            if spec.panic_after_frames == Some(self.frames_in) {
                panic!("encoder panic injected after {} frames", self.frames_in);
            }
            // A fresh frame each time: the encoder may still hold a reference to the last one.
            let mut frame =
                frame::Video::new(spec.pixel_format.ffmpeg(), spec.width as u32, spec.height as u32);
            let mut at = f * frame_bytes;
            for (p, (w, h)) in sizes.iter().enumerate().filter(|(_, (w, h))| w * h > 0) {
                let row = w * bps;
                let stride = frame.stride(p);
                let data = frame.data_mut(p);
                for y in 0..*h {
                    data[y * stride..y * stride + row].copy_from_slice(&samples[at..at + row]);
                    at += row;
                }
            }
            // Some encoders (ProRes) write the frame's colour tags, not the context's.
            frame.set_color_space(self.encoder.colorspace());
            frame.set_color_range(self.encoder.color_range());
            frame.set_color_primaries(self.encoder.color_primaries());
            frame.set_color_transfer_characteristic(self.encoder.color_transfer_characteristic());
            let emit = self.pacer.push(pts);
            let held = self.held.replace((frame, self.frames_in));
            self.frames_in += 1;
            if let (Some(emit), Some((frame, index))) = (emit, held) {
                self.send(frame, index, emit, spec)?;
            }
        }
        Ok(())
    }

    /// Sends the held frame as `emit` says: once at its time, or into slots of the rate.
    fn send(&mut self, mut frame: frame::Video, index: u64, emit: Emit, spec: &EncoderSpec) -> Result<()> {
        let send = |encoder: &mut encoder::Video, frame: &frame::Video, target: &Path| {
            encoder.send_frame(frame).map_err(|e| Self::error(target, Some(index), "encoding", e))
        };
        self.until = self.pacer.emitted_seconds(&emit);
        match emit {
            Emit::Stamped { pts, duration } => {
                frame.set_pts(Some(pts));
                self.durations.insert(pts, duration);
                send(&mut self.encoder, &frame, &self.target)?;
                self.frames_written += 1;
                self.write_packets()?;
            }
            Emit::Slots(slots) => {
                let rate = spec.resample_to.map_or(1, |r| u64::from(r.num.div_ceil(r.den)));
                if slots.end - slots.start > MAX_REPEAT_SECONDS * rate {
                    return Err(Error::InvalidFrame {
                        frame: index,
                        message: format!(
                            "shown for {} frames at the constant rate (a broken timestamp?)",
                            slots.end - slots.start
                        ),
                    });
                }
                for slot in slots {
                    frame.set_pts(Some(slot as i64));
                    send(&mut self.encoder, &frame, &self.target)?;
                    self.frames_written += 1;
                    self.write_packets()?;
                }
            }
        }
        Ok(())
    }

    /// Writes every packet the encoder has ready, with the audio up to the same time.
    fn write_packets(&mut self) -> Result<()> {
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => break,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(Self::error(&self.target, None, "encoding", e)),
            }
            let duration = packet.pts().and_then(|pts| self.durations.remove(&pts));
            if let Some(duration) = duration.filter(|&d| d > 0) {
                packet.set_duration(duration);
            } else if packet.duration() == 0 {
                packet.set_duration(1);
            }
            packet.set_stream(0);
            packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| Self::error(&self.target, None, "writing a packet", e))?;
        }
        self.copy_audio(self.until)
    }

    /// Copies the audio packets that start before `until` seconds; the first later one waits
    /// for the next call, so at most one packet is held.
    fn copy_audio(&mut self, until: f64) -> Result<()> {
        let Some(audio) = self.audio.as_mut() else { return Ok(()) };
        loop {
            let (mut packet, start) = match audio.pending.take() {
                Some(pending) => pending,
                None if audio.ended => return Ok(()),
                None => {
                    let mut packet = Packet::empty();
                    match packet.read(&mut audio.input) {
                        Ok(()) => {}
                        Err(ffmpeg::Error::Eof) => {
                            audio.ended = true;
                            return Ok(());
                        }
                        Err(e) => return Err(Self::error(&self.target, None, "reading the audio", e)),
                    }
                    if packet.stream() != audio.input_stream {
                        continue;
                    }
                    let ticks = packet.pts().or(packet.dts()).unwrap_or(0);
                    (packet, ticks as f64 * f64::from(audio.input_time_base))
                }
            };
            if start >= until {
                audio.pending = Some((packet, start));
                return Ok(());
            }
            packet.set_stream(audio.output_stream);
            packet.set_position(-1);
            packet.rescale_ts(audio.input_time_base, audio.output_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| Self::error(&self.target, None, "writing audio", e))?;
        }
    }

    fn finish(&mut self, spec: &EncoderSpec) -> Result<()> {
        if let (Some(emit), Some((frame, index))) = (self.pacer.finish(), self.held.take()) {
            self.send(frame, index, emit, spec)?;
        }
        self.encoder
            .send_eof()
            .map_err(|e| Self::error(&self.target, None, "flushing the encoder", e))?;
        self.write_packets()?;
        self.output
            .write_trailer()
            .map_err(|e| Self::error(&self.target, None, "writing the trailer", e))
    }
}
