# Sourced by the build scripts: `generator_for DIR` sets `generator_flags` (CMake arguments) to
# Ninja for a build tree not configured yet, when ninja is installed. With Ninja a target's files
# compile while the libraries it links are still being built (make waits for each library first),
# so both cores stay busy. A tree already configured keeps its generator (CMake refuses a change).
generator_for() {
  generator_flags=()
  if [ ! -f "$1/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
    generator_flags=(-G Ninja)
  fi
}
