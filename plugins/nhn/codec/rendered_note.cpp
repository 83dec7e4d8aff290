#include "nhn/codec/rendered_note.hpp"

#include <samband/identifiers.hpp>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

namespace samband::nhn {

namespace {

using rapidjson::Value;

const Value* member(const Value* v, const char* name) {
    if (v == nullptr || !v->IsObject()) return nullptr;
    auto it = v->FindMember(name);
    return it == v->MemberEnd() ? nullptr : &it->value;
}

std::string str(const Value* v, const char* name) {
    const Value* m = member(v, name);
    return m != nullptr && m->IsString() ? std::string(m->GetString(), m->GetStringLength()) : "";
}

bool digits(const std::string& s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

organisation_ref read_org(const Value* v) {
    return {str(v, "name"), str(v, "her_id"), str(v, "org_nr")};
}

person_ref read_person(const Value* v) {
    return {str(v, "given_name"), str(v, "family_name"), str(v, "title"),
            str(v, "her_id"),     str(v, "hpr"),         str(v, "phone")};
}

}  // namespace

codec_result<rendered_note> parse_rendered_note(std::string_view json, std::size_t max_bytes) {
    if (json.size() > max_bytes)
        return make_error(codec_errc::too_large, "envelope JSON of " + std::to_string(json.size()) +
                                                     " bytes is over the limit");
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag |
              rapidjson::kParseStopWhenDoneFlag>(json.data(), json.size());
    if (doc.HasParseError())
        return make_error(codec_errc::invalid_input,
                          std::string("envelope is not valid JSON: ") +
                              rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
                              std::to_string(doc.GetErrorOffset()));
    const Value* note = member(&doc, "note");
    if (note == nullptr || !note->IsObject())
        return make_error(codec_errc::missing_field, "note: the envelope has no rendered note");

    rendered_note n;
    n.event_id = str(&doc, "id");
    n.event_type = str(&doc, "type");
    n.kind = str(note, "kind");
    n.title = str(note, "title");
    n.message_type = str(note, "message_type");
    if (const Value* c = member(note, "conversation"); c != nullptr && c->IsObject()) {
        conversation_ref r{str(c, "ref_to_parent"), str(c, "ref_to_conversation")};
        if (!r.ref_to_parent.empty() || !r.ref_to_conversation.empty()) n.conversation = r;
    }
    if (const Value* s = member(note, "sections"); s != nullptr && s->IsArray())
        for (const auto& sec : s->GetArray())
            n.sections.push_back({str(&sec, "heading"), str(&sec, "text")});
    n.text = str(note, "text");
    n.issued_at = str(note, "issued_at");

    const Value* sender = member(note, "sender");
    n.sender_organisation = read_org(member(sender, "organisation"));
    n.sender_service = read_org(member(sender, "service"));
    if (const Value* t = member(sender, "therapist"); t != nullptr && t->IsObject())
        n.therapist = read_person(t);
    const Value* receiver = member(note, "receiver");
    n.receiver_organisation = read_org(member(receiver, "organisation"));
    if (const Value* p = member(receiver, "person"); p != nullptr && p->IsObject())
        n.receiver_person = read_person(p);
    const Value* pat = member(note, "patient");
    n.patient = {str(pat, "id"), str(pat, "id_type"), str(pat, "given_name"),
                 str(pat, "family_name")};

    if (const Value* atts = member(&doc, "attachments"); atts != nullptr && atts->IsArray()) {
        for (const auto& a : atts->GetArray()) {
            attachment_meta m{str(&a, "id"), str(&a, "filename"), str(&a, "media_type"),
                              str(&a, "sha256"), std::nullopt};
            if (const Value* sz = member(&a, "size"); sz != nullptr && sz->IsUint64())
                m.size = sz->GetUint64();
            n.attachments.push_back(std::move(m));
        }
    }

    // Required fields, each named by its path.
    struct req {
        const std::string& value;
        const char* path;
        bool numeric;
    };
    const req required[] = {
        {n.kind, "note.kind", false},
        {n.sender_organisation.name, "note.sender.organisation.name", false},
        {n.sender_organisation.her_id, "note.sender.organisation.her_id", true},
        {n.sender_service.name, "note.sender.service.name", false},
        {n.sender_service.her_id, "note.sender.service.her_id", true},
        {n.receiver_organisation.name, "note.receiver.organisation.name", false},
        {n.receiver_organisation.her_id, "note.receiver.organisation.her_id", true},
        {n.patient.id, "note.patient.id", true},
    };
    for (const auto& r : required) {
        if (r.value.empty())
            return make_error(codec_errc::missing_field, std::string(r.path) + " is missing");
        if (r.numeric && !digits(r.value))
            return make_error(codec_errc::invalid_input, std::string(r.path) + " must be digits");
    }
    if (n.text.empty() && n.sections.empty())
        return make_error(codec_errc::missing_field, "note.text is missing");

    auto kind = ident::kind_of(n.patient.id);
    if (kind == ident::person_id_kind::unknown)
        return make_error(codec_errc::invalid_input, "note.patient.id must be 11 digits");
    std::string derived = kind == ident::person_id_kind::dnr ? "DNR" : "FNR";
    if (n.patient.id_type.empty()) n.patient.id_type = derived;
    if (n.patient.id_type != derived)
        return make_error(codec_errc::invalid_input,
                          "note.patient.id_type is " + n.patient.id_type + " but the number is a " +
                              (derived == "DNR" ? "D-number" : "fødselsnummer"));
    return n;
}

}  // namespace samband::nhn
