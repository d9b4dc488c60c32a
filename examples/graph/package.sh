# Runs after build, lint and every cross copy: all their files are there.
test -e out/build || exit 1
[ "$(ls out | grep -c '^cross-')" -eq 4 ] || exit 1
ls out > "$PHANTOM_CI_ARTIFACTS/package.txt"
echo "packaged $(ls out | wc -l) files"
