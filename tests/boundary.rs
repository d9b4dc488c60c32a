//! The step boundary (issue #8, SPEC §4.8): each test performs an attack a pusher's workflow could
//! try and shows it fails — a step typing into the operator's terminal, reading a descriptor
//! phantom_ci inherited, leaving the run with a cleared environment while phantom_ci is SIGKILLed —
//! and that Ctrl-C in the operator's terminal still ends the run. Steps run as `nobody` when the tests
//! run as root (CI), else as the current user.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::libc;

use crate::support::{
    TestEnv, TestRepo, current_user, has_bwrap, has_line, is_root, needs_root, process_running,
    stdout_of, wait_for,
};

/// A python3 every user can run (the pyenv shims under `/root` are not), or a skip.
#[allow(clippy::print_stderr)]
pub(crate) fn system_python() -> Option<&'static str> {
    let found = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    // `.ci/newcomer` takes python3 off PATH: then it is out of reach here too.
    if found.is_none() || !crate::support::on_path("python3") {
        crate::skip!("needs python3 in /usr/bin or /usr/local/bin (apt-get install python3)");
    }
    found
}

/// The step user: `nobody` when the tests run as root, else the current user.
pub(crate) fn step_user() -> String {
    if is_root() {
        "nobody".into()
    } else {
        current_user()
    }
}

/// What a hostile step tries against the terminal and the descriptors, and what it finds. It types
/// `ZQZQ` and a newline — a whole line, as an attacker would type a command.
pub(crate) const PROBE: &str = r#"
import errno, fcntl, os, sys, termios

def inject(fd):
    try:
        for c in b"ZQ" * 2 + b"\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        return "INJECTED"
    except OSError as e:
        return "refused " + errno.errorcode[e.errno]

for path in ["/dev/tty"] + sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        print("terminal %s: cannot open, %s" % (path, errno.errorcode[e.errno]))
        continue
    print("terminal %s: OPENED, %s" % (path, inject(fd)))
    os.close(fd)
stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
print("session leader: %s, tty_nr: %s" % (int(stat[3]) == os.getpid(), stat[4]))
print("session: %s" % stat[3])
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("descriptors: " + " ".join(str(fd) for fd in range(4096) if is_open(fd)))
try:
    print("fd 7: READ " + os.read(7, 100).decode())
except OSError as e:
    print("fd 7: " + errno.errorcode[e.errno])
"#;

const SECRET: &str = "the-secret-of-fd-7";

/// A pseudo-terminal: the test holds the master (the operator's screen and keyboard) and a slave.
pub(crate) struct Pty {
    pub(crate) master: File,
    pub(crate) slave: File,
    pub(crate) path: PathBuf,
}

#[allow(unsafe_code)]
pub(crate) fn open_pty() -> Pty {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")
        .unwrap();
    let mut number: libc::c_uint = 0;
    // SAFETY: plain ioctls on a descriptor we own, with a pointer to a live integer.
    unsafe {
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        assert_eq!(
            libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &raw mut number),
            0
        );
    }
    let path = PathBuf::from(format!("/dev/pts/{number}"));
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .unwrap();
    Pty {
        master,
        slave,
        path,
    }
}

/// Bytes waiting to be read on the terminal (whole lines: it is in canonical mode).
#[allow(unsafe_code)]
pub(crate) fn pending_input(slave: &File) -> libc::c_int {
    let mut n: libc::c_int = -1;
    // SAFETY: FIONREAD writes one integer through the pointer.
    assert_eq!(
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::FIONREAD, &raw mut n) },
        0
    );
    n
}

/// Starts `command` as an operator would in that terminal: leader of a new session whose
/// controlling terminal is the pty, with stdin, stdout and stderr on it, and — with `fd7` — a file
/// open on descriptor 7 (as `phantom_ci run app 7<secret` leaves it).
#[allow(unsafe_code)]
pub(crate) fn spawn_in_terminal(mut command: Command, pty: &Pty, fd7: Option<&File>) -> Child {
    command
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    let fd7 = fd7.map(|f| f.as_raw_fd());
    // SAFETY: between fork and exec only system calls (setsid, ioctl, dup2, fcntl) on plain integers.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 onto itself would keep close-on-exec: then clear it.
            let inherited = match fd7 {
                Some(7) => libc::fcntl(7, libc::F_SETFD, 0) == 0,
                Some(fd) => libc::dup2(fd, 7) == 7,
                None => true,
            };
            if !inherited {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

/// Everything the terminal shows, collected by a thread until the last slave closes.
pub(crate) struct Screen {
    text: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Screen {
    pub(crate) fn watch(pty: &Pty) -> Screen {
        let text = Arc::new(Mutex::new(Vec::new()));
        let mut master = pty.master.try_clone().unwrap();
        let sink = Arc::clone(&text);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once no slave is open any more.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Screen { text, reader }
    }

    pub(crate) fn now(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Everything, once `slave` (the last one open) is closed.
    pub(crate) fn finish(self, slave: File) -> String {
        drop(slave);
        self.reader.join().unwrap();
        let text = self.text.lock().unwrap();
        String::from_utf8_lossy(&text).replace("\r\n", "\n")
    }
}

/// A repo whose step runs [`PROBE`], given the terminal's path to try as well.
fn probe_repo<'a>(env: &'a TestEnv, python: &str, pty: &Path) -> TestRepo<'a> {
    let repo = env.repo("app");
    repo.write("probe.py", PROBE);
    repo.workflow(
        "master",
        &format!("[0]\nrun = \"{python} probe.py {}\"\n", pty.display()),
    );
    repo.commit_and_push("probe");
    repo
}

/// Checks what [`PROBE`] printed: no terminal, nothing typed, a session of its own, descriptors 0–2.
fn assert_probe_held(stdout: &str, pty: &Path, sandboxed: bool) {
    assert!(
        has_line(stdout, "terminal /dev/tty: cannot open, ENXIO"),
        "{stdout}"
    );
    let pty_line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("terminal {}:", pty.display())))
        .unwrap_or_else(|| panic!("no line about the pty: {stdout}"));
    // `nobody` cannot open the operator's pty at all; a step of the operator's own user can (it is
    // theirs), but without it as its controlling terminal TIOCSTI is refused.
    assert!(
        pty_line.ends_with("cannot open, EACCES")
            || pty_line.ends_with("cannot open, ENOENT")
            || pty_line.ends_with("OPENED, refused EPERM"),
        "{pty_line}"
    );
    assert!(!stdout.contains("INJECTED"), "{stdout}");
    if sandboxed {
        // bwrap's `--new-session` makes the sandbox's init (pid 1 there) lead a new session, without
        // a terminal, and the step is in it.
        assert!(
            has_line(stdout, "session leader: False, tty_nr: 0"),
            "{stdout}"
        );
        assert!(has_line(stdout, "session: 1"), "{stdout}");
    } else {
        assert!(
            has_line(stdout, "session leader: True, tty_nr: 0"),
            "{stdout}"
        );
    }
    assert!(has_line(stdout, "descriptors: 0 1 2"), "{stdout}");
    assert!(has_line(stdout, "fd 7: EBADF"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
}

/// Runs `phantom_ci run app` in a terminal with fd 7 open on a secret; checks the terminal afterwards.
#[allow(unsafe_code)]
fn probe_in_terminal(env: &TestEnv, extra: &str) {
    let Some(python) = system_python() else {
        return;
    };
    let pty = open_pty();
    let repo = probe_repo(env, python, &pty.path);
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), extra));
    let secret = env.root().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let secret = File::open(&secret).unwrap();

    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    let status = spawn_in_terminal(command, &pty, Some(&secret))
        .wait()
        .unwrap();
    // Had a step typed into the terminal, its line would wait here for the operator's shell.
    let typed = pending_input(&pty.slave);
    let control = if is_root() {
        // The check can see typed input: root (CAP_SYS_ADMIN) types a line into the terminal.
        for c in b"ok\n" {
            // SAFETY: TIOCSTI reads one byte through the pointer.
            assert_eq!(
                unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSTI, std::ptr::from_ref(c)) },
                0
            );
        }
        Some(pending_input(&pty.slave))
    } else {
        None
    };
    let shown = screen.finish(pty.slave);
    assert!(status.success(), "{shown}");
    assert_eq!(
        typed, 0,
        "a step typed into the operator's terminal: {shown}"
    );
    if let Some(control) = control {
        assert_eq!(control, 3, "the terminal's input queue shows typed lines");
    }
    assert!(!shown.contains("ZQZQ"), "echoed typed input: {shown}");
    let sandboxed = extra.contains("bwrap");
    assert_probe_held(&shown, &pty.path, sandboxed);
    assert_probe_held(&env.log("app", 1), &pty.path, sandboxed);
}

fn a_step_cannot_open_the_operators_terminal_type_into_it_or_read_inherited_descriptors() {
    probe_in_terminal(&TestEnv::shared(), "");
}

fn a_sandboxed_step_has_no_terminal_and_only_three_descriptors_either() {
    if !has_bwrap() {
        return;
    }
    // The sandbox gives steps an empty /tmp of their own: the test lives elsewhere.
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    probe_in_terminal(&env, "sandbox = \"bwrap\"");
}

fn ctrl_c_in_the_operators_terminal_aborts_the_run_and_kills_its_processes() {
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"sh -c 'setsid sleep 1035 & echo up; exec sleep 1034'\"\n[1]\nrun = \"touch never\"\n",
    );
    repo.commit_and_push("long");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), ""));
    let pty = open_pty();
    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    let mut child = spawn_in_terminal(command, &pty, None);
    wait_for("the step to start", || screen.now().contains("up\r\n"));
    wait_for("the step's sleep", || process_running(&["sleep", "1034"]));
    (&pty.master).write_all(b"\x03").unwrap();
    let status = child.wait().unwrap();
    let shown = screen.finish(pty.slave);
    assert_eq!(status.code(), Some(1), "{shown}");
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "aborted", "{shown}");
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("SIGINT"), "{message}");
    assert_eq!(record["steps"][1]["result"], "skipped");
    for duration in ["1034", "1035"] {
        assert!(
            !process_running(&["sleep", duration]),
            "a `sleep {duration}` outlived the run"
        );
    }
}

fn a_descriptor_inherited_by_tick_does_not_reach_the_step() {
    let env = TestEnv::shared();
    let secret = env.root().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"sh -c 'ls /proc/$$/fd'\"\n[1]\nrun = \"sh -c 'cat /dev/fd/7 || echo fd7-closed'\"\n",
    );
    repo.commit_and_push("fds");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), ""));
    let phantom = env.phantom_std();
    // As `phantom_ci tick 7<secret` in a shell.
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec 7<\"$1\"; shift; exec \"$@\"")
        .arg("sh")
        .arg(&secret)
        .arg(phantom.get_program())
        .arg("tick")
        .env_clear()
        .envs(
            phantom
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string()))),
        )
        .current_dir(env.root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The shell lists its own descriptors while `ls` runs: those the step was given.
    let listed: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("==> [0]"))
        .skip(1)
        .take_while(|l| !l.starts_with("==> "))
        .collect();
    assert_eq!(listed, ["0", "1", "2"], "{stdout}");
    assert!(has_line(&stdout, "fd7-closed"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
}

/// The mount point of the cgroup2 hierarchy, and this process's cgroup directory in it, when root may
/// create cgroups there; else a skip.
#[allow(clippy::print_stderr)]
pub(crate) fn writable_cgroup2() -> Option<PathBuf> {
    if !needs_root() {
        return None;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        right.starts_with("cgroup2 ").then(|| PathBuf::from(point))
    });
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("0::")
                .map(|p| p.trim_start_matches('/').to_string())
        });
    // A name of its own per call: tests running at the same time probe at the same time.
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let probe_number = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = mount.as_ref().zip(own).map(|(m, own)| {
        m.join(own).join(format!(
            "phantom-test-{}-{probe_number}",
            std::process::id()
        ))
    });
    let writable = probe
        .as_ref()
        .is_some_and(|p| std::fs::create_dir(p).is_ok() && std::fs::remove_dir(p).is_ok());
    if !writable {
        crate::skip!(
            "needs a cgroup2 hierarchy root can create cgroups in (run as root on a kernel with cgroup v2)"
        );
    }
    mount.filter(|_| writable)
}

/// The unified-hierarchy line of `/proc/<pid>/cgroup`: the cgroup's path.
fn cgroup_of(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string()
}

/// Should the test fail half-way, what it started does not stay behind.
struct Leftovers {
    phantom: Child,
    pid_files: Vec<PathBuf>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = self.phantom.kill();
        let _ = self.phantom.wait();
        for pid in self.pid_files.iter().filter_map(|f| read_pid(f)) {
            // Only if it still is one of the test's sleeps (a pid may have been reused).
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !cmdline.starts_with(b"sleep\x00104") {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn read_pid(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid = text.strip_suffix('\n')?;
    pid.parse::<u32>().ok().map(|_| pid.to_string())
}

fn a_process_that_cleared_its_environment_dies_with_the_run_cgroup_after_phantom_is_sigkilled() {
    escaped_process_dies_with_the_run_cgroup(false);
}

/// The same where the step was forked and moved into its cgroup (`clone3` refused).
fn the_same_holds_for_a_step_moved_into_its_cgroup() {
    escaped_process_dies_with_the_run_cgroup(true);
}

/// With `fallback`, the steps are forked and moved into their cgroup (`PHANTOM_CI_CLONE_INTO_CGROUP=0`)
/// instead of being born in it: `cgroup.kill` ends them all the same.
fn escaped_process_dies_with_the_run_cgroup(fallback: bool) {
    let Some(mount) = writable_cgroup2() else {
        return;
    };
    let env = TestEnv::shared();
    let drop = env.root().join("drop");
    std::fs::create_dir(&drop).unwrap();
    std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o777)).unwrap();
    let drop_shown = drop.display();
    let repo = env.repo("app");
    // The attack: a process in a session of its own, with an empty environment (so no
    // PHANTOM_CI_WORKSPACE to be found by), started in the background; then phantom_ci is SIGKILLed.
    repo.workflow(
        "master",
        &format!(
            r#"[0]
run = '''sh -c 'test -e {drop_shown}/second && exit 0; env -i setsid sh -c "echo \$\$ > {drop_shown}/escaped; exec sleep 1041" & echo $$ > {drop_shown}/step; exec sleep 1042' '''
"#
        ),
    );
    repo.commit_and_push("escape");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let mut phantom = env.phantom_std();
    if fallback {
        phantom.env("PHANTOM_CI_CLONE_INTO_CGROUP", "0");
    }
    let phantom = phantom
        .args(["run", "app"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut phantom = Leftovers {
        phantom,
        pid_files: vec![drop.join("escaped"), drop.join("step")],
    };
    let (mut escaped, mut step) = (None, None);
    wait_for("both processes of the step", || {
        escaped = read_pid(&drop.join("escaped"));
        step = read_pid(&drop.join("step"));
        escaped.is_some() && step.is_some()
    });
    let (escaped, step) = (escaped.unwrap(), step.unwrap());
    wait_for("the escaped process to become `sleep 1041`", || {
        process_running(&["sleep", "1041"])
    });
    // While the run goes on, the step and what it started are in the step's cgroup, below the
    // run's.
    let step_cgroup = cgroup_of(&escaped);
    let cgroup = step_cgroup
        .strip_suffix("/step-0")
        .unwrap_or_else(|| panic!("{step_cgroup}"))
        .to_string();
    assert!(
        cgroup.contains("/phantom_ci-") && cgroup.ends_with("-app-1"),
        "{cgroup}"
    );
    assert_eq!(cgroup_of(&step), step_cgroup);
    assert_ne!(cgroup_of(&phantom.phantom.id().to_string()), cgroup);
    let dir = mount.join(cgroup.trim_start_matches('/'));
    assert!(dir.is_dir(), "{}", dir.display());
    let environ = std::fs::read(format!("/proc/{escaped}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("PHANTOM_CI_"),
        "the environment was cleared: {}",
        String::from_utf8_lossy(&environ)
    );

    phantom.phantom.kill().unwrap();
    phantom.phantom.wait().unwrap();
    // Nothing could act at that moment: the escaped process lives on.
    assert!(process_running(&["sleep", "1041"]));
    std::fs::write(drop.join("second"), "").unwrap();
    env.phantom().arg("tick").assert().success();
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "aborted");
    wait_for("the escaped process to be gone", || {
        !process_running(&["sleep", "1041"]) && !process_running(&["sleep", "1042"])
    });
    assert!(!dir.exists(), "the dead run's cgroup was removed");
    assert_eq!(env.run_json("app", 2)["result"], "success");
}

fn every_step_runs_in_a_cgroup_of_its_own_below_the_runs_which_is_gone_after_the_run() {
    let Some(mount) = writable_cgroup2() else {
        return;
    };
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"sh -c 'env -i setsid sleep 1043 & grep ^0:: /proc/self/cgroup'\"\n[1]\nrun = \"grep ^0:: /proc/self/cgroup\"\n",
    );
    repo.commit_and_push("cgroup");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("0::"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let run = lines[0].strip_suffix("/step-0").expect(&stdout);
    assert_eq!(
        lines[1],
        format!("{run}/step-1"),
        "each step in its own cgroup"
    );
    assert!(
        run.contains("/phantom_ci-") && run.ends_with("-app-1"),
        "{stdout}"
    );
    assert!(!mount.join(run.trim_start_matches('/')).exists());
    assert!(!process_running(&["sleep", "1043"]));
}

/// A step runs in a cgroup holding its processes only: the next step of a plain workflow takes over
/// the cgroup of a step that ended by itself and left nothing in it; a step that left a process
/// behind keeps its cgroup (until the run ends, which kills it), and so does a timed-out one.
fn a_step_takes_over_the_empty_cgroup_of_the_step_before_never_one_with_a_process_left() {
    steps_take_over_empty_cgroups(false);
}

/// The same where each step is forked and moved into its cgroup (`clone3` refused).
fn the_same_holds_for_steps_moved_into_a_cgroup_taken_over() {
    steps_take_over_empty_cgroups(true);
}

fn steps_take_over_empty_cgroups(fallback: bool) {
    let Some(mount) = writable_cgroup2() else {
        return;
    };
    let env = TestEnv::shared();
    let repo = env.repo("app");
    let show = "grep ^0:: /proc/self/cgroup";
    // Its own number per variant: the two run side by side.
    let left = if fallback { "1046" } else { "1044" };
    let list = format!(
        "ls {}$(dirname $(grep ^0:: /proc/self/cgroup | cut -c4-))",
        mount.display()
    );
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = \"sh -c 'setsid sleep {left} & {show}'\"\n[1]\nrun = \"{show}\"\n\
             [2]\nrun = \"{show}\"\n[3]\nrun = \"sh -c '{list}'\"\n\
             [4]\nrun = \"sleep 1045\"\ntimeout = \"1s\"\n[5]\nrun = \"{show}\"\nalways = true\n"
        ),
    );
    repo.commit_and_push("cgroups");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let mut phantom = env.phantom();
    if fallback {
        phantom.env("PHANTOM_CI_CLONE_INTO_CGROUP", "0");
    }
    let out = phantom.args(["run", "app"]).assert().failure();
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("0::"))
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let run = lines[0].strip_suffix("/step-0").expect(&stdout);
    assert_eq!(lines[1], format!("{run}/step-1"), "step 0 left a process");
    assert_eq!(lines[2], format!("{run}/step-1"), "step 1 left nothing");
    assert_eq!(
        lines[3],
        format!("{run}/step-5"),
        "after a timeout: {stdout}"
    );
    let listed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("step-")).collect();
    assert_eq!(listed, ["step-0", "step-1"], "{stdout}");
    assert!(!mount.join(run.trim_start_matches('/')).exists());
    assert!(!process_running(&["sleep", left]), "killed with the run");
}

crate::tests! {
    a_step_cannot_open_the_operators_terminal_type_into_it_or_read_inherited_descriptors,
    a_sandboxed_step_has_no_terminal_and_only_three_descriptors_either,
    ctrl_c_in_the_operators_terminal_aborts_the_run_and_kills_its_processes,
    a_descriptor_inherited_by_tick_does_not_reach_the_step,
    a_process_that_cleared_its_environment_dies_with_the_run_cgroup_after_phantom_is_sigkilled,
    the_same_holds_for_a_step_moved_into_its_cgroup,
    every_step_runs_in_a_cgroup_of_its_own_below_the_runs_which_is_gone_after_the_run,
    a_step_takes_over_the_empty_cgroup_of_the_step_before_never_one_with_a_process_left,
    the_same_holds_for_steps_moved_into_a_cgroup_taken_over,
}
