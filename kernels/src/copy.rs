//! Copies a range of elements between buffers: slicing a batch into chunks, joining chunks
//! into a batch, keeping a convolution's cached frames.

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim};
use crate::{DeviceBuffer, Element};

#[cube(launch_unchecked)]
fn copy_kernel<F: Float>(src: &Array<F>, dst: &mut Array<F>, src_start: u32, dst_start: u32, len: u32) {
    let i = ABSOLUTE_POS;
    if i < len as usize {
        dst[dst_start as usize + i] = src[src_start as usize + i];
    }
}

/// `dst[dst_start .. dst_start + len] = src[src_start .. src_start + len]`, elements of `E`.
pub fn copy<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    src: &DeviceBuffer,
    src_start: usize,
    dst: &DeviceBuffer,
    dst_start: usize,
    len: usize,
) {
    assert!(src_start.checked_add(len).is_some_and(|end| end <= src.len()), "copy reads past the source");
    assert!(dst_start.checked_add(len).is_some_and(|end| end <= dst.len()), "copy writes past the destination");
    assert!(src.elem_bytes() == size_of::<E>() && dst.elem_bytes() == size_of::<E>(), "copy of another element type");
    let limit = u32::MAX as usize;
    assert!(src.len() <= limit && dst.len() <= limit, "copy of a buffer over 2^32 elements");
    if len == 0 {
        return;
    }
    // SAFETY: both ranges were checked above.
    unsafe {
        copy_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, len),
            cube_dim(),
            src.arg_of::<R, E>(client),
            dst.arg_of::<R, E>(client),
            src_start as u32,
            dst_start as u32,
            len as u32,
        );
    }
}

/// CPU reference of [`copy`].
pub fn copy_reference(src: &[f32], src_start: usize, dst: &mut [f32], dst_start: usize, len: usize) {
    dst[dst_start..dst_start + len].copy_from_slice(&src[src_start..src_start + len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{client, read_f32, Rng};

    #[test]
    fn matches_reference() {
        let client = client();
        let mut rng = Rng::new(5);
        for _ in 0..10 {
            let (src_len, dst_len) = (rng.range(1, 3000), rng.range(1, 3000));
            let src_data = rng.vec_f32(src_len, -1.0, 1.0);
            let mut dst_data = rng.vec_f32(dst_len, -1.0, 1.0);
            let len = rng.range(0, src_data.len().min(dst_data.len()));
            let src_start = rng.range(0, src_data.len() - len);
            let dst_start = rng.range(0, dst_data.len() - len);
            let src = DeviceBuffer::from_f32(&client, &src_data);
            let dst = DeviceBuffer::from_f32(&client, &dst_data);
            copy::<_, f32>(&client, &src, src_start, &dst, dst_start, len);
            copy_reference(&src_data, src_start, &mut dst_data, dst_start, len);
            let got = read_f32(&client, dst.handle().clone());
            assert!(got == dst_data, "copy of {len} at {src_start} -> {dst_start}");
        }
    }
}
