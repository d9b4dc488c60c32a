#!/usr/bin/env bash
# examples/demo.sh — phantom_ci in one command.
#
# Builds phantom_ci (cargo build --release), turns examples/hello into a throwaway bare git repository
# in a new temporary directory, writes a Repo.toml for it there and runs its workflow with
# `phantom_ci run hello`. Everything it makes (config, data, repositories) is in that directory, which
# it prints and keeps so that you can look around; delete it when you are done.
#
# Works from any directory, as root or not (the steps run as you: `run_as` is set to the current user).
#
# Environment:
#   PHANTOM_CI_BIN   use this phantom_ci binary instead of building one
#   TMPDIR           where the temporary directory is made (default /tmp)
set -euo pipefail

project=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)

say() { printf '\033[1m%s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '%s\n' "$*"; }

if [ -n "${PHANTOM_CI_BIN:-}" ]; then
    bin=$PHANTOM_CI_BIN
else
    say "==> building phantom_ci (cargo build --release)"
    (cd -- "$project" && cargo build --release)
    target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$project/$target ;; esac
    bin=$target/release/phantom_ci
fi
[ -x "$bin" ] || { echo "demo.sh: no phantom_ci binary at $bin" >&2; exit 1; }

demo=$(mktemp -d "${TMPDIR:-/tmp}/phantom_ci-demo.XXXXXX")
case $demo in *[\'\"\\]*) echo "demo.sh: $demo: quotes in the path are not supported" >&2; exit 1 ;; esac
say "==> demo directory: $demo"

# git with a fixed identity and none of the system's or your own configuration.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="phantom_ci demo" GIT_AUTHOR_EMAIL="demo@phantom-ci.invalid"
export GIT_COMMITTER_NAME="phantom_ci demo" GIT_COMMITTER_EMAIL="demo@phantom-ci.invalid"
# phantom_ci's configuration and records go to the demo directory, not to ~/.config or ~/.local/share.
export PHANTOM_CI_CONFIG_DIR=$demo/config PHANTOM_CI_DATA_DIR=$demo/data

say "==> making the repository $demo/git/hello.git from examples/hello"
mkdir -p "$demo/src" "$demo/git" "$PHANTOM_CI_CONFIG_DIR"
cp -R "$project/examples/hello" "$demo/src/hello"
git init -q -b master "$demo/src/hello"
# The same identity in the clone itself, for your own commits there after the demo (the hint below).
git -C "$demo/src/hello" config user.name "phantom_ci demo"
git -C "$demo/src/hello" config user.email "demo@phantom-ci.invalid"
git -C "$demo/src/hello" add -A
git -C "$demo/src/hello" commit -q -m "hello: a greeting and its tests"
git init -q --bare -b master "$demo/git/hello.git"
git -C "$demo/src/hello" remote add origin "$demo/git/hello.git"
git -C "$demo/src/hello" push -q origin master

user=$(id -un)
cat > "$PHANTOM_CI_CONFIG_DIR/Repo.toml" <<TOML
# Written by examples/demo.sh. See examples/Repo.toml for every key.
[hello]
path = '$demo/git/hello.git'
target_branch = "master"
run_as = "$user"        # steps run as you (phantom_ci refuses to run steps as root unless told)
timeout = "5m"
TOML
say "==> $PHANTOM_CI_CONFIG_DIR/Repo.toml:"
cat "$PHANTOM_CI_CONFIG_DIR/Repo.toml"

say "==> $bin run hello"
status=0
"$bin" run hello || status=$?

record=$PHANTOM_CI_DATA_DIR/runs/hello/1
cat <<TEXT

==> run 1 of hello is recorded in $record/
  run.json    how it went:            cat $record/run.json
  log         what the steps printed: cat $record/log
  artifacts/  what the steps kept:    cat $record/artifacts/greeting.txt
To change the example and run it again (run 2, 3, ...): edit and commit in $demo/src/hello,
\`git push origin master\` there, then
  PHANTOM_CI_CONFIG_DIR=$PHANTOM_CI_CONFIG_DIR PHANTOM_CI_DATA_DIR=$PHANTOM_CI_DATA_DIR \\
    $bin run hello
Everything the demo made is in $demo; remove it with: rm -rf $demo
TEXT
exit "$status"
