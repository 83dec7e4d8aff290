#include "nhn/codec/parser.hpp"

#include "nhn/codec/crypto.hpp"
#include "nhn/codec/names.hpp"
#include "nhn/codec/xml_nav.hpp"

#include <vector>

namespace samband::nhn {

using namespace detail;
namespace nm = names;

namespace {

std::string ns_of(const xmlNode* n) {
    return n->ns != nullptr ? reinterpret_cast<const char*>(n->ns->href) : "";
}

codec_result<const xmlNode*> check_root(xmlDoc* doc, std::string_view local,
                                        std::initializer_list<std::string_view> namespaces) {
    const xmlNode* root = xmlDocGetRootElement(doc);
    std::string name = reinterpret_cast<const char*>(root->name);
    std::string ns = ns_of(root);
    std::string expected;
    for (auto e : namespaces) {
        if (name == local && ns == e) return root;
        expected += (expected.empty() ? "" : " or ") + std::string(e);
    }
    if (name != local)
        return make_error(codec_errc::wrong_root,
                          "root element is '" + name + "', expected '" + std::string(local) + "'",
                          static_cast<int>(xmlGetLineNo(root)));
    return make_error(
        codec_errc::wrong_root,
        "root element " + name + " is in namespace '" + ns + "', expected " + expected,
        static_cast<int>(xmlGetLineNo(root)));
}

// Ident children: (Id, TypeId V) pairs in namespace `ns` (Ident itself in `ident_ns`).
template <class F>
void for_idents(const xmlNode* parent, std::string_view ident_ns, std::string_view ns, F&& f) {
    for (auto* i = child(parent, "Ident", ident_ns); i; i = next_sibling(i, "Ident", ident_ns))
        f(child_text(i, "Id", ns), attr(child(i, "TypeId", ns), "V"));
}

void read_hcp(const xmlNode* hp, std::string_view ns, std::string_view ident_ns, std::string& name,
              std::string& her, std::string& hpr, bool& is_gp) {
    if (hp == nullptr) return;
    std::string given = child_text(hp, "GivenName", ns), family = child_text(hp, "FamilyName", ns);
    name = given.empty() ? family : family.empty() ? given : given + " " + family;
    for_idents(hp, ns, ident_ns, [&](std::string id, std::string type) {
        if (type == "HER" && her.empty()) her = id;
        if (type == "HPR" && hpr.empty()) hpr = id;
    });
    const xmlNode* role = child(hp, "RoleToPatient", ns);
    if (role != nullptr && attr(role, "V") == "6") is_gp = true;
}

party read_party(const xmlNode* holder) {
    party p;
    const std::string_view mh = nm::msghead_ns;
    const xmlNode* org = child(holder, "Organisation", mh);
    if (org == nullptr) return p;
    p.name = child_text(org, "OrganisationName", mh);
    for_idents(org, mh, mh, [&](std::string id, std::string type) {
        if (type == "HER" && p.her_id.empty()) p.her_id = id;
        if (type == "ENH" && p.org_nr.empty()) p.org_nr = id;
    });
    const xmlNode* unit = child(org, "Organisation", mh);
    if (unit != nullptr) {
        p.unit_name = child_text(unit, "OrganisationName", mh);
        for_idents(unit, mh, mh, [&](std::string id, std::string type) {
            if (type == "HER" && p.unit_her_id.empty()) p.unit_her_id = id;
        });
    }
    const xmlNode* hp = child(org, "HealthcareProfessional", mh);
    if (hp == nullptr && unit != nullptr) hp = child(unit, "HealthcareProfessional", mh);
    read_hcp(hp, mh, mh, p.person_name, p.person_her_id, p.person_hpr, p.person_is_gp);
    return p;
}

message_header read_header(const xmlNode* root) {
    const std::string_view mh = nm::msghead_ns;
    message_header h;
    const xmlNode* info = child(root, "MsgInfo", mh);
    if (info == nullptr) return h;
    const xmlNode* type = child(info, "Type", mh);
    h.msg_type = attr(type, "V");
    h.msg_type_dn = attr(type, "DN");
    h.gen_date = child_text(info, "GenDate", mh);
    h.msg_id = child_text(info, "MsgId", mh);
    h.sender = read_party(child(info, "Sender", mh));
    h.receiver = read_party(child(info, "Receiver", mh));
    return h;
}

const xmlNode* first_element(const xmlNode* parent) {
    for (const xmlNode* c = parent != nullptr ? parent->children : nullptr; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE) return c;
    return nullptr;
}

codec_result<void> read_body(const xmlNode* dm, incoming_message& m) {
    const std::string ns = ns_of(dm);
    m.dialog_version = ns == nm::dialog_11_ns ? "1.1" : "1.0";
    const std::string_view fk1 = nm::fk1_ns;
    auto read_roles = [&](const xmlNode* parent) {
        for (auto* r = child(parent, "RollerRelatertNotat", ns); r;
             r = next_sibling(r, "RollerRelatertNotat", ns)) {
            const xmlNode* hp = child(r, "HealthcareProfessional", ns);
            if (hp == nullptr) continue;
            std::string her;
            bool gp = false;
            if (m.author_name.empty()) read_hcp(hp, ns, fk1, m.author_name, her, m.author_hpr, gp);
            const xmlNode* role = child(r, "RoleToPatient", ns);
            if (gp || (role != nullptr && attr(role, "V") == "6")) m.author_is_gp = true;
        }
    };
    if (const xmlNode* notat = child(dm, "Notat", ns)) {
        m.body_kind = "Notat";
        const xmlNode* tk = child(notat, "TemaKodet", ns);
        m.topic_code = attr(tk, "V");
        m.topic_code_system = attr(tk, "S");
        m.topic_text = attr(tk, "DN");
        m.topic = child_text(notat, "Tema", ns);
        m.text = trimmed(text(child(notat, "TekstNotatInnhold", ns)));
        m.note_date = child_text(notat, "DatoNotat", ns);
        read_roles(notat);
        return {};
    }
    if (const xmlNode* f = child(dm, "Foresporsel", ns)) {
        m.body_kind = "Foresporsel";
        const xmlNode* tf = child(f, "TypeForesp", ns);
        m.topic_code = attr(tf, "V");
        m.topic_code_system = attr(tf, "S");
        m.topic_text = attr(tf, "DN");
        m.topic = child_text(f, "EmneSporsmal", ns);
        m.text = trimmed(text(child(f, "Sporsmal", ns)));
        read_roles(f);
        return {};
    }
    return make_error(codec_errc::unsupported_message,
                      "Dialogmelding has neither Notat nor Foresporsel",
                      static_cast<int>(xmlGetLineNo(dm)));
}

}  // namespace

const std::string& party::most_specific_her_id() const {
    if (!person_her_id.empty()) return person_her_id;
    if (!unit_her_id.empty()) return unit_her_id;
    return her_id;
}

codec_result<message_header> peek_header(std::string_view xml, const parse_limits& limits) {
    auto doc = parse_xml(xml, limits);
    if (!doc) return doc.error();
    auto root = check_root(doc->get(), "MsgHead", {nm::msghead_ns});
    if (!root) return root.error();
    return read_header(*root);
}

codec_result<message_header> peek_header_any_namespace(std::string_view xml,
                                                       std::string& foreign_namespace,
                                                       const parse_limits& limits) {
    foreign_namespace.clear();
    auto doc = parse_xml(xml, limits);
    if (!doc) return doc.error();
    xmlNode* root = xmlDocGetRootElement(doc->get());
    auto checked = check_root(doc->get(), "MsgHead", {nm::msghead_ns});
    if (checked) return read_header(*checked);
    if (std::string(reinterpret_cast<const char*>(root->name)) != "MsgHead") return checked.error();
    // Move every element of the root's namespace into the MsgHead 1.2 namespace, then read the
    // header as usual. Only the header is read; the message is refused in any case.
    foreign_namespace = ns_of(root);
    const xmlChar* foreign = root->ns != nullptr ? root->ns->href : nullptr;
    xmlNsPtr mh = xmlNewNs(root, reinterpret_cast<const xmlChar*>(nm::msghead_ns.data()),
                           reinterpret_cast<const xmlChar*>("samband-mh"));
    if (mh == nullptr) return checked.error();
    std::vector<xmlNode*> todo{root};
    while (!todo.empty()) {
        xmlNode* n = todo.back();
        todo.pop_back();
        if (n->type != XML_ELEMENT_NODE) continue;
        bool same = foreign == nullptr ? n->ns == nullptr
                                       : n->ns != nullptr && xmlStrEqual(n->ns->href, foreign);
        if (same) n->ns = mh;
        for (xmlNode* c = n->children; c != nullptr; c = c->next) todo.push_back(c);
    }
    return read_header(root);
}

codec_result<incoming_message> parse_message(const schema_set& schemas, std::string_view xml,
                                             const parse_limits& limits) {
    auto doc = parse_xml(xml, limits);
    if (!doc) return doc.error();
    auto root = check_root(doc->get(), "MsgHead", {nm::msghead_ns});
    if (!root) return root.error();
    if (auto v = schemas.validate(doc->get()); !v) return v.error();

    const std::string_view mh = nm::msghead_ns;
    incoming_message m;
    m.header = read_header(*root);
    const xmlNode* info = child(*root, "MsgInfo", mh);
    m.ack_requested = attr(child(info, "Ack", mh), "V") == "J";
    if (const xmlNode* cr = child(info, "ConversationRef", mh)) {
        m.ref_to_parent = child_text(cr, "RefToParent", mh);
        m.ref_to_conversation = child_text(cr, "RefToConversation", mh);
    }
    if (const xmlNode* pat = child(info, "Patient", mh)) {
        m.patient_given_name = child_text(pat, "GivenName", mh);
        m.patient_family_name = child_text(pat, "FamilyName", mh);
        for_idents(pat, mh, mh, [&](std::string id, std::string type) {
            if ((type == "FNR" || type == "DNR") && m.patient_id.empty()) {
                m.patient_id = id;
                m.patient_id_type = type;
            }
        });
    }

    bool have_body = false;
    int n_att = 0;
    for (auto* d = child(*root, "Document", mh); d; d = next_sibling(d, "Document", mh)) {
        const xmlNode* rd = child(d, "RefDoc", mh);
        std::string type = attr(child(rd, "MsgType", mh), "V");
        const xmlNode* content = child(rd, "Content", mh);
        const int line = static_cast<int>(xmlGetLineNo(rd));
        if (type == "XML" && !have_body) {
            const xmlNode* body = first_element(content);
            if (body == nullptr || !(is_element(body, "Dialogmelding", nm::dialog_11_ns) ||
                                     is_element(body, "Dialogmelding", nm::dialog_10_ns)))
                return make_error(
                    codec_errc::unsupported_message,
                    "message body is " +
                        (body ? "{" + ns_of(body) + "}" + reinterpret_cast<const char*>(body->name)
                              : std::string("empty")) +
                        "; only Dialogmelding 1.0 and 1.1 are supported",
                    line);
            if (auto r = read_body(body, m); !r) return r.error();
            have_body = true;
        } else if (type == "A") {
            ++n_att;
            incoming_attachment a;
            a.mime_type = child_text(rd, "MimeType", mh);
            a.filename = child_text(rd, "Description", mh);
            if (a.filename.empty()) a.filename = child_text(rd, "Id", mh);
            if (a.filename.empty()) a.filename = "vedlegg-" + std::to_string(n_att);
            const xmlNode* b64 = child(content, "Base64Container", nm::base64_ns);
            if (b64 == nullptr)
                return make_error(codec_errc::unsupported_message,
                                  "attachment " + std::to_string(n_att) +
                                      " has no Base64Container (FileReference is not supported)",
                                  line);
            auto bytes = base64_decode(text(b64), limits.max_bytes);
            if (!bytes) {
                codec_error e = bytes.error();
                e.message =
                    "attachment " + std::to_string(n_att) + " (" + a.filename + "): " + e.message;
                e.line = static_cast<int>(xmlGetLineNo(b64));
                return e;
            }
            a.bytes = std::move(*bytes);
            a.sha256 = sha256_hex(a.bytes);
            m.attachments.push_back(std::move(a));
        }
    }
    if (!have_body)
        return make_error(codec_errc::unsupported_message,
                          "no Document/RefDoc with MsgType XML (the message body)");
    return m;
}

}  // namespace samband::nhn
