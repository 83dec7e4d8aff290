#include "nhn/codec/error.hpp"

#include <stdexcept>

namespace samband::nhn {

std::string_view to_string(codec_errc code) noexcept {
    switch (code) {
        case codec_errc::invalid_input:
            return "invalid_input";
        case codec_errc::too_large:
            return "too_large";
        case codec_errc::not_well_formed:
            return "not_well_formed";
        case codec_errc::dtd_forbidden:
            return "dtd_forbidden";
        case codec_errc::too_deep:
            return "too_deep";
        case codec_errc::attribute_too_large:
            return "attribute_too_large";
        case codec_errc::unsupported_encoding:
            return "unsupported_encoding";
        case codec_errc::wrong_root:
            return "wrong_root";
        case codec_errc::schema_invalid:
            return "schema_invalid";
        case codec_errc::bad_base64:
            return "bad_base64";
        case codec_errc::unsupported_message:
            return "unsupported_message";
        case codec_errc::missing_field:
            return "missing_field";
        case codec_errc::attachment_mismatch:
            return "attachment_mismatch";
        case codec_errc::internal:
            return "internal";
    }
    return "internal";
}

std::string codec_error::what() const {
    std::string s(to_string(code));
    if (line > 0) s += " (line " + std::to_string(line) + ")";
    s += ": ";
    s += message;
    return s;
}

void throw_exception_from_error(codec_error const& e, boost::source_location const&) {
    throw std::runtime_error(e.what());
}

}  // namespace samband::nhn
