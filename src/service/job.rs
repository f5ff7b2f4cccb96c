//! One job: its view (what the API shows and the store keeps), built from the pipeline's
//! progress events, and its latest preview.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::spec::{JobSpec, Plan};
use crate::progress::{Event, EventKind, StageId};
use crate::stage::PreviewImage;
use crate::sync::lock;

/// Most messages (model information, retries) a job keeps.
const MAX_MESSAGES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a running slot.
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// The service stopped while the job was queued or running.
    Interrupted,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Finished,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown job state `{s}` (one of {})", names.join(", "))
        })
    }
}

/// One stage of a running or ended job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    pub name: String,
    pub frames_done: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_frames: Option<u64>,
    /// running, finished, failed or cancelled.
    pub state: String,
}

/// A job as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: u64,
    pub state: JobState,
    pub spec: JobSpec,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Frames the output has received.
    pub frames_done: u64,
    /// Frames the output will receive, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_frames: Option<u64>,
    /// 0 to 1, when the total is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_second: Option<f64>,
    /// Every stage of the pipeline, source first.
    pub stages: Vec<StageView>,
    /// The frame of the latest preview (`/v1/jobs/{id}/preview`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_frame: Option<u64>,
    /// What the stages reported for people (the model a decoder recognised, retries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

pub(crate) fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The stages that end a pipeline and count the output's frames.
const SINKS: [&str; 2] = ["save_video", "write_tensor"];

/// Previews are kept at most this many pixels wide or high (a 4K frame would be 25 MB a job).
const PREVIEW_SIDE: usize = 640;

/// `image` reduced by a whole factor (averaging each block) until it fits [`PREVIEW_SIDE`].
pub(crate) fn shrink(image: PreviewImage) -> PreviewImage {
    let step = image.width.max(image.height).div_ceil(PREVIEW_SIDE).max(1);
    if step == 1 {
        return image;
    }
    let (width, height) = (image.width.div_ceil(step), image.height.div_ceil(step));
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (mut sum, mut count) = ([0u32; 3], 0u32);
            for sy in y * step..((y + 1) * step).min(image.height) {
                for sx in x * step..((x + 1) * step).min(image.width) {
                    let at = (sy * image.width + sx) * 3;
                    for (c, total) in sum.iter_mut().enumerate() {
                        *total += u32::from(image.rgb[at + c]);
                    }
                    count += 1;
                }
            }
            rgb.extend(sum.map(|total| ((total + count / 2) / count) as u8));
        }
    }
    PreviewImage { width, height, rgb, ..image }
}

/// A preview image, PNG-encoded.
#[derive(Clone)]
pub(crate) struct PreviewPng {
    pub frame: u64,
    pub png: Arc<Vec<u8>>,
}

/// A job the service holds in memory (queued, running, or recently ended).
pub(crate) struct Job {
    pub plan: Plan,
    view: Mutex<JobView>,
    /// Stage ids to their index in `view.stages`.
    stages: Mutex<HashMap<StageId, usize>>,
    preview: Mutex<Option<PreviewPng>>,
    cancel: watch::Sender<bool>,
}

impl Job {
    pub fn new(view: JobView, plan: Plan) -> Self {
        Self {
            plan,
            view: Mutex::new(view),
            stages: Mutex::default(),
            preview: Mutex::default(),
            cancel: watch::channel(false).0,
        }
    }

    pub fn id(&self) -> u64 {
        lock(&self.view).id
    }

    pub fn view(&self) -> JobView {
        lock(&self.view).clone()
    }

    pub fn state(&self) -> JobState {
        lock(&self.view).state
    }

    pub fn update<T>(&self, change: impl FnOnce(&mut JobView) -> T) -> T {
        change(&mut lock(&self.view))
    }

    pub fn preview(&self) -> Option<PreviewPng> {
        lock(&self.preview).clone()
    }

    pub fn set_preview(&self, preview: PreviewPng) {
        self.update(|view| view.preview_frame = Some(preview.frame));
        *lock(&self.preview) = Some(preview);
    }

    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    /// Resolves once the job is asked to stop.
    pub async fn cancelled(&self) {
        let mut receiver = self.cancel.subscribe();
        let _ = receiver.wait_for(|cancelled| *cancelled).await;
    }

    /// Folds one pipeline event into the view.
    pub fn on_event(&self, event: &Event) {
        let mut stages = lock(&self.stages);
        let mut view = lock(&self.view);
        let index = match stages.get(&event.stage) {
            Some(index) => *index,
            None => {
                view.stages.push(StageView {
                    name: event.name.to_string(),
                    frames_done: 0,
                    total_frames: None,
                    state: "running".into(),
                });
                stages.insert(event.stage, view.stages.len() - 1);
                view.stages.len() - 1
            }
        };
        let stage = &mut view.stages[index];
        match &event.kind {
            EventKind::Started { total_frames } => stage.total_frames = *total_frames,
            EventKind::Progress { frames_done } => stage.frames_done = *frames_done,
            EventKind::Finished => stage.state = "finished".into(),
            EventKind::Failed { .. } => stage.state = "failed".into(),
            EventKind::Cancelled => stage.state = "cancelled".into(),
            EventKind::Info { message } | EventKind::Retry { reason: message } if view.messages.len() < MAX_MESSAGES => {
                view.messages.push(format!("{}: {message}", event.name));
            }
            _ => {}
        }
        if SINKS.contains(&&*event.name) {
            let stage = view.stages[index].clone();
            view.frames_done = stage.frames_done;
            view.total_frames = stage.total_frames;
            view.progress = stage.total_frames.filter(|t| *t > 0).map(|t| (stage.frames_done as f64 / t as f64).min(1.0));
            if let Some(started) = view.started_at {
                let seconds = now() - started;
                view.frames_per_second = (seconds > 0.0).then(|| stage.frames_done as f64 / seconds);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_shrink_by_block_averages() {
        let (width, height) = (1500, 7);
        let rgb: Vec<u8> = (0..width * height * 3).map(|i| ((i / 3) % width % 2 * 200) as u8).collect();
        let small = shrink(PreviewImage { stage: None, frame: 3, width, height, rgb });
        // 1500 wide needs a factor 3: 500 × 3, the last row block only 1 high.
        assert_eq!((small.width, small.height, small.frame), (500, 3, 3));
        assert_eq!(small.rgb.len(), 500 * 3 * 3);
        // Columns alternate 0, 200: blocks of three average to 67 or 133.
        assert_eq!(&small.rgb[..6], &[67, 67, 67, 133, 133, 133]);
        let tiny = PreviewImage { stage: None, frame: 0, width: 4, height: 2, rgb: vec![9; 24] };
        assert_eq!(shrink(tiny.clone()), tiny);
    }
}
