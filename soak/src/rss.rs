//! Peak resident memory of every process of the stack: its `VmHWM` (the
//! kernel's high-water mark of the resident set) sampled every second from
//! `/proc/PID/status`, the largest over all its instances (a restart starts
//! a new mark, so the sample just before a kill carries the old one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::faults::Process;

/// Per process name: the peak seen, and every pid it had.
#[derive(Debug, Default, Clone)]
pub struct Peak {
    pub kib: u64,
    pub pids: BTreeSet<u32>,
}

pub type Peaks = Arc<Mutex<BTreeMap<String, Peak>>>;

/// `VmHWM` in KiB from the text of `/proc/PID/status` (absent for a zombie).
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Every live process's resident set now, e.g. `signer-1 25.0 MiB, ...`.
pub fn now_mib(processes: &[Process]) -> String {
    processes
        .iter()
        .map(|p| {
            let kib = p
                .pid()
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .as_deref()
                .and_then(vm_rss_kib);
            match kib {
                Some(k) => format!("{} {:.1} MiB", p.name, k as f64 / 1024.0),
                None => format!("{} down", p.name),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One sample of every process into `peaks`.
pub fn sample(processes: &[Process], peaks: &Peaks) {
    let mut peaks = peaks.lock().unwrap_or_else(|e| e.into_inner());
    for p in processes {
        let Some(pid) = p.pid() else { continue };
        let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        else {
            continue;
        };
        let peak = peaks.entry(p.name.clone()).or_default();
        peak.kib = peak.kib.max(kib);
        peak.pids.insert(pid);
    }
}

/// Samples every second until the task is dropped.
pub async fn sample_every_second(processes: Vec<Process>, peaks: Peaks) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        sample(&processes, &peaks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status =
            "Name:\tringi\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(51234));
        assert_eq!(vm_rss_kib(status), Some(40000));
        // A zombie's status has no memory lines.
        assert_eq!(vm_hwm_kib("Name:\tringi\nState:\tZ (zombie)\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_hwm_kib(&own).is_some_and(|k| k > 0));
    }
}
