# Bounded fuzz run for the test suite: fuzz into a scratch corpus seeded from
# the repository's, so the source tree is never written. A crash leaves its
# input in WORK/crash-*; copy it to tests/fuzz/regressions/ to keep it.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)
execute_process(
	COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
		-print_final_stats=1 -artifact_prefix=${WORK}/ ${WORK}/corpus ${SEEDS}
	RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
	message(FATAL_ERROR "fuzzer failed (${rc}); crash input is in ${WORK}")
endif()
