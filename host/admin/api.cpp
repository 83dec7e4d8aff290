#include "admin/api.hpp"

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "report/outcomes.hpp"

#include <boost/url/parse.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <samband/json.hpp>

#include <fstream>
#include <stdexcept>

namespace samband::admin {

using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

reply error_reply(http::status st, std::string_view code, std::string_view message) {
    rapidjson::StringBuffer sb;
    json_writer w(sb);
    w.StartObject();
    w.Key("error");
    w.StartObject();
    w.Key("code");
    w.String(code.data(), static_cast<rapidjson::SizeType>(code.size()));
    w.Key("message");
    w.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
    w.EndObject();
    w.EndObject();
    return {st, sb.GetString()};
}

namespace {

// The one mapping from the host's error kinds to HTTP (core/error.hpp); the code is the kind.
reply error_reply(const core::error& e) {
    return admin::error_reply(static_cast<http::status>(core::http_status(e.kind)),
                              core::to_string(e.kind), e.message);
}

void kv(json_writer& w, const char* k, const std::string& v) {
    w.Key(k);
    w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
}
void kv(json_writer& w, const char* k, std::int64_t v) {
    w.Key(k);
    w.Int64(v);
}

void write_delivery(json_writer& w, const store::delivery_row& d) {
    w.StartObject();
    kv(w, "id", d.id);
    kv(w, "event_id", d.event_id);
    kv(w, "event_type", d.event_type);
    kv(w, "destination", d.destination);
    kv(w, "route", d.route);
    kv(w, "state", std::string(store::to_string(d.state)));
    kv(w, "attempts", static_cast<std::int64_t>(d.attempts));
    kv(w, "next_attempt_at", d.next_attempt_ms ? core::iso8601_ms(d.next_attempt_ms) : "");
    kv(w, "external_id", d.external_id);
    kv(w, "reason", core::mask_identifiers(d.reason));
    kv(w, "created_at", core::iso8601_ms(d.created_ms));
    kv(w, "updated_at", core::iso8601_ms(d.updated_ms));
    w.EndObject();
}

std::string kinds_text(std::uint32_t k) {
    std::string s;
    if (k & SAMBAND_KIND_SOURCE) s += "source";
    if (k & SAMBAND_KIND_SINK) s += s.empty() ? "sink" : ",sink";
    if (k & SAMBAND_KIND_TRANSFORM) s += s.empty() ? "transform" : ",transform";
    return s;
}

std::int64_t parse_i64(std::string_view s, bool& ok) {
    ok = !s.empty() && s.size() < 19;
    std::int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            ok = false;
            return 0;
        }
        v = v * 10 + (c - '0');
    }
    return v;
}

}  // namespace

std::map<std::string, std::string> read_tokens(const std::string& path) {
    std::map<std::string, std::string> out;  // token → operator name
    std::ifstream in(path);
    if (!in) throw std::runtime_error("admin: cannot read token file " + path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 >= line.size())
            throw std::runtime_error("admin: token file " + path + ": expected name:token lines");
        std::string token = line.substr(colon + 1);
        while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
        if (token.size() < 16)
            throw std::runtime_error("admin: token file " + path + ": token of " +
                                     line.substr(0, colon) + " is shorter than 16 characters");
        out[token] = line.substr(0, colon);
    }
    return out;
}

struct api::impl {
    backend& be;
    std::map<std::string, std::string> tokens;

    impl(backend& b, const std::string& token_file) : be(b) {
        if (!token_file.empty()) tokens = read_tokens(token_file);
    }

    // The operator behind the request: "operator:<name>" with a valid token, "local" without a
    // token file, or empty when a token file exists and the request has no valid token.
    template <class Fields>
    std::string actor(const http::request_header<Fields>& req) const {
        auto it = req.find(http::field::authorization);
        if (it != req.end()) {
            std::string v(it->value());
            if (v.rfind("Bearer ", 0) == 0) {
                auto t = tokens.find(v.substr(7));
                if (t != tokens.end()) return "operator:" + t->second;
            }
            return {};
        }
        return tokens.empty() ? "local" : std::string();
    }

    void handle(http::request<http::string_body> req, std::function<void(reply)> done) {
        reply r;
        try {
            r = route(req, done);
        } catch (const std::exception& e) {
            r = error_reply(http::status::internal_server_error, "internal", e.what());
        }
        if (r.status != http::status::unknown) done(std::move(r));
    }

    // The answer, or a reply with status `unknown` when `done` will be called later (submit).
    reply route(http::request<http::string_body>& req, const std::function<void(reply)>& done) {
        auto url = boost::urls::parse_origin_form(req.target());
        if (!url)
            return error_reply(http::status::bad_request, "bad_target", "malformed request target");
        std::string path = url->path();
        std::map<std::string, std::string> q;
        for (auto p : url->params()) q[std::string(p.key)] = std::string(p.value);
        auto method = req.method();
        auto segs = split(path);

        if (path == "/healthz") {
            if (method != http::verb::get) return not_allowed();
            return {http::status::ok, R"({"status":"ok"})"};
        }
        if (path == "/readyz") {
            if (method != http::verb::get) return not_allowed();
            std::string why;
            if (be.ready(why)) return {http::status::ok, R"({"status":"ready"})"};
            return error_reply(http::status::service_unavailable, "not_ready", why);
        }
        if (path == "/metrics") {
            if (method != http::verb::get) return not_allowed();
            return {http::status::ok, be.metrics_text(), "text/plain; version=0.0.4"};
        }
        if (segs.size() < 2 || segs[0] != "api" || segs[1] != "v1")
            return error_reply(http::status::not_found, "not_found", "no such resource: " + path);
        segs.erase(segs.begin(), segs.begin() + 2);
        if (segs.empty())
            return error_reply(http::status::not_found, "not_found", "no such resource");
        const std::string& what = segs[0];
        if (what == "status" && segs.size() == 1)
            return method == http::verb::get ? status() : not_allowed();
        if (what == "endpoints" && segs.size() == 1)
            return method == http::verb::get ? endpoints() : not_allowed();
        if (what == "plugins" && segs.size() == 1)
            return method == http::verb::get ? plugins() : not_allowed();
        if (what == "errors" && segs.size() == 1)
            return method == http::verb::get ? errors(q) : not_allowed();
        if (what == "events" && segs.size() == 1)
            return method == http::verb::post ? send_event(req, done) : not_allowed();
        if (what == "events" && segs.size() == 2)
            return method == http::verb::get ? get_event(req, segs[1], q) : not_allowed();
        if (what == "deliveries" && segs.size() == 1)
            return method == http::verb::get ? list_deliveries(q) : not_allowed();
        if (what == "deliveries" && segs.size() == 2)
            return method == http::verb::get ? get_delivery(segs[1]) : not_allowed();
        if (what == "deliveries" && segs.size() == 3 &&
            (segs[2] == "retry" || segs[2] == "override"))
            return method == http::verb::post ? act(req, segs[1], segs[2]) : not_allowed();
        if (what == "reports" && segs.size() == 2 && segs[1] == "outcomes")
            return method == http::verb::get ? outcomes(q) : not_allowed();
        if (what == "replay" && segs.size() == 1)
            return method == http::verb::post ? replay(req) : not_allowed();
        return error_reply(http::status::not_found, "not_found", "no such resource: " + path);
    }

    static std::vector<std::string> split(const std::string& path) {
        std::vector<std::string> out;
        std::string cur;
        for (char c : path) {
            if (c == '/') {
                if (!cur.empty()) out.push_back(cur);
                cur.clear();
            } else {
                cur += c;
            }
        }
        if (!cur.empty()) out.push_back(cur);
        return out;
    }

    static reply not_allowed() {
        return error_reply(http::status::method_not_allowed, "method_not_allowed",
                           "this method is not allowed on this resource");
    }

    reply status() {
        auto stats = be.store().stats();
        if (!stats)
            return error_reply(http::status::internal_server_error, "store",
                               stats.error().message());
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartObject();
        std::string why;
        w.Key("ready");
        w.Bool(be.ready(why));
        w.Key("destinations");
        w.StartArray();
        std::int64_t now = core::now_ms();
        for (const auto& s : *stats) {
            w.StartObject();
            kv(w, "destination", s.destination);
            for (int i = 0; i < 8; ++i)
                kv(w, std::string(store::to_string(static_cast<store::delivery_state>(i))).c_str(),
                   s.by_state[i]);
            kv(w, "oldest_waiting_s", s.oldest_pending_ms ? (now - s.oldest_pending_ms) / 1000 : 0);
            w.EndObject();
        }
        w.EndArray();
        w.Key("endpoints");
        write_endpoints(w);
        w.EndObject();
        return {http::status::ok, sb.GetString()};
    }

    void write_endpoints(json_writer& w) {
        w.StartArray();
        for (const auto& e : be.endpoints()) {
            w.StartObject();
            kv(w, "name", e.name);
            kv(w, "plugin", e.plugin);
            kv(w, "version", e.version);
            kv(w, "kinds", kinds_text(e.kinds));
            kv(w, "state", e.state);
            kv(w, "failure", e.failure);
            w.Key("stuck");
            w.Bool(e.stuck);
            w.EndObject();
        }
        w.EndArray();
    }

    reply endpoints() {
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        write_endpoints(w);
        return {http::status::ok, sb.GetString()};
    }

    reply plugins() {
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartArray();
        for (const auto& p : be.plugins()) {
            w.StartObject();
            kv(w, "name", p.name);
            kv(w, "version", p.version);
            kv(w, "description", p.description);
            kv(w, "abi",
               std::to_string(SAMBAND_ABI_MAJOR_OF(p.abi_version)) + "." +
                   std::to_string(SAMBAND_ABI_MINOR_OF(p.abi_version)));
            kv(w, "kinds", kinds_text(p.kinds));
            kv(w, "path", p.path);
            w.EndObject();
        }
        w.EndArray();
        return {http::status::ok, sb.GetString()};
    }

    reply errors(std::map<std::string, std::string>& q) {
        bool ok = true;
        std::int64_t limit = q.count("limit") ? parse_i64(q["limit"], ok) : 100;
        if (!ok || limit <= 0 || limit > 10000)
            return error_reply(http::status::bad_request, "bad_limit", "limit must be 1..10000");
        auto rows = be.store().list_errors(static_cast<std::size_t>(limit));
        if (!rows)
            return error_reply(http::status::internal_server_error, "store",
                               rows.error().message());
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartArray();
        for (const auto& [id, e] : *rows) {
            w.StartObject();
            kv(w, "id", id);
            kv(w, "source", e.source);
            kv(w, "reason", core::mask_identifiers(e.reason));
            kv(w, "idempotency_key", e.idempotency_key);
            w.EndObject();
        }
        w.EndArray();
        return {http::status::ok, sb.GetString()};
    }

    // The outcome report: aggregates only (no identifiers), so no audit row is needed.
    reply outcomes(std::map<std::string, std::string>& q) {
        std::string from = q["from"], to = q["to"], format = q.count("format") ? q["format"] : "md";
        if (auto why = report::check_arguments(from, to, format))
            return error_reply(http::status::bad_request, "bad_argument", *why);
        auto facts = report::load(be.store());
        if (!facts)
            return error_reply(http::status::internal_server_error, "store",
                               facts.error().message());
        std::string body = report::render(report::compute(*facts, from, to), format);
        const char* type = format == "csv"   ? "text/csv; charset=utf-8"
                           : format == "svg" ? "image/svg+xml"
                                             : "text/markdown; charset=utf-8";
        return {http::status::ok, std::move(body), type};
    }

    reply get_event(const http::request<http::string_body>& req, const std::string& id,
                    std::map<std::string, std::string>& q) {
        std::string who = actor(req);
        if (who.empty())
            return error_reply(http::status::unauthorized, "unauthorized",
                               "reading patient data needs an operator token");
        auto ev = be.store().get_event(id);
        if (!ev)
            return error_reply(http::status::internal_server_error, "store", ev.error().message());
        if (!*ev) return error_reply(http::status::not_found, "not_found", "no event " + id);
        std::string why = q.count("reason") ? q["reason"] : "";
        auto h = req.find("X-Samband-Reason");
        if (h != req.end()) why = std::string(h->value());
        be.store().audit(who, "api.read", "event:" + id, why.empty() ? "(no reason given)" : why);
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartObject();
        kv(w, "id", (*ev)->id);
        kv(w, "source", (*ev)->source);
        kv(w, "type", (*ev)->type);
        kv(w, "idempotency_key", (*ev)->idempotency_key);
        kv(w, "received_at", core::iso8601_ms((*ev)->received_ms));
        w.Key("envelope");
        w.RawValue((*ev)->envelope_json.c_str(), (*ev)->envelope_json.size(),
                   rapidjson::kObjectType);
        w.Key("deliveries");
        w.StartArray();
        store::delivery_query dq;
        dq.event_id = id;
        if (auto ds = be.store().list_deliveries(dq))
            for (const auto& d : *ds) write_delivery(w, d);
        w.EndArray();
        w.EndObject();
        return {http::status::ok, sb.GetString()};
    }

    reply list_deliveries(std::map<std::string, std::string>& q) {
        store::delivery_query dq;
        if (q.count("state") && !q["state"].empty()) {
            dq.state = store::parse_delivery_state(q["state"]);
            if (!dq.state)
                return error_reply(http::status::bad_request, "bad_state",
                                   "unknown state \"" + q["state"] +
                                       "\" (pending, in_flight, delivered, acknowledged, failed, "
                                       "dead, blocked, held)");
        }
        dq.destination = q["destination"];
        dq.event_id = q["event"];
        bool ok = true;
        if (q.count("limit")) {
            std::int64_t l = parse_i64(q["limit"], ok);
            if (!ok || l <= 0 || l > 10000)
                return error_reply(http::status::bad_request, "bad_limit",
                                   "limit must be 1..10000");
            dq.limit = static_cast<std::size_t>(l);
        }
        if (q.count("after")) {
            dq.after_id = parse_i64(q["after"], ok);
            if (!ok)
                return error_reply(http::status::bad_request, "bad_after", "after must be an id");
        }
        auto rows = be.store().list_deliveries(dq);
        if (!rows)
            return error_reply(http::status::internal_server_error, "store",
                               rows.error().message());
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartArray();
        for (const auto& d : *rows) write_delivery(w, d);
        w.EndArray();
        return {http::status::ok, sb.GetString()};
    }

    reply get_delivery(const std::string& sid) {
        bool ok = true;
        std::int64_t id = parse_i64(sid, ok);
        if (!ok)
            return error_reply(http::status::bad_request, "bad_id", "delivery ids are numbers");
        auto d = be.store().get_delivery(id);
        if (!d) return error_reply(core::from_store(d.error(), "store read failed"));
        if (!*d) return error_reply(http::status::not_found, "not_found", "no delivery " + sid);
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartObject();
        w.Key("delivery");
        write_delivery(w, **d);
        w.Key("audit");
        w.StartArray();
        if (auto rows = be.store().list_audit("delivery:" + sid, 200)) {
            for (const auto& a : *rows) {
                w.StartObject();
                kv(w, "at", core::iso8601_ms(a.at_ms));
                kv(w, "actor", a.actor);
                kv(w, "action", a.action);
                kv(w, "detail", core::mask_identifiers(a.detail));
                w.EndObject();
            }
        }
        w.EndArray();
        w.EndObject();
        return {http::status::ok, sb.GetString()};
    }

    static std::string body_reason(const std::string& body) {
        rapidjson::Document d;
        if (!json::parse(body, d).empty() || !d.IsObject() || !d.HasMember("reason") ||
            !d["reason"].IsString())
            return {};
        return d["reason"].GetString();
    }

    reply act(const http::request<http::string_body>& req, const std::string& sid,
              const std::string& verb) {
        std::string who = actor(req);
        if (who.empty())
            return error_reply(http::status::unauthorized, "unauthorized",
                               "a valid operator token is needed");
        bool ok = true;
        std::int64_t id = parse_i64(sid, ok);
        if (!ok)
            return error_reply(http::status::bad_request, "bad_id", "delivery ids are numbers");
        std::string reason = body_reason(req.body());
        if (verb == "override") {
            if (who == "local")
                return error_reply(http::status::forbidden, "forbidden",
                                   "overriding the consent gate needs an authenticated operator "
                                   "(configure admin.token_file)");
            if (reason.empty())
                return error_reply(http::status::bad_request, "reason_required",
                                   "an override needs a reason");
            auto r = be.override_delivery(id, who, reason);
            if (!r) return error_reply(r.error());
        } else {
            auto r = be.retry_delivery(id, who, reason.empty() ? "operator retry" : reason);
            if (!r) return error_reply(r.error());
        }
        return {http::status::ok, "{\"id\":" + sid + ",\"state\":\"pending\"}"};
    }

    reply replay(const http::request<http::string_body>& req) {
        std::string who = actor(req);
        if (who.empty())
            return error_reply(http::status::unauthorized, "unauthorized",
                               "a valid operator token is needed");
        rapidjson::Document d;
        if (!json::parse(req.body(), d).empty() || !d.IsObject() || !d.HasMember("destination") ||
            !d["destination"].IsString() || !d.HasMember("since_ms") || !d["since_ms"].IsInt64())
            return error_reply(http::status::bad_request, "bad_body",
                               "expected {\"destination\": \"name\", \"since_ms\": unix-ms}");
        auto r = be.replay(d["destination"].GetString(), d["since_ms"].GetInt64(), who);
        if (!r) return error_reply(r.error());
        return {http::status::ok, "{\"replayed\":" + std::to_string(*r) + "}"};
    }

    reply send_event(const http::request<http::string_body>& req,
                     const std::function<void(reply)>& done) {
        std::string who = actor(req);
        if (who.empty())
            return error_reply(http::status::unauthorized, "unauthorized",
                               "a valid operator token is needed");
        rapidjson::Document d;
        plugin::submission sub;
        if (!json::parse(req.body(), d).empty()) {
            // Not JSON (or nested too deep): ingest refuses it with the reason and keeps it in
            // the error store, so nothing posted is lost.
            sub.envelope_json = req.body();
            return submitted(std::move(sub), done);
        }
        if (!d.IsObject() || !d.HasMember("envelope"))
            return error_reply(http::status::bad_request, "bad_body",
                               "expected {\"envelope\": {...}, \"attachments\": [...]}");
        if (d["envelope"].IsString()) {
            sub.envelope_json = d["envelope"].GetString();
        } else {
            rapidjson::StringBuffer sb;
            json_writer w(sb);
            d["envelope"].Accept(w);
            sub.envelope_json = sb.GetString();
        }
        if (d.HasMember("attachments") && d["attachments"].IsArray()) {
            for (auto& a : d["attachments"].GetArray()) {
                if (!a.IsObject() || !a.HasMember("content_base64") ||
                    !a["content_base64"].IsString())
                    return error_reply(http::status::bad_request, "bad_attachment",
                                       "each attachment needs content_base64");
                plugin::submission::attachment at;
                at.filename = a.HasMember("filename") && a["filename"].IsString()
                                  ? a["filename"].GetString()
                                  : "attachment";
                at.media_type = a.HasMember("media_type") && a["media_type"].IsString()
                                    ? a["media_type"].GetString()
                                    : "";
                auto bytes = core::base64_decode(a["content_base64"].GetString());
                if (bytes) at.bytes = std::move(*bytes);
                if (!bytes)
                    return error_reply(http::status::bad_request, "bad_base64",
                                       "attachment " + at.filename + " is not valid base64");
                sub.attachments.push_back(std::move(at));
            }
        }
        return submitted(std::move(sub), done);
    }

    // Submits and answers from the store's commit callback: no thread waits for the commit.
    reply submitted(plugin::submission sub, const std::function<void(reply)>& done) {
        be.submit(std::move(sub), [done](const plugin::submit_result& r) {
            if (r.status == SAMBAND_OK) {
                done({r.duplicate ? http::status::ok : http::status::created,
                      "{\"event_id\":\"" + r.event_id +
                          "\",\"duplicate\":" + (r.duplicate ? "true" : "false") + "}"});
            } else if (r.status == SAMBAND_RETRY) {
                done(error_reply(http::status::service_unavailable, "retry", r.message));
            } else {
                done(error_reply(http::status::unprocessable_entity, "invalid_event", r.message));
            }
        });
        return {http::status::unknown, {}};
    }
};

api::api(backend& b, const std::string& token_file)
    : impl_(std::make_unique<impl>(b, token_file)) {}
api::~api() = default;

std::optional<reply> api::admit(const http::request_header<>& h) const {
    // Requests that carry a body (submit, retry, override, replay) are authenticated on the
    // header, before a byte of the body is read.
    if (h.method() == http::verb::post && impl_->actor(h).empty())
        return error_reply(http::status::unauthorized, "unauthorized",
                           "a valid operator token is needed");
    return std::nullopt;
}

void api::handle(http::request<http::string_body> req, std::function<void(reply)> done) {
    impl_->handle(std::move(req), std::move(done));
}

}  // namespace samband::admin
