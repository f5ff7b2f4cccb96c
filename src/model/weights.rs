//! Weight files: `.safetensors` and PyTorch `.pth` (zip archive + pickle), memory-mapped; each
//! tensor converted to f32 when asked for.
//!
//! PyTorch's legacy (pre-1.6, non-zip) format is recognised and refused with a clear message.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::SafeTensors;

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

    /// The header is parsed and validated by the `safetensors` crate; the data stays in the map.
    fn index_safetensors(
        path: &Path,
        map: &[u8],
    ) -> Result<(BTreeMap<String, TensorRef>, BTreeMap<String, String>)> {
        use safetensors::{Dtype, SafeTensorError};
        let (header_len, header) = SafeTensors::read_metadata(map).map_err(|e| {
            invalid(
                path,
                match e {
                    SafeTensorError::HeaderTooSmall => "too short for a safetensors file".into(),
                    SafeTensorError::InvalidHeaderLength => {
                        "not a safetensors file (its header length runs past the file)".into()
                    }
                    SafeTensorError::HeaderTooLarge => {
                        "not a safetensors file (its header length is over 100 MB)".into()
                    }
                    SafeTensorError::MetadataIncompleteBuffer => {
                        "the safetensors data does not end where the file does (truncated, or bytes \
                         after the last tensor)"
                            .into()
                    }
                    SafeTensorError::TensorInvalidInfo => {
                        "a tensor's data_offsets do not match its shape and dtype".into()
                    }
                    e @ (SafeTensorError::InvalidHeader(_) | SafeTensorError::InvalidHeaderDeserialization(_)) => {
                        format!("not a safetensors file ({e})")
                    }
                    e => format!("invalid safetensors header: {e}"),
                },
            )
        })?;
        let data_start = header_len.checked_add(8).ok_or_else(|| invalid(path, "safetensors header too long"))?;
        let mut tensors = BTreeMap::new();
        // In file order, so that the first bad tensor reported does not depend on hashing.
        for name in header.offset_keys() {
            let Some(info) = header.info(&name) else { continue };
            let dtype = match info.dtype {
                Dtype::F32 => DType::F32,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                Dtype::F64 => DType::F64,
                // Integer tensors (step counters and the like) are not weights; skip them.
                Dtype::I64 | Dtype::I32 | Dtype::I16 | Dtype::I8 | Dtype::U8 | Dtype::BOOL => continue,
                other => return Err(invalid(path, format!("tensor {name}: unsupported dtype {other}"))),
            };
            // The crate checked these; they are checked again because `tensor` slices the map
            // with them, which must not rest on another crate's invariants.
            let (start, end) = info.data_offsets;
            let needed = info.shape.iter().try_fold(dtype.size(), |a, &d| a.checked_mul(d));
            let place = data_start
                .checked_add(start)
                .zip(end.checked_sub(start))
                .filter(|&(o, e)| o.checked_add(e).is_some_and(|last| last <= map.len()));
            match place {
                Some((offset, extent)) if needed == Some(extent) => {
                    let shape = info.shape.clone();
                    let strides = row_major(&shape);
                    tensors.insert(name, TensorRef { dtype, shape, strides, offset, extent });
                }
                _ => {
                    return Err(invalid(
                        path,
                        format!(
                            "tensor {name}: data_offsets [{start}, {end}] do not match shape {:?} {dtype:?} \
                             in a file of {} bytes",
                            info.shape,
                            map.len()
                        ),
                    ));
                }
            }
        }
        let metadata = header.metadata().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok((tensors, metadata))
    }

    fn index_pth(path: &Path, map: &[u8]) -> Result<BTreeMap<String, TensorRef>> {
        let archive = zip_entries(path, map)?;
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

    /// Whether any tensor's name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        use std::ops::Bound;
        self.tensors
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|(name, _)| name.starts_with(prefix))
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

/// The entries of a `.pth` zip archive: name → byte range of its data in `map`. The zip crate
/// reads the central directory; the data is used in place, so compressed or encrypted entries
/// are refused (PyTorch stores its archives uncompressed).
fn zip_entries(path: &Path, map: &[u8]) -> Result<BTreeMap<String, Range<usize>>> {
    let unreadable = |e: zip::result::ZipError| invalid(path, format!("not a readable .pth archive: {e}"));
    // The archive starts at byte 0 (`index` checked the local header magic there): no searching
    // for a prefix, so entries' offsets are offsets into the map.
    let config = zip::read::Config { archive_offset: zip::read::ArchiveOffset::Known(0) };
    let mut archive = zip::ZipArchive::with_config(config, std::io::Cursor::new(map)).map_err(unreadable)?;
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        // Raw: nothing is decompressed; this reads the local header to find the data.
        let file = archive.by_index_raw(i).map_err(unreadable)?;
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        if file.encrypted() {
            return Err(invalid(path, format!("archive entry {name} is encrypted")));
        }
        if file.compression() != zip::CompressionMethod::Stored {
            return Err(invalid(
                path,
                format!(
                    "archive entry {name} is compressed ({}); PyTorch writes its archives uncompressed",
                    file.compression()
                ),
            ));
        }
        let start = file.data_start().and_then(|s| usize::try_from(s).ok());
        let size = usize::try_from(file.compressed_size()).ok();
        let range = start.zip(size).and_then(|(s, n)| Some(s..s.checked_add(n)?)).filter(|r| r.end <= map.len());
        let range = range.ok_or_else(|| invalid(path, format!("archive entry {name} runs past the end of the file")))?;
        out.insert(name, range);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// A zip of `(name, method, data)` entries, written by hand so that tests can break it.
    fn zip(entries: &[(&str, u16, &[u8])]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for &(name, method, data) in entries {
            let local = out.len() as u32;
            let (crc, size, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
            out.extend(b"PK\x03\x04");
            out.extend(20u16.to_le_bytes()); // version needed
            out.extend([0u8; 2]); // flags
            out.extend(method.to_le_bytes());
            out.extend([0u8; 4]); // time, date
            for v in [crc, size, size] {
                out.extend(v.to_le_bytes());
            }
            out.extend(name_len.to_le_bytes());
            out.extend([0u8; 2]); // extra length
            out.extend(name.as_bytes());
            out.extend(data);
            central.extend(b"PK\x01\x02");
            central.extend([20, 3, 20, 0, 0, 0]); // made by, needed, flags
            central.extend(method.to_le_bytes());
            central.extend([0u8; 4]);
            for v in [crc, size, size] {
                central.extend(v.to_le_bytes());
            }
            central.extend(name_len.to_le_bytes());
            central.extend([0u8; 12]); // extra, comment, disk, attributes
            central.extend(local.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let (dir, dir_len, count) = (out.len() as u32, central.len() as u32, entries.len() as u16);
        out.extend(central);
        out.extend(b"PK\x05\x06");
        out.extend([0u8; 4]); // disk numbers
        out.extend(count.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(dir_len.to_le_bytes());
        out.extend(dir.to_le_bytes());
        out.extend([0u8; 2]); // comment length
        out
    }

    /// `{"w": tensor}` with a float storage `0` viewed as `shape` with `strides`.
    fn state_dict_pickle(shape: [u8; 2], strides: [u8; 2]) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend([0x8c, 1, b'w']);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend([b'(', 0x8c, 7]);
        p.extend(b"storage");
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend([0x8c, 1, b'0', 0x8c, 3, b'c', b'p', b'u', b'K', 4, b't', b'Q']);
        p.extend([b'K', 0, b'K', shape[0], b'K', shape[1], 0x86, b'K', strides[0], b'K', strides[1], 0x86]);
        p.extend([0x89, b't', b'R', b's', b'.']);
        p
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn error(bytes: Vec<u8>) -> String {
        WeightFile::from_bytes("hostile.bin", bytes).unwrap_err().to_string()
    }

    #[test]
    fn a_stored_pth_loads_in_place() {
        let pickle = state_dict_pickle([2, 2], [1, 2]);
        let data = floats(&[1.0, 2.0, 3.0, 4.0]);
        let bytes = zip(&[("archive/data.pkl", 0, &pickle), ("archive/data/0", 0, &data)]);
        let file = WeightFile::from_bytes("ok.pth", bytes).unwrap();
        // Column-major strides: read transposed.
        assert_eq!(file.tensor("w").unwrap(), Tensor { shape: vec![2, 2], data: vec![1.0, 3.0, 2.0, 4.0] });
    }

    #[test]
    fn a_zip_pointing_past_its_end_is_refused() {
        let pickle = state_dict_pickle([2, 2], [2, 1]);
        let data = floats(&[1.0, 2.0, 3.0, 4.0]);
        let good = zip(&[("archive/data.pkl", 0, &pickle), ("archive/data/0", 0, &data)]);
        // The central directory's offset, in the end record, past the end of the file.
        let mut bytes = good.clone();
        let at = bytes.len() - 6;
        bytes[at..at + 4].copy_from_slice(&0x7FFF_0000u32.to_le_bytes());
        let err = error(bytes);
        assert!(err.contains("hostile.bin") && err.contains("not a readable .pth archive"), "{err}");
        // The storage's size, in its central directory entry, past the end of the file.
        let mut bytes = good.clone();
        let dir = u32::from_le_bytes(bytes[bytes.len() - 6..bytes.len() - 2].try_into().unwrap()) as usize;
        let second = dir + 46 + "archive/data.pkl".len();
        bytes[second + 20..second + 28].copy_from_slice(&[0xF0, 0xFF, 0xFF, 0x7F, 0xF0, 0xFF, 0xFF, 0x7F]);
        let err = error(bytes);
        assert!(err.contains("hostile.bin") && err.contains("archive/data/0"), "{err}");
        // A truncated archive.
        let err = error(good[..good.len() - 30].to_vec());
        assert!(err.contains("not a readable .pth archive"), "{err}");
    }

    #[test]
    fn a_compressed_entry_is_refused_by_name() {
        let pickle = state_dict_pickle([2, 2], [2, 1]);
        let data = floats(&[1.0, 2.0, 3.0, 4.0]);
        let err = error(zip(&[("archive/data.pkl", 8, &pickle), ("archive/data/0", 0, &data)]));
        assert!(err.contains("hostile.bin") && err.contains("archive/data.pkl is compressed (Deflated)"), "{err}");
    }

    /// A safetensors file: the header JSON as given, then `data`.
    fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn safetensors_headers_are_read_with_metadata_and_dtypes() {
        let header = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},
            "steps":{"dtype":"I64","shape":[],"data_offsets":[4,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#;
        let mut data = [half::f16::from_f32(0.5).to_le_bytes(), half::f16::from_f32(-2.0).to_le_bytes()].concat();
        data.extend(7i64.to_le_bytes());
        data.extend(3.0f32.to_le_bytes());
        let file = WeightFile::from_bytes("ok.safetensors", safetensors(header, &data)).unwrap();
        assert_eq!(file.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(file.tensor("a").unwrap().data, [0.5, -2.0]);
        assert_eq!(file.tensor("b").unwrap(), Tensor { shape: vec![1], data: vec![3.0] });
        assert_eq!(file.metadata().get("format").map(String::as_str), Some("pt"));
        let err = error(safetensors(r#"{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, &[0, 0]));
        assert!(err.contains("tensor a: unsupported dtype F8_E4M3"), "{err}");
    }

    #[test]
    fn safetensors_offsets_past_the_end_are_refused() {
        let err = error(safetensors(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 8]));
        assert!(err.contains("hostile.bin") && err.contains("does not end where the file does"), "{err}");
        let huge = r#"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,18446744073709551615]}}"#;
        assert!(error(safetensors(huge, &[0; 8])).contains("hostile.bin"));
        // Overlapping tensors, and a shape that does not match the offsets.
        let overlap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(error(safetensors(overlap, &[0; 4])).contains("invalid offset for tensor"));
        let short = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(error(safetensors(short, &[0; 8])).contains("do not match its shape"));
    }

    #[test]
    fn safetensors_header_lengths_past_the_file_are_refused() {
        let mut bytes = safetensors("{}", &[]);
        bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
        let err = error(bytes.clone());
        assert!(err.contains("hostile.bin") && err.contains("header length runs past the file"), "{err}");
        bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(error(bytes).contains("over 100 MB"));
        assert!(error(vec![1, 2, 3]).contains("too short"));
    }
}
