//! Models loaded once per service and shared by every job that names them: a job holds a
//! clone, so the device's weight cache uploads the weights once for all of them. A model file
//! that changed on disk (size or modification time) is loaded again. A model no job has held
//! for a while is unloaded (its device weights go with its last clone).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::OnceCell;

use crate::sync::lock;
use crate::error::{Error, Result};
use crate::model::VideoVae;
use crate::model::esrgan::UpscaleModel;
use crate::model::rife::RifeModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Upscale,
    Interpolate,
    Vae,
}

/// Entries are keyed by kind, so this cannot happen; an error rather than a panic if it did.
fn mixed_up(path: &Path) -> Error {
    Error::config(format!("{}: loaded as another kind of model", path.display()))
}

#[derive(Clone)]
enum Loaded {
    Upscale(UpscaleModel),
    Interpolate(RifeModel),
    Vae(VideoVae),
}

/// What identifies a file's version.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    bytes: u64,
    modified: Option<SystemTime>,
}

struct Entry {
    version: Version,
    model: OnceCell<Loaded>,
    /// Jobs that have used it.
    jobs: AtomicU64,
    usage: Mutex<Usage>,
}

struct Usage {
    /// Jobs holding it now.
    holders: usize,
    /// When the last holder let go (or the entry was made).
    since: Instant,
}

/// A job's hold on a model: a held model is not unloaded.
pub(crate) struct Held(Arc<Entry>);

impl Held {
    fn new(entry: &Arc<Entry>) -> Self {
        lock(&entry.usage).holders += 1;
        Held(entry.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut usage = lock(&self.0.usage);
        usage.holders -= 1;
        usage.since = Instant::now();
    }
}

/// A loaded model as `/v1/models` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelView {
    pub kind: ModelKind,
    pub path: PathBuf,
    pub file_bytes: u64,
    /// Jobs that have used it.
    pub jobs: u64,
    /// Jobs using it now.
    pub in_use: usize,
}

#[derive(Default)]
pub(crate) struct Models {
    entries: Mutex<HashMap<(ModelKind, PathBuf), Arc<Entry>>>,
}

/// The models, each with its holds, that one job uses.
pub(crate) struct JobModels<'a> {
    models: &'a Models,
    held: Vec<Held>,
}

impl JobModels<'_> {
    pub async fn upscale(&mut self, path: &Path) -> Result<UpscaleModel> {
        match self.get(ModelKind::Upscale, path).await? {
            Loaded::Upscale(model) => Ok(model),
            _ => Err(mixed_up(path)),
        }
    }

    pub async fn rife(&mut self, path: &Path) -> Result<RifeModel> {
        match self.get(ModelKind::Interpolate, path).await? {
            Loaded::Interpolate(model) => Ok(model),
            _ => Err(mixed_up(path)),
        }
    }

    pub async fn vae(&mut self, path: &Path) -> Result<VideoVae> {
        match self.get(ModelKind::Vae, path).await? {
            Loaded::Vae(model) => Ok(model),
            _ => Err(mixed_up(path)),
        }
    }

    async fn get(&mut self, kind: ModelKind, path: &Path) -> Result<Loaded> {
        self.models.get(kind, path, &mut self.held).await
    }
}

impl Models {
    /// A job's view of the models: what it gets stays loaded until it is dropped.
    pub fn for_job(&self) -> JobModels<'_> {
        JobModels { models: self, held: Vec::new() }
    }

    /// The model of `kind` at `path` (resolved), loaded at the first ask; `held` gains a hold
    /// on it unless it has one.
    async fn get(&self, kind: ModelKind, path: &Path, held: &mut Vec<Held>) -> Result<Loaded> {
        let meta = tokio::fs::metadata(path).await.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let version = Version { bytes: meta.len(), modified: meta.modified().ok() };
        let (entry, first_hold) = {
            let mut entries = lock(&self.entries);
            let key = (kind, path.to_path_buf());
            let entry = match entries.get(&key) {
                Some(entry) if entry.version == version => entry.clone(),
                _ => {
                    let usage = Mutex::new(Usage { holders: 0, since: Instant::now() });
                    let entry = Arc::new(Entry { version, model: OnceCell::new(), jobs: Default::default(), usage });
                    entries.insert(key, entry.clone());
                    entry
                }
            };
            // Held from before the load (and under the lock a sweep takes), so no sweep
            // unloads it meanwhile.
            let first_hold = !held.iter().any(|h| Arc::ptr_eq(&h.0, &entry));
            if first_hold {
                held.push(Held::new(&entry));
            }
            (entry, first_hold)
        };
        let model = entry
            .model
            .get_or_try_init(|| async {
                Ok::<_, Error>(match kind {
                    ModelKind::Upscale => Loaded::Upscale(UpscaleModel::load_async(path).await?),
                    ModelKind::Interpolate => Loaded::Interpolate(RifeModel::load_async(path).await?),
                    ModelKind::Vae => Loaded::Vae(VideoVae::load_async(path).await?),
                })
            })
            .await?;
        if first_hold {
            entry.jobs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(model.clone())
    }

    /// Unloads the models no job has held for `idle`; how many went.
    pub fn unload_idle(&self, idle: Duration) -> usize {
        let mut entries = lock(&self.entries);
        let before = entries.len();
        entries.retain(|_, entry| {
            let usage = lock(&entry.usage);
            usage.holders > 0 || usage.since.elapsed() < idle
        });
        before - entries.len()
    }

    /// Models loaded now.
    pub fn count(&self) -> usize {
        lock(&self.entries).values().filter(|entry| entry.model.initialized()).count()
    }

    /// Models loaded so far (paths relative to `root` where inside it).
    pub fn list(&self, root: &Path) -> Vec<ModelView> {
        let entries = lock(&self.entries);
        let mut list: Vec<ModelView> = entries
            .iter()
            .filter(|(_, entry)| entry.model.initialized())
            .map(|((kind, path), entry)| ModelView {
                kind: *kind,
                path: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
                file_bytes: entry.version.bytes,
                jobs: entry.jobs.load(Ordering::Relaxed),
                in_use: lock(&entry.usage).holders,
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }
}
