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

fn only_commits_signed_by_an_allowed_key_run() {
    let env = TestEnv::new();
    let (allowed_key, allowed_public) = keygen(&env, "allowed");
    let (other_key, _) = keygen(&env, "other");
    let signers = env.root().join("allowed_signers");
    std::fs::write(
        &signers,
        format!("author@example.org namespaces=\"git\" {allowed_public}\n"),
    )
    .unwrap();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo the-step-ran\"\n");
    let unsigned = repo.commit_and_push("unsigned");
    let by_other = signed_commit(&env, &repo, &other_key, "signed by another key");
    let by_allowed = signed_commit(&env, &repo, &allowed_key, "signed by the allowed key");
    env.write_repo_toml(&env.section(
        "app",
        &repo,
        &format!(
            "require_signed = true\nallowed_signers = \"{}\"",
            signers.display()
        ),
    ));

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

crate::tests! {
    only_commits_signed_by_an_allowed_key_run,
}
