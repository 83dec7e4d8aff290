#include "nhn/edi/client.hpp"

#include "net/error.hpp"
#include "net/jose.hpp"
#include "net/json.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace samband::nhn::edi {

namespace http = boost::beast::http;

namespace {

endpoint_url parse_base(const std::string& url) {
    const auto u = parse_endpoint_url(url);
    if (!u) throw std::runtime_error("edi.base_url is not an http(s) URL: '" + url + "'");
    return *u;
}

std::optional<message_info> read_message(const rapidjson::Value& v) {
    if (!v.IsObject()) return std::nullopt;
    message_info m;
    m.id = net::detail::get_string(v, "id").value_or("");
    if (m.id.empty()) return std::nullopt;
    m.receiver_her_id = static_cast<int>(net::detail::get_int(v, "receiverHerId").value_or(0));
    if (const auto s = net::detail::get_int(v, "senderHerId"))
        m.sender_her_id = static_cast<int>(*s);
    m.business_document_id = net::detail::get_string(v, "businessDocumentId").value_or("");
    m.business_document_gen_date =
        net::detail::get_string(v, "businessDocumentGenDate").value_or("");
    m.content_type = net::detail::get_string(v, "contentType").value_or("");
    m.is_apprec = net::detail::get_bool(v, "isAppRec").value_or(false);
    return m;
}

failure unreadable(std::string_view what, int status) {
    return retry_failure("EDI 2.0 answered " + std::string(what) + " that could not be read",
                         status);
}

result<std::string> read_id(const std::string& body, int status) {
    rapidjson::Document doc;
    if (!net::detail::parse_json(body, doc) || !doc.IsString() || doc.GetStringLength() == 0) {
        return unreadable("a message id", status);
    }
    return std::string(doc.GetString(), doc.GetStringLength());
}

void append_apprec_errors(std::string& out, const std::vector<apprec_error>& errors) {
    out += '[';
    bool first = true;
    for (const auto& e : errors) {
        if (!first) out += ',';
        first = false;
        out += R"({"errorCode":)";
        net::detail::append_json_string(out, e.error_code);
        out += R"(,"details":)";
        net::detail::append_json_string(out, e.details);
        if (!e.description.empty()) {
            out += R"(,"description":)";
            net::detail::append_json_string(out, e.description);
        }
        if (!e.oid.empty()) {
            out += R"(,"oid":)";
            net::detail::append_json_string(out, e.oid);
        }
        out += '}';
    }
    out += ']';
}

}  // namespace

bool is_guid(std::string_view s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
    }
    return true;
}

std::string_view to_string(apprec_status s) {
    switch (s) {
        case apprec_status::ok:
            return "Ok";
        case apprec_status::rejected:
            return "Rejected";
        case apprec_status::ok_error_in_message_part:
            return "OkErrorInMessagePart";
    }
    return "Ok";
}

edi_client::edi_client(edi_config config, std::shared_ptr<token_client> tokens, log_fn log)
    : config_(std::move(config)),
      tokens_(std::move(tokens)),
      log_(std::move(log)),
      base_(parse_base(config_.base_url)),
      http_(base_, config_.tls, log_, config_.max_response_bytes) {
    if (!tokens_) throw std::runtime_error("edi_client needs a HelseID token client");
    if (config_.api_version.empty()) throw std::runtime_error("edi.api_version is required");
    if (config_.timeout <= std::chrono::milliseconds{0}) {
        throw std::runtime_error("edi.timeout must be positive");
    }
    while (base_.path.size() > 1 && base_.path.back() == '/') base_.path.pop_back();
    if (base_.path == "/") base_.path.clear();
}

edi_client::~edi_client() = default;

result<edi_client::answer> edi_client::call(http::verb method, const std::string& path_and_query,
                                            std::string body) {
    const auto deadline = std::chrono::steady_clock::now() + config_.timeout;
    const std::string target = base_.path + path_and_query;
    const std::string htu = base_.origin() + target.substr(0, target.find('?'));
    bool retried_nonce = false;
    bool retried_token = false;
    for (;;) {
        auto token = tokens_->get(deadline);
        if (!token) return token.error();
        std::string nonce;
        {
            std::lock_guard lock(nonce_mutex_);
            nonce = nonce_;
        }
        http_request req{method, target, 11};
        req.set("api-version", config_.api_version);
        req.set("nhn-source-system", config_.source_system);
        req.set(http::field::authorization, "DPoP " + token->value);
        req.set("DPoP", tokens_->dpop_proof(http::to_string(method), htu, token->value, nonce));
        req.set(http::field::accept, "application/json");
        if (!body.empty()) {
            req.set(http::field::content_type, "application/json");
            req.body() = body;
        }
        auto sent = http_.send(std::move(req), deadline);
        if (!sent) {
            return retry_failure("EDI 2.0 " + std::string(http::to_string(method)) + " " +
                                 target.substr(0, target.find('?')) + ": " +
                                 describe_transport_error(sent.error()));
        }
        auto& res = *sent;
        const int status = static_cast<int>(res.result_int());
        const auto nonce_it = res.find("DPoP-Nonce");
        if (nonce_it != res.end()) {
            std::lock_guard lock(nonce_mutex_);
            nonce_ = std::string(nonce_it->value());
        }
        if (status >= 200 && status < 300) return answer{status, std::move(res.body())};
        if (status == 401) {
            const auto www = res.find(http::field::www_authenticate);
            const bool wants_nonce =
                www != res.end() && www->value().find("use_dpop_nonce") != std::string_view::npos;
            if (wants_nonce && nonce_it != res.end() && !retried_nonce) {
                retried_nonce = true;
                continue;
            }
            if (!wants_nonce && !retried_token) {
                retried_token = true;  // expired or revoked before our margin: fetch a new one
                tokens_->invalidate();
                continue;
            }
        }
        const auto retry_after = res.find(http::field::retry_after);
        auto f = classify_http_failure(
            status,
            retry_after == res.end() ? std::string_view{} : std::string_view(retry_after->value()),
            res.body(), tokens_->clock()());
        if (log_ && f.kind == failure_kind::permanent) {
            log_(log_level::warning, "EDI 2.0 refused " + std::string(http::to_string(method)) +
                                         " " + target.substr(0, target.find('?')) + " with " +
                                         std::to_string(status) + ": " + f.message);
        }
        return f;
    }
}

result<std::string> edi_client::send_message(std::string_view xml,
                                             std::span<const int> receiver_her_ids_subset) {
    if (xml.empty()) return permanent_failure("empty business document");
    std::string body = R"({"businessDocument":")";
    body += base64_encode(xml);
    body += R"(","contentType":"application/xml","contentTransferEncoding":"base64")";
    if (!receiver_her_ids_subset.empty()) {
        body += R"(,"receiverHerIdsSubset":[)";
        for (std::size_t i = 0; i < receiver_her_ids_subset.size(); ++i) {
            if (i) body += ',';
            body += std::to_string(receiver_her_ids_subset[i]);
        }
        body += ']';
    }
    body += '}';
    auto r = call(http::verb::post, "/Messages", std::move(body));
    if (!r) return r.error();
    return read_id(r->body, r->status);
}

result<std::vector<message_info>> edi_client::poll_unread(const poll_query& q) {
    if (q.receiver_her_ids.empty()) {
        return permanent_failure("GET /Messages needs at least one receiver HER-id");
    }
    std::string path = "/Messages?";
    for (const int her : q.receiver_her_ids) {
        if (her <= 0) return permanent_failure("invalid receiver HER-id " + std::to_string(her));
        path += "ReceiverHerIds=" + std::to_string(her) + "&";
    }
    if (q.sender_her_id) path += "SenderHerId=" + std::to_string(*q.sender_her_id) + "&";
    if (!q.business_document_id.empty()) {
        if (!is_guid(q.business_document_id)) {
            return permanent_failure("BusinessDocumentId filter must be a GUID");
        }
        path += "BusinessDocumentId=" + q.business_document_id + "&";
    }
    path += std::string("IncludeMetadata=") + (q.include_metadata ? "true" : "false");
    path += "&MessagesToFetch=" + std::to_string(std::clamp(q.messages_to_fetch, 1, 100));
    auto r = call(http::verb::get, path, {});
    if (!r) return r.error();
    rapidjson::Document doc;
    if (!net::detail::parse_json(r->body, doc) || !doc.IsArray()) {
        return unreadable("a message list", r->status);
    }
    std::vector<message_info> out;
    out.reserve(doc.Size());
    for (const auto& v : doc.GetArray()) {
        auto m = read_message(v);
        if (!m) return unreadable("a message list entry", r->status);
        out.push_back(std::move(*m));
    }
    return out;
}

result<message_info> edi_client::get_message(std::string_view id) {
    if (!is_guid(id)) return permanent_failure("message id is not a GUID");
    auto r = call(http::verb::get, "/Messages/" + std::string(id), {});
    if (!r) return r.error();
    rapidjson::Document doc;
    if (!net::detail::parse_json(r->body, doc)) return unreadable("a message", r->status);
    auto m = read_message(doc);
    if (!m) return unreadable("a message", r->status);
    return *m;
}

result<std::string> edi_client::business_document(std::string_view id) {
    if (!is_guid(id)) return permanent_failure("message id is not a GUID");
    auto r = call(http::verb::get, "/Messages/" + std::string(id) + "/business-document", {});
    if (!r) return r.error();
    rapidjson::Document doc;
    if (!net::detail::parse_json(r->body, doc) || !doc.IsObject()) {
        return unreadable("a business document", r->status);
    }
    const auto encoding =
        net::detail::get_string(doc, "contentTransferEncoding").value_or("base64");
    if (encoding != "base64" && encoding != "Base64" && encoding != "BASE64") {
        return permanent_failure(
            "business document in unsupported transfer encoding '" + encoding + "'", r->status);
    }
    const auto text = net::detail::get_string(doc, "businessDocument");
    if (!text) return unreadable("a business document", r->status);
    auto decoded = base64_decode(*text, config_.max_response_bytes);
    if (!decoded) return permanent_failure("business document is not valid base64", r->status);
    return std::move(*decoded);
}

result<void> edi_client::mark_read(std::string_view id, int receiver_her_id) {
    if (!is_guid(id)) return permanent_failure("message id is not a GUID");
    if (receiver_her_id <= 0) return permanent_failure("invalid receiver HER-id");
    auto r = call(http::verb::put,
                  "/Messages/" + std::string(id) + "/read/" + std::to_string(receiver_her_id), {});
    if (!r) return r.error();
    return {};
}

result<std::vector<status_info>> edi_client::status(std::string_view id) {
    if (!is_guid(id)) return permanent_failure("message id is not a GUID");
    auto r = call(http::verb::get, "/Messages/" + std::string(id) + "/status", {});
    if (!r) return r.error();
    rapidjson::Document doc;
    if (!net::detail::parse_json(r->body, doc) || !doc.IsArray()) {
        return unreadable("a status list", r->status);
    }
    std::vector<status_info> out;
    for (const auto& v : doc.GetArray()) {
        if (!v.IsObject()) return unreadable("a status list entry", r->status);
        status_info s;
        s.receiver_her_id = static_cast<int>(net::detail::get_int(v, "receiverHerId").value_or(0));
        s.transport_delivery_state =
            net::detail::get_string(v, "transportDeliveryState").value_or("");
        s.apprec_status = net::detail::get_string(v, "appRecStatus").value_or("");
        out.push_back(std::move(s));
    }
    return out;
}

result<std::vector<apprec_info>> edi_client::apprec(std::string_view id) {
    if (!is_guid(id)) return permanent_failure("message id is not a GUID");
    auto r = call(http::verb::get, "/Messages/" + std::string(id) + "/apprec", {});
    if (!r) return r.error();
    rapidjson::Document doc;
    if (!net::detail::parse_json(r->body, doc) || !doc.IsArray()) {
        return unreadable("an Apprec list", r->status);
    }
    std::vector<apprec_info> out;
    for (const auto& v : doc.GetArray()) {
        if (!v.IsObject()) return unreadable("an Apprec list entry", r->status);
        apprec_info a;
        a.receiver_her_id = static_cast<int>(net::detail::get_int(v, "receiverHerId").value_or(0));
        a.status = net::detail::get_string(v, "appRecStatus").value_or("");
        const auto list = v.FindMember("appRecErrorList");
        if (list != v.MemberEnd() && list->value.IsArray()) {
            for (const auto& e : list->value.GetArray()) {
                a.errors.push_back({net::detail::get_string(e, "errorCode").value_or(""),
                                    net::detail::get_string(e, "details").value_or(""),
                                    net::detail::get_string(e, "description").value_or(""),
                                    net::detail::get_string(e, "oid").value_or("")});
            }
        }
        out.push_back(std::move(a));
    }
    return out;
}

result<std::string> edi_client::send_apprec(std::string_view id, int apprec_sender_her_id,
                                            const outgoing_apprec& apprec) {
    if (!is_guid(id)) return permanent_failure("message id is not a GUID");
    if (apprec_sender_her_id <= 0) return permanent_failure("invalid Apprec sender HER-id");
    std::string body = R"({"appRecStatus":")" + std::string(to_string(apprec.status)) + "\"";
    if (!apprec.errors.empty()) {
        body += R"(,"appRecErrorList":)";
        append_apprec_errors(body, apprec.errors);
    }
    body += '}';
    auto r =
        call(http::verb::post,
             "/Messages/" + std::string(id) + "/apprec/" + std::to_string(apprec_sender_her_id),
             std::move(body));
    if (!r) return r.error();
    return read_id(r->body, r->status);
}

}  // namespace samband::nhn::edi
