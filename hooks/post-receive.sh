#!/bin/sh
# phantom_ci post-receive hook, written by `phantom_ci configure hook` (the shell form: it pokes
# runner hosts, or phantom_ci's path cannot stand on a `#!` line).
#
# git runs this after a push has updated the repository, with one "<old> <new> <ref>" line per updated
# ref on stdin. phantom_ci matches this repository (GIT_DIR) against Repo.toml, queues a run for each
# configured branch that moved and returns at once; `hook --wait` runs in the foreground instead, and
# the pusher sees the output. It never makes `git push` fail.
# Follow a run with: phantom_ci logs <repo> --follow
{{pokes}}exec {{phantom_ci}} --config-dir {{config_dir}} --data-dir {{data_dir}} hook{{spool}}{{wait}}
