//! How a batch of messages is laid out for the SHA-256 kernel, and split into
//! dispatches that fit the device's buffer limits.

/// Invocations per workgroup (the kernels' `@workgroup_size`).
pub const WORKGROUP: u32 = 64;

/// Largest message the GPU hashes; bigger ones go to the CPU. One invocation hashes one
/// message serially, and one GPU thread is far slower than a CPU core at that (the GPU
/// wins by hashing many messages at once). It also keeps the kernel's block loop under
/// the 65535 iterations at which Mesa's llvmpipe/lavapipe stops loops (~4 MiB).
pub const MAX_GPU_MESSAGE: usize = 1 << 20;

/// One dispatch's input: `data` holds each message from a 4-byte boundary (zero bytes
/// between), which is exactly the kernel's little-endian `array<u32>`; `msgs` holds
/// (word offset, byte length) per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub data: Vec<u8>,
    pub msgs: Vec<[u32; 2]>,
}

impl Packed {
    /// `msgs` as the kernel's `array<vec2<u32>>` bytes.
    pub fn msg_bytes(&self) -> Vec<u8> {
        self.msgs.iter().flat_map(|[o, l]| o.to_le_bytes().into_iter().chain(l.to_le_bytes())).collect()
    }
}

/// Bytes a message takes in `data` (rounded up to whole words).
pub fn packed_len(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// Pack `inputs` for one dispatch.
pub fn pack<T: AsRef<[u8]>>(inputs: &[T]) -> Packed {
    let total: usize = inputs.iter().map(|b| packed_len(b.as_ref().len())).sum();
    // A storage binding cannot be empty: keep at least one word.
    let mut data = Vec::with_capacity(total.max(4));
    let mut msgs = Vec::with_capacity(inputs.len());
    for b in inputs {
        let b = b.as_ref();
        msgs.push([(data.len() / 4) as u32, b.len() as u32]);
        data.extend_from_slice(b);
        data.resize(packed_len(data.len()), 0);
    }
    if data.is_empty() {
        data.resize(4, 0);
    }
    Packed { data, msgs }
}

/// What a batch becomes: dispatches (index ranges into the inputs, each within
/// `max_bytes` of data and `max_messages` messages), and the inputs too large for any
/// dispatch (hashed on the CPU instead).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub dispatches: Vec<Vec<usize>>,
    pub on_cpu: Vec<usize>,
}

/// Split `lens` (message byte lengths) into dispatches of at most `max_bytes` packed
/// bytes and `max_messages` messages, in input order.
pub fn plan(lens: &[usize], max_bytes: usize, max_messages: usize) -> Plan {
    let mut p = Plan::default();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    for (i, &len) in lens.iter().enumerate() {
        let l = packed_len(len);
        // A message bigger than one binding, or than MAX_GPU_MESSAGE, goes to the CPU.
        if l > max_bytes || len > MAX_GPU_MESSAGE {
            p.on_cpu.push(i);
            continue;
        }
        if !cur.is_empty() && (bytes + l > max_bytes || cur.len() >= max_messages) {
            p.dispatches.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += l;
    }
    if !cur.is_empty() {
        p.dispatches.push(cur);
    }
    p
}

/// Workgroups (x, y) for `invocations`, with x at most `max_per_dim`; the kernel's
/// `params.row` is `x * WORKGROUP`.
pub fn grid(invocations: u32, max_per_dim: u32) -> (u32, u32) {
    let groups = invocations.div_ceil(WORKGROUP).max(1);
    let x = groups.min(max_per_dim.max(1));
    (x, groups.div_ceil(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_each_message_from_a_word_boundary() {
        let p = pack(&[&b"abcde"[..], b"", b"xyz"]);
        assert_eq!(p.msgs, vec![[0, 5], [2, 0], [2, 3]]);
        assert_eq!(p.data, b"abcde\0\0\0xyz\0".to_vec());
        assert_eq!(p.msg_bytes().len(), 24);
        assert_eq!(pack::<&[u8]>(&[]).data, vec![0; 4]);
    }

    #[test]
    fn plans_within_limits() {
        let p = plan(&[10, 10, 100, 3, 5], 16, 8);
        assert_eq!(p.on_cpu, vec![2]);
        assert_eq!(p.dispatches, vec![vec![0], vec![1, 3], vec![4]]);
        let p = plan(&[1, 1, 1], 1 << 20, 2);
        assert_eq!(p.dispatches, vec![vec![0, 1], vec![2]]);
        assert_eq!(grid(1, 65535), (1, 1));
        assert_eq!(grid(65 * 64, 64), (64, 2));
    }
}
