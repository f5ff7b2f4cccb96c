//! The element type models compute in.

use framestream_kernels::Element;

use crate::device::{Device, with_client};
use crate::error::{Error, Result};

/// `$body` with `$E` the element type of `$precision` (f32, f16 or bf16): the one place a
/// runtime precision becomes a type parameter.
macro_rules! with_element {
    ($precision:expr, $E:ident => $body:expr) => {
        match $precision {
            $crate::model::Precision::F32 => {
                type $E = f32;
                $body
            }
            $crate::model::Precision::F16 => {
                type $E = half::f16;
                $body
            }
            $crate::model::Precision::BF16 => {
                type $E = half::bf16;
                $body
            }
        }
    };
}
pub(crate) use with_element;

/// The element type a model computes its activations in (weights are converted to it);
/// frames enter and leave as f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everywhere, and the reference for parity.
    #[default]
    F32,
    /// Half the memory of f32; where the device has f16 (most GPUs, lavapipe).
    F16,
    /// ComfyUI's working type for this VAE; where the device has bf16 (recent NVIDIA GPUs).
    BF16,
}

impl Precision {
    pub(crate) fn of<E: Element>() -> Self {
        use std::any::TypeId;
        match TypeId::of::<E>() {
            t if t == TypeId::of::<half::f16>() => Precision::F16,
            t if t == TypeId::of::<half::bf16>() => Precision::BF16,
            _ => Precision::F32,
        }
    }
}

impl Precision {
    /// Bytes of one value.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::BF16 => 2,
        }
    }

    /// Errors when `device` cannot compute in `E`; `fallback` says what to use instead.
    pub(crate) fn ensure_supported<E: Element>(device: &Device, fallback: &str) -> Result<()> {
        if with_client!(device, client => framestream_kernels::supports::<_, E>(client)) {
            return Ok(());
        }
        let precision = Precision::of::<E>();
        Err(Error::Device(format!(
            "{} cannot compute in {precision}: {fallback} in f32{}",
            device.info().adapter,
            if precision == Precision::BF16 { " or f16" } else { "" }
        )))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::BF16 => "bf16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" | "float16" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::BF16),
            other => Err(Error::config(format!("unknown precision `{other}` (f32, f16 or bf16)"))),
        }
    }
}
