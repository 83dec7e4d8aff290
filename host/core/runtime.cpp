#include "core/runtime.hpp"

#include "codec/json.hpp"
#include "store/sealed.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "directory/fastlegeregisteret.hpp"

namespace samband::core {

namespace fs = std::filesystem;

delivery::policy to_policy(const config::policy& p) {
    delivery::policy out;
    out.max_attempts = p.max_attempts;
    out.backoff_base_ms = p.backoff_base_ms;
    out.backoff_max_ms = p.backoff_max_ms;
    out.attempt_timeout_ms = p.attempt_timeout_ms;
    out.concurrency = std::max(1, p.concurrency);
    out.receipt_window_s = p.receipt_window_s;
    return out;
}

std::map<std::string, secret_source> secret_sources(const config::config& c) {
    std::map<std::string, secret_source> out;
    for (const auto& [name, ref] : c.secrets) out[name] = secret_source{ref.file, ref.env};
    return out;
}

std::vector<config::config_error> check_endpoint_configs(const config::config& c,
                                                         plugin::registry& reg) {
    std::vector<config::config_error> errors;
    for (const auto& [name, ep] : c.endpoints) {
        const std::string at = "/endpoints/" + name;
        std::string why;
        std::string file = find_plugin_file(c, ep.plugin, reg, why);
        if (file.empty()) {
            errors.push_back({at + "/plugin", why});
            continue;
        }
        // As the daemon runs it: a vendor plugin is only ever loaded in a child (its schema comes
        // back in the child's hello), never into this process.
        auto lp = endpoint_isolated(ep, file) ? reg.probe(file, {}) : reg.load(file);
        if (!lp) {
            errors.push_back({at + "/plugin", file + ": " + lp.error().reason});
            continue;
        }
        if ((*lp)->config_schema.empty()) continue;
        codec::schema_set schema;
        if (auto added = schema.add("config", (*lp)->config_schema); !added) {
            errors.push_back({at + "/plugin", "plugin " + (*lp)->name +
                                                  " publishes a config schema that cannot be "
                                                  "used: " +
                                                  added.error()});
            continue;
        }
        rapidjson::Document cfg;
        if (std::string err =
                samband::json::parse(ep.config_json.empty() ? "{}" : ep.config_json, cfg);
            !err.empty()) {
            errors.push_back({at + "/config", err});
            continue;
        }
        if (auto err = schema.validate("config", cfg)) {
            // "/poll_ms: 5 is less than the minimum 10" → at/config/poll_ms: …
            std::string e = *err;
            std::string path = at + "/config";
            if (!e.empty() && e[0] == '/') {
                auto colon = e.find(": ");
                std::string p = e.substr(0, colon);
                if (p != "/") path += p;
                e = colon == std::string::npos ? e : e.substr(colon + 2);
            }
            errors.push_back({path, e + " (the schema of plugin " + (*lp)->name + ")"});
        }
    }
    return errors;
}

std::string find_plugin_file(const config::config& c, const std::string& ref, plugin::registry& reg,
                             std::string& why) {
    if (ref.find('/') != std::string::npos || (ref.size() > 3 && ref.ends_with(".so"))) {
        if (fs::exists(ref)) return ref;
        why = "plugin file " + ref + " does not exist";
        return {};
    }
    std::string under = ref;
    std::replace(under.begin(), under.end(), '-', '_');
    for (const auto& dir : c.plugin_dirs) {
        for (const auto& cand : {"samband_plugin_" + ref + ".so", "samband_plugin_" + under + ".so",
                                 ref + ".so", under + ".so"}) {
            fs::path p = fs::path(dir) / cand;
            if (fs::exists(p)) return p.string();
        }
    }
    // Last resort: a .so in the plugin dirs whose descriptor carries the name.
    for (const auto& dir : c.plugin_dirs) {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            if (e.path().extension() != ".so") continue;
            auto r = is_samband_plugin_file(e.path().string()) ? reg.load(e.path().string())
                                                               : reg.probe(e.path().string(), {});
            if (r && (*r)->name == ref) return e.path().string();
        }
    }
    std::string dirs;
    for (const auto& d : c.plugin_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
    why = "no plugin named \"" + ref + "\" in the plugin dirs (" + dirs + ")";
    return {};
}

bool endpoint_isolated(const config::endpoint_config& ec, const std::string& file) {
    return ec.isolation == "process" || (ec.isolation.empty() && !is_samband_plugin_file(file));
}

bool is_samband_plugin_file(const std::string& file) {
    std::error_code ec;
    fs::path dir = fs::weakly_canonical(file, ec).parent_path();
    for (const char* own : {SAMBAND_PLUGINDIR, SAMBAND_BUILD_PLUGINDIR}) {
        std::error_code ec2;
        if (dir == fs::weakly_canonical(own, ec2)) return true;
    }
    return false;
}

namespace {

live_endpoint make_endpoint(const std::string& name, const config::endpoint_config& ec,
                            const config::config& c, plugin::registry& reg,
                            plugin::host_services& services, logger& log) {
    live_endpoint ep;
    ep.name = name;
    ep.plugin_ref = ec.plugin.empty() ? ec.path : ec.plugin;
    ep.config_json = ec.config_json;
    ep.pol = to_policy(ec.policy);
    std::string why;
    std::string file = find_plugin_file(c, ep.plugin_ref, reg, why);
    if (file.empty()) {
        ep.failure = why;
        log.error("plugin.load", "endpoint skipped: " + why, {{"endpoint", name}});
        return ep;
    }
    bool isolated = endpoint_isolated(ec, file);
    auto loaded = isolated ? reg.probe(file, {}) : reg.load(file);
    if (!loaded) {
        ep.failure = loaded.error().reason;
        log.error("plugin.load", "endpoint skipped: " + loaded.error().reason,
                  {{"endpoint", name}, {"file", file}});
        return ep;
    }
    plugin::instance_options io;
    io.isolated = isolated;
    io.process.max_crashes = ec.max_crashes;
    io.process.crash_window = std::chrono::seconds(ec.crash_window_s);
    io.process.memory_limit_mb = static_cast<std::uint64_t>(ec.memory_limit_mb);
    auto inst = plugin::instance::create(**loaded, name, ec.config_json, services, io);
    if (!inst) {
        ep.failure = inst.error();
        log.error("plugin.create", "endpoint skipped: " + inst.error(),
                  {{"endpoint", name}, {"file", file}});
        return ep;
    }
    ep.inst = std::move(*inst);
    log.info("plugin.create", "endpoint created",
             {{"endpoint", name},
              {"plugin", (*loaded)->name},
              {"version", (*loaded)->version},
              {"file", file},
              {"isolation", ep.inst->isolated() ? "process" : "in-process"}});
    return ep;
}

}  // namespace

std::unique_ptr<runtime> build_runtime(const config::config& c, plugin::registry& reg,
                                       plugin::host_services& services, logger& log) {
    auto rt = std::make_unique<runtime>();
    for (const auto& [name, ec] : c.endpoints)
        rt->endpoints[name] = make_endpoint(name, ec, c, reg, services, log);
    return rt;
}

std::map<std::string, live_endpoint> create_endpoints(const std::vector<std::string>& names,
                                                      const config::config& c,
                                                      plugin::registry& reg,
                                                      plugin::host_services& services, logger& log,
                                                      std::string& why) {
    std::map<std::string, live_endpoint> out;
    for (const auto& name : names) {
        auto it = c.endpoints.find(name);
        if (it == c.endpoints.end()) continue;
        auto ep = make_endpoint(name, it->second, c, reg, services, log);
        if (!ep.inst) {
            why = "endpoint " + name + ": " + ep.failure;
            return {};
        }
        out[name] = std::move(ep);
    }
    return out;
}

endpoint_changes plan_endpoint_changes(const runtime& rt, const config::config& next) {
    endpoint_changes ch;
    for (const auto& [name, ec] : next.endpoints) {
        auto it = rt.endpoints.find(name);
        std::string ref = ec.plugin.empty() ? ec.path : ec.plugin;
        if (it == rt.endpoints.end() || it->second.plugin_ref != ref ||
            it->second.config_json != ec.config_json || !it->second.inst ||
            !it->second.inst->quarantined().empty()) {  // a reload gives it a fresh start
            ch.create.push_back(name);
        }
    }
    for (const auto& [name, ep] : rt.endpoints) {
        if (!next.endpoints.count(name)) ch.remove.push_back(name);
    }
    return ch;
}

void start_endpoints(runtime& rt, logger& log,
                     const std::function<bool(const std::string&)>& defer_source) {
    for (int pass = 0; pass < 2; ++pass) {
        for (auto& [name, ep] : rt.endpoints) {
            if (!ep.inst) continue;
            bool source = ep.inst->plugin().kinds & SAMBAND_KIND_SOURCE;
            if ((pass == 0) == source) continue;  // pass 0: sinks/transforms; pass 1: sources
            if (source && defer_source && defer_source(name)) continue;  // started later
            auto r = ep.inst->start();
            if (!r.ok()) {
                ep.failure = "start failed: " + r.message;
                log.error("plugin.start", ep.failure, {{"endpoint", name}});
                ep.inst->stop();
                ep.inst.reset();
            }
        }
    }
}

void stop_endpoints(runtime& rt, std::uint32_t kinds, logger& log) {
    for (auto& [name, ep] : rt.endpoints) {
        if (ep.inst && (ep.inst->plugin().kinds & kinds)) {
            log.debug("plugin.stop", "stopping endpoint", {{"endpoint", name}});
            ep.inst->stop();
        }
    }
}

namespace {
// A named secret's value (its file's first line, or its environment variable); empty if unset.
std::string read_secret(const config::config& c, const std::string& name) {
    std::string value;
    auto it = c.secrets.find(name);
    if (it == c.secrets.end()) return value;
    if (!it->second.env.empty()) {
        const char* v = std::getenv(it->second.env.c_str());
        if (v) value = v;
    } else {
        std::ifstream in(it->second.file);
        std::getline(in, value);
    }
    return value;
}
}  // namespace

std::string secret_value(const config::config& c, const std::string& name) {
    return read_secret(c, name);
}

std::shared_ptr<const store::keyring> store_keys(const config::config& c) {
    if (c.store.keys.empty()) return nullptr;
    auto k = std::make_shared<store::keyring>();
    for (const auto& [id, secret] : c.store.keys) {
        std::string material = read_secret(c, secret);
        if (material.empty())
            throw std::runtime_error("store.encryption: the secret \"" + secret + "\" of key \"" +
                                     id + "\" is empty or unreadable");
        try {
            k->add(id, material);
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error(std::string("store.encryption: ") + e.what());
        }
    }
    k->set_current(c.store.keys.front().first);
    return k;
}

std::string postgresql_conninfo(const config::config& c) {
    return read_secret(c, c.store.conninfo_secret);
}

std::unique_ptr<store::store> open_store(const config::config& c, logger& log) {
    if (c.store.kind == "postgresql") {
        store::postgresql_options po;
        po.conninfo = postgresql_conninfo(c);
        if (po.conninfo.empty())
            throw std::runtime_error(
                "store: the secret \"" + c.store.conninfo_secret +
                "\" (the PostgreSQL connection string) is empty or unreadable");
        po.node_id = c.store.node_id;
        po.lease_ms = c.store.lease_s * 1000;
        po.keys = store_keys(c);
        auto st = store::open_postgresql(po);
        log.info("store.open", "PostgreSQL store ready",
                 {{"node_id", po.node_id}, {"lease_s", std::to_string(c.store.lease_s)}});
        return st;
    }
    store::sqlite_options so;
    so.path = c.store.path;
    so.synchronous_full = c.store.synchronous != "normal";
    so.keys = store_keys(c);
    fs::create_directories(fs::path(so.path).parent_path());
    auto st = store::open_sqlite(so);
    log.info("store.open", "SQLite store ready",
             {{"path", so.path},
              {"encryption", so.keys ? "aes-256-gcm key " + so.keys->current() : "off"}});
    const auto check = st->opened();
    if (check.envelopes_checked > 0)
        log.info("store.recover", "envelope log records checked after an unclean stop",
                 {{"checked", std::to_string(check.envelopes_checked)},
                  {"lost", std::to_string(check.lost_events.size())}});
    for (const auto& id : check.lost_events)
        log.warn("store.recover",
                 "event lost before acknowledgement: its envelope, or an earlier event's, did not "
                 "reach the disk before the stop; marked lost, its deliveries dead; its source was "
                 "never told OK and is expected to send it again",
                 {{"event_id", id}});
    return st;
}

std::unique_ptr<directory::gp_directory> open_gp_directory(const config::config& c, logger& log) {
    if (!c.gp_directory) {
        log.info("gp_directory", "no GP directory configured; GP routes hold until one is");
        return nullptr;
    }
    const auto& g = *c.gp_directory;
    std::unique_ptr<directory::gp_directory> dir;
    if (g.kind == "fastlegeregisteret") {
        directory::flr_options o;
        o.url = g.url;
        o.username = g.username;
        o.timeout = std::chrono::milliseconds(g.timeout_ms);
        o.ca_file = g.ca_file;
        o.password = read_secret(c, g.password_secret);
        if (o.password.empty())
            throw std::runtime_error("gp_directory: the secret \"" + g.password_secret +
                                     "\" is empty or unreadable");
        std::unique_ptr<directory::gp_directory> names;
        if (!g.names_file.empty()) names = directory::open_file_directory(g.names_file);
        dir = directory::open_fastlegeregisteret(o, std::move(names));
        log.info("gp_directory", "Fastlegeregisteret client ready", {{"url", g.url}});
    } else {
        dir = directory::open_file_directory(g.path);
        log.info("gp_directory", "GP directory loaded", {{"path", g.path}});
    }
    return directory::with_cache(std::move(dir), std::chrono::seconds(g.cache_ttl_s));
}

std::unique_ptr<directory::receiver_directory> open_receiver_directory(const config::config& c,
                                                                       logger& log) {
    if (!c.adresseregisteret) return nullptr;
    const auto& a = *c.adresseregisteret;
    directory::ar_options o;
    o.http.what = "Adresseregisteret";
    o.http.url = a.url;
    o.http.username = a.username;
    o.http.timeout = std::chrono::milliseconds(a.timeout_ms);
    o.http.ca_file = a.ca_file;
    o.file = a.file;
    o.cache_ttl = std::chrono::seconds(a.cache_ttl_s);
    if (!a.password_secret.empty()) {
        o.http.password = read_secret(c, a.password_secret);
        if (o.http.password.empty())
            throw std::runtime_error("adresseregisteret: the secret \"" + a.password_secret +
                                     "\" is empty or unreadable");
    }
    auto dir = directory::open_adresseregisteret(std::move(o));
    std::string dests;
    for (const auto& [d, types] : receiver_checked_destinations(c))
        dests += (dests.empty() ? "" : ",") + d;
    log.info("adresseregisteret", "receiver check ready",
             {{"url", a.url}, {"file", a.file}, {"destinations", dests}});
    return dir;
}

std::map<std::string, std::map<std::string, std::string>> receiver_checked_destinations(
    const config::config& c) {
    std::map<std::string, std::map<std::string, std::string>> out;
    if (!c.adresseregisteret) return out;
    auto types_of = [](const config::endpoint_config& e) {
        std::map<std::string, std::string> types;
        auto doc = codec::parse_json(e.config_json);
        if (!doc || !doc->IsObject()) return types;
        auto t = doc->FindMember("receiver_message_types");
        if (t == doc->MemberEnd() || !t->value.IsObject()) return types;
        // By index: clang 14 in C++20 finds RapidJSON's member-iterator != ambiguous.
        for (rapidjson::SizeType i = 0; i < t->value.MemberCount(); ++i) {
            const auto& m = *(t->value.MemberBegin() + i);
            if (m.value.IsString()) types[m.name.GetString()] = m.value.GetString();
        }
        return types;
    };
    const auto& listed = c.adresseregisteret->destinations;
    for (const auto& [name, e] : c.endpoints) {
        std::string plugin = fs::path(e.plugin).filename().string();
        bool nhn = plugin == "nhn" || plugin == "samband_plugin_nhn.so";
        if (listed.empty() ? nhn : std::count(listed.begin(), listed.end(), name) > 0)
            out[name] = types_of(e);
    }
    return out;
}

}  // namespace samband::core
