#!/bin/sh
# test.sh — the example project's test suite: plain sh, nothing to install.
set -u
here=$(dirname "$0")
failures=0

check() { # check <description> <expected> <actual>
    if [ "$2" = "$3" ]; then
        printf 'ok   %s\n' "$1"
    else
        printf 'FAIL %s: expected [%s], got [%s]\n' "$1" "$2" "$3"
        failures=$((failures + 1))
    fi
}

check "greets the world by default" "Hello, world!" "$(sh "$here/hello.sh")"
check "greets by name" "Hello, Ada!" "$(sh "$here/hello.sh" Ada)"
check "keeps spaces in a name" "Hello, Ada Lovelace!" "$(sh "$here/hello.sh" "Ada Lovelace")"
sh "$here/hello.sh" '$(reboot)' >/dev/null 2>&1
check "refuses a name with shell characters" "2" "$?"

if [ "$failures" -ne 0 ]; then
    echo "$failures test(s) failed"
    exit 1
fi
echo "all tests passed"
