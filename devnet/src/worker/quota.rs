//! Rate limits per client IP, computed like the reference: active (queued or running)
//! jobs, jobs accepted in a sliding hour, CPU seconds used in a sliding minute, and the
//! reason a submit is refused. `--no-rate-limit` turns the refusals off.

use super::jobs::State;
use super::Worker;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One client's usage: active jobs, when jobs were accepted (last hour), CPU used (last
/// minute).
#[derive(Default)]
pub(super) struct Quota {
    pub(super) active: usize,
    pub(super) accepted: VecDeque<Instant>,
    pub(super) cpu: VecDeque<(Instant, f64)>,
}

impl Worker {
    /// (used, available, active, can_submit, reason) for a client; prunes old entries.
    pub(super) fn quota(&self, st: &mut State, ip: IpAddr) -> (f64, f64, usize, bool, String) {
        let q = st.quotas.entry(ip).or_default();
        let now = Instant::now();
        while q.accepted.front().map(|t| now.duration_since(*t) > Duration::from_secs(3600)).unwrap_or(false) {
            q.accepted.pop_front();
        }
        while q.cpu.front().map(|(t, _)| now.duration_since(*t) > Duration::from_secs(60)).unwrap_or(false) {
            q.cpu.pop_front();
        }
        let used: f64 = q.cpu.iter().fold(0.0, |a, (_, c)| a + c);
        let limit = self.cfg.cpu_per_minute;
        if !self.cfg.rate_limit {
            return (used, (limit - used).max(0.0), q.active, true, String::new());
        }
        let reason = if q.active >= self.cfg.max_active {
            format!("Max concurrent jobs reached ({})", self.cfg.max_active)
        } else if q.accepted.len() >= self.cfg.jobs_per_hour {
            format!("Max jobs per hour reached ({})", self.cfg.jobs_per_hour)
        } else if used >= limit {
            // Wait until enough of the window has expired to get back under the limit.
            let mut left = used;
            let mut wait = 60u64;
            for (t, c) in q.cpu.iter() {
                left -= c;
                if left < limit {
                    let until = (*t + Duration::from_secs(60)).saturating_duration_since(now);
                    wait = until.as_secs() + u64::from(until.subsec_nanos() > 0);
                    break;
                }
            }
            format!("CPU quota exhausted, wait {wait} seconds")
        } else {
            String::new()
        };
        let can = reason.is_empty();
        (used, if can { (limit - used).max(0.0) } else { 0.0 }, q.active, can, reason)
    }
}
