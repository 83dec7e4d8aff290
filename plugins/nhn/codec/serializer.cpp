#include "nhn/codec/serializer.hpp"

#include "nhn/codec/crypto.hpp"
#include "nhn/codec/names.hpp"
#include "nhn/codec/xml_writer.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>

namespace samband::nhn {

using namespace detail;
namespace nm = names;

namespace {

std::string s(std::string_view v) {
    return std::string(v);
}

std::string_view type_dn(std::string_view type) {
    if (type == nm::dialog_helsefaglig) return "Helsefaglig dialog";
    if (type == nm::dialog_foresporsel) return "Forespørsel";
    if (type == nm::dialog_svar) return "Svar";
    return {};
}

bool is_date(std::string_view v) {
    if (v.size() < 10) return false;
    for (std::size_t i = 0; i < 10; ++i) {
        bool dash = i == 4 || i == 7;
        if (dash ? v[i] != '-' : (v[i] < '0' || v[i] > '9')) return false;
    }
    return true;
}

void add_org_ident(xmlNodePtr org, xmlNsPtr ns, const std::string& id, std::string_view type,
                   std::string_view dn) {
    xmlNodePtr ident = add(org, ns, "Ident");
    add_text(ident, ns, "Id", id);
    add_code(ident, ns, "TypeId", type, dn, nm::oid_org_ident);
}

void add_person_ident(xmlNodePtr parent, xmlNsPtr ns, const std::string& id, std::string_view type,
                      std::string_view dn) {
    xmlNodePtr ident = add(parent, ns, "Ident");
    add_text(ident, ns, "Id", id);
    add_code(ident, ns, "TypeId", type, dn, nm::oid_person_ident);
}

std::string tel_uri(const std::string& phone) {
    std::string digits;
    for (char c : phone)
        if ((c >= '0' && c <= '9') || (c == '+' && digits.empty())) digits.push_back(c);
    return digits.empty() ? std::string() : "tel:" + digits;
}

// MsgHead HealthcareProfessional: names, then identifiers (msghead namespace throughout).
void add_msghead_hcp(xmlNodePtr parent, xmlNsPtr mh, const person_ref& p) {
    xmlNodePtr hp = add(parent, mh, "HealthcareProfessional");
    if (!p.family_name.empty()) add_text(hp, mh, "FamilyName", p.family_name);
    if (!p.given_name.empty()) add_text(hp, mh, "GivenName", p.given_name);
    if (!p.hpr.empty()) add_person_ident(hp, mh, p.hpr, "HPR", "HPR-nummer");
    if (!p.her_id.empty()) add_person_ident(hp, mh, p.her_id, "HER", "HER-id");
    if (std::string tel = tel_uri(p.phone); !tel.empty()) {
        xmlNodePtr tc = add(hp, mh, "TeleCom");
        set_attr(add(tc, mh, "TeleAddress"), "V", tel);
    }
}

// Dialogmelding RollerRelatertNotat/HealthcareProfessional: the responsible therapist.
void add_dialog_hcp(xmlNodePtr parent, xmlNsPtr dia, xmlNsPtr fk1, const person_ref& p) {
    xmlNodePtr roller = add(parent, dia, "RollerRelatertNotat");
    xmlNodePtr hp = add(roller, dia, "HealthcareProfessional");
    if (!p.family_name.empty()) add_text(hp, dia, "FamilyName", p.family_name);
    if (!p.given_name.empty()) add_text(hp, dia, "GivenName", p.given_name);
    if (!p.hpr.empty()) {
        xmlNodePtr ident = add(hp, dia, "Ident");
        add_text(ident, fk1, "Id", p.hpr);
        add_code(ident, fk1, "TypeId", "HPR", "HPR-nummer", nm::oid_person_ident);
    }
    if (std::string tel = tel_uri(p.phone); !tel.empty()) {
        xmlNodePtr tc = add(hp, dia, "TeleCom");
        set_attr(add(tc, fk1, "TeleAddress"), "V", tel);
    }
}

std::string note_text(const rendered_note& n) {
    if (!n.text.empty()) return n.text;
    std::string out;
    for (const auto& s : n.sections) {
        if (!out.empty()) out += "\n\n";
        if (!s.heading.empty()) out += s.heading + "\n";
        out += s.text;
    }
    return out;
}

bool valid_type(std::string_view t) {
    return t == nm::dialog_helsefaglig || t == nm::dialog_foresporsel || t == nm::dialog_svar;
}

}  // namespace

std::string utc_now() {
    auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

codec_result<std::string> choose_message_type(const rendered_note& note,
                                              std::string_view receiver_message_type) {
    std::string t;
    if (!receiver_message_type.empty()) {
        t = receiver_message_type;
    } else if (!note.message_type.empty()) {
        t = note.message_type;
    } else if (note.kind == "foresporsel") {
        t = nm::dialog_foresporsel;
    } else if (note.kind == "svar") {
        t = nm::dialog_svar;
    } else {
        t = nm::dialog_helsefaglig;
    }
    if (!valid_type(t))
        return make_error(
            codec_errc::invalid_input,
            "message type '" + t +
                "' is not one of DIALOG_HELSEFAGLIG, DIALOG_FORESPORSEL, DIALOG_SVAR");
    return t;
}

codec_result<serialized_message> build_note_xml(const rendered_note& note,
                                                std::span<const outgoing_attachment> attachments,
                                                const serialize_options& opt) {
    if (opt.msg_id.empty())
        return make_error(codec_errc::invalid_input,
                          "msg_id is required (derive it from the "
                          "delivery id so retries keep it)");
    auto type = choose_message_type(note, opt.receiver_message_type);
    if (!type) return type.error();

    // Conversation references: required for an answer; a request starts its own conversation.
    std::optional<conversation_ref> conv = note.conversation;
    if (*type == nm::dialog_svar) {
        if (!conv || conv->ref_to_parent.empty())
            return make_error(codec_errc::missing_field,
                              "note.conversation.ref_to_parent is required for DIALOG_SVAR (the "
                              "MsgId of the request it answers)");
        if (conv->ref_to_conversation.empty()) conv->ref_to_conversation = conv->ref_to_parent;
    } else if (*type == nm::dialog_foresporsel) {
        if (!conv) conv = conversation_ref{};
        if (conv->ref_to_parent.empty()) conv->ref_to_parent = opt.msg_id;
        if (conv->ref_to_conversation.empty()) conv->ref_to_conversation = conv->ref_to_parent;
    } else if (conv) {
        if (conv->ref_to_parent.empty()) conv->ref_to_parent = conv->ref_to_conversation;
        if (conv->ref_to_conversation.empty()) conv->ref_to_conversation = conv->ref_to_parent;
    }

    // Attachments: check against the envelope and the allowed types before building anything.
    struct att {
        std::string filename, media_type;
        std::span<const std::uint8_t> bytes;
    };
    std::vector<att> atts;
    std::vector<bool> meta_used(note.attachments.size(), false);
    for (const auto& a : attachments) {
        att out{a.filename, a.media_type, a.bytes};
        if (!a.id.empty()) {
            auto it = std::find_if(note.attachments.begin(), note.attachments.end(),
                                   [&](const attachment_meta& m) { return m.id == a.id; });
            if (it != note.attachments.end()) {
                meta_used[static_cast<std::size_t>(it - note.attachments.begin())] = true;
                if (out.filename.empty()) out.filename = it->filename;
                if (out.media_type.empty()) out.media_type = it->media_type;
                if (it->size && *it->size != a.bytes.size())
                    return make_error(codec_errc::attachment_mismatch,
                                      "attachment " + a.id + ": " + std::to_string(a.bytes.size()) +
                                          " bytes given, the envelope says " +
                                          std::to_string(*it->size));
                if (!it->sha256.empty() && it->sha256 != sha256_hex(a.bytes))
                    return make_error(codec_errc::attachment_mismatch,
                                      "attachment " + a.id +
                                          ": SHA-256 of the bytes differs from the envelope's");
            }
        }
        if (out.filename.empty())
            return make_error(codec_errc::missing_field, "attachment " + a.id + " has no filename");
        if (std::find(opt.allowed_media_types.begin(), opt.allowed_media_types.end(),
                      out.media_type) == opt.allowed_media_types.end())
            return make_error(codec_errc::attachment_mismatch,
                              "attachment " + out.filename + ": media type '" + out.media_type +
                                  "' is not allowed for NHN messages");
        if (a.bytes.size() > opt.max_attachment_bytes)
            return make_error(codec_errc::too_large, "attachment " + out.filename + " has " +
                                                         std::to_string(a.bytes.size()) +
                                                         " bytes, over the limit of " +
                                                         std::to_string(opt.max_attachment_bytes));
        if (a.bytes.empty())
            return make_error(codec_errc::attachment_mismatch,
                              "attachment " + out.filename + " is empty");
        atts.push_back(std::move(out));
    }
    for (std::size_t i = 0; i < meta_used.size(); ++i)
        if (!meta_used[i])
            return make_error(codec_errc::attachment_mismatch,
                              "attachment '" + note.attachments[i].id +
                                  "' is listed in the envelope but its bytes were not given");

    std::string gen_date = !opt.gen_date.empty()     ? opt.gen_date
                           : !note.issued_at.empty() ? note.issued_at
                                                     : utc_now();

    xml_doc_ptr doc(xmlNewDoc(x("1.0")));
    if (!doc) return make_error(codec_errc::internal, "libxml2: cannot create a document");
    xmlNodePtr root = xmlNewDocNode(doc.get(), nullptr, x("MsgHead"), nullptr);
    xmlDocSetRootElement(doc.get(), root);
    xmlNsPtr mh = xmlNewNs(root, x(s(nm::msghead_ns).c_str()), nullptr);
    xmlSetNs(root, mh);

    // MsgInfo
    xmlNodePtr info = add(root, mh, "MsgInfo");
    add_code(info, mh, "Type", *type, type_dn(*type));
    add_text(info, mh, "MIGversion", nm::msghead_mig);
    add_text(info, mh, "GenDate", gen_date);
    add_text(info, mh, "MsgId", opt.msg_id);
    if (opt.request_apprec) add_code(info, mh, "Ack", "J", "Ja");
    if (conv) {
        xmlNodePtr cr = add(info, mh, "ConversationRef");
        add_text(cr, mh, "RefToParent", conv->ref_to_parent);
        add_text(cr, mh, "RefToConversation", conv->ref_to_conversation);
    }
    // Sender: the municipality, its RPH service inside it, the therapist inside that.
    xmlNodePtr sender_org = add(add(info, mh, "Sender"), mh, "Organisation");
    add_text(sender_org, mh, "OrganisationName", note.sender_organisation.name);
    add_org_ident(sender_org, mh, note.sender_organisation.her_id, "HER", "HER-id");
    if (!note.sender_organisation.org_nr.empty())
        add_org_ident(sender_org, mh, note.sender_organisation.org_nr, "ENH",
                      "Organisasjonsnummeret i Enhetsregister");
    xmlNodePtr service = add(sender_org, mh, "Organisation");
    add_text(service, mh, "OrganisationName", note.sender_service.name);
    add_org_ident(service, mh, note.sender_service.her_id, "HER", "HER-id");
    if (note.therapist && (!note.therapist->hpr.empty() || !note.therapist->her_id.empty()))
        add_msghead_hcp(service, mh, *note.therapist);
    // Receiver: the GP office and the GP.
    xmlNodePtr recv_org = add(add(info, mh, "Receiver"), mh, "Organisation");
    add_text(recv_org, mh, "OrganisationName", note.receiver_organisation.name);
    add_org_ident(recv_org, mh, note.receiver_organisation.her_id, "HER", "HER-id");
    if (!note.receiver_organisation.org_nr.empty())
        add_org_ident(recv_org, mh, note.receiver_organisation.org_nr, "ENH",
                      "Organisasjonsnummeret i Enhetsregister");
    if (note.receiver_person &&
        (!note.receiver_person->her_id.empty() || !note.receiver_person->hpr.empty()))
        add_msghead_hcp(recv_org, mh, *note.receiver_person);
    // Patient
    xmlNodePtr patient = add(info, mh, "Patient");
    if (!note.patient.family_name.empty())
        add_text(patient, mh, "FamilyName", note.patient.family_name);
    if (!note.patient.given_name.empty())
        add_text(patient, mh, "GivenName", note.patient.given_name);
    add_person_ident(patient, mh, note.patient.id, note.patient.id_type,
                     note.patient.id_type == "DNR" ? "D-nummer" : "Fødselsnummer");

    // The body: Document/RefDoc with MsgType XML and a Dialogmelding 1.1.
    xmlNodePtr refdoc = add(add(root, mh, "Document"), mh, "RefDoc");
    if (!note.issued_at.empty()) set_attr(add(refdoc, mh, "IssueDate"), "V", note.issued_at);
    add_code(refdoc, mh, "MsgType", "XML", "XML-instans");
    xmlNodePtr content = add(refdoc, mh, "Content");
    xmlNodePtr dm = xmlNewChild(content, nullptr, x("Dialogmelding"), nullptr);
    xmlNsPtr dia = xmlNewNs(dm, x(s(nm::dialog_11_ns).c_str()), nullptr);
    xmlNsPtr fk1 = xmlNewNs(dm, x(s(nm::fk1_ns).c_str()), x("fk1"));
    xmlSetNs(dm, dia);

    const std::string text = note_text(note);
    if (*type == nm::dialog_foresporsel) {
        xmlNodePtr f = add(dm, dia, "Foresporsel");
        add_code(f, dia, "TypeForesp", "99", "Annen henvendelse", nm::oid_opplysning_pleie_omsorg);
        if (!note.title.empty()) add_text(f, dia, "EmneSporsmal", note.title);
        add_text(f, dia, "Sporsmal", text);
        if (note.therapist) add_dialog_hcp(f, dia, fk1, *note.therapist);
    } else {
        xmlNodePtr n = add(dm, dia, "Notat");
        if (*type == nm::dialog_svar)
            add_code(n, dia, "TemaKodet", "99", "Annen henvendelse",
                     nm::oid_opplysning_pleie_omsorg);
        else if (note.kind == "foresporsel")
            add_code(n, dia, "TemaKodet", "8", "Forespørsel om helseopplysninger",
                     nm::oid_tema_helsefaglig);
        else
            add_code(n, dia, "TemaKodet", "6", "Henvendelse om pasient", nm::oid_tema_helsefaglig);
        if (!note.title.empty()) add_text(n, dia, "Tema", note.title);
        add_text(n, dia, "TekstNotatInnhold", text);
        if (!note.event_id.empty()) add_text(n, dia, "DokIdNotat", note.event_id);
        if (is_date(note.issued_at)) add_text(n, dia, "DatoNotat", note.issued_at.substr(0, 10));
        if (note.therapist) add_dialog_hcp(n, dia, fk1, *note.therapist);
    }

    // Attachments: one further Document/RefDoc each, MsgType A, base64 content.
    for (const auto& a : atts) {
        xmlNodePtr rd = add(add(root, mh, "Document"), mh, "RefDoc");
        if (!note.issued_at.empty()) set_attr(add(rd, mh, "IssueDate"), "V", note.issued_at);
        add_code(rd, mh, "MsgType", "A", "Vedlegg");
        add_text(rd, mh, "MimeType", a.media_type);
        add_text(rd, mh, "Description", a.filename);
        xmlNodePtr c = add(rd, mh, "Content");
        xmlNodePtr b64 = xmlNewChild(c, nullptr, x("Base64Container"), nullptr);
        xmlSetNs(b64, xmlNewNs(b64, x(s(nm::base64_ns).c_str()), nullptr));
        std::string enc = base64_encode(a.bytes);
        xmlNodeAddContentLen(b64, x(enc.c_str()), static_cast<int>(enc.size()));
    }

    auto xml = dump(doc.get());
    if (!xml) return xml.error();
    return serialized_message{std::move(*xml), opt.msg_id, *type};
}

codec_result<void> validate_xml(const schema_set& schemas, std::string_view xml,
                                const parse_limits& limits) {
    auto doc = parse_xml(xml, limits);
    if (!doc) return doc.error();
    return schemas.validate(doc->get());
}

codec_result<serialized_message> serialize_note(const schema_set& schemas,
                                                const rendered_note& note,
                                                std::span<const outgoing_attachment> attachments,
                                                const serialize_options& options,
                                                const parse_limits& limits) {
    auto msg = build_note_xml(note, attachments, options);
    if (!msg) return msg.error();
    if (auto v = validate_xml(schemas, msg->xml, limits); !v) {
        codec_error e = v.error();
        e.message = "outgoing message refused: " + e.message;
        return e;
    }
    return msg;
}

}  // namespace samband::nhn
