// The NHN codec in one object: schemas compiled once, limits, and every operation on them.
// Include this header to use the codec; the others hold its parts.
#pragma once

#include "nhn/codec/apprec.hpp"
#include "nhn/codec/apprec_codes.hpp"
#include "nhn/codec/crypto.hpp"
#include "nhn/codec/error.hpp"
#include "nhn/codec/event.hpp"
#include "nhn/codec/names.hpp"
#include "nhn/codec/parser.hpp"
#include "nhn/codec/rendered_note.hpp"
#include "nhn/codec/serializer.hpp"
#include "nhn/codec/xml.hpp"

#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace samband::nhn {

struct codec_config {
    std::filesystem::path xsd_dir;  // the installed copy: ${datadir}/samband/nhn/xsd
    parse_limits limits;
};

// THREAD: construct once (it compiles the schemas; throws std::runtime_error on a bad directory
// or schema), then use from any number of threads: every member function is const and
// thread-safe.
class codec {
public:
    explicit codec(codec_config config) : limits_(config.limits), schemas_(config.xsd_dir) {}

    codec_result<serialized_message> serialize(const rendered_note& note,
                                               std::span<const outgoing_attachment> attachments,
                                               const serialize_options& options) const {
        return serialize_note(schemas_, note, attachments, options, limits_);
    }

    // The envelope JSON with its rendered note → message.
    codec_result<serialized_message> serialize_json(std::string_view envelope_json,
                                                    std::span<const outgoing_attachment> atts,
                                                    const serialize_options& options) const {
        auto note = parse_rendered_note(envelope_json);
        if (!note) return note.error();
        return serialize(*note, atts, options);
    }

    codec_result<incoming_message> parse(std::string_view xml) const {
        return parse_message(schemas_, xml, limits_);
    }

    codec_result<message_header> peek(std::string_view xml) const {
        return peek_header(xml, limits_);
    }

    codec_result<receipt> parse_receipt(std::string_view xml) const {
        return parse_apprec(schemas_, xml, limits_);
    }

    codec_result<std::string> make_apprec(const apprec_request& request) const {
        return build_apprec(schemas_, request, limits_);
    }

    codec_result<void> validate(std::string_view xml) const {
        return validate_xml(schemas_, xml, limits_);
    }

    const schema_set& schemas() const noexcept { return schemas_; }
    const parse_limits& limits() const noexcept { return limits_; }

private:
    parse_limits limits_;
    schema_set schemas_;
};

}  // namespace samband::nhn
