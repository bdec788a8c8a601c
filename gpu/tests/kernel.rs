//! The WGSL kernels, natively through wgpu on Vulkan (lavapipe from
//! `mesa-vulkan-drivers`, Chromium's SwiftShader, or a real GPU), bit-exact against the
//! CPU. `scripts/setup.sh` installs lavapipe. With no Vulkan driver at all the tests fail
//! and say so; `SANDRUN_GPU_TESTS=skip` skips them explicitly (reported as skipped).

use sandrun_gpu::{cpu, GpuContext};
use std::sync::OnceLock;

fn gpu() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        if std::env::var("SANDRUN_GPU_TESTS").as_deref() == Ok("skip") {
            eprintln!("SANDRUN_GPU_TESTS=skip: GPU kernel tests skipped");
            return None;
        }
        match pollster::block_on(GpuContext::open()) {
            Ok(c) => {
                eprintln!("GPU kernel tests on {:?}", c.adapter());
                Some(c)
            }
            Err(e) => panic!("no Vulkan device for the kernel tests ({e}): install mesa-vulkan-drivers (scripts/setup.sh does), or set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json, or SANDRUN_GPU_TESTS=skip"),
        }
    })
    .as_ref()
}

/// A deterministic byte stream (xorshift), so failures reproduce.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn nist_vectors_bit_exact() {
    let Some(g) = gpu() else { return };
    let million_a = vec![b'a'; 1_000_000];
    let inputs: Vec<&[u8]> = vec![
        b"",
        b"abc",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        &million_a,
    ];
    let want = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    ];
    let got = pollster::block_on(g.sha256_many(&inputs)).unwrap();
    assert_eq!(got, want);
    assert_eq!(cpu::sha256_many(&inputs), want);
}

#[test]
fn padding_edges_and_random_lengths_bit_exact() {
    let Some(g) = gpu() else { return };
    // Every length 0..=200 covers each padding case (55: one block, 56..=63: a second
    // block for the length, 64: exact block) several times over, at every alignment.
    let mut inputs: Vec<Vec<u8>> = (0..=200).map(|n| bytes(n as u64, n)).collect();
    for (i, n) in [55usize, 56, 63, 64, 65, 119, 120, 127, 128, 4095, 4096, 4097, 65_535].into_iter().enumerate() {
        inputs.push(bytes(1000 + i as u64, n));
    }
    let mut seed = 7u64;
    for _ in 0..300 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        inputs.push(bytes(seed, (seed >> 33) as usize % 3000));
    }
    let got = pollster::block_on(g.sha256_many(&inputs)).unwrap();
    let want = cpu::sha256_many(&inputs);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a, b, "input {i} of {} bytes", inputs[i].len());
    }
    assert_eq!(got.len(), inputs.len());
}

#[test]
fn many_messages_span_a_two_dimensional_grid() {
    let Some(g) = gpu() else { return };
    // More messages than one row of workgroups may hold on small limits.
    let inputs: Vec<Vec<u8>> = (0..70_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let got = pollster::block_on(g.sha256_many(&inputs)).unwrap();
    assert_eq!(got, cpu::sha256_many(&inputs));
    assert!(pollster::block_on(g.sha256_many::<&[u8]>(&[])).unwrap().is_empty());
    // A message over MAX_GPU_MESSAGE is hashed on the CPU, in its place in the order.
    let big = bytes(3, sandrun_gpu::pack::MAX_GPU_MESSAGE * 5);
    let mixed: Vec<&[u8]> = vec![b"x", &big, b"y"];
    assert_eq!(pollster::block_on(g.sha256_many(&mixed)).unwrap(), cpu::sha256_many(&mixed));
}

#[test]
fn probe_reports_adapter_limits_and_calibration() {
    let Some(g) = gpu() else { return };
    let p = pollster::block_on(g.probe(20.0));
    assert!(p.available, "{p:?}");
    let t = p.throughput.unwrap();
    assert!(t.sha256_mbps > 0.0 && t.fp32_gflops > 0.0 && t.dispatch_ms >= 0.0, "{t:?}");
    assert!(p.limits.unwrap().max_storage_buffer_binding_size >= 1.0 * 1024.0 * 1024.0);
    let a = p.adapter.unwrap();
    assert_eq!(a.backend, "vulkan");
    eprintln!("probe: {a:?} {t:?}");
}
