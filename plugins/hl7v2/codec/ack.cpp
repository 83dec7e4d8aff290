// HL7 v2 acknowledgements (see ack.hpp).
#include "hl7v2/codec/ack.hpp"

#include <cctype>
#include <chrono>
#include <ctime>

namespace samband::hl7v2 {

namespace {

std::string now_ts() {
    std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S+0000", &tm);
    return buf;
}

// "2.3" < "2.5": compares the first two numbers. A number is read up to 1000 (the sender's
// MSH-12 may hold any run of digits; found by the fuzzer as a signed overflow).
bool version_before_25(std::string_view v) {
    if (v.empty()) return false;
    auto number = [&](std::size_t& i) {
        int n = 0;
        for (; i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])); ++i)
            if (n < 1000) n = n * 10 + (v[i] - '0');
        return n;
    };
    std::size_t i = 0;
    int major = number(i);
    if (i < v.size() && v[i] == '.') ++i;
    int minor = number(i);
    return major == 2 && minor < 5;
}

}  // namespace

std::string_view to_string(ack_code c) {
    switch (c) {
        case ack_code::AA:
            return "AA";
        case ack_code::AE:
            return "AE";
        case ack_code::AR:
            return "AR";
        case ack_code::CA:
            return "CA";
        case ack_code::CE:
            return "CE";
        case ack_code::CR:
            return "CR";
    }
    return "AR";
}

std::optional<ack_code> ack_code_from(std::string_view s) {
    if (s == "AA") return ack_code::AA;
    if (s == "AE") return ack_code::AE;
    if (s == "AR") return ack_code::AR;
    if (s == "CA") return ack_code::CA;
    if (s == "CE") return ack_code::CE;
    if (s == "CR") return ack_code::CR;
    return std::nullopt;
}

bool enhanced_mode(const message& in) {
    const segment* msh = in.find("MSH");
    return msh && (!msh->get(15).empty() || !msh->get(16).empty());
}

ack_code ack_code_for(const message& in, outcome o) {
    bool enh = enhanced_mode(in);
    switch (o) {
        case outcome::accepted:
            return enh ? ack_code::CA : ack_code::AA;
        case outcome::error:
            return enh ? ack_code::CE : ack_code::AE;
        case outcome::rejected:
            return enh ? ack_code::CR : ack_code::AR;
    }
    return ack_code::AR;
}

bool ack_wanted(const message& in, outcome o) {
    if (!enhanced_mode(in)) return true;
    std::string_view accept = in.find("MSH")->get(15);
    if (accept.empty() || accept == "AL") return true;
    if (accept == "NE") return false;
    if (accept == "ER") return o != outcome::accepted;
    if (accept == "SU") return o == outcome::accepted;
    return true;
}

message build_ack(const message* in, ack_code code, std::string_view text, const parse_error* err,
                  const ack_options& opt) {
    message ack;
    const segment* imsh = in ? in->find("MSH") : nullptr;
    if (in) {
        ack.seps = in->seps;
        ack.chars = in->chars;
    }
    std::string_view version = imsh && !imsh->get(12).empty() ? imsh->get(12) : "2.5";
    segment& msh = ack.add("MSH");
    msh.set(3, opt.sending_application);
    if (!opt.sending_facility.empty()) msh.set(4, opt.sending_facility);
    if (imsh) {
        msh.at(5) = imsh->at(3);  // back to the sender's application and facility
        msh.at(6) = imsh->at(4);
    }
    msh.set(7, opt.timestamp.empty() ? now_ts() : opt.timestamp);
    msh.set(9, "ACK");
    if (imsh && !imsh->get(9, 2).empty()) msh.set(9, std::string(imsh->get(9, 2)), 2);
    if (!version_before_25(version)) msh.set(9, "ACK", 3);
    std::string cid = imsh ? std::string(imsh->get(10)) : std::string();
    // Deterministic, so a resent message gets the same ACK: "A" + the acknowledged MSH-10.
    std::string ack_id = "A" + cid;
    if (ack_id.size() > 20 && version_before_25(version)) ack_id.resize(20);
    msh.set(10, ack_id);
    msh.set(11, imsh && !imsh->get(11).empty() ? std::string(imsh->get(11)) : std::string("P"));
    msh.set(12, std::string(version));
    if (imsh && !imsh->get(18).empty()) msh.at(18) = imsh->at(18);

    segment& msa = ack.add("MSA");
    msa.set(1, std::string(to_string(code)));
    msa.set(2, cid);
    if (!text.empty()) {
        std::string t(text.substr(0, 80));
        msa.set(3, t);
    }
    if (err) {
        segment& e = ack.add("ERR");
        std::string code_num = std::to_string(static_cast<int>(err->code));
        if (version_before_25(version)) {
            // ERR-1 (ELD): segment ^ sequence ^ field ^ code & text & HL70357
            e.set(1, err->segment);
            if (err->segment_seq) e.set(1, std::to_string(err->segment_seq), 2);
            if (err->field) e.set(1, std::to_string(err->field), 3);
            e.set(1, code_num, 4, 1);
            e.set(1, err->text, 4, 2);
            e.set(1, "HL70357", 4, 3);
        } else {
            // ERR-2 (ERL): segment ^ sequence ^ field ^ repetition ^ component
            if (!err->segment.empty()) {
                e.set(2, err->segment);
                if (err->segment_seq) e.set(2, std::to_string(err->segment_seq), 2);
                if (err->field) e.set(2, std::to_string(err->field), 3);
                if (err->field) e.set(2, "1", 4);
                if (err->component) e.set(2, std::to_string(err->component), 5);
            }
            e.set(3, code_num);
            e.set(3, err->text.substr(0, 199), 2);
            e.set(3, "HL70357", 3);
            e.set(4, "E");
            e.set(8, err->describe());
        }
    }
    return ack;
}

result<ack_info> read_ack(const message& ack) {
    const segment* msa = ack.find("MSA");
    if (!msa)
        return parse_error{
            hl7_error::required_missing, "the acknowledgement has no MSA segment", "MSA", 0, 0, 0};
    auto code = ack_code_from(msa->get(1));
    if (!code)
        return parse_error{hl7_error::table_value,
                           "MSA-1 is not an acknowledgement code (AA, AE, AR, CA, CE, CR)",
                           "MSA",
                           0,
                           1,
                           0};
    ack_info info{*code, std::string(msa->get(2)), std::string(msa->get(3))};
    for (const segment* e : ack.find_all("ERR")) {
        std::string_view t = e->get(8);
        if (t.empty()) t = e->get(3, 2);
        if (t.empty()) t = e->get(1, 4, 2);
        if (t.empty()) continue;
        if (!info.text.empty()) info.text += "; ";
        info.text += t;
    }
    return info;
}

}  // namespace samband::hl7v2
