#include "router/router.hpp"

#include <samband/json.hpp>

#include <fnmatch.h>

namespace samband::router {

glob::glob(const std::string& pattern) {
    for (char c : pattern) {
        if (c == '[' || c == '\\') pattern_ += '\\';
        pattern_ += c;
    }
}

bool glob::matches(const std::string& text) const {
    return ::fnmatch(pattern_.c_str(), text.c_str(), 0) == 0;
}

router::router(const std::vector<config::route>& routes) {
    for (const auto& r : routes) {
        compiled_route c;
        c.name = r.name;
        c.type = glob(r.type_glob);
        for (const auto& s : r.source_globs) c.sources.emplace_back(s);
        for (const auto& p : r.where) {
            compiled_predicate cp;
            cp.pointer = rapidjson::Pointer(p.path.c_str());
            cp.what = p.what;
            cp.exists = p.exists;
            // Written by the config loader from the parsed config, so always valid JSON.
            if (!p.value_json.empty()) (void)samband::json::parse(p.value_json, cp.value);
            for (const auto& v : p.values_json) {
                rapidjson::Document d;
                (void)samband::json::parse(v, d);
                cp.values.push_back(std::move(d));
            }
            c.where.push_back(std::move(cp));
        }
        c.to = r.to;
        routes_.push_back(std::move(c));
    }
}

std::vector<route_match> router::route(std::string_view source,
                                       const rapidjson::Value& envelope) const {
    std::vector<route_match> out;
    std::string type;
    if (envelope.IsObject()) {
        auto it = envelope.FindMember("type");
        if (it != envelope.MemberEnd() && it->value.IsString()) type = it->value.GetString();
    }
    std::string src(source);
    for (const auto& r : routes_) {
        if (!r.type.matches(type)) continue;
        if (!r.sources.empty()) {
            bool any = false;
            for (const auto& s : r.sources) any = any || s.matches(src);
            if (!any) continue;
        }
        bool ok = true;
        for (const auto& p : r.where) {
            const rapidjson::Value* v = p.pointer.Get(envelope);
            switch (p.what) {
                case config::predicate::op::exists:
                    ok = (v != nullptr) == p.exists;
                    break;
                case config::predicate::op::equals:
                    ok = v && *v == p.value;
                    break;
                case config::predicate::op::not_equals:
                    ok = !v || !(*v == p.value);
                    break;
                case config::predicate::op::in: {
                    ok = false;
                    for (const auto& x : p.values) ok = ok || (v && *v == x);
                    break;
                }
            }
            if (!ok) break;
        }
        if (!ok) continue;
        for (const auto& d : r.to) out.push_back({r.name, d});
    }
    return out;
}

}  // namespace samband::router
