//! A small, safe unpickler for PyTorch state dicts (protocols 2–5).
//!
//! It builds plain values and understands only what `torch.save(state_dict)` writes: dicts
//! (`collections.OrderedDict`), tensors (`torch._utils._rebuild_tensor_v2`, parameters) and
//! their storages (as persistent ids). Any other global is refused, so a file cannot run code.

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
        other => Err(format!("{what}: expected a count, found {other:?}")),
    }
}

fn usizes(v: &Value, what: &str) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| usize_of(i, what)).collect(),
        other => Err(format!("{what}: expected a tuple, found {other:?}")),
    }
}

/// `callable(*args)` for the allowed callables.
fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(name) = callable else {
        return Err(format!("cannot call {callable:?}"));
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
                return Err(format!("a tensor whose storage is {:?}", args[0]));
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
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| "pickle stack underflow".to_string());
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>> {
        let mark = stack.iter().rposition(|v| *v == Value::Mark).ok_or("pickle mark missing")?;
        let items = stack.split_off(mark + 1);
        stack.pop();
        Ok(items)
    };
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
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Value::Mark),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i64::from(r.u32()? as i32))),
            b'K' => stack.push(Value::Int(i64::from(r.u8()?))),
            b'M' => stack.push(Value::Int(i64::from(r.u16()?))),
            0x8a => {
                let n = r.u8()? as usize;
                let raw = r.take(n)?;
                if n > 8 {
                    return Err("integer too large".into());
                }
                let mut buf = if raw.last().is_some_and(|b| b & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(raw);
                stack.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'I' => {
                let line = r.line()?;
                let v = match line {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    n => Value::Int(n.parse().map_err(|_| format!("bad INT {n}"))?),
                };
                stack.push(v);
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().expect("8")))),
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).map_err(|_| "string too long")?;
                stack.push(Value::Str(r.string(n)?));
            }
            b'T' => {
                let n = r.u32()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'U' | b'C' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                if items.len() % 2 != 0 {
                    return Err("odd number of dict items".into());
                }
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                stack.push(Value::Dict(pairs));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(items)) => items.push(v),
                    _ => return Err("APPEND to a non-list".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(list)) => list.extend(items),
                    _ => return Err("APPENDS to a non-list".into()),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(pairs)) => pairs.push((k, v)),
                    _ => return Err("SETITEM on a non-dict".into()),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                if items.len() % 2 != 0 {
                    return Err("odd number of dict items".into());
                }
                match stack.last_mut() {
                    Some(Value::Dict(pairs)) => {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            pairs.push((k, v));
                        }
                    }
                    _ => return Err("SETITEMS on a non-dict".into()),
                }
            }
            b'q' => {
                let i = u32::from(r.u8()?);
                memo.insert(i, stack.last().ok_or("memo of an empty stack")?.clone());
            }
            b'r' => {
                let i = r.u32()?;
                memo.insert(i, stack.last().ok_or("memo of an empty stack")?.clone());
            }
            0x94 => {
                let i = memo.len() as u32;
                memo.insert(i, stack.last().ok_or("memo of an empty stack")?.clone());
            }
            b'h' => {
                let i = u32::from(r.u8()?);
                stack.push(memo.get(&i).cloned().ok_or("unknown memo entry")?);
            }
            b'j' => {
                let i = r.u32()?;
                stack.push(memo.get(&i).cloned().ok_or("unknown memo entry")?);
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(global(format!("{module}.{name}"))?);
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(global(format!("{m}.{n}"))?),
                    _ => return Err("STACK_GLOBAL without names".into()),
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            0x81 => {
                let args = pop(&mut stack)?;
                let class = pop(&mut stack)?;
                stack.push(reduce(class, args)?);
            }
            b'b' => {
                // BUILD: the state of dicts and tensors (metadata) carries no weights.
                pop(&mut stack)?;
                if stack.is_empty() {
                    return Err("BUILD on an empty stack".into());
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
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
        _ => Err(format!("unsupported persistent id {items:?}")),
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

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Dict(_) => "a dict",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Tensor(_) => "a single tensor",
        _ => "a plain value",
    }
}
