//! What `/proc` says about a process: CPU time spent and resident memory.

use std::io;
use std::sync::OnceLock;

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of `pid` so far (all its threads).
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15 (proc(5)).
    let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (parse(11), parse(12)) {
        (Some(utime), Some(stime)) => Ok((utime + stime) as f64 / clock_ticks()),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/stat")),
    }
}

fn status_kib(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {key} in /proc/PID/status")))
}

/// Time the calling thread has spent on a CPU, from `/proc/thread-self/schedstat` (nanosecond
/// resolution; time it waited for a core while other threads ran is not counted).
pub fn thread_cpu_time() -> io::Result<std::time::Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .map(std::time::Duration::from_nanos)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/thread-self/schedstat"))
}

/// Peak resident set size of `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Current resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_and_memory_of_this_process() {
        let pid = std::process::id();
        // Spin until this thread has had 30 ms of CPU (bounded: a busy machine may give it less
        // than its share, but not none for 20 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut spins = 0u64;
        while thread_cpu_time().unwrap() < std::time::Duration::from_millis(30) {
            assert!(std::time::Instant::now() < deadline, "the thread's CPU time does not grow");
            for _ in 0..10_000 {
                spins = std::hint::black_box(spins + 1);
            }
        }
        assert!(cpu_seconds(pid).unwrap() >= 0.03);
        let rss = rss_kib(pid).unwrap();
        assert!(rss > 0);
        assert!(peak_rss_kib(pid).unwrap() >= rss / 2);
    }
}
