// HL7 v2 ↔ Samband event mappings (see mapping.hpp and docs/hl7v2.md).
#include "hl7v2/codec/mapping.hpp"

#include <samband/identifiers.hpp>

#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cctype>
#include <cstdlib>
#include <map>

namespace samband::hl7v2 {

namespace {

using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr std::string_view kFnrOid = "2.16.578.1.12.4.1.4.1";
constexpr std::string_view kDnrOid = "2.16.578.1.12.4.1.4.2";
constexpr std::string_view kPhq9 = "44261-6";
constexpr std::string_view kGad7 = "70274-6";

parse_error err(hl7_error code, std::string text, std::string_view seg = {}, std::size_t seq = 0,
                std::size_t field = 0, std::size_t comp = 0) {
    return parse_error{code, std::move(text), std::string(seg), seq, field, comp};
}

// 1-based position of segment `s` in `m`.
std::size_t seq_of(const message& m, const segment* s) {
    for (std::size_t i = 0; i < m.segments.size(); ++i)
        if (&m.segments[i] == s) return i + 1;
    return 0;
}

void put(json_writer& w, const char* key, std::string_view value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

bool all_digits(std::string_view s, std::size_t min, std::size_t max) {
    if (s.size() < min || s.size() > max) return false;
    for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    return true;
}

bool base64_decode(std::string_view in, std::string& out) {
    out.clear();
    out.resize(in.size() / 4 * 3 + 3);
    EVP_ENCODE_CTX* ctx = EVP_ENCODE_CTX_new();
    if (!ctx) return false;
    EVP_DecodeInit(ctx);
    int n = 0, total = 0;
    bool ok = EVP_DecodeUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &n,
                               reinterpret_cast<const unsigned char*>(in.data()),
                               static_cast<int>(in.size())) >= 0;
    total = n;
    if (ok) {
        ok = EVP_DecodeFinal(ctx, reinterpret_cast<unsigned char*>(out.data()) + total, &n) == 1;
        total += n;
    }
    EVP_ENCODE_CTX_free(ctx);
    out.resize(ok ? static_cast<std::size_t>(total) : 0);
    return ok;
}

std::string base64_encode(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
}

std::string upper(std::string_view s) {
    std::string u;
    for (char c : s) u.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    return u;
}

std::string media_type_of(std::string_view subtype) {
    static const std::map<std::string, std::string> types = {
        {"PDF", "application/pdf"}, {"JPEG", "image/jpeg"}, {"JPG", "image/jpeg"},
        {"PNG", "image/png"},       {"TIFF", "image/tiff"}, {"XML", "application/xml"},
        {"RTF", "application/rtf"}, {"HTML", "text/html"},  {"PLAIN", "text/plain"}};
    std::string u = upper(subtype);
    if (auto it = types.find(u); it != types.end()) return it->second;
    if (subtype.find('/') != std::string_view::npos) return std::string(subtype);
    return "application/octet-stream";
}

std::string extension_of(std::string_view media_type) {
    if (media_type == "application/pdf") return ".pdf";
    if (media_type == "image/jpeg") return ".jpg";
    if (media_type == "image/png") return ".png";
    if (media_type == "image/tiff") return ".tif";
    if (media_type == "application/xml") return ".xml";
    if (media_type == "text/plain") return ".txt";
    return ".bin";
}

std::string subtype_of(std::string_view media_type) {
    if (media_type == "application/pdf") return "PDF";
    if (media_type == "image/jpeg") return "JPEG";
    if (media_type == "image/png") return "PNG";
    if (media_type == "image/tiff") return "TIFF";
    if (media_type == "application/xml") return "XML";
    if (media_type == "text/plain") return "PLAIN";
    return "OCTET-STREAM";
}

bool safe_filename(std::string_view f) {
    if (f.empty() || f.size() > 200 || f[0] == '.') return false;
    if (f.find_first_of("/\\\0", 0, 3) != std::string_view::npos) return false;
    return f.find('.') != std::string_view::npos;
}

struct patient {
    std::string fnr, dnr, family, given;
};

result<patient> read_patient(const message& m, const inbound_options& opt) {
    const segment* pid = m.find("PID");
    if (!pid)
        return err(hl7_error::required_missing, "the message has no PID segment (the patient)",
                   "PID");
    std::size_t seq = seq_of(m, pid);
    patient p;
    const field& ids = pid->at(3);
    for (std::size_t r = 1; r <= ids.reps.size(); ++r) {
        std::string type = upper(ids.get(5, 1, r));
        std::string_view oid = ids.get(4, 2, r);
        if (oid.empty()) oid = ids.get(4, 1, r);
        bool fnr = type == "FNR" || type == "NNNOR" || oid == kFnrOid;
        bool dnr = type == "DNR" || oid == kDnrOid;
        if (!fnr && !dnr) continue;
        std::string_view id = ids.get(1, 1, r);
        ident::person_id_options po;
        po.allow_synthetic = opt.allow_synthetic_ids;
        auto check = ident::check_person_id(id, po);
        if (!check)
            return err(hl7_error::data_type,
                       std::string(dnr ? "the D-number" : "the fødselsnummer") +
                           " in PID-3 is not valid: " + check.reason,
                       "PID", seq, 3, 1);
        bool is_dnr = ident::kind_of(id) == ident::person_id_kind::dnr;
        if (dnr != is_dnr && type != "NNNOR")
            return err(hl7_error::data_type,
                       std::string("PID-3 says ") + (dnr ? "DNR" : "FNR") + " but the number is " +
                           (is_dnr ? "a D-number" : "a fødselsnummer"),
                       "PID", seq, 3, 5);
        (is_dnr ? p.dnr : p.fnr) = std::string(id);
        break;
    }
    if (p.fnr.empty() && p.dnr.empty())
        return err(hl7_error::required_missing,
                   "PID-3 holds no fødselsnummer or D-number (identifier type CX.5 FNR or DNR, or "
                   "assigning authority " +
                       std::string(kFnrOid) + " / " + std::string(kDnrOid) + ")",
                   "PID", seq, 3);
    p.family = std::string(pid->get(5, 1));
    p.given = std::string(pid->get(5, 2));
    return p;
}

void write_subject(json_writer& w, const patient& p) {
    w.Key("subject");
    w.StartObject();
    if (!p.fnr.empty()) put(w, "fnr", p.fnr);
    if (!p.dnr.empty()) put(w, "dnr", p.dnr);
    if (!p.family.empty() || !p.given.empty()) {
        w.Key("name");
        w.StartObject();
        if (!p.given.empty()) put(w, "given", p.given);
        if (!p.family.empty()) put(w, "family", p.family);
        w.EndObject();
    }
    w.EndObject();
}

struct envelope_head {
    std::string type, key, occurred_at;
};

void start_envelope(json_writer& w, const envelope_head& h, const patient& p) {
    w.StartObject();
    put(w, "schema", "samband.event/1");
    put(w, "type", h.type);
    put(w, "idempotency_key", h.key);
    put(w, "occurred_at", h.occurred_at);
    write_subject(w, p);
    w.Key("data");
    w.StartObject();
}

std::string finish_envelope(json_writer& w, rapidjson::StringBuffer& sb) {
    w.EndObject();  // data
    w.EndObject();
    return std::string(sb.GetString(), sb.GetSize());
}

// Text of every OBX of a text type (TX, FT, ST) and NTE-3, one line each.
std::string collect_text(const message& m) {
    std::string out;
    for (const auto& s : m.segments) {
        std::string_view t;
        if (s.name == "OBX") {
            std::string_view vt = s.get(2);
            if (vt != "TX" && vt != "FT" && vt != "ST") continue;
            for (std::size_t r = 1; r <= s.at(5).reps.size(); ++r) {
                if (!out.empty()) out += "\n";
                out += s.get(5, 1, 1, r);
            }
            continue;
        }
        if (s.name == "NTE") t = s.get(3);
        if (t.empty()) continue;
        if (!out.empty()) out += "\n";
        out += t;
    }
    return out;
}

result<std::vector<inbound_attachment>> collect_attachments(const message& m,
                                                            const inbound_options& opt) {
    std::vector<inbound_attachment> out;
    for (std::size_t i = 0; i < m.segments.size(); ++i) {
        const segment& s = m.segments[i];
        if (s.name != "OBX" || s.get(2) != "ED") continue;
        std::string_view encoding = s.get(5, 4);
        std::string_view data = s.get(5, 5);
        if (upper(encoding) != "BASE64")
            return err(hl7_error::data_type,
                       "OBX-5.4 (the ED encoding) is not Base64; only Base64 is taken", "OBX",
                       i + 1, 5, 4);
        if (data.size() / 4 * 3 > opt.max_attachment_bytes)
            return err(hl7_error::data_type,
                       "the attachment is larger than " + std::to_string(opt.max_attachment_bytes) +
                           " bytes",
                       "OBX", i + 1, 5, 5);
        inbound_attachment a;
        if (!base64_decode(data, a.bytes))
            return err(hl7_error::data_type, "OBX-5.5 is not valid Base64", "OBX", i + 1, 5, 5);
        a.media_type = media_type_of(s.get(5, 3));
        std::string_view name = s.get(3, 2);
        a.filename = safe_filename(name) ? std::string(name)
                                         : "attachment-" + std::to_string(out.size() + 1) +
                                               extension_of(a.media_type);
        out.push_back(std::move(a));
    }
    return out;
}

std::string_view treatment_id_of(const message& m) {
    if (const segment* pv1 = m.find("PV1"); pv1 && !pv1->get(19).empty()) return pv1->get(19);
    if (const segment* orc = m.find("ORC"); orc && !orc->get(2).empty()) return orc->get(2);
    if (const segment* obr = m.find("OBR"); obr && !obr->get(2).empty()) return obr->get(2);
    return {};
}

bool supported_version(std::string_view v) {
    return v == "2.3" || v == "2.3.1" || v == "2.4" || v == "2.5" || v == "2.5.1";
}

}  // namespace

std::string iso_from_dtm(std::string_view dtm) {
    std::size_t digits = 0;
    while (digits < dtm.size() && std::isdigit(static_cast<unsigned char>(dtm[digits]))) ++digits;
    std::string_view main = dtm.substr(0, digits);
    std::string_view rest = dtm.substr(digits);
    std::string frac;
    if (!rest.empty() && rest[0] == '.') {
        std::size_t k = 1;
        while (k < rest.size() && std::isdigit(static_cast<unsigned char>(rest[k]))) ++k;
        frac = std::string(rest.substr(0, k));
        rest = rest.substr(k);
    }
    std::string zone;
    if (!rest.empty()) {
        if ((rest[0] != '+' && rest[0] != '-') || rest.size() != 5 ||
            !all_digits(rest.substr(1), 4, 4))
            return {};
        zone = std::string(rest.substr(0, 3)) + ":" + std::string(rest.substr(3, 2));
    }
    if (main.size() < 8) return {};  // a date is the least an event needs
    std::string out = std::string(main.substr(0, 4)) + "-" + std::string(main.substr(4, 2)) + "-" +
                      std::string(main.substr(6, 2));
    if (main.size() == 8) return out;
    if (main.size() != 12 && main.size() != 14) return {};
    out += "T" + std::string(main.substr(8, 2)) + ":" + std::string(main.substr(10, 2));
    if (main.size() == 14) out += ":" + std::string(main.substr(12, 2)) + frac;
    return out + zone;
}

std::string dtm_from_iso(std::string_view iso) {
    std::string out;
    std::size_t i = 0;
    for (; i < iso.size() && iso[i] != 'Z' && iso[i] != '+' && (iso[i] != '-' || i < 10); ++i) {
        char c = iso[i];
        if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') out.push_back(c);
    }
    if (out.size() < 8) return {};
    if (i < iso.size()) {
        if (iso[i] == 'Z') {
            out += "+0000";
        } else {
            std::string z;
            for (char c : iso.substr(i + 1))
                if (std::isdigit(static_cast<unsigned char>(c))) z.push_back(c);
            if (z.size() != 4) return {};
            out += iso[i] + z;
        }
    }
    return out;
}

result<std::vector<inbound_event>> map_inbound(const message& m, const inbound_options& opt) {
    const segment* msh = m.find("MSH");
    if (!msh) return err(hl7_error::required_missing, "no MSH segment", "MSH", 1);
    if (!supported_version(m.version()))
        return err(hl7_error::unsupported_version,
                   "MSH-12 (the version) is not one supported here (2.3, 2.3.1, 2.4, 2.5, 2.5.1)",
                   "MSH", 1, 12);
    if (m.control_id().empty())
        return err(hl7_error::required_missing, "MSH-10 (message control id) is empty", "MSH", 1,
                   10);
    std::string type = std::string(m.message_type()) + "^" + std::string(m.trigger_event());
    enum { ref, oru, mdm } kind;
    if (type == "REF^I12") {
        kind = ref;
    } else if (type == "ORU^R01") {
        kind = oru;
    } else if (type == "MDM^T02") {
        kind = mdm;
    } else {
        return err(
            m.message_type() == "REF" || m.message_type() == "ORU" || m.message_type() == "MDM"
                ? hl7_error::unsupported_event
                : hl7_error::unsupported_message_type,
            "MSH-9 (the message type) is not one taken here (REF^I12, ORU^R01, MDM^T02 are)", "MSH",
            1, 9);
    }
    std::string msg_time = iso_from_dtm(msh->get(7));
    if (msg_time.empty())
        return err(hl7_error::data_type, "MSH-7 is not an HL7 date/time", "MSH", 1, 7);
    auto pat = read_patient(m, opt);
    if (!pat) return pat.error();
    // The key names the sender too: two systems may both number their messages from 1.
    std::string key = "hl7v2:" + std::string(msh->get(3)) + ":" + std::string(msh->get(4)) + ":" +
                      std::string(m.control_id());
    if (key.size() > 180) key.resize(180);

    std::vector<inbound_event> out;
    auto atts = collect_attachments(m, opt);
    if (!atts) return atts.error();
    std::string text = collect_text(m);
    std::string_view treatment = treatment_id_of(m);

    if (kind == ref) {
        const segment* rf1 = m.find("RF1");
        std::size_t rf1_seq = seq_of(m, rf1);
        std::string reason;
        if (rf1) reason = std::string(!rf1->get(10, 2).empty() ? rf1->get(10, 2) : rf1->get(10));
        if (reason.empty())
            if (const segment* dg1 = m.find("DG1"))
                reason = std::string(!dg1->get(4).empty() ? dg1->get(4) : dg1->get(3, 2));
        if (reason.empty())
            return err(hl7_error::required_missing, "the referral has no reason (RF1-10 or DG1-4)",
                       "RF1", rf1_seq, 10);
        std::string referral_id =
            rf1 && !rf1->get(6).empty() ? std::string(rf1->get(6)) : std::string(m.control_id());
        std::string received = rf1 && !rf1->get(7).empty() ? iso_from_dtm(rf1->get(7)) : msg_time;
        if (received.empty())
            return err(hl7_error::data_type, "RF1-7 is not an HL7 date/time", "RF1", rf1_seq, 7);
        rapidjson::StringBuffer sb;
        json_writer w(sb);
        start_envelope(w, {"rph.referral.received", key, msg_time}, *pat);
        if (!treatment.empty()) put(w, "treatment_id", treatment);
        put(w, "referral_id", referral_id);
        put(w, "received_at", received);
        put(w, "reason", reason);
        if (!text.empty()) put(w, "text", text);
        for (const segment* prd : m.find_all("PRD")) {
            if (prd->get(1) != "RP") continue;
            std::string name = std::string(prd->get(2, 2));
            if (!prd->get(2, 1).empty())
                name += (name.empty() ? "" : " ") + std::string(prd->get(2, 1));
            std::string hpr, her;
            for (std::size_t r = 1; r <= prd->at(7).reps.size(); ++r) {
                std::string t = upper(prd->get(7, 2, 1, r));
                if (t == "HPR" && all_digits(prd->get(7, 1, 1, r), 1, 9))
                    hpr = std::string(prd->get(7, 1, 1, r));
                if (t == "HER" && all_digits(prd->get(7, 1, 1, r), 1, 9))
                    her = std::string(prd->get(7, 1, 1, r));
            }
            if (name.empty() && hpr.empty() && her.empty()) break;
            w.Key("from");
            w.StartObject();
            if (!her.empty()) put(w, "her_id", her);
            if (!name.empty()) put(w, "name", name);
            if (!hpr.empty()) put(w, "hpr", hpr);
            w.EndObject();
            break;
        }
        out.push_back({finish_envelope(w, sb), std::move(*atts)});
        return out;
    }

    if (treatment.empty())
        return err(hl7_error::required_missing,
                   "PV1-19 (visit number: the treatment id) is empty, and so are ORC-2 and OBR-2",
                   "PV1", seq_of(m, m.find("PV1")), 19);

    if (kind == oru) {
        const segment* obr = m.find("OBR");
        for (std::size_t i = 0; i < m.segments.size(); ++i) {
            const segment& s = m.segments[i];
            if (s.name != "OBX") continue;
            std::string_view code = s.get(3, 1);
            if (code != kPhq9 && code != kGad7) continue;
            std::string_view value = s.get(5);
            char* end = nullptr;
            std::string v(value);
            double score = std::strtod(v.c_str(), &end);
            if (v.empty() || end != v.c_str() + v.size())
                return err(hl7_error::data_type, "OBX-5 is not a number (the total score)", "OBX",
                           i + 1, 5);
            double max = code == kPhq9 ? 27 : 21;
            if (score < 0 || score > max)
                return err(hl7_error::data_type,
                           std::string(code == kPhq9 ? "a PHQ-9" : "a GAD-7") +
                               " total in OBX-5 must be 0–" + std::to_string(static_cast<int>(max)),
                           "OBX", i + 1, 5);
            std::string when = iso_from_dtm(s.get(14));
            if (when.empty() && obr) when = iso_from_dtm(obr->get(7));
            if (when.empty()) when = msg_time;
            rapidjson::StringBuffer sb;
            json_writer w(sb);
            std::string k = key + ":" + std::string(code) + ":" + std::string(s.get(1));
            start_envelope(w, {"rph.assessment.scored", k, when}, *pat);
            put(w, "treatment_id", treatment);
            put(w, "instrument", code == kPhq9 ? "PHQ-9" : "GAD-7");
            w.Key("score");
            if (score == static_cast<int>(score))
                w.Int(static_cast<int>(score));
            else
                w.Double(score);
            put(w, "administered_at", when);
            if (!s.get(3, 2).empty()) put(w, "note", s.get(3, 2));
            out.push_back({finish_envelope(w, sb), {}});
        }
        if (out.empty())
            return err(hl7_error::required_missing,
                       "the ORU^R01 carries no PHQ-9 (LOINC 44261-6) or GAD-7 (LOINC 70274-6) "
                       "total in OBX-3",
                       "OBX", 0, 3);
        return out;
    }

    // MDM^T02 → a journal entry (rph.session.attended with the document text as content).
    const segment* txa = m.find("TXA");
    if (!txa) return err(hl7_error::required_missing, "the MDM^T02 has no TXA segment", "TXA");
    std::string when = iso_from_dtm(txa->get(4));
    if (when.empty()) when = iso_from_dtm(txa->get(6));
    if (when.empty()) when = msg_time;
    rapidjson::StringBuffer sb;
    json_writer w(sb);
    start_envelope(w, {"rph.session.attended", key, when}, *pat);
    put(w, "treatment_id", treatment);
    put(w, "session_at", when);
    put(w, "kind", opt.session_kind);
    w.Key("attended");
    w.Bool(true);
    if (!text.empty()) put(w, "content", text);
    out.push_back({finish_envelope(w, sb), std::move(*atts)});
    return out;
}

result<message> map_outbound(std::string_view envelope_json,
                             const std::vector<outbound_attachment>& attachments,
                             std::string_view control_id, std::string_view timestamp,
                             const outbound_options& opt) {
    rapidjson::Document d;
    d.Parse(envelope_json.data(), envelope_json.size());
    if (d.HasParseError() || !d.IsObject())
        return err(hl7_error::internal, "the event envelope is not a JSON object");
    auto str = [](const rapidjson::Value& o, const char* k) -> std::string {
        if (!o.IsObject()) return {};
        auto it = o.FindMember(k);
        return it != o.MemberEnd() && it->value.IsString()
                   ? std::string(it->value.GetString(), it->value.GetStringLength())
                   : std::string();
    };
    std::string type = str(d, "type");
    static const rapidjson::Value null_value;
    const rapidjson::Value& data = d.HasMember("data") ? d["data"] : null_value;
    const rapidjson::Value& subject = d.HasMember("subject") ? d["subject"] : null_value;
    std::string fnr = str(subject, "fnr"), dnr = str(subject, "dnr");
    if (fnr.empty() && dnr.empty())
        return err(hl7_error::required_missing, "the event's subject has no fnr or dnr");
    std::string treatment = str(data, "treatment_id");
    bool score = type == "rph.assessment.scored";

    message m;
    m.chars = opt.chars;
    segment& msh = m.add("MSH");
    msh.set(3, opt.sending_application);
    if (!opt.sending_facility.empty()) msh.set(4, opt.sending_facility);
    if (!opt.receiving_application.empty()) msh.set(5, opt.receiving_application);
    if (!opt.receiving_facility.empty()) msh.set(6, opt.receiving_facility);
    msh.set(7, std::string(timestamp));
    msh.set(9, score ? "ORU" : "MDM").set(9, score ? "R01" : "T02", 2);
    if (opt.version == "2.5" || opt.version == "2.5.1")
        msh.set(9, score ? "ORU_R01" : "MDM_T02", 3);
    msh.set(10, std::string(control_id));
    msh.set(11, opt.processing_id);
    msh.set(12, opt.version);
    msh.set(18, std::string(msh18_of(opt.chars)));
    if (!score) m.add("EVN").set(1, "T02").set(2, std::string(timestamp));
    segment& pid = m.add("PID");
    pid.set(1, "1");
    pid.set(3, fnr.empty() ? dnr : fnr);
    pid.set(3, std::string(fnr.empty() ? kDnrOid : kFnrOid), 4, 2);
    pid.set(3, "ISO", 4, 3);
    pid.set(3, fnr.empty() ? "DNR" : "FNR", 5);
    if (subject.IsObject() && subject.HasMember("name")) {
        const auto& n = subject["name"];
        if (!str(n, "family").empty()) pid.set(5, str(n, "family"), 1);
        if (!str(n, "given").empty()) pid.set(5, str(n, "given"), 2);
    }
    if (!treatment.empty()) m.add("PV1").set(1, "1").set(2, "O").set(19, treatment);

    if (score) {
        std::string instrument = str(data, "instrument");
        std::string loinc = instrument == "PHQ-9"   ? std::string(kPhq9)
                            : instrument == "GAD-7" ? std::string(kGad7)
                                                    : std::string();
        if (!data.IsObject() || !data.HasMember("score") || !data["score"].IsNumber())
            return err(hl7_error::required_missing, "the event has no numeric data.score");
        double v = data["score"].GetDouble();
        std::string value = v == static_cast<long long>(v)
                                ? std::to_string(static_cast<long long>(v))
                                : std::to_string(v);
        std::string when = dtm_from_iso(str(data, "administered_at"));
        m.add("OBR")
            .set(1, "1")
            .set(2, treatment)
            .set(4, loinc.empty() ? instrument : loinc)
            .set(4, instrument, 2)
            .set(4, loinc.empty() ? "L" : "LN", 3)
            .set(7, when);
        segment& obx = m.add("OBX");
        obx.set(1, "1").set(2, "NM");
        obx.set(3, loinc.empty() ? instrument : loinc)
            .set(3, instrument + " total score", 2)
            .set(3, loinc.empty() ? "L" : "LN", 3);
        obx.set(5, value).set(11, "F").set(14, when);
        return m;
    }

    // Notes and other events: MDM^T02, TXA + the event's text fields in OBX TX.
    std::string when;
    for (const char* k : {"session_at", "received_at", "recorded_at", "administered_at"})
        if (when.empty()) when = dtm_from_iso(str(data, k));
    if (when.empty()) when = dtm_from_iso(str(d, "occurred_at"));
    segment& txa = m.add("TXA");
    txa.set(1, "1").set(2, type).set(3, "TX").set(4, when).set(12, std::string(control_id));
    txa.set(17, "AU");
    std::size_t set_id = 0;
    if (data.IsObject()) {
        for (auto it = data.MemberBegin(); it != data.MemberEnd(); ++it) {
            std::string name(it->name.GetString(), it->name.GetStringLength());
            std::string text;
            if (it->value.IsString()) {
                text.assign(it->value.GetString(), it->value.GetStringLength());
            } else {
                rapidjson::StringBuffer sb;
                json_writer w(sb);
                it->value.Accept(w);
                text.assign(sb.GetString(), sb.GetSize());
            }
            segment& obx = m.add("OBX");
            obx.set(1, std::to_string(++set_id))
                .set(2, "TX")
                .set(3, name)
                .set(3, name, 2)
                .set(3, "SAMBAND", 3)
                .set(5, text)
                .set(11, "F");
        }
    }
    for (const auto& a : attachments) {
        segment& obx = m.add("OBX");
        obx.set(1, std::to_string(++set_id))
            .set(2, "ED")
            .set(3, "attachment")
            .set(3, a.filename, 2);
        obx.set(5, "SAMBAND", 1)
            .set(5, "AP", 2)
            .set(5, subtype_of(a.media_type), 3)
            .set(5, "Base64", 4)
            .set(5, base64_encode(a.bytes), 5);
        obx.set(11, "F");
    }
    return m;
}

}  // namespace samband::hl7v2
