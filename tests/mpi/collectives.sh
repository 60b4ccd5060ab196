# The collectives on float segments (reduce-scatter, all-gather, gather to rank 0) on 3 ranks:
# the [collectives] unit tests, whose uneven segments (one empty) and buckets of 1 to 5 floats
# make every call go in many rounds, as buffers beyond the 16M-float bucket do.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
[ -x "$BIN/unit-tests" ] || { echo "unit-tests not built: skipped"; exit 77; }

run mpirun -np 3 "$BIN/unit-tests" --use-colour no "[collectives]"
expect_rc 0 "unit tests [collectives] on 3 ranks"
expect_eq "$(grep -c 'All tests passed' "$T/out")" "3" "every rank passed"
finish
