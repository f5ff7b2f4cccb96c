//! Helpers shared by the benchmark examples: flag parsing, and child processes so each
//! measured run's peak RSS is its own.

// Each example uses a subset.
#![allow(dead_code)]

use std::process::Command;
use std::str::FromStr;

/// Reads the `--flag [value]` arguments in order: `on(flag, value)` handles one, taking its
/// value with `value()`, and returns false for a flag it does not know (which panics).
/// `--bench`, which `cargo bench` passes, is skipped.
pub fn parse_flags(mut on: impl FnMut(&str, &mut dyn FnMut() -> String) -> bool) {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        assert!(on(&flag, &mut value), "unknown argument {flag}");
    }
}

/// `text` parsed, or a panic naming the flag.
pub fn parsed<T: FromStr>(flag: &str, text: &str) -> T {
    text.parse().unwrap_or_else(|_| panic!("{flag}: cannot read {text:?}"))
}

/// A comma-separated list, e.g. `--frames 5,17,33`.
pub fn list<T: FromStr>(flag: &str, text: &str) -> Vec<T> {
    text.split(',').map(|v| parsed(flag, v)).collect()
}

/// Peak resident memory of this process (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs this example again with `--child` and the `(flag, value)` pairs; returns the numbers
/// the child printed on stdout. Exits with the child's stderr when it fails.
pub fn run_child(flags: &[(&str, String)]) -> Vec<f64> {
    let out = Command::new(std::env::current_exe().expect("the example's path"))
        .arg("--child")
        .args(flags.iter().flat_map(|(flag, value)| [*flag, value.as_str()]))
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
