#include "nhn/codec/apprec.hpp"

#include "nhn/codec/crypto.hpp"
#include "nhn/codec/names.hpp"
#include "nhn/codec/serializer.hpp"
#include "nhn/codec/xml_writer.hpp"

namespace samband::nhn {

using namespace detail;
namespace nm = names;

namespace {

apprec_party read_party(const xmlNode* holder, const std::string& ns) {
    apprec_party p;
    const xmlNode* inst = child(child(holder, "HCP", ns), "Inst", ns);
    if (inst == nullptr) return p;
    p.name = child_text(inst, "Name", ns);
    p.id = child_text(inst, "Id", ns);
    p.id_type = attr(child(inst, "TypeId", ns), "V");
    if (p.id_type == "HER") p.her_id = p.id;
    if (const xmlNode* dept = child(inst, "Dept", ns)) {
        p.dept_name = child_text(dept, "Name", ns);
        if (attr(child(dept, "TypeId", ns), "V") == "HER")
            p.dept_her_id = child_text(dept, "Id", ns);
    }
    if (const xmlNode* person = child(inst, "HCPerson", ns)) {
        p.person_name = child_text(person, "Name", ns);
        if (attr(child(person, "TypeId", ns), "V") == "HER")
            p.person_her_id = child_text(person, "Id", ns);
    }
    return p;
}

void write_party(xmlNodePtr parent, xmlNsPtr ns, const char* name, const apprec_party& p,
                 std::string_view role_v, std::string_view role_dn) {
    xmlNodePtr holder = add(parent, ns, name);
    if (!role_v.empty()) add_code(holder, ns, "Role", role_v, role_dn);
    xmlNodePtr inst = add(add(holder, ns, "HCP"), ns, "Inst");
    if (!p.name.empty()) add_text(inst, ns, "Name", p.name);
    add_text(inst, ns, "Id", p.her_id);
    add_code(inst, ns, "TypeId", "HER", "HER-id");
    if (!p.dept_her_id.empty()) {
        xmlNodePtr dept = add(inst, ns, "Dept");
        if (!p.dept_name.empty()) add_text(dept, ns, "Name", p.dept_name);
        add_text(dept, ns, "Id", p.dept_her_id);
        add_code(dept, ns, "TypeId", "HER", "HER-id");
    }
    if (!p.person_her_id.empty()) {
        xmlNodePtr person = add(inst, ns, "HCPerson");
        if (!p.person_name.empty()) add_text(person, ns, "Name", p.person_name);
        add_text(person, ns, "Id", p.person_her_id);
        add_code(person, ns, "TypeId", "HER", "HER-id");
    }
}

}  // namespace

std::string_view status_text(apprec_status s) noexcept {
    switch (s) {
        case apprec_status::ok:
            return "OK";
        case apprec_status::rejected:
            return "Avvist";
        case apprec_status::ok_with_errors:
            return "OK, feil i delmelding";
    }
    return "";
}

codec_result<receipt> parse_apprec(const schema_set& schemas, std::string_view xml,
                                   const parse_limits& limits) {
    auto doc = parse_xml(xml, limits);
    if (!doc) return doc.error();
    const xmlNode* root = xmlDocGetRootElement(doc->get());
    std::string ns = root->ns != nullptr ? reinterpret_cast<const char*>(root->ns->href) : "";
    std::string name = reinterpret_cast<const char*>(root->name);
    if (name != "AppRec")
        return make_error(codec_errc::wrong_root,
                          "root element is '" + name + "', expected 'AppRec'",
                          static_cast<int>(xmlGetLineNo(root)));
    if (ns != nm::apprec_10_ns && ns != nm::apprec_11_ns)
        return make_error(codec_errc::wrong_root,
                          "AppRec is in namespace '" + ns + "', expected " +
                              std::string(nm::apprec_10_ns) + " or " +
                              std::string(nm::apprec_11_ns),
                          static_cast<int>(xmlGetLineNo(root)));
    if (auto v = schemas.validate(doc->get()); !v) return v.error();

    receipt r;
    r.version = ns == nm::apprec_11_ns ? "1.1" : "1.0";
    r.id = child_text(root, "Id", ns);
    r.gen_date = child_text(root, "GenDate", ns);
    r.sender = read_party(child(root, "Sender", ns), ns);
    r.receiver = read_party(child(root, "Receiver", ns), ns);
    const xmlNode* st = child(root, "Status", ns);
    std::string v = attr(st, "V");
    r.status_dn = attr(st, "DN");
    if (v == "1")
        r.status = apprec_status::ok;
    else if (v == "2")
        r.status = apprec_status::rejected;
    else if (v == "3")
        r.status = apprec_status::ok_with_errors;
    else
        return make_error(codec_errc::unsupported_message,
                          "Apprec Status V is not 1 (OK), 2 (Avvist) or 3 (OK, feil i delmelding)",
                          static_cast<int>(xmlGetLineNo(st)));
    for (auto* e = child(root, "Error", ns); e; e = next_sibling(e, "Error", ns))
        r.errors.push_back({attr(e, "V"), attr(e, "DN"), attr(e, "S"), attr(e, "OT")});
    const xmlNode* orig = child(root, "OriginalMsgId", ns);
    r.original_msg_id = child_text(orig, "Id", ns);
    r.original_msg_type = attr(child(orig, "MsgType", ns), "V");
    r.original_issue_date = child_text(orig, "IssueDate", ns);
    return r;
}

apprec_error make_apprec_error(const apprec_codes::code& c, std::string detail) {
    return {std::string(c.v), std::string(c.dn), std::string(apprec_codes::system),
            std::move(detail)};
}

apprec_error apprec_error_for(const codec_error& e) {
    namespace ac = apprec_codes;
    std::string detail = e.what();
    if (detail.size() > 500) detail.resize(500);
    switch (e.code) {
        case codec_errc::not_well_formed:
        case codec_errc::dtd_forbidden:
        case codec_errc::too_deep:
        case codec_errc::attribute_too_large:
        case codec_errc::unsupported_encoding:
        case codec_errc::too_large:
            return make_apprec_error(ac::ikke_xml, detail);
        case codec_errc::schema_invalid:
            return make_apprec_error(ac::validerer_ikke, detail);
        case codec_errc::wrong_root:
        case codec_errc::unsupported_message:
            return make_apprec_error(ac::format_ikke_stottet, detail);
        case codec_errc::bad_base64:
            return make_apprec_error(ac::annen_formatfeil, detail);
        default:
            return make_apprec_error(ac::annen_feil, detail);
    }
}

apprec_request apprec_for(const message_header& h, apprec_status status,
                          std::vector<apprec_error> errors) {
    apprec_request r;
    auto party_of = [](const party& p) {
        apprec_party a;
        a.name = p.name;
        a.her_id = p.her_id;
        a.id = p.her_id;
        a.id_type = "HER";
        a.dept_name = p.unit_name;
        a.dept_her_id = p.unit_her_id;
        a.person_name = p.person_name;
        a.person_her_id = p.person_her_id;
        return a;
    };
    r.sender = party_of(h.receiver);
    r.receiver = party_of(h.sender);
    r.status = status;
    r.errors = std::move(errors);
    r.original_msg_id = h.msg_id;
    r.original_msg_type = h.msg_type;
    r.original_msg_type_dn = h.msg_type_dn;
    r.original_issue_date = h.gen_date;
    return r;
}

codec_result<std::string> build_apprec(const schema_set& schemas, const apprec_request& req,
                                       const parse_limits& limits) {
    if (req.original_msg_id.empty())
        return make_error(codec_errc::missing_field, "original_msg_id is required");
    if (req.original_msg_type.empty())
        return make_error(codec_errc::missing_field, "original_msg_type is required");
    if (req.sender.her_id.empty() || req.receiver.her_id.empty())
        return make_error(codec_errc::missing_field, "sender and receiver HER-ids are required");
    if (req.status == apprec_status::ok && !req.errors.empty())
        return make_error(codec_errc::invalid_input, "an OK Apprec carries no errors");
    if (req.status != apprec_status::ok && req.errors.empty())
        return make_error(codec_errc::invalid_input,
                          "an Apprec with status Avvist or feil i delmelding needs an 8221 error");

    const std::string gen_date = req.gen_date.empty() ? utc_now() : req.gen_date;
    xml_doc_ptr doc(xmlNewDoc(x("1.0")));
    if (!doc) return make_error(codec_errc::internal, "libxml2: cannot create a document");
    xmlNodePtr root = xmlNewDocNode(doc.get(), nullptr, x("AppRec"), nullptr);
    xmlDocSetRootElement(doc.get(), root);
    xmlNsPtr ns = xmlNewNs(root, x(std::string(nm::apprec_11_ns).c_str()), nullptr);
    xmlSetNs(root, ns);
    add_code(root, ns, "MsgType", nm::apprec, "Applikasjonskvittering");
    add_text(root, ns, "MIGversion", nm::apprec_11_mig);
    add_text(root, ns, "GenDate", gen_date);
    add_text(root, ns, "Id",
             req.id.empty() ? derive_uuid("apprec:" + req.original_msg_id) : req.id);
    write_party(root, ns, "Sender", req.sender, "PRIM", "Primærmottaker");
    write_party(root, ns, "Receiver", req.receiver, "AVS", "Avsender");
    add_code(root, ns, "Status", std::to_string(static_cast<int>(req.status)),
             status_text(req.status));
    for (const auto& e : req.errors) {
        xmlNodePtr n = add_code(root, ns, "Error", e.code, e.text,
                                e.code_system.empty() ? apprec_codes::system : e.code_system);
        if (!e.detail.empty()) set_attr(n, "OT", e.detail);
    }
    xmlNodePtr orig = add(root, ns, "OriginalMsgId");
    add_code(orig, ns, "MsgType", req.original_msg_type, req.original_msg_type_dn);
    add_text(orig, ns, "IssueDate",
             req.original_issue_date.empty() ? gen_date : req.original_issue_date);
    add_text(orig, ns, "Id", req.original_msg_id);

    auto xml = dump(doc.get());
    if (!xml) return xml.error();
    if (auto v = validate_xml(schemas, *xml, limits); !v) {
        codec_error e = v.error();
        e.message = "Apprec refused: " + e.message;
        return e;
    }
    return xml;
}

}  // namespace samband::nhn
