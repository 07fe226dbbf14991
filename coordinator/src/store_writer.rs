//! The store's writer thread: how the async side writes without holding a
//! blocking thread per write.
//!
//! Every store call is synchronous (the engines' drivers are), so the async
//! side used to run each on a blocking thread ([`crate::store::blocking`]).
//! For a write to the embedded engine that cost three thread hand-offs: a
//! blocking thread woken for the call, its wait on the group commit's
//! condition variable while another thread committed the batch, and the
//! task woken when it ended. A profile of the flow under load put 15 % of
//! the coordinator's CPU into those hand-offs (docs/bench.md).
//!
//! An engine with a writer thread ([`RequestStore::writer`]) takes the
//! write instead as a [`Job`] on a channel. Its one thread runs the jobs
//! that queued together as one batch (each in its own savepoint: one that
//! fails is undone alone), commits once, and only then answers each job's
//! task: nothing is acknowledged before it is durable, exactly as with
//! group commit, which the thread uses for it. A call on that thread
//! reads inside the batch's transaction, so a job that writes and then
//! reads (a submission that finds its idempotency key taken, an expiry
//! and the record after it) sees every write before it, its own and its
//! batch's, never a state older than the one it will be answered after.
//!
//! An engine without one (PostgreSQL: its writes from several
//! coordinators meet in the server) runs the call on a blocking thread as
//! before.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use ringi_policy::group_commit::GroupCommitError;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::request_store::RequestStore;

/// One write queued for the writer thread: a store call (made on that
/// thread, where the store routes it into the open batch) and the task
/// waiting for its answer.
pub trait Job: Send {
    /// Makes the call (once; a second run does nothing).
    fn run(&mut self);
    /// Whether [`Job::run`] succeeded; false before it ran.
    fn succeeded(&self) -> bool;
    /// Answers the caller once the batch's outcome is known: the call's
    /// own result if the batch was committed, else the batch's error.
    fn answer(self: Box<Self>, batch: std::result::Result<(), GroupCommitError>);
}

/// A typed store call and the channel to its caller.
struct Call<T, F> {
    call: Option<F>,
    result: Option<Result<T>>,
    to: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    fn run(&mut self) {
        if let Some(call) = self.call.take() {
            // A panicking call is that call's failure, not the thread's:
            // its savepoint is undone and the other jobs go on.
            self.result = Some(
                catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|panic| {
                    Err(Error::Internal(format!(
                        "store call panicked: {}",
                        panic_text(&panic)
                    )))
                }),
            );
        }
    }

    fn succeeded(&self) -> bool {
        matches!(self.result, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, batch: std::result::Result<(), GroupCommitError>) {
        let answer = match batch {
            Err(e) => Err(e.into()),
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(Error::Internal("store call never ran".into()))),
        };
        // The caller may have gone (its request cancelled): the write
        // stands all the same.
        let _ = self.to.send(answer);
    }
}

fn panic_text(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The queue to an engine's writer thread, and the thread.
pub struct StoreWriter {
    /// `None` only while dropped. A sender is shared by reference (it is
    /// `Sync`): queueing a write takes no lock.
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the thread `serve` runs on: it gets the jobs until every
    /// sender is gone (the engine dropped), then returns.
    pub fn start(
        name: &str,
        serve: impl FnOnce(mpsc::Receiver<Box<dyn Job>>) + Send + 'static,
    ) -> Result<Self> {
        let (queue, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(jobs))
            .map_err(|e| Error::Store(format!("cannot start the store's writer thread: {e}")))?;
        Ok(StoreWriter {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `job`; false if the thread is gone.
    fn send(&self, job: Box<dyn Job>) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|queue| queue.send(job).is_ok())
    }
}

impl Drop for StoreWriter {
    /// Stops the thread once it has answered every job queued, and waits
    /// for it (its connection closed), unless this runs on that thread (a
    /// job held the engine's last reference).
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// Runs `jobs` (taken from the queue together) as one batch: each job in
/// its own write of `batch` (see `GroupCommit::write_each`), all of them
/// answered after the commit. `in_batch` runs one job with the batch's
/// connection made current for the store's calls.
pub fn run_batch<B>(
    batch: &ringi_policy::group_commit::GroupCommit<B>,
    mut jobs: Vec<Box<dyn Job>>,
    in_batch: impl Fn(&mut B, &mut dyn Job),
) where
    B: ringi_policy::group_commit::Batch,
{
    /// A job's write is undone (its own error), or the batch failed.
    enum NotKept {
        Undone,
        Batch(GroupCommitError),
    }
    impl From<GroupCommitError> for NotKept {
        fn from(e: GroupCommitError) -> Self {
            NotKept::Batch(e)
        }
    }
    let outcomes = batch.write_each(jobs.iter_mut().map(|job| {
        let in_batch = &in_batch;
        move |b: &mut B| {
            in_batch(b, job.as_mut());
            if job.succeeded() {
                Ok(())
            } else {
                Err(NotKept::Undone)
            }
        }
    }));
    let mut outcomes = outcomes.into_iter();
    for job in jobs {
        let batch = match outcomes.next() {
            Some(Err(NotKept::Batch(e))) => Err(e),
            // Kept or undone alone: the batch itself was committed.
            Some(Ok(())) | Some(Err(NotKept::Undone)) => Ok(()),
            None => Err(GroupCommitError::Aborted("the write never ran".into())),
        };
        job.answer(batch);
    }
}

/// The most jobs one batch takes from the queue.
pub const MAX_JOBS: usize = ringi_policy::group_commit::DEFAULT_MAX_BATCH;

/// The writer thread's loop: waits for a job, takes every job queued
/// behind it (up to [`MAX_JOBS`]), runs them as one batch with `batch`;
/// returns when the queue is closed.
pub fn serve(jobs: mpsc::Receiver<Box<dyn Job>>, mut batch: impl FnMut(Vec<Box<dyn Job>>)) {
    while let Ok(first) = jobs.recv() {
        let mut taken = vec![first];
        while taken.len() < MAX_JOBS {
            match jobs.try_recv() {
                Ok(job) => taken.push(job),
                Err(_) => break,
            }
        }
        batch(taken);
    }
}

/// Runs a store call that writes: on `store`'s writer thread when its
/// engine has one (see the module docs), else on a blocking thread
/// ([`crate::store::blocking`]). `call` makes the store calls, as a
/// blocking closure would; on the writer thread they all run in one
/// savepoint of the batch, and the answer comes once it is committed.
pub async fn write<T, F>(store: &Arc<dyn RequestStore>, call: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let Some(writer) = store.writer() else {
        return crate::store::blocking(call).await;
    };
    let (to, answer) = oneshot::channel();
    let job = Box::new(Call {
        call: Some(call),
        result: None,
        to,
    });
    if !writer.send(job) {
        return Err(Error::Store("the store's writer thread has stopped".into()));
    }
    answer.await.unwrap_or_else(|_| {
        Err(Error::Internal(
            "the store's writer thread dropped a write unanswered".into(),
        ))
    })
}
