//! `require_signed = true` (SPEC §4.6): a commit runs only if it carries an SSH signature that
//! `git verify-commit` accepts against the operator's `allowed_signers` file. OpenPGP and X.509
//! signatures are refused before git sees them: they would be checked against some keyring, not the
//! file the operator named. A signature vouches for a commit, not for a branch or a time: an old signed
//! commit can be pushed again and runs again.

use std::path::Path;
use std::process::{Command, Stdio};

use git2::{Oid, Repository};

use crate::describe;
use crate::isolation::DEFAULT_PATH;
use crate::isolation::reaper;

/// Why a commit does not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The commit is not acceptable (result `rejected`).
    Rejected(String),
    /// The check itself could not be made (result `error`).
    Error(String),
}

const SSH_SIGNATURE: &str = "-----BEGIN SSH SIGNATURE-----";

/// Checks `commit` of `source`. Returns git's line naming the signer.
pub fn verify(source: &Repository, commit: Oid, allowed_signers: &Path) -> Result<String, Refusal> {
    let short = &commit.to_string()[..7];
    let signature = match source.extract_signature(&commit, None) {
        Ok((signature, _)) => String::from_utf8_lossy(&signature).into_owned(),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Err(Refusal::Rejected(format!(
                "commit {short} is not signed; `require_signed = true` runs only commits with an \
                 SSH signature by a key in `{}`",
                allowed_signers.display()
            )));
        }
        Err(e) => {
            return Err(Refusal::Error(format!(
                "cannot read the signature of commit {short}: {}",
                e.message()
            )));
        }
    };
    if !signature.trim_start().starts_with(SSH_SIGNATURE) {
        let kind = if signature.contains("BEGIN PGP SIGNATURE") {
            "an OpenPGP"
        } else if signature.contains("BEGIN SIGNED MESSAGE") {
            "an X.509"
        } else {
            "an unknown kind of"
        };
        return Err(Refusal::Rejected(format!(
            "commit {short} carries {kind} signature; only SSH signatures by a key in `{}` are \
             accepted",
            allowed_signers.display()
        )));
    }
    if let Err(e) = std::fs::File::open(allowed_signers) {
        return Err(Refusal::Error(format!(
            "cannot read `allowed_signers` `{}`: {e}",
            allowed_signers.display()
        )));
    }
    let (ok, text) = git_verify_commit(source.path(), commit, allowed_signers)?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = describe::terminal(&lines.join("; "));
    if ok {
        Ok(text)
    } else {
        Err(Refusal::Rejected(format!(
            "the signature of commit {short} is not accepted with `{}`: {text}",
            allowed_signers.display()
        )))
    }
}

/// Runs `git verify-commit` with nothing from the environment or any config but the repository's own,
/// OpenPGP and X.509 disabled, and only fully trusted (principal-matched) SSH signatures accepted.
fn git_verify_commit(
    git_dir: &Path,
    commit: Oid,
    allowed_signers: &Path,
) -> Result<(bool, String), Refusal> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut signers = std::ffi::OsString::from("gpg.ssh.allowedSignersFile=");
    signers.push(allowed_signers);
    let mut command = Command::new("git");
    command
        .args(["-c", "gpg.program=false", "-c", "gpg.x509.program=false"])
        .args([
            "-c",
            "gpg.ssh.program=ssh-keygen",
            "-c",
            "gpg.minTrustLevel=fully",
        ])
        .args(["-c", "gpg.ssh.revocationFile=", "-c", "safe.directory=*"])
        .arg("-c")
        .arg(signers)
        .args(["verify-commit", &commit.to_string()])
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/nonexistent")
        .env("LC_ALL", "C")
        .env("GIT_DIR", git_dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(super::UNTRUSTED_REPOSITORY_GIT_ENV)
        .current_dir(git_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = reaper::spawn(&mut command).map_err(|e| {
        Refusal::Error(format!(
            "cannot run `git verify-commit` to check signatures: {e}"
        ))
    })?;
    let pid = child.id();
    let output = child.wait_with_output();
    reaper::finished(pid);
    let output =
        output.map_err(|e| Refusal::Error(format!("cannot wait for `git verify-commit`: {e}")))?;
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Ok((output.status.success(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsigned_commit_is_rejected_without_running_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let tree = repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap());
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let commit = repo
            .commit(None, &sig, &sig, "c", &tree.unwrap(), &[])
            .unwrap();
        let refusal = verify(&repo, commit, Path::new("/nonexistent")).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Rejected(m) if m.contains("is not signed")),
            "{refusal:?}"
        );
    }

    #[test]
    fn an_openpgp_signature_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let tree_id = repo.treebuilder(None).unwrap().write().unwrap();
        let content =
            format!("tree {tree_id}\nauthor t <t@e> 0 +0000\ncommitter t <t@e> 0 +0000\n\nc\n");
        let signature = "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----";
        let commit = repo
            .commit_signed(&content, signature, Some("gpgsig"))
            .unwrap();
        let refusal = verify(&repo, commit, Path::new("/nonexistent")).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Rejected(m) if m.contains("OpenPGP")),
            "{refusal:?}"
        );
    }
}
