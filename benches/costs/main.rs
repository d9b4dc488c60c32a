//! What each cost of phantom_ci is, side by side with its baseline measured in the same run (issue 11):
//!
//! 1. `git push` with the installed hook (default, detaching) vs the same push with an `exit 0` hook;
//! 2. push returned → the run's first step started (no baseline);
//! 3. `phantom_ci run` of a generated repository (5,000 files, 64 MiB, one `true` step), cleanup
//!    included, vs `git worktree add --detach` + `git worktree remove` of the same commit;
//! 4. `tick` over 1,000 configured repos none of which moved, and over 100 (linearity);
//! 5. a run of 200 `/bin/true` steps vs a shell loop of 200 `/bin/true`;
//! 6. a step printing 1 GiB of log lines: throughput vs `cat f | cat`;
//! 7. phantom_ci's peak RSS while a step prints 1 GiB;
//! 8. `phantom_ci run` of a big repository (50,000 generated files, or a clone of the HEAD of
//!    `PHANTOM_CI_BENCH_BIG_REPO`, such as git/git) right after a commit changing one file, vs `git
//!    worktree add --detach` + `git worktree remove --force` of that commit (as root only: the
//!    layered workspace needs root and `run_as`).
//!
//! `cargo bench --bench costs` prints the table (about 3 minutes on 2 cores, row 8 about 7 more);
//! `PHANTOM_CI_BENCH_QUICK=1 cargo bench --bench costs` is a smoke run of about a minute. Every process
//! runs in a temporary directory under the target directory (on disk, not tmpfs) with a fixed
//! environment; phantom_ci is the release binary cargo builds for the bench. The knobs are in
//! `knobs.rs` and in docs/bench.md.

// A benchmark is a program whose output is its table; setup failures may panic.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod env;
mod generate;
mod knobs;
mod measure;
mod rows;
mod table;

use std::time::Instant;

use env::Bench;
use knobs::Knobs;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == measure::MAXRSS_ARG) {
        measure::maxrss_main(&args[2..]);
        return;
    }
    let knobs = Knobs::from_env();
    std::fs::create_dir_all(&knobs.dir).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("phantom-bench-")
        .tempdir_in(&knobs.dir)
        .unwrap();
    // The hook's detached worker becomes the benchmark's child, so a round can wait for it to end.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let bench = Bench::new(tmp.path(), &knobs.bin);
    let load_before = load_average();
    let start = Instant::now();

    let mut rows = Vec::new();
    if knobs.wants(&[1, 2]) {
        eprintln!("rows 1, 2: pushes…");
        rows.extend(rows::push(&bench, &knobs));
    }
    if knobs.wants(&[3]) {
        rows.extend(rows::checkout(&bench, &knobs));
    }
    if knobs.wants(&[4]) {
        rows.extend(rows::tick(&bench, &knobs));
    }
    if knobs.wants(&[5]) {
        eprintln!("row 5: steps…");
        rows.extend(rows::steps(&bench, &knobs));
    }
    if knobs.wants(&[6, 7]) {
        rows.extend(rows::log(&bench, &knobs));
    }
    if knobs.wants(&[8]) {
        rows.extend(rows::change(&bench, &knobs));
    }
    rows.retain(|row| {
        let number: u32 = row
            .id
            .trim_end_matches(char::is_alphabetic)
            .parse()
            .unwrap();
        knobs.rows.contains(&number)
    });

    println!();
    print_machine(&knobs, &bench, &load_before, start.elapsed().as_secs_f64());
    println!();
    table::print(&rows);
    if knobs.keep {
        println!("\nkept: {}", tmp.keep().display());
    }
}

fn print_machine(knobs: &Knobs, bench: &Bench, load_before: &str, seconds: f64) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let git = bench
        .command("git")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "phantom_ci costs, {} ({})",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        if knobs.quick {
            "QUICK: smoke sizes"
        } else {
            "full"
        }
    );
    println!();
    println!(
        "- machine: {} cores ({cpu}), {memory} memory, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    );
    println!(
        "- load average before / after: {load_before} / {}",
        load_average()
    );
    println!(
        "- bench dir: {} on {}",
        bench.root.display(),
        env::file_system(&bench.root)
    );
    println!("- {git} (`{}`)", which(bench, "git"));
    println!("- phantom_ci: {}", knobs.bin.display());
    let mut set: Vec<String> = std::env::vars()
        .filter(|(key, _)| key.starts_with("PHANTOM_CI_BENCH_"))
        .map(|(key, value)| format!("`{key}={value}`"))
        .collect();
    set.sort();
    if set.is_empty() {
        set.push("none".into());
    }
    println!("- knobs set: {}", set.join(" "));
    println!(
        "- rounds: {} for rows 3, 6, 7, 8 and {} for rows 1, 2, 4, 5 (after one warm-up round \
         each, A and B alternated); {:.0} s in all",
        knobs.rounds,
        knobs.rounds * 3,
        seconds
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn which(bench: &Bench, program: &str) -> String {
    bench
        .command("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
