// Batch SHA-256 (FIPS 180-4): one invocation hashes one message, so one dispatch hashes
// many buffers. The block loop is the only loop: the rounds are unrolled (lib.rs fills
// in ROUNDS), because Mesa's llvmpipe/lavapipe stops a shader's loops after 65535
// iterations in all, which a rolled kernel reaches at ~31 KB per message. Padding is done here, not on the host, so the edge cases (55/56/64-byte
// tails) are the kernel's own and are tested bit-exact against the CPU.
//
// data:    every message's bytes, each starting at a 4-byte boundary, packed
//          little-endian into u32 words (WGSL storage is little-endian).
// msgs:    per message (word offset into data, byte length).
// digests: per message 8 big-endian state words, in order (h0..h7).

struct Params {
    count: u32,
    // invocations per row of the 2-D dispatch (workgroups in x * 64)
    row: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read> msgs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> digests: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn bswap(x: u32) -> u32 {
    return ((x & 0xffu) << 24u) | ((x & 0xff00u) << 8u) | ((x >> 8u) & 0xff00u) | (x >> 24u);
}

// Byte q of the padded message, for the words that straddle the end of the data.
fn tail_byte(off: u32, len: u32, q: u32) -> u32 {
    if (q < len) {
        return (data[off + q / 4u] >> ((q % 4u) * 8u)) & 0xffu;
    }
    return select(0u, 0x80u, q == len);
}

// The big-endian word at byte position p (a multiple of 4) of the padded message.
fn word(off: u32, len: u32, p: u32, last: u32) -> u32 {
    if (p + 4u <= len) {
        return bswap(data[off + p / 4u]);
    }
    // The 64-bit bit length ends the last block (len < 2^32 bytes, so bits < 2^35).
    if (p == last + 56u) {
        return len >> 29u;
    }
    if (p == last + 60u) {
        return len << 3u;
    }
    return (tail_byte(off, len, p) << 24u) | (tail_byte(off, len, p + 1u) << 16u) | (tail_byte(off, len, p + 2u) << 8u) | tail_byte(off, len, p + 3u);
}

@compute @workgroup_size(64)
fn sha256_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x + gid.y * params.row;
    if (idx >= params.count) {
        return;
    }
    let m = msgs[idx];
    let off = m.x;
    let len = m.y;
    // Data, the 0x80 byte and 8 length bytes, rounded up to 64-byte blocks.
    let blocks = (len + 8u) / 64u + 1u;
    let last = (blocks - 1u) * 64u;
    var h0 = 0x6a09e667u;
    var h1 = 0xbb67ae85u;
    var h2 = 0x3c6ef372u;
    var h3 = 0xa54ff53au;
    var h4 = 0x510e527fu;
    var h5 = 0x9b05688cu;
    var h6 = 0x1f83d9abu;
    var h7 = 0x5be0cd19u;
    for (var b = 0u; b < blocks; b = b + 1u) {
        let base = b * 64u;
        var a = h0;
        var bb = h1;
        var c = h2;
        var d = h3;
        var e = h4;
        var f = h5;
        var g = h6;
        var hh = h7;
        var w: array<u32, 16>;
        // ROUNDS (the 64 rounds, unrolled by `sha256_wgsl()` in lib.rs)
        h0 = h0 + a;
        h1 = h1 + bb;
        h2 = h2 + c;
        h3 = h3 + d;
        h4 = h4 + e;
        h5 = h5 + f;
        h6 = h6 + g;
        h7 = h7 + hh;
    }
    let o = idx * 8u;
    digests[o] = h0;
    digests[o + 1u] = h1;
    digests[o + 2u] = h2;
    digests[o + 3u] = h3;
    digests[o + 4u] = h4;
    digests[o + 5u] = h5;
    digests[o + 6u] = h6;
    digests[o + 7u] = h7;
}
