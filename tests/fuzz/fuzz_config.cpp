// libFuzzer: the daemon's config file (relaxed JSON, schema-checked section by section).
#include "config/config.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    (void)samband::config::parse_config(text, "fuzz.json", "/nonexistent/samband");
    return 0;
}
