//! Where decisions are computed, so that no request can stall the async runtime: a small request
//! is decided where it arrived, on the runtime's worker (handing it to another thread would cost
//! more than deciding it); a large one (many decisions, or large attributes a condition may
//! iterate over) on a bounded pool of blocking threads, one per core by default. The pool admits
//! at most `threads + queue` requests at once: beyond that a request is refused at once with
//! RESOURCE_EXHAUSTED (HTTP 429) instead of queueing without bound, and a request still queued
//! or deciding at its deadline is answered DEADLINE_EXCEEDED then. Health checks, small requests
//! and signals stay on the runtime's workers, which the pool never occupies.
//!
//! The pool is tokio's blocking pool (`spawn_blocking`) behind two semaphores: `admitted`
//! (running or queued) refuses without waiting, `running` (one permit per thread) is waited for.
//! A request answered DEADLINE_EXCEEDED while deciding keeps its permits until its thread notices
//! the deadline (the engine looks at the clock before every condition), so the pool's accounting
//! never admits more work than it has threads for.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value as Json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Code;

use super::validate::Refusal;
use crate::telemetry::OVERLOADED_TOTAL;

/// A request whose weight ([`check_weight`], [`plan_weight`]) is at most this is decided inline.
/// A plain Check (one resource, a few actions and attributes) weighs about ten; this many
/// attribute values times decisions take well under a millisecond with the bundled policies.
pub const INLINE_WEIGHT: usize = 2048;

/// How the evaluation pool is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Requests deciding at once; 0 = one per core.
    pub threads: usize,
    /// Requests waiting for a thread beyond those; 0 = none (refused when every thread is busy).
    pub queue: usize,
    /// Requests weighing at most this are decided inline.
    pub inline_weight: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            threads: 0,
            queue: 16,
            inline_weight: INLINE_WEIGHT,
        }
    }
}

/// The evaluation pool.
pub struct Pool {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    threads: usize,
    capacity: usize,
    inline_weight: usize,
}

impl Pool {
    pub fn new(options: PoolOptions) -> Pool {
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let capacity = threads + options.queue;
        Pool {
            admitted: Arc::new(Semaphore::new(capacity)),
            running: Arc::new(Semaphore::new(threads)),
            threads,
            capacity,
            inline_weight: options.inline_weight,
        }
    }

    /// Whether a request of this weight is decided where it arrived.
    pub fn inline(&self, weight: usize) -> bool {
        weight <= self.inline_weight
    }

    /// Runs `work` on a pool thread and waits for it, at most until `deadline`. Refused with
    /// RESOURCE_EXHAUSTED when the pool is full, DEADLINE_EXCEEDED when the deadline passes
    /// first (`late` says how, for the message).
    pub async fn run<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        work: impl FnOnce() -> T + Send + 'static,
        late: impl FnOnce(&str) -> Refusal,
    ) -> Result<T, Refusal> {
        let admitted = Arc::clone(&self.admitted).try_acquire_owned().map_err(|_| {
            metrics::counter!(OVERLOADED_TOTAL).increment(1);
            Refusal::new(
                Code::ResourceExhausted,
                format!(
                    "overloaded: {} large requests are deciding or waiting ({} threads); retry later",
                    self.capacity, self.threads
                ),
            )
        })?;
        let running = Arc::clone(&self.running).acquire_owned();
        let running: OwnedSemaphorePermit = match within(deadline, running).await {
            Some(permit) => permit.expect("the semaphore is never closed"),
            None => return Err(late("while waiting for an evaluation thread")),
        };
        let task = tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            work()
        });
        // The work looks at the same deadline (the engine before every condition) and answers
        // how far it got; only one stuck in a single long step is cut off here.
        match within(deadline.map(|d| d + LATE_GRACE), task).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(e)) => Err(Refusal::new(
                Code::Internal,
                format!("evaluation failed: {e}"),
            )),
            None => Err(late("while deciding")),
        }
    }
}

/// How long past the deadline a request's work is waited for before it is answered without it.
const LATE_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// `future`'s output, or `None` if `deadline` passes first.
async fn within<F: std::future::Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        None => Some(future.await),
        Some(deadline) => tokio::time::timeout_at(deadline.into(), future).await.ok(),
    }
}

/// Scalars and containers in a JSON value: what a condition could iterate over.
pub fn values(value: &Json) -> usize {
    match value {
        Json::Array(items) => 1 + items.iter().map(values).sum::<usize>(),
        Json::Object(members) => 1 + members.values().map(values).sum::<usize>(),
        _ => 1,
    }
}

/// What deciding a Check may cost, in attribute values times decisions: each decision may read
/// its resource's attributes, the principal's and the context.
pub fn check_weight(request: &crate::request::CheckRequest) -> usize {
    let shared = values(&request.principal.attr) + values(&request.context);
    request
        .resources
        .iter()
        .map(|c| {
            c.actions
                .len()
                .saturating_mul(values(&c.resource.attr).saturating_add(shared))
        })
        .fold(0usize, usize::saturating_add)
}

/// What planning a PlanFilter may cost: the attribute values partial evaluation may unroll.
pub fn plan_weight(request: &crate::plan::PlanRequest) -> usize {
    values(&request.principal.attr) + values(&request.context) + values(&request.known_attr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn weights_count_values_times_decisions() {
        assert_eq!(values(&json!("x")), 1);
        assert_eq!(values(&json!({"a": [1, 2], "b": {"c": null}})), 6);
        let body: crate::server::json::CheckBody = serde_json::from_value(json!({
            "principal": {"attr": {"x": [1, 2, 3]}},
            "resources": [{"resource": {"kind": "K", "attr": {"a": 1}}, "actions": ["r", "w"]}],
        }))
        .unwrap();
        let request = body.into_call().request;
        // principal attr 5 + context (null) 1 = 6 shared; resource attr 2; two actions.
        assert_eq!(check_weight(&request), 2 * (2 + 6));
    }

    #[tokio::test]
    async fn a_full_pool_refuses_and_a_late_request_is_answered_at_its_deadline() {
        let pool = Arc::new(Pool::new(PoolOptions {
            threads: 1,
            queue: 1,
            inline_weight: 0,
        }));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, is_started) = tokio::sync::oneshot::channel();
        let busy = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.run(
                    None,
                    move || {
                        let _ = started.send(());
                        wait.recv().unwrap();
                        "done"
                    },
                    |_| Refusal::invalid("late"),
                )
                .await
            })
        };
        is_started.await.unwrap();
        // The thread is busy: a second request queues, and is answered at its deadline.
        let deadline = Instant::now() + Duration::from_millis(50);
        let queued = pool.run(
            Some(deadline),
            || "never",
            |how| Refusal::new(Code::DeadlineExceeded, how),
        );
        let third = {
            let pool = Arc::clone(&pool);
            async move {
                // Admitted are the busy one and the queued one: the third is refused at once.
                tokio::task::yield_now().await;
                pool.run(None, || "never", |_| Refusal::invalid("late"))
                    .await
            }
        };
        let (queued, third) = tokio::join!(queued, third);
        assert_eq!(third.unwrap_err().code, Code::ResourceExhausted);
        let queued = queued.unwrap_err();
        assert_eq!(
            (queued.code, queued.message.as_str()),
            (
                Code::DeadlineExceeded,
                "while waiting for an evaluation thread"
            )
        );
        assert!(Instant::now() >= deadline);
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap().unwrap(), "done");
        // Free again.
        assert_eq!(
            pool.run(None, || 7, |_| Refusal::invalid("late"))
                .await
                .unwrap(),
            7
        );
    }
}
