struct Params {
    count: u32,
    row: u32,
    _pad0: u32,
    _pad1: u32,
}

// Calibration: FP32 throughput. Each invocation runs `params.count` iterations of four
// independent fused multiply-adds (8 FLOP per iteration); the result is stored so the
// compiler cannot drop the loop.
@group(0) @binding(0) var<storage, read_write> fma_out: array<f32>;
@group(0) @binding(1) var<uniform> fma_params: Params;

@compute @workgroup_size(64)
fn fma_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x + gid.y * fma_params.row;
    var a = f32(idx) * 1e-7;
    var b = a + 0.5;
    var c = a + 0.25;
    var d = a + 0.125;
    for (var i = 0u; i < fma_params.count; i = i + 1u) {
        a = fma(a, 0.9999, 0.0001);
        b = fma(b, 0.9999, 0.0001);
        c = fma(c, 0.9999, 0.0001);
        d = fma(d, 0.9999, 0.0001);
    }
    fma_out[idx] = a + b + c + d;
}
