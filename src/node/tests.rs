//! The node against an in-memory registry and worker (`/health`): registration, the
//! payout check, heartbeats, polls, errors counted while the registry is down, reports of
//! jobs the SDK refuses, re-registration after the registry forgets the node, `stop()`.

use super::*;
use crate::context::Sandrun;
use crate::error::{Error, Result};
use crate::platform::HttpRequest;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use crate::config::SandrunConfig;
use crate::platform::{HttpResponse, LocalFuture, Platform, WebSocket};
use std::cell::RefCell;

/// A registry like the reference broker: it answers a heartbeat for a node it does
/// not know with 200, and `registered` is what `/nodes` lists (cleared: a restart
/// with an empty database).
#[derive(Default)]
struct Fake {
    down: Cell<bool>,
    jobs: RefCell<Vec<Value>>,
    completes: RefCell<Vec<Value>>,
    heartbeats: Cell<u32>,
    registered: RefCell<Vec<Value>>,
    registers: Cell<u32>,
    node_lists: Cell<u32>,
}

impl Platform for Fake {
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
        Box::pin(async move {
            let path = req.url.split_once("://").map(|(_, r)| &r[r.find('/').unwrap_or(r.len())..]).unwrap_or("");
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let answer = match path {
                "/health" => json!({"status": "healthy", "worker_id": "AAAA"}),
                _ if self.down.get() => return Err(Error::network("connection refused")),
                "/register" => {
                    self.registers.set(self.registers.get() + 1);
                    self.registered.borrow_mut().retain(|n| n["id"] != "n1");
                    self.registered.borrow_mut().push(json!({"id": "n1", "endpoint": body["endpoint"], "capabilities": body["capabilities"], "active": 1}));
                    json!({"node_id": "n1"})
                }
                "/nodes" => {
                    self.node_lists.set(self.node_lists.get() + 1);
                    json!({"nodes": *self.registered.borrow()})
                }
                "/heartbeat" => {
                    self.heartbeats.set(self.heartbeats.get() + 1);
                    json!({"status": "ok"})
                }
                "/claim" => json!({"job": self.jobs.borrow_mut().pop()}),
                "/complete" => {
                    self.completes.borrow_mut().push(body);
                    json!({"status": "ok"})
                }
                p => panic!("unexpected request {p}"),
            };
            Ok(HttpResponse { status: 200, headers: vec![], body: answer.to_string().into_bytes() })
        })
    }
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
    fn now_ms(&self) -> f64 {
        0.0
    }
    fn websocket(&self, _: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
        Box::pin(async { Ok(None) })
    }
    fn read_file(&self, _: &str) -> LocalFuture<'_, Result<Vec<u8>>> {
        unimplemented!()
    }
    fn read_dir(&self, _: &str) -> LocalFuture<'_, Result<Vec<(String, bool)>>> {
        unimplemented!()
    }
    fn write_file(&self, _: &str, _: &[u8]) -> LocalFuture<'_, Result<()>> {
        unimplemented!()
    }
}

async fn pause(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// How long a test waits for an event of the loop before failing. The loop's intervals
/// here are 20-100 ms; the margin is for a loaded machine that runs this process late.
const EVENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Wait until `cond` holds (checked every 5 ms, between the loop's steps), or fail
/// saying what did not happen. Tests wait on the event, not on a wall-clock window: on a
/// loaded machine the loop may need longer than any fixed window to get there.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + EVENT_DEADLINE;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "waited {EVENT_DEADLINE:?} for {what}; it did not happen");
        pause(5).await;
    }
}

/// A client whose worker (`http://w:1`) and registry (`http://reg:2`) are the test double.
fn fake_client() -> (Rc<Fake>, Sandrun) {
    let fake = Rc::new(Fake::default());
    let config = SandrunConfig { api_endpoint: Some("http://w:1".into()), registry_endpoint: Some("http://reg:2".into()), ..Default::default() };
    let client = Sandrun::new(config, fake.clone()).unwrap();
    (fake, client)
}

#[tokio::test(flavor = "current_thread")]
async fn heartbeats_polls_counts_errors_and_stops() {
    let (fake, client) = fake_client();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let node = register(&client, NodeBuilder::new().region("r").unwrap().spec()).await.unwrap();
            assert_eq!((node.id().as_str(), node.worker_id(), node.endpoint()), ("n1", "AAAA", "http://w:1"));
            assert_eq!(node.capabilities()["sandrun_endpoint"], "http://w:1");
            let o = ListenOptions { heartbeat_interval: 100, poll_interval: 20 };
            tokio::task::spawn_local(node.start(o).unwrap());
            assert!(node.start(o).is_none(), "one loop at a time");
            node.started().await;
            // started() resolves after the first heartbeat attempt (a stalled process may
            // see the second one too by the time it looks).
            assert!(node.stats().heartbeats >= 1, "{:?}", node.stats());
            until("a second heartbeat and three polls", || {
                let s = node.stats();
                s.heartbeats >= 2 && s.polls >= 3
            })
            .await;
            let s = node.stats();
            assert!(s.heartbeats >= 2 && s.polls >= 3 && s.errors == 0 && s.running, "{s:?}");
            // A job the SDK refuses is reported failed with the reason.
            fake.jobs.borrow_mut().push(json!({"id": "j1", "code": "puts 1", "interpreter": "ruby", "args": []}));
            until("the refused job's report at /complete, counted", || !fake.completes.borrow().is_empty() && node.stats().failed >= 1).await;
            let c = fake.completes.borrow()[0].clone();
            assert_eq!((c["node_id"].as_str(), c["job_id"].as_str(), c["exit_code"].as_i64()), (Some("n1"), Some("j1"), Some(-1)));
            assert!(c["error"].as_str().unwrap().contains("INVALID_ARGUMENT"), "{c}");
            assert_eq!((node.stats().claimed, node.stats().failed), (1, 1));
            // The registry goes down: counted, not thrown; the loop keeps going.
            fake.down.set(true);
            until("two errors counted while the registry is down", || node.stats().errors >= 2).await;
            let s = node.stats();
            assert!(s.errors >= 2 && s.running && s.last_error.as_deref().unwrap_or("").contains("NETWORK"), "{s:?}");
            fake.down.set(false);
            node.stop().await;
            let frozen = node.stats();
            assert!(!frozen.running);
            let hb = fake.heartbeats.get();
            // Nothing may happen after stop(): a window is the only way to look for that
            // (a late process makes it see less, never fail wrongly).
            pause(250).await;
            assert_eq!(node.stats(), frozen);
            assert_eq!(fake.heartbeats.get(), hb);
            // A dropped loop future still marks the node stopped.
            drop(node.start(o).unwrap());
            assert!(!node.is_running());
            node.stop().await;
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_payout_whose_signature_does_not_verify_is_not_registered() {
    use base64::Engine;
    let (fake, client) = fake_client();
    let sig = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let spec = NodeBuilder::new().payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { chain_id: 31337, signature: sig }).unwrap();
    let e = register(&client, spec.spec()).await.err().expect("refused");
    assert_eq!(e.code, crate::ErrorCode::InvalidArgument);
    assert!(e.message.contains("sandrun-payout-v1|31337|0x00000000000000000000000000000000000000ab"), "{}", e.message);
    assert_eq!(fake.registers.get(), 0, "nothing was registered");
}

#[tokio::test(flavor = "current_thread")]
async fn registers_again_when_the_registry_forgets_it() {
    let (fake, client) = fake_client();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let node = register(&client, NodeBuilder::new().region("r").unwrap().spec()).await.unwrap();
            assert_eq!(fake.registers.get(), 1);
            let o = ListenOptions { heartbeat_interval: 100, poll_interval: 20 };
            tokio::task::spawn_local(node.start(o).unwrap());
            node.started().await;
            // The registry restarts with an empty database; heartbeats still get 200.
            fake.registered.borrow_mut().clear();
            until("the node registering again", || !fake.registered.borrow().is_empty() && node.stats().reregistrations >= 1).await;
            let listed = fake.registered.borrow().first().cloned().expect("the node registered again");
            assert_eq!(fake.registers.get(), 2);
            assert_eq!(listed["id"], "n1");
            assert_eq!(&listed["capabilities"], node.capabilities(), "same capabilities");
            assert_eq!(listed["endpoint"], "http://w:1");
            assert_eq!(node.stats().reregistrations, 1);
            // Listed again: no more registrations, however many checks come.
            let lists = fake.node_lists.get();
            until("two more registration checks", || fake.node_lists.get() >= lists + 2).await;
            assert_eq!(fake.registers.get(), 2);
            assert!(fake.node_lists.get() >= 2, "the listing is checked periodically");
            node.stop().await;
        })
        .await;
}
