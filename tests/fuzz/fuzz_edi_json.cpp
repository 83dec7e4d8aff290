// libFuzzer: EDI 2.0 answers as the client reads them: the bounded JSON parse and field access,
// the error-body message, Retry-After, failure classification and the Base64 decoders.
#include "net/error.hpp"
#include "net/jose.hpp"
#include "net/json.hpp"

#include <chrono>
#include <cstdint>
#include <string_view>

namespace edi = samband::net;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    rapidjson::Document doc;
    if (edi::detail::parse_json(body, doc)) {
        auto fields = [](const rapidjson::Value& v) {
            if (!v.IsObject()) return;
            for (const char* k : {"id", "contentTransferEncoding", "businessDocument", "error",
                                  "receiverHerId", "appRecStatus", "isAppRec"}) {
                (void)edi::detail::get_string(v, k);
                (void)edi::detail::get_int(v, k);
                (void)edi::detail::get_bool(v, k);
            }
        };
        fields(doc);
        if (doc.IsArray())
            for (const auto& v : doc.GetArray()) fields(v);
    }
    (void)edi::server_message(body);
    (void)edi::parse_retry_after(body, now);
    const int status = size > 0 ? 400 + data[0] % 200 : 500;
    (void)edi::classify_http_failure(status, body.substr(0, 40), body, now);
    (void)edi::base64url_decode(body);
    (void)edi::base64_decode(body, 1 << 20);
    return 0;
}
