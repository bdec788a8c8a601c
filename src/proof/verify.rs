//! Ed25519 verification of a worker's signed status, including the CPU candidate search.
//!
//! `/status` prints CPU seconds with 2 decimals, but the worker signed the exact `%g`
//! figure. Without the exact figure (from the WebSocket `[DONE]` frame) we try every
//! microsecond value within +-0.005: up to 10,001 messages. The fixed work (decoding
//! the key, the point R, the scalar S, hashing R || A || prefix) is done once. The
//! search then checks `[k]A == [S]B - R` per candidate with a variable-time fixed-base
//! table of A (radix 2^9, affine, built once: 29 mixed additions per candidate, see
//! `fixed_base` below). Everything in it is public, so variable time leaks nothing; a
//! candidate it accepts is confirmed by the ordinary verification before it counts.

use super::recipe::{format_g, signed_prefix, signed_suffix};
use crate::wire::WorkerStatus;
use crate::error::{Error, ErrorCode, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// A worker's public key, decoded once.
#[derive(Clone)]
pub struct WorkerKey {
    a_bytes: [u8; 32],
    minus_a: EdwardsPoint,
}

impl WorkerKey {
    /// From the base64 `worker_id`.
    pub fn from_worker_id(worker_id: &str) -> Result<WorkerKey> {
        let raw = B64
            .decode(worker_id)
            .map_err(|_| Error::new(ErrorCode::VerificationFailed, format!("worker id {worker_id:?} is not base64")))?;
        let a_bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| Error::new(ErrorCode::VerificationFailed, format!("worker id {worker_id:?} is not a 32-byte Ed25519 key")))?;
        let a = CompressedEdwardsY(a_bytes)
            .decompress()
            .ok_or_else(|| Error::new(ErrorCode::VerificationFailed, format!("worker id {worker_id:?} is not a valid Ed25519 point")))?;
        // Strict: a small-order key (the identity among them) lets a trivial signature verify
        // any message, and a non-canonical encoding gives one key two ids.
        if a.is_small_order() || a.compress().0 != a_bytes {
            return Err(Error::new(
                ErrorCode::VerificationFailed,
                format!("worker id {worker_id:?} is a weak (small-order) or non-canonically encoded Ed25519 key: no signature by it is trusted"),
            ));
        }
        Ok(WorkerKey { a_bytes, minus_a: -a })
    }
}

/// Check a list of base64 Ed25519 worker keys, so a typo fails at the call.
pub fn check_worker_keys(what: &str, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::invalid(format!("{what} needs at least one worker key (the base64 worker_id a worker shows at /health)")));
    }
    for k in keys {
        WorkerKey::from_worker_id(k)
            .map_err(|e| Error::invalid(format!("{what}: {k:?} is not a usable worker key: {}", e.message)))?;
    }
    Ok(())
}

/// A signature prepared for many candidate messages with a common prefix.
pub struct PreparedSignature {
    r_bytes: [u8; 32],
    s: Scalar,
    key: WorkerKey,
}

impl PreparedSignature {
    pub fn new(key: &WorkerKey, signature_b64: &str) -> Result<PreparedSignature> {
        let raw = B64
            .decode(signature_b64)
            .map_err(|_| Error::new(ErrorCode::VerificationFailed, "the worker's signature is not base64"))?;
        if raw.len() != 64 {
            return Err(Error::new(ErrorCode::VerificationFailed, "the worker's signature is not 64 bytes"));
        }
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&raw[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&raw[32..]);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or_else(|| Error::new(ErrorCode::VerificationFailed, "the worker's signature has a non-canonical S"))?;
        // As ed25519-dalek's verify_strict: R must be a canonical point of large order.
        let r_ok = CompressedEdwardsY(r_bytes).decompress().is_some_and(|r| !r.is_small_order() && r.compress().0 == r_bytes);
        if !r_ok {
            return Err(Error::new(ErrorCode::VerificationFailed, "the worker's signature has a small-order or non-canonical R"));
        }
        Ok(PreparedSignature { r_bytes, s, key: key.clone() })
    }

    /// SHA-512 state after R || A || prefix.
    pub fn hasher(&self, prefix: &[u8]) -> Sha512 {
        let mut h = Sha512::new();
        h.update(self.r_bytes);
        h.update(self.key.a_bytes);
        h.update(prefix);
        h
    }

    /// Does the signature verify for `prefix + rest` (given `hasher(prefix)`)?
    pub fn verifies_with(&self, prefixed: &Sha512, rest: &[u8]) -> bool {
        let mut h = prefixed.clone();
        h.update(rest);
        let k = Scalar::from_hash(h);
        let r = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.key.minus_a, &self.s);
        r.compress().0 == self.r_bytes
    }

    /// Prepare a search over many messages sharing `prefix`; `None` when R is not a
    /// canonical point encoding (no message can verify then) or the table cannot be built.
    pub fn search(&self, prefix: &[u8]) -> Option<CandidateSearch> {
        let r = CompressedEdwardsY(self.r_bytes).decompress()?;
        // The table compares points, the ordinary verification compressed bytes of R:
        // the same only for a canonical R.
        if r.compress().0 != self.r_bytes {
            return None;
        }
        let t = EdwardsPoint::mul_base(&self.s) - r;
        let table = fixed_base::FixedBase::new(&self.key.a_bytes, &t.compress().0)?;
        Some(CandidateSearch { table, hasher: self.hasher(prefix) })
    }

    /// Verify one whole message.
    pub fn verifies(&self, message: &[u8]) -> bool {
        self.verifies_with(&self.hasher(b""), message)
    }
}

/// A prepared search: `[k]A == [S]B - R` per candidate, with a fixed-base table for A.
pub struct CandidateSearch {
    table: fixed_base::FixedBase,
    hasher: Sha512,
}

impl CandidateSearch {
    /// Does the signature verify for `prefix` followed by the concatenation of `rest`?
    /// (In pieces, so a caller need not build a string per candidate.)
    pub fn matches(&self, rest: &[&[u8]]) -> bool {
        let mut h = self.hasher.clone();
        for part in rest {
            h.update(part);
        }
        self.table.is_target(&Scalar::from_hash(h))
    }
}

/// What a signature check found.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureCheck {
    /// The exact signed string that verified.
    pub signed: String,
    /// The exact CPU figure as signed (`%g`).
    pub cpu: String,
    /// Candidate strings tried (1 when the exact CPU was known).
    pub candidates_tried: u32,
}

/// Below this many candidates the search verifies each one plainly instead of building
/// the key's table (bench row 5: about 8 ms to build, 15 vs 160 us per candidate in wasm).
const SEARCH_TABLE_MIN_CANDIDATES: usize = 64;

/// The distinct `%g` strings within +-0.005 of a 2-decimal figure, nearest first.
pub fn cpu_candidates(cpu_2dp: f64) -> Vec<String> {
    let center = (cpu_2dp * 1_000_000.0).round() as i64;
    let mut out: Vec<String> = Vec::with_capacity(10_001);
    let mut seen = std::collections::HashSet::with_capacity(10_001);
    for d in 0..=5000i64 {
        // Saturating: the reported figure is the worker's, `1e300` included.
        for micros in if d == 0 { vec![center] } else { vec![center.saturating_sub(d), center.saturating_add(d)] } {
            if micros < 0 {
                continue;
            }
            let s = format_g(micros as f64 / 1_000_000.0);
            if seen.insert(s.clone()) {
                out.push(s);
            }
        }
    }
    out
}

/// Verify a finished status's signature against its own `worker_id`.
///
/// `exact_cpu` is the `CPU=...s` figure from the `[DONE]` frame when it was seen.
pub fn verify_status_signature(status: &WorkerStatus, exact_cpu: Option<f64>) -> Result<SignatureCheck> {
    let (Some(worker_id), Some(signature)) = (&status.worker_metadata.worker_id, &status.worker_metadata.signature) else {
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            "the worker did not sign this result (anonymous worker, or the job has not ended); use consensus('none') to accept unsigned results",
        ));
    };
    let job_hash = status.job_hash.as_deref().unwrap_or_default();
    let key = WorkerKey::from_worker_id(worker_id)?;
    let sig = PreparedSignature::new(&key, signature)?;
    let prefix = signed_prefix(job_hash, status.execution_metadata.exit_code);
    let suffix = signed_suffix(
        status.execution_metadata.memory_peak_mb,
        status.output_files.iter().map(|(p, m)| (p, &m.sha256)),
    );
    // The signed string must mean exactly this status. A path holding `|`, or a sha256 or
    // job hash that is not 64 lowercase hex, lets the same bytes read as another set of
    // (path, sha256): `{"a:<h1>|b": h2}` signs as `a:<h1>|b:<h2>|`, which is `{a: h1, b: h2}`.
    let files: std::collections::BTreeMap<String, String> = status.output_files.iter().map(|(p, m)| (p.clone(), m.sha256.clone())).collect();
    let means_the_status = super::signed::parse_signed(&format!("{prefix}0{suffix}")).is_some_and(|p| {
        p.agreement.job_hash == job_hash && p.agreement.exit_code == status.execution_metadata.exit_code && p.agreement.outputs == files
    });
    if !means_the_status {
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            format!(
                "the result of job {} cannot be signed unambiguously (a job hash or sha256 that is not 64 lowercase hex, or an output path containing '|'): do not trust it",
                status.job_id
            ),
        ));
    }
    let hasher = sig.hasher(prefix.as_bytes());
    let try_cpu = |cpu: &str| {
        let mut rest = String::with_capacity(cpu.len() + suffix.len());
        rest.push_str(cpu);
        rest.push_str(&suffix);
        sig.verifies_with(&hasher, rest.as_bytes()).then(|| format!("{prefix}{rest}"))
    };
    if let Some(cpu) = exact_cpu {
        // The [DONE] frame prints the same microsecond figure with %f: try it and its
        // neighbours (float rounding), and no wider search, so a bad signature is cheap.
        let micros = (cpu * 1_000_000.0).round() as i64;
        for (tried, m) in [micros, micros.saturating_sub(1), micros.saturating_add(1)].into_iter().enumerate() {
            let cpu = format_g(m.max(0) as f64 / 1_000_000.0);
            if let Some(signed) = try_cpu(&cpu) {
                return Ok(SignatureCheck { signed, cpu, candidates_tried: tried as u32 + 1 });
            }
        }
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            format!("the signature of worker {worker_id} does not verify for job {} (exact CPU {cpu} from its stream): do not trust this result", status.job_id),
        ));
    }
    let candidates = cpu_candidates(status.execution_metadata.cpu_seconds);
    // The table costs about 50 plain verifications to build (8 ms in wasm), so a small
    // window (a CPU figure of 100 s or more has at most 11 candidates) is cheaper without it.
    let search = if candidates.len() > SEARCH_TABLE_MIN_CANDIDATES { sig.search(prefix.as_bytes()) } else { None };
    for (i, cpu) in candidates.iter().enumerate() {
        // Without a table (a small window, or a point the checks above refuse) every
        // candidate takes the ordinary verification; with one, a candidate the fast path
        // accepts is confirmed by the ordinary verification before it is trusted.
        let maybe = search.as_ref().is_none_or(|s| s.matches(&[cpu.as_bytes(), suffix.as_bytes()]));
        if maybe {
            if let Some(signed) = try_cpu(cpu) {
                return Ok(SignatureCheck { signed, cpu: cpu.clone(), candidates_tried: i as u32 + 1 });
            }
        }
    }
    Err(Error::new(
        ErrorCode::VerificationFailed,
        format!(
            "the signature of worker {worker_id} does not verify for job {} (tried {} CPU figures): do not trust this result",
            status.job_id,
            candidates.len()
        ),
    ))
}

/// Variable-time `[k]A == T` for one public point A and many scalars k.
///
/// curve25519-dalek 4 keeps its field and affine point types private, and its public
/// `EdwardsBasepointTable` looks entries up in constant time (64 additions, each reading
/// a whole 8-entry row); `EdwardsPoint + EdwardsPoint` costs 9 field multiplications.
/// This table holds affine multiples of A in radix 2^9, indexed directly, and adds them
/// with 7-multiplication mixed additions over fiat-crypto's formally verified field
/// arithmetic (the crate curve25519-dalek's own fiat backend uses). Measured in wasm:
/// about 12 us per candidate against 39 us with dalek's table and 17 us with a
/// variable-time table of `EdwardsPoint`s (docs/decisions.md).
mod fixed_base {
    // The 32-bit form on wasm32: its 64-bit products are native there, where the 64-bit
    // form's 128-bit products are library calls.
    #[cfg(not(target_pointer_width = "64"))]
    use fiat_crypto::curve25519_32 as f;
    #[cfg(target_pointer_width = "64")]
    use fiat_crypto::curve25519_64 as f;
    use curve25519_dalek::scalar::Scalar;
    use f::{fiat_25519_loose_field_element as Loose, fiat_25519_tight_field_element as Tight};

    /// A field element with fiat-crypto's tight bounds.
    #[derive(Clone, Copy)]
    struct Fe(Tight);

    fn lmul(a: &Loose, b: &Loose) -> Fe {
        let mut o = Tight(Default::default());
        f::fiat_25519_carry_mul(&mut o, a, b);
        Fe(o)
    }
    fn carry(a: &Loose) -> Fe {
        let mut o = Tight(Default::default());
        f::fiat_25519_carry(&mut o, a);
        Fe(o)
    }

    impl Fe {
        /// The low 255 bits (fiat's precondition); callers check canonical encodings.
        fn from_bytes(b: &[u8; 32]) -> Fe {
            let mut b = *b;
            b[31] &= 0x7f;
            let mut o = Tight(Default::default());
            f::fiat_25519_from_bytes(&mut o, &b);
            Fe(o)
        }
        fn small(n: u32) -> Fe {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            Fe::from_bytes(&b)
        }
        fn to_bytes(&self) -> [u8; 32] {
            let mut o = [0u8; 32];
            f::fiat_25519_to_bytes(&mut o, &self.0);
            o
        }
        fn lo(&self) -> Loose {
            let mut o = Loose(Default::default());
            f::fiat_25519_relax(&mut o, &self.0);
            o
        }
        fn add(&self, b: &Fe) -> Loose {
            let mut o = Loose(Default::default());
            f::fiat_25519_add(&mut o, &self.0, &b.0);
            o
        }
        fn sub(&self, b: &Fe) -> Loose {
            let mut o = Loose(Default::default());
            f::fiat_25519_sub(&mut o, &self.0, &b.0);
            o
        }
        fn neg(&self) -> Fe {
            let mut o = Loose(Default::default());
            f::fiat_25519_opp(&mut o, &self.0);
            carry(&o)
        }
        fn mul(&self, b: &Fe) -> Fe {
            lmul(&self.lo(), &b.lo())
        }
        fn sq(&self) -> Fe {
            let mut o = Tight(Default::default());
            f::fiat_25519_carry_square(&mut o, &self.lo());
            Fe(o)
        }
        fn pow2k(&self, k: u32) -> Fe {
            let mut x = *self;
            for _ in 0..k {
                x = x.sq();
            }
            x
        }
        fn eq(&self, b: &Fe) -> bool {
            self.to_bytes() == b.to_bytes()
        }
        fn is_negative(&self) -> bool {
            self.to_bytes()[0] & 1 == 1
        }
        /// (self^(2^250 - 1), self^11), as in curve25519-dalek's `pow22501`.
        fn pow22501(&self) -> (Fe, Fe) {
            let t0 = self.sq();
            let t1 = t0.sq().sq();
            let t2 = self.mul(&t1);
            let t3 = t0.mul(&t2);
            let t4 = t3.sq();
            let t5 = t2.mul(&t4);
            let t6 = t5.pow2k(5);
            let t7 = t6.mul(&t5);
            let t8 = t7.pow2k(10);
            let t9 = t8.mul(&t7);
            let t10 = t9.pow2k(20);
            let t11 = t10.mul(&t9);
            let t12 = t11.pow2k(10);
            let t13 = t12.mul(&t7);
            let t14 = t13.pow2k(50);
            let t15 = t14.mul(&t13);
            let t16 = t15.pow2k(100);
            let t17 = t16.mul(&t15);
            let t18 = t17.pow2k(50);
            let t19 = t18.mul(&t13);
            (t19, t3)
        }
        fn invert(&self) -> Fe {
            let (t19, t3) = self.pow22501();
            t19.pow2k(5).mul(&t3)
        }
        /// self^((p-5)/8)
        fn pow_p58(&self) -> Fe {
            let (t19, _) = self.pow22501();
            self.mul(&t19.pow2k(2))
        }
    }

    /// Curve constants, computed rather than transcribed.
    struct Consts {
        d2: Fe,
        d: Fe,
        sqrt_m1: Fe,
        one: Fe,
    }

    impl Consts {
        fn new() -> Consts {
            let one = Fe::small(1);
            // d = -121665/121666
            let d = Fe::small(121665).mul(&Fe::small(121666).invert()).neg();
            let d2 = carry(&d.add(&d));
            // 2 is not a square mod p = 5 (mod 8), so 2^((p-1)/4) squares to -1.
            let two = Fe::small(2);
            let sqrt_m1 = two.pow_p58().sq().mul(&two);
            Consts { d2, d, sqrt_m1, one }
        }
        /// Affine (x, y) of a canonical compressed Edwards point, as RFC 8032 5.1.3.
        fn decompress(&self, bytes: &[u8; 32]) -> Option<(Fe, Fe)> {
            let y = Fe::from_bytes(bytes);
            let mut canonical = y.to_bytes();
            canonical[31] |= bytes[31] & 0x80;
            if canonical != *bytes {
                return None;
            }
            let yy = y.sq();
            let u = carry(&yy.sub(&self.one));
            let v = carry(&self.d.mul(&yy).add(&self.one));
            let v3 = v.sq().mul(&v);
            let v7 = v3.sq().mul(&v);
            let mut x = u.mul(&v3).mul(&u.mul(&v7).pow_p58());
            let check = v.mul(&x.sq());
            if check.eq(&u.neg()) {
                x = x.mul(&self.sqrt_m1);
            } else if !check.eq(&u) {
                return None;
            }
            if x.is_negative() != (bytes[31] >> 7 == 1) {
                x = x.neg();
            }
            Some((x, y))
        }
    }

    /// Extended coordinates: x = X/Z, y = Y/Z, x*y = T/Z.
    #[derive(Clone, Copy)]
    struct Ext {
        x: Fe,
        y: Fe,
        z: Fe,
        t: Fe,
    }

    /// An affine point as (y + x, y - x, 2*d*x*y).
    #[derive(Clone, Copy)]
    struct Niels {
        ypx: Fe,
        ymx: Fe,
        xy2d: Fe,
    }

    impl Ext {
        fn identity() -> Ext {
            let (zero, one) = (Fe::small(0), Fe::small(1));
            Ext { x: zero, y: one, z: one, t: zero }
        }
        fn from_affine(x: Fe, y: Fe) -> Ext {
            Ext { x, y, z: Fe::small(1), t: x.mul(&y) }
        }
        /// "add-2008-hwcd-3" (complete on this curve): 9 multiplications.
        fn add(&self, q: &Ext, c: &Consts) -> Ext {
            let a = lmul(&self.y.sub(&self.x), &q.y.sub(&q.x));
            let b = lmul(&self.y.add(&self.x), &q.y.add(&q.x));
            let cc = self.t.mul(&c.d2).mul(&q.t);
            let d = carry(&self.z.add(&self.z)).mul(&q.z);
            Ext::finish(&b.sub(&a), &d.sub(&cc), &d.add(&cc), &b.add(&a))
        }
        fn finish(e: &Loose, f: &Loose, g: &Loose, h: &Loose) -> Ext {
            Ext { x: lmul(e, f), y: lmul(g, h), t: lmul(e, h), z: lmul(f, g) }
        }
        /// Mixed addition of `n` (or of -n with `neg`): 7 multiplications.
        #[inline]
        fn add_niels(&self, n: &Niels, neg: bool) -> Ext {
            let (p, m) = if neg { (&n.ymx, &n.ypx) } else { (&n.ypx, &n.ymx) };
            let a = lmul(&self.y.sub(&self.x), &m.lo());
            let b = lmul(&self.y.add(&self.x), &p.lo());
            let cc = self.t.mul(&n.xy2d);
            let d = carry(&self.z.add(&self.z));
            let (f, g) = if neg { (d.add(&cc), d.sub(&cc)) } else { (d.sub(&cc), d.add(&cc)) };
            Ext::finish(&b.sub(&a), &f, &g, &b.add(&a))
        }
    }

    /// Multiples of one point in radix 2^W: `rows[j][m-1] = [m * 2^(W*j)]A` for m in 1..=2^(W-1),
    /// affine, so a multiplication is one mixed addition per signed digit.
    pub(super) struct FixedBase {
        table: Vec<Niels>,
        /// The target point, affine.
        tx: Fe,
        ty: Fe,
    }

    /// The radix's bits: 29 additions per scalar, a table of 29 x 256 affine points
    /// (about 0.9 MB), built with about 7,400 additions. 8 and 10 measured alike in wasm.
    const W: usize = 9;
    const HALF: usize = 1 << (W - 1);
    /// Signed digits need W*ROWS >= 254 for a scalar below 2^253 (see `mul`).
    const ROWS: usize = (254 + W - 1) / W;
    // `mul` reads a digit from 3 bytes.
    const _: () = assert!(W >= 2 && W <= 16);

    impl FixedBase {
        /// A table for the point `a` (compressed, canonical) and a target point `target`; `None`
        /// when either does not decompress (or is not canonical).
        pub(super) fn new(a: &[u8; 32], target: &[u8; 32]) -> Option<FixedBase> {
            let c = Consts::new();
            let (ax, ay) = c.decompress(a)?;
            let (tx, ty) = c.decompress(target)?;
            let mut table = Vec::with_capacity(ROWS * HALF);
            let mut base = Ext::from_affine(ax, ay);
            let mut row: Vec<Ext> = Vec::with_capacity(HALF);
            let mut prefix: Vec<Fe> = Vec::with_capacity(HALF);
            for _ in 0..ROWS {
                row.clear();
                let mut q = base;
                row.push(q);
                for _ in 1..HALF {
                    q = q.add(&base, &c);
                    row.push(q);
                }
                base = q.add(&q, &c);
                // One inversion per row (Montgomery's trick) makes the row affine.
                prefix.clear();
                let mut acc = c.one;
                for p in &row {
                    prefix.push(acc);
                    acc = acc.mul(&p.z);
                }
                let mut inv = acc.invert();
                let start = table.len();
                table.resize(start + HALF, Niels { ypx: c.one, ymx: c.one, xy2d: c.one });
                for i in (0..HALF).rev() {
                    let zi = inv.mul(&prefix[i]);
                    inv = inv.mul(&row[i].z);
                    let (x, y) = (row[i].x.mul(&zi), row[i].y.mul(&zi));
                    table[start + i] = Niels { ypx: carry(&y.add(&x)), ymx: carry(&y.sub(&x)), xy2d: x.mul(&y).mul(&c.d2) };
                }
            }
            Some(FixedBase { table, tx, ty })
        }

        /// `[k]A` from signed radix-2^W digits of k (canonical, so below 2^253).
        fn mul(&self, k: &Scalar) -> Ext {
            let b = k.as_bytes();
            let mut acc = Ext::identity();
            let mut carry_in = 0i32;
            for j in 0..ROWS {
                let bit = j * W;
                let byte = bit / 8;
                let mut v = 0u32;
                for i in 0..3 {
                    if byte + i < 32 {
                        v |= (b[byte + i] as u32) << (8 * i);
                    }
                }
                let mut d = ((v >> (bit % 8)) & ((1 << W) - 1)) as i32 + carry_in;
                carry_in = 0;
                // The top digit stays unsigned: it is at most 2^(W-1) for k < 2^253.
                if j + 1 < ROWS && d >= HALF as i32 {
                    d -= 1 << W;
                    carry_in = 1;
                }
                if d != 0 {
                    acc = acc.add_niels(&self.table[j * HALF + d.unsigned_abs() as usize - 1], d < 0);
                }
            }
            acc
        }

        /// Is `[k]A` the target point?
        pub(super) fn is_target(&self, k: &Scalar) -> bool {
            let p = self.mul(k);
            // Y == ty*Z first: it differs for almost every candidate.
            p.y.eq(&self.ty.mul(&p.z)) && p.x.eq(&self.tx.mul(&p.z))
        }

        /// `[k]A`, compressed (for tests against curve25519-dalek).
        #[cfg(test)]
        pub(super) fn mul_compressed(&self, k: &Scalar) -> [u8; 32] {
            let p = self.mul(k);
            let zi = p.z.invert();
            let (x, y) = (p.x.mul(&zi), p.y.mul(&zi));
            let mut out = y.to_bytes();
            out[31] |= (x.is_negative() as u8) << 7;
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::recipe::job_hash;

    fn vectors() -> serde_json::Value {
        let p = format!("{}/tests/fixtures/signature-vectors.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn all_reference_vectors_verify_by_candidate_search_and_by_exact_cpu() {
        for v in vectors()["vectors"].as_array().unwrap() {
            let status = WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap();
            let check = verify_status_signature(&status, None).unwrap();
            assert_eq!(check.signed, v["signed_string"].as_str().unwrap(), "{}", v["capture"]);
            assert_eq!(check.cpu, v["exact_cpu_string"].as_str().unwrap());
            let exact: f64 = check.cpu.parse().unwrap();
            assert_eq!(verify_status_signature(&status, Some(exact)).unwrap().candidates_tried, 1);
            // Cross-check the fast path against ed25519-dalek's own verify.
            let key = ed25519_dalek::VerifyingKey::from_bytes(
                &B64.decode(status.worker_metadata.worker_id.as_ref().unwrap()).unwrap().try_into().unwrap(),
            )
            .unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&B64.decode(status.worker_metadata.signature.as_ref().unwrap()).unwrap()).unwrap();
            assert!(key.verify_strict(check.signed.as_bytes(), &sig).is_ok());
        }
    }

    #[test]
    fn job_hashes_recompute_from_inputs() {
        for v in vectors()["vectors"].as_array().unwrap() {
            let m = &v["manifest_sent"];
            let m = if m.is_null() { serde_json::from_str(v["job_files"]["job.json"].as_str().unwrap()).unwrap() } else { m.clone() };
            let entry = m["entrypoint"].as_str().unwrap();
            let args: Vec<String> = m["args"].as_array().map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default();
            let content = v["job_files"][entry].as_str().map(|s| s.as_bytes());
            let h = job_hash(entry, m["interpreter"].as_str().unwrap_or("python3"), m["environment"].as_str().unwrap_or(""), &args, content);
            assert_eq!(h, v["expected_job_hash"].as_str().unwrap(), "{}", v["capture"]);
        }
    }

    #[test]
    fn tampering_fails() {
        let v = &vectors()["vectors"][0];
        let mut status = WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap();
        status.output_files.values_mut().next().unwrap().sha256 = "00".repeat(32);
        let e = verify_status_signature(&status, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        let mut anon = WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap();
        anon.worker_metadata.signature = None;
        assert_eq!(verify_status_signature(&anon, None).unwrap_err().code, ErrorCode::VerificationFailed);
    }

    /// The identity point as a key with R = identity and S = 0 satisfies the cofactorless
    /// equation for every message; a strict verifier must refuse it (and small-order R).
    #[test]
    fn small_order_keys_and_trivial_signatures_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = B64.encode(identity);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        let sig = B64.encode(sig);
        let verifies = |msg: &[u8]| WorkerKey::from_worker_id(&key).and_then(|k| PreparedSignature::new(&k, &sig)).map(|s| s.verifies(msg)).unwrap_or(false);
        assert!(!verifies(b"anything"), "the identity key verified a message");
        assert!(!verifies(b"anything else"));
        // A real key with a small-order R and S = 0 must not verify either.
        let v = &vectors()["vectors"][0];
        let real = v["status"]["worker_metadata"]["worker_id"].as_str().unwrap();
        let k = WorkerKey::from_worker_id(real).unwrap();
        assert!(PreparedSignature::new(&k, &sig).map(|s| s.verifies(b"x")).unwrap_or(false) == false);
        // A non-canonical encoding of a valid key (y + p) is refused.
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xee; // y = p + 1 (encodes y = 1 non-canonically), sign bit clear
        noncanon[31] = 0x7f;
        assert!(WorkerKey::from_worker_id(&B64.encode(noncanon)).is_err());
    }

    fn status_of(v: &serde_json::Value) -> WorkerStatus {
        WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap()
    }

    fn prefix_suffix(status: &WorkerStatus) -> (String, String) {
        let prefix = signed_prefix(status.job_hash.as_deref().unwrap(), status.execution_metadata.exit_code);
        let suffix = signed_suffix(status.execution_metadata.memory_peak_mb, status.output_files.iter().map(|(p, m)| (p, &m.sha256)));
        (prefix, suffix)
    }

    /// The table's `[k]A` is curve25519-dalek's, for every reference key, hashed scalars and
    /// the scalars at the edges of the signed-digit recoding.
    #[test]
    fn fixed_base_multiplication_agrees_with_dalek() {
        let mut edges = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, Scalar::from(2u8).invert(), -Scalar::from(2u8).invert()];
        // Every 9-bit digit at 2^8 (recentred to -2^8 with a carry), and every digit 2^9 - 1.
        for digit in [256u32, 511, 255, 257] {
            let mut b = [0u8; 32];
            for j in 0..28 {
                for bit in 0..9 {
                    if digit >> bit & 1 == 1 {
                        let at = j * 9 + bit;
                        b[at / 8] |= 1 << (at % 8);
                    }
                }
            }
            edges.push(Scalar::from_bytes_mod_order(b));
        }
        let mut top = [0u8; 32];
        top[31] = 0x10; // 2^252, the top digit's largest bit
        edges.push(Scalar::from_bytes_mod_order(top));
        for v in vectors()["vectors"].as_array().unwrap() {
            let a_bytes: [u8; 32] = B64.decode(v["status"]["worker_metadata"]["worker_id"].as_str().unwrap()).unwrap().try_into().unwrap();
            let a = CompressedEdwardsY(a_bytes).decompress().unwrap();
            let table = fixed_base::FixedBase::new(&a_bytes, &a_bytes).unwrap();
            let mut h = Sha512::new();
            let hashed: Vec<Scalar> = (0..200u32).map(|i| { h.update(i.to_le_bytes()); Scalar::from_hash(h.clone()) }).collect();
            for k in edges.iter().chain(&hashed) {
                assert_eq!(table.mul_compressed(k), (k * a).compress().0, "{}: k = {:?}", v["capture"], k.as_bytes());
                assert_eq!(table.is_target(k), k * a == a);
            }
            assert!(table.is_target(&Scalar::ONE));
        }
    }

    /// Decompression agrees with curve25519-dalek's on canonical encodings (both signs),
    /// and a y with no x (or a non-canonical y) builds no table.
    #[test]
    fn fixed_base_decompression_agrees_with_dalek() {
        let (mut some, mut none) = (0, 0);
        for i in 0..200u32 {
            for sign in [0u8, 0x80] {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&(i * 7919).to_le_bytes());
                b[31] |= sign;
                let ours = fixed_base::FixedBase::new(&b, &b);
                match CompressedEdwardsY(b).decompress() {
                    Some(p) => {
                        some += 1;
                        assert_eq!(ours.unwrap().mul_compressed(&Scalar::from(3u8)), (Scalar::from(3u8) * p).compress().0, "{b:?}");
                    }
                    None => {
                        none += 1;
                        assert!(ours.is_none(), "{b:?}");
                    }
                }
            }
        }
        assert!(some > 50 && none > 50, "{some} {none}");
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xee; // p + 1
        noncanon[31] = 0x7f;
        assert!(fixed_base::FixedBase::new(&noncanon, &noncanon).is_none());
    }

    /// The fast path says what the ordinary verification says: on the signed candidate, on
    /// the window's first and last candidates and some between, and for a tampered
    /// signature (every candidate refused by both).
    #[test]
    fn fast_path_agrees_with_plain_verification() {
        for v in vectors()["vectors"].as_array().unwrap() {
            let status = status_of(v);
            let (prefix, suffix) = prefix_suffix(&status);
            let key = WorkerKey::from_worker_id(status.worker_metadata.worker_id.as_ref().unwrap()).unwrap();
            let good = status.worker_metadata.signature.clone().unwrap();
            let mut raw = B64.decode(&good).unwrap();
            raw[32] ^= 1; // S stays canonical
            let bad = B64.encode(&raw);
            let candidates = cpu_candidates(status.execution_metadata.cpu_seconds);
            let signed = candidates.iter().position(|c| *c == v["exact_cpu_string"].as_str().unwrap()).unwrap();
            let n = candidates.len();
            let picks: Vec<usize> = (0..10).chain(n - 10..n).chain((0..n).step_by(997)).chain([signed]).collect();
            for (sig, honest) in [(&good, true), (&bad, false)] {
                let sig = PreparedSignature::new(&key, sig).unwrap();
                let search = sig.search(prefix.as_bytes()).unwrap();
                let hasher = sig.hasher(prefix.as_bytes());
                for &i in &picks {
                    let c = &candidates[i];
                    let fast = search.matches(&[c.as_bytes(), suffix.as_bytes()]);
                    let plain = sig.verifies_with(&hasher, format!("{c}{suffix}").as_bytes());
                    assert_eq!(fast, plain, "{}: candidate {i} ({c})", v["capture"]);
                    assert_eq!(fast, honest && i == signed, "{}: candidate {i} ({c})", v["capture"]);
                }
            }
        }
    }

    /// A worker whose exact CPU figure is the window's last candidate is still found, after
    /// every other candidate was tried (and refused) by the fast path.
    #[test]
    fn a_signature_at_the_far_edge_of_the_window_verifies() {
        use ed25519_dalek::{Signer, SigningKey};
        let signer = SigningKey::from_bytes(&[9u8; 32]);
        let mut status = status_of(&vectors()["vectors"][0]);
        let candidates = cpu_candidates(status.execution_metadata.cpu_seconds);
        let last = candidates.last().unwrap().clone();
        assert_eq!(last, "0.035");
        let (prefix, suffix) = prefix_suffix(&status);
        let signed = format!("{prefix}{last}{suffix}");
        status.worker_metadata.worker_id = Some(B64.encode(signer.verifying_key().as_bytes()));
        status.worker_metadata.signature = Some(B64.encode(signer.sign(signed.as_bytes()).to_bytes()));
        let check = verify_status_signature(&status, None).unwrap();
        assert_eq!((check.cpu.as_str(), check.signed.as_str(), check.candidates_tried as usize), (last.as_str(), signed.as_str(), candidates.len()));
        // The same signature on a message one byte off is refused after the whole window.
        status.output_files.values_mut().next().unwrap().sha256 = "0".repeat(64);
        assert_eq!(verify_status_signature(&status, None).unwrap_err().code, ErrorCode::VerificationFailed);
    }

    /// A long job's window is small (11 candidates at 100 s or more): searched without the
    /// table, still found, and a wrong message still refused.
    #[test]
    fn a_small_window_is_searched_without_the_table() {
        use ed25519_dalek::{Signer, SigningKey};
        let signer = SigningKey::from_bytes(&[7u8; 32]);
        let mut status = status_of(&vectors()["vectors"][0]);
        status.execution_metadata.cpu_seconds = 123.45;
        let candidates = cpu_candidates(123.45);
        assert!(candidates.len() <= SEARCH_TABLE_MIN_CANDIDATES, "{}", candidates.len());
        let exact = candidates.last().unwrap().clone();
        let (prefix, suffix) = prefix_suffix(&status);
        let signed = format!("{prefix}{exact}{suffix}");
        status.worker_metadata.worker_id = Some(B64.encode(signer.verifying_key().as_bytes()));
        status.worker_metadata.signature = Some(B64.encode(signer.sign(signed.as_bytes()).to_bytes()));
        let check = verify_status_signature(&status, None).unwrap();
        assert_eq!((check.cpu.as_str(), check.candidates_tried as usize), (exact.as_str(), candidates.len()));
        status.output_files.values_mut().next().unwrap().sha256 = "0".repeat(64);
        assert_eq!(verify_status_signature(&status, None).unwrap_err().code, ErrorCode::VerificationFailed);
    }

    #[test]
    fn candidates_cover_the_window() {
        let c = cpu_candidates(0.03);
        assert_eq!(c.len(), 10_001);
        assert_eq!(c[0], "0.03");
        assert!(c.contains(&"0.025".to_string()) && c.contains(&"0.035".to_string()) && c.contains(&"0.029937".to_string()));
        assert_eq!(cpu_candidates(0.0)[0], "0");
    }
}
