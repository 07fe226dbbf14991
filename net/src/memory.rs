//! Process memory that stays flat under a long run.
//!
//! glibc's allocator gives threads that contend for it arenas of their own
//! (up to eight per core), and memory freed in one arena is not reused by
//! another. A daemon whose async tasks hop between tokio's workers and
//! blocking threads under load then grows arena by arena: in the soak
//! suite (`docs/reliability.md`) a coordinator restarted in the middle of
//! a burst grew by 2–4 MiB per 1,000 requests, and stayed flat with
//! `MALLOC_ARENA_MAX=1`. The daemons therefore cap the arenas at start;
//! the environment variable still overrides it.

/// Most allocator arenas a daemon uses (glibc only).
pub const ARENAS: i32 = 2;

/// Caps glibc's allocator arenas at [`ARENAS`] unless `MALLOC_ARENA_MAX`
/// is set. Call first thing in `main`, before any thread starts. A no-op
/// on other C libraries.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before
        // any other thread exists, it races with no allocation.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}
