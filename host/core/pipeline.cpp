#include "core/pipeline.hpp"

#include "codec/json.hpp"
#include "ingest/ingest.hpp"

#include "nhn/codec/rendered_note.hpp"
#include "nhn/codec/serializer.hpp"

#include <rapidjson/pointer.h>

#include <algorithm>

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

// The HER-id at `path` (a string, or an integer as some sources write it); empty if absent.
std::string her_id_at(const rapidjson::Value& v, const char* path) {
    if (auto s = codec::string_at(v, path); !s.empty()) return std::string(s);
    rapidjson::Pointer ptr(path);
    const rapidjson::Value* n = ptr.IsValid() ? ptr.Get(v) : nullptr;
    return n && n->IsInt64() ? std::to_string(n->GetInt64()) : std::string();
}

}  // namespace

delivery::prepared check_receiver(delivery::prepared p, directory::receiver_directory& ar,
                                  const std::map<std::string, std::string>& receiver_types) {
    if (p.what != action::send) return p;
    auto env = codec::parse_json(p.event.envelope_json);
    if (!env || !env->IsObject()) return p;
    std::string her;
    for (const char* path : {"/note/receiver/person/her_id", "/note/receiver/organisation/her_id",
                             "/recipient/gp/her_id", "/recipient/office/her_id"}) {
        her = her_id_at(*env, path);
        if (!her.empty()) break;
    }
    if (her.empty()) return p;
    auto v = ar.check(her);
    if (!v) return stop_with(action::retry, "receiver not checked: " + v.error());
    if (!v->can_receive)
        return stop_with(action::hold, "the receiver cannot take the message: " + v->reason);
    if (v->message_types.empty()) return p;
    // The type the nhn codec will send this note as (a note it cannot read is refused there).
    auto note = nhn::parse_rendered_note(p.event.envelope_json);
    if (!note || receiver_types.count(note->receiver_organisation.her_id)) return p;
    auto type = nhn::choose_message_type(*note, {});
    if (!type || std::find(v->message_types.begin(), v->message_types.end(), *type) !=
                     v->message_types.end())
        return p;
    std::string takes;
    for (const auto& t : v->message_types) takes += (takes.empty() ? "" : ", ") + t;
    return stop_with(action::hold, "the receiver cannot take the message: HER-id " + her + " (" +
                                       v->name + ") does not take " + *type +
                                       " (Dialogmelding 1.1); it takes " + takes +
                                       (v->from_file ? " (local file)" : ""));
}

std::string check_transform_output(const codec::schema_set& schemas, std::string_view input_id,
                                   std::string_view output_json) {
    auto parsed = codec::parse_json(output_json);
    if (!parsed) return "not valid JSON: " + parsed.error();
    rapidjson::Document doc = std::move(*parsed);
    if (!doc.IsObject()) return "/: an event must be a JSON object";
    // What the pipeline and transforms add to an envelope: the GP (recipient), the note for the
    // GP and the journal entry (docs/rendered-note.md).
    for (const char* added : {"recipient", "note", "journal"}) {
        auto it = doc.FindMember(added);
        if (it == doc.MemberEnd()) continue;
        if (!it->value.IsObject()) return std::string("/") + added + ": must be an object";
        doc.RemoveMember(added);
    }
    if (codec::string_at(doc, "/id") != input_id)
        return "/id: a transform must keep the event's id (" + std::string(input_id) + ")";
    if (schemas.has("samband.event"))
        if (auto err = schemas.validate("samband.event", doc)) return *err;
    std::string type(codec::string_at(doc, "/type"));
    if (!schemas.has(type) || type == "samband.event")
        return "/type: unknown event type \"" + type + "\"";
    auto data = doc.FindMember("data");
    if (data == doc.MemberEnd()) return "/data: required field is missing";
    if (auto err = schemas.validate(type, data->value)) return "/data" + *err;
    return ingest::check_rph(type, data->value);
}

delivery::prepared run_pipeline(
    const route_plan& plan, pipeline_input in, directory::gp_directory* gp,
    const std::function<plugin::instance*(const std::string&)>& find_instance,
    const codec::schema_set* schemas) {
    std::string out_json = std::move(in.envelope_json);
    std::string gate_reason;

    if (plan.recipient == "gp") {
        auto parsed = codec::parse_json(out_json);
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
    ev.attachments = std::move(in.attachments);
    // The id every transform must keep (each output is checked to have it): read once.
    std::string event_id;
    if (schemas && !plan.transforms.empty())
        if (auto d = codec::parse_json(ev.envelope_json); d && d->IsObject())
            event_id = std::string(codec::string_at(*d, "/id"));
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
        if (schemas) {
            if (std::string why = check_transform_output(*schemas, event_id, *r); !why.empty())
                return stop_with(action::dead, "transform " + t + " gave an invalid event: " + why);
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
