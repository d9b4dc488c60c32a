//! The report's cost (issue 13: "100 repos × 100 runs in well under a second"), against a baseline
//! measured in the same run, on the same machine.
//!
//! A data dir of `PHANTOM_CI_BENCH_REPOS` repos (default 100) × `PHANTOM_CI_BENCH_RUNS` runs (default
//! 100) is generated at start: each run a `run.json` of three steps with a subject and an author, a
//! log of about 4 KiB full of colours, and every tenth run a small artifact. Then, each the median of
//! `PHANTOM_CI_BENCH_ITERS` (default 5):
//!
//! - **report, fresh folder**: `phantom_ci::report::write` into an empty folder — every page, the
//!   artifacts copied, every badge, the index (what `phantom_ci report DIR` does the first time);
//! - **report, again**: the same over the folder it wrote (the artifacts already there);
//! - **refresh after a run**: `phantom_ci::report::refresh` of one repo's newest run — what every run
//!   pays with `PHANTOM_CI_REPORT_DIR` set (two pages, a badge, the index over every repo's last 50 runs);
//! - **baseline: copy the same bytes**: read every `run.json` and log and write as many bytes into as
//!   many new files — the floor any report of these records stands on.
//!
//! `cargo bench --bench report`; `PHANTOM_CI_BENCH_DIR` chooses where the temporary directory goes
//! (default `$TMPDIR` or `/tmp`).

// A benchmark is a program whose output is its table; setup failures may panic.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::Path;
use std::time::{Duration, Instant};

use phantom_ci::config::Config;
use phantom_ci::config::dirs::Dirs;
use phantom_ci::state::records::{RunRecord, RunResult, StepRecord, StepResult, Trigger};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// A log of about 4 KiB, as a compiler and a test runner print it.
fn log(run: usize) -> String {
    let mut log = format!("==> app #{run} · master · 0123456 · hook\n==> [0] build: cargo build\n");
    for i in 0..20 {
        log.push_str(&format!(
            "\x1b[1m\x1b[32m   Compiling\x1b[0m crate-{i} v0.{i}.0 (/srv/work/crate-{i})\n"
        ));
    }
    log.push_str("==> [1] test: cargo test\n");
    for i in 0..30 {
        log.push_str(&format!(
            "test tests::case_{i} ... \x1b[32mok\x1b[0m <{i}> & more\n"
        ));
    }
    log.push_str("\x1b[31merror\x1b[0m: 1 warning\n==> app success in 12.3s\n");
    log
}

fn record(repo: &str, run: usize) -> RunRecord {
    let result = match run % 10 {
        3 => RunResult::Failure,
        7 => RunResult::Timeout,
        _ => RunResult::Success,
    };
    let step = |index: u64, name: &str, ms: u64| StepRecord {
        name: Some(name.into()),
        duration_ms: ms,
        ..StepRecord::new(index, &format!("cargo {name}"), StepResult::Success)
    };
    RunRecord {
        repo: repo.into(),
        run: run as u64,
        branch: "master".into(),
        commit: format!("{run:040x}"),
        subject: format!("Change number {run} <with> & \"markup\""),
        author: "Bench Author <bench@phantom-ci.invalid>".into(),
        trigger: Trigger::Hook,
        started_at: format!("2026-11-{:02}T10:{:02}:00.000Z", 1 + run / 60, run % 60),
        finished_at: Some(format!(
            "2026-11-{:02}T10:{:02}:30.000Z",
            1 + run / 60,
            run % 60
        )),
        duration_ms: 30_000 + (run as u64 * 997) % 20_000,
        result,
        message: (result != RunResult::Success).then(|| "step [1] test failed".into()),
        steps: vec![
            step(0, "build", 12_000),
            step(1, "test", 15_000),
            step(2, "doc", 3_000),
        ],
        log_lost: None,
        kept_until: None,
        workspace: None,
    }
}

fn generate(root: &Path, repos: usize, runs: usize) -> (Dirs, Config) {
    let dirs = Dirs {
        config: root.join("config"),
        data: root.join("data"),
    };
    std::fs::create_dir_all(&dirs.config).unwrap();
    let mut toml = String::new();
    for r in 0..repos {
        let name = format!("repo{r:03}");
        toml.push_str(&format!("[{name}]\npath = \"/srv/git/{name}.git\"\n"));
        for n in 1..=runs {
            let dir = dirs.runs(&name).join(n.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let json = serde_json::to_vec_pretty(&record(&name, n)).unwrap();
            std::fs::write(dir.join("run.json"), json).unwrap();
            std::fs::write(dir.join("log"), log(n)).unwrap();
            if n % 10 == 0 {
                std::fs::create_dir_all(dir.join("artifacts")).unwrap();
                std::fs::write(
                    dir.join("artifacts/coverage.txt"),
                    "lines: 93%\n".repeat(100),
                )
                .unwrap();
            }
        }
    }
    std::fs::write(dirs.repo_toml(), &toml).unwrap();
    let config = Config::parse(&dirs.repo_toml(), &toml).unwrap();
    (dirs, config)
}

/// The bytes a report of these records reads, copied into as many files: the floor.
fn baseline(dirs: &Dirs, config: &Config, to: &Path) {
    for repo in &config.repos {
        let out = to.join(&repo.name);
        std::fs::create_dir_all(&out).unwrap();
        for n in phantom_ci::state::records::list(dirs, &repo.name) {
            let dir = dirs.runs(&repo.name).join(n.to_string());
            let mut bytes = std::fs::read(dir.join("run.json")).unwrap();
            bytes.extend(std::fs::read(dir.join("log")).unwrap());
            std::fs::write(out.join(format!("{n}.html")), bytes).unwrap();
        }
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn measure(iters: usize, mut f: impl FnMut(usize)) -> Duration {
    median(
        (0..iters)
            .map(|i| {
                let start = Instant::now();
                f(i);
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another benchmark skips this one.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"report".contains(&a))
    {
        return;
    }
    let repos = knob("PHANTOM_CI_BENCH_REPOS", 100);
    let runs = knob("PHANTOM_CI_BENCH_RUNS", 100);
    let iters = knob("PHANTOM_CI_BENCH_ITERS", 5);
    let parent = std::env::var_os("PHANTOM_CI_BENCH_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let tmp = tempfile::Builder::new()
        .prefix("phantom-report-bench-")
        .tempdir_in(parent)
        .unwrap();
    eprintln!(
        "generating {repos} repos × {runs} runs in {} …",
        tmp.path().display()
    );
    let (dirs, config) = generate(tmp.path(), repos, runs);

    let fresh = measure(iters, |i| {
        let site = tmp.path().join(format!("fresh-{i}"));
        let written = phantom_ci::report::write(&dirs, &config, &site).unwrap();
        assert!(written.unreadable.is_empty());
    });
    let site = tmp.path().join("fresh-0");
    let again = measure(iters, |_| {
        phantom_ci::report::write(&dirs, &config, &site).unwrap();
    });
    let last = config.repos[0].name.clone();
    let refresh = measure(iters, |_| {
        phantom_ci::report::refresh(&dirs, &site, &last, runs as u64).unwrap();
    });
    let copy = measure(iters, |i| {
        baseline(&dirs, &config, &tmp.path().join(format!("copy-{i}")));
    });

    let pages = repos * runs;
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                let meta = e.metadata().unwrap();
                if meta.is_dir() {
                    walk(&e.path())
                } else {
                    meta.len()
                }
            })
            .sum()
    }
    let ratio = |d: Duration| d.as_secs_f64() / copy.as_secs_f64();
    println!(
        "report of {repos} repos × {runs} runs ({pages} pages, {:.1} MiB written; median of {iters})",
        walk(&site) as f64 / f64::from(1 << 20)
    );
    println!("| what | time | × baseline |");
    println!("|---|---:|---:|");
    println!(
        "| report, fresh folder | {:.0} ms | {:.2} |",
        fresh.as_secs_f64() * 1e3,
        ratio(fresh)
    );
    println!(
        "| report, again | {:.0} ms | {:.2} |",
        again.as_secs_f64() * 1e3,
        ratio(again)
    );
    println!(
        "| refresh after a run | {:.1} ms | {:.3} |",
        refresh.as_secs_f64() * 1e3,
        ratio(refresh)
    );
    println!(
        "| baseline: copy the same bytes | {:.0} ms | 1.00 |",
        copy.as_secs_f64() * 1e3
    );
}
