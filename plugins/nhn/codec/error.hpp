// Errors of the NHN codec: a closed reason code plus a human-readable message (and a line, when
// the error comes from an XML parser or the schema validator).
#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace samband::nhn {

enum class codec_errc {
    invalid_input,         // the caller's input (rendered note, options) is incomplete or wrong
    too_large,             // input over the configured size limit
    not_well_formed,       // not XML, truncated, bad characters for the declared encoding
    dtd_forbidden,         // a DOCTYPE / DTD / entity declaration: refused outright
    too_deep,              // element nesting over the configured depth limit
    attribute_too_large,   // one attribute value over the configured limit
    unsupported_encoding,  // declared encoding other than UTF-8 / ISO-8859-1
    wrong_root,            // root element or its namespace is not the expected one
    schema_invalid,        // does not validate against the official schemas
    bad_base64,            // an attachment's Base64Container is not valid base64
    unsupported_message,   // valid XML of a kind we do not handle (other body, unknown status)
    missing_field,         // a field the mapping needs is absent
    attachment_mismatch,   // attachment bytes do not match the envelope (sha256/size) or type
    internal,              // libxml2/OpenSSL failed (out of memory, ...)
};

// Short stable name for logs and tests, e.g. "dtd_forbidden".
std::string_view to_string(codec_errc code) noexcept;

struct codec_error {
    codec_errc code = codec_errc::internal;
    std::string message;  // what went wrong; never contains note text or attachment bytes
    int line = 0;         // 1-based line in the XML, 0 when not applicable

    // "schema_invalid (line 5): Element '...': This element is not expected."
    std::string what() const;
};

// Lets result<T, codec_error>::value() throw (std::runtime_error with what()).
[[noreturn]] void throw_exception_from_error(codec_error const& e, boost::source_location const&);

template <class T>
using codec_result = boost::system::result<T, codec_error>;

inline codec_error make_error(codec_errc code, std::string message, int line = 0) {
    return codec_error{code, std::move(message), line};
}

}  // namespace samband::nhn
