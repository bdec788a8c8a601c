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

/// A shared flag that wakes everyone waiting on it when set.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Rc<(Cell<bool>, RefCell<Vec<Waker>>)>,
}

impl CancelToken {
    pub fn cancel(&self) {
        self.inner.0.set(true);
        for w in self.inner.1.borrow_mut().drain(..) {
            w.wake();
        }
    }
    pub fn is_cancelled(&self) -> bool {
        self.inner.0.get()
    }
    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        poll_fn(|cx| {
            if self.inner.0.get() {
                Poll::Ready(())
            } else {
                self.inner.1.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
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
