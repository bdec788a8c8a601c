//! Fault injection: the modes a worker can be put into (`--fault`, `POST /_devnet/fault`),
//! which worker may take which, and the stdout a client is shown. Each fault acts where
//! it bites: `slow`, `429` and the switch to a relay in [`super::routes`];
//! `wrong-output`, `bad-signature`, `anonymous` and `crash` when a job runs
//! ([`super::jobs`]; `anonymous` also in `/health` and the registry capabilities);
//! `stdout-lie` wherever stdout is shown ([`Worker::shown_stdout`]); `relay` and
//! `relay-key` in [`super::relay`]; `hijack-payout` in [`super::hijack`].

use super::Worker;
use crate::http::worker_json;

/// Fault modes a worker can be put into (command line or `POST /_devnet/fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    WrongOutput,
    BadSignature,
    Anonymous,
    Slow,
    Crash,
    Reject429,
    /// Forwards every job to worker 0 and answers with worker 0's signed result.
    Relay,
    /// `Relay`, and `/health` shows worker 0's key too.
    RelayKey,
    /// `/logs` and the WebSocket stdout frames show a stdout the program did not print.
    StdoutLie,
    /// Tries to take over worker 0's registry record and payout.
    HijackPayout,
}

impl Fault {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [Fault; 10] = [
        Fault::WrongOutput,
        Fault::BadSignature,
        Fault::Anonymous,
        Fault::Slow,
        Fault::Crash,
        Fault::Reject429,
        Fault::Relay,
        Fault::RelayKey,
        Fault::StdoutLie,
        Fault::HijackPayout,
    ];
    /// Parses the CLI / admin spelling.
    pub fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "wrong-output" => Fault::WrongOutput,
            "bad-signature" => Fault::BadSignature,
            "anonymous" => Fault::Anonymous,
            "slow" => Fault::Slow,
            "crash" => Fault::Crash,
            "429" => Fault::Reject429,
            "relay" => Fault::Relay,
            "relay-key" => Fault::RelayKey,
            "stdout-lie" => Fault::StdoutLie,
            "hijack-payout" => Fault::HijackPayout,
            _ => return None,
        })
    }
    /// The CLI / admin spelling.
    pub fn name(self) -> &'static str {
        match self {
            Fault::WrongOutput => "wrong-output",
            Fault::BadSignature => "bad-signature",
            Fault::Anonymous => "anonymous",
            Fault::Slow => "slow",
            Fault::Crash => "crash",
            Fault::Reject429 => "429",
            Fault::Relay => "relay",
            Fault::RelayKey => "relay-key",
            Fault::StdoutLie => "stdout-lie",
            Fault::HijackPayout => "hijack-payout",
        }
    }
    /// Whether this fault forwards jobs to worker 0.
    pub fn relays(self) -> bool {
        matches!(self, Fault::Relay | Fault::RelayKey)
    }
}

/// The `stdout-lie` fault's text: plausible, and always different from `real`. Digits are
/// shifted by one (`42` -> `53`); without digits, ASCII letters swap case; otherwise (and
/// for an empty stdout) a line `0` is added.
pub fn stdout_lie(real: &[u8]) -> Vec<u8> {
    if real.iter().any(u8::is_ascii_digit) {
        real.iter().map(|&b| if b.is_ascii_digit() { b'0' + (b - b'0' + 1) % 10 } else { b }).collect()
    } else if real.iter().any(u8::is_ascii_alphabetic) {
        real.iter()
            .map(|&b| if b.is_ascii_lowercase() { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() })
            .collect()
    } else {
        let mut v = real.to_vec();
        v.extend_from_slice(b"0\n");
        v
    }
}

impl Worker {
    pub(super) fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }

    /// Whether worker `index` can take fault `f` (relaying needs worker 0, and another one).
    pub fn fault_allowed(&self, f: Fault) -> Result<(), String> {
        if f.relays() || f == Fault::HijackPayout {
            if self.cfg.index == 0 {
                return Err(format!("Fault {} targets worker 0; give it to another worker", f.name()));
            }
            if self.cfg.worker0.is_none() {
                return Err(format!("Fault {} needs worker 0's address", f.name()));
            }
        }
        if f == Fault::HijackPayout && self.cfg.registry.is_none() {
            return Err("Fault hijack-payout needs a registry".into());
        }
        Ok(())
    }

    /// The stdout a client is shown (the `stdout-lie` fault changes it; files and the
    /// signature never change).
    pub(super) fn shown_stdout(&self, real: &[u8]) -> Vec<u8> {
        if self.fault() == Some(Fault::StdoutLie) {
            stdout_lie(real)
        } else {
            real.to_vec()
        }
    }

    pub(super) fn fault_body(&self) -> Vec<u8> {
        let f = match self.fault() {
            Some(f) => format!("\"{}\"", f.name()),
            None => "null".into(),
        };
        worker_json(200, &format!("{{\"fault\":{f}}}"))
    }
}
