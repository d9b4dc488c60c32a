//! `require_signed` (issue #4): only commits with a good SSH signature by an allowed key run. Real keys
//! made with `ssh-keygen`, real signatures made by git.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestEnv, TestRepo};

/// A new ed25519 key pair at `<root>/<name>`; returns the private key's path and the public key.
fn keygen(env: &TestEnv, name: &str) -> (PathBuf, String) {
    let key = env.root().join(name);
    if !crate::support::on_path("ssh-keygen") {
        crate::skip!("needs ssh-keygen (apt-get install openssh-client)");
    }
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// Commits everything, signed with `key`; pushes to master; returns the commit id.
fn signed_commit(env: &TestEnv, repo: &TestRepo, key: &Path, message: &str) -> String {
    env.git(&repo.work, &["add", "-A"]);
    env.git(
        &repo.work,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={}", key.display()),
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "-m",
            message,
        ],
    );
    assert!(repo.push("master").status.success());
    env.git(&repo.work, &["rev-parse", "HEAD"])
}

/// Repo `app` runs only commits signed by the key `public` (for author@example.org).
fn require_signed_by(env: &TestEnv, repo: &TestRepo, public: &str) {
    let signers = env.root().join("allowed_signers");
    std::fs::write(
        &signers,
        format!("author@example.org namespaces=\"git\" {public}\n"),
    )
    .unwrap();
    env.write_repo_toml(&env.section(
        "app",
        repo,
        &format!(
            "require_signed = true\nallowed_signers = \"{}\"",
            signers.display()
        ),
    ));
}

fn only_commits_signed_by_an_allowed_key_run() {
    let env = TestEnv::new();
    let (allowed_key, allowed_public) = keygen(&env, "allowed");
    let (other_key, _) = keygen(&env, "other");
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo the-step-ran\"\n");
    let unsigned = repo.commit_and_push("unsigned");
    let by_other = signed_commit(&env, &repo, &other_key, "signed by another key");
    let by_allowed = signed_commit(&env, &repo, &allowed_key, "signed by the allowed key");
    require_signed_by(&env, &repo, &allowed_public);

    let cases = [(&unsigned, "is not signed"), (&by_other, "is not accepted")];
    for (run, (commit, reason)) in (1..).zip(cases) {
        let out = env
            .phantom()
            .args(["run", "app", "--commit", commit])
            .assert()
            .code(1);
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(!stdout.contains("the-step-ran"), "{stdout}");
        let record = env.run_json("app", run);
        assert_eq!(record["result"], "rejected", "{stdout}");
        let message = record["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
        assert_eq!(record["steps"].as_array().unwrap().len(), 0);
    }

    let out = env
        .phantom()
        .args(["run", "app", "--commit", &by_allowed])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("\nthe-step-ran\n"), "{stdout}");
    assert!(
        stdout.contains("author@example.org"),
        "the signer: {stdout}"
    );
    assert_eq!(env.run_json("app", 3)["result"], "success");
}

/// The attack: an unsigned commit carrying a signed commit's signature header, and a pushed
/// `refs/replace/<it>` naming the signed commit. libgit2 reads the commit itself; a `git
/// verify-commit` that honoured the replace ref checked the signed one instead, and the unsigned
/// commit's workflow ran. Refused, and nothing of it runs.
fn a_replace_ref_cannot_lend_an_unsigned_commit_a_signature() {
    let env = TestEnv::new();
    let (key, public) = keygen(&env, "allowed");
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo the-signed-step\"\n");
    let signed = signed_commit(&env, &repo, &key, "signed");
    require_signed_by(&env, &repo, &public);
    // The unsigned commit's tree: a workflow of the attacker's.
    repo.workflow("master", "[0]\nrun = \"echo the-evil-step\"\n");
    env.git(&repo.work, &["add", "-A"]);
    let tree = env.git(&repo.work, &["write-tree"]);
    // The signed commit's object with that tree instead: its signature header, not its content.
    let raw = env.git(&repo.work, &["cat-file", "commit", &signed]);
    let forged: String = raw
        .lines()
        .map(|line| match line.strip_prefix("tree ") {
            Some(_) => format!("tree {tree}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    let forged_file = env.root().join("forged");
    std::fs::write(&forged_file, forged).unwrap();
    let evil = env.git(
        &repo.work,
        &[
            "hash-object",
            "-t",
            "commit",
            "-w",
            forged_file.to_str().unwrap(),
        ],
    );
    assert_ne!(evil, signed);
    env.git(&repo.work, &["replace", &evil, &signed]);
    let pushed = std::process::Command::new("git")
        .args(["push", "-q", "-f", "origin"])
        .arg(format!("{evil}:refs/heads/master"))
        .arg("refs/replace/*:refs/replace/*")
        .current_dir(&repo.work)
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let out = env
        .phantom()
        .args(["run", "app", "--commit", &evil])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(!stdout.contains("the-evil-step"), "{stdout}");
    assert_eq!(env.run_json("app", 1)["result"], "rejected", "{stdout}");
}

crate::tests! {
    only_commits_signed_by_an_allowed_key_run,
    a_replace_ref_cannot_lend_an_unsigned_commit_a_signature,
}
