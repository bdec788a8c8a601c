//! Runs one job as a real process: own session (so the whole group can be killed),
//! rlimits, optional network namespace, capped stdout/stderr, `wait4` accounting.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to run and under which limits.
pub struct ExecSpec {
    pub dir: PathBuf,
    pub interpreter: String,
    pub entrypoint: String,
    pub args: Vec<String>,
    pub wall_timeout: Duration,
    pub cpu_limit_secs: u64,
    pub mem_limit_mb: u64,
    pub output_cap: usize,
    pub netns: bool,
    /// Fault `crash`: start the job, then kill it and exit the whole worker process.
    pub crash: bool,
    /// Extra environment for the job (a GPU worker's CUDA_VISIBLE_DEVICES, ...).
    pub env: Vec<(String, String)>,
}

/// Accounting of a finished job.
pub struct ExecResult {
    /// Exit status, or -1 when killed by a signal (timeout, CPU limit, ...).
    pub exit_code: i32,
    /// ru_utime + ru_stime of the job process (and its reaped children).
    pub cpu_seconds: f64,
    /// ru_maxrss in KiB.
    pub maxrss_kb: u64,
    pub timed_out: bool,
}

/// Shared capture buffer, readable while the job runs.
pub type Buf = Arc<Mutex<Vec<u8>>>;

/// Maps a manifest interpreter to a program; `None` for unknown ones, which are never
/// executed (the interpreter string comes from the network).
pub fn program_for(interpreter: &str) -> Option<&'static str> {
    match interpreter {
        "python3" | "python" => Some("python3"),
        "node" | "nodejs" => Some("node"),
        "bash" => Some("bash"),
        "sh" => Some("sh"),
        _ => None,
    }
}

fn reader(mut src: impl Read + Send + 'static, buf: Buf, cap: usize, done: std::sync::mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match src.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut b = buf.lock().unwrap();
                    let room = cap.saturating_sub(b.len());
                    b.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        let _ = done.send(());
    });
}

/// Runs the job to completion (blocking). `pgid` receives the job's process group id
/// while it runs so that shutdown can kill it.
pub fn run(spec: &ExecSpec, stdout: Buf, stderr: Buf, pgid: &AtomicI32) -> ExecResult {
    let Some(program) = program_for(&spec.interpreter) else {
        stderr
            .lock()
            .unwrap()
            .extend_from_slice(format!("sandrun-devnet: unsupported interpreter: {}\n", spec.interpreter).as_bytes());
        return ExecResult { exit_code: 127, cpu_seconds: 0.0, maxrss_kb: 0, timed_out: false };
    };
    let mut cmd = Command::new(program);
    // The environment is inherited on purpose: interpreter managers (pyenv shims, nvm)
    // need theirs, and a cleared environment made every python3 start ~100 ms slower.
    if std::env::var_os("LANG").is_none() {
        cmd.env("LANG", "C.UTF-8");
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.arg(&spec.entrypoint)
        .args(&spec.args)
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu = spec.cpu_limit_secs;
    let mem = spec.mem_limit_mb.saturating_mul(1024 * 1024);
    let is_node = program == "node";
    let netns = spec.netns;
    unsafe {
        cmd.pre_exec(move || {
            // Own session: a group we can kill as a whole, and no terminal signals.
            libc::setsid();
            // Dies with the worker thread that waits for it, even on SIGKILL of the worker.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if netns {
                // Fails with EPERM when not root; the job then keeps the host network.
                libc::unshare(libc::CLONE_NEWNET);
            }
            let set = |res, soft: u64, hard: u64| {
                let r = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
                libc::setrlimit(res, &r);
            };
            if cpu > 0 {
                // SIGXCPU at the soft limit, SIGKILL one second later.
                set(libc::RLIMIT_CPU, cpu, cpu + 1);
            }
            if mem > 0 {
                if is_node {
                    // V8 reserves large virtual ranges up front; RLIMIT_AS would kill node at
                    // startup. RLIMIT_DATA only counts memory that is actually writable.
                    set(libc::RLIMIT_DATA, mem * 4, mem * 4);
                } else {
                    set(libc::RLIMIT_AS, mem, mem);
                }
            }
            set(libc::RLIMIT_CORE, 0, 0);
            set(libc::RLIMIT_FSIZE, 1 << 30, 1 << 30);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            stderr.lock().unwrap().extend_from_slice(format!("sandrun-devnet: cannot start {program}: {e}\n").as_bytes());
            return ExecResult { exit_code: 127, cpu_seconds: 0.0, maxrss_kb: 0, timed_out: false };
        }
    };
    let pid = child.id() as i32;
    pgid.store(pid, Ordering::SeqCst);
    let (dtx, drx) = std::sync::mpsc::channel();
    reader(child.stdout.take().unwrap(), stdout, spec.output_cap, dtx.clone());
    reader(child.stderr.take().unwrap(), stderr, spec.output_cap, dtx);
    if spec.crash {
        std::thread::sleep(Duration::from_millis(200));
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        eprintln!("sandrun-devnet worker: fault `crash`: exiting mid-job");
        std::process::exit(3);
    }

    // Watchdog for the wall timeout; `finished` keeps it from killing a reused pgid.
    let finished = Arc::new(Mutex::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (wtx, wrx) = std::sync::mpsc::channel::<()>();
    {
        let finished = finished.clone();
        let timed_out = timed_out.clone();
        let t = spec.wall_timeout;
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wrx.recv_timeout(t) {
                let f = finished.lock().unwrap();
                if !*f {
                    timed_out.store(true, Ordering::SeqCst);
                    unsafe { libc::killpg(pid, libc::SIGKILL) };
                }
            }
        });
    }

    let mut status: libc::c_int = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    {
        let mut f = finished.lock().unwrap();
        *f = true;
        // Background children left in the group would hold the pipes open and outlive
        // the job; the group id is still ours because the leader was just reaped and
        // the group has no new leader yet.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
    }
    let _ = wtx.send(());
    pgid.store(0, Ordering::SeqCst);
    drop(child);
    // Wait for both readers (EOF), but never forever.
    for _ in 0..2 {
        let _ = drx.recv_timeout(Duration::from_secs(2));
    }
    let exit_code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let cpu_seconds = ru.ru_utime.tv_sec as f64
        + ru.ru_stime.tv_sec as f64
        + (ru.ru_utime.tv_usec as f64 + ru.ru_stime.tv_usec as f64) / 1e6;
    // Keep microsecond precision exactly (the signed string prints it with %g).
    let cpu_seconds = (cpu_seconds * 1e6).round() / 1e6;
    ExecResult {
        exit_code,
        cpu_seconds,
        maxrss_kb: ru.ru_maxrss.max(0) as u64,
        timed_out: timed_out.load(Ordering::SeqCst),
    }
}
