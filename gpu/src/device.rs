//! A wgpu device with the kernels' pipelines. The same code runs on WebGPU (wasm32) and
//! on Vulkan (native tests and benchmarks).

use crate::pack::{self, WORKGROUP};
use crate::probe::{AdapterSummary, GpuLimits, GpuProbe, Throughput};
use crate::{cpu, now_ms, sha256_wgsl, CALIBRATE_WGSL};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use wgpu::util::DeviceExt;

/// Largest data one SHA-256 dispatch uploads (also bounded by the device's limits), so a
/// huge batch becomes several dispatches instead of one giant allocation.
pub const MAX_DISPATCH_BYTES: u64 = 64 << 20;

/// An open GPU device with the SHA-256 and calibration pipelines.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    sha: wgpu::ComputePipeline,
    fma: wgpu::ComputePipeline,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Errors the device reported outside an error scope (instead of wgpu's default
    /// handler, which panics: a panic in the wasm module is a trap).
    errors: Arc<Mutex<Vec<String>>>,
}

/// A one-shot slot a wgpu callback fills and a future waits on (no executor needed).
struct Slot<T>(Arc<Mutex<(Option<T>, Option<Waker>)>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<T> Slot<T> {
    fn new() -> Self {
        Slot(Arc::new(Mutex::new((None, None))))
    }
    fn fill(&self, v: T) {
        let mut g = self.0.lock().unwrap();
        g.0 = Some(v);
        if let Some(w) = g.1.take() {
            w.wake();
        }
    }
}

impl<T> Future for Slot<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut g = self.0.lock().unwrap();
        match g.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn device_type(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

impl GpuContext {
    /// Open the first high-performance adapter: WebGPU on wasm32, Vulkan natively.
    /// On wasm32 the caller must have checked that `navigator.gpu` exists.
    pub async fn open() -> Result<GpuContext, String> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = if cfg!(target_arch = "wasm32") { wgpu::Backends::BROWSER_WEBGPU } else { wgpu::Backends::VULKAN };
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|e| format!("no GPU adapter: {e}"))?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor { label: Some("sandrun-gpu"), required_limits: limits.clone(), ..Default::default() })
            .await
            .map_err(|e| format!("the GPU adapter refused a device: {e}"))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.lock().unwrap().push(e.to_string())));
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = |src: &str, entry: &str| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(entry), source: wgpu::ShaderSource::Wgsl(src.into()) });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let sha = pipeline(&sha256_wgsl(), "sha256_main");
        let fma = pipeline(CALIBRATE_WGSL, "fma_main");
        if let Some(e) = scope.pop().await {
            return Err(format!("the GPU refused the kernels: {e}"));
        }
        Ok(GpuContext { device, queue, sha, fma, info: adapter.get_info(), limits, errors })
    }

    /// The adapter as far as the platform tells.
    pub fn adapter(&self) -> AdapterSummary {
        let i = &self.info;
        let name = i.name.clone();
        let lower = name.to_ascii_lowercase();
        let software = i.device_type == wgpu::DeviceType::Cpu || ["swiftshader", "llvmpipe", "lavapipe", "software"].iter().any(|s| lower.contains(s));
        AdapterSummary {
            backend: if i.backend == wgpu::Backend::BrowserWebGpu { "webgpu".into() } else { i.backend.to_str().to_string() },
            name,
            vendor: if i.vendor != 0 { format!("0x{:04x}", i.vendor) } else { String::new() },
            architecture: String::new(),
            device_type: device_type(i.device_type).into(),
            software,
        }
    }

    /// The limits that bound a batch.
    pub fn limits(&self) -> GpuLimits {
        let l = &self.limits;
        GpuLimits {
            max_buffer_size: l.max_buffer_size as f64,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size as f64,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        }
    }

    fn max_dispatch_bytes(&self) -> usize {
        (self.limits.max_storage_buffer_binding_size as u64).min(self.limits.max_buffer_size).min(MAX_DISPATCH_BYTES) as usize
    }

    /// Lowercase hex SHA-256 of each input, in order: as few dispatches as the limits
    /// allow (one for a batch under 64 MiB); an input bigger than one dispatch is hashed
    /// on the CPU.
    pub async fn sha256_many<T: AsRef<[u8]>>(&self, inputs: &[T]) -> Result<Vec<String>, String> {
        let lens: Vec<usize> = inputs.iter().map(|b| b.as_ref().len()).collect();
        let max_bytes = self.max_dispatch_bytes();
        // 32 digest bytes per message must fit one binding too.
        let max_messages = (max_bytes / 32).max(1);
        let plan = pack::plan(&lens, max_bytes, max_messages);
        let mut out = vec![String::new(); inputs.len()];
        for &i in &plan.on_cpu {
            out[i] = cpu::sha256_hex(inputs[i].as_ref());
        }
        for d in &plan.dispatches {
            let batch: Vec<&[u8]> = d.iter().map(|&i| inputs[i].as_ref()).collect();
            let words = self.dispatch_sha(&batch).await?;
            for (k, &i) in d.iter().enumerate() {
                out[i] = cpu::digest_hex(&words[k * 8..k * 8 + 8]);
            }
        }
        Ok(out)
    }

    fn params(&self, count: u32, invocations: u32) -> ((u32, u32), wgpu::Buffer) {
        let (x, y) = pack::grid(invocations, self.limits.max_compute_workgroups_per_dimension);
        let mut p = Vec::with_capacity(16);
        for v in [count, x * WORKGROUP, 0, 0] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("params"), contents: &p, usage: wgpu::BufferUsages::UNIFORM });
        ((x, y), buf)
    }

    /// One dispatch of the SHA-256 kernel: 8 state words per message.
    async fn dispatch_sha(&self, batch: &[&[u8]]) -> Result<Vec<u32>, String> {
        let packed = pack::pack(batch);
        let n = batch.len() as u32;
        let dev = &self.device;
        let storage = |label: &str, bytes: &[u8]| dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage: wgpu::BufferUsages::STORAGE });
        let data = storage("data", &packed.data);
        let msgs = storage("msgs", &packed.msg_bytes());
        let out_size = (n as u64 * 32).max(32);
        let out = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("digests"), size: out_size, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
        let ((x, y), params) = self.params(n, n);
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("sha256"),
            layout: &self.sha.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: data.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: msgs.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: out.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: params.as_entire_binding() },
            ],
        });
        let bytes = self.run(&self.sha, &bind, (x, y), &out, out_size).await?;
        Ok(bytes.chunks_exact(4).take(n as usize * 8).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Encode one dispatch, copy `out` to a mappable buffer, submit, and read it back.
    async fn run(&self, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup, (x, y): (u32, u32), out: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, String> {
        let dev = &self.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let staging = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("readback"), size, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sandrun-gpu") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        enc.copy_buffer_to_buffer(out, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        if let Some(e) = oom.pop().await {
            return Err(format!("the GPU ran out of memory: {e}"));
        }
        if let Some(e) = scope.pop().await {
            return Err(format!("the GPU refused the dispatch: {e}"));
        }
        let slot: Slot<Result<(), wgpu::BufferAsyncError>> = Slot::new();
        let s = slot.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| s.fill(r));
        #[cfg(not(target_arch = "wasm32"))]
        dev.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| format!("waiting for the GPU: {e}"))?;
        slot.await.map_err(|e| format!("reading back from the GPU: {e}"))?;
        let bytes = staging.slice(..).get_mapped_range().map_err(|e| format!("reading back from the GPU: {e:?}"))?.to_vec();
        staging.unmap();
        if let Some(e) = self.errors.lock().unwrap().pop() {
            return Err(format!("the GPU reported: {e}"));
        }
        Ok(bytes)
    }

    /// `iterations` of the FMA kernel over `invocations` invocations; milliseconds.
    async fn fma_ms(&self, invocations: u32, iterations: u32) -> Result<f64, String> {
        let dev = &self.device;
        let size = invocations as u64 * 4;
        let out = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("fma"), size, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
        let ((x, y), params) = self.params(iterations, invocations);
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("fma"),
            layout: &self.fma.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: out.as_entire_binding() }, wgpu::BindGroupEntry { binding: 1, resource: params.as_entire_binding() }],
        });
        let t0 = now_ms();
        self.run(&self.fma, &bind, (x, y), &out, size).await?;
        Ok(now_ms() - t0)
    }

    /// Run the calibration kernels. Each measurement grows until it takes at least
    /// `min_ms` (or hits its cap), so a fast GPU is not measured on noise and a software
    /// one is not kept busy for long.
    pub async fn calibrate(&self, min_ms: f64) -> Result<Throughput, String> {
        // Warm-up: the first dispatch compiles and allocates.
        self.sha256_many(&[b"warm-up".as_slice()]).await?;
        let mut tiny = Vec::new();
        for _ in 0..3 {
            let t0 = now_ms();
            self.sha256_many(&[[0u8; 64].as_slice()]).await?;
            tiny.push(now_ms() - t0);
        }
        tiny.sort_by(f64::total_cmp);
        let dispatch_ms = tiny[1];
        // SHA-256: many 4 KiB messages (a typical batch of output files is many files).
        let msg = 4096usize;
        let mut count = 64usize;
        let (mut sha_ms, mut sha_count);
        loop {
            let inputs: Vec<Vec<u8>> = (0..count).map(|i| (0..msg).map(|j| (i * 31 + j * 7) as u8).collect()).collect();
            let t0 = now_ms();
            self.sha256_many(&inputs).await?;
            sha_ms = now_ms() - t0;
            sha_count = count;
            if sha_ms >= min_ms || count >= 16384 {
                break;
            }
            count *= 4;
        }
        let sha256_mbps = (sha_count * msg) as f64 / 1e6 / (sha_ms.max(0.001) / 1000.0);
        // FP32: 64 Ki invocations x iterations x 8 FLOP.
        let invocations = 65536u32;
        let mut iterations = 64u32;
        let mut ms;
        loop {
            ms = self.fma_ms(invocations, iterations).await?;
            if ms >= min_ms || iterations >= 1 << 16 {
                break;
            }
            iterations *= 4;
        }
        let flop = invocations as f64 * iterations as f64 * 8.0;
        let fp32_gflops = flop / 1e9 / ((ms - dispatch_ms).max(ms * 0.1).max(0.001) / 1000.0);
        Ok(Throughput { sha256_mbps, sha256_batch: sha_count as u32, dispatch_ms, fp32_gflops })
    }

    /// Adapter, limits and calibration, as `probe()` reports them.
    pub async fn probe(&self, min_ms: f64) -> GpuProbe {
        match self.calibrate(min_ms).await {
            Ok(t) => GpuProbe { available: true, reason: None, adapter: Some(self.adapter()), limits: Some(self.limits()), throughput: Some(t) },
            Err(e) => GpuProbe { available: false, reason: Some(format!("calibration failed: {e}")), adapter: Some(self.adapter()), limits: Some(self.limits()), throughput: None },
        }
    }
}
