//! Fault injection for the tests of the coordinator's recovery: in debug
//! builds only (what the test suite runs), and only when the environment
//! asks for it. Release builds compile every point here to "no fault".
//!
//! `RINGI_TEST_FAULT=lose-first-sign-response`: the first Sign that
//! releases a share answers UNAVAILABLE instead, as if the response were
//! lost on the way; the share stays recorded in the release log, as after
//! a real lost response.
//!
//! `RINGI_TEST_FAULT=bad-share`: every Sign answers with a corrupted
//! signature share (a cheating signer), after recording the true one; the
//! coordinator must name this signer and finish without it.
//!
//! `RINGI_TEST_FAULT=fail-dkg-commit`: every DkgCommit answers UNAVAILABLE
//! without storing anything (a node that fails at the last step of a
//! keygen or refresh).
//!
//! `RINGI_TEST_FAULT=fail-share-activation`: every ActivateShare answers
//! UNAVAILABLE without activating (a node down when a refresh is put in
//! use).
//!
//! `RINGI_TEST_FAULT=crash-after-release-commit`: a Sign aborts the
//! process (as under `kill -9`) once its release and audit entry are
//! committed to the ledger, before the entry reaches the audit log
//! ([`crate::audit_outbox`]).
//!
//! `RINGI_TEST_SLOW_MS=N`: Commit, Sign and Preprocess answer `N` ms late
//! (a slow signer: a far site, a busy token).

/// Aborts the process here if the environment names this point
/// (`crash-NAME`), as a crash would.
pub fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    {
        if std::env::var("RINGI_TEST_FAULT").is_ok_and(|v| v == format!("crash-{name}")) {
            eprintln!("ringi-signer: RINGI_TEST_FAULT: crashing at {name}");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
    }
}

/// Whether to lose this Sign response (once per process).
pub fn lose_sign_response() -> bool {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static FIRED: AtomicBool = AtomicBool::new(false);
        std::env::var("RINGI_TEST_FAULT").as_deref() == Ok("lose-first-sign-response")
            && !FIRED.swap(true, Ordering::SeqCst)
    }
    #[cfg(not(debug_assertions))]
    {
        false
    }
}

/// Corrupts `share` (one bit of its last byte) when the environment asks
/// for a cheating signer; says whether it did.
pub fn corrupt_share(share: &mut [u8]) -> bool {
    #[cfg(debug_assertions)]
    {
        if std::env::var("RINGI_TEST_FAULT").as_deref() == Ok("bad-share")
            && let Some(last) = share.last_mut()
        {
            *last ^= 1;
            return true;
        }
        false
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = share;
        false
    }
}

/// How late to answer signing calls, if the environment asks for a slow
/// signer.
pub fn slow() -> Option<std::time::Duration> {
    #[cfg(debug_assertions)]
    {
        std::env::var("RINGI_TEST_SLOW_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::time::Duration::from_millis)
    }
    #[cfg(not(debug_assertions))]
    {
        None
    }
}

/// Whether DkgCommit should fail (a node that fails at the last step).
pub fn fail_dkg_commit() -> bool {
    fault_is("fail-dkg-commit")
}

/// Whether ActivateShare should fail.
pub fn fail_share_activation() -> bool {
    fault_is("fail-share-activation")
}

fn fault_is(name: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("RINGI_TEST_FAULT").as_deref() == Ok(name)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}
