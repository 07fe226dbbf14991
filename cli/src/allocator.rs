//! The coordinator's memory allocator: mimalloc, its arenas committed on
//! demand.
//!
//! A profile of the coordinator under load (docs/bench.md, twelfth
//! session) put 11 % of its CPU in glibc's malloc and free: with the
//! arenas capped at two (`ringi_net::memory`, which keeps its memory flat),
//! the tokio workers, the store's writer thread and the blocking pool
//! contend for them. mimalloc gives each thread a heap of its own and frees
//! across threads without a lock. The signers keep glibc's allocator: in
//! the same runs, mimalloc saved them nothing and raised their peak RSS
//! past their 40 MiB budget.
//!
//! mimalloc commits its arenas eagerly on Linux by default (option
//! `arena_eager_commit` = 2, "on systems with overcommit"). That is why
//! two earlier trials dropped it: the coordinator's peak RSS went to
//! 76-99 MiB in a load run (its budget is 80). Committed on demand, it
//! peaked at 50-65 MiB through 6,000- and 10,000-request runs (glibc:
//! 38-43), and the coordinator's CPU per request fell 9-11 % in the
//! Rust client's flows (docs/bench.md, twelfth session).

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// The process's allocator (set with `#[global_allocator]` in `main.rs`).
pub type Allocator = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (its `mimalloc.h`, the fifth
/// entry of `mi_option_e`; the crate exports no constant for it). The
/// workspace pins libmimalloc-sys so the index cannot move under it.
const ARENA_EAGER_COMMIT: mi_option_t = 4;

/// Commits mimalloc's arenas on demand (unless `MIMALLOC_ARENA_EAGER_COMMIT`
/// is set, which still overrides it).
///
/// Must run before the process's first allocation: the first arena,
/// reserved then, is the one nearly everything lives in, and the option
/// is read when an arena is reserved. Rust's runtime allocates before
/// `main`, so `main.rs` runs this as an ELF constructor (`.init_array`),
/// after mimalloc's own (priority 101) and before Rust's start-up; hence
/// no allocation here, not even for the environment variable's name.
pub fn commit_arenas_on_demand() {
    // SAFETY: getenv reads the environment, which no thread writes yet;
    // mi_option_set sets one of mimalloc's option values.
    unsafe {
        if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            mi_option_set(ARENA_EAGER_COMMIT, 0)
        }
    }
}

/// Whether arenas are committed eagerly (mimalloc's value of the option).
pub fn arenas_committed_eagerly() -> bool {
    // SAFETY: reads one of mimalloc's option values.
    unsafe { mi_option_get(ARENA_EAGER_COMMIT) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index names the option it is meant to: its default, 2, is the
    /// only option of mimalloc's first ten whose default is 2; setting it
    /// takes effect.
    #[test]
    fn the_option_is_arena_eager_commit_and_is_turned_off() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some() {
            return;
        }
        // SAFETY: reads an option value.
        assert_eq!(unsafe { mi_option_get(ARENA_EAGER_COMMIT) }, 2);
        assert!(arenas_committed_eagerly());
        commit_arenas_on_demand();
        assert!(!arenas_committed_eagerly());
    }
}
