//! One timer for a sequence of waits whose deadline moves forward.
//!
//! A streamed answer waits many times: for the response headers, for the
//! first event, then for every chunk within the stall timeout. Arming a
//! fresh platform timer for each wait costs more than relaying the chunk
//! (on Workers every timer is a `setTimeout`, a `clearTimeout` and a JS
//! closure), so a [`Deadline`] keeps one timer and only moves a number.
//! When the timer fires before the deadline it was armed for was moved,
//! it is re-armed for the remainder: one timer per timeout period instead
//! of one per chunk.
//!
//! The timer may be armed in one task (the request's) and waited on in
//! another (the stream pump's), so the platform's `sleep` future must wake
//! the task that polled it last, as the `Future` contract asks.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use crate::platform::{LocalBoxFuture, Runtime};

pub struct Deadline<P: Runtime> {
    platform: P,
    /// The instant, on the runtime's monotonic clock, after which waits fail.
    at: u64,
    /// The armed timer and the deadline it was armed for.
    timer: Option<(u64, LocalBoxFuture<()>)>,
}

impl<P: Runtime> Deadline<P> {
    pub fn new(platform: P, at: u64) -> Self {
        Deadline {
            platform,
            at,
            timer: None,
        }
    }

    /// Move the deadline. Cheap: no timer is touched until the next wait.
    pub fn set(&mut self, at: u64) {
        self.at = at;
    }

    /// Set the deadline `ms` from now.
    pub fn set_in(&mut self, ms: u64) {
        self.at = self.platform.monotonic_ms().saturating_add(ms);
    }

    pub fn at(&self) -> u64 {
        self.at
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Run `fut` until it completes (`Some`) or the deadline passes (`None`).
    /// The future is polled first, so one that is already ready wins.
    pub async fn run<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            loop {
                match &mut self.timer {
                    // Armed for this deadline or an earlier one: wait on it.
                    Some((armed_for, timer)) if *armed_for <= self.at => {
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        let fired_for = *armed_for;
                        self.timer = None;
                        // The timer is authoritative for the deadline it was
                        // armed for (clocks can lag it by a millisecond);
                        // an earlier one means the deadline moved since.
                        if fired_for == self.at {
                            return Poll::Ready(None);
                        }
                    }
                    // None, or armed for a later deadline than the current.
                    _ => {
                        let now = self.platform.monotonic_ms();
                        if now >= self.at {
                            return Poll::Ready(None);
                        }
                        self.timer = Some((self.at, self.platform.sleep(self.at - now)));
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A clock moved by hand and timers that fire when it passes them;
    /// counts the timers armed.
    #[derive(Clone, Default)]
    struct Clock {
        now: Rc<Cell<u64>>,
        armed: Rc<Cell<u32>>,
        wakers: Rc<RefCell<Vec<std::task::Waker>>>,
    }

    impl Runtime for Clock {
        fn spawn(&self, _fut: LocalBoxFuture<()>) {}
        fn sleep(&self, ms: u64) -> LocalBoxFuture<()> {
            self.armed.set(self.armed.get() + 1);
            let at = self.now.get() + ms;
            let c = self.clone();
            Box::pin(poll_fn(move |cx| {
                if c.now.get() >= at {
                    Poll::Ready(())
                } else {
                    c.wakers.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                }
            }))
        }
        fn now_ms(&self) -> u64 {
            self.now.get()
        }
        fn monotonic_ms(&self) -> u64 {
            self.now.get()
        }
        fn random_u64(&self) -> u64 {
            0
        }
    }

    impl Clock {
        fn advance(&self, ms: u64) {
            self.now.set(self.now.get() + ms);
            for w in self.wakers.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Poll `fut` once; `Some` if it finished.
    fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        match fut.poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    #[test]
    fn ready_future_wins_and_arms_no_timer() {
        let clock = Clock::default();
        let mut d = Deadline::new(clock.clone(), 100);
        let r = futures_executor::block_on(d.run(async { 7 }));
        assert_eq!(r, Some(7));
        assert_eq!(clock.armed.get(), 0);
    }

    /// A wait on `d` that never completes by itself ends exactly `ms` later.
    fn assert_times_out_in(d: &mut Deadline<Clock>, clock: &Clock, ms: u64) {
        let mut fut = pin!(d.run(futures_util::future::pending::<()>()));
        assert!(poll_once(fut.as_mut()).is_none());
        clock.advance(ms - 1);
        assert!(poll_once(fut.as_mut()).is_none());
        clock.advance(1);
        assert_eq!(poll_once(fut.as_mut()), Some(None));
    }

    #[test]
    fn times_out_at_the_deadline() {
        let clock = Clock::default();
        let mut d = Deadline::new(clock.clone(), 100);
        assert_times_out_in(&mut d, &clock, 100);
    }

    #[test]
    fn moving_the_deadline_reuses_one_timer_per_period() {
        let clock = Clock::default();
        let mut d = Deadline::new(clock.clone(), 0);
        // 50 waits, each 10 ms apart, each moving the deadline to now + 100:
        // the timer armed first (for 100) fires once at 100 and is re-armed
        // for the remainder, instead of 50 timers.
        for _ in 0..50 {
            d.set_in(100);
            let (tx, rx) = futures_channel::oneshot::channel::<()>();
            let mut fut = pin!(d.run(rx));
            assert!(poll_once(fut.as_mut()).is_none());
            clock.advance(10);
            tx.send(()).unwrap();
            assert!(matches!(poll_once(fut.as_mut()), Some(Some(Ok(())))));
        }
        assert!(clock.armed.get() <= 6, "armed {} timers", clock.armed.get());
        // And it still times out 100 ms after the last move.
        d.set_in(100);
        assert_times_out_in(&mut d, &clock, 100);
    }

    #[test]
    fn an_earlier_deadline_rearms() {
        let clock = Clock::default();
        let mut d = Deadline::new(clock.clone(), 1000);
        {
            let mut fut = pin!(d.run(futures_util::future::pending::<()>()));
            assert!(poll_once(fut.as_mut()).is_none());
        }
        d.set(20);
        assert_times_out_in(&mut d, &clock, 20);
    }
}
