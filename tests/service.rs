//! `configure service` (issue #3): the systemd units, checked by `systemd-analyze verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

use predicates::prelude::*;

use crate::support::TestEnv;

/// The units of `configure service --print` output: (file name, text).
fn printed_units(stdout: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let mut units: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(path) = line
            .strip_prefix("# ==> ")
            .and_then(|l| l.strip_suffix(" <==\n"))
        {
            let name = Path::new(path)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            units.push((name, String::new()));
        } else {
            units
                .last_mut()
                .expect("a unit header comes first")
                .1
                .push_str(line);
        }
    }
    // The blank line between two units belongs to neither.
    for unit in &mut units {
        while unit.1.ends_with("\n\n") {
            unit.1.pop();
        }
    }
    units
}

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
}

/// Runs `systemd-analyze verify` on `units` written to a temp dir: whether they pass, and its stderr.
fn verify(units: &[(String, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (name, text) in units {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .unwrap();
    // Unknown keys are only warnings (exit 0): any line about our units counts as a failure.
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ours = stderr
        .lines()
        .filter(|l| l.contains("phantom_ci"))
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.success() && ours.is_empty(), stderr)
}

fn printed_units_pass_systemd_analyze_verify() {
    let analyze = have_systemd_analyze();
    if !analyze {
        eprintln!("skipped `systemd-analyze verify`: not installed (apt-get install systemd)");
    }
    let env = TestEnv::new();
    let data = env.root().join("data dir 100%");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec!["phantom_ci.service", "phantom_ci.timer"]),
        (
            vec!["--system", "--interval", "90s"],
            vec!["phantom_ci.service", "phantom_ci.timer", "phantom_ci.path"],
        ),
        (
            vec!["--data-dir", data.to_str().unwrap(), "--system"],
            vec!["phantom_ci.service", "phantom_ci.timer", "phantom_ci.path"],
        ),
    ];
    for (args, expected) in cases {
        let out = env
            .phantom()
            .args(["configure", "service", "--print"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let units = printed_units(&out.stdout);
        let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "{args:?}");
        let service = &units[0].1;
        assert!(service.contains("\nType=oneshot\n"));
        assert!(service.contains("\nNoNewPrivileges=yes\n"));
        // Runs get cgroups of their own below the unit's (SPEC §4.8).
        assert!(service.contains("\nDelegate=yes\n"), "{service}");
        assert!(!service.contains("ProtectControlGroups"), "{service}");
        assert!(
            service.contains(&format!(
                "ExecStart={} --config-dir",
                assert_cmd::cargo::cargo_bin!("phantom_ci")
                    .canonicalize()
                    .unwrap()
                    .display()
            )),
            "{service}"
        );
        assert!(
            service
                .lines()
                .any(|l| l.starts_with("ExecStart=") && l.ends_with(" tick"))
        );
        if args.contains(&"--system") {
            assert!(service.contains("\nProtectSystem=strict\n"), "{service}");
            assert!(units[2].1.contains("\nDirectoryNotEmpty="));
        }
        if args.contains(&"90s") {
            assert!(units[1].1.contains("\nOnUnitActiveSec=90s\n"));
        }
        if analyze {
            let (ok, stderr) = verify(&units);
            assert!(ok, "systemd-analyze verify {args:?}:\n{stderr}");
        }
    }
    // And verify does catch a broken unit (so the check above means something).
    let out = env
        .phantom()
        .args(["configure", "service", "--print"])
        .output()
        .unwrap();
    let mut units = printed_units(&out.stdout);
    units[0].1.push_str("NoSuchDirective=yes\n");
    if analyze {
        assert!(!verify(&units).0, "an unknown key is reported");
    }
}

fn system_units_default_to_etc_and_var_lib() {
    let env = TestEnv::new();
    let out = env
        .phantom()
        .env_remove("PHANTOM_CI_CONFIG_DIR")
        .env_remove("PHANTOM_CI_DATA_DIR")
        .args(["configure", "service", "--system", "--print"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let units = printed_units(&out.stdout);
    assert!(
        units[0]
            .1
            .contains(" --config-dir /etc/phantom_ci --data-dir /var/lib/phantom_ci tick\n")
    );
    assert!(units[0].1.contains("\nStateDirectory=phantom_ci\n"));
    assert!(
        units[2]
            .1
            .contains("\nDirectoryNotEmpty=/var/lib/phantom_ci/spool\n")
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("# ==> /etc/systemd/system/phantom_ci.path <==\n"));
}

fn configure_service_writes_user_units_and_says_what_to_run() {
    let env = TestEnv::new();
    let printed = env
        .phantom()
        .args(["configure", "service", "--print"])
        .output()
        .unwrap();
    let unit_dir = env.home.join(".config/systemd/user");
    env.phantom()
        .args(["configure", "service"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "systemctl --user daemon-reload && systemctl --user enable --now phantom_ci.timer",
        ));
    for (name, text) in printed_units(&printed.stdout) {
        assert_eq!(
            std::fs::read_to_string(unit_dir.join(&name)).unwrap(),
            text,
            "{name}"
        );
    }
    assert!(!unit_dir.join("phantom_ci.path").exists());
    // Writing again is fine (a new interval replaces the timer); a unit phantom_ci did not write is not.
    env.phantom()
        .args(["configure", "service", "--interval", "1h"])
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(unit_dir.join("phantom_ci.timer"))
            .unwrap()
            .contains("\nOnUnitActiveSec=1h\n")
    );
    std::fs::write(
        unit_dir.join("phantom_ci.timer"),
        "[Timer]\nOnCalendar=daily\n",
    )
    .unwrap();
    let service_before = std::fs::read_to_string(unit_dir.join("phantom_ci.service")).unwrap();
    env.phantom()
        .args(["configure", "service", "--interval", "2h"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("was not written by phantom_ci"));
    assert_eq!(
        std::fs::read_to_string(unit_dir.join("phantom_ci.timer")).unwrap(),
        "[Timer]\nOnCalendar=daily\n"
    );
    assert_eq!(
        std::fs::read_to_string(unit_dir.join("phantom_ci.service")).unwrap(),
        service_before
    );
    env.phantom()
        .args(["configure", "service", "--interval", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`soon` is not a duration: write it like \"90s\", \"10m\" or \"2h\"",
        ));
}

fn a_bare_interval_gets_one_hint_in_units_systemd_reads_alike() {
    let env = TestEnv::new();
    let out = env
        .phantom()
        .args(["configure", "service", "--interval", "15", "--print"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`15` has no unit: write `15s` or `15min`",
        ));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains("15ms"), "{stderr}");
    assert_eq!(stderr.matches("write").count(), 1, "one hint: {stderr}");
    // What the hint says is accepted.
    for interval in ["15s", "15min"] {
        env.phantom()
            .args(["configure", "service", "--interval", interval, "--print"])
            .assert()
            .success();
    }
}

/// Issue 22: `configure cron --print` gives the crontab line of the timer: five time fields, then a
/// command that, run by a shell as cron runs it, ticks — and does nothing while another holds its lock.
fn the_cron_line_ticks_and_never_twice_at_once() {
    if !crate::support::on_path("flock") {
        crate::skip!("needs flock for the cron line's lock (apt-get install util-linux)");
    }
    let env = TestEnv::new();
    let (repo, first) = env.app("[0]\nrun = \"true\"\n", "");
    let out = env
        .phantom()
        .args(["configure", "cron", "--interval", "10m", "--print"])
        .assert()
        .success();
    let printed = crate::support::stdout_of(&out);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("does not exist yet: create it"), "{stderr}");
    std::fs::create_dir_all(&env.data).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(lines[0].starts_with("# phantom_ci: "), "{printed}");
    let fields: Vec<&str> = lines[1].splitn(6, ' ').collect();
    assert_eq!(fields[..5], ["*/10", "*", "*", "*", "*"], "{printed}");
    // What cron hands the shell: the sixth field, `\\%` back to `%`.
    let command = fields[5].replace("\\%", "%");
    assert!(command.contains(" tick >/dev/null"), "{command}");
    let shell = |command: &str| {
        std::process::Command::new("sh")
            .args(["-c", command])
            .env_clear()
            .envs(crate::support::fixed_env(&env.home))
            .status()
            .unwrap()
    };
    assert!(shell(&command).success());
    assert_eq!(env.run_json("app", 1)["commit"], first.as_str());
    // While something holds the lock (a tick still running), the line does nothing.
    let lock = std::fs::File::open(&env.data).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    repo.commit_and_push("two");
    assert!(!shell(&command).success(), "flock -n gives up");
    assert_eq!(env.runs("app"), [1]);
    drop(held);
    assert!(shell(&command).success());
    assert_eq!(env.runs("app"), [1, 2]);
    // An interval cron cannot say is refused, with what it can.
    env.phantom()
        .args(["configure", "cron", "--interval", "7m", "--print"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("divides an hour"));
}

crate::tests! {
    the_cron_line_ticks_and_never_twice_at_once,
    a_bare_interval_gets_one_hint_in_units_systemd_reads_alike,
    printed_units_pass_systemd_analyze_verify,
    system_units_default_to_etc_and_var_lib,
    configure_service_writes_user_units_and_says_what_to_run,
}
