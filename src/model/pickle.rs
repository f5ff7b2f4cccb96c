//! A small, safe unpickler for PyTorch state dicts (protocols 2–5).
//!
//! It builds plain values and understands only what `torch.save(state_dict)` writes: dicts
//! (`collections.OrderedDict`), tensors (`torch._utils._rebuild_tensor_v2`, parameters) and
//! their storages (as persistent ids). Any other global is refused, so a file cannot run code.
//!
//! Memo entries are copied where a pickle shares them, so a few bytes of memo references can
//! describe an exponentially large value: every copy is charged to a budget
//! ([`MAX_COPIED_BYTES`]), and nesting is bounded ([`MAX_DEPTH`]) so that building, copying and
//! dropping values never recurses deeply.

use std::collections::HashMap;

use super::weights::DType;

/// A tensor's place in its storage.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// The storage's entry name under `data/`.
    pub key: String,
    pub dtype: DType,
    /// Element offset in the storage.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// An allowed global (`module.name`).
    Global(String),
    /// A storage from a persistent id: (dtype, key).
    Storage(DType, String),
    Tensor(StorageRef),
    /// The stack mark.
    Mark,
}

type Result<T> = std::result::Result<T, String>;

/// Containers within containers (a state dict needs fewer than ten).
pub const MAX_DEPTH: u32 = 64;
/// Bytes of values that memo references may copy in one pickle (a real state dict copies a few
/// hundred kilobytes).
pub const MAX_COPIED_BYTES: usize = 64 << 20;

/// Approximate bytes of `value`: its nodes and their text, iteratively.
fn footprint(value: &Value) -> usize {
    let mut total = 0;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        total += size_of::<Value>();
        match v {
            Value::Str(t) => total += t.len(),
            Value::Bytes(b) => total += b.len(),
            Value::Global(t) | Value::Storage(_, t) => total += t.len(),
            Value::Tensor(t) => total += t.key.len() + 16 * t.shape.len(),
            Value::Tuple(items) | Value::List(items) => pending.extend(items),
            Value::Dict(pairs) => pending.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            _ => {}
        }
    }
    total
}

/// The unpickler's stack, with each value's nesting depth beside it.
#[derive(Default)]
struct Stack {
    values: Vec<Value>,
    depths: Vec<u32>,
}

impl Stack {
    fn push(&mut self, value: Value, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested over {MAX_DEPTH} deep"));
        }
        self.values.push(value);
        self.depths.push(depth);
        Ok(())
    }

    /// A value without containers inside.
    fn leaf(&mut self, value: Value) -> Result<()> {
        self.push(value, 0)
    }

    fn pop(&mut self) -> Result<(Value, u32)> {
        match (self.values.pop(), self.depths.pop()) {
            (Some(v), Some(d)) => Ok((v, d)),
            _ => Err("pickle stack underflow".into()),
        }
    }

    /// The values above the topmost mark, and the deepest of them.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, u32)> {
        let mark = self.values.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("pickle mark missing")?;
        let items = self.values.split_off(mark + 1);
        let depth = self.depths.split_off(mark + 1).into_iter().max().unwrap_or(0);
        self.values.pop();
        self.depths.pop();
        Ok((items, depth))
    }

    /// The top `n` values, and the deepest of them.
    fn pop_n(&mut self, n: usize) -> Result<(Vec<Value>, u32)> {
        let at = self.values.len().checked_sub(n).ok_or("pickle stack underflow")?;
        let depth = self.depths.split_off(at).into_iter().max().unwrap_or(0);
        Ok((self.values.split_off(at), depth))
    }

    /// The container on top, after `item_depth` deep values go into it.
    fn top_container(&mut self, item_depth: u32) -> Result<&mut Value> {
        let depth = self.depths.last_mut().ok_or("pickle stack underflow")?;
        *depth = (*depth).max(item_depth + 1);
        if *depth > MAX_DEPTH {
            return Err(format!("values nested over {MAX_DEPTH} deep"));
        }
        Ok(self.values.last_mut().expect("depths and values have one length"))
    }

    fn top(&self) -> Result<(&Value, u32)> {
        match (self.values.last(), self.depths.last()) {
            (Some(v), Some(&d)) => Ok((v, d)),
            _ => Err("memo of an empty stack".into()),
        }
    }
}

/// Memo entries with their depth and footprint, and what copies have cost so far.
#[derive(Default)]
struct Memo {
    entries: HashMap<u32, (Value, u32, usize)>,
    copied: usize,
}

impl Memo {
    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.copied = self.copied.saturating_add(bytes);
        if self.copied > MAX_COPIED_BYTES {
            return Err(format!(
                "memo references copy over {} MiB of values (a pickle bomb?)",
                MAX_COPIED_BYTES >> 20
            ));
        }
        Ok(())
    }

    fn put(&mut self, index: u32, stack: &Stack) -> Result<()> {
        let (value, depth) = stack.top()?;
        let bytes = footprint(value);
        self.charge(bytes)?;
        self.entries.insert(index, (value.clone(), depth, bytes));
        Ok(())
    }

    fn get(&mut self, index: u32, stack: &mut Stack) -> Result<()> {
        let (value, depth, bytes) = self.entries.get(&index).ok_or("unknown memo entry")?;
        let (value, depth, bytes) = (value.clone(), *depth, *bytes);
        self.charge(bytes)?;
        stack.push(value, depth)
    }
}

const ALLOWED: [&str; 13] = [
    "collections.OrderedDict",
    "typing.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.DoubleStorage",
    "torch.IntStorage",
    "torch.LongStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch._utils._rebuild_parameter_with_state",
];

fn storage_dtype(global: &str) -> Option<DType> {
    match global {
        "torch.FloatStorage" => Some(DType::F32),
        "torch.HalfStorage" => Some(DType::F16),
        "torch.BFloat16Storage" => Some(DType::BF16),
        "torch.DoubleStorage" => Some(DType::F64),
        _ => None,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated pickle")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("truncated pickle line")?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| "pickle line is not UTF-8")?;
        self.at += end + 1;
        Ok(line)
    }

    fn string(&mut self, n: usize) -> Result<String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "pickle string is not UTF-8".into())
    }
}

fn usize_of(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!("{what}: expected a count, found {}", kind(other))),
    }
}

fn usizes(v: &Value, what: &str) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| usize_of(i, what)).collect(),
        other => Err(format!("{what}: expected a tuple, found {}", kind(other))),
    }
}

/// `callable(*args)` for the allowed callables.
fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(name) = callable else {
        return Err(format!("cannot call {}", kind(&callable)));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("{name}: arguments are not a tuple"));
    };
    match name.as_str() {
        "collections.OrderedDict" | "typing.OrderedDict" => Ok(Value::Dict(Vec::new())),
        "torch._utils._rebuild_tensor_v2" => {
            if args.len() < 4 {
                return Err("_rebuild_tensor_v2 with too few arguments".into());
            }
            let Value::Storage(dtype, key) = &args[0] else {
                return Err(format!("a tensor whose storage is {}", kind(&args[0])));
            };
            let shape = usizes(&args[2], "tensor size")?;
            let strides = usizes(&args[3], "tensor stride")?;
            if shape.len() != strides.len() {
                return Err("tensor size and stride differ in length".into());
            }
            Ok(Value::Tensor(StorageRef {
                key: key.clone(),
                dtype: *dtype,
                offset: usize_of(&args[1], "storage offset")?,
                shape,
                strides,
            }))
        }
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            args.into_iter().next().ok_or_else(|| "_rebuild_parameter without a tensor".into())
        }
        other => Err(format!("calling {other} is not supported")),
    }
}

/// Runs the pickle program; returns the value it stops with.
pub fn load(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader { bytes, at: 0 };
    let mut stack = Stack::default();
    let mut memo = Memo::default();
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto}"));
                }
            }
            0x95 => {
                r.u64()?; // FRAME
            }
            b'.' => return Ok(stack.pop()?.0),
            b'(' => stack.leaf(Value::Mark)?,
            b'}' => stack.push(Value::Dict(Vec::new()), 1)?,
            b']' => stack.push(Value::List(Vec::new()), 1)?,
            b')' => stack.push(Value::Tuple(Vec::new()), 1)?,
            b'N' => stack.leaf(Value::None)?,
            0x88 => stack.leaf(Value::Bool(true))?,
            0x89 => stack.leaf(Value::Bool(false))?,
            b'J' => stack.leaf(Value::Int(i64::from(r.u32()? as i32)))?,
            b'K' => stack.leaf(Value::Int(i64::from(r.u8()?)))?,
            b'M' => stack.leaf(Value::Int(i64::from(r.u16()?)))?,
            0x8a => {
                let n = r.u8()? as usize;
                let raw = r.take(n)?;
                if n > 8 {
                    return Err("integer too large".into());
                }
                let mut buf = if raw.last().is_some_and(|b| b & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(raw);
                stack.leaf(Value::Int(i64::from_le_bytes(buf)))?;
            }
            b'I' => {
                let line = r.line()?;
                let v = match line {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    n => Value::Int(n.parse().map_err(|_| format!("bad INT {n}"))?),
                };
                stack.leaf(v)?;
            }
            b'G' => stack.leaf(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().expect("8"))))?,
            b'X' => {
                let n = r.u32()? as usize;
                stack.leaf(Value::Str(r.string(n)?))?;
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.leaf(Value::Str(r.string(n)?))?;
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).map_err(|_| "string too long")?;
                stack.leaf(Value::Str(r.string(n)?))?;
            }
            b'T' | b'B' => {
                let n = r.u32()? as usize;
                stack.leaf(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            b'U' | b'C' => {
                let n = r.u8()? as usize;
                stack.leaf(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            b't' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push(Value::Tuple(items), depth + 1)?;
            }
            0x85..=0x87 => {
                let (items, depth) = stack.pop_n(usize::from(op - 0x84))?;
                stack.push(Value::Tuple(items), depth + 1)?;
            }
            b'l' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push(Value::List(items), depth + 1)?;
            }
            b'd' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push(Value::Dict(pairs(items)?), depth + 1)?;
            }
            b'a' => {
                let (v, depth) = stack.pop()?;
                match stack.top_container(depth)? {
                    Value::List(items) => items.push(v),
                    _ => return Err("APPEND to a non-list".into()),
                }
            }
            b'e' => {
                let (items, depth) = stack.pop_mark()?;
                match stack.top_container(depth)? {
                    Value::List(list) => list.extend(items),
                    _ => return Err("APPENDS to a non-list".into()),
                }
            }
            b's' => {
                let (v, dv) = stack.pop()?;
                let (k, dk) = stack.pop()?;
                match stack.top_container(dv.max(dk))? {
                    Value::Dict(pairs) => pairs.push((k, v)),
                    _ => return Err("SETITEM on a non-dict".into()),
                }
            }
            b'u' => {
                let (items, depth) = stack.pop_mark()?;
                let new = pairs(items)?;
                match stack.top_container(depth)? {
                    Value::Dict(pairs) => pairs.extend(new),
                    _ => return Err("SETITEMS on a non-dict".into()),
                }
            }
            b'q' => memo.put(u32::from(r.u8()?), &stack)?,
            b'r' => memo.put(r.u32()?, &stack)?,
            0x94 => memo.put(memo.entries.len() as u32, &stack)?,
            b'h' => memo.get(u32::from(r.u8()?), &mut stack)?,
            b'j' => memo.get(r.u32()?, &mut stack)?,
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.leaf(global(format!("{module}.{name}"))?)?;
            }
            0x93 => {
                let (name, _) = stack.pop()?;
                let (module, _) = stack.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.leaf(global(format!("{m}.{n}"))?)?,
                    _ => return Err("STACK_GLOBAL without names".into()),
                }
            }
            b'Q' => {
                let (pid, _) = stack.pop()?;
                stack.leaf(persistent(pid)?)?;
            }
            b'R' | 0x81 => {
                // REDUCE and NEWOBJ: an allowed callable's result is no deeper than its arguments.
                let (args, depth) = stack.pop()?;
                let (callable, _) = stack.pop()?;
                stack.push(reduce(callable, args)?, depth.max(1))?;
            }
            b'b' => {
                // BUILD: the state of dicts and tensors (metadata) carries no weights.
                stack.pop()?;
                if stack.values.is_empty() {
                    return Err("BUILD on an empty stack".into());
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
}

/// Alternating keys and values as pairs.
fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of dict items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn global(name: String) -> Result<Value> {
    if ALLOWED.contains(&name.as_str()) {
        Ok(Value::Global(name))
    } else {
        Err(format!("the file asks for {name}, which a weight file has no use for"))
    }
}

/// `('storage', type, key, location, numel)` → a storage.
fn persistent(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        return Err("a persistent id that is not a tuple".into());
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global(ty), Value::Str(key), ..] if kind == "storage" => {
            let dtype = storage_dtype(ty).unwrap_or(DType::F32);
            if storage_dtype(ty).is_none() {
                // Integer storages (buffers such as step counters) are kept out of the weights.
                return Ok(Value::Storage(dtype, format!("\u{0}skip:{key}")));
            }
            Ok(Value::Storage(dtype, key.clone()))
        }
        _ => Err(format!("an unsupported persistent id of {} items", items.len())),
    }
}

/// The tensors of a state dict, unwrapping the usual nesting (`params_ema`, `state_dict`, …,
/// a single-key dict). Non-tensor entries are skipped.
pub fn state_dict(value: Value) -> Result<Vec<(String, StorageRef)>> {
    const WRAPPERS: [&str; 7] = ["model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net"];
    let mut value = value;
    loop {
        let Value::Dict(pairs) = &value else {
            return Err(format!("the file holds {}, not a dict of tensors", kind(&value)));
        };
        let find = |name: &str| pairs.iter().position(|(k, _)| *k == Value::Str(name.into()));
        let wrapper = WRAPPERS.iter().find_map(|w| find(w)).filter(|&i| matches!(pairs[i].1, Value::Dict(_)));
        let single = (pairs.len() == 1 && matches!(pairs[0].1, Value::Dict(_))).then_some(0);
        match wrapper.or(single) {
            Some(i) => value = pairs[i].1.clone(),
            None => break,
        }
    }
    let Value::Dict(pairs) = value else { unreachable!("checked in the loop") };
    let tensors: Vec<(String, StorageRef)> = pairs
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) if !t.key.starts_with('\u{0}') => Some((k, t)),
            _ => None,
        })
        .collect();
    if tensors.is_empty() {
        return Err("no floating-point tensors in the file".into());
    }
    Ok(tensors)
}

/// What `v` is, in a few words (values may be large: never format them whole).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Dict(_) => "a dict",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Tensor(_) => "a single tensor",
        Value::Storage(..) => "a storage",
        Value::Global(_) => "a global",
        Value::Str(_) => "a string",
        Value::Int(_) => "an integer",
        _ => "a plain value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_bomb_is_refused_within_the_budget() {
        // l = []; then 40 times l = [l, l]: 2^40 nodes from 247 bytes.
        let mut pickle = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..40 {
            pickle.extend([b'(', b'h', 0, b'h', 0, b'l', b'q', 0]);
        }
        pickle.push(b'.');
        let err = load(&pickle).unwrap_err();
        assert!(err.contains("pickle bomb"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        // 1000 lists, each appended into the one below.
        let mut pickle = vec![0x80, 2];
        pickle.extend([b']'; 1000]);
        pickle.extend([b'a'; 999]);
        pickle.push(b'.');
        let err = load(&pickle).unwrap_err();
        assert!(err.contains("nested"), "{err}");
        // The same through tuples of marks.
        let mut pickle = vec![0x80, 2, b'N'];
        pickle.extend([0x85; 100]);
        pickle.push(b'.');
        assert!(load(&pickle).unwrap_err().contains("nested"));
    }

    #[test]
    fn shared_values_within_the_budget_load() {
        // d = {"a": t, "b": t} with t = (1, 2) shared through the memo.
        let pickle = [
            0x80, 2, b'}', b'q', 0, b'(', 0x8c, 1, b'a', b'K', 1, b'K', 2, 0x86, b'q', 1, 0x8c, 1, b'b', b'h', 1, b'u',
            b'.',
        ];
        let Value::Dict(pairs) = load(&pickle).unwrap() else { panic!("not a dict") };
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].1, pairs[1].1);
        assert_eq!(pairs[1].1, Value::Tuple(vec![Value::Int(1), Value::Int(2)]));
    }
}
