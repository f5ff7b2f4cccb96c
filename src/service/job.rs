//! One job: its view (what the API shows and the store keeps), built from the pipeline's
//! progress events, and its latest preview.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::spec::{JobSpec, Plan};
use crate::progress::{Event, EventKind, StageId};

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

/// A preview image, PNG-encoded.
#[derive(Clone)]
pub(crate) struct PreviewPng {
    pub frame: u64,
    pub png: Arc<Vec<u8>>,
}

/// A job the service holds in memory (queued, running, or recently ended).
pub(crate) struct Job {
    pub plan: Plan,
    pub output: PathBuf,
    view: Mutex<JobView>,
    /// Stage ids to their index in `view.stages`.
    stages: Mutex<HashMap<StageId, usize>>,
    preview: Mutex<Option<PreviewPng>>,
    cancel: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Job {
    pub fn new(view: JobView, plan: Plan) -> Self {
        Self {
            output: plan.output.clone(),
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
