#include "fhir/inbound.hpp"

#include <samband/identifiers.hpp>
#include <samband/json.hpp>

#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>

namespace samband::fhir {

namespace {

using rapidjson::Value;

const Value* member(const Value& obj, const char* name) {
    if (!obj.IsObject()) return nullptr;
    auto it = obj.FindMember(name);
    return it == obj.MemberEnd() ? nullptr : &it->value;
}
std::string_view sv(const Value* v) {
    return v && v->IsString() ? std::string_view(v->GetString(), v->GetStringLength())
                              : std::string_view();
}
std::string lower(std::string_view s) {
    std::string o(s);
    for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return o;
}

// The elements each accepted resource (and backbone) may have: anything else is refused.
// Primitive extensions ("_name") are allowed where "name" is.
using element_set = std::vector<std::string_view>;
constexpr std::array<std::string_view, 9> base_elements = {
    "resourceType", "id",        "meta",      "implicitRules",    "language",
    "text",         "contained", "extension", "modifierExtension"};
const std::map<std::string_view, element_set>& elements() {
    static const std::map<std::string_view, element_set> m = {
        {"Bundle",
         {"resourceType", "id", "meta", "implicitRules", "language", "identifier", "type",
          "timestamp", "total", "link", "entry", "signature"}},
        {"Bundle.entry",
         {"id", "extension", "modifierExtension", "link", "fullUrl", "resource", "search",
          "request", "response"}},
        {"QuestionnaireResponse",
         {"identifier", "basedOn", "partOf", "questionnaire", "status", "subject", "encounter",
          "authored", "author", "source", "item"}},
        {"QuestionnaireResponse.item",
         {"id", "extension", "modifierExtension", "linkId", "definition", "text", "answer",
          "item"}},
        {"QuestionnaireResponse.item.answer",
         {"id", "extension", "modifierExtension", "valueBoolean", "valueDecimal", "valueInteger",
          "valueDate", "valueDateTime", "valueTime", "valueString", "valueUri", "valueAttachment",
          "valueCoding", "valueQuantity", "valueReference", "item"}},
        {"Observation",
         {"identifier",
          "basedOn",
          "partOf",
          "status",
          "category",
          "code",
          "subject",
          "focus",
          "encounter",
          "effectiveDateTime",
          "effectivePeriod",
          "effectiveTiming",
          "effectiveInstant",
          "issued",
          "performer",
          "valueQuantity",
          "valueCodeableConcept",
          "valueString",
          "valueBoolean",
          "valueInteger",
          "valueRange",
          "valueRatio",
          "valueSampledData",
          "valueTime",
          "valueDateTime",
          "valuePeriod",
          "dataAbsentReason",
          "interpretation",
          "note",
          "bodySite",
          "method",
          "specimen",
          "device",
          "referenceRange",
          "hasMember",
          "derivedFrom",
          "component"}},
        {"Patient",
         {"identifier", "active", "name", "telecom", "gender", "birthDate", "deceasedBoolean",
          "deceasedDateTime", "address", "maritalStatus", "multipleBirthBoolean",
          "multipleBirthInteger", "photo", "contact", "communication", "generalPractitioner",
          "managingOrganization", "link"}},
        {"MessageHeader",
         {"eventCoding", "eventUri", "destination", "sender", "enterer", "author", "source",
          "responsible", "reason", "response", "focus", "definition"}},
    };
    return m;
}

result<void> known_elements(const Value& obj, std::string_view kind, const std::string& path,
                            bool resource) {
    if (!obj.IsObject()) return mapping_error{"must be a JSON object", path};
    const auto& set = elements().at(kind);
    for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
        std::string_view k(it->name.GetString(), it->name.GetStringLength());
        std::string_view base = !k.empty() && k[0] == '_' ? k.substr(1) : k;
        bool ok = std::find(set.begin(), set.end(), base) != set.end() ||
                  (resource && std::find(base_elements.begin(), base_elements.end(), base) !=
                                   base_elements.end());
        if (!ok)
            return mapping_error{
                "unknown element \"" + std::string(k) + "\" in " + std::string(kind),
                path + "." + std::string(k)};
    }
    return {};
}

std::string sha256_hex(std::string_view s) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

std::string serialise(const Value& v) {
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    v.Accept(w);
    return {b.GetString(), b.GetSize()};
}

struct bundle_index {
    // fullUrl → resource, and "Type/id" → resource, for resolving subject references.
    std::map<std::string, const Value*, std::less<>> by_url;
};

struct scored {
    std::string instrument;
    int score = 0;
    std::vector<int> items;
    std::string administered_at;
    std::string treatment_id;
    std::string fnr, dnr;
    std::string key;
};

struct reader {
    const inbound_options& opt;
    const bundle_index& index;

    result<void> patient_from_identifiers(const Value& ids, const std::string& path, scored& s) {
        if (!ids.IsArray() && !ids.IsObject()) return mapping_error{"must be an identifier", path};
        auto one = [&](const Value& id, const std::string& p) -> result<void> {
            const std::string_view system = sv(member(id, "system"));
            const std::string_view value = sv(member(id, "value"));
            if (system != system_fnr && system != system_dnr) return {};
            ident::person_id_options po;
            po.allow_synthetic = opt.allow_synthetic_ids;
            auto chk = ident::check_person_id(value, po);
            if (!chk) return mapping_error{chk.reason, p + ".value"};
            (system == system_fnr ? s.fnr : s.dnr) = std::string(value);
            return {};
        };
        if (ids.IsObject()) return one(ids, path);
        for (rapidjson::SizeType i = 0; i < ids.Size(); ++i) {
            auto r = one(ids[i], path + "[" + std::to_string(i) + "]");
            if (!r) return r;
            if (!s.fnr.empty() || !s.dnr.empty()) return {};
        }
        return {};
    }

    result<void> subject(const Value& res, const std::string& path, scored& s) {
        const Value* subj = member(res, "subject");
        if (!subj || !subj->IsObject())
            return mapping_error{
                "required: the patient (a Reference with a fødselsnummer or "
                "D-number identifier)",
                path + ".subject"};
        if (const Value* id = member(*subj, "identifier")) {
            auto r = patient_from_identifiers(*id, path + ".subject.identifier", s);
            if (!r) return r;
        }
        if (s.fnr.empty() && s.dnr.empty()) {
            const std::string_view ref = sv(member(*subj, "reference"));
            auto it = ref.empty() ? index.by_url.end() : index.by_url.find(ref);
            if (it != index.by_url.end() && sv(member(*it->second, "resourceType")) == "Patient") {
                if (const Value* ids = member(*it->second, "identifier")) {
                    auto r = patient_from_identifiers(
                        *ids, path + ".subject.reference→Patient.identifier", s);
                    if (!r) return r;
                }
            }
        }
        if (s.fnr.empty() && s.dnr.empty())
            return mapping_error{"the patient has no fødselsnummer (" + std::string(system_fnr) +
                                     ") or D-number (" + std::string(system_dnr) + ") identifier",
                                 path + ".subject"};
        return {};
    }

    result<void> treatment(const Value& res, const std::string& path, scored& s) {
        auto from_ref = [](const Value& r) -> std::string {
            if (auto v = sv(member(r, "identifier") ? member(*member(r, "identifier"), "value")
                                                    : nullptr);
                !v.empty())
                return std::string(v);
            std::string_view ref = sv(member(r, "reference"));
            if (auto slash = ref.rfind('/'); slash != std::string_view::npos)
                ref = ref.substr(slash + 1);
            return std::string(ref.substr(0, 100));
        };
        if (const Value* b = member(res, "basedOn"); b && b->IsArray()) {
            for (const auto& r : b->GetArray())
                if (auto t = from_ref(r); !t.empty()) {
                    s.treatment_id = t;
                    return {};
                }
        }
        if (const Value* e = member(res, "encounter"); e && e->IsObject()) {
            if (auto t = from_ref(*e); !t.empty()) {
                s.treatment_id = t;
                return {};
            }
        }
        return mapping_error{
            "required: the treatment (a basedOn or encounter reference with the "
            "EPJ's treatment id)",
            path + ".basedOn"};
    }

    std::string key_of(const Value& res, std::string_view type, std::string_view full_url) {
        const Value* ids = member(res, "identifier");
        const Value* id0 = ids && ids->IsArray() && !ids->Empty() ? &(*ids)[0] : ids;
        if (id0 && id0->IsObject() && !sv(member(*id0, "value")).empty())
            return "fhir:" + std::string(type) + ":" + std::string(sv(member(*id0, "system"))) +
                   "|" + std::string(sv(member(*id0, "value")));
        if (!full_url.empty() && full_url.rfind("urn:uuid:", 0) != 0)
            return "fhir:" + std::string(full_url);
        return "fhir:" + std::string(type) + ":sha256:" + sha256_hex(serialise(res));
    }

    // One answer's number (0–3): valueInteger, or valueCoding.code / valueDecimal that is one.
    result<int> answer_value(const Value& a, const std::string& path) {
        if (const Value* v = member(a, "valueInteger")) {
            if (!v->IsInt()) return mapping_error{"must be an integer", path + ".valueInteger"};
            if (v->GetInt() < 0 || v->GetInt() > 3)
                return mapping_error{"out of range (0–3)", path + ".valueInteger"};
            return v->GetInt();
        }
        if (const Value* c = member(a, "valueCoding")) {
            const std::string_view code = sv(member(*c, "code"));
            if (code.size() == 1 && code[0] >= '0' && code[0] <= '3') return code[0] - '0';
            return mapping_error{"the code must be 0, 1, 2 or 3", path + ".valueCoding.code"};
        }
        return mapping_error{"an answer must be valueInteger or valueCoding (0–3)", path};
    }

    result<void> items(const Value& list, const std::string& path, scored& s, int depth) {
        if (!list.IsArray()) return mapping_error{"must be an array", path};
        for (rapidjson::SizeType i = 0; i < list.Size(); ++i) {
            const std::string p = path + "[" + std::to_string(i) + "]";
            const Value& it = list[i];
            auto k = known_elements(it, "QuestionnaireResponse.item", p, false);
            if (!k) return k;
            const std::string_view link = sv(member(it, "linkId"));
            if (link.empty()) return mapping_error{"required", p + ".linkId"};
            const bool total = link == loinc_phq9_total || link == loinc_gad7_total;
            if (const Value* ans = member(it, "answer"); ans && !total) {
                if (!ans->IsArray() || ans->Size() != 1)
                    return mapping_error{"exactly one answer per question", p + ".answer"};
                auto ka = known_elements((*ans)[0], "QuestionnaireResponse.item.answer",
                                         p + ".answer[0]", false);
                if (!ka) return ka;
                auto v = answer_value((*ans)[0], p + ".answer[0]");
                if (!v) return v.error();
                s.items.push_back(*v);
            }
            if (const Value* sub = member(it, "item")) {
                if (depth > 3) return mapping_error{"items nested too deep", p + ".item"};
                auto r = items(*sub, p + ".item", s, depth + 1);
                if (!r) return r;
            }
        }
        return {};
    }

    result<scored> questionnaire_response(const Value& res, const std::string& path,
                                          std::string_view full_url) {
        scored s;
        const std::string q = lower(sv(member(res, "questionnaire")));
        if (q.find(loinc_phq9_panel) != std::string::npos || q.find("phq-9") != std::string::npos ||
            q.find("phq9") != std::string::npos)
            s.instrument = "PHQ-9";
        else if (q.find(loinc_gad7_panel) != std::string::npos ||
                 q.find("gad-7") != std::string::npos || q.find("gad7") != std::string::npos)
            s.instrument = "GAD-7";
        else
            return mapping_error{q.empty() ? "required (PHQ-9 or GAD-7)"
                                           : "not PHQ-9 (LOINC 44249-1) or GAD-7 (69737-5)",
                                 path + ".questionnaire"};
        const std::string_view status = sv(member(res, "status"));
        if (status != "completed" && status != "amended")
            return mapping_error{"must be completed or amended to be scored", path + ".status"};
        const Value* it = member(res, "item");
        if (!it) return mapping_error{"required: the answers", path + ".item"};
        auto r = items(*it, path + ".item", s, 0);
        if (!r) return r.error();
        const std::size_t want = s.instrument == "PHQ-9" ? 9 : 7;
        if (s.items.size() != want)
            return mapping_error{s.instrument + " needs " + std::to_string(want) +
                                     " answered items, found " + std::to_string(s.items.size()),
                                 path + ".item"};
        for (int v : s.items) s.score += v;
        s.administered_at = fhir_date_time(sv(member(res, "authored")));
        if (s.administered_at.size() < 10)
            return mapping_error{"required: a date or date-time", path + ".authored"};
        auto p = subject(res, path, s);
        if (!p) return p.error();
        auto t = treatment(res, path, s);
        if (!t) return t.error();
        s.key = key_of(res, "QuestionnaireResponse", full_url);
        return s;
    }

    result<scored> observation(const Value& res, const std::string& path,
                               std::string_view full_url) {
        scored s;
        const Value* code = member(res, "code");
        const Value* codings = code ? member(*code, "coding") : nullptr;
        if (codings && codings->IsArray()) {
            for (const auto& c : codings->GetArray()) {
                if (sv(member(c, "system")) != system_loinc) continue;
                if (sv(member(c, "code")) == loinc_phq9_total) s.instrument = "PHQ-9";
                if (sv(member(c, "code")) == loinc_gad7_total) s.instrument = "GAD-7";
            }
        }
        if (s.instrument.empty())
            return mapping_error{"must be LOINC 44261-6 (PHQ-9 total) or 70274-6 (GAD-7 total)",
                                 path + ".code"};
        const std::string_view status = sv(member(res, "status"));
        if (status != "final" && status != "amended" && status != "corrected")
            return mapping_error{"must be final, amended or corrected", path + ".status"};
        const Value* v = member(res, "valueInteger");
        if (!v) return mapping_error{"required: the total as valueInteger", path + ".valueInteger"};
        const int max = s.instrument == "PHQ-9" ? 27 : 21;
        if (!v->IsInt() || v->GetInt() < 0 || v->GetInt() > max)
            return mapping_error{
                "must be a whole number from 0 to " + std::to_string(max) + " for " + s.instrument,
                path + ".valueInteger"};
        s.score = v->GetInt();
        s.administered_at = fhir_date_time(sv(member(res, "effectiveDateTime")));
        if (s.administered_at.size() < 10)
            return mapping_error{"required: a date or date-time", path + ".effectiveDateTime"};
        auto p = subject(res, path, s);
        if (!p) return p.error();
        auto t = treatment(res, path, s);
        if (!t) return t.error();
        s.key = key_of(res, "Observation", full_url);
        return s;
    }
};

std::string envelope(const scored& s, std::string_view tool) {
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    auto kv = [&](const char* k, std::string_view v) {
        w.Key(k);
        w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    };
    w.StartObject();
    kv("schema", "samband.event/1");
    kv("type", "rph.assessment.scored");
    kv("idempotency_key", s.key.size() <= 200 ? s.key : "fhir:sha256:" + sha256_hex(s.key));
    kv("occurred_at", s.administered_at);
    w.Key("subject");
    w.StartObject();
    if (!s.fnr.empty())
        kv("fnr", s.fnr);
    else
        kv("dnr", s.dnr);
    w.EndObject();
    w.Key("data");
    w.StartObject();
    kv("treatment_id", s.treatment_id);
    kv("instrument", s.instrument);
    w.Key("score");
    w.Int(s.score);
    kv("administered_at", s.administered_at);
    kv("tool", tool);
    if (!s.items.empty()) {
        w.Key("items");
        w.StartArray();
        for (int v : s.items) w.Int(v);
        w.EndArray();
    }
    w.EndObject();
    w.EndObject();
    return {b.GetString(), b.GetSize()};
}

constexpr std::array<std::string_view, 4> accepted_types = {"QuestionnaireResponse", "Observation",
                                                            "Patient", "MessageHeader"};

}  // namespace

result<std::vector<inbound_event>> parse_incoming(std::string_view target, std::string_view body,
                                                  const inbound_options& opt) {
    rapidjson::Document doc;
    samband::json::limits lim;
    lim.max_depth = opt.max_depth;
    lim.max_bytes = opt.max_bytes;
    if (auto err = samband::json::parse(body, doc, lim); !err.empty())
        return mapping_error{err, ""};
    if (!doc.IsObject())
        return mapping_error{"the body must be a FHIR resource (a JSON object)", ""};
    const std::string_view rt = sv(member(doc, "resourceType"));
    if (rt.empty()) return mapping_error{"required", "resourceType"};
    while (!target.empty() && target.back() == '/') target.remove_suffix(1);
    const bool process_message = target == "/$process-message";
    if (process_message && rt != "Bundle")
        return mapping_error{
            "$process-message takes a Bundle of type message, not another resource type",
            "resourceType"};
    if (!target.empty() && !process_message && target.substr(1) != rt)
        return mapping_error{"not the resource type of " + std::string(target), "resourceType"};

    struct item {
        const Value* res;
        std::string path, type, full_url;
    };
    std::vector<item> todo;
    bundle_index index;
    if (rt == "Bundle") {
        auto k = known_elements(doc, "Bundle", "Bundle", true);
        if (!k) return k.error();
        const std::string_view type = sv(member(doc, "type"));
        if (process_message ? type != "message"
                            : (type != "transaction" && type != "batch" && type != "collection" &&
                               type != "message"))
            return mapping_error{process_message
                                     ? "must be message for $process-message"
                                     : "must be transaction, batch, collection or message",
                                 "Bundle.type"};
        const Value* entries = member(doc, "entry");
        if (!entries || !entries->IsArray() || entries->Empty())
            return mapping_error{"required: at least one entry", "Bundle.entry"};
        if (entries->Size() > opt.max_entries)
            return mapping_error{std::to_string(entries->Size()) + " entries, over the limit of " +
                                     std::to_string(opt.max_entries),
                                 "Bundle.entry"};
        for (rapidjson::SizeType i = 0; i < entries->Size(); ++i) {
            const std::string p = "Bundle.entry[" + std::to_string(i) + "]";
            const Value& e = (*entries)[i];
            auto ke = known_elements(e, "Bundle.entry", p, false);
            if (!ke) return ke.error();
            const Value* res = member(e, "resource");
            if (!res || !res->IsObject()) return mapping_error{"required", p + ".resource"};
            const std::string_view et = sv(member(*res, "resourceType"));
            if (std::find(accepted_types.begin(), accepted_types.end(), et) == accepted_types.end())
                return mapping_error{et.empty() ? std::string("required")
                                                : "this resource type is not accepted "
                                                  "(QuestionnaireResponse, Observation, "
                                                  "Patient, MessageHeader)",
                                     p + ".resource.resourceType"};
            if (type == "message" && i == 0 && et != "MessageHeader")
                return mapping_error{"the first entry of a message Bundle must be a MessageHeader",
                                     p + ".resource.resourceType"};
            const std::string full_url(sv(member(e, "fullUrl")));
            if (!full_url.empty()) index.by_url.emplace(full_url, res);
            if (auto id = sv(member(*res, "id")); !id.empty())
                index.by_url.emplace(std::string(et) + "/" + std::string(id), res);
            todo.push_back({res, p + ".resource", std::string(et), full_url});
        }
    } else {
        if (std::find(accepted_types.begin(), accepted_types.end(), rt) == accepted_types.end() ||
            rt == "MessageHeader" || rt == "Patient")
            return mapping_error{
                "this resource type is not accepted (QuestionnaireResponse, "
                "Observation, or a Bundle of them)",
                "resourceType"};
        todo.push_back({&doc, std::string(rt), std::string(rt), ""});
    }

    reader rd{opt, index};
    std::vector<inbound_event> out;
    for (const auto& t : todo) {
        auto k = known_elements(*t.res, t.type, t.path, true);
        if (!k) return k.error();
        if (t.type == "Patient" || t.type == "MessageHeader") continue;
        auto s = t.type == "QuestionnaireResponse"
                     ? rd.questionnaire_response(*t.res, t.path, t.full_url)
                     : rd.observation(*t.res, t.path, t.full_url);
        if (!s) return s.error();
        out.push_back({envelope(*s, "FHIR " + t.type), t.path});
    }
    if (out.empty())
        return mapping_error{"nothing to take in: no QuestionnaireResponse or Observation",
                             rt == "Bundle" ? "Bundle.entry" : "resourceType"};
    return out;
}

namespace {
std::string outcome(std::string_view severity, std::string_view code, std::string_view text,
                    std::string_view expression) {
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    auto kv = [&](const char* k, std::string_view v) {
        w.Key(k);
        w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    };
    w.StartObject();
    kv("resourceType", "OperationOutcome");
    w.Key("issue");
    w.StartArray();
    w.StartObject();
    kv("severity", severity);
    kv("code", code);
    w.Key("details");
    w.StartObject();
    kv("text", text);
    w.EndObject();
    if (!expression.empty()) {
        w.Key("expression");
        w.StartArray();
        w.String(expression.data(), static_cast<rapidjson::SizeType>(expression.size()));
        w.EndArray();
    }
    w.EndObject();
    w.EndArray();
    w.EndObject();
    return {b.GetString(), b.GetSize()};
}
}  // namespace

std::string message_response(std::string_view request_body, std::string_view text) {
    rapidjson::Document req;
    samband::json::limits lim;
    lim.max_depth = 64;
    (void)samband::json::parse(request_body, req, lim);
    const Value* entries = req.IsObject() ? member(req, "entry") : nullptr;
    const Value* header = entries && entries->IsArray() && !entries->Empty()
                              ? member((*entries)[0], "resource")
                              : nullptr;
    std::string request_id(header ? sv(member(*header, "id")) : std::string_view());
    if (request_id.empty()) request_id = derived_uuid(request_body);
    const std::string id = derived_uuid(std::string("response/") + std::string(request_body));
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    auto kv = [&](const char* k, std::string_view v) {
        w.Key(k);
        w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    };
    w.StartObject();
    kv("resourceType", "Bundle");
    kv("id", id);
    kv("type", "message");
    w.Key("entry");
    w.StartArray();
    w.StartObject();
    kv("fullUrl", "urn:uuid:" + id);
    w.Key("resource");
    w.StartObject();
    kv("resourceType", "MessageHeader");
    kv("id", id);
    const Value* coding = header ? member(*header, "eventCoding") : nullptr;
    if (coding && coding->IsObject()) {
        w.Key("eventCoding");
        coding->Accept(w);
    } else if (auto uri = header ? sv(member(*header, "eventUri")) : std::string_view();
               !uri.empty()) {
        kv("eventUri", uri);
    } else {
        kv("eventUri", "urn:samband:fhir:process-message");
    }
    w.Key("source");
    w.StartObject();
    kv("name", "Samband");
    kv("endpoint", "urn:samband:fhir");
    w.EndObject();
    w.Key("response");
    w.StartObject();
    kv("identifier", request_id);
    kv("code", "ok");
    w.EndObject();
    w.EndObject();
    w.EndObject();
    w.StartObject();
    kv("fullUrl", "urn:uuid:" + derived_uuid(id + "/outcome"));
    w.Key("resource");
    rapidjson::Document oo;
    oo.Parse(operation_outcome_info(text).c_str());
    oo.Accept(w);
    w.EndObject();
    w.EndArray();
    w.EndObject();
    return {b.GetString(), b.GetSize()};
}

std::string operation_outcome(const mapping_error& e, std::string_view code) {
    return outcome("error", code, e.text(), e.path);
}

std::string operation_outcome_info(std::string_view text) {
    return outcome("information", "informational", text, {});
}

}  // namespace samband::fhir
