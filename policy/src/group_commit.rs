//! Group commit: many writers, one durable commit.
//!
//! A durable commit costs an fsync (0.4 to 3.5 ms on this project's shared
//! machines, depending on the disk's load); everything else a write does
//! costs microseconds. When several threads write at once, [`GroupCommit`]
//! puts their writes into one transaction and commits it once, so they
//! share that fsync. The coordinator's store, 2000 inserts from 64 writers
//! (debug build): ~300/s with a commit each and ~5,100/s grouped when an
//! fsync cost ~3.4 ms; ~2,400/s and ~4,700/s when it cost ~0.4 ms.
//!
//! How, without a writer thread: every writer runs its own write, on its own
//! thread, while it holds the store (so a write may borrow whatever its
//! caller has, and needs not be `Send`).
//! - The first writer to find no batch open opens one ([`Batch::begin`]).
//! - Each write is fenced by a mark ([`Batch::mark`], a savepoint): a write
//!   that fails (or panics) is undone alone ([`Batch::settle`]) and its
//!   caller gets its own error; its neighbours' writes stay in the batch.
//!   A write sees the writes before it in its batch, as it would have seen
//!   them committed: the checks a write makes (a state it expects, a key
//!   that must be free, a cap's usage) still see every earlier write.
//! - A writer that finishes its write while other writers are already
//!   waiting for the store leaves the commit to them; the last one (or the
//!   one that fills the batch to [`GroupCommit::with_max_batch`]) is the
//!   batch's committer ([`Batch::commit`]). So under no contention a write
//!   commits at once, as before; under contention the writers that queued
//!   during one commit share the next.
//! - Every writer of a batch, the failed ones too, is answered only after
//!   the batch's commit returned: nothing is acknowledged before it is
//!   durable, and no refusal is based on a neighbour's write that did not
//!   become durable. If the commit (or the batch's bookkeeping) fails,
//!   every writer of the batch gets that error and nothing of the batch is
//!   kept.
//!
//! Commits happen in the order the writes ran, and a batch is committed
//! before the next one opens: a write acknowledged to one caller is in the
//! store before any write that starts after that answer.
//!
//! The store is anything implementing [`Batch`]; [`sqlite::SqliteBatch`]
//! (feature `sqlite`) is an SQLite connection, the coordinator's store and
//! each signer's ledger.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// A store that can hold several writes in one transaction.
///
/// Errors are text: they reach every writer of a batch, so they are
/// cloned, and each caller wraps them into its own error type. The methods
/// must not panic (a panicking commit would leave its batch's writers
/// unanswered; [`GroupCommit`] turns one into a failed commit, but cannot
/// know what state the store is left in).
pub trait Batch {
    /// Opens a transaction for a batch of writes.
    fn begin(&mut self) -> Result<(), String>;
    /// Marks where one write starts (a savepoint).
    fn mark(&mut self) -> Result<(), String>;
    /// Ends the write begun at the last mark: keeps it, or undoes it alone.
    fn settle(&mut self, keep: bool) -> Result<(), String>;
    /// Commits the batch durably; returns only once it is.
    fn commit(&mut self) -> Result<(), String>;
    /// Abandons the open batch, keeping nothing of it (after a failed
    /// commit or a failed mark).
    fn abort(&mut self);
}

/// Why a write was not kept, though it may have succeeded on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupCommitError {
    #[error("could not open a write transaction: {0}")]
    Begin(String),
    /// The batch could not be kept together (a savepoint failed): nothing
    /// in it was written.
    #[error("write batch abandoned, nothing in it was written: {0}")]
    Aborted(String),
    #[error("commit failed, nothing in the batch was written: {0}")]
    Commit(String),
}

/// Counters of what was written, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes run in a batch (kept or undone).
    pub writes: u64,
    /// Commits attempted (each one fsync).
    pub commits: u64,
}

/// The most writes one commit holds by default: bounds how long the first
/// writer of a batch waits for the others.
pub const DEFAULT_MAX_BATCH: usize = 64;

type Outcome = Arc<OnceLock<Result<(), GroupCommitError>>>;

struct Open {
    outcome: Outcome,
    writes: usize,
}

struct State<B> {
    batch: B,
    open: Option<Open>,
}

/// Writers sharing commits on one store (see the module docs).
pub struct GroupCommit<B> {
    state: Mutex<State<B>>,
    /// Signalled when a batch's outcome is known.
    settled: Condvar,
    /// Writers that want the store and do not hold it yet.
    arriving: AtomicUsize,
    max_batch: usize,
    writes: AtomicU64,
    commits: AtomicU64,
}

impl<B: Batch> GroupCommit<B> {
    pub fn new(batch: B) -> Self {
        GroupCommit {
            state: Mutex::new(State { batch, open: None }),
            settled: Condvar::new(),
            arriving: AtomicUsize::new(0),
            max_batch: DEFAULT_MAX_BATCH,
            writes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    /// At most `max` writes per commit (1: every write commits alone, as
    /// without group commit).
    pub fn with_max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    pub fn stats(&self) -> Stats {
        Stats {
            writes: self.writes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    /// Writers waiting for the store right now (tests use it to know that
    /// writers have queued).
    pub fn waiting(&self) -> usize {
        self.arriving.load(Ordering::SeqCst)
    }

    /// Runs `write` in a batch and returns its result once the batch is
    /// durably committed. An `Err` from `write` undoes its changes only
    /// (its caller gets that error, after the commit); an error of the
    /// batch itself reaches every writer in it. `write` must not open or
    /// end transactions of its own, nor call this store (it holds it).
    pub fn write<T, E: From<GroupCommitError>>(
        &self,
        write: impl FnOnce(&mut B) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_each(std::iter::once(write))
            .pop()
            .unwrap_or_else(|| Err(GroupCommitError::Aborted("no write ran".into()).into()))
    }

    /// Runs every write of `writes`, in order, in one batch (each in its
    /// own savepoint, as [`GroupCommit::write`] runs one), and returns
    /// their results, in the same order, once the batch is durably
    /// committed: a caller with several writes at hand (a signer's batch
    /// of Signs) shares one commit among them without a thread per write.
    /// Each write is kept or undone alone, and sees the ones before it. The
    /// batch holds them all, even past [`GroupCommit::with_max_batch`].
    pub fn write_each<T, E: From<GroupCommitError>, F: FnOnce(&mut B) -> Result<T, E>>(
        &self,
        writes: impl IntoIterator<Item = F>,
    ) -> Vec<Result<T, E>> {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        self.arriving.fetch_sub(1, Ordering::SeqCst);
        let outcome = match &state.open {
            Some(open) => open.outcome.clone(),
            None => {
                if let Err(e) = state.batch.begin() {
                    return writes
                        .into_iter()
                        .map(|_| Err(GroupCommitError::Begin(e.clone()).into()))
                        .collect();
                }
                let outcome = Outcome::default();
                state.open = Some(Open {
                    outcome: outcome.clone(),
                    writes: 0,
                });
                outcome
            }
        };
        let mut results = Vec::new();
        for write in writes {
            self.writes.fetch_add(1, Ordering::Relaxed);
            // A batch aborted by an earlier write's failed savepoint keeps
            // nothing more: the rest are not run.
            if state.open.is_none() {
                results.push(None);
                continue;
            }
            let result = match state.batch.mark() {
                Err(e) => {
                    self.abort(&mut state, e);
                    None
                }
                Ok(()) => {
                    let result = catch_unwind(AssertUnwindSafe(|| write(&mut state.batch)));
                    match state.batch.settle(matches!(result, Ok(Ok(_)))) {
                        Err(e) => self.abort(&mut state, e),
                        Ok(()) => {
                            if let Some(open) = state.open.as_mut() {
                                open.writes += 1;
                            }
                        }
                    }
                    Some(result)
                }
            };
            results.push(result);
        }
        // Still open with these writes in it: commit, unless a writer that
        // will join this batch is already waiting (it, or the last of
        // them, commits).
        let commit_now = state.open.as_ref().is_some_and(|open| {
            self.arriving.load(Ordering::SeqCst) == 0 || open.writes >= self.max_batch
        });
        if commit_now {
            self.commit(&mut state);
        }
        let verdict = loop {
            if let Some(verdict) = outcome.get() {
                break verdict.clone();
            }
            state = self.settled.wait(state).unwrap_or_else(|p| p.into_inner());
        };
        drop(state);
        let mut answers = Vec::with_capacity(results.len());
        let mut panicked = None;
        for result in results {
            answers.push(match (result, &verdict) {
                (Some(Err(panic)), _) => {
                    panicked.get_or_insert(panic);
                    Err(GroupCommitError::Aborted("the write panicked".into()).into())
                }
                (_, Err(e)) => Err(e.clone().into()),
                (Some(Ok(result)), Ok(())) => result,
                // A failed mark aborts the batch: its verdict is an error.
                (None, Ok(())) => Err(GroupCommitError::Aborted("no savepoint".into()).into()),
            });
        }
        if let Some(panic) = panicked {
            resume_unwind(panic);
        }
        answers
    }

    /// Runs `read` on the store now, between writes. It may see the writes
    /// of an open batch, not yet committed: use it only where that is
    /// harmless (tests; a reader that may over-count). Readers of committed
    /// data use a connection of their own.
    pub fn peek<T>(&self, read: impl FnOnce(&mut B) -> T) -> T {
        read(&mut self.lock().batch)
    }

    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(&self, state: &mut State<B>) {
        let Some(open) = state.open.take() else {
            return;
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        let committed = catch_unwind(AssertUnwindSafe(|| state.batch.commit()))
            .unwrap_or_else(|_| Err("the commit panicked".into()));
        let verdict = committed.map_err(|e| {
            state.batch.abort();
            GroupCommitError::Commit(e)
        });
        let _ = open.outcome.set(verdict);
        self.settled.notify_all();
    }

    fn abort(&self, state: &mut State<B>, reason: String) {
        state.batch.abort();
        if let Some(open) = state.open.take() {
            let _ = open.outcome.set(Err(GroupCommitError::Aborted(reason)));
        }
        self.settled.notify_all();
    }
}

/// [`Batch`] over an SQLite connection: `BEGIN IMMEDIATE` (the write lock
/// before the first read, so a write's checks hold until the commit, also
/// against other processes), a `SAVEPOINT` per write, one `COMMIT` (durable
/// when the connection runs `synchronous = FULL`).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    use rusqlite::Connection;

    pub struct SqliteBatch(pub Connection);

    impl std::ops::Deref for SqliteBatch {
        type Target = Connection;
        fn deref(&self) -> &Connection {
            &self.0
        }
    }

    /// One statement, kept prepared: a batch runs these few texts
    /// (BEGIN, SAVEPOINT, RELEASE, COMMIT) for every write, and parsing
    /// them again each time showed in the coordinator's profile.
    fn run(conn: &Connection, sql: &str) -> Result<(), String> {
        conn.prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    impl super::Batch for SqliteBatch {
        fn begin(&mut self) -> Result<(), String> {
            run(&self.0, "BEGIN IMMEDIATE")
        }
        fn mark(&mut self) -> Result<(), String> {
            run(&self.0, "SAVEPOINT one_write")
        }
        fn settle(&mut self, keep: bool) -> Result<(), String> {
            // Some errors (disk full, I/O) make SQLite roll the whole
            // transaction back: then the savepoint is gone, this fails,
            // and the batch is abandoned, its earlier writes with it.
            if keep {
                run(&self.0, "RELEASE one_write")
            } else {
                self.0
                    .execute_batch("ROLLBACK TO one_write; RELEASE one_write")
                    .map_err(|e| e.to_string())
            }
        }
        fn commit(&mut self) -> Result<(), String> {
            run(&self.0, "COMMIT")
        }
        fn abort(&mut self) {
            if !self.0.is_autocommit() {
                let _ = self.0.execute_batch("ROLLBACK");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A store of numbers: a batch's writes become `kept` at its commit.
    /// Its commit can be held at a gate, to see who waits for it.
    #[derive(Default)]
    struct Numbers {
        kept: Vec<u32>,
        batch: Vec<u32>,
        mark: usize,
        open: bool,
        fail_commit: bool,
        /// What a commit costs (an fsync's worth, to make writers queue).
        commit_delay: Option<std::time::Duration>,
        gate: Option<mpsc::Receiver<()>>,
        at_gate: Option<mpsc::Sender<()>>,
    }

    impl Batch for Numbers {
        fn begin(&mut self) -> Result<(), String> {
            assert!(!self.open, "one batch at a time");
            self.open = true;
            Ok(())
        }
        fn mark(&mut self) -> Result<(), String> {
            self.mark = self.batch.len();
            Ok(())
        }
        fn settle(&mut self, keep: bool) -> Result<(), String> {
            if !keep {
                self.batch.truncate(self.mark);
            }
            Ok(())
        }
        fn commit(&mut self) -> Result<(), String> {
            if let (Some(at), Some(gate)) = (&self.at_gate, &self.gate) {
                at.send(()).unwrap();
                gate.recv().unwrap();
            }
            if let Some(delay) = self.commit_delay {
                std::thread::sleep(delay);
            }
            self.open = false;
            if self.fail_commit {
                self.batch.clear();
                return Err("disk on fire".into());
            }
            self.kept.append(&mut self.batch);
            Ok(())
        }
        fn abort(&mut self) {
            self.open = false;
            self.batch.clear();
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Refused {
        Odd(u32),
        Batch(GroupCommitError),
    }

    impl From<GroupCommitError> for Refused {
        fn from(e: GroupCommitError) -> Self {
            Refused::Batch(e)
        }
    }

    /// Adds `n`, refusing odd numbers after writing them (the write must be
    /// undone, not just reported).
    fn add(store: &mut Numbers, n: u32) -> Result<u32, Refused> {
        store.batch.push(n);
        if n % 2 == 1 {
            return Err(Refused::Odd(n));
        }
        Ok(n)
    }

    /// Waits (without a time limit that could fail the test) until `n`
    /// writers queue for the store.
    fn until_waiting<B: Batch>(store: &GroupCommit<B>, n: usize) {
        while store.waiting() < n {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_lone_write_commits_at_once() {
        let store = GroupCommit::new(Numbers::default());
        assert_eq!(store.write(|s| add(s, 2)), Ok(2));
        assert_eq!(store.write(|s| add(s, 4)), Ok(4));
        assert_eq!(
            store.stats(),
            Stats {
                writes: 2,
                commits: 2
            }
        );
        assert_eq!(store.peek(|s| s.kept.clone()), [2, 4]);
    }

    /// One caller's several writes: one commit for all, each kept or
    /// undone alone, answered in order; a failed commit fails them all.
    #[test]
    fn a_callers_writes_share_one_commit_and_a_failure_stays_its_own() {
        let store = GroupCommit::new(Numbers::default());
        let answers = store.write_each([2u32, 3, 4].map(|n| move |s: &mut Numbers| add(s, n)));
        assert_eq!(answers, [Ok(2), Err(Refused::Odd(3)), Ok(4)]);
        assert_eq!(
            store.stats(),
            Stats {
                writes: 3,
                commits: 1
            }
        );
        assert_eq!(store.peek(|s| s.kept.clone()), [2, 4]);
        store.peek(|s| s.fail_commit = true);
        let answers = store.write_each([6u32, 8].map(|n| move |s: &mut Numbers| add(s, n)));
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(Refused::Batch(GroupCommitError::Commit(_))))),
            "{answers:?}"
        );
        assert_eq!(store.peek(|s| s.kept.clone()), [2, 4]);
    }

    /// Writers that queue while the store is busy share one commit; the
    /// one that failed is undone alone and told why; every answer comes
    /// after the commit.
    #[test]
    fn queued_writers_share_one_commit_and_a_failure_stays_its_own() {
        let store = GroupCommit::new(Numbers::default());
        let answers = std::thread::scope(|scope| {
            let handles = store.peek(|_| {
                // Holding the store: these writers can only queue.
                let handles: Vec<_> = (0..8u32)
                    .map(|n| {
                        let store = &store;
                        scope.spawn(move || store.write(|s| add(s, n)))
                    })
                    .collect();
                until_waiting(&store, 8);
                handles
            });
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        for (n, answer) in (0..8u32).zip(answers) {
            if n % 2 == 1 {
                assert_eq!(answer, Err(Refused::Odd(n)));
            } else {
                assert_eq!(answer, Ok(n));
            }
        }
        assert_eq!(
            store.stats(),
            Stats {
                writes: 8,
                commits: 1
            }
        );
        let mut kept = store.peek(|s| s.kept.clone());
        kept.sort();
        assert_eq!(kept, [0, 2, 4, 6]);
    }

    /// While a commit is under way, nobody in its batch has an answer;
    /// writers arriving meanwhile form the next batch, committed once.
    #[test]
    fn answers_wait_for_the_commit() {
        let (open_gate, gate) = mpsc::channel();
        let (at_gate, arrived) = mpsc::channel();
        let store = GroupCommit::new(Numbers {
            gate: Some(gate),
            at_gate: Some(at_gate),
            ..Default::default()
        });
        let answered = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let write = |n: u32| {
                let (store, answered) = (&store, &answered);
                scope.spawn(move || {
                    let answer = store.write(|s| add(s, n));
                    answered.lock().unwrap().push(n);
                    answer
                })
            };
            let first = write(0);
            arrived.recv().unwrap(); // the first commit is at the gate
            let next: Vec<_> = (1..=6).map(|n| write(n * 2)).collect();
            until_waiting(&store, 6);
            assert!(
                answered.lock().unwrap().is_empty(),
                "nothing before the commit"
            );
            open_gate.send(()).unwrap();
            arrived.recv().unwrap(); // the second batch's commit is at the gate
            assert!(
                answered.lock().unwrap().iter().all(|&n| n == 0),
                "none of the second batch before its commit"
            );
            open_gate.send(()).unwrap();
            assert_eq!(first.join().unwrap(), Ok(0));
            for h in next {
                assert!(h.join().unwrap().is_ok());
            }
        });
        assert_eq!(store.stats().commits, 2);
        assert_eq!(store.peek(|s| s.kept.len()), 7);
    }

    /// A failed commit reaches every writer of the batch, even one whose
    /// own write was refused: its refusal may rest on a neighbour's write
    /// that was never kept.
    #[test]
    fn a_failed_commit_fails_the_whole_batch() {
        let store = GroupCommit::new(Numbers {
            fail_commit: true,
            ..Default::default()
        });
        let answers: Vec<_> = std::thread::scope(|scope| {
            let handles = store.peek(|_| {
                let handles: Vec<_> = [2u32, 3]
                    .into_iter()
                    .map(|n| {
                        let store = &store;
                        scope.spawn(move || store.write(|s| add(s, n)))
                    })
                    .collect();
                until_waiting(&store, 2);
                handles
            });
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for answer in answers {
            assert!(
                matches!(answer, Err(Refused::Batch(GroupCommitError::Commit(ref e))) if e == "disk on fire"),
                "{answer:?}"
            );
        }
        assert_eq!(store.stats().commits, 1);
        assert!(store.peek(|s| s.kept.is_empty()));
    }

    /// A write that panics is undone alone; the others in its batch are
    /// committed and answered; the panic reaches its own caller.
    #[test]
    fn a_panicking_write_is_undone_alone() {
        let store = GroupCommit::new(Numbers::default());
        std::thread::scope(|scope| {
            let s = &store;
            let (panicking, other) = store.peek(|_| {
                let panicking = scope.spawn(move || {
                    s.write(|b: &mut Numbers| -> Result<u32, Refused> {
                        b.batch.push(100);
                        panic!("a bug in one write")
                    })
                });
                let other = scope.spawn(move || s.write(|b| add(b, 8)));
                until_waiting(s, 2);
                (panicking, other)
            });
            assert!(panicking.join().is_err());
            assert_eq!(other.join().unwrap(), Ok(8));
        });
        assert_eq!(store.peek(|s| s.kept.clone()), [8]);
        assert_eq!(store.stats().commits, 1);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_writes() {
        let store = GroupCommit::new(Numbers::default()).with_max_batch(3);
        std::thread::scope(|scope| {
            let handles = store.peek(|_| {
                let handles: Vec<_> = (0..7u32)
                    .map(|n| {
                        let store = &store;
                        scope.spawn(move || store.write(|s| add(s, n * 2)))
                    })
                    .collect();
                until_waiting(&store, 7);
                handles
            });
            for h in handles {
                assert!(h.join().unwrap().is_ok());
            }
        });
        // 3 + 3 + 1.
        assert_eq!(store.stats().commits, 3);
    }

    /// 64 threads writing at once, a commit costing a millisecond: every
    /// `Ok` answer is already kept when its writer reads the store right
    /// after it (answered after the commit, never before), every refused
    /// write is gone, and the writers shared commits.
    #[test]
    fn many_writers_are_each_answered_after_their_commit() {
        let store = GroupCommit::new(Numbers {
            commit_delay: Some(std::time::Duration::from_millis(1)),
            ..Default::default()
        });
        let (threads, each) = (64u32, 20u32);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..each {
                        let n = t * each + i;
                        match store.write(|s| add(s, n)) {
                            Ok(kept) => {
                                assert_eq!(kept, n);
                                assert!(
                                    store.peek(|s| s.kept.contains(&n)),
                                    "{n} answered before its commit"
                                );
                            }
                            Err(e) => assert_eq!(e, Refused::Odd(n)),
                        }
                    }
                });
            }
        });
        let mut kept = store.peek(|s| s.kept.clone());
        kept.sort();
        let even: Vec<u32> = (0..threads * each).filter(|n| n % 2 == 0).collect();
        assert_eq!(kept, even);
        let stats = store.stats();
        assert_eq!(stats.writes, u64::from(threads * each));
        assert!(
            stats.commits < stats.writes,
            "no commit was shared: {stats:?}"
        );
    }

    /// A write sees the writes before it in its batch (it finds its own
    /// position after them), a refused write leaves no gap, and the store
    /// keeps the writes in the order they ran.
    #[test]
    fn writes_see_their_batch_and_are_kept_in_the_order_they_ran() {
        let store = GroupCommit::new(Numbers {
            commit_delay: Some(std::time::Duration::from_millis(1)),
            ..Default::default()
        });
        let positions = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..16u32 {
                let (store, positions) = (&store, &positions);
                scope.spawn(move || {
                    for i in 0..10u32 {
                        let n = t * 10 + i;
                        let at = store.write(|s| {
                            let at = s.kept.len() + s.batch.len();
                            add(s, n).map(|_| at)
                        });
                        if let Ok(at) = at {
                            positions.lock().unwrap().push((at, n));
                        }
                    }
                });
            }
        });
        let kept = store.peek(|s| s.kept.clone());
        let positions = positions.into_inner().unwrap();
        assert_eq!(positions.len(), kept.len());
        for (at, n) in positions {
            assert_eq!(kept[at], n, "{n} was written at {at}");
        }
    }
}

/// The SQLite batch on a real database file.
#[cfg(all(test, feature = "sqlite"))]
mod sqlite_tests {
    use rusqlite::Connection;

    use super::sqlite::SqliteBatch;
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Refused {
        Sql(String),
        Mine,
        Batch(GroupCommitError),
    }

    impl From<GroupCommitError> for Refused {
        fn from(e: GroupCommitError) -> Self {
            Refused::Batch(e)
        }
    }

    impl From<rusqlite::Error> for Refused {
        fn from(e: rusqlite::Error) -> Self {
            Refused::Sql(e.to_string())
        }
    }

    fn open(path: &std::path::Path) -> GroupCommit<SqliteBatch> {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        GroupCommit::new(SqliteBatch(conn))
    }

    fn insert(c: &Connection, k: i64) -> Result<i64, Refused> {
        c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
        Ok(k)
    }

    fn rows(path: &std::path::Path) -> Vec<i64> {
        Connection::open(path)
            .unwrap()
            .prepare("SELECT k FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// One batch: two inserts of one key (the second sees the first, in the
    /// same uncommitted transaction, and fails on its own), a write refused
    /// by its caller after inserting (undone), and two good ones; one
    /// commit, and a fresh connection reads exactly the kept rows.
    #[test]
    fn a_savepoint_undoes_one_write_and_the_batch_commits_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let store = open(&path);
        let answers: Vec<(&str, Result<i64, Refused>)> = std::thread::scope(|scope| {
            let handles = store.peek(|_| {
                let mut handles = Vec::new();
                let store = &store;
                for (name, k) in [("dup a", 1), ("dup b", 1), ("other", 3)] {
                    handles.push((name, scope.spawn(move || store.write(|b| insert(b, k)))));
                }
                handles.push((
                    "refused",
                    scope.spawn(move || {
                        store.write(|b| {
                            insert(b, 2)?;
                            Err::<i64, _>(Refused::Mine)
                        })
                    }),
                ));
                until(store, 4);
                handles
            });
            handles
                .into_iter()
                .map(|(name, h)| (name, h.join().unwrap()))
                .collect()
        });
        let dup: Vec<_> = answers
            .iter()
            .filter(|(n, _)| n.starts_with("dup"))
            .collect();
        assert_eq!(
            dup.iter().filter(|(_, a)| a == &Ok(1)).count(),
            1,
            "{answers:?}"
        );
        assert!(
            dup.iter()
                .any(|(_, a)| matches!(a, Err(Refused::Sql(e)) if e.contains("UNIQUE"))),
            "{answers:?}"
        );
        assert!(answers.contains(&("refused", Err(Refused::Mine))));
        assert!(answers.contains(&("other", Ok(3))));
        assert_eq!(store.stats().commits, 1);
        assert_eq!(rows(&path), [1, 3]);
        // The connection is usable for the next batch.
        assert_eq!(store.write(|b| insert(b, 4)), Ok(4));
        assert_eq!(rows(&path), [1, 3, 4]);
    }

    /// A write that makes SQLite end the whole transaction (here it ends
    /// it itself) takes its batch down: every writer of the batch, the one
    /// before it too, gets the error, nothing of it is kept, and the next
    /// batch works.
    #[test]
    fn a_write_that_ends_the_transaction_abandons_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let store = open(&path);
        let (good, rogue) = std::thread::scope(|scope| {
            // A writer announced: the first write leaves the batch open.
            store.arriving.fetch_add(1, Ordering::SeqCst);
            let s = &store;
            let good = scope.spawn(move || s.write(|b| insert(b, 1)));
            let in_batch = || {
                store.peek(|b| b.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            };
            while in_batch().unwrap() == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            store.arriving.fetch_sub(1, Ordering::SeqCst);
            let rogue = store.write(|b| {
                b.execute_batch("ROLLBACK")?;
                Ok::<i64, Refused>(0)
            });
            (good.join().unwrap(), rogue)
        });
        for answer in [&good, &rogue] {
            assert!(
                matches!(answer, Err(Refused::Batch(GroupCommitError::Aborted(_)))),
                "{good:?} {rogue:?}"
            );
        }
        assert_eq!(store.stats().commits, 0);
        assert!(rows(&path).is_empty());
        assert_eq!(store.write(|b| insert(b, 5)), Ok(5));
        assert_eq!(rows(&path), [5]);
    }

    fn until(store: &GroupCommit<SqliteBatch>, n: usize) {
        while store.waiting() < n {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
