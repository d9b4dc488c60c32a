# The build: says who it is, and leaves its result in out/.
echo "$GREETING from step $PHANTOM_CI_STEP ($PHANTOM_CI_STEP_NAME)"
echo built > out/build
