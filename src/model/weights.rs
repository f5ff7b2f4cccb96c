//! Weight files: `.safetensors` and PyTorch `.pth` (zip archive + pickle), memory-mapped; each
//! tensor converted to f32 when asked for.
//!
//! PyTorch's legacy (pre-1.6, non-zip) format is recognised and refused with a clear message.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::pickle::{self, StorageRef};
use crate::error::{Error, Result};

/// Element types a weight file may store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F64 => 8,
        }
    }

    fn decode(self, bytes: &[u8]) -> f32 {
        match self {
            DType::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            DType::F16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            DType::BF16 => half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            DType::F64 => f64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as f32,
        }
    }
}

/// Where a tensor's elements are in the mapped file.
#[derive(Clone, Debug)]
struct TensorRef {
    dtype: DType,
    shape: Vec<usize>,
    /// Element strides (row-major for safetensors).
    strides: Vec<usize>,
    /// Byte offset of element 0 in the file.
    offset: usize,
    /// Bytes the tensor may read from `offset` on.
    extent: usize,
}

/// A tensor converted to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The bytes of a weight file: mapped from disk, or owned.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A weight file's tensors by name.
#[derive(Clone)]
pub struct WeightFile {
    path: Arc<PathBuf>,
    map: Arc<Bytes>,
    tensors: BTreeMap<String, TensorRef>,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

/// PyTorch's legacy serialisation magic number.
const LEGACY_MAGIC: [u8; 10] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20];

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights { path: path.to_path_buf(), message: message.into() }
}

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

impl WeightFile {
    /// Opens a `.safetensors` or `.pth` file (told apart by content, not name).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: the mapping is read-only; a file changed underneath while mapped would give
        // wrong weights, not memory unsafety in our use (bytes are copied out and checked).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
        Self::index(path, Bytes::Mapped(map))
    }

    /// Reads weights held in memory; `name` stands for the file in errors.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        Self::index(name.as_ref(), Bytes::Owned(bytes))
    }

    fn index(path: &Path, map: Bytes) -> Result<Self> {
        let (tensors, metadata) = if map.starts_with(b"PK\x03\x04") {
            (Self::index_pth(path, &map)?, BTreeMap::new())
        } else if map.starts_with(&LEGACY_MAGIC) || map.starts_with(&[0x80, 0x02, 0x8a]) {
            return Err(invalid(
                path,
                "a PyTorch file in the legacy format (before 1.6), which is not supported: \
                 re-save it with torch.save in PyTorch ≥ 1.6, or convert it to .safetensors",
            ));
        } else {
            Self::index_safetensors(path, &map)?
        };
        Ok(Self { path: Arc::new(path.to_path_buf()), map: Arc::new(map), tensors, metadata })
    }

    fn index_safetensors(
        path: &Path,
        map: &[u8],
    ) -> Result<(BTreeMap<String, TensorRef>, BTreeMap<String, String>)> {
        let parsed = parse_safetensors_header(map).map_err(|m| invalid(path, m))?;
        Ok(parsed)
    }

    fn index_pth(path: &Path, map: &[u8]) -> Result<BTreeMap<String, TensorRef>> {
        let archive = zip_entries(map).map_err(|m| invalid(path, format!("not a readable .pth archive: {m}")))?;
        let (prefix, pkl) = archive
            .iter()
            .find(|(name, _)| name.ends_with("/data.pkl") || name.as_str() == "data.pkl")
            .map(|(name, range)| (name.trim_end_matches("data.pkl").to_string(), range.clone()))
            .ok_or_else(|| invalid(path, "a zip archive without data.pkl: not a PyTorch file"))?;
        let object = pickle::load(&map[pkl]).map_err(|m| invalid(path, format!("data.pkl: {m}")))?;
        let state = pickle::state_dict(object).map_err(|m| invalid(path, m))?;
        let mut tensors = BTreeMap::new();
        for (name, t) in state {
            let StorageRef { key, dtype, offset, shape, strides } = t;
            let entry = format!("{prefix}data/{key}");
            let range = archive
                .get(&entry)
                .ok_or_else(|| invalid(path, format!("tensor {name}: storage {entry} is missing")))?;
            let size = dtype.size();
            let overflow = || invalid(path, format!("tensor {name}: its size overflows"));
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
            // Elements from the first to the last one the strides reach.
            let extent_elems = if count == 0 {
                0
            } else {
                shape
                    .iter()
                    .zip(&strides)
                    .try_fold(1usize, |a, (&n, &st)| (n - 1).checked_mul(st).and_then(|v| a.checked_add(v)))
                    .ok_or_else(overflow)?
            };
            if count > extent_elems {
                return Err(invalid(path, format!("tensor {name} repeats elements (zero strides)")));
            }
            let start = offset.checked_mul(size).and_then(|o| o.checked_add(range.start)).ok_or_else(overflow)?;
            let extent = extent_elems.checked_mul(size).ok_or_else(overflow)?;
            if start.checked_add(extent).is_none_or(|end| end > range.end) {
                return Err(invalid(path, format!("tensor {name} reads past its storage")));
            }
            tensors.insert(name, TensorRef { dtype, shape, strides, offset: start, extent });
        }
        Ok(tensors)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The safetensors `__metadata__` entries (empty for `.pth`).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Tensor `name` as f32, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| invalid(&self.path, format!("missing tensor {name}")))?;
        let count: usize = t.shape.iter().product();
        let size = t.dtype.size();
        let bytes = &self.map[t.offset..t.offset + t.extent];
        let mut data = Vec::with_capacity(count);
        if t.strides == row_major(&t.shape) {
            data.extend(bytes[..count * size].chunks_exact(size).map(|b| t.dtype.decode(b)));
        } else {
            let mut index = vec![0usize; t.shape.len()];
            for _ in 0..count {
                let at: usize = index.iter().zip(&t.strides).map(|(i, s)| i * s).sum();
                data.push(t.dtype.decode(&bytes[at * size..(at + 1) * size]));
                for d in (0..index.len()).rev() {
                    index[d] += 1;
                    if index[d] < t.shape[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(invalid(&self.path, format!("tensor {name} holds a non-finite value at {i}")));
        }
        Ok(Tensor { shape: t.shape.clone(), data })
    }

    /// Tensor `name` with exactly `shape`, or an error naming the tensor and both shapes.
    pub fn tensor_shaped(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.shape(name) {
            Some(found) if found == shape => self.tensor(name),
            Some(found) => Err(invalid(
                &self.path,
                format!("tensor {name} has shape {found:?}, expected {shape:?}"),
            )),
            None => Err(invalid(&self.path, format!("missing tensor {name} (expected shape {shape:?})"))),
        }
    }

    /// The same file seen with names rewritten by `rename` (entries mapped to `None` dropped).
    pub fn renamed(&self, rename: impl Fn(&str) -> Option<String>) -> Self {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| rename(k).map(|k| (k, v.clone())))
            .collect();
        Self { tensors, ..self.clone() }
    }
}

/// Writes f32 tensors `(name, shape, values)` as a `.safetensors` file (for tests, tools and
/// exported weights).
pub fn save_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::shape(format!("tensor {name}: {} values for shape {shape:?}", values.len())));
        }
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [start, data.len()] }),
        );
    }
    let mut header = serde_json::to_vec(&header).expect("a JSON object");
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    crate::atomic_file::write_atomic(path, &bytes, true)
}

/// A safetensors header: the tensors by name, and the metadata.
type Header = (BTreeMap<String, TensorRef>, BTreeMap<String, String>);

/// Parses a safetensors header. Checks every offset.
fn parse_safetensors_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 8 {
        return Err("too short for a safetensors file".into());
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let header_end = usize::try_from(n).ok().and_then(|n| n.checked_add(8)).filter(|&e| e <= bytes.len());
    let Some(header_end) = header_end else {
        return Err("not a safetensors file (its header length runs past the file)".into());
    };
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|e| format!("not a safetensors file (header: {e})"))?;
    let entries = header.as_object().ok_or("safetensors header is not an object")?;
    let data = &bytes[header_end..];
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, entry) in entries {
        if name == "__metadata__" {
            for (k, v) in entry.as_object().into_iter().flatten() {
                if let Some(v) = v.as_str() {
                    metadata.insert(k.clone(), v.to_string());
                }
            }
            continue;
        }
        let dtype = match entry["dtype"].as_str() {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F64") => DType::F64,
            Some(other) => {
                // Integer tensors (step counters and the like) are not weights; skip them.
                if ["I64", "I32", "I16", "I8", "U8", "BOOL"].contains(&other) {
                    continue;
                }
                return Err(format!("tensor {name}: unsupported dtype {other}"));
            }
            None => return Err(format!("tensor {name}: no dtype")),
        };
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .ok_or_else(|| format!("tensor {name}: no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("tensor {name}: bad shape"))?;
        let offsets = entry["data_offsets"]
            .as_array()
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()? as usize, o[1].as_u64()? as usize)))
            .ok_or_else(|| format!("tensor {name}: bad data_offsets"))?;
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let bytes_needed = count.and_then(|c| c.checked_mul(dtype.size()));
        if offsets.0 > offsets.1 || offsets.1 > data.len() || bytes_needed != Some(offsets.1 - offsets.0) {
            return Err(format!(
                "tensor {name}: data_offsets {offsets:?} do not match shape {shape:?} {dtype:?} \
                 in {} data bytes",
                data.len()
            ));
        }
        let strides = row_major(&shape);
        tensors.insert(
            name.clone(),
            TensorRef { dtype, shape, strides, offset: header_end + offsets.0, extent: offsets.1 - offsets.0 },
        );
    }
    Ok((tensors, metadata))
}

/// The stored entries of a zip archive: name → byte range of its data. Compressed entries are
/// refused (PyTorch stores its archives uncompressed).
fn zip_entries(bytes: &[u8]) -> std::result::Result<BTreeMap<String, std::ops::Range<usize>>, String> {
    let u16_at = |at: usize| -> Option<usize> { Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize) };
    let u32_at = |at: usize| -> Option<usize> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize) };
    // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
    let search_from = bytes.len().saturating_sub(65_536 + 22);
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == *b"PK\x05\x06")
        .ok_or("no end of central directory")?;
    let mut entries_total = u16_at(eocd + 10).ok_or("truncated")?;
    let mut dir = u32_at(eocd + 16).ok_or("truncated")?;
    if dir == 0xFFFF_FFFF || entries_total == 0xFFFF {
        // Zip64: the locator just before the record points at the zip64 record.
        let locator = eocd.checked_sub(20).filter(|&l| bytes[l..l + 4] == *b"PK\x06\x07").ok_or("bad zip64 locator")?;
        let record = u64::from_le_bytes(bytes[locator + 8..locator + 16].try_into().map_err(|_| "truncated")?) as usize;
        if bytes.get(record..record + 4) != Some(b"PK\x06\x06") {
            return Err("bad zip64 record".into());
        }
        let read64 = |at: usize| -> std::result::Result<usize, String> {
            Ok(u64::from_le_bytes(bytes.get(at..at + 8).ok_or("truncated")?.try_into().map_err(|_| "truncated")?) as usize)
        };
        entries_total = read64(record + 32)?;
        dir = read64(record + 48)?;
    }
    let mut out = BTreeMap::new();
    let mut at = dir;
    for _ in 0..entries_total {
        if bytes.get(at..at + 4) != Some(b"PK\x01\x02") {
            return Err("bad central directory".into());
        }
        let method = u16_at(at + 10).ok_or("truncated")?;
        let mut compressed = u32_at(at + 20).ok_or("truncated")?;
        let name_len = u16_at(at + 28).ok_or("truncated")?;
        let extra_len = u16_at(at + 30).ok_or("truncated")?;
        let comment_len = u16_at(at + 32).ok_or("truncated")?;
        let mut local = u32_at(at + 42).ok_or("truncated")?;
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or("truncated")?;
        let name = String::from_utf8_lossy(name).into_owned();
        // Zip64 sizes and offsets live in the extra field.
        let extra = bytes.get(at + 46 + name_len..at + 46 + name_len + extra_len).ok_or("truncated")?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[e], extra[e + 1]]);
            let len = u16::from_le_bytes([extra[e + 2], extra[e + 3]]) as usize;
            if id == 1 {
                let mut field = e + 4;
                let mut next = || -> Option<usize> {
                    let v = u64::from_le_bytes(extra.get(field..field + 8)?.try_into().ok()?) as usize;
                    field += 8;
                    Some(v)
                };
                let uncompressed_is_64 = u32_at(at + 24) == Some(0xFFFF_FFFF);
                if uncompressed_is_64 {
                    next();
                }
                if compressed == 0xFFFF_FFFF {
                    compressed = next().ok_or("bad zip64 field")?;
                }
                if local == 0xFFFF_FFFF {
                    local = next().ok_or("bad zip64 field")?;
                }
            }
            e += 4 + len;
        }
        if method != 0 {
            return Err(format!("{name} is compressed (method {method}); PyTorch archives are stored"));
        }
        if bytes.get(local..local + 4) != Some(b"PK\x03\x04") {
            return Err(format!("{name}: bad local header"));
        }
        let local_name = u16_at(local + 26).ok_or("truncated")?;
        let local_extra = u16_at(local + 28).ok_or("truncated")?;
        let start = local + 30 + local_name + local_extra;
        let end = start.checked_add(compressed).filter(|&e| e <= bytes.len()).ok_or("entry past the end")?;
        out.insert(name, start..end);
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}
