//! A device-wide memory budget that concurrent jobs share: a stage reserves the device memory
//! it plans to hold before it computes, and waits (first come, first served) while other jobs
//! hold the rest, instead of failing or overcommitting.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::sync::lock;

#[derive(Default)]
pub(crate) struct Budget {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `None`: no limit.
    limit: Option<u64>,
    held: u64,
    /// Waiting reservations in arrival order: (ticket, waker).
    queue: VecDeque<(u64, Option<Waker>)>,
    next_ticket: u64,
}

impl State {
    /// Lets the first waiter check whether it fits now.
    fn wake_first(&mut self) {
        if let Some((_, Some(waker))) = self.queue.front_mut() {
            waker.wake_by_ref();
        }
    }
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn set_limit(&self, limit: Option<u64>) {
        let mut state = self.lock();
        state.limit = limit;
        state.wake_first();
    }

    pub(crate) fn limit(&self) -> Option<u64> {
        self.lock().limit
    }

    pub(crate) fn held(&self) -> u64 {
        self.lock().held
    }
}

/// Device memory held from the device's budget; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Budget").field("limit", &state.limit).field("held", &state.held).finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.held -= self.bytes;
        state.wake_first();
    }
}

/// Waits for `bytes` of `budget`.
pub(crate) fn reserve(budget: Arc<Budget>, bytes: u64) -> impl Future<Output = Result<Reservation>> + Send {
    Reserve { budget, bytes, ticket: None }
}

struct Reserve {
    budget: Arc<Budget>,
    bytes: u64,
    ticket: Option<u64>,
}

impl Future for Reserve {
    type Output = Result<Reservation>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Reservation>> {
        let this = self.get_mut();
        // A stream whose consumer has gone stops waiting for memory it will not use.
        if let Err(e) = super::driver::check_cancelled() {
            this.leave();
            return Poll::Ready(Err(e));
        }
        let mut state = this.budget.lock();
        if let Some(limit) = state.limit && this.bytes > limit {
            drop(state);
            this.leave();
            return Poll::Ready(Err(Error::Device(format!(
                "a stage needs {:.1} MiB of device memory, over the device's memory budget of {:.1} MiB",
                this.bytes as f64 / 1048576.0,
                limit as f64 / 1048576.0
            ))));
        }
        let ticket = match this.ticket {
            Some(ticket) => ticket,
            None => {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.queue.push_back((ticket, None));
                *this.ticket.insert(ticket)
            }
        };
        let first = state.queue.front().is_some_and(|(t, _)| *t == ticket);
        let fits = state.limit.is_none_or(|limit| state.held + this.bytes <= limit);
        if first && fits {
            state.queue.pop_front();
            state.held += this.bytes;
            this.ticket = None;
            // The next one may fit beside this one.
            state.wake_first();
            return Poll::Ready(Ok(Reservation { budget: this.budget.clone(), bytes: this.bytes }));
        }
        if let Some(entry) = state.queue.iter_mut().find(|(t, _)| *t == ticket) {
            entry.1 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Reserve {
    /// Leaves the queue (given up or refused), letting the next waiter try.
    fn leave(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let mut state = self.budget.lock();
            state.queue.retain(|(t, _)| *t != ticket);
            state.wake_first();
        }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        self.leave();
    }
}
