#include "core/pipeline.hpp"

#include "codec/json.hpp"

namespace samband::core {

namespace {

using action = delivery::prepared::action;

delivery::prepared stop_with(action a, std::string reason) {
    delivery::prepared p;
    p.what = a;
    p.reason = std::move(reason);
    return p;
}

void set_string(rapidjson::Value& obj, const char* key, const std::string& v,
                rapidjson::Document::AllocatorType& alloc) {
    if (v.empty()) return;
    obj.AddMember(rapidjson::Value(key, alloc), rapidjson::Value(v.c_str(), alloc), alloc);
}

// Adds `recipient` {gp, office} to the envelope from the directory.
std::string add_recipient(rapidjson::Document& env, directory::gp_directory* gp) {
    if (!gp) return "no GP directory is configured";
    std::string patient(codec::string_at(env, "/subject/fnr"));
    if (patient.empty()) patient = std::string(codec::string_at(env, "/subject/dnr"));
    std::string named_gp;
    const rapidjson::Value* data = env.HasMember("data") ? &env["data"] : nullptr;
    if (data && data->IsObject() && data->HasMember("gp") && (*data)["gp"].IsObject()) {
        const auto& g = (*data)["gp"];
        if (g.HasMember("her_id")) {
            named_gp = g["her_id"].IsString()  ? g["her_id"].GetString()
                       : g["her_id"].IsInt64() ? std::to_string(g["her_id"].GetInt64())
                                               : std::string();
        }
    }
    auto found = named_gp.empty() ? gp->find_gp(patient) : gp->find_by_her_id(named_gp);
    if (!found) return "GP lookup failed: " + found.error();
    if (!*found) {
        return named_gp.empty()
                   ? "no GP found for the patient in the GP directory"
                   : "the GP named by the event (HER-id " + named_gp + ") is not in the directory";
    }
    const directory::gp_info& g = **found;
    auto& alloc = env.GetAllocator();
    rapidjson::Value rec(rapidjson::kObjectType), gpv(rapidjson::kObjectType),
        office(rapidjson::kObjectType);
    set_string(gpv, "her_id", g.gp_her_id, alloc);
    set_string(gpv, "hpr", g.gp_hpr, alloc);
    set_string(gpv, "given_name", g.gp_given_name, alloc);
    set_string(gpv, "family_name", g.gp_family_name, alloc);
    set_string(office, "her_id", g.office_her_id, alloc);
    set_string(office, "org_nr", g.office_org_nr, alloc);
    set_string(office, "name", g.office_name, alloc);
    rec.AddMember("gp", gpv, alloc);
    rec.AddMember("office", office, alloc);
    env.RemoveMember("recipient");
    env.AddMember("recipient", rec, alloc);
    return {};
}

}  // namespace

delivery::prepared run_pipeline(
    const route_plan& plan, const pipeline_input& in, directory::gp_directory* gp,
    const std::function<plugin::instance*(const std::string&)>& find_instance) {
    std::string out_json = in.envelope_json;
    std::string gate_reason;

    if (plan.recipient == "gp") {
        auto parsed = codec::parse_json(in.envelope_json);
        if (!parsed)
            return stop_with(action::dead, "stored event is not valid JSON: " + parsed.error());
        rapidjson::Document env = std::move(*parsed);
        std::string type(codec::string_at(env, "/type"));
        // The gate sees every event of the treatment received so far, oldest first.
        std::vector<rapidjson::Document> docs;
        docs.reserve(in.history_json.size());
        std::vector<consent::treatment_event> history;
        for (const auto& h : in.history_json) {
            auto d = codec::parse_json(h);
            if (!d) continue;
            docs.push_back(std::move(*d));
        }
        for (const auto& d : docs) {
            consent::treatment_event te;
            te.type = std::string(codec::string_at(d, "/type"));
            te.data = d.HasMember("data") ? &d["data"] : nullptr;
            history.push_back(te);
        }
        static const rapidjson::Value empty(rapidjson::kObjectType);
        const rapidjson::Value& data = env.HasMember("data") ? env["data"] : empty;
        consent::decision dec = consent::decide(type, data, history, in.overridden);
        if (dec.what == consent::verdict::hold) return stop_with(action::hold, dec.reason);
        if (dec.what == consent::verdict::block) return stop_with(action::block, dec.reason);
        gate_reason = dec.reason;
        std::string why = add_recipient(env, gp);
        // A lookup that failed (timeout, register down) is retried with backoff; a patient with
        // no GP, or no directory at all, holds for an operator.
        if (!why.empty())
            return stop_with(why.rfind("GP lookup failed", 0) == 0 ? action::retry : action::hold,
                             why);
        out_json = codec::to_json(env);
    }

    plugin::event_ref ev;
    ev.envelope_json = std::move(out_json);
    ev.attachments = in.attachments;
    for (const auto& t : plan.transforms) {
        plugin::instance* inst = find_instance(t);
        if (!inst) return stop_with(action::retry, "transform endpoint " + t + " is not running");
        auto r = inst->transform(ev);
        if (!r) {
            const auto& e = r.error();
            if (e.status == SAMBAND_RETRY)
                return stop_with(action::retry, "transform " + t + ": " + e.message);
            return stop_with(action::dead, "transform " + t + " rejected the event: " + e.message);
        }
        ev.envelope_json = std::move(*r);
    }
    delivery::prepared p;
    p.what = action::send;
    p.reason = gate_reason;  // why the gate let it pass (audited by the caller)
    p.event = std::move(ev);
    return p;
}

}  // namespace samband::core
