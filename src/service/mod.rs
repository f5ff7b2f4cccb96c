//! The job service (cargo feature `server`): jobs submitted as JSON ([`JobSpec`]) run on one
//! device, a bounded number at a time behind a bounded queue, with models loaded once and
//! shared, progress and previews published as they come, and records kept in SQLite.
//! [`Service::router`] serves it over HTTP as an axum [`Router`](axum::Router) that an
//! application can mount; `framestream serve` runs it alone.
//!
//! ```no_run
//! # async fn run() -> framestream::Result<()> {
//! use framestream::service::{Service, ServiceConfig};
//!
//! let service = Service::new(ServiceConfig::new("inputs", "outputs", "jobs.sqlite")).await?;
//! let app = axum::Router::new().nest("/framestream", service.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # Ok(())
//! # }
//! ```

mod http;
mod job;
mod models;
mod paths;
mod spec;
mod store;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, broadcast, mpsc, watch};

pub use job::{JobState, JobView, StageView};
pub use models::{ModelKind, ModelView};
pub use paths::Roots;
pub use spec::{JobSpec, OutputSpec, SourceSpec, StageSpec};

use crate::device::{Device, DeviceKind};
use crate::error::{Error, Result};
use crate::ext::SourceExt;
use crate::model::{Latent, VideoVae};
use crate::sink::{Report, TensorFileOptions, save_video, write_tensor};
use crate::source::{LtxVaeDecode, TestPattern, VideoFile, WanVaeDecode};
use crate::stage::{Interpolate, Preview, Upscale};
use crate::stream::{OpenRequest, Source};
use crate::sync::lock;
use job::{Job, PreviewPng, now};
use models::{JobModels, Models};
use spec::{Plan, PlannedSource, PlannedStage};
use store::{Record, Store};

/// Ended jobs kept in memory (with their last preview) besides their records.
const RECENT_JOBS: usize = 256;
/// Least time between two progress updates of one job.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What happens to running jobs when the service shuts down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnShutdown {
    /// Cancel them (their partial outputs disappear).
    #[default]
    Cancel,
    /// Let them finish (queued jobs are cancelled either way).
    Finish,
}

impl std::str::FromStr for OnShutdown {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cancel" => Ok(OnShutdown::Cancel),
            "finish" => Ok(OnShutdown::Finish),
            _ => Err(Error::config(format!("`{s}`: on shutdown, cancel or finish"))),
        }
    }
}

/// How a service runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Jobs read files only inside this folder…
    pub inputs: PathBuf,
    /// …and write only inside this one.
    pub outputs: PathBuf,
    /// The SQLite file of job records (created if missing).
    pub database: PathBuf,
    /// Jobs running at once.
    pub running_jobs: usize,
    /// Jobs waiting for a slot; a submission beyond them is refused (HTTP 429).
    pub queued_jobs: usize,
    /// Requests must carry `Authorization: Bearer TOKEN` (or `?access_token=TOKEN`).
    pub token: Option<String>,
    pub device: DeviceKind,
    /// Device memory all jobs reserve together (`None`: no limit).
    pub memory_budget: Option<u64>,
    /// A preview image every this many frames, unless a job says otherwise (0: none).
    pub preview_every: u64,
    /// How long a model no job uses stays loaded (its weights on the device).
    pub model_idle: Duration,
    pub on_shutdown: OnShutdown,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// `Host` headers the API answers (e.g. `127.0.0.1:8080`, `localhost:8080`); empty: any.
    /// A page on another site that points its own name at 127.0.0.1 (DNS rebinding) sends
    /// its name, so naming the hosts keeps it from reading the API.
    pub allowed_hosts: Vec<String>,
}

impl ServiceConfig {
    pub fn new(inputs: impl Into<PathBuf>, outputs: impl Into<PathBuf>, database: impl Into<PathBuf>) -> Self {
        Self {
            inputs: inputs.into(),
            outputs: outputs.into(),
            database: database.into(),
            running_jobs: 2,
            queued_jobs: 64,
            token: None,
            device: DeviceKind::Auto,
            memory_budget: None,
            preview_every: 24,
            model_idle: Duration::from_secs(600),
            on_shutdown: OnShutdown::Cancel,
            max_body_bytes: 64 << 10,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Why the service refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no job {0}")]
    NotFound(u64),
    #[error("{0}")]
    Conflict(String),
    #[error("the queue is full ({0} jobs wait): try again later")]
    QueueFull(usize),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for ServiceError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidConfig(message) => ServiceError::BadRequest(message),
            Error::OutputExists(path) => {
                ServiceError::Conflict(format!("{} already exists (set output.overwrite to replace it)", path.display()))
            }
            Error::Io { .. } => ServiceError::Internal(error.to_string()),
            other => ServiceError::BadRequest(other.to_string()),
        }
    }
}

/// Jobs held in memory.
#[derive(Default)]
struct Live {
    /// Queued and running.
    active: BTreeMap<u64, Arc<Job>>,
    /// Ended, newest last.
    recent: VecDeque<Arc<Job>>,
    /// Outputs of submissions being recorded.
    pending: Vec<PathBuf>,
}

struct Inner {
    config: ServiceConfig,
    roots: Roots,
    database: PathBuf,
    device: Device,
    store: Store,
    models: Models,
    live: Mutex<Live>,
    slots: Arc<Semaphore>,
    updates: broadcast::Sender<JobView>,
    accepting: AtomicBool,
    /// Frames written by jobs that ended (in this process).
    frames_ended: AtomicU64,
    /// Active jobs, to wait for them at shutdown.
    active: watch::Sender<usize>,
    /// Sent when a job leaves the queue (it starts or ends): the next one's turn may have come.
    queue_moved: watch::Sender<()>,
    /// Set once shut down: event streams end.
    closed: watch::Sender<bool>,
    interrupted_at_start: Vec<u64>,
    requeued_at_start: Vec<u64>,
    failed_at_start: Vec<u64>,
}

/// The job service (clones share it).
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("roots", &self.inner.roots).finish_non_exhaustive()
    }
}

/// Runs blocking store work off the runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("job records", std::io::Error::other(e.to_string())))?
}

impl Service {
    /// Opens the device and the job records; jobs a previous process left running are marked
    /// interrupted and their partial outputs removed, the ones it left queued are queued again
    /// (checked anew against the roots; refused ones fail).
    pub async fn new(config: ServiceConfig) -> Result<Self> {
        if config.running_jobs == 0 {
            return Err(Error::config("a service needs at least one running slot"));
        }
        let roots = Roots::new(&config.inputs, &config.outputs)?;
        let device = Device::open(config.device)?;
        if config.memory_budget.is_some() {
            device.set_memory_budget(config.memory_budget);
        }
        let path = config.database.clone();
        let (store, interrupted_at_start, queued) = blocking(move || Store::open(&path)).await?;
        let database = config.database.canonicalize().map_err(|e| Error::io("the job records' path", e))?;
        // Checked anew: the roots or the files may have changed since.
        let (mut requeued, mut failed_at_start) = (Vec::new(), Vec::new());
        for mut record in queued {
            match plan(&record.view.spec, &roots, &config, &database) {
                Ok(plan) => requeued.push(Arc::new(Job::new(record.view, plan))),
                Err(e) => {
                    record.view.state = JobState::Failed;
                    record.view.finished_at = Some(now());
                    record.view.error = Some(format!("queued again at start-up, the job no longer passes: {e}"));
                    failed_at_start.push(record.view.id);
                    let store = store.clone();
                    blocking(move || store.put(&record)).await?;
                }
            }
        }
        let live = Live { active: requeued.iter().map(|job| (job.id(), job.clone())).collect(), ..Live::default() };
        let service = Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.running_jobs)),
                config,
                roots,
                database,
                device,
                store,
                models: Models::default(),
                live: Mutex::new(live),
                updates: broadcast::channel(1024).0,
                accepting: AtomicBool::new(true),
                frames_ended: AtomicU64::new(0),
                active: watch::channel(requeued.len()).0,
                queue_moved: watch::channel(()).0,
                closed: watch::channel(false).0,
                interrupted_at_start,
                requeued_at_start: requeued.iter().map(|job| job.id()).collect(),
                failed_at_start,
            }),
        };
        for job in requeued {
            tokio::spawn(run(service.inner.clone(), job));
        }
        tokio::spawn(unload_idle_models(Arc::downgrade(&service.inner)));
        Ok(service)
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub fn roots(&self) -> &Roots {
        &self.inner.roots
    }

    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Jobs found running (and marked interrupted) when the service started.
    pub fn interrupted_at_start(&self) -> &[u64] {
        &self.inner.interrupted_at_start
    }

    /// Jobs found queued and queued again when the service started.
    pub fn requeued_at_start(&self) -> &[u64] {
        &self.inner.requeued_at_start
    }

    /// Jobs found queued that no longer passed their checks (marked failed) at start-up.
    pub fn failed_at_start(&self) -> &[u64] {
        &self.inner.failed_at_start
    }

    /// Checks `spec`, records it and queues it; the job starts when a slot is free.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobView, ServiceError> {
        let inner = &self.inner;
        if !inner.accepting.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        let plan = plan(&spec, &inner.roots, &inner.config, &inner.database)?;
        let mut view = JobView {
            id: 0,
            state: JobState::Queued,
            spec,
            created_at: now(),
            started_at: None,
            finished_at: None,
            error: None,
            frames_done: 0,
            total_frames: None,
            progress: None,
            frames_per_second: None,
            stages: Vec::new(),
            preview_frame: None,
            messages: Vec::new(),
        };
        // The job's place in the queue is held while its record is written.
        {
            let mut live = lock(&inner.live);
            if !inner.accepting.load(Ordering::SeqCst) {
                return Err(ServiceError::ShuttingDown);
            }
            let capacity = inner.config.running_jobs + inner.config.queued_jobs;
            if live.active.len() + live.pending.len() >= capacity {
                return Err(ServiceError::QueueFull(inner.config.queued_jobs));
            }
            if live.active.values().any(|job| job.plan.output == plan.output) || live.pending.contains(&plan.output) {
                return Err(ServiceError::Conflict(format!("another job writes {}", plan.output.display())));
            }
            live.pending.push(plan.output.clone());
            inner.active.send_replace(live.active.len() + live.pending.len());
        }
        let store = inner.store.clone();
        let output = plan.output.clone();
        let recorded = blocking(move || store.insert(&mut view, &output).map(|()| view)).await;
        let mut live = lock(&inner.live);
        if let Some(at) = live.pending.iter().position(|p| *p == plan.output) {
            live.pending.swap_remove(at);
        }
        let view = match recorded {
            Ok(view) => view,
            Err(e) => {
                inner.active.send_replace(live.active.len() + live.pending.len());
                return Err(e.into());
            }
        };
        let job = Arc::new(Job::new(view.clone(), plan));
        live.active.insert(view.id, job.clone());
        inner.active.send_replace(live.active.len() + live.pending.len());
        // A shutdown that began while the record was written did not see this job.
        if !inner.accepting.load(Ordering::SeqCst) {
            job.cancel();
        }
        drop(live);
        inner.publish(view.clone());
        tokio::spawn(run(inner.clone(), job));
        Ok(view)
    }

    /// A job in memory or on record.
    pub async fn job(&self, id: u64) -> Result<JobView, ServiceError> {
        Ok(self.record(id).await?.view)
    }

    async fn record(&self, id: u64) -> Result<Record, ServiceError> {
        if let Some(job) = self.inner.find(id) {
            return Ok(Record { view: job.view(), output: job.plan.output.clone() });
        }
        let store = self.inner.store.clone();
        blocking(move || store.get(id)).await?.ok_or(ServiceError::NotFound(id))
    }

    /// The latest `limit` jobs, newest first (`state`: only those).
    pub async fn jobs(&self, limit: usize, state: Option<JobState>) -> Result<Vec<JobView>, ServiceError> {
        let store = self.inner.store.clone();
        let mut views = blocking(move || store.list(limit, state)).await?;
        // Jobs in memory are fresher than their records.
        for view in &mut views {
            if let Some(job) = self.inner.find(view.id) {
                *view = job.view();
            }
        }
        views.retain(|view| state.is_none_or(|state| view.state == state));
        Ok(views)
    }

    /// Asks a queued or running job to stop; its partial output is removed.
    pub async fn cancel(&self, id: u64) -> Result<JobView, ServiceError> {
        let Some(job) = self.inner.find(id) else {
            let view = self.job(id).await?;
            return Err(ServiceError::Conflict(format!("job {id} has already ended ({})", view.state.as_str())));
        };
        if job.view().state.is_terminal() {
            return Err(ServiceError::Conflict(format!("job {id} has already ended ({})", job.view().state.as_str())));
        }
        job.cancel();
        Ok(job.view())
    }

    /// The finished job's output file.
    pub async fn output(&self, id: u64) -> Result<PathBuf, ServiceError> {
        let record = self.record(id).await?;
        if record.view.state != JobState::Finished {
            return Err(ServiceError::Conflict(format!("job {id} is {}, not finished", record.view.state.as_str())));
        }
        // The file must still be inside the output root (not replaced by a link since).
        let resolved = record.output.canonicalize().map_err(|_| {
            ServiceError::Conflict(format!("job {id}'s output is gone"))
        })?;
        if !resolved.starts_with(self.inner.roots.outputs()) {
            return Err(ServiceError::Conflict(format!("job {id}'s output now leads outside the output root")));
        }
        Ok(resolved)
    }

    /// The latest preview of a job, as PNG, with its frame: a live job's, else the one kept
    /// when it ended.
    pub async fn preview(&self, id: u64) -> Result<Option<(u64, Arc<Vec<u8>>)>, ServiceError> {
        if let Some(job) = self.inner.find(id) {
            return Ok(job.preview().map(|preview| (preview.frame, preview.png)));
        }
        let store = self.inner.store.clone();
        let kept = blocking(move || store.preview(id)).await?;
        Ok(kept.map(|(frame, png)| (frame, Arc::new(png))))
    }

    /// Every change of every job from now on (a lagging receiver misses some).
    pub fn subscribe(&self) -> broadcast::Receiver<JobView> {
        self.inner.updates.subscribe()
    }

    /// Resolves when the service has shut down.
    pub async fn closed(&self) {
        let mut closed = self.inner.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Models loaded so far.
    pub fn models(&self) -> Vec<ModelView> {
        self.inner.models.list(self.inner.roots.inputs())
    }

    /// Stops accepting jobs, cancels the queued ones and the running ones (or lets them
    /// finish, per [`ServiceConfig::on_shutdown`]), and resolves once none is left. Event
    /// streams end.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.accepting.store(false, Ordering::SeqCst);
        let jobs: Vec<Arc<Job>> = lock(&inner.live).active.values().cloned().collect();
        for job in jobs {
            if inner.config.on_shutdown == OnShutdown::Cancel || job.view().state == JobState::Queued {
                job.cancel();
            }
        }
        let mut active = inner.active.subscribe();
        let _ = active.wait_for(|n| *n == 0).await;
        // Each job has settled its own stream; model uploads went to the weights stream. (Not
        // `settle_all`: an application embedding the service may run pipelines of its own.)
        if let Err(e) = inner.device.sync_all().await {
            tracing::warn!("at shutdown: {e}");
        }
        inner.closed.send_replace(true);
    }

    /// Cancels every queued and running job.
    pub fn cancel_all(&self) {
        let jobs: Vec<Arc<Job>> = lock(&self.inner.live).active.values().cloned().collect();
        jobs.iter().for_each(|job| job.cancel());
    }

    /// The Prometheus text exposition of the service's state.
    pub async fn metrics(&self) -> Result<String, ServiceError> {
        let inner = self.inner.clone();
        let store = inner.store.clone();
        let counts = blocking(move || store.counts()).await?;
        let (running, queued, frames, rate): (usize, usize, u64, f64) = {
            // Under the lock that moves an ending job's frames to `frames_ended`.
            let live = lock(&inner.live);
            let views: Vec<JobView> = live.active.values().map(|j| j.view()).collect();
            (
                views.iter().filter(|v| v.state == JobState::Running).count(),
                views.iter().filter(|v| v.state == JobState::Queued).count(),
                inner.frames_ended.load(Ordering::Relaxed) + views.iter().map(|v| v.frames_done).sum::<u64>(),
                // Folded from +0: an empty f64 sum is -0.
                views.iter().filter_map(|v| v.frames_per_second).fold(0.0, |a, b| a + b),
            )
        };
        let device = inner.device.clone();
        let usage = blocking(move || {
            let lanes = device.lanes_memory_usage()?;
            let weights = device.weights_memory_usage()?;
            Ok(lanes.bytes_in_use + weights.bytes_in_use)
        })
        .await
        .ok();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP framestream_{name} {help}\n# TYPE framestream_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "framestream_{name}{labels} {value}");
            }
        };
        let by_state: Vec<(String, f64)> = JobState::ALL
            .iter()
            .map(|state| {
                let recorded = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
                // Records of active jobs lag behind their state by a write; count those live.
                let n = match state {
                    JobState::Running => running as u64,
                    JobState::Queued => queued as u64,
                    _ => recorded,
                };
                (format!("{{state=\"{}\"}}", state.as_str()), n as f64)
            })
            .collect();
        metric("jobs", "gauge", "Jobs by state (all records).", &by_state);
        metric("frames_total", "counter", "Frames written by this process's jobs.", &[(String::new(), frames as f64)]);
        metric("frames_per_second", "gauge", "Output frames per second of the running jobs together.", &[(String::new(), rate)]);
        metric("running_slots", "gauge", "Jobs that may run at once.", &[(String::new(), inner.config.running_jobs as f64)]);
        metric("queue_capacity", "gauge", "Jobs that may wait for a slot.", &[(String::new(), inner.config.queued_jobs as f64)]);
        metric("models_loaded", "gauge", "Models loaded and shared by jobs.", &[(String::new(), self.inner.models.count() as f64)]);
        metric(
            "device_memory_reserved_bytes",
            "gauge",
            "Device memory the jobs have reserved from the budget.",
            &[(String::new(), inner.device.memory_reserved() as f64)],
        );
        if let Some(budget) = inner.device.memory_budget() {
            metric("device_memory_budget_bytes", "gauge", "The jobs' device memory budget.", &[(String::new(), budget as f64)]);
        }
        if let Some(bytes) = usage {
            metric(
                "device_memory_in_use_bytes",
                "gauge",
                "Device memory in live allocations (jobs and model weights).",
                &[(String::new(), bytes as f64)],
            );
        }
        Ok(out)
    }
}

impl Inner {
    fn find(&self, id: u64) -> Option<Arc<Job>> {
        let live = lock(&self.live);
        live.active.get(&id).cloned().or_else(|| live.recent.iter().find(|job| job.id() == id).cloned())
    }

    fn publish(&self, view: JobView) {
        // No receiver is not an error: nobody is watching.
        let _ = self.updates.send(view);
    }

    /// Writes the job's record; a failure is logged (the job itself goes on).
    async fn persist(&self, job: &Job) {
        let store = self.store.clone();
        let record = Record { view: job.view(), output: job.plan.output.clone() };
        if let Err(e) = blocking(move || store.put(&record)).await {
            tracing::error!("job {}: {e}", job.id());
        }
    }

    /// A running slot for job `id`, once every job queued before it has started or ended:
    /// jobs start in the order they were submitted (by id, which also puts the jobs queued
    /// again at start-up first).
    async fn slot_in_turn(&self, id: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let mut moved = self.queue_moved.subscribe();
        loop {
            let first = lock(&self.live).active.values().find(|job| job.state() == JobState::Queued).map(|job| job.id());
            if first.is_none_or(|first| first == id) {
                return self.slots.clone().acquire_owned().await.ok();
            }
            let _ = moved.changed().await;
        }
    }

    /// Moves an ended job from the active ones to the recent ones.
    fn retire(&self, job: &Arc<Job>) {
        let mut live = lock(&self.live);
        live.active.remove(&job.id());
        self.frames_ended.fetch_add(job.view().frames_done, Ordering::Relaxed);
        live.recent.push_back(job.clone());
        while live.recent.len() > RECENT_JOBS {
            live.recent.pop_front();
        }
        self.active.send_replace(live.active.len() + live.pending.len());
        self.queue_moved.send_replace(());
    }
}

/// `spec` checked and resolved against the roots; its output must not be the job records.
fn plan(spec: &JobSpec, roots: &Roots, config: &ServiceConfig, database: &std::path::Path) -> Result<Plan, ServiceError> {
    let plan = spec.plan(roots, config.preview_every)?;
    let name = plan.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let records = database.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if plan.output.parent() == database.parent() && name.starts_with(&records) {
        return Err(ServiceError::BadRequest("output.path names the service's job records".into()));
    }
    Ok(plan)
}

/// Unloads models no job has used for the configured time, while the service lives.
async fn unload_idle_models(service: std::sync::Weak<Inner>) {
    let Some(idle) = service.upgrade().map(|inner| inner.config.model_idle) else { return };
    let mut tick = tokio::time::interval((idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(60)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = service.upgrade() else { return };
        let unloaded = inner.models.unload_idle(idle);
        if unloaded > 0 {
            tracing::info!("unloaded {unloaded} model(s) no job used for {idle:?}");
        }
    }
}

/// A job's life: wait for a slot, run, record the end.
async fn run(inner: Arc<Inner>, job: Arc<Job>) {
    let permit = tokio::select! {
        biased;
        _ = job.cancelled() => None,
        permit = inner.slot_in_turn(job.id()) => permit,
    };
    let result = match &permit {
        None => None,
        Some(_) => {
            job.update(|view| {
                view.state = JobState::Running;
                view.started_at = Some(now());
            });
            inner.queue_moved.send_replace(());
            inner.persist(&job).await;
            inner.publish(job.view());
            let (event_sender, events) = mpsc::unbounded_channel();
            let request = OpenRequest::new(&inner.device)
                .with_progress(event_sender)
                .with_chunk_frames(job.plan.chunk_frames);
            let device = request.device().clone();
            // A task of its own, so a panic in a stage fails the job instead of losing it.
            let mut pipeline = tokio::spawn(execute(inner.clone(), job.clone(), request, events));
            let outcome = tokio::select! {
                biased;
                _ = job.cancelled() => None,
                outcome = &mut pipeline => Some(outcome),
            };
            let result = match outcome {
                Some(Ok(result)) => Some(result),
                Some(Err(e)) => Some(Err(Error::Device(format!("the job's pipeline failed: {}", match e.try_into_panic() {
                    Ok(panic) => crate::device::panic_message(panic),
                    Err(e) => e.to_string(),
                })))),
                None => {
                    // Dropping the pipeline stops every stage and removes the partial output;
                    // waiting for the drop means the file is gone when the job says cancelled.
                    pipeline.abort();
                    let _ = pipeline.await;
                    None
                }
            };
            // The job ends when its work has: a cancelled pipeline's stages run on to their
            // next cancellation check and its encoder finishes its frame, and a process
            // exiting under them tears the device down beneath its own threads.
            if let Err(e) = device.settle().await {
                tracing::warn!("job {}: {e}", job.id());
            }
            result
        }
    };
    let shutting_down = !inner.accepting.load(Ordering::SeqCst);
    job.update(|view| {
        view.finished_at = Some(now());
        match result {
            Some(Ok(_)) => view.state = JobState::Finished,
            Some(Err(e)) => {
                view.state = JobState::Failed;
                view.error = Some(e.to_string());
            }
            None => {
                view.state = JobState::Cancelled;
                if shutting_down {
                    view.error = Some("the service shut down".into());
                }
            }
        }
        for stage in &mut view.stages {
            if stage.state == "running" {
                stage.state = "cancelled".into();
            }
        }
    });
    inner.persist(&job).await;
    if let Some(preview) = job.preview() {
        let store = inner.store.clone();
        let id = job.id();
        if let Err(e) = blocking(move || store.put_preview(id, preview.frame, &preview.png)).await {
            tracing::error!("job {id}: {e}");
        }
    }
    // Published before the job leaves the active ones, so no event stream ends (at
    // shutdown) before its job's terminal event.
    inner.publish(job.view());
    inner.retire(&job);
    // Held to here, so the next job's start is published after this one's end.
    drop(permit);
}

/// Builds the job's pipeline and streams it into its output, folding its events into the
/// job's view as they come.
async fn execute(
    inner: Arc<Inner>,
    job: Arc<Job>,
    request: OpenRequest,
    mut events: mpsc::UnboundedReceiver<crate::progress::Event>,
) -> Result<Report> {
    let plan = &job.plan;
    // Holds the job's models until it ends.
    let mut models = inner.models.for_job();
    let mut source = build(plan, &mut models).await?;
    let (preview_sender, mut previews) = mpsc::channel(1);
    if plan.preview_every > 0 {
        source = source.pipe(Preview::every(plan.preview_every).to_channel(preview_sender)).boxed();
    } else {
        drop(preview_sender);
    }
    let write = async move {
        let result = if plan.tensor_file {
            write_tensor(&source, &plan.output, &request, &TensorFileOptions { overwrite: plan.video.overwrite }).await
        } else {
            save_video(&source, &plan.output, &request, &plan.video).await
        };
        // Closes the event and preview channels.
        drop((request, source));
        result
    };
    let follow = async {
        let mut published = Instant::now();
        let mut previews_open = true;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        job.on_event(&event);
                        if published.elapsed() >= PUBLISH_EVERY || event.kind.is_terminal() {
                            inner.publish(job.view());
                            published = Instant::now();
                        }
                    }
                    None => break,
                },
                image = previews.recv(), if previews_open => match image {
                    Some(image) => {
                        let frame = image.frame;
                        match tokio::task::spawn_blocking(move || job::shrink(image).to_png()).await {
                            Ok(Ok(png)) => {
                                job.set_preview(PreviewPng { frame, png: Arc::new(png) });
                                inner.publish(job.view());
                            }
                            Ok(Err(e)) => tracing::warn!("job {}: preview: {e}", job.id()),
                            Err(e) => tracing::warn!("job {}: preview: {e}", job.id()),
                        }
                    }
                    None => previews_open = false,
                },
            }
        }
    };
    let (result, ()) = tokio::join!(write, follow);
    result
}

/// The job's source and stages.
async fn build(plan: &Plan, models: &mut JobModels<'_>) -> Result<Box<dyn Source>> {
    let mut video: Box<dyn Source> = match &plan.source {
        PlannedSource::Pattern { width, height, frames, fps, seed } => {
            let pattern = TestPattern::new(*width, *height, *frames)?.seed(*seed);
            match fps {
                Some(fps) => pattern.fps(*fps).boxed(),
                None => pattern.boxed(),
            }
        }
        PlannedSource::Video(path) => VideoFile::open_async(path).await?.boxed(),
        PlannedSource::Latent { vae, latent, batch_index, seed, timestep, noise_scale, precision, fps } => {
            let vae = models.vae(vae).await?;
            let latent = Latent::open_async(latent, *batch_index).await?;
            match vae {
                VideoVae::Ltx(vae) => {
                    let mut decode = LtxVaeDecode::new(vae, latent)?.precision(*precision);
                    if let Some(seed) = seed {
                        decode = decode.seed(*seed);
                    }
                    if let Some(timestep) = timestep {
                        decode = decode.timestep(*timestep);
                    }
                    if let Some(noise_scale) = noise_scale {
                        decode = decode.noise_scale(*noise_scale);
                    }
                    match fps {
                        Some(fps) => decode.fps(*fps).boxed(),
                        None => decode.boxed(),
                    }
                }
                VideoVae::Wan(vae) => {
                    if seed.is_some() || timestep.is_some() || noise_scale.is_some() {
                        return Err(Error::config("source.latent: a Wan VAE takes no seed, timestep or noise_scale"));
                    }
                    let decode = WanVaeDecode::new(vae, latent)?.precision(*precision);
                    match fps {
                        Some(fps) => decode.fps(*fps).boxed(),
                        None => decode.boxed(),
                    }
                }
            }
        }
    };
    for stage in &plan.stages {
        video = match stage {
            PlannedStage::Resize { scale, filter } => video.resize(*scale, *filter).boxed(),
            PlannedStage::Upscale { model, tile, overlap, blend, precision } => {
                let mut upscale = Upscale::model(models.upscale(model).await?).blend(*blend).precision(*precision);
                if let Some(tile) = tile {
                    upscale = upscale.tile(*tile, *overlap);
                }
                video.pipe(upscale).boxed()
            }
            PlannedStage::Interpolate { model, multiplier, scale, scene_cut, precision } => {
                let mut interpolate = Interpolate::rife(models.rife(model).await?).multiplier(*multiplier).scale(*scale).precision(*precision);
                if let Some(threshold) = scene_cut {
                    interpolate = interpolate.scene_cut(*threshold);
                }
                video.pipe(interpolate).boxed()
            }
        };
    }
    Ok(video)
}
