// Norwegian identifiers (fødselsnummer, D-number, HPR, HER-id, organisation number): one check
// shared by the host and plugins. Header-only C++20, standard library only.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace samband::ident {

// The outcome of a check; `reason` says which check failed (static text plus field values).
struct check_result {
    bool ok = true;
    std::string reason;
    explicit operator bool() const noexcept { return ok; }
};

enum class person_id_kind { fnr, dnr, unknown };

struct person_id_options {
    // Accept synthetic test numbers: month + 40 (NAV/Dolly) and month + 80 (Skatteetaten Tenor).
    // Never in production.
    bool allow_synthetic = false;
};

namespace detail {

inline bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

inline int digit(std::string_view s, std::size_t i) {
    return s[i] - '0';
}

inline check_result fail(std::string reason) {
    return {false, std::move(reason)};
}

}  // namespace detail

// Which kind an 11-digit number is by its first digit (D-number: day + 40).
inline person_id_kind kind_of(std::string_view id) {
    if (id.size() != 11 || !detail::all_digits(id)) return person_id_kind::unknown;
    return id[0] >= '4' && id[0] <= '7' ? person_id_kind::dnr : person_id_kind::fnr;
}

// Checks a fødselsnummer or D-number: 11 digits, a real day and month (D-number day + 40;
// synthetic month + 40/+80 only when allowed), and both mod-11 check digits. The first check
// digit follows the rule for numbers issued from 1 January 2032 too: the weighted sum of the
// first ten digits mod 11 may be 0, 1, 2 or 3 (before 2032 only 0 was used, so older numbers
// still pass). The second check digit is unchanged. Source: Skatteetaten, "Nytt fødselsnummer
// fra 2032" (folkeregisteret-api-dokumentasjon).
inline check_result check_person_id(std::string_view id, person_id_options opts = {}) {
    using namespace detail;
    const char* what = kind_of(id) == person_id_kind::dnr ? "D-number" : "fødselsnummer";
    if (id.size() != 11 || !all_digits(id))
        return fail(std::string(what) + ": expected 11 digits, got " + std::to_string(id.size()) +
                    (all_digits(id) ? " digits" : " characters (not all digits)"));
    int day = digit(id, 0) * 10 + digit(id, 1);
    int month = digit(id, 2) * 10 + digit(id, 3);
    bool dnr = day > 40;
    if (dnr) day -= 40;
    if (month > 80) {
        if (!opts.allow_synthetic)
            return fail(std::string(what) +
                        ": the month (digits 3-4) marks a synthetic test number (month + 80), "
                        "not allowed here");
        month -= 80;
    } else if (month > 40) {
        if (!opts.allow_synthetic)
            return fail(std::string(what) +
                        ": the month (digits 3-4) marks a synthetic test number (month + 40), "
                        "not allowed here");
        month -= 40;
    }
    if (month < 1 || month > 12)
        return fail(std::string(what) + ": the month (digits 3-4) is not 01-12");
    static constexpr std::array<int, 12> days = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (day < 1 || day > days[static_cast<std::size_t>(month - 1)])
        return fail(std::string(what) + ": the day (digits 1-2" +
                    (dnr ? std::string(", D-number day + 40") : std::string()) +
                    ") is not a day of that month");
    static constexpr std::array<int, 10> w1 = {3, 7, 6, 1, 8, 9, 4, 5, 2, 1};
    static constexpr std::array<int, 11> w2 = {5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1};
    int s1 = 0, s2 = 0;
    for (std::size_t i = 0; i < 10; ++i) s1 += digit(id, i) * w1[i];
    for (std::size_t i = 0; i < 11; ++i) s2 += digit(id, i) * w2[i];
    if (s1 % 11 > 3) return fail(std::string(what) + ": check digit k1 is wrong");
    if (s2 % 11 != 0) return fail(std::string(what) + ": check digit k2 is wrong");
    return {};
}

// Organisation number (Enhetsregisteret): 9 digits, mod-11 with weights 3 2 7 6 5 4 3 2.
inline check_result check_org_nr(std::string_view nr) {
    using namespace detail;
    if (nr.size() != 9 || !all_digits(nr)) return fail("organisation number: expected 9 digits");
    static constexpr std::array<int, 8> w = {3, 2, 7, 6, 5, 4, 3, 2};
    int s = 0;
    for (std::size_t i = 0; i < 8; ++i) s += digit(nr, i) * w[i];
    int k = 11 - s % 11;
    if (k == 11) k = 0;
    if (k == 10 || k != digit(nr, 8)) return fail("organisation number: check digit is wrong");
    return {};
}

// HPR number (Helsepersonellregisteret): 1–9 digits, not zero. HPR publishes no check digit.
inline check_result check_hpr(std::string_view nr) {
    using namespace detail;
    if (nr.empty() || nr.size() > 9 || !all_digits(nr))
        return fail("HPR number: expected 1 to 9 digits");
    if (nr.find_first_not_of('0') == std::string_view::npos)
        return fail("HPR number: must not be zero");
    return {};
}

// HER-id (Adresseregisteret): a positive integer of at most 9 digits.
inline check_result check_her_id(std::string_view id) {
    using namespace detail;
    if (id.empty() || id.size() > 9 || !all_digits(id))
        return fail("HER-id: expected 1 to 9 digits");
    if (id.find_first_not_of('0') == std::string_view::npos)
        return fail("HER-id: must not be zero");
    return {};
}

namespace detail {

inline bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The length of a UUID (8-4-4-4-12 hex digits) starting at `i` and standing alone (no hex digit
// or '-' right before or after it), or 0.
inline std::size_t uuid_at(std::string_view s, std::size_t i) {
    static constexpr std::size_t groups[] = {8, 4, 4, 4, 12};
    if (i > 0 && (is_hex(s[i - 1]) || s[i - 1] == '-')) return 0;
    std::size_t j = i;
    for (std::size_t g = 0; g < 5; ++g) {
        if (g > 0) {
            if (j >= s.size() || s[j] != '-') return 0;
            ++j;
        }
        for (std::size_t k = 0; k < groups[g]; ++k, ++j)
            if (j >= s.size() || !is_hex(s[j])) return 0;
    }
    if (j < s.size() && (is_hex(s[j]) || s[j] == '-')) return 0;
    return j - i;
}

}  // namespace detail

// Masks fødselsnumre and D-numbers for logs: every run of exactly 11 digits becomes its first 6
// and "*****"; in a longer run of digits, every 11 digits that pass the fødselsnummer/D-number
// check (synthetic ones included) are masked the same way, so a number cannot hide inside a
// longer one. UUIDs are left whole (their digit runs are not identifiers).
inline std::string mask(std::string_view text) {
    std::string out(text);
    std::size_t i = 0;
    while (i < out.size()) {
        if (std::size_t u = detail::uuid_at(text, i); u > 0) {
            i += u;
            continue;
        }
        if (out[i] < '0' || out[i] > '9') {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < out.size() && out[j] >= '0' && out[j] <= '9') ++j;
        if (j - i == 11) {
            for (std::size_t k = i + 6; k < j; ++k) out[k] = '*';
        } else if (j - i > 11) {
            person_id_options any;
            any.allow_synthetic = true;
            for (std::size_t w = i; w + 11 <= j; ++w)
                if (check_person_id(text.substr(w, 11), any))
                    for (std::size_t k = w + 6; k < w + 11; ++k) out[k] = '*';
        }
        i = j;
    }
    return out;
}

}  // namespace samband::ident
