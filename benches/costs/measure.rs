//! How a row is measured: phantom_ci (A) and its baseline (B) alternately, ABBA order, one warm-up
//! round that is thrown away, everything written to disk (`sync`) before each sample; medians.
//! And the peak-RSS wrapper: the benchmark binary re-runs itself as a process whose only child is
//! phantom_ci, so that `getrusage(RUSAGE_CHILDREN)` reports phantom_ci's own peak.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::env::Bench;

/// Samples of A and of B, `rounds` of each after one warm-up round. `before_round` gets the round
/// number (0 is the warm-up) and prepares what both samples of the round use; neither it nor the
/// `sync` before each sample is timed.
pub fn alternate<A, B>(
    rounds: usize,
    mut before_round: impl FnMut(usize),
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Vec<A>, Vec<B>) {
    let mut samples_a = Vec::with_capacity(rounds);
    let mut samples_b = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        before_round(round);
        let (sample_a, sample_b) = if round % 2 == 0 {
            nix::unistd::sync();
            let sample_a = a();
            nix::unistd::sync();
            (sample_a, b())
        } else {
            nix::unistd::sync();
            let sample_b = b();
            nix::unistd::sync();
            (a(), sample_b)
        };
        if round > 0 {
            samples_a.push(sample_a);
            samples_b.push(sample_b);
        }
    }
    (samples_a, samples_b)
}

/// Runs `f` and returns how long it took, in milliseconds.
pub fn time_ms(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1000.0
}

/// Median, lowest and highest of some samples.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(samples: &[f64]) -> Stat {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Stat {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            n,
        }
    }
}

/// Waits until every process the benchmark adopted has ended. The benchmark is a child subreaper, so
/// the hook's detached worker, whose parent (the hook) exits at once, becomes its child. Call it only
/// when no `std::process::Child` is outstanding: it reaps whatever child ends.
pub fn reap_adopted(deadline: Duration) {
    let start = Instant::now();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return,
            Ok(WaitStatus::StillAlive) => {
                assert!(
                    start.elapsed() < deadline,
                    "a process started by the hook is still running after {deadline:?}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(_) => {}
            Err(e) => panic!("waitpid: {e}"),
        }
    }
}

/// The argument that makes the benchmark binary the peak-RSS wrapper.
pub const MAXRSS_ARG: &str = "--phantom-ci-bench-maxrss-of";

/// The wrapper: runs `command` (stdout to /dev/null, stderr inherited) and prints
/// `<peak RSS of its children in KiB> <nanoseconds from spawn to exit> <exit code>`.
pub fn maxrss_main(command: &[OsString]) {
    let start = Instant::now();
    let status = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    println!(
        "{} {} {}",
        usage.max_rss(),
        elapsed.as_nanos(),
        status.code().unwrap_or(-1)
    );
}

/// What the wrapper measured.
pub struct Wrapped {
    pub max_rss_kib: f64,
    pub elapsed_ms: f64,
}

/// Runs `phantom_ci ARGS` under the wrapper, in the benchmark's environment, and panics with its
/// stderr if it failed.
pub fn wrapped(bench: &Bench, args: &[&str]) -> Wrapped {
    let out = bench
        .command(std::env::current_exe().unwrap())
        .arg(MAXRSS_ARG)
        .arg(&bench.bin)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert!(
        out.status.success() && fields.len() == 3 && fields[2] == "0",
        "phantom_ci {args:?} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Wrapped {
        max_rss_kib: fields[0].parse().unwrap(),
        elapsed_ms: fields[1].parse::<f64>().unwrap() / 1e6,
    }
}
