//! A small bounded pool of PostgreSQL connections, each with the
//! statements it has prepared.
//!
//! Bounded because every coordinator sharing the server takes from the
//! same `max_connections`; at most as many connections as store calls run
//! at once (`store::blocking` runs 16). A connection is opened when none is
//! idle and the bound allows, reused after, and dropped (not returned) when
//! it failed: a server restart costs the calls in flight, not the pool.
//!
//! Why not r2d2: it runs its own thread to reap and test connections; a
//! store call learns of a dead connection at its first statement anyway,
//! and a store call that fails is answered with an error the caller
//! already handles, so this is all the pool has to do.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::connect::Target;

/// How long a call waits for a connection when all are in use.
pub const WAIT: Duration = Duration::from_secs(30);

/// One connection and the statements prepared on it, by SQL text.
pub struct Conn {
    pub client: postgres::Client,
    pub statements: HashMap<&'static str, postgres::Statement>,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The reason, as `connect::describe_error` words it.
    #[error("cannot connect to the PostgreSQL store: {0}")]
    Connect(String),
    #[error("every one of the {0} PostgreSQL connections stayed busy for {WAIT:?}")]
    Exhausted(usize),
}

struct Slots {
    idle: Vec<Conn>,
    /// Connections open or being opened, idle or in use.
    open: usize,
}

pub struct Pool {
    target: Target,
    max: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Pool {
    pub fn new(target: Target, max: usize) -> Self {
        Pool {
            target,
            max: max.max(1),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// An idle connection, a new one if the bound allows, or the first
    /// one freed within [`WAIT`].
    pub fn get(&self) -> Result<Pooled<'_>, PoolError> {
        let deadline = Instant::now() + WAIT;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = slots.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(self.pooled(conn));
                }
                slots.open -= 1;
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                // Connected outside the lock: a slow server holds up only
                // this call.
                return match self.target.connect() {
                    Ok(client) => Ok(self.pooled(Conn {
                        client,
                        statements: HashMap::new(),
                    })),
                    Err(e) => {
                        self.release_slot();
                        Err(PoolError::Connect(super::connect::describe_error(&e)))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PoolError::Exhausted(self.max));
            }
            slots = self
                .freed
                .wait_timeout(slots, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn pooled(&self, conn: Conn) -> Pooled<'_> {
        Pooled {
            pool: self,
            conn: Some(conn),
            broken: false,
        }
    }

    fn release_slot(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.open -= 1;
        drop(slots);
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    /// Each synchronous client owns a small runtime, which may not be
    /// dropped on an async task's thread (tokio panics): the idle
    /// connections are closed on a thread of their own. (A connection on
    /// loan is dropped where it was used: a blocking thread.)
    fn drop(&mut self) {
        let idle =
            std::mem::take(&mut self.slots.get_mut().unwrap_or_else(|p| p.into_inner()).idle);
        if idle.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || drop(idle)).join();
    }
}

/// A connection on loan; back to the pool when dropped, unless broken.
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    broken: bool,
}

impl Pooled<'_> {
    /// Not to be reused: its session is in an unknown state (an error
    /// other than a statement's, e.g. the server went away mid-call).
    pub fn discard(&mut self) {
        self.broken = true;
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.broken || conn.client.is_closed() {
            drop(conn);
            self.pool.release_slot();
            return;
        }
        let mut slots = self.pool.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.push(conn);
        drop(slots);
        self.pool.freed.notify_one();
    }
}
