//! The compute device: which CubeCL runtime runs the kernels, and the plumbing to move data
//! to and from it.
//!
//! A [`Device`] is a cheap handle on one runtime client bound to one GPU stream. An opened
//! pipeline gets its own handle ([`Device::fork`]), which leases a lane of the device — a
//! stream and the thread that submits to it ([`driver`]) — at its first use and returns it
//! when its last clone goes. The client carries the stream id, so every launch and every read
//! of the pipeline goes to that stream and stays ordered whichever thread submits it.
//!
//! The synchronous methods (uploads, allocations, [`Chunk`](crate::Chunk) operations) call
//! CubeCL directly and may block: stages run them on their lane's thread, where opened
//! streams are polled; async code elsewhere wraps them in [`Device::compute`].

mod budget;
mod driver;
mod weights;

pub use budget::Reservation;
pub use driver::MAX_LANES;
pub(crate) use driver::check_cancelled;
pub(crate) use weights::ModelKey;

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cubecl::prelude::*;
use cubecl::wgpu::{AutoGraphicsApi, GraphicsApi, RuntimeOptions, WgpuDevice, WgpuRuntime};
use cubecl::stream_id::StreamId;
use futures::FutureExt;
use framestream_kernels::{DeviceBuffer, Element};

use crate::error::{Error, Result};
use crate::stream::FrameStream;
use crate::sync::lock;
pub(crate) use driver::Busy;
use driver::{InFlight, Lane, Lanes};

/// The runtime client a kernel launches on.
#[derive(Clone)]
pub(crate) enum Backend {
    Wgpu(ComputeClient<WgpuRuntime>),
    #[cfg(feature = "cuda")]
    Cuda(ComputeClient<cubecl::cuda::CudaRuntime>),
}

/// Runs `$body` with `$client` bound to the device's runtime client (on the device's stream).
macro_rules! with_client {
    ($device:expr, $client:ident => $body:expr) => {
        $device.run(|backend| match backend {
            $crate::device::Backend::Wgpu($client) => $body,
            #[cfg(feature = "cuda")]
            $crate::device::Backend::Cuda($client) => $body,
        })
    };
}
pub(crate) use with_client;

/// Which runtime to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// CUDA when built with the `cuda` feature and a GPU answers, else wgpu.
    Auto,
    /// wgpu: Vulkan, Metal or DX12; Mesa's lavapipe on a machine without a GPU. The default
    /// adapter (`wgpu`), or the `n`-th one wgpu lists (`wgpu:1`).
    Wgpu(Option<usize>),
    /// CUDA device `n` (`cuda` is `cuda:0`; needs the `cuda` feature).
    Cuda(usize),
}

impl FromStr for DeviceKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((name, index)) => match index.parse::<usize>() {
                Ok(index) => (name, Some(index)),
                Err(_) => return Err(Error::config(format!("`{s}`: the device index is not a number"))),
            },
            None => (lower.as_str(), None),
        };
        match (name, index) {
            ("auto", None) => Ok(DeviceKind::Auto),
            ("wgpu" | "vulkan", index) => Ok(DeviceKind::Wgpu(index)),
            ("cuda", index) => Ok(DeviceKind::Cuda(index.unwrap_or(0))),
            _ => Err(Error::config(format!(
                "unknown device `{s}` (expected auto, wgpu, wgpu:N, cuda or cuda:N)"
            ))),
        }
    }
}

/// What was picked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The CubeCL runtime: `wgpu` or `cuda`.
    pub runtime: &'static str,
    /// The adapter's name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or "NVIDIA H100".
    pub adapter: String,
    /// The graphics API or driver under the runtime, e.g. "Vulkan".
    pub api: String,
    /// The adapter type: "Cpu", "DiscreteGpu", …
    pub device_type: String,
    /// Driver name and version where the runtime reports them.
    pub driver: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} ({}, {})", self.runtime, self.adapter, self.api, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
        }
        Ok(())
    }
}

/// Device memory held by one stream's allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes in live allocations.
    pub bytes_in_use: u64,
    /// Bytes reserved from the device (live or pooled for reuse).
    pub bytes_reserved: u64,
}

impl Backend {
    /// Device memory of this client's stream.
    fn memory_usage(&self) -> Result<MemoryUsage> {
        let usage = match self {
            Backend::Wgpu(client) => client.memory_usage(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(client) => client.memory_usage(),
        }
        .map_err(|e| Error::Device(format!("memory usage unavailable: {e}")))?;
        Ok(MemoryUsage { bytes_in_use: usage.bytes_in_use, bytes_reserved: usage.bytes_reserved })
    }

    /// Resolves when the device has run what this client's stream was given (starting it
    /// waits for CubeCL's runner: not on an async runtime's thread).
    fn sync(&self) -> cubecl::future::DynFut<std::result::Result<(), cubecl::server::ServerError>> {
        match self {
            Backend::Wgpu(client) => client.sync(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(client) => client.sync(),
        }
    }

    /// The same client with its work on `stream`.
    fn on_stream(&self, stream: StreamId) -> Backend {
        // SAFETY: CubeCL marks stream selection unsafe because handles then cross streams;
        // its scheduler orders cross-stream use with events, and a stream id only picks which
        // queue and allocator serve this client.
        unsafe {
            match self {
                Backend::Wgpu(client) => {
                    let mut client = client.clone();
                    client.set_stream(stream);
                    Backend::Wgpu(client)
                }
                #[cfg(feature = "cuda")]
                Backend::Cuda(client) => {
                    let mut client = client.clone();
                    client.set_stream(stream);
                    Backend::Cuda(client)
                }
            }
        }
    }
}

struct Shared {
    backend: Backend,
    /// The CubeCL server's identity (see [`framestream_kernels::device_id`]).
    id: usize,
    info: DeviceInfo,
    lanes: Lanes,
    budget: Arc<budget::Budget>,
    weights: Arc<weights::WeightCache>,
}

/// A handle's hold on a lane: the client bound to the lane's stream.
struct Lease {
    lane: Arc<Lane>,
    backend: Backend,
    /// This handle's (and its clones') work not yet ended.
    in_flight: Arc<InFlight>,
}

impl Lease {
    fn new(shared: &Shared, lane: Arc<Lane>) -> Self {
        Lease { backend: shared.backend.on_stream(lane.stream), lane, in_flight: Arc::default() }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.lane.release();
    }
}

/// A compute device and the stream work is submitted to.
#[derive(Clone)]
pub struct Device {
    shared: Arc<Shared>,
    /// Shared by clones; leased at the first use.
    lease: Arc<OnceLock<Lease>>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("info", &self.shared.info)
            .field("stream", &self.lease.get().map(|l| l.lane.stream.value))
            .finish_non_exhaustive()
    }
}

/// Devices of one runtime by index, each opened once.
type ByIndex = OnceLock<std::sync::Mutex<std::collections::HashMap<usize, std::result::Result<Arc<Shared>, String>>>>;

/// Every device the process has opened, for [`Device::settle_opened`].
static OPENED: std::sync::Mutex<Vec<Arc<Shared>>> = std::sync::Mutex::new(Vec::new());

fn remember(opened: std::result::Result<Arc<Shared>, String>) -> std::result::Result<Arc<Shared>, String> {
    if let Ok(shared) = &opened {
        lock(&OPENED).push(shared.clone());
    }
    opened
}

pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown failure".into())
}

impl Device {
    /// Opens a device of the given kind (the same underlying device on every call).
    pub fn open(kind: DeviceKind) -> Result<Self> {
        match kind {
            DeviceKind::Wgpu(None) => Self::wgpu(),
            DeviceKind::Wgpu(Some(index)) => Self::wgpu_adapter(index),
            DeviceKind::Cuda(index) => Self::cuda(index),
            DeviceKind::Auto => {
                if cfg!(feature = "cuda") {
                    Self::cuda(0).or_else(|_| Self::wgpu())
                } else {
                    Self::wgpu()
                }
            }
        }
    }

    /// The device named by `FRAMESTREAM_DEVICE` (auto, wgpu, cuda), else [`DeviceKind::Auto`].
    pub fn from_env() -> Result<Self> {
        match std::env::var("FRAMESTREAM_DEVICE") {
            Ok(kind) => Self::open(kind.parse()?),
            Err(_) => Self::open(DeviceKind::Auto),
        }
    }

    /// The default wgpu adapter (a real GPU if there is one, else lavapipe).
    pub fn wgpu() -> Result<Self> {
        static WGPU: OnceLock<Result<Arc<Shared>, String>> = OnceLock::new();
        let shared = WGPU.get_or_init(|| remember(init_wgpu(None))).clone().map_err(Error::Device)?;
        Ok(Self::on_new_stream(shared))
    }

    /// The `index`-th adapter wgpu lists (the error names them all).
    pub fn wgpu_adapter(index: usize) -> Result<Self> {
        static ADAPTERS: ByIndex = OnceLock::new();
        Self::by_index(&ADAPTERS, index, |i| init_wgpu(Some(i)))
    }

    /// Device `index` of a runtime, opened once per process (also when opening failed).
    fn by_index(
        table: &'static ByIndex,
        index: usize,
        init: impl FnOnce(usize) -> std::result::Result<Arc<Shared>, String>,
    ) -> Result<Self> {
        let mut opened = lock(table.get_or_init(Default::default));
        let shared = opened.entry(index).or_insert_with(|| remember(init(index))).clone();
        Ok(Self::on_new_stream(shared.map_err(Error::Device)?))
    }

    /// CUDA device `index` (always an error without the `cuda` feature).
    pub fn cuda(index: usize) -> Result<Self> {
        #[cfg(feature = "cuda")]
        {
            static CUDA: ByIndex = OnceLock::new();
            Self::by_index(&CUDA, index, init_cuda)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = index;
            Err(Error::Device("this build has no CUDA support (build with --features cuda)".into()))
        }
    }

    fn on_new_stream(shared: Arc<Shared>) -> Self {
        Self { shared, lease: Arc::default() }
    }

    fn lease(&self) -> &Lease {
        self.lease.get_or_init(|| {
            let lane = self.shared.lanes.lease();
            Lease::new(&self.shared, lane)
        })
    }

    /// What runs the kernels.
    pub fn info(&self) -> &DeviceInfo {
        &self.shared.info
    }

    /// The same device with a stream of its own (a lane leased at its first use; see
    /// [`MAX_LANES`]).
    pub fn fork(&self) -> Self {
        Self::on_new_stream(self.shared.clone())
    }

    /// The device's stream for model weights, apart from the jobs' lanes.
    pub(crate) fn for_weights(&self) -> Self {
        let lane = self.shared.lanes.lease_weights();
        let lease = Lease::new(&self.shared, lane);
        Self { shared: self.shared.clone(), lease: Arc::new(OnceLock::from(lease)) }
    }

    /// `model`'s weights in `precision` on this device: uploaded by `upload` on the device's
    /// weights stream at the first ask from any handle of the device, shared afterwards
    /// (until the model's last clone is dropped).
    pub(crate) fn model_weights<T: Send + Sync + 'static>(
        &self,
        model: &ModelKey,
        precision: crate::model::Precision,
        upload: impl FnOnce(&Device) -> Result<T>,
    ) -> Result<Arc<T>> {
        self.shared.weights.get_or_upload(model, precision, || upload(&self.for_weights()))
    }

    /// Model weights this device holds: one per loaded model and precision in use.
    pub fn models_held(&self) -> usize {
        self.shared.weights.len()
    }

    /// Device memory of the weights stream: every model's weights on this device (a
    /// blocking call, like [`memory_usage`](Self::memory_usage)).
    pub fn weights_memory_usage(&self) -> Result<MemoryUsage> {
        self.for_weights().memory_usage()
    }

    /// True when both handles submit to the same stream of the same device.
    pub(crate) fn same_stream(&self, other: &Device) -> bool {
        self.same_device(other) && Arc::ptr_eq(&self.lease().lane, &other.lease().lane)
    }

    /// Lanes (device streams, each with its submitting thread) this device has opened; they
    /// are reused, at most [`MAX_LANES`].
    pub fn lanes_opened(&self) -> usize {
        self.shared.lanes.count()
    }

    /// Limits the device memory that jobs on this device reserve together (`None`: no
    /// limit, the default). Stages that plan their memory (model upscaling) reserve it before
    /// they compute and wait while other jobs hold the rest; they also plan within it.
    pub fn set_memory_budget(&self, bytes: Option<u64>) {
        self.shared.budget.set_limit(bytes);
    }

    /// The device-wide budget, if one is set.
    pub fn memory_budget(&self) -> Option<u64> {
        self.shared.budget.limit()
    }

    /// Bytes of the budget reserved now, by every job on the device.
    pub fn memory_reserved(&self) -> u64 {
        self.shared.budget.held()
    }

    /// Reserves `bytes` of the device-wide budget, waiting (first come, first served) while
    /// other jobs hold too much of it; an error when `bytes` exceed the budget itself.
    /// Without a budget it resolves at once.
    pub fn reserve(&self, bytes: u64) -> impl Future<Output = Result<Reservation>> + Send + 'static {
        budget::reserve(self.shared.budget.clone(), bytes)
    }

    /// Runs `work` on this handle's lane thread and resolves to its result, so async code
    /// can call the blocking methods (uploads, [`Chunk::launch`](crate::Chunk::launch), …)
    /// without stalling its runtime. Work already on that thread (inside a stage) runs at
    /// once. Dropping the future before the work has run stops it at its next allocation.
    pub fn compute<T, F>(&self, work: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        self.lease().lane.run(self.busy(), async move { work() })
    }

    /// `stream`, polled on this handle's lane thread (see [`driver`]).
    pub(crate) fn drive(&self, stream: FrameStream) -> FrameStream {
        let device = self.clone();
        driver::drive(self.lease().lane.clone(), move || device.busy(), stream)
    }

    /// Counts one piece of this handle's work until dropped: what [`settle`](Self::settle)
    /// waits for. Lane work takes one itself; so does a thread that finishes the handle's
    /// output off its lane (a video encoder).
    pub(crate) fn busy(&self) -> Busy {
        Busy::new(&self.lease().in_flight, &self.shared.lanes.in_flight)
    }

    /// Waits until the work submitted through this handle and its clones has ended and the
    /// device has run it. A dropped pipeline's stages stop at their next allocation or memory
    /// reservation, not at once, so whoever cancels a pipeline and then exits the process or hands its
    /// memory to another job settles first. It waits for every stream opened on the handle
    /// that has been polled, so drop those first; not from the handle's own work (it would
    /// wait for itself).
    pub async fn settle(&self) -> Result<()> {
        let Some(lease) = self.lease.get() else {
            return Ok(()); // never used
        };
        if lease.lane.is_current() {
            return Err(Error::Device("a device handle cannot settle from its own work".into()));
        }
        lease.in_flight.idle().await;
        self.sync().await
    }

    /// [`settle`](Self::settle) for every handle of the device in the process: what a
    /// process that has dropped its pipelines waits for before it exits.
    pub async fn settle_all(&self) -> Result<()> {
        if driver::on_any_lane() {
            return Err(Error::Device("a device cannot settle from its own work".into()));
        }
        self.shared.lanes.in_flight.idle().await;
        self.sync_all().await
    }

    /// [`settle_all`](Self::settle_all) for every device the process has opened: what a
    /// program that has dropped its pipelines awaits before it exits (nothing when it never
    /// opened one).
    pub async fn settle_opened() -> Result<()> {
        let devices: Vec<Device> = lock(&OPENED).iter().cloned().map(Self::on_new_stream).collect();
        for device in devices {
            device.settle_all().await?;
        }
        Ok(())
    }

    /// Waits for the device to run what every stream of it has been given so far (model
    /// weight uploads included), not for work still to come.
    pub async fn sync_all(&self) -> Result<()> {
        let streams: Vec<Backend> =
            self.shared.lanes.all_streams().into_iter().map(|s| self.shared.backend.on_stream(s)).collect();
        // Waiting for a stream blocks the thread: not the caller's.
        crate::blocking::on_thread("device-sync", move || {
            for backend in streams {
                futures::executor::block_on(backend.sync()).map_err(|e| Error::Device(format!("device failed: {e}")))?;
            }
            Ok(())
        })
        .await
    }

    /// True when `buffer` lives in this device's memory.
    pub fn holds(&self, buffer: &DeviceBuffer) -> bool {
        buffer.device_id() == self.shared.id
    }

    /// True when both handles drive the same device (whatever their streams).
    pub fn same_device(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Runs `f` with this device's client; on the lane's thread, keeps the lane from running
    /// far ahead of the device (see [`driver`]).
    pub(crate) fn run<T>(&self, f: impl FnOnce(&Backend) -> T) -> T {
        let lease = self.lease();
        let out = f(&lease.backend);
        lease.lane.pace(|| {
            let done = match &lease.backend {
                Backend::Wgpu(client) => client.sync(),
                #[cfg(feature = "cuda")]
                Backend::Cuda(client) => client.sync(),
            };
            // A failure shows in the stream's next read or sync.
            Box::pin(done.map(|_| ()))
        });
        out
    }

    /// How convolutions schedule their GEMM here: shared-memory tiles on GPUs, register
    /// tiles where compute shaders run on a CPU (lavapipe), where a workgroup barrier costs a
    /// context switch. CubeCL's properties do not tell a CPU adapter apart, so this reads the
    /// adapter type wgpu reports (CUDA devices are GPUs).
    pub fn conv_strategy(&self) -> framestream_kernels::conv::Strategy {
        use framestream_kernels::conv::Strategy;
        if self.shared.info.device_type == "Cpu" { Strategy::Direct } else { Strategy::Tiled }
    }

    /// The largest buffer a kernel can bind, in bytes.
    pub fn max_buffer_bytes(&self) -> u64 {
        with_client!(self, client => client.properties().memory.max_page_size)
    }

    /// Checks that `bytes` fit in one buffer; `what` names the buffer in the error.
    pub fn check_buffer(&self, bytes: usize, what: &str) -> Result<()> {
        let max = self.max_buffer_bytes();
        if bytes as u64 > max {
            return Err(Error::Device(format!(
                "{what} needs {:.1} MiB in one buffer, over this device's {:.1} MiB limit \
                 ({}): use smaller chunks",
                bytes as f64 / (1 << 20) as f64,
                max as f64 / (1 << 20) as f64,
                self.info().adapter
            )));
        }
        Ok(())
    }

    /// Checks that `frames` frames of `frame_values` f32 values fit in one buffer.
    pub fn check_frames(&self, frames: usize, frame_values: usize, what: &str) -> Result<()> {
        let frame_bytes = frame_values * 4;
        self.check_buffer(frames * frame_bytes, what).map_err(|e| match e {
            Error::Device(message) => {
                let fit = self.max_buffer_bytes() as usize / frame_bytes.max(1);
                Error::Device(format!("{message} of at most {fit} frames"))
            }
            other => other,
        })
    }

    /// Uploads f32 data.
    pub fn upload(&self, data: &[f32]) -> Result<DeviceBuffer> {
        check_cancelled()?;
        self.check_buffer(data.len() * 4, "an upload")?;
        Ok(with_client!(self, client => DeviceBuffer::from_f32(client, data)))
    }

    /// Uploads f32 data converted to `E` (model weights and activations).
    pub fn upload_as<E: Element>(&self, data: &[f32]) -> Result<DeviceBuffer> {
        check_cancelled()?;
        self.check_buffer(data.len() * size_of::<E>(), "an upload")?;
        Ok(with_client!(self, client => DeviceBuffer::from_f32_as::<_, E>(client, data)))
    }

    /// Uploads bytes as `u32` words (the last one zero-padded).
    pub fn upload_bytes(&self, bytes: &[u8]) -> Result<DeviceBuffer> {
        check_cancelled()?;
        self.check_buffer(bytes.len(), "an upload")?;
        Ok(with_client!(self, client => DeviceBuffer::from_bytes_as_words(client, bytes)))
    }

    /// Allocates `len` uninitialised f32.
    pub fn alloc(&self, len: usize) -> Result<DeviceBuffer> {
        self.alloc_as::<f32>(len, len)
    }

    /// Allocates `len` uninitialised elements of `E`.
    pub fn alloc_elems<E: Element>(&self, len: usize) -> Result<DeviceBuffer> {
        self.alloc_as::<E>(len, len)
    }

    /// Allocates `len` uninitialised elements of `E` in a buffer with room for `room`: buffers
    /// of one role then keep one size and the allocator reuses their slots.
    pub fn alloc_as<E: Element>(&self, len: usize, room: usize) -> Result<DeviceBuffer> {
        check_cancelled()?;
        let bytes = len.max(room).max(1).saturating_mul(size_of::<E>());
        self.check_buffer(bytes, "a buffer")?;
        Ok(with_client!(self, client => DeviceBuffer::empty_with_room::<_, E>(client, len, room)))
    }

    /// Allocates `frames` frames of `frame_len` values in a buffer with room for
    /// `chunk_frames`: the short last chunk of a stream then reuses the slots of the full
    /// ones instead of growing the pool.
    pub fn alloc_frames(&self, frames: usize, frame_len: usize, chunk_frames: usize) -> Result<DeviceBuffer> {
        check_cancelled()?;
        self.check_frames(frames.max(chunk_frames), frame_len, "a chunk")?;
        Ok(with_client!(self, client => {
            DeviceBuffer::empty_f32_with_room(client, frames * frame_len, chunk_frames * frame_len)
        }))
    }

    /// Reads buffers back in one transfer, without blocking the calling thread.
    pub async fn read_buffers(&self, buffers: &[&DeviceBuffer]) -> Result<Vec<Vec<u8>>> {
        type Read<'a> = Pin<Box<dyn Future<Output = Result<Vec<cubecl::bytes::Bytes>, String>> + Send + 'a>>;
        fn read(backend: &Backend, handles: Vec<cubecl::server::Handle>) -> Read<'_> {
            match backend {
                Backend::Wgpu(client) => Box::pin(client.read_async(handles).map(|r| r.map_err(|e| e.to_string()))),
                #[cfg(feature = "cuda")]
                Backend::Cuda(client) => Box::pin(client.read_async(handles).map(|r| r.map_err(|e| e.to_string()))),
            }
        }
        let handles = buffers.iter().map(|b| b.handle().clone()).collect();
        let device = self.clone();
        // On the lane: starting a read waits for CubeCL's runner.
        self.lease().lane.run(self.busy(), async move {
            let bytes = read(&device.lease().backend, handles).await;
            let bytes = bytes.map_err(|e| Error::Device(format!("read back failed: {e}")))?;
            Ok(bytes.into_iter().map(|b| b.to_vec()).collect())
        })
        .await
    }

    /// Reads a buffer back without blocking the calling thread.
    pub async fn read_bytes(&self, buffer: &DeviceBuffer) -> Result<Vec<u8>> {
        Ok(self.read_buffers(&[buffer]).await?.remove(0))
    }

    /// Reads `buffer.len()` f32 back.
    pub async fn read_f32(&self, buffer: &DeviceBuffer) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(buffer).await?;
        Ok(bytes
            .chunks_exact(4)
            .take(buffer.len())
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Waits until every submitted kernel of this stream has run, and reports its errors.
    pub async fn sync(&self) -> Result<()> {
        let device = self.clone();
        self.lease().lane.run(self.busy(), async move {
            device.lease().backend.sync().await.map_err(|e| Error::Device(format!("device failed: {e}")))
        })
        .await
    }

    /// Device memory of every lane's allocator together: what all jobs on the device hold,
    /// besides model weights' own streams (a blocking call, like
    /// [`memory_usage`](Self::memory_usage)).
    pub fn lanes_memory_usage(&self) -> Result<MemoryUsage> {
        let mut total = MemoryUsage { bytes_in_use: 0, bytes_reserved: 0 };
        for stream in self.shared.lanes.streams() {
            let usage = self.shared.backend.on_stream(stream).memory_usage()?;
            total.bytes_in_use += usage.bytes_in_use;
            total.bytes_reserved += usage.bytes_reserved;
        }
        Ok(total)
    }

    /// Device memory of this stream's allocator (waits for CubeCL's runner: a blocking call).
    pub fn memory_usage(&self) -> Result<MemoryUsage> {
        self.lease().backend.memory_usage()
    }
}

/// The adapter wgpu lists `index`-th, as CubeCL names it (the rank among adapters of its type).
fn wgpu_device(adapters: &[wgpu::Adapter], index: usize) -> Result<WgpuDevice, String> {
    let Some(adapter) = adapters.get(index) else {
        let names: Vec<String> =
            adapters.iter().enumerate().map(|(i, a)| format!("wgpu:{i} {}", a.get_info().name)).collect();
        return Err(format!("no wgpu adapter {index} (there are {})", names.join(", ")));
    };
    let kind = adapter.get_info().device_type;
    let rank = adapters[..index].iter().filter(|a| a.get_info().device_type == kind).count();
    Ok(match kind {
        wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(rank),
        wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(rank),
        wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(rank),
        wgpu::DeviceType::Cpu => WgpuDevice::Cpu,
        wgpu::DeviceType::Other => return Err(format!("wgpu adapter {index} is of no type CubeCL selects")),
    })
}

fn init_wgpu(index: Option<usize>) -> Result<Arc<Shared>, String> {
    let backend = AutoGraphicsApi::backend();
    // Ask wgpu first: CubeCL panics when no adapter exists, we want to say what to install.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = futures::executor::block_on(instance.enumerate_adapters(backend.into()));
    if adapters.is_empty() {
        return Err(format!(
            "no {backend:?} adapter found; on Debian/Ubuntu without a GPU install \
             mesa-vulkan-drivers (lavapipe)"
        ));
    }
    let device = match index {
        Some(index) => wgpu_device(&adapters, index)?,
        None => WgpuDevice::DefaultDevice,
    };
    let setup = catch_unwind(AssertUnwindSafe(|| {
        cubecl::wgpu::init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default())
    }))
    .map_err(|panic| format!("wgpu initialisation failed: {}", panic_message(panic)))?;
    let adapter = setup.adapter.get_info();
    let info = DeviceInfo {
        runtime: "wgpu",
        adapter: adapter.name.clone(),
        api: format!("{:?}", adapter.backend),
        device_type: format!("{:?}", adapter.device_type),
        driver: [adapter.driver.as_str(), adapter.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let client = WgpuRuntime::client(&device);
    let id = framestream_kernels::device_id(&client);
    Ok(Arc::new(Shared { backend: Backend::Wgpu(client), id, info, lanes: Lanes::default(), budget: Arc::default(), weights: Arc::default() }))
}

#[cfg(feature = "cuda")]
fn init_cuda(index: usize) -> Result<Arc<Shared>, String> {
    use cubecl::cuda::{CudaDevice, CudaRuntime};
    let client = catch_unwind(|| {
        let client = CudaRuntime::client(&CudaDevice { index });
        // Force the server up now so a missing driver fails here, not at the first launch.
        let _ = client.memory_usage();
        client
    })
    .map_err(|panic| format!("CUDA device {index} unavailable: {}", panic_message(panic)))?;
    let info = DeviceInfo {
        runtime: "cuda",
        adapter: format!("CUDA device {index}"),
        api: "CUDA".into(),
        device_type: "DiscreteGpu".into(),
        driver: String::new(),
    };
    let id = framestream_kernels::device_id(&client);
    Ok(Arc::new(Shared { backend: Backend::Cuda(client), id, info, lanes: Lanes::default(), budget: Arc::default(), weights: Arc::default() }))
}
