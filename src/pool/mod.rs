//! The runner's side of a pool (SPEC §7): asking the central host, over ssh, to claim, renew and end
//! the run of a commit. The central side is `phantom_ci claim --host NAME` ([`crate::state::claims`]
//! decides); this is the client the worker calls before, during and after a pooled run.
//!
//! Each request is one `ssh -n -T -o BatchMode=yes … [-i KEY -o IdentitiesOnly=yes] -- HOST '<verb>
//! <repo> <branch> <commit> …'`, bounded in time; the answer is its exit status and one line. Claims
//! use their own key (`claim_key`): sshd uses the first `authorized_keys` line that matches a key,
//! and the runner's fetch key is usually bound to `git-shell` already.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::config::pool::Pool;
use crate::config::{Location, Repo};
use crate::state::claims::{CODE_DONE, CODE_HELD, CODE_OK};

mod renewal;
mod run;

pub use renewal::Renewal;
pub use run::{Claimed, claim, conclude};

/// How long ssh may take to connect and do its handshake.
const CONNECT_TIMEOUT_SECS: u32 = 10;
/// How long one request may take in all; past it, ssh is killed and the request failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most bytes of an answer kept (it is one short line).
const MAX_ANSWER: usize = 512;

/// What the central host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Granted, taken over, renewed, or recorded: go on. The line says which.
    Granted(String),
    /// Another host holds the claim, or took it over: this host does not run the commit (now).
    Refused(String),
    /// The commit is done (by whichever host): nothing to run.
    Done(String),
    /// No answer to go by: ssh failed, the request was refused as malformed, or the central host could
    /// not decide. Why, in words.
    Failed(String),
}

/// What a run asks of the central host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask<'a> {
    Claim,
    Renew,
    Done(&'a str),
}

/// The name the central host knows the repo by: the last component of its path or URL without
/// `.git` (as a poke's). `None` when that is not a plain name.
pub fn central_name(location: &Location) -> Option<String> {
    let text = match location {
        Location::Local(path) => path.to_string_lossy().into_owned(),
        Location::Url(url) => url.clone(),
    };
    let trimmed = text.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next().unwrap_or(trimmed);
    let name = last.strip_suffix(".git").unwrap_or(last);
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plain.then(|| name.to_string())
}

/// The request's text: `<verb> <repo>@<pool> <branch> <commit> …`.
pub fn request(pool: &Pool, name: &str, branch: &str, commit: &str, ask: Ask) -> String {
    // The pool's own claims: another pool of the same central repository runs the commit too.
    let name = format!("{name}@{}", pool.name);
    match ask {
        Ask::Claim => format!(
            "claim {name} {branch} {commit} {}",
            pool.ttl.as_secs().max(1)
        ),
        Ask::Renew => format!("renew {name} {branch} {commit}"),
        Ask::Done(result) => format!("done {name} {branch} {commit} {result}"),
    }
}

/// The ssh command of a request: its arguments, without the program.
pub fn ssh_args(pool: &Pool, request: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-n",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        &format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"),
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(key) = &pool.key {
        args.push("-i".into());
        args.push(key.to_string_lossy().into_owned());
        args.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
    }
    args.extend(pool.claim.ssh_args());
    args.push(request.to_string());
    args
}

/// Asks the central host of `repo`'s pool about `commit` of `branch`.
pub fn ask(repo: &Repo, branch: &str, commit: &str, ask: Ask) -> Answer {
    let Some(pool) = &repo.pool else {
        return Answer::Failed(format!("repo `{}` is in no pool", repo.name));
    };
    let Some(name) = central_name(&repo.location) else {
        return Answer::Failed(format!(
            "the last component of `{}` is not a plain name the central host can be asked about \
             (letters, digits, `.`, `_`, `-`)",
            repo.location
        ));
    };
    let text = request(pool, &name, branch, commit, ask);
    let mut command = Command::new("ssh");
    command
        .args(ssh_args(pool, &text))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for variable in crate::git::mirror::GIT_HOOK_VARIABLES {
        command.env_remove(variable);
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Answer::Failed(format!("cannot start `ssh` (install openssh-client): {e}"));
        }
    };
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(REQUEST_TIMEOUT) {
        Ok(output) => output,
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Answer::Failed(format!(
                "`ssh {}` gave no answer within {}s",
                pool.claim,
                REQUEST_TIMEOUT.as_secs()
            ));
        }
    };
    let output = match output {
        Ok(output) => output,
        Err(e) => return Answer::Failed(format!("cannot wait for `ssh`: {e}")),
    };
    let line = first_line(&output.stdout);
    let code = output.status.code();
    let known = |prefixes: &[&str]| prefixes.iter().any(|p| line.starts_with(p));
    match code {
        Some(c)
            if c == i32::from(CODE_OK)
                && known(&["granted", "taken over", "renewed", "done recorded"]) =>
        {
            Answer::Granted(line)
        }
        Some(c) if c == i32::from(CODE_HELD) && known(&["refused: "]) => Answer::Refused(line),
        Some(c) if c == i32::from(CODE_DONE) && known(&["refused: done"]) => Answer::Done(line),
        _ => {
            let said = match first_line(&output.stderr) {
                empty if empty.is_empty() => line,
                said => said,
            };
            Answer::Failed(format!(
                "`ssh {} '{text}'` failed ({}){}",
                pool.claim,
                code.map_or_else(
                    || "killed by a signal".to_string(),
                    |c| format!("exit status {c}")
                ),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ))
        }
    }
}

/// The first line of `bytes`, at most [`MAX_ANSWER`] bytes, made safe for a terminal.
fn first_line(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_ANSWER)];
    let text = String::from_utf8_lossy(bytes);
    crate::describe::terminal(text.lines().next().unwrap_or("").trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ssh_url::SshTarget;

    #[test]
    fn the_central_name_is_the_last_component_without_git() {
        let url = |u: &str| Location::Url(u.into());
        assert_eq!(
            central_name(&url("ssh://git@central:2222/srv/git/app.git")).as_deref(),
            Some("app")
        );
        assert_eq!(
            central_name(&url("git@central:app.git/")).as_deref(),
            Some("app")
        );
        assert_eq!(
            central_name(&Location::Local("/srv/git/site".into())).as_deref(),
            Some("site")
        );
        assert_eq!(central_name(&url("ssh://c/srv/odd name.git")), None);
        assert_eq!(central_name(&url("ssh://c/srv/..")), None);
    }

    #[test]
    fn a_request_is_one_ssh_with_the_claim_key_only() {
        let pool = Pool {
            name: "x86".into(),
            claim: SshTarget::parse_as("ssh://git@central:2222", "").unwrap(),
            ttl: Duration::from_secs(30),
            key: Some("/home/ci/.ssh/claim".into()),
        };
        let c = "0123456789abcdef0123456789abcdef01234567";
        let text = request(&pool, "app", "main", c, Ask::Claim);
        assert_eq!(text, format!("claim app@x86 main {c} 30"));
        assert_eq!(
            request(&pool, "app", "main", c, Ask::Done("success")),
            format!("done app@x86 main {c} success")
        );
        let args = ssh_args(&pool, &text);
        let joined = args.join(" ");
        assert!(joined.starts_with("-n -T -o BatchMode=yes"), "{joined}");
        assert!(
            joined.contains("-i /home/ci/.ssh/claim -o IdentitiesOnly=yes"),
            "{joined}"
        );
        assert!(
            joined.ends_with(&format!(
                "-p 2222 -l git -- central claim app@x86 main {c} 30"
            )),
            "{joined}"
        );
        // The request is one argument after `--`: ssh passes it as the command, never as options.
        assert_eq!(args.last(), Some(&text));
    }
}
