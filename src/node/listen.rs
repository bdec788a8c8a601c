//! The listening loop (`startListening()`): heartbeats (once at start, then every
//! `heartbeatInterval`), `/claim` polls with backoff, the periodic check that the
//! registry still lists the node (registering again if not), and `stop()`.

use super::register::Node;
use crate::error::{Error, Result};
use crate::util::{race, CancelToken, Either, Race};
use serde::{Deserialize, Serialize};
use std::future::Future;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// How often a listening node heartbeats the registry by default (ms).
pub const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
/// How often an idle node asks `/claim` for work by default (ms).
pub const DEFAULT_POLL_MS: u64 = 1_000;
/// The first idle polls come this fast, doubling up to the poll interval.
const FIRST_POLL_MS: u64 = 50;
/// Longest wait between retries after errors (ms).
const MAX_BACKOFF_MS: u64 = 10_000;
/// Every this many accepted heartbeats the node looks for itself in `/nodes`: a reference
/// broker answers 200 to a heartbeat from a node it does not know (after a restart with
/// an empty database), so a heartbeat's answer cannot tell.
pub const REGISTRATION_CHECK_EVERY: u64 = 3;

/// Listening options (`startListening(options?)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenOptions {
    /// Milliseconds between heartbeats (default 10000; the registry drops a node after 60 s).
    #[serde(default = "default_heartbeat")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub heartbeat_interval: u64,
    /// Milliseconds between `/claim` polls while idle (default 1000).
    #[serde(default = "default_poll")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub poll_interval: u64,
}

fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_MS
}
fn default_poll() -> u64 {
    DEFAULT_POLL_MS
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { heartbeat_interval: DEFAULT_HEARTBEAT_MS, poll_interval: DEFAULT_POLL_MS }
    }
}

impl ListenOptions {
    pub fn validate(&self) -> Result<()> {
        if !(100..=50_000).contains(&self.heartbeat_interval) {
            return Err(Error::invalid(format!(
                "heartbeatInterval must be 100-50000 ms (the registry drops a node after 60 s without one), got {}",
                self.heartbeat_interval
            )));
        }
        if !(10..=60_000).contains(&self.poll_interval) {
            return Err(Error::invalid(format!("pollInterval must be 10-60000 ms, got {}", self.poll_interval)));
        }
        Ok(())
    }
}

/// One run of the loop: `stop` asks it to end, `started` marks its first heartbeat
/// attempt, `done` its end.
#[derive(Clone, Default)]
pub(super) struct Run {
    pub(super) stop: CancelToken,
    pub(super) started: CancelToken,
    pub(super) done: CancelToken,
}

/// Clears `running` and wakes `stop()` however the loop ends (even if dropped).
struct RunGuard {
    node: Node,
    run: Run,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.node.inner.running.set(false);
        self.node.inner.stats.borrow_mut().running = false;
        self.run.started.cancel();
        self.run.done.cancel();
    }
}

impl Node {
    /// Start the loop: returns the future that runs it (to be spawned or awaited), or
    /// `None` when a loop is already running. State changes now, not at the first poll.
    pub fn start(&self, options: ListenOptions) -> Option<impl Future<Output = ()> + 'static> {
        if self.inner.running.get() {
            return None;
        }
        let run = Run::default();
        self.inner.running.set(true);
        self.inner.stats.borrow_mut().running = true;
        *self.inner.run.borrow_mut() = Some(run.clone());
        let node = self.clone();
        // Made now, so that even a future dropped before its first poll marks the end.
        let guard = RunGuard { node: node.clone(), run: run.clone() };
        Some(async move {
            // Heartbeats go on until the work loop has ended, so a job still being
            // finished after stop() does not make the registry think the node died.
            let work_done = CancelToken::default();
            let mut both = Race::default();
            both.push(node.heartbeat_loop(&run, &work_done, options));
            both.push(async {
                node.work_loop(&run, options).await;
                work_done.cancel();
            });
            while both.next().await.is_some() {}
            drop(guard);
        })
    }

    /// Run the loop until [`Self::stop`]. If one is already running, wait for its end.
    pub async fn run_until_stopped(&self, options: ListenOptions) {
        match self.start(options) {
            Some(f) => f.await,
            None => self.ended().await,
        }
    }

    fn current(&self) -> Option<Run> {
        self.inner.run.borrow().clone()
    }

    /// Resolves once the running loop has made its first heartbeat attempt (or ended).
    pub async fn started(&self) {
        if let Some(r) = self.current() {
            r.started.cancelled().await;
        }
    }

    async fn ended(&self) {
        if let Some(r) = self.current() {
            r.done.cancelled().await;
        }
    }

    /// Ask the loop to end and wait until it has (a job being run is finished and
    /// reported first). Resolves at once when no loop runs.
    pub async fn stop(&self) {
        if let Some(r) = self.current() {
            r.stop.cancel();
            r.done.cancelled().await;
        }
    }

    /// Sleep `ms`, unless stopped first. True when stopped.
    async fn pause(&self, run: &Run, ms: u64) -> bool {
        if run.stop.is_cancelled() {
            return true;
        }
        let p = self.inner.client.platform().clone();
        matches!(race(p.sleep(ms), run.stop.cancelled()).await, Either::Right(()))
    }

    async fn heartbeat_loop(&self, run: &Run, until: &CancelToken, o: ListenOptions) {
        let mut accepted = 0u64;
        loop {
            let wait = match race(self.inner.broker.heartbeat(&self.id()), until.cancelled()).await {
                Either::Right(()) => break,
                Either::Left(Ok(())) => {
                    self.inner.stats.borrow_mut().heartbeats += 1;
                    accepted += 1;
                    if accepted % REGISTRATION_CHECK_EVERY == 0 {
                        self.ensure_registered(until).await;
                    }
                    o.heartbeat_interval
                }
                Either::Left(Err(e)) => {
                    self.error("heartbeat", &e);
                    // A registry that says it does not know the node: look at once.
                    if e.status == Some(404) {
                        self.ensure_registered(until).await;
                    }
                    o.heartbeat_interval.min(2_000)
                }
            };
            run.started.cancel();
            let p = self.inner.client.platform().clone();
            if let Either::Right(()) = race(p.sleep(wait), until.cancelled()).await {
                break;
            }
        }
    }

    /// Register again, with the same endpoint and capabilities, when the registry no
    /// longer lists the node (it restarted with an empty database, or dropped the node).
    /// Failures are counted and tried again at the next check.
    async fn ensure_registered(&self, until: &CancelToken) {
        let listed = match race(self.inner.broker.nodes(), until.cancelled()).await {
            Either::Right(()) => return,
            Either::Left(Ok(nodes)) => {
                let id = self.id();
                nodes.iter().any(|n| n.id == id)
            }
            Either::Left(Err(e)) => return self.error("nodes (registration check)", &e),
        };
        if listed {
            return;
        }
        match race(self.inner.broker.register(&self.inner.endpoint, &self.inner.capabilities), until.cancelled()).await {
            Either::Right(()) => {}
            Either::Left(Ok(id)) => {
                *self.inner.id.borrow_mut() = id;
                self.inner.stats.borrow_mut().reregistrations += 1;
            }
            Either::Left(Err(e)) => self.error("register again", &e),
        }
    }

    async fn work_loop(&self, run: &Run, o: ListenOptions) {
        let mut idle = FIRST_POLL_MS.min(o.poll_interval);
        let mut backoff = o.poll_interval.max(500);
        while !run.stop.is_cancelled() {
            // Not raced with stop: a claim that reached the registry may have assigned
            // a job to us, which must then be run and reported.
            let wait = match self.inner.broker.claim(&self.id()).await {
                Ok(Some(job)) => {
                    self.inner.stats.borrow_mut().claimed += 1;
                    self.serve(&job).await;
                    idle = FIRST_POLL_MS.min(o.poll_interval);
                    backoff = o.poll_interval.max(500);
                    continue;
                }
                Ok(None) => {
                    self.inner.stats.borrow_mut().polls += 1;
                    let w = idle;
                    idle = (idle * 2).min(o.poll_interval);
                    backoff = o.poll_interval.max(500);
                    w
                }
                Err(e) => {
                    self.error("claim", &e);
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF_MS);
                    w
                }
            };
            if self.pause(run, wait).await {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listen_options_default_and_validate() {
        let o: ListenOptions = serde_json::from_value(json!({"pollInterval": 100})).unwrap();
        assert_eq!(o, ListenOptions { heartbeat_interval: DEFAULT_HEARTBEAT_MS, poll_interval: 100 });
        assert!(ListenOptions { heartbeat_interval: 60_000, poll_interval: 100 }.validate().is_err());
        assert!(ListenOptions::default().validate().is_ok());
    }
}
