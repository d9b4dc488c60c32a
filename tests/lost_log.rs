//! A log that cannot be written is never silent (issue 18, item 5): a real run whose log hits the
//! file size limit of phantom_ci's process (`RLIMIT_FSIZE`, which a full disk behaves like: the
//! write fails) records how many bytes of which steps were lost and why; `status --long`, `logs`,
//! the console and the report's run page say so. The result stays what the steps decided.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigHandler, Signal, signal};

use crate::support::{TestEnv, is_root, on_path};

/// The most bytes a file phantom_ci writes may reach in this test: the log's first lines fit, the
/// first step's 3,000 lines do not; `run.json` and the workspace's files fit.
const FSIZE: u64 = 8192;

#[allow(unsafe_code)]
fn a_log_that_cannot_be_written_is_said_in_the_record_status_logs_and_the_report() {
    let env = TestEnv::shared();
    env.app(
        "[0]\nrun = \"seq 1 3000\"\n[1]\nrun = \"echo second-step-output\"\n",
        "",
    );
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    // SAFETY: between fork and exec only two system calls on plain values.
    unsafe {
        command.pre_exec(|| {
            // A write past the limit then fails with EFBIG instead of killing the process.
            signal(Signal::SIGXFSZ, SigHandler::SigIgn)?;
            setrlimit(Resource::RLIMIT_FSIZE, FSIZE, FSIZE)?;
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{console}");

    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success", "the steps decide the result");
    let lost = &record["log_lost"];
    let bytes = lost["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{record:#}"));
    let log = env.log("app", 1);
    assert!(log.len() as u64 <= FSIZE);
    assert!(!log.contains("second-step-output"));
    // Everything the console shows beyond what the log has was lost (the console has it all).
    assert!(console.contains("\n3000\n") && console.contains("second-step-output"));
    assert!(bytes >= 3000 * 4 - FSIZE, "{bytes}");
    assert_eq!(lost["steps"], serde_json::json!(["0", "1"]));
    assert_eq!(lost["error"], "File too large");
    let said = "of output could not be written to the log (steps 0, 1): File too large";
    assert!(
        console
            .lines()
            .any(|l| l.starts_with("==> note: ") && l.ends_with(said)),
        "{console}"
    );

    let status = env.phantom().args(["status", "--long"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("success (log incomplete)"), "{status}");
    assert!(status.contains("log of app #1: "), "{status}");
    assert!(status.contains(said), "{status}");

    let logs = env.phantom().args(["logs", "app"]).output().unwrap();
    assert!(logs.status.success());
    let stderr = String::from_utf8_lossy(&logs.stderr);
    assert!(
        stderr.contains("this log of run #1 is incomplete") && stderr.contains(said),
        "{stderr}"
    );

    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    let page = std::fs::read_to_string(site.join("app/1.html")).unwrap();
    assert!(page.contains("The log is incomplete:"), "{page}");
    assert!(page.contains(said), "{page}");
}

/// Unmounts the test's tmpfs whatever happens.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The data directory on a full file system: a step fills it, prints 3,000 lines, and the next step
/// frees it; the log marks the gap and goes on.
fn a_full_disk_loses_the_steps_output_and_the_log_marks_the_gap() {
    if !is_root() {
        crate::skip!(
            "needs root to mount a small tmpfs as the data directory (run cargo test as root)"
        );
    }
    if !on_path("mount") {
        crate::skip!("needs mount (apt-get install util-linux)");
    }
    let env = TestEnv::shared();
    std::fs::create_dir_all(&env.data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&env.data)
        .status()
        .unwrap();
    if !mounted.success() {
        crate::skip!(
            "needs to mount a tmpfs (run as root, outside a container that refuses mounts)"
        );
    }
    let _mounted = Mounted(env.data.clone());
    env.app(
        "[0]\nrun = \"sh -c 'dd if=/dev/zero of=fill bs=64k 2>/dev/null; seq 1 3000'\"\n\
         [1]\nrun = \"sh -c 'rm fill; echo after-the-gap'\"\n",
        "",
    );
    let out = env.phantom().args(["run", "app"]).output().unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{console}");
    assert!(console.contains("\n3000\n"), "{console}");
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    let lost = &record["log_lost"];
    assert_eq!(lost["steps"], serde_json::json!(["0"]), "{record:#}");
    assert_eq!(lost["error"], "No space left on device");
    let log = env.log("app", 1);
    assert!(!log.contains("\n3000\n"));
    let gap = log
        .find("bytes of output are missing here: the log could not be written (No space left on device)]")
        .unwrap_or_else(|| panic!("no note at the gap: {log}"));
    let after = log.find("after-the-gap").unwrap();
    assert!(gap < after, "{log}");
    assert!(log.contains("could not be written to the log (step 0): No space left on device"));
}

crate::tests! {
    a_log_that_cannot_be_written_is_said_in_the_record_status_logs_and_the_report,
    a_full_disk_loses_the_steps_output_and_the_log_marks_the_gap,
}
