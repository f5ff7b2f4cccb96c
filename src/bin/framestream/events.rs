//! How the CLI shows a run: progress bars on stderr, JSON lines on stdout, or nothing.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use framestream::prelude::*;
use framestream::sink::Report;
use framestream::StageId;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;

pub struct Output {
    pub quiet: bool,
    pub json: bool,
}

impl Output {
    pub fn new(quiet: bool, json: bool) -> Self {
        Self { quiet, json }
    }

    /// A progress channel and the task that shows its events (done when every sender is
    /// dropped).
    pub fn start_events(&self) -> (mpsc::UnboundedSender<Event>, impl Future<Output = ()>) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Event>();
        let (quiet, json) = (self.quiet, self.json);
        let task = tokio::spawn(async move {
            let mut bars = Bars::new(quiet || json, quiet);
            while let Some(event) = receiver.recv().await {
                if json {
                    println!("{}", event_json(&event));
                }
                bars.show(&event);
            }
        });
        (sender, async move {
            let _ = task.await;
        })
    }

    pub fn done(&self, report: &Report) {
        let i = &report.info;
        let output = report.output.as_deref().map(|p| p.display().to_string());
        if self.json {
            let line = json!({
                "event": "done", "frames": report.frames, "width": i.width, "height": i.height,
                "channels": i.channels, "fps": i.fps.to_string(), "output": output,
                "seconds": report.elapsed.as_secs_f64(),
            });
            println!("{line}");
        } else if !self.quiet {
            eprintln!(
                "{} frames of {}x{} to {} in {:.2} s ({:.1} frames/s)",
                report.frames,
                i.width,
                i.height,
                output.unwrap_or_default(),
                report.elapsed.as_secs_f64(),
                report.frames_per_second()
            );
        }
    }

    /// The service listens; what it found of a previous run's jobs: left running (now
    /// interrupted), left queued (queued again, or failed when they no longer pass).
    pub fn serving(&self, address: &std::net::SocketAddr, service: &framestream::service::Service) {
        let device = service.device().info();
        let (interrupted, requeued, failed) =
            (service.interrupted_at_start(), service.requeued_at_start(), service.failed_at_start());
        if self.json {
            println!(
                "{}",
                json!({
                    "event": "serving",
                    "address": address.to_string(),
                    "device": device.to_string(),
                    "interrupted": interrupted,
                    "requeued": requeued,
                    "failed": failed,
                })
            );
        } else if !self.quiet {
            if !interrupted.is_empty() {
                eprintln!("marked {} job(s) a previous run left running interrupted", interrupted.len());
            }
            if !requeued.is_empty() {
                eprintln!("queued again {} job(s) a previous run left queued", requeued.len());
            }
            if !failed.is_empty() {
                eprintln!("failed {} job(s) a previous run left queued: their files or roots changed", failed.len());
            }
            eprintln!("framestream serving on http://{address}/ ({device})");
        }
    }

    pub fn error(&self, error: &Error) {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        if self.json {
            println!("{}", json!({ "event": "error", "message": message }));
        }
        eprintln!("error: {message}");
    }
}

fn event_json(event: &Event) -> serde_json::Value {
    let (kind, extra) = match &event.kind {
        EventKind::Started { total_frames } => ("started", json!({ "total_frames": total_frames })),
        EventKind::Progress { frames_done } => ("progress", json!({ "frames_done": frames_done })),
        EventKind::Preview { frame, path } => (
            "preview",
            json!({ "frame": frame, "path": path.as_ref().map(|p| p.display().to_string()) }),
        ),
        EventKind::Retry { reason } => ("retry", json!({ "reason": reason })),
        EventKind::Info { message } => ("info", json!({ "message": message })),
        EventKind::Finished => ("finished", json!({})),
        EventKind::Failed { error } => ("failed", json!({ "error": error })),
        EventKind::Cancelled => ("cancelled", json!({})),
        _ => ("other", json!({})),
    };
    let mut line = json!({ "event": kind, "stage": event.stage.0, "name": &*event.name });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    line
}

/// One bar per stage.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<StageId, ProgressBar>,
    quiet: bool,
}

impl Bars {
    fn new(hidden: bool, quiet: bool) -> Self {
        let target =
            if hidden { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Self { multi: MultiProgress::with_draw_target(target), bars: HashMap::new(), quiet }
    }

    /// A line for people on stderr: above the bars, or plainly where they are hidden (stderr
    /// is not a terminal).
    fn say(&self, line: String) {
        if self.quiet {
            return;
        }
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    fn show(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Started { total_frames } => {
                let bar = match total_frames {
                    Some(total) => ProgressBar::new(*total).with_style(
                        ProgressStyle::with_template(
                            "{prefix:>12} [{bar:30}] {pos}/{len} frames {per_sec} ETA {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{prefix:>12} {spinner} {pos} frames {per_sec}")
                            .expect("valid template"),
                    ),
                };
                let bar = self.multi.add(bar.with_prefix(event.name.to_string()));
                bar.enable_steady_tick(Duration::from_millis(200));
                self.bars.insert(event.stage, bar);
            }
            EventKind::Progress { frames_done } => {
                if let Some(bar) = self.bars.get(&event.stage) {
                    // A container's count is an estimate the stream may pass.
                    if bar.length().is_some_and(|len| *frames_done > len) {
                        bar.set_length(*frames_done);
                    }
                    bar.set_position(*frames_done);
                }
            }
            EventKind::Preview { .. } => {}
            EventKind::Retry { reason: message } | EventKind::Info { message } => {
                self.say(format!("{}: {message}", event.name));
            }
            EventKind::Finished => {
                if let Some(bar) = self.bars.remove(&event.stage) {
                    bar.finish();
                }
            }
            EventKind::Failed { .. } | EventKind::Cancelled => {
                if let Some(bar) = self.bars.remove(&event.stage) {
                    bar.abandon();
                }
            }
            _ => {}
        }
    }
}
