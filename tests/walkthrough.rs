//! The README's walkthrough, "CI for your own project in five minutes" (issue #10), replayed with the
//! built binary. The workflow and the commands come from README.md itself — the fenced block after
//! `<!-- walkthrough:workflow -->` and the `$ ` lines of the blocks after `<!-- walkthrough:session -->`
//! — so the README and this test cannot drift apart. Each command runs with `sh` in a temporary `HOME`
//! (the README's `~`), `phantom_ci` first on `PATH`; it must succeed and print the lines the README
//! shows under it, in order (commit ids, durations and the temporary home put back to the README's).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestEnv, fixed_env, process_running, wait_for};

/// The project the README assumes: `~/src/app`, a git repository on branch `main`.
const PROJECT: &str = "src/app";
/// The home directory the README's output shows.
const README_HOME: &str = "/home/me";
/// How long one command may take (`logs --follow` waits for the pushed commit's run).
const DEADLINE: Duration = Duration::from_secs(180);

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The bodies of the fenced code blocks that follow the line `<!-- walkthrough:<name> -->`.
fn blocks_after(readme: &str, name: &str) -> Vec<String> {
    let marker = format!("<!-- walkthrough:{name} -->");
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    for (at, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == marker) {
        let mut rest = lines[at + 1..].iter().skip_while(|l| l.trim().is_empty());
        let open = rest.next().unwrap_or(&"");
        assert!(
            open.starts_with("```"),
            "README.md: `{marker}` must be followed by a fenced code block, not {open:?}"
        );
        let body: Vec<&str> = rest
            .take_while(|l| !l.starts_with("```"))
            .copied()
            .collect();
        blocks.push(body.join("\n") + "\n");
    }
    assert!(!blocks.is_empty(), "README.md has no `{marker}`");
    blocks
}

/// A command of the walkthrough and the lines the README shows it printing.
struct Step {
    command: String,
    shown: Vec<String>,
}

/// `$ command` lines and the output lines under each; a `…` line stands for anything.
fn steps(sessions: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in sessions.iter().flat_map(|s| s.lines()) {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                shown: Vec::new(),
            });
        } else if line.trim() != "…" {
            let step = steps
                .last_mut()
                .unwrap_or_else(|| panic!("README.md: output {line:?} before any `$ ` command"));
            step.shown.push(line.to_string());
        }
    }
    steps
}

/// A word that changes from run to run, put into a fixed form: a commit id (7 to 40 hex digits, one of
/// them a decimal digit) or a duration (`45ms`, `1.2s`, `3m`).
fn normalise_word(word: &str) -> &str {
    let hex = word.len() >= 7
        && word.len() <= 40
        && word
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && word.bytes().any(|b| b.is_ascii_digit());
    if hex {
        return "<commit>";
    }
    let number = ["ms", "s", "m", "h", "d"]
        .iter()
        .find_map(|unit| word.strip_suffix(unit))
        .unwrap_or("");
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next().unwrap_or("0");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && digits(fraction) {
        return "<duration>";
    }
    word
}

/// A line as it is compared: `home` written as the README's, changing words fixed, runs of white space
/// as one space, no white space at either end.
fn normalise(line: &str, home: &str) -> String {
    let line = line.replace(home, README_HOME);
    let mut out = String::new();
    let mut word = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || (c == '.' && !word.is_empty()) {
            word.push(c);
            continue;
        }
        // A sentence's full stop is not part of the word.
        let stop = word.ends_with('.');
        let trimmed = word.trim_end_matches('.');
        out.push_str(normalise_word(trimmed));
        if stop {
            out.push_str(&".".repeat(word.len() - trimmed.len()));
        }
        word.clear();
        out.push(c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `command` with `sh` in `cwd` and the walkthrough's environment; returns its exit status, what it
/// printed (stdout and stderr as a terminal would interleave them) and the directory it ended in.
fn sh(root: &Path, env: &[(&str, String)], cwd: &Path, command: &str) -> (i32, String, PathBuf) {
    use std::os::unix::process::CommandExt;
    let output = root.join("output");
    let pwd = root.join("pwd");
    let out = File::create(&output).unwrap();
    let script = format!("{command}\nstatus=$?\npwd > \"$WALKTHROUGH_PWD\"\nexit $status\n");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("WALKTHROUGH_PWD", &pwd)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "`{command}` did not end within {DEADLINE:?}; it printed:\n{}",
                std::fs::read_to_string(&output).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = String::from_utf8_lossy(&std::fs::read(&output).unwrap()).into_owned();
    let ended_in = std::fs::read_to_string(&pwd)
        .map(|p| PathBuf::from(p.trim_end_matches('\n')))
        .unwrap_or_else(|_| cwd.to_path_buf());
    (status.code().unwrap_or(128), printed, ended_in)
}

/// "Your project": a git repository on `main` with a test script, as the README assumes one exists.
fn make_project(env: &TestEnv, home: &Path) -> PathBuf {
    let project = home.join(PROJECT);
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("test.sh"),
        "echo \"testing $(git rev-parse --short HEAD)\"\necho all tests passed\n",
    )
    .unwrap();
    env.git(&project, &["init", "-q", "-b", "main"]);
    env.git(&project, &["add", "-A"]);
    env.git(
        &project,
        &["commit", "-q", "-m", "app: a project with tests"],
    );
    project
}

fn the_readme_walkthrough_works_as_written() {
    let readme = readme();
    let workflow = blocks_after(&readme, "workflow");
    assert_eq!(workflow.len(), 1, "one workflow block in the walkthrough");
    let steps = steps(&blocks_after(&readme, "session"));
    // The walkthrough the issue asks for: add, configure hook, a push, then status, logs and report.
    for part in [
        "phantom_ci add ",
        "phantom_ci configure hook ",
        "git push ",
        "phantom_ci status",
        "phantom_ci logs ",
        "phantom_ci report ",
    ] {
        assert!(
            steps.iter().any(|s| s.command.starts_with(part)),
            "the README's walkthrough has no `{part}…`"
        );
    }

    let env = TestEnv::new();
    let home = env.home.canonicalize().unwrap();
    let project = make_project(&env, &home);
    // The README writes the workflow into `workflow/main.toml`, read by branch `main`.
    let workflow_file = project.join("workflow/main.toml");
    std::fs::create_dir_all(workflow_file.parent().unwrap()).unwrap();
    std::fs::write(&workflow_file, &workflow[0]).unwrap();

    // `phantom_ci` on PATH, as after `cargo install` or `install … /usr/local/bin/phantom_ci`.
    let exe = PathBuf::from(assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .canonicalize()
        .unwrap();
    let bin = env.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&exe, bin.join("phantom_ci")).unwrap();
    // The fixed test environment, without the config and data dirs: the defaults under HOME, as the
    // README's output shows them.
    let mut vars = fixed_env(&home);
    for (name, value) in &mut vars {
        match *name {
            "PATH" => *value = format!("{}:{value}", bin.display()),
            // The README's reader commits as themselves: "Me <me@example.com>" in its output.
            "GIT_AUTHOR_NAME" | "GIT_COMMITTER_NAME" => *value = "Me".into(),
            "GIT_AUTHOR_EMAIL" | "GIT_COMMITTER_EMAIL" => *value = "me@example.com".into(),
            _ => {}
        }
    }

    let home_text = home.display().to_string();
    let mut cwd = home.clone();
    for step in &steps {
        let (status, printed, ended_in) = sh(env.root(), &vars, &cwd, &step.command);
        assert_eq!(
            status, 0,
            "README.md: `$ {}` failed (status {status}); it printed:\n{printed}",
            step.command
        );
        let actual: Vec<String> = printed.lines().map(|l| normalise(l, &home_text)).collect();
        let mut rest = actual.iter();
        for shown in &step.shown {
            let wanted = normalise(shown, &home_text);
            assert!(
                rest.any(|line| *line == wanted),
                "README.md: `$ {}` should print\n  {shown}\n(compared as `{wanted}`), in this order; \
                 it printed:\n{printed}",
                step.command
            );
        }
        cwd = ended_in;
    }

    // The push ran the workflow through the hook, on the commit the README made.
    let data = home.join(".local/share/phantom_ci");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("runs/app/1/run.json")).unwrap())
            .unwrap();
    let head = env.git(&project, &["rev-parse", "HEAD"]);
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["trigger"], "hook", "{record}");
    assert_eq!(record["branch"], "main", "{record}");
    assert_eq!(record["commit"], head.as_str(), "{record}");
    let log = std::fs::read_to_string(data.join("runs/app/1/log")).unwrap();
    assert!(log.contains("all tests passed\n"), "{log}");
    // What `report` wrote.
    let report = home.join("ci-report");
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(index.contains("app"), "{index}");
    assert!(report.join("badge/app.svg").is_file());

    // The hook's detached worker may still be tidying up after the run: let it end before the
    // temporary directory goes.
    let config = home.join(".config/phantom_ci");
    let worker = [
        exe.to_str().unwrap(),
        "--config-dir",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "work",
    ];
    wait_for("the hook's worker to end", || !process_running(&worker));
}

fn output_is_compared_without_what_changes_from_run_to_run() {
    let home = "/tmp/phantom-test-x/home";
    assert_eq!(
        normalise("==> app #1 success in 45ms   ", home),
        normalise("==> app #1 success in 1.2s", home)
    );
    assert_eq!(
        normalise(
            "remote: phantom_ci: queued `app` (main a315766); follow it",
            home
        ),
        "remote: phantom_ci: queued `app` (main <commit>); follow it"
    );
    assert_eq!(
        normalise("added `app`: /tmp/phantom-test-x/home/git/app.git.", home),
        "added `app`: /home/me/git/app.git."
    );
    assert_eq!(
        normalise("app   main    #1   success  4f1c2ab  3s ago   1.2s", home),
        "app main #1 success <commit> <duration> ago <duration>"
    );
    // Words that only look alike stay.
    assert_eq!(
        normalise("main.toml added 10 steps", home),
        "main.toml added 10 steps"
    );
}

crate::tests! {
    the_readme_walkthrough_works_as_written,
    output_is_compared_without_what_changes_from_run_to_run,
}
