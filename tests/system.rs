//! The system installation (issue 22, SPEC §10): as root, with no option or variable naming them,
//! phantom_ci uses `/etc/phantom_ci` and `/var/lib/phantom_ci` once `/etc/phantom_ci/Repo.toml` exists.
//! Each test runs phantom_ci in a private mount namespace whose `/etc` and `/var/lib` are overlays the
//! test owns: the machine's own directories are never touched.

use std::path::Path;
use std::process::{Command as StdCommand, Output};

use crate::support::{TestEnv, fixed_env, is_root, on_path};

/// Runs `script` (POSIX sh) in a private mount namespace where `/etc` and `/var/lib` are writable
/// overlays kept under the test's directory, `$PHANTOM` being the built binary, without any
/// PHANTOM_CI_* variable. Skips where that cannot be had.
fn in_namespace(env: &TestEnv, script: &str) -> Output {
    if !is_root() || !on_path("unshare") {
        crate::skip!(
            "needs root and unshare for a private mount namespace (apt-get install util-linux; run as root)"
        );
    }
    let layers = env.root().join("layers");
    for dir in ["etc-up", "etc-work", "lib-up", "lib-work"] {
        std::fs::create_dir_all(layers.join(dir)).unwrap();
    }
    let l = layers.display();
    let setup = format!(
        "mount -t overlay overlay -o lowerdir=/etc,upperdir={l}/etc-up,workdir={l}/etc-work /etc \
         && mount -t overlay overlay -o lowerdir=/var/lib,upperdir={l}/lib-up,workdir={l}/lib-work \
         /var/lib || exit 99\nrm -rf /etc/phantom_ci /var/lib/phantom_ci\n"
    );
    let output = StdCommand::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{setup}{script}"))
        .env_clear()
        .envs(fixed_env(&env.home))
        .env("PHANTOM", assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .current_dir(env.root())
        .output()
        .unwrap();
    if output.status.code() == Some(99) {
        crate::skip!(
            "needs overlayfs mounts in a mount namespace (a kernel with overlayfs; run as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A Repo.toml naming the bare repository `bare` as `app`.
fn repo_toml(bare: &Path) -> String {
    format!(
        "[app]\npath = \"{}\"\nrun_as = \"nobody\"\n",
        bare.display()
    )
}

fn roots_plain_status_reads_the_system_installation() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let out = in_namespace(
        &env,
        &format!(
            "mkdir -p /etc/phantom_ci && cat > /etc/phantom_ci/Repo.toml <<'END'\n{}END\n\
             \"$PHANTOM\" status && \"$PHANTOM\" list --json",
            repo_toml(&repo.bare)
        ),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("app"), "{stdout}");
    assert!(
        stdout.contains(&format!("\"path\": \"{}\"", repo.bare.display())),
        "{stdout}"
    );
    // Nothing went to root's own directories.
    assert!(!env.home.join(".config/phantom_ci").exists());
}

fn each_directory_is_chosen_on_its_own() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let data = env.root().join("own-data");
    let out = in_namespace(
        &env,
        &format!(
            "mkdir -p /etc/phantom_ci && cat > /etc/phantom_ci/Repo.toml <<'END'\n{}END\n\
             \"$PHANTOM\" --data-dir {} status --json",
            repo_toml(&repo.bare),
            data.display()
        ),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    // The system's Repo.toml with the data dir that was given.
    assert!(stdout.contains("\"repo\": \"app\""), "{stdout}");
}

fn without_a_system_repo_toml_root_keeps_its_own_directories_and_others_are_told_where_it_is() {
    let env = TestEnv::new();
    let out = in_namespace(&env, "\"$PHANTOM\" list");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no repos in `{}`",
            env.home.join(".config/phantom_ci/Repo.toml").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("/etc/phantom_ci"), "{stderr}");
    if !on_path("setpriv") {
        crate::skip!("needs setpriv to run as another user (apt-get install util-linux)");
    }
    // A user who is not root keeps the XDG directories, and hears of the system's.
    let repo = env.repo("app");
    let home = env.root().join("nobody-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = in_namespace(
        &env,
        &format!(
            "mkdir -p /etc/phantom_ci && cat > /etc/phantom_ci/Repo.toml <<'END'\n{}END\n\
             chmod 755 /etc/phantom_ci && chmod 644 /etc/phantom_ci/Repo.toml\n\
             HOME={} setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$PHANTOM\" list",
            repo_toml(&repo.bare),
            home.display()
        ),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no repos in `{}`",
            home.join(".config/phantom_ci/Repo.toml").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("`/etc/phantom_ci/Repo.toml` has a configuration; to use it: `")
            && stderr
                .contains(" --config-dir /etc/phantom_ci --data-dir /var/lib/phantom_ci list`"),
        "{stderr}"
    );
}

fn root_leaves_no_state_in_a_service_users_data_dir() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let out = in_namespace(
        &env,
        &format!(
            "mkdir -p /etc/phantom_ci /var/lib/phantom_ci && cat > /etc/phantom_ci/Repo.toml \
             <<'END'\n{}END\nchown nobody /var/lib/phantom_ci\n\
             \"$PHANTOM\" run app; echo \"exit=$?\"; \"$PHANTOM\" status; echo \"status=$?\"\n\
             find /var/lib/phantom_ci -mindepth 1 | wc -l",
            repo_toml(&repo.bare)
        ),
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(stdout.contains("exit=2"), "{stdout}{stderr}");
    assert!(
        stderr.contains("the data directory `/var/lib/phantom_ci` belongs to `nobody`")
            && stderr.contains("`sudo -u nobody "),
        "{stderr}"
    );
    assert!(stderr.contains(" run app`"), "{stderr}");
    // Reading is fine; and nothing was written.
    assert!(stdout.contains("status=0"), "{stdout}{stderr}");
    assert_eq!(stdout.lines().last(), Some("0"), "{stdout}");
}

crate::tests! {
    roots_plain_status_reads_the_system_installation,
    each_directory_is_chosen_on_its_own,
    without_a_system_repo_toml_root_keeps_its_own_directories_and_others_are_told_where_it_is,
    root_leaves_no_state_in_a_service_users_data_dir,
}
