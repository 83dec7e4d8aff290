#include "admin/api.hpp"

#include "admin/auth.hpp"
#include "admin/console.hpp"

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "report/outcomes.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/url/parse.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <samband/json.hpp>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <variant>

#include <sys/stat.h>

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

namespace {

// Every resource of the API. Access is decided by the resource alone (on the request header),
// before any body byte is read.
enum class resource {
    healthz,
    readyz,
    metrics,
    status,
    endpoints,
    plugins,
    errors,
    error_one,
    events,
    event_one,
    deliveries,
    delivery_one,
    retry,
    override_,
    replay,
    audit,
    reports,
    whoami,
    console,
    unknown
};

struct target {
    resource what = resource::unknown;
    http::verb method = http::verb::get;  // the one method the resource answers
    std::vector<std::string> segs;        // path segments after /api/v1
    std::map<std::string, std::string> query;
    std::string path;
    bool malformed = false;
};

std::vector<std::string> split_path(const std::string& path) {
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

target classify(std::string_view raw) {
    target t;
    auto url = boost::urls::parse_origin_form(raw);
    if (!url) {
        t.malformed = true;
        return t;
    }
    t.path = url->path();
    for (auto p : url->params()) t.query[std::string(p.key)] = std::string(p.value);
    using v = http::verb;
    if (t.path == "/healthz") return t.what = resource::healthz, t;
    if (t.path == "/readyz") return t.what = resource::readyz, t;
    if (t.path == "/metrics") return t.what = resource::metrics, t;
    if (t.path == "/" || t.path == "/console" || t.path.rfind("/console/", 0) == 0)
        return t.what = resource::console, t;
    auto segs = split_path(t.path);
    if (segs.size() < 3 || segs[0] != "api" || segs[1] != "v1") return t;
    segs.erase(segs.begin(), segs.begin() + 2);
    t.segs = segs;
    const std::string& w = segs[0];
    auto set = [&](resource r, v m) {
        t.what = r;
        t.method = m;
        return t;
    };
    if (segs.size() == 1) {
        if (w == "status") return set(resource::status, v::get);
        if (w == "endpoints") return set(resource::endpoints, v::get);
        if (w == "plugins") return set(resource::plugins, v::get);
        if (w == "errors") return set(resource::errors, v::get);
        if (w == "events") return set(resource::events, v::post);
        if (w == "deliveries") return set(resource::deliveries, v::get);
        if (w == "replay") return set(resource::replay, v::post);
        if (w == "audit") return set(resource::audit, v::get);
        if (w == "whoami") return set(resource::whoami, v::get);
    }
    if (segs.size() == 2) {
        if (w == "errors") return set(resource::error_one, v::get);
        if (w == "events") return set(resource::event_one, v::get);
        if (w == "deliveries") return set(resource::delivery_one, v::get);
        if (w == "reports" && segs[1] == "outcomes") return set(resource::reports, v::get);
    }
    if (segs.size() == 3 && w == "deliveries" && segs[2] == "retry")
        return set(resource::retry, v::post);
    if (segs.size() == 3 && w == "deliveries" && segs[2] == "override")
        return set(resource::override_, v::post);
    return t;
}

// The roles that may use a resource; 0 = open to anyone (health).
role_set allowed(resource r, bool metrics_open) {
    switch (r) {
        case resource::healthz:
        case resource::readyz:
        case resource::console:  // the page and its script: no data (the API calls need tokens)
            return 0;
        case resource::metrics:
            return metrics_open ? 0 : all_roles;
        case resource::status:
        case resource::endpoints:
        case resource::plugins:
        case resource::whoami:
        case resource::reports:  // aggregates only, counts 1-4 shown as <5
            return all_roles;
        case resource::errors:
        case resource::deliveries:
        case resource::delivery_one:
            return role_operator | role_clinician;  // identifiers masked
        case resource::events:
        case resource::retry:
        case resource::replay:
            return role_operator;
        case resource::error_one:  // the raw rejected input
        case resource::event_one:  // the envelope with the patient's data
        case resource::override_:
            return role_clinician;
        case resource::audit:
            return role_auditor;
        case resource::unknown:
            return all_roles;  // an unknown path is 404 only for a valid token
    }
    return all_roles;
}

// Why patient data is read: `?reason=` or the X-Samband-Reason header.
template <class Fields>
std::string stated_reason(const http::request_header<Fields>& h,
                          const std::map<std::string, std::string>& q) {
    auto it = h.find("X-Samband-Reason");
    if (it != h.end()) return std::string(it->value());
    auto r = q.find("reason");
    return r == q.end() ? std::string() : r->second;
}

}  // namespace

struct api::impl {
    backend& be;
    api_options opts;
    // The token file is read at start (a malformed one stops the daemon) and again, at most once
    // a second, when its modification time, size or inode changed: `samband token add` and a
    // deleted line take effect without a restart. A file that became malformed keeps the tokens
    // read before (with a warning); a file that was removed leaves only the health endpoints.
    struct file_stamp {
        bool exists = false;
        std::int64_t mtime_ns = 0, size = 0, inode = 0;
        bool operator==(const file_stamp&) const = default;
    };
    struct token_state {
        std::shared_ptr<const token_table> table = std::make_shared<token_table>();
        bool missing = false;
    };
    mutable std::mutex tokens_mu;
    mutable token_state tokens;
    mutable file_stamp stamp;
    mutable std::chrono::steady_clock::time_point next_check;

    static file_stamp stamp_of(const std::string& path) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return {};
        return {true,
                static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                static_cast<std::int64_t>(st.st_size), static_cast<std::int64_t>(st.st_ino)};
    }

    impl(backend& b, api_options o) : be(b), opts(std::move(o)) {
        // A configured file that does not exist yet (a fresh install before `samband token
        // add`) leaves only the health endpoints answering; one that exists must be valid.
        if (opts.token_file.empty()) return;
        stamp = stamp_of(opts.token_file);
        tokens.missing = !stamp.exists;
        if (stamp.exists)
            tokens.table = std::make_shared<token_table>(token_table::read(opts.token_file));
        next_check = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }

    token_state current_tokens() const {
        std::lock_guard lock(tokens_mu);
        auto now = std::chrono::steady_clock::now();
        if (opts.token_file.empty() || now < next_check) return tokens;
        next_check = now + std::chrono::seconds(1);
        file_stamp st = stamp_of(opts.token_file);
        if (st == stamp) return tokens;
        stamp = st;
        if (!st.exists) {
            tokens = token_state{std::make_shared<token_table>(), true};
            if (opts.log)
                opts.log->warn("admin",
                               "the admin token file is gone: only /healthz and /readyz answer",
                               {{"file", opts.token_file}});
            return tokens;
        }
        try {
            tokens = token_state{std::make_shared<token_table>(token_table::read(opts.token_file)),
                                 false};
            if (opts.log)
                opts.log->info(
                    "admin", "admin token file read again",
                    {{"file", opts.token_file}, {"tokens", std::to_string(tokens.table->size())}});
        } catch (const std::exception& e) {
            if (opts.log)
                opts.log->warn("admin", "admin token file not taken; the tokens read before stay",
                               {{"why", e.what()}});
        }
        return tokens;
    }

    // The caller of a request to `t`, or the refusal: 401 without a (valid) token, 403 without
    // one of the roles the resource needs. Decided on the header alone.
    template <class Fields>
    std::variant<principal, reply> authorize(const http::request_header<Fields>& h,
                                             const target& t) const {
        role_set need = allowed(t.what, opts.metrics_open);
        if (need == 0) return principal{"anyone", 0};
        token_state now = current_tokens();
        if (now.table->empty())
            return error_reply(
                http::status::unauthorized, "unauthorized",
                opts.token_file.empty()
                    ? "the admin API has no token file (admin.token_file): only /healthz and "
                      "/readyz answer"
                    : "the admin token file " + opts.token_file +
                          (now.missing ? " does not exist" : " holds no token") +
                          ": only /healthz and /readyz answer (add tokens with `samband token "
                          "add`)");
        auto it = h.find(http::field::authorization);
        if (it == h.end())
            return error_reply(http::status::unauthorized, "unauthorized",
                               "this needs a token (Authorization: Bearer TOKEN)");
        std::string_view v = it->value();
        std::optional<principal> who;
        if (v.size() > 7 && boost::beast::iequals(v.substr(0, 7), "Bearer "))
            who = now.table->find(v.substr(7));
        if (!who)
            return error_reply(http::status::unauthorized, "unauthorized",
                               "the token is not valid");
        if ((who->roles & need) == 0)
            return error_reply(http::status::forbidden, "forbidden",
                               "this needs the role " + roles_text(need) + "; " + who->name +
                                   " has " + roles_text(who->roles));
        return *who;
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
        target t = classify(req.target());
        if (t.malformed)
            return error_reply(http::status::bad_request, "bad_target", "malformed request target");
        auto auth = authorize(req, t);
        if (auto* refusal = std::get_if<reply>(&auth)) return std::move(*refusal);
        const principal& who = std::get<principal>(auth);
        const std::string actor = "token:" + who.name;
        if (t.what == resource::unknown)
            return error_reply(http::status::not_found, "not_found", "no such resource: " + t.path);
        if (req.method() != t.method) return not_allowed();
        auto& q = t.query;
        switch (t.what) {
            case resource::healthz:
                return {http::status::ok, R"({"status":"ok"})"};
            case resource::readyz: {
                std::string why;
                if (be.ready(why)) return {http::status::ok, R"({"status":"ready"})"};
                return error_reply(http::status::service_unavailable, "not_ready", why);
            }
            case resource::metrics:
                return {http::status::ok, be.metrics_text(), "text/plain; version=0.0.4"};
            case resource::status:
                return status();
            case resource::endpoints:
                return endpoints();
            case resource::plugins:
                return plugins();
            case resource::errors:
                return errors(q);
            case resource::error_one:
                return get_error(req, t.segs[1], q, actor);
            case resource::events:
                return send_event(req, done);
            case resource::event_one:
                return get_event(req, t.segs[1], q, actor);
            case resource::deliveries:
                return list_deliveries(q);
            case resource::delivery_one:
                return get_delivery(t.segs[1]);
            case resource::retry:
            case resource::override_:
                return act(req, t.segs[1], t.segs[2], actor);
            case resource::replay:
                return replay(req, actor);
            case resource::audit:
                return audit(q, actor);
            case resource::reports:
                return outcomes(q);
            case resource::whoami:
                return whoami(who);
            case resource::console:
                return console(t.path);
            case resource::unknown:
                break;
        }
        return error_reply(http::status::not_found, "not_found", "no such resource: " + t.path);
    }

    // The token's holder and roles (the console shows only what they may use).
    static reply whoami(const principal& who) {
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartObject();
        kv(w, "name", who.name);
        w.Key("roles");
        w.StartArray();
        for (role r : {role_viewer, role_operator, role_clinician, role_auditor})
            if (who.roles & r) w.String(roles_text(r).c_str());
        w.EndArray();
        w.EndObject();
        return {http::status::ok, sb.GetString()};
    }

    // The web console's files (compiled in), with a Content-Security-Policy that allows only
    // this origin's script, style and API calls: no inline script, no other origin, no framing.
    static reply console(const std::string& path) {
        if (path == "/" || path == "/console") {
            reply r{http::status::found, "", "text/plain; charset=utf-8"};
            r.headers.emplace_back("Location", "/console/");
            return r;
        }
        std::string name = path.substr(std::string("/console/").size());
        if (name.empty()) name = "index.html";
        auto a = find_console_asset(name);
        if (!a) return error_reply(http::status::not_found, "not_found", "no console file " + name);
        reply r{http::status::ok, std::string(a->body), std::string(a->type)};
        r.headers.emplace_back("Content-Security-Policy",
                               "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'");
        r.headers.emplace_back("X-Frame-Options", "DENY");
        r.headers.emplace_back("Referrer-Policy", "no-referrer");
        r.headers.emplace_back("Cache-Control", "no-cache");
        return r;
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
        // Alerts that last while a trouble lasts (no patient data: folder, errno text, counts).
        w.Key("alerts");
        w.StartArray();
        if (auto b = be.store().blob_state(); b.trouble) {
            w.StartObject();
            kv(w, "kind", "blob_folder");
            kv(w, "message",
               "the attachment folder cannot be written; submits with new attachments are "
               "refused with RETRY and writes back off: " +
                   b.reason);
            kv(w, "since", core::iso8601_ms(b.since_ms));
            kv(w, "next_probe_at", core::iso8601_ms(b.next_probe_ms));
            kv(w, "last_error", b.last_error);
            kv(w, "refused", static_cast<std::int64_t>(b.refused));
            kv(w, "write_errors", static_cast<std::int64_t>(b.write_errors));
            w.EndObject();
        }
        w.EndArray();
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

    static reply reason_required() {
        return error_reply(http::status::bad_request, "reason_required",
                           "reading patient data needs a stated reason (?reason=… or the "
                           "X-Samband-Reason header); it is kept in the audit log");
    }

    // The raw input an error row kept: the clinician's read, with a reason, audited.
    reply get_error(const http::request<http::string_body>& req, const std::string& sid,
                    const std::map<std::string, std::string>& q, const std::string& who) {
        std::string why = stated_reason(req, q);
        if (why.empty()) return reason_required();
        bool ok = true;
        std::int64_t id = parse_i64(sid, ok);
        if (!ok) return error_reply(http::status::bad_request, "bad_id", "error ids are numbers");
        auto e = be.store().get_error(id);
        if (!e) return error_reply(core::from_store(e.error(), "store read failed"));
        if (!*e) return error_reply(http::status::not_found, "not_found", "no error " + sid);
        be.store().audit(who, "api.read", "error:" + sid, why);
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartObject();
        kv(w, "id", id);
        kv(w, "source", (*e)->source);
        kv(w, "reason", (*e)->reason);
        kv(w, "idempotency_key", (*e)->idempotency_key);
        kv(w, "payload", (*e)->payload);
        w.EndObject();
        return {http::status::ok, sb.GetString()};
    }

    // The audit log, newest first, optionally of one subject ("delivery:7", "event:…").
    reply audit(std::map<std::string, std::string>& q, const std::string& who) {
        bool ok = true;
        std::int64_t limit = q.count("limit") ? parse_i64(q["limit"], ok) : 200;
        if (!ok || limit <= 0 || limit > 10000)
            return error_reply(http::status::bad_request, "bad_limit", "limit must be 1..10000");
        auto rows = be.store().list_audit(q["subject"], static_cast<std::size_t>(limit));
        if (!rows) return error_reply(core::from_store(rows.error(), "store read failed"));
        be.store().audit(who, "api.audit_read", q["subject"], "");
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartArray();
        for (const auto& a : *rows) {
            w.StartObject();
            kv(w, "id", a.id);
            kv(w, "at", core::iso8601_ms(a.at_ms));
            kv(w, "actor", a.actor);
            kv(w, "action", a.action);
            kv(w, "subject", a.subject);
            kv(w, "detail", a.detail);
            kv(w, "hash", a.hash);
            w.EndObject();
        }
        w.EndArray();
        return {http::status::ok, sb.GetString()};
    }

    // A lost event's resend, if its source sent it again: the event that replaced it and when
    // (its event.replaced audit row, among the lost event's first rows), as "replaced_by" and
    // "replaced_at"; nothing when not (yet) sent again or the audit read fails.
    void write_replacement(json_writer& w, const std::string& id) {
        static constexpr std::string_view kAs = "sent again as event:";
        auto rows = be.store().list_audit("event:" + id, 1000);
        if (!rows) return;
        for (const auto& a : *rows) {
            auto at = a.action == "event.replaced" ? a.detail.find(kAs) : std::string::npos;
            if (at == std::string::npos) continue;
            kv(w, "replaced_by", a.detail.substr(at + kAs.size()));
            kv(w, "replaced_at", core::iso8601_ms(a.at_ms));
            return;
        }
    }

    reply get_event(const http::request<http::string_body>& req, const std::string& id,
                    const std::map<std::string, std::string>& q, const std::string& who) {
        std::string why = stated_reason(req, q);
        if (why.empty()) return reason_required();
        auto ev = be.store().get_event(id);
        if (!ev)
            return error_reply(http::status::internal_server_error, "store", ev.error().message());
        if (!*ev) return error_reply(http::status::not_found, "not_found", "no event " + id);
        be.store().audit(who, "api.read", "event:" + id, why);
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        w.StartObject();
        kv(w, "id", (*ev)->id);
        kv(w, "source", (*ev)->source);
        kv(w, "type", (*ev)->type);
        kv(w, "idempotency_key", (*ev)->idempotency_key);
        kv(w, "received_at", core::iso8601_ms((*ev)->received_ms));
        w.Key("lost");
        w.Bool((*ev)->lost_ms != 0);
        w.Key("envelope");
        if ((*ev)->lost_ms != 0) {
            // A crash lost its envelope before its acknowledgement: said plainly, no envelope.
            w.Null();
            kv(w, "lost_at", core::iso8601_ms((*ev)->lost_ms));
            kv(w, "lost_reason", store::kLostReason);
            write_replacement(w, id);
        } else {
            w.RawValue((*ev)->envelope_json.c_str(), (*ev)->envelope_json.size(),
                       rapidjson::kObjectType);
        }
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
        w.Key("attempts");
        w.StartArray();
        if (auto rows = be.store().list_attempts(id)) {
            for (const auto& a : *rows) {
                w.StartObject();
                kv(w, "n", a.n);
                kv(w, "started_at", a.started_ms ? core::iso8601_ms(a.started_ms) : "");
                kv(w, "ended_at", a.ended_ms ? core::iso8601_ms(a.ended_ms) : "");
                kv(w, "outcome", a.outcome);
                kv(w, "reason", core::mask_identifiers(a.reason));
                w.EndObject();
            }
        }
        w.EndArray();
        w.Key("receipts");
        w.StartArray();
        if (!(*d)->external_id.empty()) {
            if (auto rows = be.store().list_receipts((*d)->destination, (*d)->external_id)) {
                for (const auto& r : *rows) {
                    w.StartObject();
                    kv(w, "at", core::iso8601_ms(r.at_ms));
                    kv(w, "kind",
                       r.kind == SAMBAND_RECEIPT_ACK       ? "ack"
                       : r.kind == SAMBAND_RECEIPT_REJECT  ? "reject"
                       : r.kind == SAMBAND_RECEIPT_WARNING ? "warning"
                                                           : "unknown");
                    kv(w, "text", core::mask_identifiers(r.text));
                    w.EndObject();
                }
            }
        }
        w.EndArray();
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
              const std::string& verb, const std::string& who) {
        bool ok = true;
        std::int64_t id = parse_i64(sid, ok);
        if (!ok)
            return error_reply(http::status::bad_request, "bad_id", "delivery ids are numbers");
        std::string reason = body_reason(req.body());
        if (verb == "override") {
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

    reply replay(const http::request<http::string_body>& req, const std::string& who) {
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

api::api(backend& b, api_options opts) : impl_(std::make_unique<impl>(b, std::move(opts))) {}
api::~api() = default;

std::optional<reply> api::admit(const http::request_header<>& h) const {
    target t = classify(h.target());
    if (t.malformed)
        return error_reply(http::status::bad_request, "bad_target", "malformed request target");
    auto auth = impl_->authorize(h, t);
    if (auto* refusal = std::get_if<reply>(&auth)) return std::move(*refusal);
    return std::nullopt;
}

void api::handle(http::request<http::string_body> req, std::function<void(reply)> done) {
    impl_->handle(std::move(req), std::move(done));
}

}  // namespace samband::admin
