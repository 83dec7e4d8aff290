// The one skip policy for tests that need an outside tool (node, xmllint, …): fail naming it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

// Flips the lowest bit of the byte at offset `at` of `file`: a stored byte changed behind its
// owner's back. False when the file cannot be opened or is shorter.
inline bool flip_byte(const std::filesystem::path& file, std::int64_t at) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    char c = 0;
    if (!f.seekg(at) || !f.get(c)) return false;
    return static_cast<bool>(f.seekp(at).put(static_cast<char>(c ^ 1)).flush());
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
