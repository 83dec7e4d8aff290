#include "render.hpp"

#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <samband/json.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace samband::rph {

namespace {

using rapidjson::Value;
using vars = std::map<std::string, std::string>;

std::string str(const Value* obj, const char* key) {
    if (!obj || !obj->IsObject()) return {};
    auto it = obj->FindMember(key);
    if (it == obj->MemberEnd()) return {};
    if (it->value.IsString()) return it->value.GetString();
    if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
    if (it->value.IsNumber()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", it->value.GetDouble());
        return buf;
    }
    return {};
}

const Value* member(const Value* obj, const char* key) {
    if (!obj || !obj->IsObject()) return nullptr;
    auto it = obj->FindMember(key);
    return it == obj->MemberEnd() ? nullptr : &it->value;
}

std::string join(const Value* arr, const std::string& sep, const std::string& bullet = "") {
    std::string out;
    if (!arr || !arr->IsArray()) return out;
    for (const auto& v : arr->GetArray()) {
        if (!v.IsString()) continue;
        if (!out.empty()) out += sep;
        out += bullet + v.GetString();
    }
    return out;
}

std::string offer_text(const std::string& code) {
    static const std::map<std::string, std::string> names = {
        {"veiledet_selvhjelp", "veiledet selvhjelp"},
        {"kurs", "kurs"},
        {"individuell", "individuelle samtaler"},
        {"gruppe", "gruppebehandling"},
        {"digital", "digital behandling"}};
    auto it = names.find(code);
    return it == names.end() ? code : it->second;
}

std::string offers(const Value* arr) {
    std::string out;
    if (!arr || !arr->IsArray()) return out;
    for (const auto& v : arr->GetArray()) {
        if (!v.IsString()) continue;
        if (!out.empty()) out += " og ";
        out += offer_text(v.GetString());
    }
    return out;
}

std::string end_reason_text(const std::string& code, const std::string& detail) {
    std::string base = code == "goal_reached" ? "Målet for behandlingen er nådd."
                       : code == "referred_on"
                           ? "Pasienten trenger annen hjelp og henvises videre via fastlegen."
                       : code == "dropped_out" ? "Pasienten avbrøt behandlingen."
                                               : "Annen årsak.";
    return detail.empty() ? base : base + " " + detail;
}

std::string scores_lines(const Value* arr) {
    std::string out;
    if (!arr || !arr->IsArray()) return out;
    for (const auto& s : arr->GetArray()) {
        std::string ins = str(&s, "instrument");
        auto sc = member(&s, "score");
        if (ins.empty() || !sc || !sc->IsNumber()) continue;
        if (!out.empty()) out += "\n";
        out += score_line(ins, sc->GetDouble());
    }
    return out;
}

// "PHQ-9: 14 (moderat) ved start, 6 (mild) ved slutt", one line per instrument.
std::string scores_start_end(const Value* start, const Value* end) {
    std::vector<std::string> order;
    std::map<std::string, std::pair<std::string, std::string>> by;
    auto add = [&](const Value* arr, bool is_start) {
        if (!arr || !arr->IsArray()) return;
        for (const auto& s : arr->GetArray()) {
            std::string ins = str(&s, "instrument");
            auto sc = member(&s, "score");
            if (ins.empty() || !sc || !sc->IsNumber()) continue;
            if (!by.count(ins)) order.push_back(ins);
            std::string b = band(ins, sc->GetDouble());
            char num[32];
            std::snprintf(num, sizeof num, "%g", sc->GetDouble());
            std::string v = std::string(num) + (b.empty() ? "" : " (" + b + ")");
            (is_start ? by[ins].first : by[ins].second) = v;
        }
    };
    add(start, true);
    add(end, false);
    std::string out;
    for (const auto& ins : order) {
        const auto& [s, e] = by[ins];
        if (!out.empty()) out += "\n";
        out += ins + ": " + (s.empty() ? "ikke målt" : s) + " ved start, " +
               (e.empty() ? "ikke målt" : e) + " ved slutt";
    }
    return out;
}

// Replaces {{name}}; reports whether any placeholder had a value.
std::string fill(const std::string& tmpl, const vars& v, bool& any_value) {
    std::string out;
    std::size_t i = 0;
    while (i < tmpl.size()) {
        auto open = tmpl.find("{{", i);
        if (open == std::string::npos) {
            out += tmpl.substr(i);
            break;
        }
        auto close = tmpl.find("}}", open);
        if (close == std::string::npos) {
            out += tmpl.substr(i);
            break;
        }
        out += tmpl.substr(i, open - i);
        auto it = v.find(tmpl.substr(open + 2, close - open - 2));
        if (it != v.end() && !it->second.empty()) {
            out += it->second;
            any_value = true;
        }
        i = close + 2;
    }
    // Tidy lines left empty by missing values.
    std::string tidy;
    std::size_t start = 0;
    while (start <= out.size()) {
        auto nl = out.find('\n', start);
        std::string line =
            out.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        bool blank = line.find_first_not_of(" .,:") == std::string::npos;
        if (!blank) tidy += (tidy.empty() ? "" : "\n") + line;
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
    return tidy;
}

void set(Value& obj, const char* k, const std::string& v, rapidjson::Document::AllocatorType& a) {
    if (v.empty()) return;
    obj.AddMember(Value(k, a), Value(v.c_str(), static_cast<rapidjson::SizeType>(v.size()), a), a);
}

}  // namespace

std::string band(std::string_view instrument, double s) {
    if (instrument == "PHQ-9") {
        if (s < 0 || s > 27) return {};
        return s <= 4    ? "minimal"
               : s <= 9  ? "mild"
               : s <= 14 ? "moderat"
               : s <= 19 ? "moderat til alvorlig"
                         : "alvorlig";
    }
    if (instrument == "GAD-7") {
        if (s < 0 || s > 21) return {};
        return s <= 4 ? "minimal" : s <= 9 ? "mild" : s <= 14 ? "moderat" : "alvorlig";
    }
    return {};
}

std::string score_line(std::string_view instrument, double score) {
    char num[32];
    std::snprintf(num, sizeof num, "%g", score);
    std::string b = band(instrument, score);
    return std::string(instrument) + ": " + num + (b.empty() ? "" : " (" + b + ")");
}

renderer::renderer(renderer_config cfg) : cfg_(std::move(cfg)) {
    const std::string text =
        cfg_.templates_json.empty() ? default_templates() : cfg_.templates_json;
    if (std::string err = samband::json::parse(text, templates_); !err.empty())
        throw std::invalid_argument("rph templates: " + err);
    if (!templates_.IsObject()) throw std::invalid_argument("rph templates: not a JSON object");
    for (const char* kind : {"oppstartsnotat", "avslutningsnotat", "foresporsel", "svar",
                             "henvisning", "journal_score", "journal_session"}) {
        const Value* t = member(&templates_, kind);
        if (!t || !t->IsObject() || !member(t, "sections") || !(*member(t, "sections")).IsArray())
            throw std::invalid_argument(std::string("rph templates: \"") + kind +
                                        "\" needs a title and a sections array");
    }
}

render_result renderer::render(std::string_view envelope_json) const {
    render_result res;
    rapidjson::Document env;
    if (!samband::json::parse(envelope_json, env).empty() || !env.IsObject()) {
        res.error = "the event is not a JSON object";
        return res;
    }
    std::string type = str(&env, "type");
    const Value* data = member(&env, "data");
    static const std::map<std::string, std::pair<std::string, std::string>> kinds = {
        {"rph.treatment.started", {"oppstartsnotat", "DIALOG_HELSEFAGLIG"}},
        {"rph.treatment.ended", {"avslutningsnotat", "DIALOG_HELSEFAGLIG"}},
        {"rph.info.requested", {"foresporsel", "DIALOG_FORESPORSEL"}},
        {"rph.info.replied", {"svar", "DIALOG_SVAR"}},
        {"rph.referral.sent", {"henvisning", "DIALOG_HELSEFAGLIG"}},
        {"rph.assessment.scored", {"journal_score", ""}},
        {"rph.session.attended", {"journal_session", ""}},
    };
    auto kit = kinds.find(type);
    if (kit == kinds.end()) {
        res.ok = true;
        res.envelope_json = std::string(envelope_json);  // not a note: unchanged
        return res;
    }
    if (!data || !data->IsObject()) {
        res.error = "/data: missing";
        return res;
    }
    const std::string& kind = kit->second.first;

    vars v;
    v["service_name"] =
        cfg_.from.service_name.empty() ? "Rask psykisk helsehjelp" : cfg_.from.service_name;
    const Value* subject = member(&env, "subject");
    const Value* name = member(subject, "name");
    v["patient_name"] =
        str(name, "given") + (str(name, "family").empty() ? "" : " " + str(name, "family"));

    // The responsible therapist, completed from the configured list by HPR number.
    therapist th;
    if (const Value* t = member(data, "therapist")) {
        th = {str(t, "given_name"), str(t, "family_name"), str(t, "title"), str(t, "hpr"),
              str(t, "phone")};
        if (!cfg_.therapists.empty()) {
            const therapist* known = nullptr;
            for (const auto& c : cfg_.therapists)
                if (c.hpr == th.hpr) known = &c;
            if (!known) {
                res.error =
                    "/data/therapist/hpr: unknown therapist (the HPR number is not in the rph "
                    "endpoint's therapist list)";
                return res;
            }
            if (th.title.empty()) th.title = known->title;
            if (th.phone.empty()) th.phone = known->phone;
            if (th.given_name.empty()) th.given_name = known->given_name;
            if (th.family_name.empty()) th.family_name = known->family_name;
        }
    }
    v["therapist_name"] = th.given_name + (th.family_name.empty() ? "" : " " + th.family_name);
    v["therapist_title"] = th.title;
    v["therapist_hpr"] = th.hpr;
    v["therapist_phone"] = th.phone;

    v["reason_for_contact"] = str(data, "reason_for_contact");
    v["assessment_summary"] = str(member(data, "assessment"), "summary");
    v["scores"] = scores_lines(member(member(data, "assessment"), "scores"));
    if (v["scores"].empty()) v["scores"] = scores_lines(member(data, "scores"));
    v["offer"] = offers(member(data, "offer"));
    v["offer_line"] = v["offer"].empty() ? "" : " Tilbud: " + v["offer"] + ".";
    v["goals"] = join(member(data, "goals"), "\n", "- ");
    v["background_and_goals"] = str(data, "background_and_goals");
    v["summary"] = str(data, "summary");
    v["sessions"] = str(data, "sessions");
    v["useful_methods"] = join(member(data, "useful_methods"), "\n", "- ");
    v["scores_start_end"] = scores_start_end(member(member(data, "scores"), "start"),
                                             member(member(data, "scores"), "end"));
    v["status_and_needs"] = str(data, "status_and_needs");
    std::string plan = str(data, "self_help_plan");
    v["self_help_plan"] = plan.empty() ? "" : "Pasientens selvhjelpsplan: " + plan;
    v["end_reason"] = str(data, "end_reason").empty()
                          ? ""
                          : end_reason_text(str(data, "end_reason"), str(data, "end_reason_text"));
    v["question"] = str(data, "question");
    v["reason"] = str(data, "reason");
    v["answer"] = str(data, "answer");
    v["to"] = str(data, "to");
    v["text"] = str(data, "text");
    std::string instrument = str(data, "instrument");
    v["instrument"] = instrument;
    auto sc = member(data, "score");
    v["score_line"] = sc && sc->IsNumber() ? score_line(instrument, sc->GetDouble()) : "";
    v["administered_at"] = str(data, "administered_at");
    v["tool_line"] = str(data, "tool").empty() ? "" : " Registrert i " + str(data, "tool") + ".";
    static const std::map<std::string, std::string> session_kinds = {
        {"individuell", "Individuell samtale"},
        {"kurs", "Kurs"},
        {"gruppe", "Gruppebehandling"},
        {"digital", "Digital behandling"},
        {"veiledet_selvhjelp", "Veiledet selvhjelp"}};
    auto sk = session_kinds.find(str(data, "kind"));
    v["session_kind"] = sk == session_kinds.end() ? str(data, "kind") : sk->second;
    v["session_at"] = str(data, "session_at");
    auto att = member(data, "attended");
    v["attended"] = att && att->IsBool() ? (att->GetBool() ? "møtte" : "møtte ikke") : "";
    v["content"] = str(data, "content");

    const Value& tmpl = templates_[kind.c_str()];
    auto& a = env.GetAllocator();
    bool any = false;
    std::string title = fill(str(&tmpl, "title"), v, any);
    Value sections(rapidjson::kArrayType);
    std::string text = title + "\n";
    for (const auto& s : tmpl["sections"].GetArray()) {
        bool has = false;
        std::string body = fill(str(&s, "text"), v, has);
        bool literal = str(&s, "text").find("{{") == std::string::npos;
        if ((!has && !literal) || body.empty()) continue;
        std::string heading = str(&s, "heading");
        Value sec(rapidjson::kObjectType);
        set(sec, "heading", heading, a);
        set(sec, "text", body, a);
        sections.PushBack(sec, a);
        text += "\n" + heading + "\n" + body + "\n";
    }

    Value out(rapidjson::kObjectType);
    set(out, "kind", kind, a);
    set(out, "title", title, a);
    if (kind.rfind("journal_", 0) == 0) {
        out.AddMember("sections", sections, a);
        set(out, "text", text, a);
        env.RemoveMember("journal");
        env.AddMember("journal", out, a);
    } else {
        set(out, "message_type", kit->second.second, a);
        if (kind == "svar" || kind == "foresporsel") {
            Value conv(rapidjson::kObjectType);
            set(conv, "ref_to_parent", str(data, "in_reply_to"), a);
            set(conv, "ref_to_conversation", str(data, "conversation_ref"), a);
            if (conv.MemberCount() > 0) out.AddMember("conversation", conv, a);
        }
        out.AddMember("sections", sections, a);
        set(out, "text", text, a);
        set(out, "issued_at", str(&env, "occurred_at"), a);
        Value from(rapidjson::kObjectType), org(rapidjson::kObjectType),
            svc(rapidjson::kObjectType), thv(rapidjson::kObjectType);
        set(org, "name", cfg_.from.org_name, a);
        set(org, "her_id", cfg_.from.org_her_id, a);
        set(org, "org_nr", cfg_.from.org_nr, a);
        set(svc, "name", cfg_.from.service_name, a);
        set(svc, "her_id", cfg_.from.service_her_id, a);
        set(thv, "given_name", th.given_name, a);
        set(thv, "family_name", th.family_name, a);
        set(thv, "title", th.title, a);
        set(thv, "hpr", th.hpr, a);
        set(thv, "phone", th.phone, a);
        from.AddMember("organisation", org, a);
        from.AddMember("service", svc, a);
        if (!th.hpr.empty()) from.AddMember("therapist", thv, a);
        out.AddMember("sender", from, a);
        // The receiver: the GP and office the host resolved (recipient), or the event's gp.
        const Value* rec = member(&env, "recipient");
        Value to(rapidjson::kObjectType), office(rapidjson::kObjectType),
            person(rapidjson::kObjectType);
        const Value* rg = member(rec, "gp");
        const Value* ro = member(rec, "office");
        set(office, "name", str(ro, "name"), a);
        set(office, "her_id",
            str(ro, "her_id").empty() ? str(member(data, "gp"), "office_her_id")
                                      : str(ro, "her_id"),
            a);
        set(office, "org_nr", str(ro, "org_nr"), a);
        set(person, "given_name", str(rg, "given_name"), a);
        set(person, "family_name", str(rg, "family_name"), a);
        set(person, "her_id",
            str(rg, "her_id").empty() ? str(member(data, "gp"), "her_id") : str(rg, "her_id"), a);
        set(person, "hpr", str(rg, "hpr"), a);
        to.AddMember("organisation", office, a);
        if (person.MemberCount() > 0) to.AddMember("person", person, a);
        out.AddMember("receiver", to, a);
        Value pat(rapidjson::kObjectType);
        std::string fnr = str(subject, "fnr"), dnr = str(subject, "dnr");
        set(pat, "id", fnr.empty() ? dnr : fnr, a);
        set(pat, "id_type", fnr.empty() ? "DNR" : (fnr[0] >= '4' && fnr[0] <= '7' ? "DNR" : "FNR"),
            a);
        set(pat, "given_name", str(name, "given"), a);
        set(pat, "family_name", str(name, "family"), a);
        out.AddMember("patient", pat, a);
        env.RemoveMember("note");
        env.AddMember("note", out, a);
    }
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    env.Accept(w);
    res.ok = true;
    res.envelope_json.assign(sb.GetString(), sb.GetSize());
    return res;
}

}  // namespace samband::rph
