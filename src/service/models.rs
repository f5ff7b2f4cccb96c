//! Models loaded once per service and shared by every job that names them: a job holds a
//! clone, so the device's weight cache uploads the weights once for all of them. A model file
//! that changed on disk (size or modification time) is loaded again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::OnceCell;

use super::lock;
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
    jobs: std::sync::atomic::AtomicU64,
}

/// A loaded model as `/v1/models` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelView {
    pub kind: ModelKind,
    pub path: PathBuf,
    pub file_bytes: u64,
    /// Jobs that have used it.
    pub jobs: u64,
}

#[derive(Default)]
pub(crate) struct Models {
    entries: Mutex<HashMap<(ModelKind, PathBuf), Arc<Entry>>>,
}

impl Models {
    pub async fn upscale(&self, path: &Path) -> Result<UpscaleModel> {
        match self.get(ModelKind::Upscale, path).await? {
            Loaded::Upscale(model) => Ok(model),
            _ => Err(mixed_up(path)),
        }
    }

    pub async fn rife(&self, path: &Path) -> Result<RifeModel> {
        match self.get(ModelKind::Interpolate, path).await? {
            Loaded::Interpolate(model) => Ok(model),
            _ => Err(mixed_up(path)),
        }
    }

    pub async fn vae(&self, path: &Path) -> Result<VideoVae> {
        match self.get(ModelKind::Vae, path).await? {
            Loaded::Vae(model) => Ok(model),
            _ => Err(mixed_up(path)),
        }
    }

    /// The model of `kind` at `path` (resolved), loaded at the first ask.
    async fn get(&self, kind: ModelKind, path: &Path) -> Result<Loaded> {
        let meta = tokio::fs::metadata(path).await.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let version = Version { bytes: meta.len(), modified: meta.modified().ok() };
        let entry = {
            let mut entries = lock(&self.entries);
            let key = (kind, path.to_path_buf());
            match entries.get(&key) {
                Some(entry) if entry.version == version => entry.clone(),
                _ => {
                    let entry = Arc::new(Entry { version, model: OnceCell::new(), jobs: Default::default() });
                    entries.insert(key, entry.clone());
                    entry
                }
            }
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
        entry.jobs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(model.clone())
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
                jobs: entry.jobs.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }
}
