//! `phantom_ci poke`: the runner's side of a poke (SPEC §7), started by sshd as the forced command of
//! the central host's key (`command="/usr/bin/phantom_ci poke",restrict ssh-ed25519 …`).
//!
//! The client chooses nothing but a name: `poke` reads `SSH_ORIGINAL_COMMAND`, accepts only
//! `poke <name>` with `<name>` of `[A-Za-z0-9._-]` (not `.` or `..`), and refuses anything else with one
//! line, changing nothing. It never reads stdin and starts no shell. For an accepted name it does what
//! `tick` does for the sections of this runner whose `path` ends in `<name>` or `<name>.git`: fetches
//! them itself (the runner trusts only what it fetched), queues each branch tip not run yet, hands the
//! runs to a detached worker (so the ssh session ends at once and a dropped connection cannot end a
//! build), prints one line and exits. A poke that comes twice queues nothing twice: the queue and the
//! `seen` state already hold the commit.

use clap::Args;

use crate::commands::Context;
use crate::config::{Config, Location, Repo};
use crate::describe::short;
use crate::error::{Error, ExitStatus};
use crate::state::queue;
use crate::worker;

/// The variable sshd sets to the command the client asked for when a forced command runs instead.
pub const ORIGINAL_COMMAND: &str = "SSH_ORIGINAL_COMMAND";

/// The longest name a poke may carry (a path component is at most 255 bytes).
const MAX_NAME: usize = 255;

#[derive(Debug, Args)]
pub struct PokeArgs {}

pub fn run(_args: PokeArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let asked = std::env::var_os(ORIGINAL_COMMAND);
    let name = match asked.as_ref().map(|a| a.to_str()) {
        None => {
            return Err(Error::Usage(format!(
                "poke refused: `{ORIGINAL_COMMAND}` is not set; `phantom_ci poke` is the forced \
                 command of a runner's `authorized_keys` (`command=\"… poke\",restrict <key>`), and the \
                 central hook runs `ssh <runner> poke <repo>`"
            )));
        }
        Some(None) => return Err(refused("is not UTF-8")),
        Some(Some(text)) => parse(text).map_err(refused)?,
    };
    let config = Config::load(&ctx.dirs.repo_toml())?;
    let host = crate::notify::text::host_name();
    let matching: Vec<&Repo> = config
        .repos
        .iter()
        .filter(|r| names_repository(&r.location, name))
        .collect();
    if matching.is_empty() {
        println!("phantom_ci: poke `{name}` on {host}: no repo here uses it; nothing to do");
        return Ok(ExitStatus::Success);
    }
    let mut status = ExitStatus::Success;
    let mut said = Vec::new();
    for repo in &matching {
        if let Some(problem) = repo.problem() {
            eprintln!("phantom_ci: {problem}");
            said.push(format!("`{}` cannot run", repo.name));
            status = ExitStatus::RunFailed;
            continue;
        }
        // What waits to run, by branch: a commit there before this poke is "already queued". The
        // pending entries are read first: a worker moves an entry from pending to claimed, so read the
        // other way round one could be in neither when read, and be said to be queued by this poke.
        let waiting = |ctx: &Context| -> Vec<(String, String)> {
            let pending = queue::pending_entries(&ctx.dirs, &repo.name);
            pending
                .into_iter()
                .chain(queue::peek_claimed(&ctx.dirs, &repo.name))
                .map(|e| (e.branch, e.commit))
                .collect()
        };
        let before = waiting(ctx);
        match super::tick::recover_and_check(ctx, repo) {
            Ok(Some(note)) => {
                eprintln!("phantom_ci: note: {note}");
                said.push(format!("`{}` has no commit yet", repo.name));
            }
            Ok(None) => {
                let now = waiting(ctx);
                let list = |entries: Vec<&(String, String)>| {
                    entries
                        .iter()
                        .map(|(branch, commit)| {
                            format!("{} {}", crate::describe::terminal(branch), short(commit))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let (old, new): (Vec<_>, Vec<_>) = now.iter().partition(|e| before.contains(e));
                said.push(match (new.is_empty(), old.is_empty()) {
                    (false, _) => format!("queued `{}` ({})", repo.name, list(new)),
                    (true, false) => format!("already queued `{}` ({})", repo.name, list(old)),
                    (true, true) => format!("`{}` is up to date", repo.name),
                });
            }
            Err(message) => {
                eprintln!("phantom_ci: {}", super::about_repo(&repo.name, &message));
                said.push(format!("`{}` failed (see above)", repo.name));
                status = ExitStatus::RunFailed;
            }
        }
    }
    if matching
        .iter()
        .any(|r| queue::is_pending(&ctx.dirs, &r.name))
        && let Err(e) = worker::start_detached(&ctx.dirs)
    {
        eprintln!("phantom_ci: {e}; the queued work runs at the next `tick`");
        status = ExitStatus::RunFailed;
    }
    println!("phantom_ci: poke `{name}` on {host}: {}", said.join(", "));
    Ok(status)
}

fn refused(why: &str) -> Error {
    Error::Usage(format!(
        "poke refused: the command {why}; this key may only run `poke <repo>`, with <repo> of \
         letters, digits, `.`, `_` and `-`"
    ))
}

/// The name of `poke <name>`; the words may be separated and surrounded by spaces and tabs, nothing
/// else.
fn parse(command: &str) -> Result<&str, &'static str> {
    if command.len() > MAX_NAME + 16 {
        return Err("is too long");
    }
    let words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        ["poke", name] if plain_name(name) => Ok(name),
        ["poke", _] => Err("names something that is not a plain repository name"),
        ["poke"] => Err("names no repository"),
        _ => Err("is not `poke <repo>`"),
    }
}

/// `[A-Za-z0-9._-]+`, not `.` or `..`, at most [`MAX_NAME`] bytes.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `location` names the repository `name`: its last path component (after `/`, or `:` in
/// `host:path`) is `name` or `name.git`, trailing slashes aside.
fn names_repository(location: &Location, name: &str) -> bool {
    let text = match location {
        Location::Local(path) => path.to_string_lossy().into_owned(),
        Location::Url(url) => url.clone(),
    };
    let trimmed = text.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next().unwrap_or(trimmed);
    last == name || last.strip_suffix(".git") == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_poke_and_a_plain_name_is_accepted() {
        assert_eq!(parse("poke app"), Ok("app"));
        assert_eq!(parse("  poke\tapp.rs_2-x  "), Ok("app.rs_2-x"));
        for bad in [
            "",
            "poke",
            "poke ../x",
            "poke .",
            "poke ..",
            "poke a b",
            "rm -rf /",
            "poke a;id",
            "poke $(id)",
            "poke a\nid",
            "POKE app",
            "poke a/b",
            "tick",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&format!("poke {}", "a".repeat(300))).is_err());
        // A plain name by the rule: it is only compared with configured paths, never an argument.
        assert_eq!(parse("poke -x"), Ok("-x"));
    }

    #[test]
    fn a_poke_names_the_last_component_of_a_path_or_url() {
        let local = |p: &str| Location::Local(p.into());
        let url = |u: &str| Location::Url(u.into());
        assert!(names_repository(&local("/srv/git/app.git"), "app"));
        assert!(names_repository(&local("/srv/git/app.git/"), "app"));
        assert!(names_repository(&local("/srv/git/app"), "app"));
        assert!(names_repository(
            &url("ssh://git@central:2222/srv/git/app.git"),
            "app"
        ));
        assert!(names_repository(&url("git@central:app.git"), "app"));
        assert!(names_repository(
            &url("https://example.org/x/app.git"),
            "app.git"
        ));
        assert!(!names_repository(&local("/srv/git/myapp.git"), "app"));
        assert!(!names_repository(&local("/srv/git/app.git.old"), "app"));
        assert!(!names_repository(
            &url("ssh://central/srv/app/other.git"),
            "app"
        ));
    }
}
