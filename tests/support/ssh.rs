//! OpenSSH on loopback for the tests of runner hosts and pools (`scale_out.rs`, `pool.rs`): local
//! users made for a test, their keys, an `sshd` with its own config and `authorized_keys` per user, and
//! commands run as one of those users.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use crate::support::{self, wait_for};

/// `useradd`, `usermod` and `userdel` lock `/etc/passwd` and give up at once when another holds it:
/// the tests that make users (they run side by side) take turns.
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs an account command (`useradd`, `usermod`, `userdel`) while no other test runs one, again a
/// few times if the account files were locked by something else; whether it succeeded.
fn account(command: &mut StdCommand) -> bool {
    let _turn = ACCOUNTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..20 {
        let out = command.output().unwrap();
        if out.status.success() {
            return true;
        }
        // 1: the password file could not be updated (locked), 10: the group file; anything else is final.
        if !matches!(out.status.code(), Some(1 | 10)) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

pub fn bin() -> PathBuf {
    PathBuf::from(assert_cmd::cargo::cargo_bin!("phantom_ci"))
}

/// A local user made for the test (removed at the end), or found from an earlier run of it.
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    created: bool,
}

/// The test's users; dropping ends their processes (by pid) and removes the users it created.
pub struct Users(pub Vec<User>);

impl Users {
    pub fn create(root: &Path, names: &[&str]) -> Users {
        let mut users = Users(Vec::new());
        for name in names {
            let home = root.join("homes").join(name);
            std::fs::create_dir_all(home.join(".ssh")).unwrap();
            let existing = nix::unistd::User::from_name(name).unwrap();
            let created = existing.is_none();
            let made = if created {
                account(
                    StdCommand::new("useradd")
                        .args(["-M", "-U", "-s", "/bin/sh", "-d"])
                        .arg(&home)
                        .arg(name),
                )
            } else {
                account(
                    StdCommand::new("usermod")
                        .args(["-s", "/bin/sh", "-d"])
                        .arg(&home)
                        .arg(name),
                )
            };
            assert!(made, "cannot make user {name}");
            // `useradd` makes a locked account, which sshd refuses without PAM (NOTES.md).
            assert!(account(StdCommand::new("usermod").args(["-p", "*", name])));
            let user = nix::unistd::User::from_name(name).unwrap().unwrap();
            users.0.push(User {
                name: name.to_string(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                home,
                created,
            });
        }
        users
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for _ in 0..50 {
            let left = processes_of(&self.0);
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for user in self.0.iter().filter(|u| u.created) {
            let _ = account(StdCommand::new("userdel").arg(&user.name));
        }
    }
}

/// The pids of the processes that run as one of `users`.
pub fn processes_of(users: &[User]) -> Vec<i32> {
    let uids: Vec<u32> = users.iter().map(|u| u.uid).collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if uid.is_some_and(|u| uids.contains(&u)) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether a process whose arguments include every one of `words` exists (zombies aside).
pub fn running_with(words: &[&str]) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        });
        !zombie && words.iter().all(|w| args.iter().any(|a| a == w))
    })
}

/// `program args…` as `user`, with the test's fixed environment and the user's HOME.
pub fn as_user(user: &User, program: &Path, args: &[&str]) -> StdCommand {
    let mut cmd = StdCommand::new("setpriv");
    cmd.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .envs(support::fixed_env(&user.home))
        .env("USER", &user.name)
        .current_dir(&user.home);
    cmd
}

pub fn chown_tree(path: &Path, user: &User) {
    let status = StdCommand::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn keygen(path: &Path, comment: &str) -> String {
    let status = StdCommand::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    public.trim().to_string()
}

/// `sshd` on a free loopback port with its own host key, config and `authorized_keys/<user>`; killed
/// when dropped.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    host_key: String,
}

impl Sshd {
    pub fn start(sshd: &Path, dir: &Path, users: &[&str]) -> Sshd {
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        // Privilege separation needs it (NOTES.md).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = keygen(&dir.join("host_key"), "test host");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin no\nStrictModes no\n\
             AuthorizedKeysFile {dir}/keys/%u\nAllowUsers {}\nLogLevel VERBOSE\n",
            users.join(" "),
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let child = StdCommand::new(sshd)
            .arg("-D")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut sshd = Sshd {
            child,
            port,
            dir: dir.to_path_buf(),
            host_key,
        };
        wait_for("sshd to listen", || {
            assert!(
                sshd.child.try_wait().unwrap().is_none(),
                "sshd exited: {}",
                sshd.log()
            );
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        sshd
    }

    pub fn authorize(&self, user: &User, lines: &str) {
        std::fs::write(self.dir.join("keys").join(&user.name), lines).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The known_hosts line for this server.
    pub fn known_host(&self) -> String {
        let mut fields = self.host_key.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` with stdin from /dev/null and returns what it did.
pub fn output_of(mut cmd: StdCommand) -> std::process::Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// A runner host: a user with its own config and data dirs.
pub struct Runner<'a> {
    pub user: &'a User,
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Runner<'_> {
    pub fn phantom(&self, args: &[&str]) -> StdCommand {
        let mut all = vec![
            "--config-dir",
            self.config.to_str().unwrap(),
            "--data-dir",
            self.data.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        as_user(self.user, &bin(), &all)
    }

    pub fn runs(&self, repo: &str) -> Vec<u64> {
        crate::support::runs_in(&self.data, repo)
    }

    pub fn wait_for_run(&self, repo: &str, run: u64) -> serde_json::Value {
        let path = self.data.join(format!("runs/{repo}/{run}/run.json"));
        let mut record = serde_json::Value::Null;
        wait_for(
            &format!("run {run} of {repo} on {}", self.user.name),
            || {
                record = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(serde_json::Value::Null);
                record["result"].is_string() && record["result"] != "running"
            },
        );
        record
    }

    /// The forced command of the central user's key in this runner's authorized_keys.
    pub fn forced(&self, central_key: &str) -> String {
        format!(
            "command=\"{} --config-dir {} --data-dir {} poke\",restrict {central_key}\n",
            bin().display(),
            self.config.display(),
            self.data.display()
        )
    }
}
