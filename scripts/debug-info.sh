# Sourced by scripts/build and scripts/package: sets `debug_flags` (CMake arguments) to the debug
# info to build with. Full (-g) by default; line tables only (-g1) with SAMBAND_DEBUG_INFO=lines,
# the default in CI: backtraces keep function, file and line, and GCC takes about a quarter less
# time per file (Beast's templates make most of the debug info). Both scripts use the same flags so
# the package build in CI finds the test build's objects in ccache.
samband_debug=${SAMBAND_DEBUG_INFO:-full}
[ "${CI:-}" = true ] && samband_debug=${SAMBAND_DEBUG_INFO:-lines}
case $samband_debug in
  full) samband_g=-g ;;
  lines) samband_g=-g1 ;;
  *) echo "SAMBAND_DEBUG_INFO=$samband_debug: give full or lines" >&2; exit 2 ;;
esac
debug_flags=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 $samband_g -DNDEBUG"
             -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 $samband_g -DNDEBUG")
