# One copy of the `cross` matrix: TARGET and OPT come from the matrix, CROSS from the step's `env`.
echo "cross-building for $TARGET with $OPT (step $PHANTOM_CI_STEP, CROSS=$CROSS)"
echo "$TARGET $OPT" > "out/cross-$TARGET$OPT"
