#include "config/config.hpp"

#include "router/router.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <samband/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#ifndef SAMBAND_DATADIR
#define SAMBAND_DATADIR "/usr/local/share/samband"
#endif
#ifndef SAMBAND_PLUGINDIR
#define SAMBAND_PLUGINDIR "/usr/local/lib/samband/plugins"
#endif

namespace samband::config {

namespace {

namespace fs = std::filesystem;
using rapidjson::Value;

constexpr std::size_t kMaxConfigBytes = 4 * 1024 * 1024;

std::string json_text(const Value& v) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v.Accept(w);
    return std::string(sb.GetString(), sb.GetSize());
}

std::string escape_pointer_token(const std::string& t) {
    std::string out;
    for (char c : t) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

// The compiled schema, and wrappers that validate one part (an endpoint, a route, a secret).
struct schemas {
    rapidjson::Document source;
    std::unique_ptr<rapidjson::SchemaDocument> top;  // endpoints/routes/secrets checked apart
    std::map<std::string, std::pair<std::unique_ptr<rapidjson::Document>,
                                    std::unique_ptr<rapidjson::SchemaDocument>>>
        parts;

    schemas() {
        if (std::string err = samband::json::parse(config_schema_text(), source); !err.empty())
            throw std::runtime_error("built-in config schema: " + err);
        // Top level: the part collections only need the right container type here.
        rapidjson::Document top_doc;
        top_doc.CopyFrom(source, top_doc.GetAllocator());
        auto& props = top_doc["properties"];
        for (const char* k : {"endpoints", "secrets"}) {
            props[k].RemoveMember("additionalProperties");
        }
        props["routes"].RemoveMember("items");
        top_source_ = std::make_unique<rapidjson::Document>(std::move(top_doc));
        top = std::make_unique<rapidjson::SchemaDocument>(*top_source_);
        // One wrapper per top-level property, referring into a copy of the whole schema.
        for (auto& p : source["properties"].GetObject()) {
            auto d = std::make_unique<rapidjson::Document>();
            d->CopyFrom(source, d->GetAllocator());
            auto& pp = (*d)["properties"][p.name.GetString()];
            if (std::string(p.name.GetString()) == "endpoints" ||
                std::string(p.name.GetString()) == "secrets")
                pp.RemoveMember("additionalProperties");
            if (std::string(p.name.GetString()) == "routes") pp.RemoveMember("items");
            d->RemoveMember("required");
            d->RemoveMember("additionalProperties");
            d->RemoveMember("properties");
            rapidjson::Value props_copy;
            props_copy.CopyFrom(source["properties"], d->GetAllocator());
            (*d).AddMember("properties", props_copy, d->GetAllocator());
            auto& pp2 = (*d)["properties"][p.name.GetString()];
            if (std::string(p.name.GetString()) == "endpoints" ||
                std::string(p.name.GetString()) == "secrets")
                pp2.RemoveMember("additionalProperties");
            if (std::string(p.name.GetString()) == "routes") pp2.RemoveMember("items");
            std::string ref = std::string("#/properties/") + p.name.GetString();
            d->AddMember("$ref", rapidjson::Value(ref.c_str(), d->GetAllocator()),
                         d->GetAllocator());
            auto sd = std::make_unique<rapidjson::SchemaDocument>(*d);
            parts[std::string("property:") + p.name.GetString()] = {std::move(d), std::move(sd)};
            (void)pp;
        }
        for (const char* part : {"endpoint", "route", "secret"}) {
            auto d = std::make_unique<rapidjson::Document>();
            d->SetObject();
            auto& a = d->GetAllocator();
            Value defs;
            defs.CopyFrom(source["definitions"], a);
            d->AddMember("definitions", defs, a);
            Value ref((std::string("#/definitions/") + part).c_str(), a);
            d->AddMember("$ref", ref, a);
            auto sd = std::make_unique<rapidjson::SchemaDocument>(*d);
            parts[part] = {std::move(d), std::move(sd)};
        }
    }
    std::unique_ptr<rapidjson::Document> top_source_;
};

const schemas& built_in() {
    static const schemas s;  // immutable after construction
    return s;
}

std::string describe(const rapidjson::SchemaValidator& v, const rapidjson::Document& schema_doc,
                     const Value& doc) {
    std::string kw = v.GetInvalidSchemaKeyword();
    const Value* sn = v.GetInvalidSchemaPointer().Get(schema_doc);
    const Value* dn = v.GetInvalidDocumentPointer().Get(doc);
    if (kw == "additionalProperties" && sn) {
        auto props = sn->FindMember("properties");
        std::set<std::string> known;
        if (props != sn->MemberEnd() && props->value.IsObject())
            for (auto& m : props->value.GetObject()) known.insert(m.name.GetString());
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        // RapidJSON points at the unknown member itself; its name is the pointer's last token.
        const auto& ptr = v.GetInvalidDocumentPointer();
        std::size_t n = ptr.GetTokenCount();
        std::string key =
            n ? std::string(ptr.GetTokens()[n - 1].name, ptr.GetTokens()[n - 1].length) : "";
        return "unknown key \"" + key + "\" (known: " + list + ")";
    }
    if (kw == "required" && sn && dn && dn->IsObject()) {
        auto req = sn->FindMember("required");
        if (req != sn->MemberEnd())
            for (auto& r : req->value.GetArray())
                if (!dn->HasMember(r.GetString()))
                    return std::string("required key \"") + r.GetString() + "\" is missing";
    }
    if (kw == "type" && sn && dn) {
        return "wrong type: expected " + json_text((*sn)["type"]) + ", got " + json_text(*dn);
    }
    if (kw == "enum" && sn && dn) {
        return json_text(*dn) + " is not one of " + json_text((*sn)["enum"]);
    }
    if ((kw == "minimum" || kw == "maximum") && sn && dn) {
        return json_text(*dn) +
               (kw == "minimum" ? " is below the minimum " : " is above the maximum ") +
               json_text((*sn)[kw.c_str()]);
    }
    if (kw == "pattern" && sn && dn) {
        return json_text(*dn) + " does not match the pattern " + json_text((*sn)["pattern"]);
    }
    if (kw == "minItems" && sn)
        return "must have at least " + json_text((*sn)["minItems"]) + " item(s)";
    if (kw == "minLength" && dn) return "must not be empty";
    return "fails the schema rule \"" + kw + "\"";
}

void validate_part(const rapidjson::SchemaDocument& sd, const rapidjson::Document& sdoc,
                   const Value& v, const std::string& prefix, std::vector<config_error>& errs) {
    rapidjson::SchemaValidator val(sd);
    if (v.Accept(val)) return;
    rapidjson::StringBuffer sb;
    val.GetInvalidDocumentPointer().Stringify(sb);
    errs.push_back({prefix + sb.GetString(), describe(val, sdoc, v)});
}

std::string resolve(const std::string& base, const std::string& p) {
    if (p.empty() || fs::path(p).is_absolute()) return p;
    return (fs::path(base) / p).lexically_normal().string();
}

bool valid_listen(const std::string& s, std::string& why) {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) {
        why = "expected host:port, got \"" + s + "\"";
        return false;
    }
    int port = std::atoi(s.substr(colon + 1).c_str());
    if (port < 0 || port > 65535) {
        why = "port " + s.substr(colon + 1) + " is out of range";
        return false;
    }
    return true;
}

// Whether host:port names a loopback host (the only place plain HTTP is allowed for admin).
bool loopback_listen(const std::string& s) {
    std::string host = s.substr(0, s.rfind(':'));
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

config_result parse_config(const std::string& text, const std::string& file,
                           const std::string& base_dir) {
    config_result res;
    auto& errs = res.errors;
    if (text.size() > kMaxConfigBytes) {
        errs.push_back({"", "config is larger than 4 MB"});
        return res;
    }
    rapidjson::Document doc;
    samband::json::limits lim;
    lim.max_bytes = kMaxConfigBytes;
    lim.relaxed = true;  // people write configs: comments and trailing commas are fine
    if (std::string err = samband::json::parse(text, doc, lim); !err.empty()) {
        errs.push_back({"", err});
        return res;
    }
    const schemas& s = built_in();
    if (!doc.IsObject()) {
        errs.push_back({"", "the config must be a JSON object"});
        return res;
    }
    // Each top-level key is validated on its own, so one run names every section's errors
    // (RapidJSON 1.1's validator stops at the first error).
    const Value& props = s.source["properties"];
    for (auto& m : doc.GetObject()) {
        std::string key = m.name.GetString();
        if (!props.HasMember(key.c_str())) {
            std::string list;
            for (auto& p : props.GetObject())
                list += (list.empty() ? "" : ", ") + std::string(p.name.GetString());
            errs.push_back({"/" + escape_pointer_token(key),
                            "unknown key \"" + key + "\" (known: " + list + ")"});
            continue;
        }
        auto part = s.parts.find("property:" + key);
        if (part != s.parts.end())
            validate_part(*part->second.second, *part->second.first, m.value,
                          "/" + escape_pointer_token(key), errs);
    }
    for (auto& r : s.source["required"].GetArray())
        if (!doc.HasMember(r.GetString()))
            errs.push_back({"", std::string("required key \"") + r.GetString() + "\" is missing"});

    auto obj = [&](const char* k) -> const Value* {
        auto it = doc.FindMember(k);
        return it != doc.MemberEnd() && it->value.IsObject() ? &it->value : nullptr;
    };
    if (const Value* eps = obj("endpoints")) {
        for (auto& m : eps->GetObject()) {
            std::string name = m.name.GetString();
            std::string prefix = "/endpoints/" + escape_pointer_token(name);
            static const std::regex name_re("^[a-z0-9][a-z0-9_.-]*$");
            if (!std::regex_match(name, name_re))
                errs.push_back(
                    {prefix, "endpoint name \"" + name + "\" must match [a-z0-9][a-z0-9_.-]*"});
            validate_part(*s.parts.at("endpoint").second, *s.parts.at("endpoint").first, m.value,
                          prefix, errs);
        }
    }
    if (const Value* secs = obj("secrets")) {
        for (auto& m : secs->GetObject()) {
            std::string prefix = "/secrets/" + escape_pointer_token(m.name.GetString());
            validate_part(*s.parts.at("secret").second, *s.parts.at("secret").first, m.value,
                          prefix, errs);
            if (m.value.IsObject() && m.value.HasMember("file") == m.value.HasMember("env"))
                errs.push_back({prefix, "give exactly one of \"file\" or \"env\""});
        }
    }
    auto rit = doc.FindMember("routes");
    if (rit != doc.MemberEnd() && rit->value.IsArray()) {
        for (rapidjson::SizeType i = 0; i < rit->value.Size(); ++i) {
            validate_part(*s.parts.at("route").second, *s.parts.at("route").first, rit->value[i],
                          "/routes/" + std::to_string(i), errs);
        }
    }
    if (!errs.empty()) return res;

    // The schema holds: build the structs, then check references between the parts.
    config c;
    c.file = file;
    c.base_dir = base_dir;
    auto str = [](const Value& o, const char* k, std::string def) {
        auto it = o.FindMember(k);
        return it != o.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString())
                                                           : def;
    };
    auto i64 = [](const Value& o, const char* k, std::int64_t def) {
        auto it = o.FindMember(k);
        return it != o.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : def;
    };
    if (const Value* n = obj("node")) c.node.name = str(*n, "name", c.node.name);
    if (const Value* st = obj("store")) {
        c.store.kind = str(*st, "kind", c.store.kind);
        c.store.path = str(*st, "path", c.store.path);
        c.store.retention_days = i64(*st, "retention_days", c.store.retention_days);
        c.store.synchronous = str(*st, "synchronous", c.store.synchronous);
        c.store.attachment_copies = str(*st, "attachment_copies", "");
        c.store.conninfo_secret = str(*st, "conninfo_secret", "");
        c.store.node_id = str(*st, "node_id", "");
        c.store.lease_s = i64(*st, "lease_s", c.store.lease_s);
        if (c.store.kind == "postgresql") {
            auto secs = doc.FindMember("secrets");
            if (c.store.conninfo_secret.empty())
                errs.push_back({"/store/conninfo_secret",
                                "a postgresql store needs conninfo_secret: the secret holding its "
                                "connection string"});
            else if (secs == doc.MemberEnd() ||
                     !secs->value.HasMember(c.store.conninfo_secret.c_str()))
                errs.push_back({"/store/conninfo_secret", "unknown secret \"" +
                                                              c.store.conninfo_secret +
                                                              "\" (define it under secrets)"});
        }
        if (auto enc = st->FindMember("encryption");
            enc != st->MemberEnd() && enc->value.IsObject()) {
            auto secs = doc.FindMember("secrets");
            auto key = [&](const Value& k, const std::string& where) {
                std::string id = str(k, "key_id", ""), secret = str(k, "key_secret", "");
                for (const auto& [known, unused] : c.store.keys)
                    if (known == id)
                        errs.push_back({where + "/key_id", "key id \"" + id + "\" appears twice"});
                if (secs == doc.MemberEnd() || !secs->value.IsObject() ||
                    !secs->value.HasMember(secret.c_str()))
                    errs.push_back({where + "/key_secret",
                                    "unknown secret \"" + secret + "\" (define it under secrets)"});
                c.store.keys.emplace_back(id, secret);
            };
            key(enc->value, "/store/encryption");
            if (auto prev = enc->value.FindMember("previous");
                prev != enc->value.MemberEnd() && prev->value.IsArray())
                for (rapidjson::SizeType i = 0; i < prev->value.Size(); ++i)
                    key(prev->value[i], "/store/encryption/previous/" + std::to_string(i));
        }
    }
    if (c.store.node_id.empty()) c.store.node_id = c.node.name;
    c.store.path = resolve(base_dir, c.store.path);
    c.store.attachment_copies = c.store.attachment_copies.empty()
                                    ? c.store.path + ".copies"
                                    : resolve(base_dir, c.store.attachment_copies);
    if (const Value* a = obj("admin")) {
        c.admin.listen = str(*a, "listen", c.admin.listen);
        c.admin.token_file = resolve(base_dir, str(*a, "token_file", ""));
        auto mo = a->FindMember("metrics_open");
        c.admin.metrics_open = mo != a->MemberEnd() && mo->value.IsBool() && mo->value.GetBool();
        auto t = a->FindMember("tls");
        if (t != a->MemberEnd() && t->value.IsObject()) {
            c.admin.tls_cert_file = resolve(base_dir, str(t->value, "cert_file", ""));
            c.admin.tls_key_file = resolve(base_dir, str(t->value, "key_file", ""));
            c.admin.tls_client_ca_file = resolve(base_dir, str(t->value, "client_ca_file", ""));
        }
    }
    if (std::string why; !valid_listen(c.admin.listen, why)) {
        errs.push_back({"/admin/listen", why});
    } else if (c.admin.tls_cert_file.empty() && !loopback_listen(c.admin.listen)) {
        errs.push_back({"/admin/listen",
                        c.admin.listen + " is beyond loopback: the admin API then needs TLS (set "
                                         "admin.tls.cert_file and admin.tls.key_file)"});
    }
    if (const Value* l = obj("log")) {
        c.log.level = str(*l, "level", c.log.level);
        c.log.format = str(*l, "format", c.log.format);
    }
    auto pd = doc.FindMember("plugin_dirs");
    if (pd != doc.MemberEnd()) {
        for (auto& d : pd->value.GetArray())
            c.plugin_dirs.push_back(resolve(base_dir, d.GetString()));
    } else {
        c.plugin_dirs.push_back(SAMBAND_PLUGINDIR);
    }
    c.schemas_dir = resolve(base_dir, str(doc, "schemas_dir", SAMBAND_DATADIR "/schemas"));
    if (const Value* l = obj("limits")) {
        c.limits.max_event_bytes = static_cast<std::size_t>(
            i64(*l, "max_event_bytes", static_cast<std::int64_t>(c.limits.max_event_bytes)));
        c.limits.max_attachment_bytes = static_cast<std::uint64_t>(i64(
            *l, "max_attachment_bytes", static_cast<std::int64_t>(c.limits.max_attachment_bytes)));
        c.limits.max_attachments = static_cast<std::size_t>(
            i64(*l, "max_attachments", static_cast<std::int64_t>(c.limits.max_attachments)));
    }
    if (const Value* id = obj("identifiers")) {
        auto it = id->FindMember("allow_synthetic");
        if (it != id->MemberEnd()) c.identifiers.allow_synthetic = it->value.GetBool();
    }
    if (const Value* g = obj("gp_directory")) {
        gp_directory_config gc;
        gc.kind = str(*g, "kind", gc.kind);
        gc.path = resolve(base_dir, str(*g, "path", ""));
        gc.cache_ttl_s = i64(*g, "cache_ttl_s", gc.cache_ttl_s);
        gc.url = str(*g, "url", "");
        gc.username = str(*g, "username", "");
        gc.password_secret = str(*g, "password_secret", "");
        gc.names_file = resolve(base_dir, str(*g, "names_file", ""));
        gc.ca_file = resolve(base_dir, str(*g, "ca_file", ""));
        gc.timeout_ms = i64(*g, "timeout_ms", gc.timeout_ms);
        if (gc.kind == "file" && gc.path.empty())
            errs.push_back({"/gp_directory/path", "a file directory needs a path"});
        if (gc.kind == "fastlegeregisteret") {
            if (gc.url.empty())
                errs.push_back({"/gp_directory/url", "the Fastlegeregisteret needs a url"});
            if (gc.username.empty() || gc.password_secret.empty())
                errs.push_back(
                    {"/gp_directory", "the Fastlegeregisteret needs username and password_secret"});
            auto secs = doc.FindMember("secrets");
            if (!gc.password_secret.empty() &&
                (secs == doc.MemberEnd() || !secs->value.HasMember(gc.password_secret.c_str())))
                errs.push_back(
                    {"/gp_directory/password_secret",
                     "unknown secret \"" + gc.password_secret + "\" (define it under secrets)"});
        }
        c.gp_directory = gc;
    }
    if (const Value* a = obj("adresseregisteret")) {
        adresseregisteret_config ac;
        ac.url = str(*a, "url", "");
        ac.username = str(*a, "username", "");
        ac.password_secret = str(*a, "password_secret", "");
        ac.ca_file = resolve(base_dir, str(*a, "ca_file", ""));
        ac.file = resolve(base_dir, str(*a, "file", ""));
        ac.timeout_ms = i64(*a, "timeout_ms", ac.timeout_ms);
        ac.cache_ttl_s = i64(*a, "cache_ttl_s", ac.cache_ttl_s);
        if (auto d = a->FindMember("destinations"); d != a->MemberEnd() && d->value.IsArray())
            for (const auto& n : d->value.GetArray())
                if (n.IsString()) ac.destinations.push_back(n.GetString());
        if (ac.url.empty() && ac.file.empty())
            errs.push_back(
                {"/adresseregisteret", "the Adresseregisteret needs a url, a file or both"});
        if (ac.username.empty() != ac.password_secret.empty())
            errs.push_back(
                {"/adresseregisteret", "username and password_secret go together (HTTP Basic)"});
        auto secs = doc.FindMember("secrets");
        if (!ac.password_secret.empty() &&
            (secs == doc.MemberEnd() || !secs->value.HasMember(ac.password_secret.c_str())))
            errs.push_back(
                {"/adresseregisteret/password_secret",
                 "unknown secret \"" + ac.password_secret + "\" (define it under secrets)"});
        c.adresseregisteret = ac;
    }
    if (const Value* secs = obj("secrets")) {
        for (auto& m : secs->GetObject())
            c.secrets[m.name.GetString()] = {resolve(base_dir, str(m.value, "file", "")),
                                             str(m.value, "env", "")};
    }
    for (auto& m : obj("endpoints")->GetObject()) {
        endpoint_config e;
        e.name = m.name.GetString();
        e.plugin = str(m.value, "plugin", "");
        if (e.plugin.find('/') != std::string::npos) e.plugin = resolve(base_dir, e.plugin);
        auto cfg = m.value.FindMember("config");
        e.config_json = cfg != m.value.MemberEnd() ? json_text(cfg->value) : "{}";
        e.isolation = str(m.value, "isolation", "");
        if (auto ro = m.value.FindMember("run_once");
            ro != m.value.MemberEnd() && ro->value.IsBool())
            e.run_once = ro->value.GetBool();
        if (auto pr = m.value.FindMember("process"); pr != m.value.MemberEnd()) {
            e.max_crashes = static_cast<int>(i64(pr->value, "max_crashes", e.max_crashes));
            e.crash_window_s = i64(pr->value, "crash_window_s", e.crash_window_s);
            e.memory_limit_mb = i64(pr->value, "memory_limit_mb", e.memory_limit_mb);
        }
        auto pol = m.value.FindMember("policy");
        if (pol != m.value.MemberEnd()) {
            const Value& p = pol->value;
            e.policy.max_attempts = static_cast<int>(i64(p, "max_attempts", e.policy.max_attempts));
            e.policy.backoff_base_ms = i64(p, "backoff_base_ms", e.policy.backoff_base_ms);
            e.policy.backoff_max_ms = i64(p, "backoff_max_ms", e.policy.backoff_max_ms);
            e.policy.attempt_timeout_ms = i64(p, "attempt_timeout_ms", e.policy.attempt_timeout_ms);
            // A lease shorter than an attempt would let another node take over a delivery whose
            // attempt is still running (the default 30 s is below the default lease of 60 s).
            if (c.store.kind == "postgresql" && p.HasMember("attempt_timeout_ms") &&
                e.policy.attempt_timeout_ms >= c.store.lease_s * 1000)
                errs.push_back(
                    {"/endpoints/" + escape_pointer_token(e.name) + "/policy/attempt_timeout_ms",
                     "must be shorter than the store's lease (store.lease_s = " +
                         std::to_string(c.store.lease_s) + " s)"});
            e.policy.concurrency = static_cast<int>(i64(p, "concurrency", e.policy.concurrency));
            e.policy.receipt_window_s = i64(p, "receipt_window_s", e.policy.receipt_window_s);
            if (e.policy.backoff_max_ms < e.policy.backoff_base_ms)
                errs.push_back(
                    {"/endpoints/" + escape_pointer_token(e.name) + "/policy/backoff_max_ms",
                     "must not be smaller than backoff_base_ms"});
        }
        c.endpoints[e.name] = std::move(e);
    }
    std::string known;
    for (const auto& [n, e] : c.endpoints) known += (known.empty() ? "" : ", ") + n;
    if (c.adresseregisteret) {
        const auto& dests = c.adresseregisteret->destinations;
        for (std::size_t i = 0; i < dests.size(); ++i)
            if (!c.endpoints.count(dests[i]))
                errs.push_back({"/adresseregisteret/destinations/" + std::to_string(i),
                                "unknown endpoint \"" + dests[i] + "\" (known: " + known + ")"});
    }
    std::set<std::string> route_names;
    const Value& routes = doc["routes"];
    for (rapidjson::SizeType i = 0; i < routes.Size(); ++i) {
        const Value& r = routes[i];
        std::string prefix = "/routes/" + std::to_string(i);
        route rt;
        rt.name = str(r, "name", "");
        if (!route_names.insert(rt.name).second)
            errs.push_back({prefix + "/name", "duplicate route name \"" + rt.name + "\""});
        const Value& m = r["match"];
        rt.type_glob = str(m, "type", "*");
        auto src = m.FindMember("source");
        if (src != m.MemberEnd()) {
            if (src->value.IsString()) {
                rt.source_globs.push_back(src->value.GetString());
            } else {
                for (auto& sv : src->value.GetArray()) rt.source_globs.push_back(sv.GetString());
            }
        }
        auto where = m.FindMember("where");
        if (where != m.MemberEnd()) {
            for (auto& p : where->value.GetArray()) {
                predicate pr;
                pr.path = p["path"].GetString();
                int ops = 0;
                if (p.HasMember("equals")) {
                    pr.what = predicate::op::equals;
                    pr.value_json = json_text(p["equals"]);
                    ++ops;
                }
                if (p.HasMember("not_equals")) {
                    pr.what = predicate::op::not_equals;
                    pr.value_json = json_text(p["not_equals"]);
                    ++ops;
                }
                if (p.HasMember("in")) {
                    pr.what = predicate::op::in;
                    for (auto& v : p["in"].GetArray()) pr.values_json.push_back(json_text(v));
                    ++ops;
                }
                if (p.HasMember("exists")) {
                    pr.what = predicate::op::exists;
                    pr.exists = p["exists"].GetBool();
                    ++ops;
                }
                if (ops != 1)
                    errs.push_back(
                        {prefix + "/match/where",
                         "each predicate needs exactly one of equals, not_equals, in, exists"});
                rt.where.push_back(std::move(pr));
            }
        }
        for (const char* list : {"to", "transforms"}) {
            auto it = r.FindMember(list);
            if (it == r.MemberEnd()) continue;
            for (rapidjson::SizeType j = 0; j < it->value.Size(); ++j) {
                std::string ep = it->value[j].GetString();
                if (!c.endpoints.count(ep))
                    errs.push_back({prefix + "/" + list + "/" + std::to_string(j),
                                    "unknown endpoint \"" + ep + "\" (known: " + known + ")"});
                (std::string(list) == "to" ? rt.to : rt.transforms).push_back(ep);
            }
        }
        for (const auto& sg : rt.source_globs) {
            bool any = false;
            router::glob g(sg);
            for (const auto& [n, e] : c.endpoints) any = any || g.matches(n);
            if (!any)
                errs.push_back({prefix + "/match/source",
                                "\"" + sg + "\" matches no endpoint (known: " + known + ")"});
        }
        rt.recipient = str(r, "recipient", "");
        c.routes.push_back(std::move(rt));
    }
    if (errs.empty()) res.cfg = std::move(c);
    return res;
}

config_result load_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        config_result r;
        r.errors.push_back({"", "cannot read the config file"});
        return r;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string base = fs::absolute(path).parent_path().string();
    return parse_config(ss.str(), path, base);
}

std::string format_errors(const std::string& file, const std::vector<config_error>& errors) {
    std::string out;
    for (const auto& e : errors) {
        out += file + ": " + (e.path.empty() ? std::string("/") : e.path) + ": " + e.message + "\n";
    }
    return out;
}

int check_config_command(const std::string& path, std::ostream& out) {
    auto r = load_config(path);
    if (!r.cfg) {
        out << format_errors(path, r.errors);
        out << r.errors.size() << (r.errors.size() == 1 ? " error" : " errors") << " in " << path
            << "\n";
        return 1;
    }
    const auto& c = *r.cfg;
    out << path << ": OK\n";
    out << "  store: " << c.store.kind << " " << c.store.path << " (retention "
        << c.store.retention_days << " days)\n";
    out << "  admin: " << c.admin.listen << "\n";
    out << "  endpoints (" << c.endpoints.size() << "):\n";
    for (const auto& [n, e] : c.endpoints) out << "    " << n << "  plugin=" << e.plugin << "\n";
    out << "  routes (" << c.routes.size() << "):\n";
    for (const auto& rt : c.routes) {
        out << "    " << rt.name << "  type=" << rt.type_glob << " →";
        for (const auto& t : rt.transforms) out << " [" << t << "]";
        for (const auto& t : rt.to) out << " " << t;
        if (!rt.recipient.empty()) out << " (recipient: " << rt.recipient << ")";
        out << "\n";
    }
    return 0;
}

}  // namespace samband::config
