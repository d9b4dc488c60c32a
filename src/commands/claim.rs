//! `phantom_ci claim --host NAME`: the central host's side of a runner pool (SPEC §7), started by sshd
//! as the forced command of a runner's claim key
//! (`command="/usr/bin/phantom_ci claim --host runner1",restrict ssh-ed25519 …`).
//!
//! The host is the one the operator wrote into that line, never one the client names. The client
//! chooses only what its grammar allows, read from `SSH_ORIGINAL_COMMAND` (stdin is never read, no
//! shell is started):
//!
//! ```text
//! claim <repo> <branch> <commit> [<ttl seconds>]   before a run (default TTL 600)
//! renew <repo> <branch> <commit>                   while it goes on
//! done  <repo> <branch> <commit> <result>          when it ended
//! ```
//!
//! `<repo>` is a plain name as a poke's (the central repository's last path component without `.git`),
//! `<branch>` a valid branch name, `<commit>` 40 or 64 hex digits, `<result>` a run's final result.
//! The answer is one line on stdout and an exit status scripts can tell apart: 0 granted, renewed,
//! taken over or recorded; 3 refused because another host holds (or took) the claim; 4 refused because
//! the commit is done; 2 a request outside the grammar; 1 the central host could not decide (its
//! data directory). Decisions are made by [`crate::state::claims`], atomically.

use clap::Args;

use crate::commands::Context;
use crate::commands::poke::{ORIGINAL_COMMAND, plain_name};
use crate::error::{Error, ExitStatus};
use crate::state::claims::{self, Claim, Key, Outcome, Request};

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The runner host this key belongs to (set in the forced command, never by the client)
    #[arg(long, value_name = "NAME")]
    pub host: String,
}

/// The longest request accepted: three names and a few words.
const MAX_REQUEST: usize = 1024;

/// The results a `done` may report: a run's final ones.
pub const RESULTS: &[&str] = &[
    "success",
    "failure",
    "error",
    "timeout",
    "aborted",
    "rejected",
    "cancelled",
];

/// A request of the grammar, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub key: Key<'a>,
    pub request: Request,
}

pub fn run(args: ClaimArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    if !plain_name(&args.host) {
        return Err(Error::Usage(format!(
            "claim refused: `--host {}` is not a plain host name (letters, digits, `.`, `_`, `-`); \
             fix the forced command in the central account's `authorized_keys`",
            crate::describe::terminal(&args.host)
        )));
    }
    let asked = std::env::var_os(ORIGINAL_COMMAND);
    let text = match asked.as_ref().map(|a| a.to_str()) {
        None => {
            return Err(Error::Usage(format!(
                "claim refused: `{ORIGINAL_COMMAND}` is not set; `phantom_ci claim --host NAME` is \
                 the forced command of a pool runner's claim key in the central account's \
                 `authorized_keys` (`command=\"… claim --host NAME\",restrict <key>`)"
            )));
        }
        Some(None) => return Err(refused("is not UTF-8")),
        Some(Some(text)) => text,
    };
    let parsed = parse(text).map_err(refused)?;
    let (outcome, claim) = claims::apply(
        &ctx.dirs,
        parsed.key,
        &args.host,
        &parsed.request,
        claims::now(),
    )?;
    // Only the first `done` of a claim: a repeated one records nothing again.
    if outcome == Outcome::DoneRecorded {
        after_done(ctx, &claim);
    }
    println!("{outcome}");
    Ok(match outcome.code() {
        0 => ExitStatus::Success,
        code => ExitStatus::Passed(code),
    })
}

/// Called on the central host when a pooled run's final result arrived (`done`), with the claim that
/// now records it: the result goes into the commit's note (SPEC §9) of every section here that names
/// the central repository by path with `notes = true` — written by the central host, as the
/// repository's owner, never by the runners. The run's number is the runner's: the note names the
/// pool instead (`phantom_ci pool master success 5.8s runner-a`), its time the claim's. A note that
/// cannot be written is said on stderr; the claim's answer stands.
fn after_done(ctx: &Context, claim: &Claim) {
    let Ok(config) = crate::config::Config::load(&ctx.dirs.repo_toml()) else {
        return;
    };
    let Some(result) = claim
        .result
        .as_deref()
        .and_then(|r| serde_json::from_value(serde_json::Value::String(r.into())).ok())
    else {
        return;
    };
    let took = claim
        .done_at
        .unwrap_or(claim.renewed_at)
        .saturating_sub(claim.claimed_at);
    let line = crate::worker::note_line(
        "pool",
        &claim.branch,
        result,
        took * 1000,
        &claim.host,
        None,
    );
    for repo in config.repos.iter().filter(|r| r.notes) {
        let crate::config::Location::Local(path) = &repo.location else {
            continue;
        };
        if crate::pool::central_name(&repo.location).as_deref() != Some(claim.repo.as_str()) {
            continue;
        }
        if let Err(e) = crate::git::notes::append(path, &claim.commit, &line) {
            eprintln!(
                "phantom_ci: note: the result of {} was recorded, but not written to the note of {} \
                 in `{}`: {e}",
                claim.repo,
                claim.commit,
                path.display()
            );
        }
    }
}

fn refused(why: &str) -> Error {
    Error::Usage(format!(
        "claim refused: the command {why}; this key may only run `claim|renew <repo>[@<pool>] \
         <branch> <commit>` or `done <repo>[@<pool>] <branch> <commit> <result>`"
    ))
}

/// A request of the grammar (words separated by spaces and tabs, nothing else).
pub fn parse(command: &str) -> Result<Parsed<'_>, &'static str> {
    if command.len() > MAX_REQUEST {
        return Err("is too long");
    }
    let words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let (verb, repo, branch, commit, rest) = match words.as_slice() {
        [verb, repo, branch, commit, rest @ ..] => (*verb, *repo, *branch, *commit, rest),
        _ => return Err("is not `claim|renew|done <repo> <branch> <commit> …`"),
    };
    // `<repo>@<pool>`: the pool's own claims (SPEC §7); a bare `<repo>` from a runner that does not
    // say its pool.
    let (repo, pool) = match repo.split_once('@') {
        Some((repo, pool)) => (repo, Some(pool)),
        None => (repo, None),
    };
    if !plain_name(repo) {
        return Err("names something that is not a plain repository name");
    }
    if pool.is_some_and(|p| crate::config::pool::validate_pool_name(p).is_err()) {
        return Err("names something that is not a plain pool name");
    }
    if crate::config::validate_branch(branch).is_err() {
        return Err("names an invalid branch");
    }
    let hex = commit
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !(hex && matches!(commit.len(), 40 | 64)) {
        return Err("names something that is not a commit id (40 or 64 lowercase hex digits)");
    }
    let request = match (verb, rest) {
        ("claim", []) => Request::Claim {
            ttl_secs: crate::config::pool::DEFAULT_CLAIM_TTL.as_secs(),
        },
        ("claim", [ttl]) => {
            let ttl_secs = ttl
                .parse::<u64>()
                .ok()
                .filter(|t| {
                    ttl.bytes().all(|b| b.is_ascii_digit())
                        && (1..=claims::MAX_TTL_SECS).contains(t)
                })
                .ok_or("names a TTL that is not a number of seconds from 1 to 86400")?;
            Request::Claim { ttl_secs }
        }
        ("renew", []) => Request::Renew,
        ("done", [result]) if RESULTS.contains(result) => Request::Done {
            result: (*result).to_string(),
        },
        ("done", [_]) => return Err("names a result that is not a run's final result"),
        ("claim" | "renew" | "done", _) => return Err("has words its verb does not take"),
        _ => return Err("is not `claim`, `renew` or `done`"),
    };
    Ok(Parsed {
        key: Key {
            repo,
            branch,
            commit,
            pool,
        },
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_grammar_takes_claim_renew_and_done_with_checked_names() {
        fn ok(text: &str) -> Parsed<'_> {
            parse(text).unwrap()
        }
        let text = format!("claim app feature/x {C}");
        let parsed = ok(&text);
        assert_eq!(
            parsed.key,
            Key {
                repo: "app",
                branch: "feature/x",
                commit: C,
                pool: None,
            }
        );
        assert_eq!(parsed.request, Request::Claim { ttl_secs: 600 });
        // A runner of a pool says which: that pool's claims.
        let text = format!("claim app@arm-64 master {C} 60");
        assert_eq!(
            ok(&text).key,
            Key {
                repo: "app",
                branch: "master",
                commit: C,
                pool: Some("arm-64"),
            }
        );
        for bad in ["app@", "app@a/b", "app@x@y", "@x86"] {
            assert!(parse(&format!("claim {bad} master {C}")).is_err(), "{bad}");
        }
        assert_eq!(
            ok(&format!(" claim\tapp.rs master {C} 30 ")).request,
            Request::Claim { ttl_secs: 30 }
        );
        assert_eq!(ok(&format!("renew app master {C}")).request, Request::Renew);
        assert_eq!(
            ok(&format!("done app master {C} failure")).request,
            Request::Done {
                result: "failure".into()
            }
        );
        let sha256 = "a".repeat(64);
        let text = format!("renew app master {sha256}");
        assert_eq!(ok(&text).key.commit, sha256);
        let long = "a".repeat(2000);
        for bad in [
            String::new(),
            "sh".into(),
            "git-receive-pack '/srv/git/app.git'".into(),
            "git-upload-pack app.git".into(),
            format!("claim app master {C}; sh"),
            format!("claim ../x master {C}"),
            format!("claim .. master {C}"),
            format!("claim a/b master {C}"),
            format!("claim app ../x {C}"),
            format!("claim app mas..ter {C}"),
            format!("claim app master {}", &C[..39]),
            format!("claim app master {}", C.to_uppercase()),
            format!("claim app master {C}x"),
            format!("claim app master {C} 0"),
            format!("claim app master {C} 99999999"),
            format!("claim app master {C} +5"),
            format!("claim app master {C} 5 6"),
            format!("claim app master {C} host=b"),
            format!("renew app master {C} 5"),
            format!("done app master {C}"),
            format!("done app master {C} running"),
            format!("done app master {C} success extra"),
            format!("CLAIM app master {C}"),
            format!("take app master {C}"),
            format!("claim app master\n{C}"),
            "claim app master".into(),
            long,
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
