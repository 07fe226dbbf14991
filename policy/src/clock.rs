//! The one wall clock ringi reads: seconds since the Unix epoch.
//!
//! The rules in this crate never call it (they take `now` as an argument,
//! so tests and fuzz targets choose the time); the binaries read it here,
//! once per decision, and pass it down.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
