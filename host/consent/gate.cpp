#include "consent/gate.hpp"

#include <string_view>

namespace samband::consent {

namespace {

std::string_view str(const rapidjson::Value* obj, const char* key) {
    if (!obj || !obj->IsObject()) return {};
    auto it = obj->FindMember(key);
    if (it == obj->MemberEnd() || !it->value.IsString()) return {};
    return {it->value.GetString(), it->value.GetStringLength()};
}

// Latest consent to inform the GP: "given", "refused" or empty (never recorded).
std::string consent_state(const std::vector<treatment_event>& history) {
    std::string state;
    for (const auto& e : history) {
        if (e.type == "rph.treatment.started") {
            auto v = str(e.data, "consent_gp");
            if (!v.empty()) state = std::string(v);
        } else if (e.type == "rph.consent.changed") {
            auto c = str(e.data, "change");
            if (c == "consent_given") state = "given";
            if (c == "consent_withdrawn") state = "refused";
        }
    }
    return state;
}

// The objection to the end note: "objected", "none" or empty (unknown). An objection — recorded
// by rph.consent.changed or by the end note's own `objection` — stands until a later explicit
// objection_withdrawn; an end note saying "none" never clears an earlier objection.
std::string objection_state(const std::vector<treatment_event>& history) {
    bool objected = false, said_none = false;
    for (const auto& e : history) {
        if (e.type == "rph.treatment.ended") {
            auto v = str(e.data, "objection");
            if (v == "objected") objected = true;
            if (v == "none") said_none = true;
        } else if (e.type == "rph.consent.changed") {
            auto c = str(e.data, "change");
            if (c == "objection_recorded") objected = true;
            if (c == "objection_withdrawn") {
                objected = false;
                said_none = true;
            }
        }
    }
    if (objected) return "objected";
    return said_none ? "none" : "";
}

}  // namespace

decision decide(const std::string& type, const rapidjson::Value& data,
                const std::vector<treatment_event>& history, bool overridden) {
    (void)data;
    if (overridden) return {verdict::send, "gate overridden by an operator (see audit log)"};
    if (type == "rph.treatment.started" || type == "rph.info.requested") {
        std::string c = consent_state(history);
        if (c == "given") return {verdict::send, "consent to inform the GP is recorded"};
        if (c.empty())
            return {verdict::hold, "consent to inform the GP is not recorded (status unknown)"};
        return {verdict::block, "the patient has not consented to informing the GP (" + c + ")"};
    }
    if (type == "rph.treatment.ended") {
        bool started = false;
        for (const auto& e : history) started = started || e.type == "rph.treatment.started";
        if (!started) return {verdict::hold, "no start note is recorded for this treatment"};
        std::string o = objection_state(history);
        if (o == "objected")
            return {verdict::block,
                    "the patient objected to the end note being sent (pasient- og "
                    "brukerrettighetsloven § 5-3)"};
        if (o == "none") return {verdict::send, "no objection recorded"};
        return {verdict::hold, "objection status unknown"};
    }
    return {verdict::send, "no consent rule for this event type"};
}

}  // namespace samband::consent
