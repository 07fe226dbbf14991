//! Kills and restarts. Each process of the stack has a start script,
//! `WORK/start-NAME.sh`, that starts it (the same command every time),
//! writes its pid to `WORK/NAME.pid`, and returns once it serves. A fault
//! is `kill -9` of that pid at a chosen point of the run (after so many
//! requests finished), a short pause, and the start script run again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;

/// A process of the stack, as its start script and pid file name it.
#[derive(Debug, Clone)]
pub struct Process {
    pub name: String,
    pub start: PathBuf,
    pub pidfile: PathBuf,
}

impl Process {
    pub fn new(work: &Path, name: &str) -> Self {
        Process {
            name: name.to_string(),
            start: work.join(format!("start-{name}.sh")),
            pidfile: work.join(format!("{name}.pid")),
        }
    }

    /// The pid of its current instance.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// What one fault did.
#[derive(Debug, Clone)]
pub struct Fault {
    pub process: String,
    /// Requests finished when it struck.
    pub at: usize,
    pub killed: Option<u32>,
    pub restarted: Option<u32>,
    /// Why the kill or the restart failed, if it did.
    pub error: Option<String>,
    /// From the kill until the restarted process serves again.
    pub downtime: Duration,
}

/// `kills` points among `n` requests, one drawn at random in each of
/// `kills` equal slices of the middle of the run (10%..90%), so the faults
/// are spread over it and none falls in the warm-up or the tail.
pub fn schedule(n: usize, kills: usize, rng: &mut impl Rng) -> Vec<usize> {
    if kills == 0 || n == 0 {
        return Vec::new();
    }
    let (start, end) = (n / 10, (n * 9 / 10).max(n / 10 + 1));
    let slice = (end - start) as f64 / kills as f64;
    (0..kills)
        .map(|k| {
            let from = start as f64 + slice * k as f64;
            let point = rng.gen_range(from..from + slice) as usize;
            point.clamp(1, n.saturating_sub(1).max(1))
        })
        .collect()
}

/// Kills `process` at each of `points` (requests finished, as `finished`
/// counts them) and restarts it after `pause`.
pub async fn inject(
    process: Process,
    points: Vec<usize>,
    mut finished: watch::Receiver<usize>,
    pause: Duration,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    for at in points {
        if finished.wait_for(|done| *done >= at).await.is_err() {
            break; // the run is over
        }
        faults.push(strike(&process, at, pause).await);
    }
    faults
}

async fn strike(process: &Process, at: usize, pause: Duration) -> Fault {
    let mut fault = Fault {
        process: process.name.clone(),
        at,
        killed: None,
        restarted: None,
        error: None,
        downtime: Duration::ZERO,
    };
    let struck = Instant::now();
    match kill(process).await {
        Ok(pid) => fault.killed = Some(pid),
        Err(e) => {
            fault.error = Some(e);
            return fault;
        }
    }
    eprintln!(
        "soak: killed {} (pid {}) after {at} requests finished",
        process.name,
        fault.killed.unwrap_or_default()
    );
    tokio::time::sleep(pause).await;
    match restart(process).await {
        Ok(pid) => fault.restarted = Some(pid),
        Err(e) => fault.error = Some(e),
    }
    fault.downtime = struck.elapsed();
    eprintln!(
        "soak: restarted {} (pid {}), down {:.1} s",
        process.name,
        fault.restarted.map_or("?".into(), |p| p.to_string()),
        fault.downtime.as_secs_f64()
    );
    fault
}

/// Whether `pid` is gone or a zombie (dead, not yet reaped by its parent).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// `kill -9` of the current instance; returns once it is dead.
async fn kill(process: &Process) -> Result<u32, String> {
    let pid = process
        .pid()
        .ok_or_else(|| format!("no pid in {}", process.pidfile.display()))?;
    if dead(pid) {
        return Err(format!("{} (pid {pid}) was not running", process.name));
    }
    let status = tokio::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .await
        .map_err(|e| format!("kill: {e}"))?;
    if !status.success() {
        return Err(format!("kill -9 {pid} failed ({status})"));
    }
    for _ in 0..100 {
        if dead(pid) {
            return Ok(pid);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{} (pid {pid}) still alive 5 s after kill -9",
        process.name
    ))
}

/// Runs the start script; returns the new pid once it serves.
async fn restart(process: &Process) -> Result<u32, String> {
    let status = tokio::process::Command::new("bash")
        .arg(&process.start)
        .status()
        .await
        .map_err(|e| format!("{}: {e}", process.start.display()))?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); see its log",
            process.start.display()
        ));
    }
    process
        .pid()
        .ok_or_else(|| format!("no pid in {} after restart", process.pidfile.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_are_spread_over_the_middle_of_the_run() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let points = schedule(10_000, 2, &mut rng);
            assert_eq!(points.len(), 2);
            assert!((1000..5000).contains(&points[0]), "{points:?}");
            assert!((5000..9000).contains(&points[1]), "{points:?}");
        }
        for (n, kills) in [(1, 1), (2, 2), (60, 1), (60, 5)] {
            let points = schedule(n, kills, &mut rng);
            assert_eq!(points.len(), kills);
            assert!(points.iter().all(|p| *p < n.max(2)), "{n} {points:?}");
        }
        assert!(schedule(100, 0, &mut rng).is_empty());
    }

    #[test]
    fn a_zombie_or_a_missing_process_is_dead() {
        assert!(dead(u32::MAX));
        assert!(!dead(std::process::id()));
    }
}
