#!/bin/sh
# hello.sh — the "program" of the example project: greets whoever is named on the command line.
#   ./hello.sh          -> Hello, world!
#   ./hello.sh Ada      -> Hello, Ada!
set -eu
name="${1:-world}"
case "$name" in
    *[!A-Za-z0-9\ _-]*) echo "hello.sh: a name is letters, digits, spaces, _ and -" >&2; exit 2 ;;
esac
printf 'Hello, %s!\n' "$name"
