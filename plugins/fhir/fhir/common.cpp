#include "fhir/common.hpp"

#include <openssl/evp.h>

#include <cctype>
#include <stdexcept>

namespace samband::fhir {

void throw_exception_from_error(mapping_error const& e, boost::source_location const&) {
    throw std::runtime_error(e.text());
}

std::string derived_uuid(std::string_view seed) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(seed.data(), seed.size(), md, &len, EVP_sha256(), nullptr);
    md[6] = static_cast<unsigned char>((md[6] & 0x0f) | 0x80);  // version 8
    md[8] = static_cast<unsigned char>((md[8] & 0x3f) | 0x80);  // RFC 9562 variant
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

std::string canonical_instrument(std::string_view in) {
    std::string k;
    for (char c : in)
        if (std::isalnum(static_cast<unsigned char>(c)))
            k.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (k == "phq9") return "PHQ-9";
    if (k == "gad7") return "GAD-7";
    return std::string(in);
}

std::string_view score_band(std::string_view instrument, double s) {
    const std::string i = canonical_instrument(instrument);
    if (s < 0) return {};
    if (i == "PHQ-9") {
        if (s > 27) return {};
        return s <= 4    ? "minimal"
               : s <= 9  ? "mild"
               : s <= 14 ? "moderat"
               : s <= 19 ? "moderat til alvorlig"
                         : "alvorlig";
    }
    if (i == "GAD-7") {
        if (s > 21) return {};
        return s <= 4 ? "minimal" : s <= 9 ? "mild" : s <= 14 ? "moderat" : "alvorlig";
    }
    return {};
}

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n) {
    if (pos + n > s.size()) return false;
    for (std::size_t i = pos; i < pos + n; ++i)
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    return true;
}

bool is_date(std::string_view s) {
    return s.size() == 10 && digits(s, 0, 4) && s[4] == '-' && digits(s, 5, 2) && s[7] == '-' &&
           digits(s, 8, 2);
}

// The zone at `pos` ("Z" or "+hh:mm") and nothing after it.
bool is_zone(std::string_view s, std::size_t pos) {
    if (pos == s.size() - 1 && s[pos] == 'Z') return true;
    return pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') && digits(s, pos + 1, 2) &&
           s[pos + 3] == ':' && digits(s, pos + 4, 2);
}

}  // namespace

std::string fhir_date_time(std::string_view s) {
    if (s.size() == 4 && digits(s, 0, 4)) return std::string(s);
    if (s.size() < 10 || !is_date(s.substr(0, 10))) return {};
    if (s.size() == 10) return std::string(s);
    if (s[10] != 'T' || !digits(s, 11, 2) || s.size() < 16 || s[13] != ':' || !digits(s, 14, 2))
        return {};
    std::string out(s.substr(0, 16));
    std::size_t pos = 16;
    if (pos < s.size() && s[pos] == ':') {
        if (!digits(s, 17, 2)) return {};
        out += s.substr(16, 3);
        pos = 19;
        if (pos < s.size() && s[pos] == '.') {
            std::size_t e = pos + 1;
            while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
            if (e == pos + 1) return {};
            out += s.substr(pos, e - pos);
            pos = e;
        }
    } else {
        out += ":00";
    }
    if (pos == s.size()) return std::string(s.substr(0, 10));  // no zone: the date only
    if (!is_zone(s, pos)) return {};
    out += s.substr(pos);
    return out;
}

std::string fhir_instant(std::string_view s) {
    std::string dt = fhir_date_time(s);
    return dt.size() > 10 ? dt : std::string();
}

}  // namespace samband::fhir
