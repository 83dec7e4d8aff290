#include "net/helseid.hpp"

#include "net/error.hpp"
#include "net/json.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace samband::net {

namespace http = boost::beast::http;

namespace {

std::string form_encode(std::string_view s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out.push_back(ch);
        } else if (c == ' ') {
            out.push_back('+');
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

long long unix_seconds(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::optional<jws_alg> alg_from_config(const std::string& name) {
    if (name.empty()) return std::nullopt;
    const auto alg = parse_jws_alg(name);
    if (!alg) {
        throw std::runtime_error("helseid.signing_alg must be RS256, PS256 or ES256, not '" + name +
                                 "'");
    }
    return alg;
}

endpoint_url parse_token_url(const std::string& url) {
    const auto u = parse_endpoint_url(url);
    if (!u) throw std::runtime_error("helseid.token_endpoint is not an http(s) URL: '" + url + "'");
    return *u;
}

jws_key load_client_key(const helseid_config& c, const log_fn& log) {
    if (!c.key_pem.empty()) return jws_key::from_pem(c.key_pem, alg_from_config(c.signing_alg));
    if (c.key_file.empty()) throw std::runtime_error("helseid.key_file is required");
    std::error_code ec;
    const auto st = std::filesystem::status(c.key_file, ec);
    if (!ec && log) {
        using std::filesystem::perms;
        if ((st.permissions() & (perms::group_all | perms::others_all)) != perms::none) {
            log(log_level::warning, "HelseID key file " + c.key_file.string() +
                                        " is accessible to group/others; chmod 600 it");
        }
    }
    return jws_key::load_pem_file(c.key_file, alg_from_config(c.signing_alg));
}

jws_key load_dpop_key(const helseid_config& c) {
    if (c.dpop_key_file.empty()) return jws_key::generate_p256();
    return jws_key::load_pem_file(c.dpop_key_file);
}

}  // namespace

token_client::token_client(helseid_config config, wall_clock_fn clock, log_fn log)
    : config_(std::move(config)),
      clock_(clock ? std::move(clock) : system_clock_fn()),
      log_(std::move(log)),
      token_url_(parse_token_url(config_.token_endpoint)),
      audience_(config_.audience.empty() ? token_url_.origin() : config_.audience),
      client_key_(load_client_key(config_, log_)),
      dpop_key_(load_dpop_key(config_)),
      http_(token_url_, config_.tls, log_) {
    if (config_.client_id.empty()) throw std::runtime_error("helseid.client_id is required");
    if (config_.assertion_lifetime <= std::chrono::seconds{0} ||
        config_.assertion_lifetime > std::chrono::seconds{60}) {
        throw std::runtime_error("helseid assertion lifetime must be 1-60 s");
    }
    key_id_ = config_.key_id.empty() ? client_key_.thumbprint() : config_.key_id;
}

token_client::~token_client() = default;

std::string token_client::client_assertion() const {
    const auto now = unix_seconds(clock_());
    std::string header = R"({"alg":")" + std::string(to_string(client_key_.alg())) + R"(","kid":)";
    detail::append_json_string(header, key_id_);
    header += R"(,"typ":"JWT"})";
    std::string claims = R"({"iss":)";
    detail::append_json_string(claims, config_.client_id);
    claims += R"(,"sub":)";
    detail::append_json_string(claims, config_.client_id);
    claims += R"(,"aud":)";
    detail::append_json_string(claims, audience_);
    claims += R"(,"jti":")" + random_jti() + R"(","iat":)" + std::to_string(now) + R"(,"nbf":)" +
              std::to_string(now) + R"(,"exp":)" +
              std::to_string(now + config_.assertion_lifetime.count()) + "}";
    return client_key_.sign_jwt(header, claims);
}

std::string token_client::dpop_proof(std::string_view method, std::string_view htu,
                                     std::string_view access_token, std::string_view nonce) const {
    std::string header = R"({"typ":"dpop+jwt","alg":")" + std::string(to_string(dpop_key_.alg())) +
                         R"(","jwk":)" + dpop_key_.public_jwk() + "}";
    std::string claims = R"({"jti":")" + random_jti() + R"(","htm":)";
    detail::append_json_string(claims, method);
    claims += R"(,"htu":)";
    detail::append_json_string(claims, htu);
    claims += R"(,"iat":)" + std::to_string(unix_seconds(clock_()));
    if (!access_token.empty()) {
        claims += R"(,"ath":")" + base64url_encode(sha256(access_token)) + "\"";
    }
    if (!nonce.empty()) {
        claims += R"(,"nonce":)";
        detail::append_json_string(claims, nonce);
    }
    claims += "}";
    return dpop_key_.sign_jwt(header, claims);
}

void token_client::invalidate() {
    std::lock_guard lock(mutex_);
    cached_.reset();
}

result<access_token> token_client::get(std::chrono::steady_clock::time_point deadline) {
    const auto fresh = [this] {
        return cached_ && clock_() < cached_->expires_at;  // expires_at holds the refresh time
    };
    {
        std::lock_guard lock(mutex_);
        if (fresh()) return *cached_;
    }
    std::lock_guard fetch(fetch_mutex_);
    {
        std::lock_guard lock(mutex_);
        if (fresh()) return *cached_;  // another thread fetched while we waited
    }
    auto token = request_token(deadline);
    if (!token) return token;
    std::lock_guard lock(mutex_);
    cached_ = *token;
    return token;
}

result<access_token> token_client::request_token(std::chrono::steady_clock::time_point deadline) {
    for (int attempt = 0;; ++attempt) {
        std::string nonce;
        {
            std::lock_guard lock(mutex_);
            nonce = nonce_;
        }
        http_request req{http::verb::post, token_url_.path, 11};
        req.set(http::field::content_type, "application/x-www-form-urlencoded");
        req.set(http::field::accept, "application/json");
        if (config_.dpop)
            req.set("DPoP", dpop_proof("POST", token_url_.without_query(), "", nonce));
        std::string body =
            "grant_type=client_credentials&client_id=" + form_encode(config_.client_id) +
            "&client_assertion_type=" +
            form_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
            "&client_assertion=" + form_encode(client_assertion());
        if (!config_.scope.empty()) body += "&scope=" + form_encode(config_.scope);
        req.body() = std::move(body);

        ++token_requests_;
        auto sent = http_.send(std::move(req), deadline);
        if (!sent) {
            return retry_failure("HelseID token endpoint: " +
                                 describe_transport_error(sent.error()));
        }
        const auto& res = *sent;
        const auto status = static_cast<int>(res.result_int());
        const auto nonce_it = res.find("DPoP-Nonce");
        if (nonce_it != res.end()) {
            std::lock_guard lock(mutex_);
            nonce_ = std::string(nonce_it->value());
        }
        rapidjson::Document doc;
        const bool json = detail::parse_json(res.body(), doc) && doc.IsObject();
        if (status != 200) {
            const auto error = json ? detail::get_string(doc, "error") : std::nullopt;
            if ((status == 400 || status == 401) && error == "use_dpop_nonce" &&
                nonce_it != res.end() && attempt == 0) {
                continue;  // RFC 9449 §8: retry once with the server's nonce
            }
            const auto retry_after = res.find(http::field::retry_after);
            auto f = classify_http_failure(status,
                                           retry_after == res.end()
                                               ? std::string_view{}
                                               : std::string_view(retry_after->value()),
                                           res.body(), clock_());
            f.message = "HelseID token request refused: " + f.message;
            return f;
        }
        if (!json) return retry_failure("HelseID token endpoint answered 200 without JSON", 200);
        const auto value = detail::get_string(doc, "access_token");
        const auto type = detail::get_string(doc, "token_type");
        const auto expires_in = detail::get_int(doc, "expires_in");
        if (!value || value->empty()) {
            return retry_failure("HelseID answered without an access_token", 200);
        }
        if (config_.dpop && (!type || !iequals(*type, "DPoP"))) {
            return permanent_failure("HelseID issued a '" + type.value_or("") +
                                         "' token, not DPoP: enable DPoP for the client",
                                     200);
        }
        if (!config_.dpop && (!type || !iequals(*type, "Bearer"))) {
            return permanent_failure("the token endpoint issued a '" + type.value_or("") +
                                         "' token, not Bearer (set dpop for this client)",
                                     200);
        }
        const auto lifetime = std::chrono::seconds{std::max<long long>(expires_in.value_or(60), 1)};
        const auto margin = std::min(config_.refresh_margin, lifetime / 2);
        access_token token{*value, clock_() + lifetime - margin};
        if (log_) {
            log_(log_level::debug, "HelseID issued a DPoP token valid for " +
                                       std::to_string(lifetime.count()) + " s");
        }
        return token;
    }
}

}  // namespace samband::net
