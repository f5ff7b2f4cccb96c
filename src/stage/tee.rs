//! `Tee`: one run of a source, consumed by several sinks at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures::Stream;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::source::Opened;
use crate::stream::{FrameStream, OpenRequest, Source};

/// Fan-out: the source is opened once and each of `n` branches sees every chunk. At most
/// `capacity` chunks are held for branches that lag, so the slowest consumer sets the pace and
/// memory stays bounded; an error reaches every branch; a dropped branch no longer holds the
/// others back. The branches are [`Opened`] sources: give each to a sink, and drive the sinks
/// concurrently (`tokio::join!`, spawned tasks) — a branch left unpolled stalls the others once
/// `capacity` chunks wait for it, so move each branch into its sink's future
/// (`async move { drain(&branch, &request).await }`): a sink that fails early then drops it.
///
/// The frames are computed with `request` (its device stream and chunk size); each sink
/// regroups them to its own chunk size. Sinks opened with clones of `request` share its
/// stream; others receive a copy of each chunk on theirs (see [`Opened`]).
pub struct Tee {
    shared: Arc<Shared>,
    branches: Vec<Opened>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee").field("branches", &self.branches.len()).finish_non_exhaustive()
    }
}

impl Tee {
    /// Opens `source` once for `branches` consumers.
    pub fn open<S: Source + ?Sized>(
        source: &S,
        request: &OpenRequest,
        branches: usize,
        capacity: usize,
    ) -> Result<Self> {
        if branches == 0 || capacity == 0 {
            return Err(Error::config(format!(
                "a tee of {branches} branches holding {capacity} chunks (both must be at least 1)"
            )));
        }
        let info = source.info()?;
        let wakers = Arc::new(WakeAll(Mutex::new(vec![None; branches])));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                upstream: Some(source.open(request)),
                buffer: VecDeque::new(),
                base: 0,
                next: vec![Some(0); branches],
                capacity,
                peak: 0,
            }),
            wakers,
        });
        let name = source.name();
        let branches = (0..branches)
            .map(|index| {
                let branch = Branch { shared: shared.clone(), index };
                Opened::new(format!("{name}[tee {index}]"), info.clone(), Box::pin(branch) as FrameStream)
            })
            .collect();
        Ok(Self { shared, branches })
    }

    /// The branches, each for one consumer.
    pub fn branches(&mut self) -> Vec<Opened> {
        std::mem::take(&mut self.branches)
    }

    /// The most chunks held at once so far (at most the capacity).
    pub fn peak_buffered(&self) -> usize {
        self.shared.lock().peak
    }
}

struct Shared {
    state: Mutex<State>,
    wakers: Arc<WakeAll>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A chunk or the error that ended the run, as every branch receives it.
type Item = std::result::Result<Chunk, Arc<Error>>;

struct State {
    /// `None` once the source has ended or failed.
    upstream: Option<FrameStream>,
    /// Items from `base` on, kept until every live branch has taken them.
    buffer: VecDeque<Item>,
    base: u64,
    /// Each branch's next item; `None` for a dropped branch.
    next: Vec<Option<u64>>,
    capacity: usize,
    peak: usize,
}

impl State {
    /// Drops the items every live branch has taken.
    fn trim(&mut self) {
        let oldest = self.next.iter().flatten().min().copied().unwrap_or(u64::MAX);
        while self.base < oldest && self.buffer.pop_front().is_some() {
            self.base += 1;
        }
    }
}

/// Wakes every branch waiting for a chunk or for room: the source wakes whichever branch
/// polls it next, which may not be the one that last polled it.
struct WakeAll(Mutex<Vec<Option<Waker>>>);

impl WakeAll {
    fn set(&self, index: usize, waker: &Waker) {
        let mut wakers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut wakers[index] {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    fn wake_all(&self) {
        let wakers: Vec<Waker> = {
            let mut wakers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            wakers.iter_mut().filter_map(Option::take).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Wake for WakeAll {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

struct Branch {
    shared: Arc<Shared>,
    index: usize,
}

impl Stream for Branch {
    type Item = Result<Chunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut state = this.shared.lock();
        loop {
            let Some(next) = state.next[this.index] else { return Poll::Ready(None) };
            if let Some(item) = usize::try_from(next - state.base).ok().and_then(|i| state.buffer.get(i)) {
                let item = item.clone();
                state.next[this.index] = Some(next + 1);
                let before = state.buffer.len();
                state.trim();
                if state.buffer.len() < before {
                    // Room: branches waiting for the slowest may go on.
                    this.shared.wakers.wake_all();
                }
                return Poll::Ready(Some(item.map_err(Error::Shared)));
            }
            if state.upstream.is_none() {
                return Poll::Ready(None);
            }
            if state.buffer.len() >= state.capacity {
                this.shared.wakers.set(this.index, cx.waker());
                return Poll::Pending;
            }
            let upstream = state.upstream.as_mut().expect("checked above");
            // Registered before the poll: the source may wake from another thread before
            // `poll_next` returns.
            this.shared.wakers.set(this.index, cx.waker());
            let waker = Waker::from(this.shared.wakers.clone());
            match upstream.as_mut().poll_next(&mut Context::from_waker(&waker)) {
                Poll::Ready(Some(Ok(chunk))) => state.buffer.push_back(Ok(chunk)),
                Poll::Ready(Some(Err(error))) => {
                    state.buffer.push_back(Err(Arc::new(error)));
                    state.upstream = None;
                }
                Poll::Ready(None) => state.upstream = None,
                Poll::Pending => return Poll::Pending,
            }
            state.peak = state.peak.max(state.buffer.len());
            // Other branches may take what arrived.
            this.shared.wakers.wake_all();
        }
    }
}

impl Drop for Branch {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.next[self.index] = None;
        state.trim();
        if state.next.iter().all(Option::is_none) {
            // Nobody listens: stop the source now.
            state.upstream = None;
        }
        drop(state);
        self.shared.wakers.wake_all();
    }
}
