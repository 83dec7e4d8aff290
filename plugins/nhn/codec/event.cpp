#include "nhn/codec/event.hpp"

#include "nhn/codec/names.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace samband::nhn {

namespace nm = names;

namespace {

using writer_t = rapidjson::Writer<rapidjson::StringBuffer>;

void kv(writer_t& w, const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.c_str(), static_cast<rapidjson::SizeType>(value.size()));
}

void kv_opt(writer_t& w, const char* key, const std::string& value) {
    if (!value.empty()) kv(w, key, value);
}

bool digits(const std::string& s, std::size_t max) {
    if (s.empty() || s.size() > max) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

}  // namespace

codec_result<std::string> event_type_for(const incoming_message& m, const event_context& ctx) {
    const std::string& t = m.header.msg_type;
    if (t == nm::dialog_svar) return std::string("rph.info.replied");
    bool gp = ctx.sender_is_gp.value_or(m.from_gp());
    if (t == "HENVISNING") return std::string("rph.referral.received");
    if ((t == nm::dialog_helsefaglig || t == nm::dialog_notat) && gp)
        return std::string("rph.referral.received");
    return make_error(codec_errc::unsupported_message,
                      "no event mapping for a " + t +
                          (gp ? " message" : " message from a sender not known as a GP"));
}

codec_result<std::string> to_event_json(const incoming_message& m, const event_context& ctx) {
    auto type = event_type_for(m, ctx);
    if (!type) return type.error();
    if (m.patient_id.empty())
        return make_error(codec_errc::missing_field, "the message names no patient (FNR/DNR)");
    if (m.header.msg_id.empty())
        return make_error(codec_errc::missing_field, "the message has no MsgId");
    const bool replied = *type == "rph.info.replied";
    if (replied && ctx.treatment_id.empty())
        return make_error(codec_errc::missing_field,
                          "rph.info.replied needs the treatment_id: correlate RefToParent/"
                          "RefToConversation with the request first");
    std::string body = m.text.empty() ? m.topic : m.text;
    if (body.empty()) return make_error(codec_errc::missing_field, "the message has no text");

    rapidjson::StringBuffer sb;
    writer_t w(sb);
    w.StartObject();
    kv(w, "schema", "samband.event/1");
    kv(w, "type", *type);
    kv(w, "idempotency_key", "nhn:" + m.header.msg_id);
    kv(w, "occurred_at", m.header.gen_date);
    w.Key("subject");
    w.StartObject();
    kv(w, m.patient_id_type == "DNR" ? "dnr" : "fnr", m.patient_id);
    if (!m.patient_given_name.empty() || !m.patient_family_name.empty()) {
        w.Key("name");
        w.StartObject();
        kv_opt(w, "given", m.patient_given_name);
        kv_opt(w, "family", m.patient_family_name);
        w.EndObject();
    }
    w.EndObject();

    const party& s = m.header.sender;
    w.Key("data");
    w.StartObject();
    if (replied) {
        kv(w, "treatment_id", ctx.treatment_id);
        if (m.ref_to_parent && !m.ref_to_parent->empty()) kv(w, "in_reply_to", *m.ref_to_parent);
        if (m.ref_to_conversation && !m.ref_to_conversation->empty())
            kv(w, "conversation_ref", *m.ref_to_conversation);
        kv(w, "answer", body);
        std::string gp_her = s.person_her_id.empty() ? s.unit_her_id : s.person_her_id;
        std::string office_her = s.her_id;
        if (digits(gp_her, 9) || digits(office_her, 9)) {
            w.Key("gp");
            w.StartObject();
            if (digits(gp_her, 9)) kv(w, "her_id", gp_her);
            if (digits(office_her, 9)) kv(w, "office_her_id", office_her);
            w.EndObject();
        }
    } else {
        kv_opt(w, "treatment_id", ctx.treatment_id);
        kv(w, "referral_id", m.header.msg_id);
        kv(w, "received_at", ctx.received_at.empty() ? m.header.gen_date : ctx.received_at);
        std::string from_her = s.most_specific_her_id();
        std::string from_name = !s.person_name.empty()   ? s.person_name
                                : !m.author_name.empty() ? m.author_name
                                                         : s.name;
        std::string hpr = !s.person_hpr.empty() ? s.person_hpr : m.author_hpr;
        w.Key("from");
        w.StartObject();
        if (digits(from_her, 9)) kv(w, "her_id", from_her);
        kv_opt(w, "name", from_name);
        if (digits(hpr, 9)) kv(w, "hpr", hpr);
        w.EndObject();
        std::string reason = !m.topic.empty()        ? m.topic
                             : !m.topic_text.empty() ? m.topic_text
                                                     : "Helsefaglig dialog fra fastlege";
        kv(w, "reason", reason);
        kv(w, "text", body);
    }
    w.EndObject();

    if (!m.attachments.empty()) {
        w.Key("attachments");
        w.StartArray();
        for (std::size_t i = 0; i < m.attachments.size(); ++i) {
            const auto& a = m.attachments[i];
            w.StartObject();
            kv(w, "id", "att-" + std::to_string(i + 1));
            kv(w, "filename", a.filename);
            kv_opt(w, "media_type", a.mime_type);
            w.Key("size");
            w.Uint64(a.bytes.size());
            kv(w, "sha256", a.sha256);
            w.EndObject();
        }
        w.EndArray();
    }
    w.EndObject();
    return std::string(sb.GetString(), sb.GetSize());
}

}  // namespace samband::nhn
