#include "net/error.hpp"

#include "net/json.hpp"

#include <stdexcept>

namespace samband::net {

void throw_exception_from_error(failure const& f, boost::source_location const&) {
    throw std::runtime_error(f.message.empty() ? std::string("the call failed") : f.message);
}

namespace {

std::string printable_prefix(std::string_view s, std::size_t max_chars) {
    std::string out;
    for (const char ch : s) {
        if (out.size() >= max_chars) break;
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n' || c == '\r' || c == '\t') {
            if (!out.empty() && out.back() != ' ') out.push_back(' ');
        } else if (c >= 0x20 && c != 0x7f) {
            out.push_back(ch);
        }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

}  // namespace

std::string server_message(std::string_view body, std::size_t max_chars) {
    rapidjson::Document doc;
    if (!body.empty() && (body.front() == '{') && detail::parse_json(body, doc) && doc.IsObject()) {
        std::string text;
        const auto error = detail::get_string(doc, "error");
        const auto description = detail::get_string(doc, "error_description");
        if (error) text = *error;
        if (description && !description->empty()) {
            text += text.empty() ? *description : ": " + *description;
        }
        const auto ve = doc.FindMember("validationErrors");
        if (ve != doc.MemberEnd() && ve->value.IsArray()) {
            std::string joined;
            for (const auto& v : ve->value.GetArray()) {
                if (!v.IsString()) continue;
                if (!joined.empty()) joined += "; ";
                joined.append(v.GetString(), v.GetStringLength());
            }
            if (!joined.empty()) text += text.empty() ? joined : " (" + joined + ")";
        }
        if (const auto title = detail::get_string(doc, "title"); text.empty() && title) {
            text = *title;  // RFC 7807 problem details, as ASP.NET answers some errors
        }
        if (!text.empty()) return printable_prefix(text, max_chars);
    }
    return printable_prefix(body, max_chars);
}

failure classify_http_failure(int status, std::string_view retry_after_header,
                              std::string_view body, std::chrono::system_clock::time_point now) {
    failure f;
    f.http_status = status;
    f.message = server_message(body);
    if (f.message.empty()) f.message = "HTTP " + std::to_string(status);
    const bool retryable = status == 408 || status == 425 || status == 429 || status >= 500;
    f.kind = retryable ? failure_kind::retry : failure_kind::permanent;
    if (retryable && !retry_after_header.empty()) {
        if (const auto ra = parse_retry_after(retry_after_header, now)) f.retry_after = *ra;
    }
    return f;
}

}  // namespace samband::net
