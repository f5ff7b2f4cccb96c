//! `VideoWriter`: the async side of an encoder thread, shared by the `save_video` sink and the
//! `SaveVideo` stage. Each chunk is converted to the encoder's planar samples on the device
//! (which also flags frames holding NaN or infinities); only those bytes and flags are read
//! back, and the samples are queued for the encoder (2 chunks at most).

use std::path::{Path, PathBuf};

use framestream_kernels::DeviceBuffer;
use framestream_kernels::planes::{PlaneFormat, planes};
use tokio::sync::mpsc;

use super::encoder::{self, Command, EncoderSpec};
use super::{Codec, FpsMode, PixelFormat, VideoOptions};
use crate::atomic_file::PartialPath;
use crate::chunk::Chunk;
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::stream::{Rational, StreamInfo};

/// Chunks queued for the encoder thread.
const QUEUE: usize = 2;

pub(crate) struct VideoWriter {
    target: PathBuf,
    partial: PathBuf,
    format: PlaneFormat,
    /// Frames of a full chunk: buffers are sized for it so the last chunk reuses their slots.
    chunk_frames: usize,
    /// Frames are timed by their timestamps, not their index.
    stamped: bool,
    commands: Option<mpsc::Sender<Command>>,
    done: tokio::sync::oneshot::Receiver<Result<PathBuf>>,
    finished: bool,
}

/// The first encoder for `codec` this FFmpeg has, or why none fits.
fn pick_encoder(codec: Codec, options: &VideoOptions, target: &Path) -> Result<&'static str> {
    super::init();
    let wanted = options.effective_pixel_format();
    let mut found = None;
    for name in codec.encoders() {
        let Some(candidate) = ffmpeg_next::encoder::find_by_name(name) else { continue };
        // Ours that this encoder takes (all of them when it does not say).
        let takes: Vec<PixelFormat> = match candidate.video().ok().and_then(|v| v.formats()) {
            Some(formats) => {
                let formats: Vec<_> = formats.collect();
                PixelFormat::ALL.into_iter().filter(|p| formats.contains(&p.ffmpeg())).collect()
            }
            None => PixelFormat::ALL.to_vec(),
        };
        if takes.contains(&wanted) {
            return Ok(name);
        }
        found.get_or_insert((*name, takes));
    }
    Err(Error::video(
        target,
        None,
        match found {
            Some((name, takes)) => {
                let takes: Vec<String> = takes.iter().map(ToString::to_string).collect();
                format!("{name} cannot encode {wanted} (it takes {})", takes.join(", "))
            }
            None => format!("this FFmpeg has no {codec} encoder ({})", codec.encoders().join(", ")),
        },
    ))
}

impl VideoWriter {
    /// Checks the options against the stream, starts the encoder thread and waits until the
    /// output is open.
    pub async fn open(
        target: &Path,
        options: &VideoOptions,
        info: &StreamInfo,
        chunk_frames: usize,
        device: &Device,
    ) -> Result<Self> {
        let container = options.effective_container(target)?;
        let pixel_format = options.effective_pixel_format();
        let format = pixel_format.planes();
        format
            .check_size(info.width, info.height)
            .map_err(|why| Error::shape(format!("{pixel_format}: {why}")))?;
        let encoder_name = pick_encoder(options.codec, options, target)?;
        if let Some(audio) = &options.audio_from && !audio.exists() {
            return Err(Error::video(audio, None, "the audio source does not exist"));
        }
        // Re-timed at a rate asked for, else the stream's timestamps or evenly at its rate.
        let (stamped, nominal) = match (options.fps, options.fps_mode, info.time_base) {
            (Some(fps), FpsMode::Passthrough, _) => (false, fps),
            (_, _, time_base) => (time_base.is_some(), info.fps),
        };
        let time_base = match info.time_base {
            Some(time_base) if stamped => time_base,
            _ => Rational { num: nominal.den, den: nominal.num },
        };
        let resample_to = (options.fps_mode == FpsMode::Cfr).then(|| options.fps.unwrap_or(info.fps));
        let output = PartialPath::new(target, options.overwrite)?;
        let partial = output.partial().to_path_buf();
        let spec = EncoderSpec {
            output,
            container,
            encoder: encoder_name,
            pixel_format,
            width: info.width,
            height: info.height,
            time_base,
            nominal,
            resample_to,
            crf: options.crf,
            preset: options.preset.clone(),
            bitrate: options.bitrate,
            encoder_options: options.encoder_options.clone(),
            metadata: options.metadata.clone(),
            audio_from: options.audio_from.clone(),
            panic_after_frames: options.panic_after_frames,
        };
        let thread = encoder::spawn(spec, QUEUE, device.busy())?;
        let mut writer = Self {
            target: target.to_path_buf(),
            partial,
            format,
            chunk_frames,
            stamped,
            commands: Some(thread.commands),
            done: thread.done,
            finished: false,
        };
        match thread.opened.await {
            Ok(Ok(())) => Ok(writer),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(writer.thread_lost()),
        }
    }

    fn thread_lost(&mut self) -> Error {
        self.finished = true;
        Error::video(&self.target, None, "the encoder thread stopped unexpectedly (it panicked)")
    }

    /// The error that ended the thread early.
    async fn thread_error(&mut self) -> Error {
        match (&mut self.done).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => Error::video(&self.target, None, "the encoder finished early"),
            Err(_) => self.thread_lost(),
        }
    }

    /// Converts and queues one chunk.
    pub async fn write(&mut self, chunk: &Chunk) -> Result<()> {
        let device = chunk.device();
        let [frames, h, w, c] = chunk.shape();
        let (format, room) = (self.format, self.format.words(self.chunk_frames.max(frames), w, h));
        let (input, on_lane) = (chunk.clone(), device.clone());
        let (flags, samples) = device
            .compute(move || {
                let flags = on_lane.upload_bytes(&vec![0; frames * 4])?;
                let samples = with_client!(on_lane, client => {
                    let samples = DeviceBuffer::empty_with_room::<_, u32>(client, format.words(frames, w, h), room);
                    planes(client, input.buffer(), (frames, h, w, c), format, &samples, &flags);
                    samples
                });
                Ok((flags, samples))
            })
            .await?;
        let mut read = device.read_buffers(&[&flags, &samples]).await?;
        let mut samples = read.pop().expect("two buffers read");
        let flags = read.pop().expect("two buffers read");
        if let Some(f) = flags.chunks_exact(4).position(|b| b != [0; 4]) {
            return Err(Error::InvalidFrame {
                frame: chunk.first_frame() + f as u64,
                message: "NaN or infinite values".into(),
            });
        }
        samples.truncate(frames * self.format.bytes_per_frame(w, h));
        let timestamps = match (self.stamped, chunk.timestamps()) {
            (true, Some(t)) => t.to_vec(),
            (true, None) => {
                return Err(Error::InvalidFrame {
                    frame: chunk.first_frame(),
                    message: "no timestamps in a timed stream".into(),
                });
            }
            (false, _) => (chunk.first_frame()..chunk.end_frame()).map(|i| i as i64).collect(),
        };
        let sent = match &self.commands {
            Some(commands) => commands.send(Command::Frames { samples, frames, timestamps }).await.is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { Err(self.thread_error().await) }
    }

    /// Ends the stream: drains the encoder, writes the trailer and publishes the file.
    pub async fn finish(mut self) -> Result<PathBuf> {
        let commands = self.commands.take().expect("finish once");
        if commands.send(Command::Finish).await.is_err() {
            return Err(self.thread_error().await);
        }
        match (&mut self.done).await {
            Ok(result) => {
                self.finished = true;
                result
            }
            Err(_) => Err(self.thread_lost()),
        }
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Cancelled: the thread stops when it sees the closed channel and removes the
            // file; removing it here too means nothing is left if the process exits first.
            self.commands = None;
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
