//! Small async helpers that need no runtime: racing two futures, a cancel token.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Which of two futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Poll both; return the first to finish (the other is dropped).
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Poll both to the end; both outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// A shared flag that wakes everyone waiting on it when set.
///
/// Each pending [`CancelToken::cancelled`] future owns at most one waker slot: a repoll
/// replaces its waker in place and dropping the future frees the slot, so a long job
/// whose wait is polled (or re-created) thousands of times keeps the list bounded by
/// the number of live waits.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Rc<TokenState>,
}

#[derive(Default)]
struct TokenState {
    cancelled: Cell<bool>,
    next_slot: Cell<u64>,
    wakers: RefCell<std::collections::BTreeMap<u64, Waker>>,
}

impl CancelToken {
    pub fn cancel(&self) {
        self.inner.cancelled.set(true);
        let wakers = std::mem::take(&mut *self.inner.wakers.borrow_mut());
        for (_, w) in wakers {
            w.wake();
        }
    }
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.get()
    }
    /// How many wakers are registered: one per live, pending wait.
    #[cfg(test)]
    pub fn waiters(&self) -> usize {
        self.inner.wakers.borrow().len()
    }
    /// Resolves once cancelled.
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled { token: self, slot: None }
    }
}

/// The future of [`CancelToken::cancelled`].
pub struct Cancelled<'a> {
    token: &'a CancelToken,
    slot: Option<u64>,
}

impl Future for Cancelled<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let state = &self.token.inner;
        if state.cancelled.get() {
            if let Some(slot) = self.slot.take() {
                state.wakers.borrow_mut().remove(&slot);
            }
            return Poll::Ready(());
        }
        let slot = match self.slot {
            Some(s) => s,
            None => {
                let s = state.next_slot.get();
                state.next_slot.set(s + 1);
                self.slot = Some(s);
                s
            }
        };
        let mut wakers = state.wakers.borrow_mut();
        match wakers.get_mut(&slot) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => {
                wakers.insert(slot, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.token.inner.wakers.borrow_mut().remove(&slot);
        }
    }
}

/// A set of boxed futures; `next()` resolves with the first to finish (index, output).
pub struct Race<'a, T> {
    futures: Vec<Option<std::pin::Pin<Box<dyn Future<Output = T> + 'a>>>>,
}

impl<'a, T> Default for Race<'a, T> {
    fn default() -> Self {
        Race { futures: Vec::new() }
    }
}

impl<'a, T> Race<'a, T> {
    /// Add a future; returns its index.
    pub fn push(&mut self, f: impl Future<Output = T> + 'a) -> usize {
        self.futures.push(Some(Box::pin(f)));
        self.futures.len() - 1
    }
    /// How many are still running.
    pub fn pending(&self) -> usize {
        self.futures.iter().filter(|f| f.is_some()).count()
    }
    /// The next to finish, or `None` when none is left.
    pub async fn next(&mut self) -> Option<(usize, T)> {
        if self.pending() == 0 {
            return None;
        }
        poll_fn(|cx| {
            for (i, slot) in self.futures.iter_mut().enumerate() {
                if let Some(f) = slot {
                    if let Poll::Ready(v) = f.as_mut().poll(cx) {
                        *slot = None;
                        return Poll::Ready(Some((i, v)));
                    }
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Whether a job-relative path matches an `outputs()` pattern, exactly as the reference
/// worker decides: `*` matches any run of bytes, `/` included, so `*`, `*.ext`,
/// `prefix*`, `dir/*` and exact names all work; nothing else is special.
pub fn output_pattern_matches(pattern: &str, path: &str) -> bool {
    let (pat, s) = (pattern.as_bytes(), path.as_bytes());
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Whether `path` is selected by `patterns` (no patterns: every path).
pub fn selected_by(patterns: &[String], path: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| output_pattern_matches(p, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn cancel_token_does_not_accumulate_wakers() {
        let t = CancelToken::default();
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        // One future polled many times (a long wait woken by other events) holds one slot.
        let mut f = Box::pin(t.cancelled());
        for _ in 0..1000 {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(t.waiters(), 1);
        drop(f);
        assert_eq!(t.waiters(), 0, "a dropped wait leaves nothing behind");
        // Many short-lived waits (one per poll loop iteration, race() losers) leave nothing.
        for _ in 0..1000 {
            let mut f = Box::pin(t.cancelled());
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(t.waiters(), 0);
        // Cancelling still wakes a live waiter.
        let mut f = Box::pin(t.cancelled());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        t.cancel();
        assert!(f.as_mut().poll(&mut cx).is_ready());
        assert_eq!(t.waiters(), 0);
    }

    #[test]
    fn output_patterns_match_like_the_reference() {
        let m = output_pattern_matches;
        assert!(m("*", "a/b.txt"));
        assert!(m("*.txt", "output.txt"));
        assert!(m("*.txt", "dir/output.txt"), "'*' crosses '/', as on the reference");
        assert!(!m("*.txt", "main.py"));
        assert!(!m("*.txt", "output.txt.bak"));
        assert!(m("results/*", "results/Zeta.json"));
        assert!(m("results/*", "results/deep/x"));
        assert!(!m("results/*", "data/input.csv"));
        assert!(!m("results/*", "results"));
        assert!(m("out*", "output.txt"));
        assert!(!m("out*", "in/out.txt"));
        assert!(m("main.py", "main.py"));
        assert!(!m("main.py", "main.pyc"));
        assert!(!m("main.py", "src/main.py"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY"));
        assert!(selected_by(&[], "anything"));
        assert!(!selected_by(&["*.csv".into()], "x.txt"));
    }
}

/// A job-relative path must be relative, `/`-separated, without `..` or empty parts.
pub fn check_relative_path(path: &str) -> crate::error::Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || (path.len() > 1 && path.as_bytes()[1] == b':')
        || path.split('/').any(|p| p.is_empty() || p == ".." || p == ".");
    if bad {
        return Err(crate::error::Error::new(
            crate::error::ErrorCode::Io,
            format!("refusing path {path:?}: job paths must be relative, without '..', '.', empty parts or backslashes"),
        ));
    }
    Ok(())
}
