#include "admin/cli.hpp"

#include "admin/auth.hpp"
#include "report/outcomes.hpp"

#include "core/ids.hpp"

#include "net/http.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/url/url.hpp>

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <samband/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace samband::admin {

namespace {

namespace http = boost::beast::http;
namespace fs = std::filesystem;

struct client_options {
    std::string admin;
    std::string token_file;
    std::string ca_file;
    bool json = false;
};

struct response {
    int status = 0;  // 0 = could not connect
    std::string body;
    std::string error;
    bool sent_token = false;
};

std::string admin_url(const client_options& o) {
    if (!o.admin.empty()) return o.admin;
    if (const char* e = std::getenv("SAMBAND_ADMIN")) return e;
    return "http://127.0.0.1:8780";
}

// The token the CLI sends: --token-file, else $SAMBAND_TOKEN_FILE, else $SAMBAND_TOKEN; empty
// when none is given. A named file that cannot be read, is empty, or is the daemon's hashed token
// file sets `error`.
std::string token(const client_options& o, std::string& error) {
    std::string file = o.token_file, from = "--token-file";
    if (file.empty()) {
        if (const char* f = std::getenv("SAMBAND_TOKEN_FILE"); f && *f) {
            file = f;
            from = "SAMBAND_TOKEN_FILE";
        } else if (const char* t = std::getenv("SAMBAND_TOKEN")) {
            return t;
        }
    }
    if (file.empty()) return {};
    std::ifstream in(file);
    if (!in) {
        error = "cannot read the token file " + file + " (" + from + ")";
        return {};
    }
    std::string t;
    while (std::getline(in, t)) {
        while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
        if (!t.empty() && t[0] != '#') break;
    }
    if (t.empty() || t[0] == '#') {
        error = "the token file " + file + " (" + from + ") holds no token";
        return {};
    }
    if (std::count(t.begin(), t.end(), ':') == 2) {
        error = "the token file " + file + " (" + from +
                ") is the daemon's file of hashed tokens; the CLI needs the token itself (printed "
                "once by `samband token add`), alone in a file";
        return {};
    }
    return t;
}

// How long one CLI call may take in all (connect, send, answer): SAMBAND_CLI_TIMEOUT_S seconds,
// default 60. A bad value is a clear error, not a silent default.
std::optional<std::chrono::seconds> cli_timeout(std::string& error) {
    const char* e = std::getenv("SAMBAND_CLI_TIMEOUT_S");
    if (!e || !*e) return std::chrono::seconds(60);
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (*end != '\0' || v <= 0 || v > 86400) {
        error = std::string("SAMBAND_CLI_TIMEOUT_S=") + e +
                " is not a whole number of seconds (1-86400)";
        return std::nullopt;
    }
    return std::chrono::seconds(v);
}

// One request to the admin API under one deadline, over http:// or https:// (the server's
// certificate checked against --ca-file / $SAMBAND_ADMIN_CA_FILE, else the system's CAs, and the
// host name; a client certificate for mutual TLS from $SAMBAND_ADMIN_CERT_FILE and
// $SAMBAND_ADMIN_KEY_FILE), through net::http_client: a server that accepts and never answers
// ends at the deadline, naming the step it hung in.
response call(const client_options& o, http::verb method, const std::string& target,
              const std::string& body = {}) {
    response r;
    std::string url = admin_url(o);
    auto u = net::parse_endpoint_url(url);
    if (!u) {
        r.error = "admin URL " + url + " is not an http:// or https:// URL";
        return r;
    }
    auto timeout = cli_timeout(r.error);
    if (!timeout) return r;
    net::tls_options tls;
    // Plain http wherever the operator points it (the daemon serves it on loopback only).
    tls.allow_plain_http_anywhere = true;
    if (u->tls()) {
        std::string ca = o.ca_file;
        if (ca.empty())
            if (const char* e = std::getenv("SAMBAND_ADMIN_CA_FILE")) ca = e;
        tls.ca_file = ca;
        tls.ca_file_only = true;  // --ca-file names the daemon's CA: trusted alone
        if (const char* cert = std::getenv("SAMBAND_ADMIN_CERT_FILE"); cert && *cert) {
            tls.client_cert_file = cert;
            if (const char* key = std::getenv("SAMBAND_ADMIN_KEY_FILE"); key && *key)
                tls.client_key_file = key;
        }
    }
    std::unique_ptr<net::http_client> client;
    try {
        client = std::make_unique<net::http_client>(
            *u, tls,
            [](net::log_level, std::string_view m) { std::cerr << "samband: " << m << "\n"; },
            256u * 1024 * 1024);
    } catch (const std::exception& e) {
        r.error = e.what();
        return r;
    }
    net::http_request req{method, target, 11};
    req.set(http::field::user_agent, "samband-cli");
    std::string t = token(o, r.error);
    if (!r.error.empty()) return r;
    r.sent_token = !t.empty();
    if (r.sent_token) req.set(http::field::authorization, "Bearer " + t);
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    auto sent = client->exchange(std::move(req), std::chrono::steady_clock::now() + *timeout);
    if (sent) {
        r.status = static_cast<int>(sent->result_int());
        r.body = std::move(sent->body());
        return r;
    }
    const auto [ec, step] = sent.error();
    using net::http_step;
    const bool reaching = step == http_step::resolve || step == http_step::connect;
    if (ec == boost::beast::error::timeout) {
        r.error = "the Samband admin API at " + url + " did not " +
                  (reaching                           ? std::string("accept the connection")
                   : step == http_step::tls_handshake ? std::string("finish the TLS handshake")
                   : step == http_step::send          ? std::string("take the request")
                                                      : std::string("answer")) +
                  " within " + std::to_string(timeout->count()) +
                  " s (SAMBAND_CLI_TIMEOUT_S sets the limit)";
    } else if (reaching) {
        r.error = "cannot reach the Samband admin API at " + url + ": " + ec.message() +
                  " (is `samband run` running? set --admin or SAMBAND_ADMIN)";
    } else if (step == http_step::tls_handshake) {
        r.error = "TLS with the admin API at " + url + " failed: " + ec.message() +
                  " (the server's certificate is checked against --ca-file or "
                  "SAMBAND_ADMIN_CA_FILE, else the system's CAs)";
    } else {
        r.error = "admin API at " + url + " failed (" + std::string(net::step_name(step)) +
                  "): " + net::describe_transport_error(ec);
    }
    return r;
}

// Prints an error answer; returns the exit status.
int report(const response& r) {
    if (r.status == 0) {
        std::cerr << "samband: " << r.error << "\n";
        return 3;
    }
    rapidjson::Document d;
    if (json::parse(r.body, d).empty() && d.IsObject() && d.HasMember("error") &&
        d["error"].IsObject()) {
        std::cerr << "samband: " << d["error"]["message"].GetString() << " (HTTP " << r.status
                  << ", " << d["error"]["code"].GetString() << ")\n";
    } else {
        std::cerr << "samband: HTTP " << r.status << ": " << r.body << "\n";
    }
    if (r.status == 401 && !r.sent_token)
        std::cerr << "samband: no token was sent: give a file holding your token with "
                     "--token-file FILE or SAMBAND_TOKEN_FILE (`samband token add` makes one)\n";
    else if (r.status == 401)
        std::cerr << "samband: the daemon does not know this token (see `samband token add`)\n";
    return 1;
}

void pretty(std::ostream& out, const std::string& json) {
    rapidjson::Document d;
    if (!samband::json::parse(json, d).empty()) {
        out << json << "\n";
        return;
    }
    rapidjson::StringBuffer sb;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(sb);
    d.Accept(w);
    out << sb.GetString() << "\n";
}

// Parses the daemon's answer; false after saying why when it is not JSON of the expected type.
bool read_answer(const response& r, rapidjson::Document& d, rapidjson::Type want) {
    std::string err = json::parse(r.body, d);
    if (err.empty() && d.GetType() == want) return true;
    std::cerr << "samband: unreadable answer from the daemon: "
              << (err.empty() ? std::string("unexpected JSON type") : err) << "\n";
    return false;
}

std::string get_str(const rapidjson::Value& v, const char* k) {
    auto it = v.FindMember(k);
    if (it == v.MemberEnd()) return {};
    if (it->value.IsString()) return it->value.GetString();
    if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
    if (it->value.IsBool()) return it->value.GetBool() ? "yes" : "no";
    return {};
}

void add_common(CLI::App* cmd, client_options& o, bool json_flag = true) {
    cmd->add_option("--admin", o.admin,
                    "Admin API URL (default $SAMBAND_ADMIN or http://127.0.0.1:8780)");
    cmd->add_option("--ca-file", o.ca_file,
                    "https:// only: the CA that signed the daemon's certificate (default "
                    "$SAMBAND_ADMIN_CA_FILE, else the system's CAs)");
    cmd->add_option("--token-file", o.token_file,
                    "File holding your admin token (default $SAMBAND_TOKEN_FILE; or the token "
                    "itself in $SAMBAND_TOKEN)");
    if (json_flag) cmd->add_flag("--json", o.json, "Print the raw JSON answer");
}

// "2h", "30m", "7d", "45s" ago, or an ISO-8601 UTC time, or unix milliseconds.
bool parse_since(const std::string& s, std::int64_t& out) {
    if (s.empty()) return false;
    char unit = s.back();
    std::string num = s.substr(0, s.size() - 1);
    std::int64_t mult = unit == 's'   ? 1000
                        : unit == 'm' ? 60000
                        : unit == 'h' ? 3600000
                        : unit == 'd' ? 86400000
                                      : 0;
    if (mult && !num.empty() && num.find_first_not_of("0123456789") == std::string::npos) {
        out = core::now_ms() - std::stoll(num) * mult;
        return true;
    }
    if (s.find_first_not_of("0123456789") == std::string::npos) {
        out = std::stoll(s);
        return true;
    }
    std::tm tm{};
    std::istringstream in(s);
    in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
    if (in.fail()) return false;
    out = static_cast<std::int64_t>(timegm(&tm)) * 1000;
    return true;
}

int cmd_status(const client_options& o) {
    auto r = call(o, http::verb::get, "/api/v1/status");
    if (r.status != 200) return report(r);
    if (o.json) {
        pretty(std::cout, r.body);
        return 0;
    }
    rapidjson::Document d;
    if (!read_answer(r, d, rapidjson::kObjectType)) return 1;
    std::cout << "samband at " << admin_url(o) << ": "
              << (d["ready"].GetBool() ? "ready" : "NOT ready") << "\n\n";
    if (d.HasMember("alerts") && d["alerts"].IsArray() && !d["alerts"].Empty()) {
        for (auto& a : d["alerts"].GetArray())
            std::cout << "ALERT (" << get_str(a, "kind") << ", since " << get_str(a, "since")
                      << "): " << get_str(a, "message") << "\n";
        std::cout << "\n";
    }
    std::cout << std::left << std::setw(22) << "DESTINATION" << std::right;
    for (const char* s :
         {"pending", "in_flight", "delivered", "acknowledged", "failed", "dead", "blocked", "held"})
        std::cout << std::setw(13) << s;
    std::cout << std::setw(12) << "oldest(s)"
              << "\n";
    for (auto& dst : d["destinations"].GetArray()) {
        std::cout << std::left << std::setw(22) << dst["destination"].GetString() << std::right;
        for (const char* s : {"pending", "in_flight", "delivered", "acknowledged", "failed", "dead",
                              "blocked", "held"})
            std::cout << std::setw(13) << dst[s].GetInt64();
        std::cout << std::setw(12) << dst["oldest_waiting_s"].GetInt64() << "\n";
    }
    std::cout << "\nENDPOINT              PLUGIN            KINDS            STATE\n";
    for (auto& e : d["endpoints"].GetArray()) {
        std::cout << std::left << std::setw(22) << get_str(e, "name") << std::setw(18)
                  << get_str(e, "plugin") << std::setw(17) << get_str(e, "kinds")
                  << get_str(e, "state");
        if (!get_str(e, "failure").empty()) std::cout << ": " << get_str(e, "failure");
        std::cout << "\n";
    }
    return 0;
}

void print_deliveries(const rapidjson::Value& arr) {
    std::cout << std::left << std::setw(8) << "ID" << std::setw(38) << "EVENT" << std::setw(18)
              << "DESTINATION" << std::setw(14) << "STATE" << std::setw(9) << "ATTEMPTS"
              << std::setw(26) << "UPDATED"
              << "REASON\n";
    for (auto& d : arr.GetArray()) {
        std::cout << std::left << std::setw(8) << get_str(d, "id") << std::setw(38)
                  << get_str(d, "event_id") << std::setw(18) << get_str(d, "destination")
                  << std::setw(14) << get_str(d, "state") << std::setw(9) << get_str(d, "attempts")
                  << std::setw(26) << get_str(d, "updated_at") << get_str(d, "reason") << "\n";
    }
}

}  // namespace

void add_client_commands(CLI::App& app, std::function<void(int)> set_exit) {
    auto o = std::make_shared<client_options>();

    auto* status = app.add_subcommand("status", "Show queues per destination and endpoint health");
    add_common(status, *o);
    status->callback([o, set_exit] { set_exit(cmd_status(*o)); });

    auto* deliveries = app.add_subcommand("deliveries", "List, show, retry or override deliveries");
    deliveries->require_subcommand(1);
    auto list_state = std::make_shared<std::string>();
    auto list_dest = std::make_shared<std::string>();
    auto list_limit = std::make_shared<int>(100);
    auto* list =
        deliveries->add_subcommand("list", "List deliveries (patient identifiers are never shown)");
    list->add_option("--state", *list_state,
                     "pending, in_flight, delivered, acknowledged, failed, dead, blocked, held");
    list->add_option("--destination", *list_dest, "Destination endpoint");
    list->add_option("--limit", *list_limit, "At most this many (default 100)");
    add_common(list, *o);
    list->callback([=] {
        std::string target = "/api/v1/deliveries?limit=" + std::to_string(*list_limit);
        if (!list_state->empty()) target += "&state=" + *list_state;
        if (!list_dest->empty()) target += "&destination=" + *list_dest;
        auto r = call(*o, http::verb::get, target);
        if (r.status != 200) return set_exit(report(r));
        if (o->json) {
            std::cout << r.body << "\n";
        } else {
            rapidjson::Document d;
            if (!read_answer(r, d, rapidjson::kArrayType)) return set_exit(1);
            print_deliveries(d);
        }
        set_exit(0);
    });

    auto id = std::make_shared<std::string>();
    auto* show = deliveries->add_subcommand("show", "Show one delivery with its audit trail");
    show->add_option("id", *id, "Delivery id")->required();
    add_common(show, *o);
    show->callback([=] {
        auto r = call(*o, http::verb::get, "/api/v1/deliveries/" + *id);
        if (r.status != 200) return set_exit(report(r));
        pretty(std::cout, r.body);
        set_exit(0);
    });

    auto reason = std::make_shared<std::string>();
    auto* retry =
        deliveries->add_subcommand("retry", "Send a dead, failed or held delivery again now");
    retry->add_option("id", *id, "Delivery id")->required();
    retry->add_option("--reason", *reason, "Why (kept in the audit log)");
    add_common(retry, *o, false);
    retry->callback([=] {
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        w.StartObject();
        w.Key("reason");
        w.String(reason->c_str());
        w.EndObject();
        auto r = call(*o, http::verb::post, "/api/v1/deliveries/" + *id + "/retry", sb.GetString());
        if (r.status != 200) return set_exit(report(r));
        std::cout << "delivery " << *id << " is pending again\n";
        set_exit(0);
    });

    auto* ovr = deliveries->add_subcommand(
        "override",
        "Let a blocked or held GP delivery past the consent gate (needs a token and a reason)");
    ovr->add_option("id", *id, "Delivery id")->required();
    ovr->add_option("--reason", *reason, "Why (kept in the audit log)")->required();
    add_common(ovr, *o, false);
    ovr->callback([=] {
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        w.StartObject();
        w.Key("reason");
        w.String(reason->c_str());
        w.EndObject();
        auto r =
            call(*o, http::verb::post, "/api/v1/deliveries/" + *id + "/override", sb.GetString());
        if (r.status != 200) return set_exit(report(r));
        std::cout << "delivery " << *id << " overridden; it is pending again\n";
        set_exit(0);
    });

    auto dest = std::make_shared<std::string>();
    auto since = std::make_shared<std::string>();
    auto* replay =
        app.add_subcommand("replay", "Send a destination's deliveries again since a time");
    replay->add_option("--destination", *dest, "Destination endpoint")->required();
    replay->add_option("--since", *since, "e.g. 2h, 3d, 2026-11-24T08:00:00 (UTC)")->required();
    add_common(replay, *o, false);
    replay->callback([=] {
        std::int64_t ms = 0;
        if (!parse_since(*since, ms)) {
            std::cerr << "samband: --since " << *since
                      << " is not a duration (2h, 3d) or an ISO-8601 time\n";
            return set_exit(2);
        }
        auto r =
            call(*o, http::verb::post, "/api/v1/replay",
                 "{\"destination\":\"" + *dest + "\",\"since_ms\":" + std::to_string(ms) + "}");
        if (r.status != 200) return set_exit(report(r));
        std::cout << r.body << "\n";
        set_exit(0);
    });

    auto file = std::make_shared<std::string>();
    auto* send = app.add_subcommand(
        "send", "Submit one event JSON by hand (attachments: attachments[].file)");
    send->add_option("file", *file, "Event JSON file")->required()->check(CLI::ExistingFile);
    add_common(send, *o, false);
    send->callback([=] {
        std::ifstream in(*file, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        std::string text = ss.str();
        rapidjson::Document d;
        const bool unparsed = !json::parse(text, d).empty();
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        w.StartObject();
        w.Key("envelope");
        if (unparsed) {
            w.String(text.c_str(),
                     static_cast<rapidjson::SizeType>(text.size()));  // the host says why
        } else {
            d.Accept(w);
        }
        w.Key("attachments");
        w.StartArray();
        if (!unparsed && d.IsObject() && d.HasMember("attachments") && d["attachments"].IsArray()) {
            for (auto& a : d["attachments"].GetArray()) {
                if (!a.IsObject() || !a.HasMember("file") || !a["file"].IsString()) continue;
                fs::path p = fs::path(*file).parent_path() / a["file"].GetString();
                std::ifstream af(p, std::ios::binary);
                if (!af) {
                    std::cerr << "samband: attachment file " << p << " cannot be read\n";
                    return set_exit(2);
                }
                std::stringstream as;
                as << af.rdbuf();
                w.StartObject();
                w.Key("filename");
                std::string fn =
                    get_str(a, "filename").empty() ? p.filename().string() : get_str(a, "filename");
                w.String(fn.c_str());
                w.Key("media_type");
                w.String(get_str(a, "media_type").c_str());
                w.Key("content_base64");
                std::string b = core::base64_encode(as.str());
                w.String(b.c_str(), static_cast<rapidjson::SizeType>(b.size()));
                w.EndObject();
            }
        }
        w.EndArray();
        w.EndObject();
        auto r = call(*o, http::verb::post, "/api/v1/events", sb.GetString());
        if (r.status != 200 && r.status != 201) return set_exit(report(r));
        rapidjson::Document a;
        if (!read_answer(r, a, rapidjson::kObjectType)) return set_exit(1);
        std::cout << "accepted event " << get_str(a, "event_id")
                  << (a["duplicate"].GetBool() ? " (duplicate: the first event's id)" : "") << "\n";
        set_exit(0);
    });

    auto* rep = app.add_subcommand("report", "Reports computed from the store");
    rep->require_subcommand(1);
    auto rep_from = std::make_shared<std::string>();
    auto rep_to = std::make_shared<std::string>();
    auto rep_format = std::make_shared<std::string>("md");
    auto rep_out = std::make_shared<std::string>();
    auto* outcomes = rep->add_subcommand(
        "outcomes", "RPH outcomes per month (no identifiers; counts 1-4 shown as <5)");
    outcomes->add_option("--from", *rep_from, "First month, yyyy-mm")->required();
    outcomes->add_option("--to", *rep_to, "Last month, yyyy-mm")->required();
    outcomes->add_option("--format", *rep_format, "md (default), csv or svg");
    outcomes->add_option("--out", *rep_out, "Write to this file instead of standard output");
    add_common(outcomes, *o, false);
    outcomes->callback([=] {
        if (auto why = report::check_arguments(*rep_from, *rep_to, *rep_format)) {
            std::cerr << "samband: " << *why << "\n";
            return set_exit(2);
        }
        auto r = call(*o, http::verb::get,
                      "/api/v1/reports/outcomes?from=" + *rep_from + "&to=" + *rep_to +
                          "&format=" + *rep_format);
        if (r.status != 200) return set_exit(report(r));
        if (rep_out->empty()) {
            std::cout << r.body;
        } else {
            std::ofstream f(*rep_out, std::ios::binary | std::ios::trunc);
            f << r.body;
            if (!f.flush()) {
                std::cerr << "samband: cannot write " << *rep_out << "\n";
                return set_exit(1);
            }
        }
        set_exit(0);
    });

    // Patient data, for the clinician role: the reason goes to the audit log with the token's name.
    auto read_reason = std::make_shared<std::string>();
    auto read_id = std::make_shared<std::string>();
    auto with_reason = [](std::string path, const std::string& reason) {
        boost::urls::url u(path);
        u.params().append({"reason", reason});
        return std::string(u.buffer());
    };
    auto* events = app.add_subcommand("events", "Read a stored event (clinician role)");
    events->require_subcommand(1);
    auto* event_show = events->add_subcommand(
        "show", "Print one event's envelope and deliveries (patient data: needs --reason)");
    event_show->add_option("id", *read_id, "Event id")->required();
    event_show->add_option("--reason", *read_reason, "Why you read it (kept in the audit log)")
        ->required();
    add_common(event_show, *o, false);
    event_show->callback([=] {
        auto r = call(*o, http::verb::get, with_reason("/api/v1/events/" + *read_id, *read_reason));
        if (r.status != 200) return set_exit(report(r));
        pretty(std::cout, r.body);
        set_exit(0);
    });

    auto* errors = app.add_subcommand(
        "errors", "List refused inputs kept in the error store, or show one's raw input");
    errors->add_option("--show", *read_id,
                       "Print this input's raw bytes (patient data: clinician role, --reason)");
    errors->add_option("--reason", *read_reason, "Why you read it (kept in the audit log)");
    add_common(errors, *o);
    errors->callback([=] {
        if (!read_id->empty()) {
            if (read_reason->empty()) {
                std::cerr << "samband: --show needs --reason (reading patient data is audited)\n";
                return set_exit(2);
            }
            auto r =
                call(*o, http::verb::get, with_reason("/api/v1/errors/" + *read_id, *read_reason));
            if (r.status != 200) return set_exit(report(r));
            pretty(std::cout, r.body);
            return set_exit(0);
        }
        auto r = call(*o, http::verb::get, "/api/v1/errors?limit=200");
        if (r.status != 200) return set_exit(report(r));
        if (o->json) {
            std::cout << r.body << "\n";
        } else {
            rapidjson::Document d;
            if (!read_answer(r, d, rapidjson::kArrayType)) return set_exit(1);
            for (auto& e : d.GetArray())
                std::cout << get_str(e, "id") << "  " << get_str(e, "source") << "  "
                          << get_str(e, "reason") << "\n";
        }
        set_exit(0);
    });
}

void add_token_commands(CLI::App& app, std::function<void(int)> set_exit) {
    auto* tok = app.add_subcommand("token", "Admin API tokens (stored hashed in the token file)");
    tok->require_subcommand(1);
    auto name = std::make_shared<std::string>();
    auto roles = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    auto* add = tok->add_subcommand(
        "add", "Make a token for NAME: prints it once, appends NAME:ROLES:SHA-256 to the file");
    add->add_option("name", *name, "Who holds it (a person or a service)")->required();
    add->add_option("--role", *roles,
                    "viewer, operator, clinician, auditor (a comma list for several)")
        ->required();
    add->add_option("--file", *file, "The daemon's token file (admin.token_file)")->required();
    auto* rm =
        tok->add_subcommand("remove", "Delete NAME's line (the daemon drops it within a second)");
    rm->add_option("name", *name, "Whose token")->required();
    rm->add_option("--file", *file, "The daemon's token file (admin.token_file)")->required();
    rm->callback([=] {
        std::ifstream in(*file);
        if (!in) {
            std::cerr << "samband: cannot read " << *file << "\n";
            return set_exit(1);
        }
        std::string line, kept;
        bool found = false;
        while (std::getline(in, line)) {
            if (line.rfind(*name + ":", 0) == 0) {
                found = true;
                continue;
            }
            kept += line + "\n";
        }
        if (!found) {
            std::cerr << "samband: " << *file << " has no token for " << *name << "\n";
            return set_exit(1);
        }
        // A new file renamed over the old one: the daemon never reads half of it.
        std::string tmp = *file + ".tmp";
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        bool ok =
            fd >= 0 && ::write(fd, kept.data(), kept.size()) == static_cast<ssize_t>(kept.size());
        ok = fd >= 0 && ::fsync(fd) == 0 && ok;
        ok = fd >= 0 && ::close(fd) == 0 && ok;
        ok = ok && std::rename(tmp.c_str(), file->c_str()) == 0;
        if (!ok) {
            std::cerr << "samband: cannot write " << *file << ": " << std::strerror(errno) << "\n";
            return set_exit(1);
        }
        std::cerr << "samband: removed " << *name << "'s token from " << *file << "\n";
        set_exit(0);
    });

    add->callback([=] {
        auto bits = parse_roles(*roles);
        if (!bits) {
            std::cerr << "samband: --role " << *roles
                      << " is not a comma list of viewer, operator, clinician, auditor\n";
            return set_exit(2);
        }
        if (name->empty() ||
            name->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789._@-") != std::string::npos) {
            std::cerr << "samband: the name " << *name
                      << " may hold only letters, digits and . _ @ -\n";
            return set_exit(2);
        }
        if (fs::exists(*file)) {
            try {
                if (token_table::read(*file).has_name(*name)) {
                    std::cerr << "samband: " << *file << " already has a token for " << *name
                              << "\n";
                    return set_exit(1);
                }
            } catch (const std::exception& e) {
                std::cerr << "samband: " << e.what() << "\n";
                return set_exit(1);
            }
        }
        std::string t;
        try {
            t = new_token();
        } catch (const std::exception& e) {
            std::cerr << "samband: " << e.what() << "\n";
            return set_exit(1);
        }
        // Owner-only: the hashes do not reveal tokens, but the names and roles are nobody
        // else's business.
        int fd = ::open(file->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
            std::cerr << "samband: cannot open " << *file << ": " << std::strerror(errno) << "\n";
            return set_exit(1);
        }
        std::string line = token_line(*name, *bits, t) + "\n";
        bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        ok = ::close(fd) == 0 && ok;
        if (!ok) {
            std::cerr << "samband: cannot write " << *file << "\n";
            return set_exit(1);
        }
        std::cout << t << "\n";
        std::cerr << "samband: added " << *name << " (" << roles_text(*bits) << ") to " << *file
                  << ". The token above is shown only this once; the file keeps its SHA-256. A "
                     "running daemon takes the new line within a second.\n";
        set_exit(0);
    });
}

}  // namespace samband::admin
