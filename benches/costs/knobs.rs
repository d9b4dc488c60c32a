//! The environment variables that size the benchmark. Each has a default for the full table; with
//! `PHANTOM_CI_BENCH_QUICK=1` the defaults shrink to a smoke run of about a minute, and any knob set
//! explicitly still wins.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Knobs {
    pub quick: bool,
    /// Timed rounds of the slow rows (3, 6, 7, 8); the fast rows (1, 2, 4, 5) take three times as
    /// many.
    pub rounds: usize,
    /// Files of the generated repository of row 3.
    pub files: usize,
    /// MiB of file contents of that repository.
    pub mib: u64,
    /// Files of the generated big repository of row 8.
    pub big_files: usize,
    /// MiB of file contents of that repository.
    pub big_mib: u64,
    /// A git repository whose HEAD row 8 clones instead of generating one (meant for git/git).
    pub big_repo: Option<PathBuf>,
    /// The unprivileged user row 8's repo runs its step as (`run_as`); `None`: `phantom-bench` if
    /// that user exists, else `nobody`.
    pub big_run_as: Option<String>,
    /// Configured repos of row 4; the linearity row uses a tenth of them.
    pub repos: usize,
    /// Steps of row 5.
    pub steps: usize,
    /// MiB a step prints in rows 6 and 7.
    pub log_mib: u64,
    /// The `log_limit` of the printing repo (a Repo.toml value such as "2GiB"); `None`: phantom_ci's
    /// default (64 MiB).
    pub log_limit: Option<String>,
    /// The rows to measure.
    pub rows: Vec<u32>,
    /// Where the temporary directory goes.
    pub dir: PathBuf,
    /// Keep the temporary directory at the end.
    pub keep: bool,
    /// The phantom_ci binary measured.
    pub bin: PathBuf,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr + PartialOrd + Default>(name: &str, default: T) -> T {
    match var(name) {
        None => default,
        Some(text) => match text.parse::<T>() {
            Ok(value) if value > T::default() => value,
            _ => panic!("{name}={text}: expected a positive whole number"),
        },
    }
}

impl Knobs {
    pub fn from_env() -> Knobs {
        let quick = var("PHANTOM_CI_BENCH_QUICK").is_some_and(|v| v != "0");
        let pick = |full, small| if quick { small } else { full };
        let rows = match var("PHANTOM_CI_BENCH_ROWS") {
            None => (1..=8).collect(),
            Some(text) => text
                .split(',')
                .map(|row| match row.trim().parse::<u32>() {
                    Ok(n @ 1..=8) => n,
                    _ => panic!(
                        "PHANTOM_CI_BENCH_ROWS={text}: expected row numbers 1 to 8, like 1,3"
                    ),
                })
                .collect(),
        };
        Knobs {
            quick,
            rounds: number("PHANTOM_CI_BENCH_ROUNDS", pick(9, 2)),
            files: number("PHANTOM_CI_BENCH_FILES", pick(5000, 500)),
            mib: number("PHANTOM_CI_BENCH_MB", if quick { 6 } else { 64 }),
            big_files: number("PHANTOM_CI_BENCH_BIG_FILES", pick(50_000, 2000)),
            big_mib: number("PHANTOM_CI_BENCH_BIG_MB", if quick { 8 } else { 200 }),
            big_repo: var("PHANTOM_CI_BENCH_BIG_REPO").map(PathBuf::from),
            big_run_as: var("PHANTOM_CI_BENCH_BIG_RUN_AS"),
            repos: number("PHANTOM_CI_BENCH_REPOS", pick(1000, 100)).max(10),
            steps: number("PHANTOM_CI_BENCH_STEPS", 200),
            log_mib: number("PHANTOM_CI_BENCH_LOG_MB", if quick { 64 } else { 1024 }),
            log_limit: var("PHANTOM_CI_BENCH_LOG_LIMIT"),
            rows,
            // On disk by default: the target directory, not `$TMPDIR` (often a tmpfs).
            dir: var("PHANTOM_CI_BENCH_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from),
            keep: var("PHANTOM_CI_BENCH_KEEP").is_some_and(|v| v != "0"),
            bin: var("PHANTOM_CI_BENCH_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_phantom_ci")),
                PathBuf::from,
            ),
        }
    }

    pub fn wants(&self, rows: &[u32]) -> bool {
        rows.iter().any(|row| self.rows.contains(row))
    }
}
