#include "fhir/bundle.hpp"

#include <samband/json.hpp>

#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>

namespace samband::fhir {

namespace {

using rapidjson::Value;
using writer = rapidjson::Writer<rapidjson::StringBuffer>;

std::string_view str(const Value* obj, const char* name) {
    if (!obj || !obj->IsObject()) return {};
    auto it = obj->FindMember(name);
    if (it == obj->MemberEnd() || !it->value.IsString()) return {};
    return {it->value.GetString(), it->value.GetStringLength()};
}
const Value* member(const Value* obj, const char* name) {
    if (!obj || !obj->IsObject()) return nullptr;
    auto it = obj->FindMember(name);
    return it == obj->MemberEnd() ? nullptr : &it->value;
}

std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(bytes.data()),
                            static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string sha1_base64(std::string_view bytes) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha1(), nullptr);
    return base64(std::string_view(reinterpret_cast<const char*>(md), len));
}

struct json_out {
    rapidjson::StringBuffer buf;
    writer w{buf};

    void key(std::string_view k) { w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size())); }
    void s(std::string_view v) { w.String(v.data(), static_cast<rapidjson::SizeType>(v.size())); }
    void kv(std::string_view k, std::string_view v) {
        key(k);
        s(v);
    }
    // Only when not empty (FHIR forbids empty strings).
    void opt(std::string_view k, std::string_view v) {
        if (!v.empty()) kv(k, v);
    }
    void identifier(std::string_view system, std::string_view value) {
        w.StartObject();
        kv("system", system);
        kv("value", value);
        w.EndObject();
    }
    // A logical reference: {"type", "identifier", "display"}.
    void ref(std::string_view type, std::string_view system, std::string_view value,
             std::string_view display) {
        w.StartObject();
        opt("type", type);
        if (!value.empty()) {
            key("identifier");
            identifier(system, value);
        }
        opt("display", display);
        w.EndObject();
    }
    void text_concept(std::string_view k, std::string_view text) {
        key(k);
        w.StartObject();
        kv("text", text);
        w.EndObject();
    }
    void attachment(const outbound_attachment& a) {
        w.StartObject();
        kv("contentType", a.media_type.empty() ? "application/octet-stream" : a.media_type);
        kv("data", base64(a.bytes));
        w.Key("size");
        w.Uint64(a.bytes.size());
        kv("hash", sha1_base64(a.bytes));
        opt("title", a.filename);
        w.EndObject();
    }
};

struct patient {
    std::string system, value, display;
};

struct context {
    const Value& env;
    std::string event_id;
    std::string type;
    const bundle_options& opt;
    patient pat;
    json_out out;
    std::vector<std::string> urls;
    std::string primary;

    std::string id_for(std::string_view role) const {
        return derived_uuid(event_id + "/" + std::string(role));
    }
    std::string full_url(std::string_view role) const {
        return "urn:uuid:" + derived_uuid(event_id + "/fullUrl/" + std::string(role));
    }

    // Opens an entry: fullUrl, resource { resourceType, identifier }. Close with end_entry.
    void begin_entry(std::string_view resource_type, std::string_view role,
                     bool single_identifier = false) {
        const std::string ident = id_for(role);
        if (primary.empty()) primary = ident;
        urls.emplace_back(resource_type);
        auto& w = out.w;
        w.StartObject();
        out.kv("fullUrl", full_url(role));
        out.key("resource");
        w.StartObject();
        out.kv("resourceType", resource_type);
        out.key("identifier");
        if (!single_identifier) w.StartArray();
        out.identifier(opt.identifier_system, ident);
        if (!single_identifier) w.EndArray();
    }
    void end_entry(std::string_view resource_type, std::string_view role) {
        auto& w = out.w;
        w.EndObject();  // resource
        out.key("request");
        w.StartObject();
        out.kv("method", "POST");
        out.kv("url", resource_type);
        out.kv("ifNoneExist", "identifier=" + opt.identifier_system + "|" + id_for(role));
        w.EndObject();
        w.EndObject();  // entry
    }
    void subject(const char* key = "subject") {
        out.key(key);
        out.ref("Patient", pat.system, pat.value, pat.display);
    }
};

result<patient> patient_of(const Value& env) {
    const Value* subj = member(&env, "subject");
    patient p;
    if (auto f = str(subj, "fnr"); !f.empty()) {
        p.system = system_fnr;
        p.value = f;
    } else if (auto d = str(subj, "dnr"); !d.empty()) {
        p.system = system_dnr;
        p.value = d;
    } else {
        return mapping_error{"fnr or dnr is required", "/subject"};
    }
    const Value* name = member(subj, "name");
    std::string given(str(name, "given")), family(str(name, "family"));
    p.display = given + (given.empty() || family.empty() ? "" : " ") + family;
    return p;
}

std::string person_name(const Value* p) {
    std::string g(str(p, "given_name")), f(str(p, "family_name"));
    return g + (g.empty() || f.empty() ? "" : " ") + f;
}

// One DocumentReference per attachment, related to the entry `related_role` (may be empty).
void document_references(context& c, const std::vector<outbound_attachment>& atts,
                         std::string_view type_text, std::string_view related_type,
                         std::string_view related_role) {
    for (std::size_t i = 0; i < atts.size(); ++i) {
        const std::string role = "attachment/" + std::to_string(i);
        c.begin_entry("DocumentReference", role);
        c.out.kv("status", "current");
        c.out.text_concept("type", type_text);
        c.subject();
        if (auto d = fhir_instant(str(&c.env, "occurred_at")); !d.empty()) c.out.kv("date", d);
        c.out.opt("description", atts[i].filename);
        c.out.key("content");
        c.out.w.StartArray();
        c.out.w.StartObject();
        c.out.key("attachment");
        c.out.attachment(atts[i]);
        c.out.w.EndObject();
        c.out.w.EndArray();
        if (!related_role.empty()) {
            c.out.key("context");
            c.out.w.StartObject();
            c.out.key("related");
            c.out.w.StartArray();
            c.out.w.StartObject();
            c.out.kv("reference", c.full_url(related_role));
            c.out.kv("type", related_type);
            c.out.w.EndObject();
            c.out.w.EndArray();
            c.out.w.EndObject();
        }
        c.end_entry("DocumentReference", role);
    }
}

result<void> communication(context& c, const Value& note,
                           const std::vector<outbound_attachment>& atts) {
    const std::string_view text = str(&note, "text");
    if (text.empty()) return mapping_error{"the note has no text", "/note/text"};
    const Value* sender = member(&note, "sender");
    const Value* receiver = member(&note, "receiver");
    const Value* org = member(sender, "organisation");
    const Value* svc = member(sender, "service");
    const Value* rorg = member(receiver, "organisation");
    const Value* rperson = member(receiver, "person");
    if (str(rperson, "her_id").empty() && str(rorg, "her_id").empty())
        return mapping_error{"the recipient has no HER-id", "/note/receiver"};

    c.begin_entry("Communication", "note");
    auto& o = c.out;
    o.kv("status", "completed");
    o.key("category");
    o.w.StartArray();
    o.w.StartObject();
    o.kv("text", str(&note, "kind"));
    o.w.EndObject();
    o.w.EndArray();
    c.subject();
    if (auto t = str(&note, "title"); !t.empty()) o.text_concept("topic", t);
    if (auto d = fhir_date_time(str(&note, "issued_at")); !d.empty()) o.kv("sent", d);
    o.key("recipient");
    o.w.StartArray();
    if (!str(rperson, "her_id").empty())
        o.ref("Practitioner", system_her_id, str(rperson, "her_id"), person_name(rperson));
    if (!str(rorg, "her_id").empty())
        o.ref("Organization", system_her_id, str(rorg, "her_id"), str(rorg, "name"));
    o.w.EndArray();
    // The sender: the service (or else the municipality) by HER-id, else by organisation number.
    if (!str(svc, "her_id").empty()) {
        o.key("sender");
        o.ref("Organization", system_her_id, str(svc, "her_id"), str(svc, "name"));
    } else if (!str(org, "her_id").empty()) {
        o.key("sender");
        o.ref("Organization", system_her_id, str(org, "her_id"), str(org, "name"));
    } else if (!str(org, "org_nr").empty()) {
        o.key("sender");
        o.ref("Organization", system_org_nr, str(org, "org_nr"), str(org, "name"));
    }
    o.key("payload");
    o.w.StartArray();
    o.w.StartObject();
    o.kv("contentString", text);
    o.w.EndObject();
    for (const auto& a : atts) {
        o.w.StartObject();
        o.key("contentAttachment");
        o.attachment(a);
        o.w.EndObject();
    }
    o.w.EndArray();
    // The responsible therapist (HPR) as a note, so the reader sees who to call.
    if (const Value* th = member(sender, "therapist"); th && !str(th, "hpr").empty()) {
        o.key("note");
        o.w.StartArray();
        o.w.StartObject();
        std::string who = person_name(th);
        if (!str(th, "title").empty()) who += ", " + std::string(str(th, "title"));
        who += " (HPR " + std::string(str(th, "hpr")) + ")";
        if (!str(th, "phone").empty()) who += ", telefon " + std::string(str(th, "phone"));
        o.kv("text", "Ansvarlig terapeut: " + who);
        o.w.EndObject();
        o.w.EndArray();
    }
    c.end_entry("Communication", "note");
    return {};
}

result<void> service_request(context& c, const std::vector<outbound_attachment>& atts) {
    const Value* data = member(&c.env, "data");
    const Value* note = member(&c.env, "note");
    const bool outgoing = note != nullptr;  // referral sent on (via the GP)
    c.begin_entry("ServiceRequest", "referral");
    auto& o = c.out;
    o.kv("status", "active");
    o.kv("intent", "order");
    o.text_concept("code", outgoing ? "Henvisning fra Rask psykisk helsehjelp"
                                    : "Henvisning til Rask psykisk helsehjelp");
    c.subject();
    std::string authored =
        fhir_date_time(outgoing ? str(note, "issued_at") : str(data, "received_at"));
    if (authored.empty()) authored = fhir_date_time(str(&c.env, "occurred_at"));
    if (!authored.empty()) o.kv("authoredOn", authored);
    const Value* from = member(data, "from");
    if (!outgoing && !str(from, "her_id").empty()) {
        o.key("requester");
        o.ref("Practitioner", system_her_id, str(from, "her_id"), str(from, "name"));
    }
    if (outgoing) {
        const Value* svc = member(member(note, "sender"), "service");
        if (!str(svc, "her_id").empty()) {
            o.key("requester");
            o.ref("Organization", system_her_id, str(svc, "her_id"), str(svc, "name"));
        }
    }
    if (auto r = str(data, "reason"); !r.empty()) {
        o.key("reasonCode");
        o.w.StartArray();
        o.w.StartObject();
        o.kv("text", r);
        o.w.EndObject();
        o.w.EndArray();
    }
    std::string_view text = outgoing ? str(note, "text") : str(data, "text");
    if (!text.empty()) {
        o.key("note");
        o.w.StartArray();
        o.w.StartObject();
        o.kv("text", text);
        o.w.EndObject();
        o.w.EndArray();
    }
    if (!atts.empty()) {
        o.key("supportingInfo");
        o.w.StartArray();
        for (std::size_t i = 0; i < atts.size(); ++i) {
            o.w.StartObject();
            o.kv("reference", c.full_url("attachment/" + std::to_string(i)));
            o.kv("type", "DocumentReference");
            o.w.EndObject();
        }
        o.w.EndArray();
    }
    c.end_entry("ServiceRequest", "referral");
    document_references(c, atts, "Henvisning", "ServiceRequest", "referral");
    return {};
}

result<void> scores(context& c) {
    const Value* data = member(&c.env, "data");
    const std::string instrument = canonical_instrument(str(data, "instrument"));
    if (instrument.empty()) return mapping_error{"required", "/data/instrument"};
    const Value* score = member(data, "score");
    if (!score || !score->IsNumber()) return mapping_error{"not a number", "/data/score"};
    const double value = score->GetDouble();
    const std::string when = fhir_date_time(str(data, "administered_at"));
    const Value* items = member(data, "items");
    const bool has_items = items && items->IsArray() && !items->Empty();
    const bool phq9 = instrument == "PHQ-9", gad7 = instrument == "GAD-7";
    const bool whole = value == std::floor(value);

    c.begin_entry("Observation", "score");
    auto& o = c.out;
    o.kv("status", "final");
    o.key("category");
    o.w.StartArray();
    o.w.StartObject();
    o.key("coding");
    o.w.StartArray();
    o.w.StartObject();
    o.kv("system", "http://terminology.hl7.org/CodeSystem/observation-category");
    o.kv("code", "survey");
    o.kv("display", "Survey");
    o.w.EndObject();
    o.w.EndArray();
    o.w.EndObject();
    o.w.EndArray();
    o.key("code");
    o.w.StartObject();
    if (phq9 || gad7) {
        o.key("coding");
        o.w.StartArray();
        o.w.StartObject();
        o.kv("system", system_loinc);
        o.kv("code", phq9 ? loinc_phq9_total : loinc_gad7_total);
        o.kv("display", phq9 ? "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"
                             : "Generalized anxiety disorder 7 item (GAD-7) total score [Reported."
                               "PHQ]");
        o.w.EndObject();
        o.w.EndArray();
    }
    o.kv("text", instrument);
    o.w.EndObject();
    c.subject();
    if (!when.empty()) o.kv("effectiveDateTime", when);
    if (whole) {
        o.key("valueInteger");
        o.w.Int64(static_cast<std::int64_t>(value));
    } else {
        o.key("valueQuantity");
        o.w.StartObject();
        o.key("value");
        o.w.Double(value);
        o.w.EndObject();
    }
    if (auto band = score_band(instrument, value); !band.empty()) {
        o.key("interpretation");
        o.w.StartArray();
        o.w.StartObject();
        o.kv("text", band);
        o.w.EndObject();
        o.w.EndArray();
    }
    if (auto tool = str(data, "tool"); !tool.empty() || !str(data, "phase").empty()) {
        std::string t = std::string("Fase: ") + std::string(str(data, "phase"));
        if (str(data, "phase").empty())
            t = "Verktøy: " + std::string(tool);
        else if (!tool.empty())
            t += "; verktøy: " + std::string(tool);
        o.key("note");
        o.w.StartArray();
        o.w.StartObject();
        o.kv("text", t);
        o.w.EndObject();
        o.w.EndArray();
    }
    if (has_items) {
        o.key("derivedFrom");
        o.w.StartArray();
        o.w.StartObject();
        o.kv("reference", c.full_url("questionnaire"));
        o.kv("type", "QuestionnaireResponse");
        o.w.EndObject();
        o.w.EndArray();
    }
    c.end_entry("Observation", "score");

    if (!has_items) return {};
    c.begin_entry("QuestionnaireResponse", "questionnaire", /*single_identifier=*/true);
    if (phq9 || gad7)
        o.kv("questionnaire", std::string("http://loinc.org/q/") +
                                  std::string(phq9 ? loinc_phq9_panel : loinc_gad7_panel));
    o.kv("status", "completed");
    c.subject();
    if (!when.empty()) o.kv("authored", when);
    o.key("item");
    o.w.StartArray();
    rapidjson::SizeType n = 0;
    for (const auto& it : items->GetArray()) {
        ++n;
        if (!it.IsInt())
            return mapping_error{"not a whole number", "/data/items/" + std::to_string(n - 1)};
        o.w.StartObject();
        o.kv("linkId", std::to_string(n));
        o.key("answer");
        o.w.StartArray();
        o.w.StartObject();
        o.key("valueInteger");
        o.w.Int(it.GetInt());
        o.w.EndObject();
        o.w.EndArray();
        o.w.EndObject();
    }
    o.w.EndArray();
    c.end_entry("QuestionnaireResponse", "questionnaire");
    return {};
}

result<void> journal(context& c, const std::vector<outbound_attachment>& atts) {
    const Value* j = member(&c.env, "journal");
    const Value* data = member(&c.env, "data");
    std::string title(str(j, "title")), text(str(j, "text"));
    if (text.empty()) {
        // No rph transform on the route: a short entry from the session's own fields.
        if (c.type != "rph.session.attended")
            return mapping_error{"no journal entry to send (add the rph transform)", "/journal"};
        title = "Samtale i Rask psykisk helsehjelp";
        text = title + "\n" + std::string(str(data, "session_at")) + " " +
               std::string(str(data, "kind"));
        if (const Value* a = member(data, "attended"); a && a->IsBool())
            text += a->GetBool() ? ", møtte" : ", møtte ikke";
        if (auto content = str(data, "content"); !content.empty())
            text += "\n" + std::string(content);
    }
    std::vector<outbound_attachment> all;
    all.push_back({title.empty() ? "journalnotat.txt" : title, "text/plain; charset=utf-8", text});
    all.insert(all.end(), atts.begin(), atts.end());
    c.begin_entry("DocumentReference", "journal");
    auto& o = c.out;
    o.kv("status", "current");
    o.text_concept("type", "Journalnotat");
    c.subject();
    if (auto d = fhir_instant(str(&c.env, "occurred_at")); !d.empty()) o.kv("date", d);
    o.opt("description", title);
    o.key("content");
    o.w.StartArray();
    for (const auto& a : all) {
        o.w.StartObject();
        o.key("attachment");
        o.attachment(a);
        o.w.EndObject();
    }
    o.w.EndArray();
    c.end_entry("DocumentReference", "journal");
    return {};
}

}  // namespace

result<built_bundle> build_bundle(std::string_view envelope_json,
                                  const std::vector<outbound_attachment>& attachments,
                                  const bundle_options& options) {
    rapidjson::Document env;
    if (auto err = samband::json::parse(envelope_json, env); !err.empty())
        return mapping_error{err, ""};
    if (!env.IsObject()) return mapping_error{"the envelope is not a JSON object", ""};
    context c{
        env, std::string(str(&env, "id")), std::string(str(&env, "type")), options, {}, {}, {}, {}};
    if (c.event_id.empty()) return mapping_error{"required (the event id)", "/id"};
    auto p = patient_of(env);
    if (!p) return p.error();
    c.pat = std::move(*p);

    auto& w = c.out.w;
    w.StartObject();
    c.out.kv("resourceType", "Bundle");
    c.out.kv("type", "transaction");
    c.out.key("entry");
    w.StartArray();
    const Value* note = member(&env, "note");
    result<void> r;
    if (note && note->IsObject() && str(note, "kind") == "henvisning")
        r = service_request(c, attachments);
    else if (note && note->IsObject())
        r = communication(c, *note, attachments);
    else if (c.type == "rph.referral.received" || c.type == "rph.referral.sent")
        r = service_request(c, attachments);
    else if (c.type == "rph.assessment.scored")
        r = scores(c);
    else if (member(&env, "journal") || c.type == "rph.session.attended")
        r = journal(c, attachments);
    else if (c.type.rfind("rph.", 0) == 0 && c.type != "rph.consent.changed")
        r = mapping_error{"needs the rph transform's note (add the rph transform to the route)",
                          "/note"};
    else
        r = mapping_error{"event type \"" + c.type + "\" has no FHIR mapping", "/type"};
    if (!r) return r.error();
    w.EndArray();
    w.EndObject();
    built_bundle out;
    out.json.assign(c.out.buf.GetString(), c.out.buf.GetSize());
    out.entry_urls = std::move(c.urls);
    out.primary_identifier = std::move(c.primary);
    return out;
}

}  // namespace samband::fhir
