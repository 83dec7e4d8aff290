// libFuzzer: the Fastlegeregisteret SOAP answer (GetPatientGPDetails).
#include "directory/fastlegeregisteret.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    (void)samband::directory::parse_flr_response(
        std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
