// The fhir plugin: RPH events out as FHIR R4 transaction Bundles (sink), and FHIR resources,
// Bundles and $process-message in over HTTP(S) (source). See docs/fhir.md.
//
// Sink: each delivery becomes one transaction Bundle (fhir/bundle.hpp) of conditional creates
// (If-None-Exist on an identifier derived from the event id), POSTed to the server's base URL, so a
// retry or a repeat after a crash finds what the first attempt created instead of duplicating it.
// 2xx → delivered (external id: the first entry's location); 408/425/429/5xx and transport errors
// → retry (Retry-After honoured within the attempt's deadline); any other 4xx → dead with the
// OperationOutcome's text. Auth: SMART Backend Services / HelseID client credentials with
// private_key_jwt (DPoP when configured) through the shared plugin-side client (plugins/net).
//
// Source ("listen"): an HTTP(S) endpoint taking FHIR resources, Bundles and $process-message
// (fhir/inbound.hpp, fhir/listener.hpp); PHQ-9/GAD-7 QuestionnaireResponses are scored into
// rph.assessment.scored; 200/201 only after the host committed, else 400 + OperationOutcome.
#include "fhir/bundle.hpp"
#include "fhir/inbound.hpp"
#include "fhir/listener.hpp"

#include "net/error.hpp"
#include "net/helseid.hpp"
#include "net/http.hpp"
#include "net/json.hpp"

#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <rapidjson/document.h>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fcntl.h>
#include <unistd.h>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace {

using samband::sdk::error;
using samband::sdk::log_level;
namespace net = samband::net;
namespace fhir = samband::fhir;
namespace http = boost::beast::http;
using rapidjson::Value;

const Value* member(const Value& obj, const char* name) {
    if (!obj.IsObject()) return nullptr;
    auto it = obj.FindMember(name);
    return it == obj.MemberEnd() ? nullptr : &it->value;
}

std::string get_str(const Value& obj, const char* name, const char* where) {
    const Value* v = member(obj, name);
    if (!v) return {};
    if (!v->IsString())
        throw error(SAMBAND_INVALID, std::string("fhir: ") + where + name + " must be a string");
    return {v->GetString(), v->GetStringLength()};
}
bool get_bool(const Value& obj, const char* name, bool fallback, const char* where) {
    const Value* v = member(obj, name);
    if (!v) return fallback;
    if (!v->IsBool())
        throw error(SAMBAND_INVALID, std::string("fhir: ") + where + name + " must be true/false");
    return v->GetBool();
}
std::int64_t get_int(const Value& obj, const char* name, std::int64_t fallback, std::int64_t lo,
                     std::int64_t hi, const char* where) {
    const Value* v = member(obj, name);
    if (!v) return fallback;
    if (!v->IsInt64() || v->GetInt64() < lo || v->GetInt64() > hi)
        throw error(SAMBAND_INVALID, std::string("fhir: ") + where + name + " must be a whole " +
                                         "number from " + std::to_string(lo) + " to " +
                                         std::to_string(hi));
    return v->GetInt64();
}

net::tls_options tls_of(const Value& cfg, const char* where) {
    net::tls_options t;
    if (const Value* tls = member(cfg, "tls")) {
        if (!tls->IsObject())
            throw error(SAMBAND_INVALID, std::string("fhir: ") + where + "tls must be an object");
        t.ca_file = get_str(*tls, "ca_file", "tls.");
        t.allow_plain_http_loopback = get_bool(*tls, "allow_plain_http_loopback", false, "tls.");
    }
    return t;
}

// The readable text of an OperationOutcome (issue[].diagnostics / details.text, with expression),
// or the shared client's reading of any other error body.
std::string outcome_text(std::string_view body) {
    rapidjson::Document doc;
    samband::json::limits lim;
    lim.max_depth = 32;
    lim.max_bytes = 1024 * 1024;
    if (samband::json::parse(body, doc, lim).empty() && doc.IsObject()) {
        const Value* rt = member(doc, "resourceType");
        const Value* issues = member(doc, "issue");
        if (rt && rt->IsString() && std::string_view(rt->GetString()) == "OperationOutcome" &&
            issues && issues->IsArray()) {
            std::string out;
            for (const auto& i : issues->GetArray()) {
                std::string t;
                if (const Value* d = member(i, "details");
                    d && member(*d, "text") && (*d)["text"].IsString())
                    t = (*d)["text"].GetString();
                if (const Value* g = member(i, "diagnostics"); t.empty() && g && g->IsString())
                    t = g->GetString();
                if (const Value* e = member(i, "expression");
                    e && e->IsArray() && !e->Empty() && (*e)[0].IsString())
                    t = std::string((*e)[0].GetString()) + ": " + t;
                if (t.empty()) continue;
                if (!out.empty()) out += "; ";
                out += t;
                if (out.size() > 500) break;
            }
            if (!out.empty()) return out.substr(0, 500);
        }
    }
    return net::server_message(body);
}

class fhir_plugin {
public:
    static constexpr const char* name = "fhir";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "FHIR R4: RPH events as transaction Bundles of conditional creates (sink); resources, "
        "Bundles and $process-message in over HTTP(S) (source)";
    static constexpr bool is_source = true;
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0].
    static constexpr const char* config_schema = R"json({
  "$schema": "http://json-schema.org/draft-04/schema#",
  "title": "fhir plugin endpoint config (docs/fhir.md)",
  "type": "object",
  "additionalProperties": false,
  "definitions": {
    "client_tls": {"type": "object", "additionalProperties": false, "properties": {
      "ca_file": {"type": "string", "description": "extra trust anchors (PEM)"},
      "allow_plain_http_loopback": {"type": "boolean",
        "description": "plain http, only to 127.0.0.1 (tests)"}}}
  },
  "properties": {
    "base_url": {"type": "string", "description": "sink and poll: the FHIR server's base URL"},
    "identifier_system": {"type": "string", "minLength": 1},
    "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 600000},
    "tls": {"$ref": "#/definitions/client_tls"},
    "auth": {"type": "object", "additionalProperties": false,
      "required": ["token_endpoint", "client_id", "key_secret"],
      "properties": {
        "token_endpoint": {"type": "string"}, "client_id": {"type": "string"},
        "key_secret": {"type": "string", "description": "the secret holding the PEM key"},
        "audience": {"type": "string"}, "scope": {"type": "string"},
        "key_id": {"type": "string"}, "signing_alg": {"enum": ["RS256", "PS256", "ES256"]},
        "dpop": {"type": "boolean"}, "tls": {"$ref": "#/definitions/client_tls"}}},
    "listen": {"type": "object", "additionalProperties": false, "properties": {
      "address": {"type": "string", "description": "IP:port (127.0.0.1:0 picks a free port)"},
      "port_file": {"type": "string"}, "base_path": {"type": "string"},
      "max_body_bytes": {"type": "integer", "minimum": 1024},
      "max_connections": {"type": "integer", "minimum": 1},
      "commit_timeout_ms": {"type": "integer", "minimum": 100},
      "max_depth": {"type": "integer", "minimum": 8, "maximum": 128},
      "max_entries": {"type": "integer", "minimum": 1},
      "allow_synthetic_ids": {"type": "boolean"},
      "bearer_token_secrets": {"type": "array", "items": {"type": "string"}},
      "tls": {"type": "object", "additionalProperties": false,
        "required": ["cert_file", "key_file"], "properties": {
          "cert_file": {"type": "string"}, "key_file": {"type": "string"},
          "ca_file": {"type": "string", "description": "client certificates required"}}}}},
    "poll": {"type": "object", "additionalProperties": false, "required": ["state_file"],
      "properties": {
        "state_file": {"type": "string"},
        "interval_ms": {"type": "integer", "minimum": 50},
        "since": {"type": "string"},
        "allow_synthetic_ids": {"type": "boolean"},
        "resource_types": {"type": "array",
          "items": {"enum": ["QuestionnaireResponse", "Observation"]}}}}
  },
  "examples": [{"base_url": "http://127.0.0.1:9/fhir", "timeout_ms": 1000,
                "tls": {"allow_plain_http_loopback": true}},
               {"listen": {"address": "127.0.0.1:0"}}]
})json";

    fhir_plugin(samband::sdk::host host, std::string_view config) : host_(host) {
        rapidjson::Document cfg;
        if (auto err = samband::json::parse(config.empty() ? "{}" : config, cfg); !err.empty())
            throw error(SAMBAND_INVALID, "fhir: config: " + err);
        if (!cfg.IsObject()) throw error(SAMBAND_INVALID, "fhir: config must be a JSON object");
        auto log = [h = host_](net::log_level l, std::string_view m) {
            h.log(l == net::log_level::error     ? log_level::error
                  : l == net::log_level::warning ? log_level::warn
                  : l == net::log_level::info    ? log_level::info
                                                 : log_level::debug,
                  std::string("fhir: ") + std::string(m));
        };
        options_.identifier_system = get_str(cfg, "identifier_system", "").empty()
                                         ? options_.identifier_system
                                         : get_str(cfg, "identifier_system", "");
        timeout_ = std::chrono::milliseconds(get_int(cfg, "timeout_ms", 30000, 100, 600000, ""));
        if (auto base = get_str(cfg, "base_url", ""); !base.empty()) {
            auto u = net::parse_endpoint_url(base);
            if (!u) throw error(SAMBAND_INVALID, "fhir: base_url is not an http(s) URL: " + base);
            url_ = *u;
            try {
                http_ = std::make_unique<net::http_client>(url_, tls_of(cfg, ""), log);
            } catch (const std::exception& e) {
                throw error(SAMBAND_INVALID, std::string("fhir: ") + e.what());
            }
            if (const Value* auth = member(cfg, "auth")) tokens_ = make_tokens(*auth, cfg, log);
        }
        if (const Value* listen = member(cfg, "listen"))
            listener_cfg_ = fhir::listener_config::from_json(*listen, host_);
        if (const Value* poll = member(cfg, "poll")) read_poll(*poll);
    }

    ~fhir_plugin() { stop(); }

    void start() {
        if (listener_cfg_ && !listener_) {
            listener_ = std::make_unique<fhir::listener>(*listener_cfg_, host_);
            listener_->start();
        }
        if (poll_ && !poll_thread_.joinable()) poll_thread_ = std::thread([this] { poll_loop(); });
    }

    void stop() {
        if (listener_) listener_->stop();
        {
            std::lock_guard lock(mu_);
            running_ = false;
        }
        cv_.notify_all();
        if (poll_thread_.joinable()) poll_thread_.join();
        // Every accepted delivery is completed before stop returns (the ABI's rule): the running
        // one finishes, queued ones complete as RETRY.
        worker_.stop();
    }

    void deliver(samband::sdk::delivery d) {
        worker_.post(std::move(d), [this](samband::sdk::delivery& d) { send(d); });
    }

    samband::sdk::rendered render(const samband::sdk::delivery_view& v) {
        auto b = build(host_, v.event);
        if (!b) throw error(SAMBAND_INVALID, "fhir: " + b.error().text());
        return {std::move(b->json), "bundle-" + std::string(v.id) + ".json"};
    }

private:
    fhir::result<fhir::built_bundle> build(const samband::sdk::host& host,
                                           const samband::sdk::event_view& ev) const {
        std::vector<fhir::outbound_attachment> atts;
        for (const auto& a : ev.attachments) {
            auto bytes = host.attachment_bytes(a);
            if (!bytes)
                return fhir::mapping_error{"cannot read attachment " + std::string(a.filename),
                                           "/attachments"};
            atts.push_back({std::string(a.filename), std::string(a.media_type), std::move(*bytes)});
        }
        return fhir::build_bundle(ev.envelope_json, atts, options_);
    }

    std::shared_ptr<net::token_client> make_tokens(const Value& auth, const Value&,
                                                   const net::log_fn& log) {
        if (!auth.IsObject()) throw error(SAMBAND_INVALID, "fhir: auth must be an object");
        net::helseid_config h;
        h.token_endpoint = get_str(auth, "token_endpoint", "auth.");
        h.client_id = get_str(auth, "client_id", "auth.");
        h.audience = get_str(auth, "audience", "auth.");
        h.scope = get_str(auth, "scope", "auth.");
        h.key_id = get_str(auth, "key_id", "auth.");
        h.signing_alg = get_str(auth, "signing_alg", "auth.");
        h.dpop = get_bool(auth, "dpop", false, "auth.");
        h.tls = tls_of(auth, "auth.");
        dpop_ = h.dpop;
        const std::string secret = get_str(auth, "key_secret", "auth.");
        if (h.token_endpoint.empty() || h.client_id.empty() || secret.empty())
            throw error(SAMBAND_INVALID,
                        "fhir: auth needs token_endpoint, client_id and key_secret (the name of "
                        "the secret holding the client's private key, PEM)");
        auto pem = host_.secret(secret);
        if (!pem) throw error(SAMBAND_INVALID, "fhir: auth.key_secret: no secret named " + secret);
        h.key_pem = std::move(*pem);
        try {
            return std::make_shared<net::token_client>(std::move(h), net::system_clock_fn(), log);
        } catch (const std::exception& e) {
            throw error(SAMBAND_INVALID, std::string("fhir: auth: ") + e.what());
        }
    }

    void send(samband::sdk::delivery& d) {
        if (!http_) return d.fail("fhir: this endpoint has no base_url (it is only a source)");
        auto b = build(host_, d.event());
        if (!b) return d.fail("fhir: not sent: " + b.error().text());
        for (int tries = 0;; ++tries) {
            const auto deadline = std::chrono::steady_clock::now() + timeout_;
            net::http_request req{http::verb::post, url_.path, 11};
            req.set(http::field::content_type, "application/fhir+json; charset=utf-8");
            req.set(http::field::accept, "application/fhir+json");
            if (tokens_) {
                auto token = tokens_->get(deadline);
                if (!token) {
                    const auto& f = token.error();
                    if (f.kind == net::failure_kind::permanent)
                        return d.fail("fhir: token: " + f.message);
                    return d.retry("fhir: token: " + f.message);
                }
                if (dpop_) {
                    req.set(http::field::authorization, "DPoP " + token->value);
                    req.set("DPoP",
                            tokens_->dpop_proof("POST", url_.without_query(), token->value, ""));
                } else {
                    req.set(http::field::authorization, "Bearer " + token->value);
                }
            }
            req.body() = b->json;
            auto sent = http_->send(std::move(req), deadline);
            if (!sent) return d.retry("fhir: " + net::describe_transport_error(sent.error()));
            const auto& res = *sent;
            const int status = static_cast<int>(res.result_int());
            if (status >= 200 && status < 300) return d.succeed(first_location(res.body(), *b));
            if (status == 401 && tokens_) tokens_->invalidate();
            const auto ra = res.find(http::field::retry_after);
            auto f = net::classify_http_failure(
                status, ra == res.end() ? std::string_view{} : std::string_view(ra->value()),
                res.body(), std::chrono::system_clock::now());
            const std::string why =
                "fhir: HTTP " + std::to_string(status) + ": " + outcome_text(res.body());
            if (status == 401 && tokens_ && tries == 0) continue;  // a fresh token, once
            if (f.kind == net::failure_kind::permanent) return d.fail(why);
            // Honour Retry-After within this attempt's deadline; otherwise the host retries later.
            const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count();
            const std::int64_t after = f.retry_after.count();
            if (tries < 3 && after > 0 && now_ms + after * 1000 + 1000 < d.deadline_unix_ms()) {
                std::unique_lock lock(mu_);
                cv_.wait_for(lock, std::chrono::seconds(after), [&] { return !running_; });
                if (!running_) return d.retry("fhir: stopping");
                continue;
            }
            return d.retry(after > 0 ? why + " (Retry-After " + std::to_string(after) + " s)"
                                     : why);
        }
    }

    // ---- polling: new QuestionnaireResponse/Observation since a durable cursor ----------------

    struct poll_config {
        std::string state_file;
        std::chrono::milliseconds interval{60000};
        std::string since;
        std::vector<std::string> types{"QuestionnaireResponse", "Observation"};
        fhir::inbound_options inbound;
    };

    void read_poll(const Value& v) {
        if (!v.IsObject()) throw error(SAMBAND_INVALID, "fhir: poll must be an object");
        if (!http_) throw error(SAMBAND_INVALID, "fhir: poll needs base_url (the server to poll)");
        poll_config c;
        c.state_file = get_str(v, "state_file", "poll.");
        if (c.state_file.empty())
            throw error(SAMBAND_INVALID,
                        "fhir: poll.state_file is required (where the cursor is kept)");
        c.interval = std::chrono::milliseconds(
            get_int(v, "interval_ms", 60000, 50, 24 * 3600 * 1000, "poll."));
        c.since = get_str(v, "since", "poll.");
        c.inbound.allow_synthetic_ids = get_bool(v, "allow_synthetic_ids", false, "poll.");
        if (const Value* t = member(v, "resource_types")) {
            if (!t->IsArray()) throw error(SAMBAND_INVALID, "fhir: poll.resource_types: an array");
            c.types.clear();
            for (const auto& x : t->GetArray()) {
                std::string_view n = x.IsString() ? x.GetString() : "";
                if (n != "QuestionnaireResponse" && n != "Observation")
                    throw error(SAMBAND_INVALID,
                                "fhir: poll.resource_types: QuestionnaireResponse "
                                "and/or Observation");
                c.types.emplace_back(n);
            }
        }
        // The cursor survives restarts: read it now, so a broken state file stops the start.
        std::ifstream in(c.state_file);
        if (in) {
            std::string text((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
            rapidjson::Document d;
            if (auto err = samband::json::parse(text, d); !err.empty() || !d.IsObject())
                throw error(SAMBAND_INVALID, "fhir: poll.state_file " + c.state_file +
                                                 " is not a cursor file: " + err);
            for (auto it = d.MemberBegin(); it != d.MemberEnd(); ++it)
                if (it->value.IsString()) cursor_[it->name.GetString()] = it->value.GetString();
        }
        poll_ = std::move(c);
    }

    // Writes the cursor: a temporary file, fsync, rename, so a crash leaves the old or the new.
    bool save_cursor() {
        rapidjson::StringBuffer b;
        rapidjson::Writer<rapidjson::StringBuffer> w(b);
        w.StartObject();
        for (const auto& [k, v] : cursor_) {
            w.Key(k.c_str());
            w.String(v.c_str());
        }
        w.EndObject();
        const std::string tmp = poll_->state_file + ".tmp";
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) return false;
        bool ok = ::write(fd, b.GetString(), b.GetSize()) == static_cast<ssize_t>(b.GetSize()) &&
                  ::fsync(fd) == 0;
        ok = ::close(fd) == 0 && ok;
        return ok && std::rename(tmp.c_str(), poll_->state_file.c_str()) == 0;
    }

    static std::string query_encode(std::string_view v) {
        static constexpr char hex[] = "0123456789ABCDEF";
        std::string out;
        for (unsigned char c : v) {
            if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == ':' || c == '~') {
                out.push_back(static_cast<char>(c));
            } else {
                out.push_back('%');
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 15]);
            }
        }
        return out;
    }

    void poll_loop() {
        for (;;) {
            for (const auto& type : poll_->types) {
                if (!poll_type(type)) break;
            }
            std::unique_lock lock(mu_);
            if (cv_.wait_for(lock, poll_->interval, [&] { return !running_; })) return;
        }
    }

    // One page after another until a page is short; false when stopping or on trouble.
    bool poll_type(const std::string& type) {
        for (int page = 0; page < 100; ++page) {
            {
                std::lock_guard lock(mu_);
                if (!running_) return false;
            }
            std::string cursor = cursor_.count(type) ? cursor_[type] : poll_->since;
            std::string target = url_.path;
            if (target.back() != '/') target += '/';
            target += type + "?_sort=_lastUpdated&_count=100";
            if (!cursor.empty()) target += "&_lastUpdated=ge" + query_encode(cursor);
            if (type == "Observation")
                target +=
                    "&code=" + query_encode("http://loinc.org|44261-6,http://loinc.org|70274-6");
            const auto deadline = std::chrono::steady_clock::now() + timeout_;
            net::http_request req{http::verb::get, target, 11};
            req.set(http::field::accept, "application/fhir+json");
            if (tokens_) {
                auto token = tokens_->get(deadline);
                if (!token) {
                    host_.log(log_level::warn, "fhir: poll: token: " + token.error().message);
                    return false;
                }
                const std::string htu = url_.origin() + target.substr(0, target.find('?'));
                req.set(http::field::authorization, (dpop_ ? "DPoP " : "Bearer ") + token->value);
                if (dpop_) req.set("DPoP", tokens_->dpop_proof("GET", htu, token->value, ""));
            }
            auto res = http_->send(std::move(req), deadline);
            if (!res) {
                host_.log(log_level::warn,
                          "fhir: poll: " + net::describe_transport_error(res.error()));
                return false;
            }
            if (res->result_int() != 200) {
                host_.log(log_level::warn, "fhir: poll " + type + ": HTTP " +
                                               std::to_string(res->result_int()) + ": " +
                                               outcome_text(res->body()));
                return false;
            }
            auto taken = take_page(type, res->body(), cursor);
            if (!taken) return false;
            if (*taken < 100) return true;
        }
        return true;
    }

    // Submits the page's scores, waits for the commits, then moves the cursor. The entry count.
    std::optional<std::size_t> take_page(const std::string& type, const std::string& body,
                                         const std::string& cursor) {
        rapidjson::Document doc;
        samband::json::limits lim;
        lim.max_depth = 64;
        if (auto err = samband::json::parse(body, doc, lim); !err.empty() || !doc.IsObject()) {
            host_.log(log_level::warn, "fhir: poll " + type + ": unreadable answer: " + err);
            return std::nullopt;
        }
        const Value* entries = member(doc, "entry");
        if (!entries || !entries->IsArray()) return std::size_t{0};
        std::string newest = cursor;
        std::vector<std::future<samband::sdk::submit_result>> pending;
        for (const auto& e : entries->GetArray()) {
            const Value* res = member(e, "resource");
            if (!res || !res->IsObject()) continue;
            const Value* meta = member(*res, "meta");
            const Value* lu = meta ? member(*meta, "lastUpdated") : nullptr;
            if (lu && lu->IsString() && newest < lu->GetString()) newest = lu->GetString();
            const Value* rt = member(*res, "resourceType");
            const Value* id = member(*res, "id");
            if (!rt || !rt->IsString() || rt->GetString() != type) continue;
            // One entry as a collection Bundle, its fullUrl the server's, for a stable key.
            rapidjson::StringBuffer b;
            rapidjson::Writer<rapidjson::StringBuffer> w(b);
            w.StartObject();
            w.Key("resourceType");
            w.String("Bundle");
            w.Key("type");
            w.String("collection");
            w.Key("entry");
            w.StartArray();
            w.StartObject();
            if (id && id->IsString()) {
                w.Key("fullUrl");
                w.String((url_.without_query() + "/" + type + "/" + id->GetString()).c_str());
            }
            w.Key("resource");
            res->Accept(w);
            w.EndObject();
            w.EndArray();
            w.EndObject();
            auto parsed = fhir::parse_incoming("", {b.GetString(), b.GetSize()}, poll_->inbound);
            if (!parsed) {
                host_.log(log_level::info, "fhir: poll: " + type + "/" +
                                               (id && id->IsString() ? id->GetString() : "?") +
                                               " not taken: " + parsed.error().text());
                continue;
            }
            for (auto& ev : *parsed) {
                auto prom = std::make_shared<std::promise<samband::sdk::submit_result>>();
                pending.push_back(prom->get_future());
                if (host_.submit(ev.envelope_json, {},
                                 [prom](const samband::sdk::submit_result& r) {
                                     prom->set_value(r);
                                 }) != SAMBAND_OK) {
                    samband::sdk::submit_result r;
                    r.status = SAMBAND_RETRY;
                    r.message = "the host did not take the event";
                    prom->set_value(r);
                }
            }
        }
        bool all = true;
        const auto until = std::chrono::steady_clock::now() + timeout_;
        for (auto& f : pending) {
            if (f.wait_until(until) != std::future_status::ready) return std::nullopt;
            auto r = f.get();
            if (r.status == SAMBAND_OK) continue;
            host_.log(log_level::warn, "fhir: poll: an event was not stored: " + r.message);
            if (r.status != SAMBAND_INVALID && r.status != SAMBAND_PERMANENT) all = false;
        }
        if (!all) return std::nullopt;  // the cursor stays; the next round sends them again
        if (newest != cursor) {
            cursor_[type] = newest;
            if (!save_cursor()) {
                host_.log(log_level::error, "fhir: poll: cannot write " + poll_->state_file);
                return std::nullopt;
            }
        } else if (entries->Size() >= 100) {
            return std::size_t{0};  // a full page at one instant: stop here, no endless loop
        }
        return static_cast<std::size_t>(entries->Size());
    }

    // "Communication/123" from the transaction-response's first entry, else our identifier.
    static std::string first_location(std::string_view body, const fhir::built_bundle& b) {
        rapidjson::Document doc;
        samband::json::limits lim;
        lim.max_depth = 64;
        if (samband::json::parse(body, doc, lim).empty() && doc.IsObject()) {
            const Value* entry = member(doc, "entry");
            if (entry && entry->IsArray() && !entry->Empty()) {
                const Value* resp = member((*entry)[0], "response");
                const Value* loc = resp ? member(*resp, "location") : nullptr;
                if (loc && loc->IsString()) {
                    std::string l = loc->GetString();
                    if (auto h = l.find("/_history/"); h != std::string::npos) l.resize(h);
                    return l;
                }
            }
        }
        return b.entry_urls.empty() ? b.primary_identifier
                                    : b.entry_urls[0] + "?identifier=" + b.primary_identifier;
    }

    samband::sdk::host host_;
    fhir::bundle_options options_;
    std::chrono::milliseconds timeout_{30000};
    net::endpoint_url url_;
    std::unique_ptr<net::http_client> http_;
    std::shared_ptr<net::token_client> tokens_;
    bool dpop_ = false;
    std::optional<fhir::listener_config> listener_cfg_;
    std::unique_ptr<fhir::listener> listener_;
    std::optional<poll_config> poll_;
    std::map<std::string, std::string> cursor_;  // THREAD: the poll thread (and the constructor)
    std::thread poll_thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = true;
    samband::sdk::worker worker_{2};  // last: stopped (and joined) first
};

}  // namespace

SAMBAND_PLUGIN(fhir_plugin)
