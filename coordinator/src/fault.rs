//! Fault injection for the tests of crash recovery: in debug builds only
//! (what the test suite runs), and only when the environment asks for it.
//! Release builds compile every point here to "no fault".
//!
//! `RINGI_TEST_FAULT=crash-after-aggregate`: the process aborts (as under
//! `kill -9`: no destructor, no flush) right after the first signature is
//! aggregated and before SIGNED is committed: the window in which a
//! restarted coordinator once signed the request a second time.
//!
//! `RINGI_TEST_FAULT=no-signer-watch`: signers' health is not watched
//! (`crate::signer_watch`), so a restarted signer's pooled commitments are
//! found stale only in round 2, after its co-signers released: the case
//! the engine must still finish.
//!
//! `RINGI_TEST_FAULT=drop-rejections`: the coordinator plays the insider of
//! issue 14: it answers a rejection as if recorded and drops it, so the
//! request stays open to approvals and is sent to the signers without it.
//! What must still stop it: the rejection sent to the signers directly.

/// Aborts the process here if the environment names this crash point.
pub fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    {
        if std::env::var("RINGI_TEST_FAULT").is_ok_and(|v| v == format!("crash-{name}")) {
            eprintln!("ringi: RINGI_TEST_FAULT: crashing at {name}");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
    }
}

/// Whether the environment makes this coordinator drop rejections.
pub fn drops_rejections() -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("RINGI_TEST_FAULT").as_deref() == Ok("drop-rejections")
    }
    #[cfg(not(debug_assertions))]
    {
        false
    }
}

/// Whether the environment turns the signer health watch off.
pub fn no_signer_watch() -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("RINGI_TEST_FAULT").as_deref() == Ok("no-signer-watch")
    }
    #[cfg(not(debug_assertions))]
    {
        false
    }
}
