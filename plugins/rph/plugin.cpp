// The rph transform: turns RPH events into the notes a GP reads (and journal entries for the EPJ).
//   config: {"sender": {"organisation": {"name", "her_id", "org_nr"}, "service": {"name",
//   "her_id"}},
//            "therapists": [{"hpr", "given_name", "family_name", "title", "phone"}],
//            "templates_file": "path/to/rph-templates.json"}   (all optional)
#include "render.hpp"

#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <rapidjson/document.h>

#include <fstream>
#include <sstream>

namespace {

using samband::sdk::error;

std::string str(const rapidjson::Value* o, const char* k) {
    if (!o || !o->IsObject() || !o->HasMember(k)) return {};
    const auto& v = (*o)[k];
    if (v.IsString()) return v.GetString();
    if (v.IsInt64()) return std::to_string(v.GetInt64());
    return {};
}

samband::rph::renderer_config parse(std::string_view config) {
    rapidjson::Document d;
    if (std::string err = samband::json::parse(config, d); !err.empty() || !d.IsObject())
        throw error(SAMBAND_INVALID, "rph: config must be a JSON object" +
                                         (err.empty() ? std::string() : " (" + err + ")"));
    samband::rph::renderer_config c;
    if (d.HasMember("sender") && d["sender"].IsObject()) {
        const auto& s = d["sender"];
        const rapidjson::Value* org = s.HasMember("organisation") ? &s["organisation"] : nullptr;
        const rapidjson::Value* svc = s.HasMember("service") ? &s["service"] : nullptr;
        c.from = {str(org, "name"), str(org, "her_id"), str(org, "org_nr"), str(svc, "name"),
                  str(svc, "her_id")};
    }
    if (d.HasMember("therapists")) {
        if (!d["therapists"].IsArray())
            throw error(SAMBAND_INVALID, "rph: \"therapists\" must be an array");
        for (const auto& t : d["therapists"].GetArray()) {
            if (str(&t, "hpr").empty())
                throw error(SAMBAND_INVALID, "rph: every therapist needs \"hpr\"");
            c.therapists.push_back({str(&t, "given_name"), str(&t, "family_name"), str(&t, "title"),
                                    str(&t, "hpr"), str(&t, "phone")});
        }
    }
    std::string file = str(&d, "templates_file");
    if (!file.empty()) {
        std::ifstream in(file);
        if (!in) throw error(SAMBAND_INVALID, "rph: cannot read templates_file " + file);
        std::stringstream ss;
        ss << in.rdbuf();
        c.templates_json = ss.str();
    }
    return c;
}

class rph_transform {
public:
    static constexpr const char* name = "rph";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "Rask psykisk helsehjelp: start/end notes, information requests, referrals and journal "
        "entries";

    rph_transform(samband::sdk::host, std::string_view config) : renderer_(make(config)) {}

    std::string transform(const samband::sdk::event_view& e) {
        auto r = renderer_.render(e.envelope_json);
        if (!r.ok) throw error(SAMBAND_INVALID, r.error);
        return r.envelope_json;
    }

private:
    static samband::rph::renderer make(std::string_view config) {
        try {
            return samband::rph::renderer(parse(config));
        } catch (const std::invalid_argument& e) {
            throw error(SAMBAND_INVALID, e.what());
        }
    }
    samband::rph::renderer renderer_;
};

}  // namespace

SAMBAND_PLUGIN(rph_transform)
