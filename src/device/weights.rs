//! One cache per device for the weights of every model: a model's weights are uploaded to a
//! device once per precision, on the device's weights stream, and shared by every job and
//! handle of that device that runs the model. Dropping the model's last clone evicts them
//! from every device.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::error::Result;
use crate::model::Precision;
use crate::sync::lock;

type Entry = Arc<dyn Any + Send + Sync>;
/// Locked while its weights upload, so one upload serves every concurrent ask.
type Slot = Arc<Mutex<Option<Entry>>>;

#[derive(Default)]
pub(crate) struct WeightCache {
    slots: Mutex<HashMap<(u64, Precision), Slot>>,
}
impl WeightCache {
    /// The weights of `model` in `precision`, uploaded by `upload` when absent.
    pub(crate) fn get_or_upload<T: Send + Sync + 'static>(
        self: &Arc<Self>,
        model: &ModelKey,
        precision: Precision,
        upload: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<T>> {
        let slot = {
            let mut slots = lock(&self.slots);
            let key = (model.id, precision);
            if !slots.contains_key(&key) {
                let mut caches = lock(&model.caches);
                if !caches.iter().any(|c| std::ptr::eq(c.as_ptr(), Arc::as_ptr(self))) {
                    caches.push(Arc::downgrade(self));
                }
            }
            slots.entry(key).or_default().clone()
        };
        let mut entry = lock(&slot);
        if let Some(entry) = entry.as_ref() {
            return entry.clone().downcast::<T>().map_err(|_| {
                crate::error::Error::Device("a model's cached weights are of another type".into())
            });
        }
        let weights = Arc::new(upload()?);
        *entry = Some(weights.clone());
        Ok(weights)
    }

    /// Models (and precisions) whose weights are held.
    pub(crate) fn len(&self) -> usize {
        lock(&self.slots).values().filter(|s| lock(s).is_some()).count()
    }

    fn evict(&self, model: u64) {
        // Dropped outside the lock: freeing device buffers may take CubeCL's runner.
        let evicted: Vec<Slot> = {
            let mut slots = lock(&self.slots);
            let keys: Vec<_> = slots.keys().filter(|(id, _)| *id == model).copied().collect();
            keys.iter().filter_map(|k| slots.remove(k)).collect()
        };
        drop(evicted);
    }
}

/// A loaded model's identity in the devices' weight caches. Clones of a model share it; when
/// the last goes, the model's weights leave every device.
pub(crate) struct ModelKey {
    id: u64,
    caches: Mutex<Vec<Weak<WeightCache>>>,
}

impl ModelKey {
    pub(crate) fn new() -> Arc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Arc::new(Self { id: NEXT.fetch_add(1, Ordering::Relaxed), caches: Mutex::default() })
    }
}

impl Drop for ModelKey {
    fn drop(&mut self) {
        for cache in lock(&self.caches).drain(..) {
            if let Some(cache) = cache.upgrade() {
                cache.evict(self.id);
            }
        }
    }
}
