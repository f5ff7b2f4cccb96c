//! Helpers shared by the benchmark examples: each measured run happens in a fresh child
//! process so its peak RSS is its own.

use std::process::Command;

/// Peak resident memory of this process (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs this example again with `--child` and `args`; returns the numbers the child printed
/// on stdout. Exits with the child's stderr when it fails.
pub fn run_child(args: &[String]) -> Vec<f64> {
    let out = Command::new(std::env::current_exe().expect("the example's path"))
        .arg("--child")
        .args(args)
        .output()
        .expect("run the child");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    line.split_whitespace().map(|x| x.parse().expect("a number from the child")).collect()
}

/// `(max − min) / min` in percent.
pub fn spread_percent(values: &[f64]) -> f64 {
    let (lo, hi) = values.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    (hi - lo) / lo * 100.0
}

/// In a child run (`is_child`), runs `child` and exits, with status 1 and the error on
/// failure; in the parent, returns.
pub fn run_if_child(is_child: bool, child: impl FnOnce() -> framestream::Result<()>) {
    if !is_child {
        return;
    }
    if let Err(e) = child() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}
