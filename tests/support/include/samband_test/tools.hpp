// The one skip policy for tests that need an outside tool (node, xmllint, …): fail naming it.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <unistd.h>

namespace samband::testing {

// True when SAMBAND_ALLOW_SKIPS=1: only then may a test skip for a missing tool (never in CI).
inline bool skips_allowed() {
    const char* v = std::getenv("SAMBAND_ALLOW_SKIPS");
    return v != nullptr && std::string_view(v) == "1";
}

// The full path of `name` on PATH (or `name` itself when it is an existing path), else "".
inline std::string find_tool(const std::string& name) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (name.find('/') != std::string::npos) return fs::exists(name, ec) ? name : std::string();
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!rest.empty()) {
        auto colon = rest.find(':');
        fs::path dir(std::string(rest.substr(0, colon)));
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        if (dir.empty()) continue;
        fs::path candidate = dir / name;
        if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate.string();
    }
    return {};
}

}  // namespace samband::testing

// Fails the test, naming the tool, when `tool` is not installed; skips instead only when
// SAMBAND_ALLOW_SKIPS=1 is set. Use at the top of a test or in SetUp().
#define SAMBAND_REQUIRE_TOOL(tool)                                                              \
    do {                                                                                        \
        if (::samband::testing::find_tool(tool).empty()) {                                      \
            if (::samband::testing::skips_allowed())                                            \
                GTEST_SKIP() << (tool) << " is not installed (skipped: SAMBAND_ALLOW_SKIPS=1)"; \
            FAIL() << "this test needs " << (tool)                                              \
                   << ", which is not installed: run ./scripts/install-deps (or set "           \
                   << "SAMBAND_ALLOW_SKIPS=1 to skip it on a machine without it)";              \
        }                                                                                       \
    } while (0)
