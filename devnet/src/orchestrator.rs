//! The orchestrator (`sandrun-devnet` without a subcommand): the registry in-process, each
//! worker a child process of this same binary (`sandrun-devnet worker`), optionally anvil
//! (`--chain`); the `--json` line once every server answers; and the shutdown that takes
//! the workers (and their jobs) and anvil down with it.

use crate::cli::{Common, NetArgs};
use crate::worker::Fault;
use crate::{chain, die, http, registry, runtime};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What the `--json` line describes. Later services (chain, IPFS) become new fields here.
struct Services {
    workers: Vec<(String, Option<String>)>,
    registry: String,
    /// With `--chain`: each worker's payout address (same order as `workers`) and the chain.
    payouts: Vec<String>,
    chain: Option<String>,
    /// With `--ipfs`: the node's `{"api","gateway"}`.
    ipfs: Option<String>,
}

impl Services {
    /// The single stdout line; key order is part of the contract, so it is written by hand.
    fn to_json_line(&self) -> String {
        let ws: Vec<String> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, (url, id))| {
                let id = id.as_ref().map(|i| format!("\"{i}\"")).unwrap_or_else(|| "null".into());
                match self.payouts.get(i) {
                    Some(p) => format!("{{\"url\":\"{url}\",\"worker_id\":{id},\"payout\":\"{p}\"}}"),
                    None => format!("{{\"url\":\"{url}\",\"worker_id\":{id}}}"),
                }
            })
            .collect();
        let mut line = format!("{{\"workers\":[{}],\"registry\":\"{}\"", ws.join(","), self.registry);
        if let Some(c) = &self.chain {
            line.push_str(&format!(",\"chain\":{c}"));
        }
        if let Some(i) = &self.ipfs {
            line.push_str(&format!(",\"ipfs\":{i}"));
        }
        line.push('}');
        line
    }
}

/// Starts the network described by the flags and runs it until SIGINT/SIGTERM; never
/// returns.
pub fn run(net: NetArgs, mut common: Common) {
    net.check().unwrap_or_else(|e| die(&e));
    let NetArgs { workers, json, port_base, faults, capabilities: caps, gpus, node_timeout, checked_registry, chain: with_chain, anvil, ipfs: with_ipfs, ipfs_fault } = net;
    std::fs::create_dir_all(&common.data_dir).unwrap_or_else(|e| die(&format!("data dir: {e}")));
    common.data_dir = std::fs::canonicalize(&common.data_dir).unwrap_or_else(|e| die(&format!("data dir: {e}")));

    let rt = runtime();
    rt.block_on(async move {
        let reg_port = port_base.map(|b| b + workers as u16).unwrap_or(0);
        let reg_listener = tokio::net::TcpListener::bind(("127.0.0.1", reg_port))
            .await
            .unwrap_or_else(|e| die(&format!("registry port {reg_port}: {e}")));
        let reg_addr = reg_listener.local_addr().unwrap();
        let registry = registry::Registry::new(node_timeout, checked_registry);
        tokio::spawn(registry.clone().serve(reg_listener));

        // The chain first: its accounts give each worker a payout address.
        let mut chain = None;
        let mut payouts = Vec::new();
        if with_chain {
            let bin = chain::find_anvil(anvil.clone()).unwrap_or_else(|e| die(&e));
            let port = port_base.map(|b| b + workers as u16 + 1).unwrap_or(0);
            let c = chain::start(&bin, &common.data_dir, port, (workers + 5).max(10)).await.unwrap_or_else(|e| die(&format!("--chain: {e}")));
            payouts = (0..workers).map(|i| c.accounts[c.accounts.len() - 1 - i].0.clone()).collect();
            chain = Some(c);
        }

        // IPFS: after the chain's port (api base+N+2, gateway base+N+3 with --port-base).
        let mut ipfs_node = None;
        if with_ipfs || ipfs_fault.is_some() {
            let (a, g) = port_base.map(|b| (b + workers as u16 + 2, b + workers as u16 + 3)).unwrap_or((0, 0));
            ipfs_node = Some(crate::ipfs::start(a, g, ipfs_fault.as_deref()).await.unwrap_or_else(|e| die(&format!("--ipfs: {e}"))));
        }

        let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
        let mut children: Vec<Child> = Vec::new();
        let mut urls: Vec<String> = Vec::new();
        for i in 0..workers {
            let port = port_base.map(|b| b + i as u16).unwrap_or(0);
            let l = std::net::TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| die(&format!("worker {i} port {port}: {e}")));
            let port = l.local_addr().unwrap().port();
            let fd = l.as_raw_fd();
            let mut cmd = Command::new(&exe);
            cmd.arg("worker")
                .args(["--index", &i.to_string(), "--listen-fd", "3", "--port", &port.to_string()])
                .args(["--registry", &reg_addr.to_string()])
                .args(common.to_args());
            if let Some(w0) = urls.first() {
                cmd.args(["--worker0", w0.as_str()]);
            }
            for (_, f) in faults.iter().filter(|(j, _)| *j == i) {
                cmd.args(["--fault", f.name()]);
            }
            if let (Some(p), Some(c)) = (payouts.get(i), chain.as_ref()) {
                // The worker signs this binding with its own key at registration.
                cmd.args(["--capabilities", &serde_json::json!({ "payout": p, "payout_chain_id": c.chain_id }).to_string()]);
            }
            // --gpu: the worker declares exactly these GPUs (none when others have some).
            if !gpus.is_empty() {
                let gpu = gpus.iter().find(|(j, _)| *j == i).map(|(_, g)| g.clone()).unwrap_or(serde_json::Value::Null);
                cmd.args(["--capabilities", &serde_json::json!({ "gpu": gpu }).to_string()]);
            }
            for (_, c) in caps.iter().filter(|(j, _)| *j == i) {
                cmd.args(["--capabilities", &c.to_string()]);
            }
            unsafe {
                cmd.pre_exec(move || {
                    // The listening socket becomes fd 3 in the worker (no port race).
                    if fd == 3 {
                        let fl = libc::fcntl(3, libc::F_GETFD);
                        libc::fcntl(3, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
                    } else if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Workers write nothing to stdout: the JSON line must stay alone there.
                    libc::dup2(2, 1);
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
                    Ok(())
                });
            }
            let child = cmd.spawn().unwrap_or_else(|e| die(&format!("cannot start worker {i}: {e}")));
            drop(l);
            children.push(child);
            urls.push(format!("127.0.0.1:{port}"));
        }

        // Ready = every worker answers /health and has registered itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ids = Vec::new();
        for (i, addr) in urls.iter().enumerate() {
            loop {
                if let Ok((200, body)) = http::client_request(addr, "GET", "/health", None, b"", Duration::from_secs(2)).await {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    ids.push(v["worker_id"].as_str().map(str::to_string));
                    break;
                }
                if let Ok(Some(st)) = children[i].try_wait() {
                    die(&format!("worker {i} exited during startup: {st}"));
                }
                if Instant::now() > deadline {
                    die(&format!("worker {i} did not answer on {addr}"));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        while registry.node_count() < workers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // A `hijack-payout` worker has tried every takeover before anyone reads /nodes.
        for (i, _) in faults.iter().filter(|(_, f)| *f == Fault::HijackPayout) {
            loop {
                let done = http::client_request(&urls[*i], "GET", "/_devnet/hijack", None, b"", Duration::from_secs(2))
                    .await
                    .ok()
                    .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .map(|v| v["done"] == true)
                    .unwrap_or(false);
                if done || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        // Handlers first: a script may send SIGTERM the moment it reads the JSON line.
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).unwrap();
        let mut sigterm = signal(SignalKind::terminate()).unwrap();
        let services = Services {
            workers: urls.iter().zip(ids).map(|(a, id)| (format!("http://{a}"), id)).collect(),
            registry: format!("http://{reg_addr}"),
            payouts: payouts.clone(),
            chain: chain.as_ref().map(|c| c.to_json()),
            ipfs: ipfs_node.as_ref().map(|i| i.to_json()),
        };
        if json {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", services.to_json_line());
            let _ = out.flush();
        } else {
            println!("sandrun-devnet is up (Ctrl-C to stop)");
            for (i, (url, id)) in services.workers.iter().enumerate() {
                let f: Vec<&str> = faults.iter().filter(|(j, _)| *j == i).map(|(_, f)| f.name()).collect();
                println!(
                    "  worker {i}: {url}  worker_id {}{}",
                    id.as_deref().unwrap_or("null (anonymous)"),
                    if f.is_empty() { String::new() } else { format!("  fault {}", f.join(",")) }
                );
            }
            println!("  registry: {}", services.registry);
            if let Some(c) = &chain {
                println!("  chain: {} (chain id {}), escrow {}, test token {}", c.rpc, c.chain_id, c.escrow, c.token);
            }
            if let Some(i) = &ipfs_node {
                println!("  ipfs: api {}, gateway {}{}", i.api, i.gateway, ipfs_fault.as_deref().map(|f| format!("  fault {f}")).unwrap_or_default());
            }
            println!("  data dir: {}", common.data_dir.display());
        }

        let mut reported = vec![false; children.len()];
        loop {
            tokio::select! {
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    for (i, c) in children.iter_mut().enumerate() {
                        if !reported[i] {
                            if let Ok(Some(st)) = c.try_wait() {
                                eprintln!("sandrun-devnet: worker {i} exited ({st})");
                                reported[i] = true;
                            }
                        }
                    }
                }
            }
        }
        eprintln!("sandrun-devnet: stopping");
        if let Some(c) = chain.as_mut() {
            c.stop();
        }
        if let Some(i) = ipfs_node.as_mut() {
            i.stop();
        }
        for c in children.iter() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in children.iter_mut() {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        std::process::exit(0);
    });
}
