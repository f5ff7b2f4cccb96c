//! Your own CubeCL kernels on a pipeline's frames, on its device stream.
//!
//! Implement [`FrameKernel`] with a `#[cube(launch)]` kernel (CubeCL's checked launch: an
//! index past an array reads 0 and writes nothing) and run it with
//! [`Chunk::launch`](crate::Chunk::launch), typically inside [`map`](crate::SourceExt::map).
//! The arguments handed out have the lengths of the buffers they bind, so no safe code can
//! make a kernel read or write past them. `framestream::kernel::cubecl` is the CubeCL this
//! crate runs; the `#[cube]` macro names its crate `cubecl`, so a crate writing kernels also
//! depends on `cubecl = "=0.10.0"`. `examples/custom_stage.rs` is a complete stage.

pub use cubecl;
use cubecl::prelude::{ArrayArg, ComputeClient, CubeCount, CubeDim, Runtime};
use framestream_kernels::{DeviceBuffer, elementwise_grid};

use crate::chunk::Shape;
use crate::error::Result;

/// A kernel over a chunk's frames: reads them (f32, `[frames, height, width, channels]`) and
/// writes a result of the shape [`Chunk::launch`](crate::Chunk::launch) was given.
pub trait FrameKernel: Send + Sync {
    /// Launches the kernel on `args.client`.
    fn launch<R: Runtime>(&self, args: KernelArgs<'_, R>) -> Result<()>;
}

/// What a launch gets: the client of the chunk's stream, the frames and the output buffer.
pub struct KernelArgs<'a, R: Runtime> {
    pub client: &'a ComputeClient<R>,
    input: &'a DeviceBuffer,
    output: &'a DeviceBuffer,
    /// `[frames, height, width, channels]` of the input and of the output.
    pub input_shape: Shape,
    pub output_shape: Shape,
}

impl<'a, R: Runtime> KernelArgs<'a, R> {
    pub(crate) fn new(
        client: &'a ComputeClient<R>,
        input: (&'a DeviceBuffer, Shape),
        output: (&'a DeviceBuffer, Shape),
    ) -> Self {
        Self { client, input: input.0, output: output.0, input_shape: input.1, output_shape: output.1 }
    }

    /// The frames, an `Array<f32>` of every value of the chunk. Bind it read-only (`&Array`):
    /// clones of the chunk (a tee's other branches) share these values.
    pub fn input(&self) -> ArrayArg<R> {
        self.input.arg_of::<R, f32>(self.client)
    }

    /// The result, an `Array<f32>` of the output shape's count of values (not initialised).
    pub fn output(&self) -> ArrayArg<R> {
        self.output.arg_of::<R, f32>(self.client)
    }

    /// A launch grid of `units` threads (cubes of 256 over the axes the device allows); the
    /// kernel guards with `ABSOLUTE_POS < units`.
    pub fn grid(&self, units: usize) -> (CubeCount, CubeDim) {
        elementwise_grid(self.client, units)
    }
}
