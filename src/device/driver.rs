//! Lanes: a device's streams and the threads that drive them.
//!
//! CubeCL's client calls block the calling thread: a launch spins while the runner's queue is
//! full, a read or a sync waits for the runner thread, and the runner itself waits for the GPU
//! every few hundred launches. None of that may happen on an async runtime's worker. So every
//! device has a small pool of lanes — a CubeCL stream and one thread that submits to it — and
//! every opened stream is polled on its lane's thread ([`drive`]): the task that consumes it
//! only waits on a channel, and a dropped stream stops at its next device allocation.
//!
//! A lane is leased by the first use of a [`Device`](super::Device) handle and returned when
//! the last clone of that handle goes, so sequential jobs reuse the same streams, memory pools
//! and threads; past [`MAX_LANES`] concurrent handles, lanes are shared (their work then
//! interleaves in submission order).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use cubecl::stream_id::StreamId;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, Stream, StreamExt};

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::stream::FrameStream;
use crate::sync::lock;

/// Lanes a device opens at most.
pub const MAX_LANES: usize = 8;

/// A lane thread marks a sync point every `PACE_STEP` device calls and waits for the mark
/// `PACE_DEPTH` marks back, so it runs at most about `PACE_STEP × (PACE_DEPTH + 1)` launches
/// ahead of the device: enough to keep a GPU busy, few enough that a cancelled stream
/// stops within a few launches (CubeCL alone queues 512).
const PACE_STEP: usize = 4;
const PACE_DEPTH: usize = 2;

/// A future that resolves when the device has run the work submitted before it was made.
pub(crate) type Mark = Pin<Box<dyn Future<Output = ()> + Send>>;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work not yet ended: lane tasks queued or running, and threads finishing a handle's output.
/// A dropped stream's task keeps running until its next cancellation check, so whoever is
/// about to exit or to call a job over waits for this count to reach 0 (see
/// [`Device::settle`](super::Device::settle)).
pub(crate) struct InFlight(tokio::sync::watch::Sender<usize>);

impl Default for InFlight {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(0))
    }
}

impl InFlight {
    /// Resolves when nothing counted here is in flight.
    pub(crate) async fn idle(&self) {
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }
}

/// One piece of work, counted by its handle and by its device until dropped.
pub(crate) struct Busy([Arc<InFlight>; 2]);

impl Busy {
    pub(crate) fn new(handle: &Arc<InFlight>, device: &Arc<InFlight>) -> Self {
        let counts = [handle.clone(), device.clone()];
        counts.iter().for_each(|c| c.0.send_modify(|n| *n += 1));
        Busy(counts)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.iter().for_each(|c| c.0.send_modify(|n| *n -= 1));
    }
}

/// One CubeCL stream and the thread that submits its work.
pub(crate) struct Lane {
    /// Unique in the process (0 means "no lane" in [`ON_LANE`]).
    id: u64,
    index: usize,
    pub(crate) stream: StreamId,
    /// The thread's run queue, started by the first task.
    tasks: OnceLock<std::result::Result<std::sync::mpsc::Sender<Arc<Queued>>, String>>,
    users: AtomicUsize,
    /// Device calls made on the lane's thread, and the sync points not yet waited for.
    calls: AtomicUsize,
    marks: Mutex<std::collections::VecDeque<Mark>>,
}

/// The lanes of one device.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: Mutex<Vec<Arc<Lane>>>,
    /// Where models' weights are uploaded: they outlive the jobs that first ask for them, so
    /// they stay out of the job lanes' pools (and their memory figures).
    weights: OnceLock<Arc<Lane>>,
    /// Work in flight on any of them.
    pub(crate) in_flight: Arc<InFlight>,
}

static NEXT_LANE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The lane whose thread this is, else 0.
    static ON_LANE: Cell<u64> = const { Cell::new(0) };
    /// The cancellation flag of the stream or work being run on this lane thread.
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

impl Lanes {
    /// A lane for a new user: an idle one, else a new one while fewer than [`MAX_LANES`]
    /// exist, else the least used.
    pub(crate) fn lease(&self) -> Arc<Lane> {
        let mut lanes = lock(&self.lanes);
        let least = lanes.iter().min_by_key(|l| l.users.load(Ordering::Acquire)).cloned();
        let lane = match least {
            Some(lane) if lane.users.load(Ordering::Acquire) == 0 || lanes.len() >= MAX_LANES => lane,
            _ => {
                let lane = Arc::new(Lane::new(lanes.len()));
                lanes.push(lane.clone());
                lane
            }
        };
        lane.users.fetch_add(1, Ordering::AcqRel);
        lane
    }

    /// The weights lane, leased.
    pub(crate) fn lease_weights(&self) -> Arc<Lane> {
        let lane = self.weights.get_or_init(|| Arc::new(Lane::new(MAX_LANES))).clone();
        lane.users.fetch_add(1, Ordering::AcqRel);
        lane
    }

    /// Job lanes opened so far.
    pub(crate) fn count(&self) -> usize {
        lock(&self.lanes).len()
    }

    /// The streams of the job lanes opened so far.
    pub(crate) fn streams(&self) -> Vec<StreamId> {
        lock(&self.lanes).iter().map(|l| l.stream).collect()
    }

    /// The streams of every lane opened so far, the weights lane's too.
    pub(crate) fn all_streams(&self) -> Vec<StreamId> {
        let mut streams = self.streams();
        streams.extend(self.weights.get().map(|l| l.stream));
        streams
    }
}

impl Lane {
    fn new(index: usize) -> Lane {
        let id = NEXT_LANE.fetch_add(1, Ordering::Relaxed);
        // Clear of the low ids CubeCL gives threads (streams map onto its slots modulo 128).
        let stream = StreamId { value: (1 << 40) + 127 - index as u64 };
        Lane {
            id,
            index,
            stream,
            tasks: OnceLock::new(),
            users: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            marks: Default::default(),
        }
    }

    /// Starts the thread: a single-threaded executor of the lane's tasks. (Not futures'
    /// `LocalPool`: it forbids `block_on` inside a task, which a stage's closure may use.)
    fn start(&self) -> std::result::Result<std::sync::mpsc::Sender<Arc<Queued>>, String> {
        let (tasks, queue) = std::sync::mpsc::channel::<Arc<Queued>>();
        let id = self.id;
        std::thread::Builder::new()
            .name(format!("framestream-lane-{}", self.index))
            .spawn(move || {
                ON_LANE.with(|lane| lane.set(id));
                for queued in queue {
                    queued.poll();
                }
            })
            .map_err(|e| format!("cannot start a device thread: {e}"))?;
        Ok(tasks)
    }

    /// True on this lane's own thread.
    pub(crate) fn is_current(&self) -> bool {
        ON_LANE.with(|lane| lane.get()) == self.id
    }

    /// Counts a device call made on this lane's thread and, every [`PACE_STEP`] calls, marks a
    /// sync point (`mark`) and waits for the device to reach the one [`PACE_DEPTH`] back.
    pub(crate) fn pace(&self, mark: impl FnOnce() -> Mark) {
        if !self.is_current() || self.calls.fetch_add(1, Ordering::Relaxed) % PACE_STEP != PACE_STEP - 1 {
            return;
        }
        let mut marks = lock(&self.marks);
        marks.push_back(mark());
        while marks.len() > PACE_DEPTH {
            let oldest = marks.pop_front().expect("a mark");
            wait(oldest);
        }
    }

    pub(crate) fn release(&self) {
        self.users.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues `task`, counted as `busy` until it ends or is dropped.
    fn submit(&self, task: Task, busy: Busy) -> Result<()> {
        let tasks = self.tasks.get_or_init(|| self.start()).as_ref().map_err(|e| Error::Device(e.clone()))?;
        let task = Box::pin(async move {
            let _busy = busy;
            task.await
        });
        let queued = Arc::new(Queued { task: Mutex::new(Some(task)), queue: tasks.clone() });
        tasks.send(queued).map_err(|_| Error::Device("the device's lane thread has stopped".into()))
    }

    /// Runs `work` on this lane's thread (at once when already there) and resolves to its
    /// result. Dropping the future before it has run stops `work` at its next allocation.
    pub(crate) fn run<T, F>(self: &Arc<Self>, busy: Busy, work: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        enum Where<F, T> {
            Here(F),
            Lane(Result<oneshot::Receiver<Result<T>>>, CancelOnDrop),
        }
        let at = if self.is_current() {
            // Part of a task already counted.
            drop(busy);
            Where::Here(work)
        } else {
            let (tx, rx) = oneshot::channel();
            let cancel = Arc::new(AtomicBool::new(false));
            let scope = Scope::capture(cancel.clone());
            let task = async move {
                if scope.cancel.load(Ordering::Acquire) {
                    return;
                }
                let _ = tx.send(catching(scope.wrap(work)).await);
            };
            Where::Lane(self.submit(Box::pin(task), busy).map(|()| rx), CancelOnDrop(cancel))
        };
        async move {
            match at {
                Where::Here(work) => catching(work).await,
                Where::Lane(rx, _cancel) => rx?.await.unwrap_or_else(|_| Err(lane_stopped())),
            }
        }
    }
}

/// True on any lane's thread.
pub(crate) fn on_any_lane() -> bool {
    ON_LANE.with(|lane| lane.get()) != 0
}

/// Blocks this thread until `future` resolves (not futures' `block_on`, which refuses to run
/// inside another executor, such as a `block_on` in a stage's closure).
fn wait<T>(mut future: Pin<Box<dyn Future<Output = T> + Send>>) -> T {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A task in a lane's run queue; waking it queues it again.
struct Queued {
    task: Mutex<Option<Task>>,
    queue: std::sync::mpsc::Sender<Arc<Queued>>,
}

impl Queued {
    fn poll(self: Arc<Self>) {
        let mut slot = lock(&self.task);
        let Some(task) = slot.as_mut() else {
            return; // finished; a late wake
        };
        let waker = Waker::from(self.clone());
        // Work reports its own panics; this keeps the thread alive for the lane's other users.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(&mut Context::from_waker(&waker))));
        if !matches!(polled, Ok(Poll::Pending)) {
            *slot = None;
        }
    }
}

impl Wake for Queued {
    fn wake(self: Arc<Self>) {
        let queue = self.queue.clone();
        let _ = queue.send(self);
    }
}

fn lane_stopped() -> Error {
    Error::Device("the device's lane thread stopped before the work finished".into())
}

/// The work's result, or its panic as an error.
async fn catching<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    AssertUnwindSafe(work).catch_unwind().await.unwrap_or_else(|panic| {
        Err(Error::Device(format!("device work panicked: {}", super::panic_message(panic))))
    })
}

/// Errors with [`Error::Cancelled`] when the stream or work this lane thread is running has
/// been dropped by its consumer.
pub(crate) fn check_cancelled() -> Result<()> {
    let cancelled = CANCEL.with(|c| c.borrow().as_ref().is_some_and(|flag| flag.load(Ordering::Acquire)));
    if cancelled { Err(Error::Cancelled) } else { Ok(()) }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What a lane thread sets while it polls one consumer's work: its cancellation flag, and the
/// consumer's tokio runtime so stages may use tokio (`spawn_blocking`, timers) from the lane.
struct Scope {
    cancel: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Scope {
    fn capture(cancel: Arc<AtomicBool>) -> Self {
        Self { cancel, runtime: tokio::runtime::Handle::try_current().ok() }
    }

    fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let _runtime = self.runtime.as_ref().map(|r| r.enter());
        let previous = CANCEL.with(|c| c.replace(Some(self.cancel.clone())));
        struct Restore(Option<Option<Arc<AtomicBool>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take().flatten();
                CANCEL.with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(Some(previous));
        f()
    }

    fn wrap<F: Future>(self, future: F) -> Scoped<F> {
        Scoped { scope: self, future }
    }
}

/// A future polled inside its [`Scope`].
#[pin_project::pin_project]
struct Scoped<F> {
    scope: Scope,
    #[pin]
    future: F,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        this.scope.enter(|| future.poll(cx))
    }
}

type Reply = oneshot::Sender<Option<Result<Chunk>>>;

/// The stream's next item, polled once more when its consumer leaves: a wait that checks for
/// cancellation (a memory reservation) then ends instead of holding the stream until it is
/// served. Other waits and device work run on to their end: dropping a stream in the middle
/// of them (a read back under way) left CubeCL's device failing every later call.
struct WokenOnLeave<'a, F> {
    next: Pin<&'a mut F>,
    reply: &'a mut Reply,
    left: bool,
}

impl<F: Future> Future for WokenOnLeave<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.left && self.reply.poll_canceled(cx).is_ready() {
            self.left = true;
        }
        self.next.as_mut().poll(cx)
    }
}

/// `stream`, polled on `lane`'s thread: each poll of the result asks the lane for the next
/// chunk and waits for it. Nested streams of the same lane (the stages of one pipeline) are
/// polled in place by the one that drives them.
/// `busy` counts the stream's task from its first poll (an opened stream not yet polled holds
/// nothing on the lane).
pub(crate) fn drive(lane: Arc<Lane>, busy: impl FnOnce() -> Busy + Send + 'static, stream: FrameStream) -> FrameStream {
    Box::pin(Driven { state: State::Unstarted(lane, Box::new(busy), stream) })
}

struct Driven {
    state: State,
}

enum State {
    Unstarted(Arc<Lane>, Box<dyn FnOnce() -> Busy + Send>, FrameStream),
    Inline(FrameStream),
    Remote {
        /// First: the flag is set before the reply's receiver goes and wakes the task.
        _cancel: CancelOnDrop,
        requests: mpsc::UnboundedSender<Reply>,
        pending: Option<oneshot::Receiver<Option<Result<Chunk>>>>,
    },
    Done,
}

impl Driven {
    fn start(lane: Arc<Lane>, busy: Box<dyn FnOnce() -> Busy + Send>, stream: FrameStream) -> State {
        if lane.is_current() {
            // Nested in a stream already counted.
            return State::Inline(stream);
        }
        let (requests, mut asked) = mpsc::unbounded::<Reply>();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut stream = stream;
        let task = async move {
            while let Some(mut reply) = asked.next().await {
                let next = catching(stream.next().map(Ok));
                let item = WokenOnLeave { next: std::pin::pin!(next), reply: &mut reply, left: false }.await;
                let item = item.unwrap_or_else(|e| Some(Err(e)));
                let end = !matches!(item, Some(Ok(_)));
                if reply.send(item).is_err() || end {
                    break;
                }
            }
        };
        match lane.submit(Box::pin(Scope::capture(cancel.clone()).wrap(task)), busy()) {
            Ok(()) => State::Remote { _cancel: CancelOnDrop(cancel), requests, pending: None },
            Err(e) => State::Inline(crate::stream::failed(e)),
        }
    }
}

impl Stream for Driven {
    type Item = Result<Chunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Chunk>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Unstarted(..) => {
                    let State::Unstarted(lane, busy, stream) = std::mem::replace(&mut this.state, State::Done) else {
                        unreachable!()
                    };
                    this.state = Driven::start(lane, busy, stream);
                }
                State::Inline(stream) => return stream.as_mut().poll_next(cx),
                State::Remote { requests, pending, .. } => {
                    let receiver = match pending {
                        Some(receiver) => receiver,
                        None => {
                            let (reply, receiver) = oneshot::channel();
                            if requests.unbounded_send(reply).is_err() {
                                this.state = State::Done;
                                return Poll::Ready(Some(Err(lane_stopped())));
                            }
                            pending.insert(receiver)
                        }
                    };
                    let item = match receiver.poll_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(item)) => item,
                        Poll::Ready(Err(_)) => Some(Err(lane_stopped())),
                    };
                    *pending = None;
                    if !matches!(item, Some(Ok(_))) {
                        this.state = State::Done;
                    }
                    return Poll::Ready(item);
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}
