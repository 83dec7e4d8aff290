#include "admin/auth.hpp"

#include "core/ids.hpp"

#include <openssl/rand.h>

#include <fstream>
#include <stdexcept>

namespace samband::admin {

namespace {

constexpr std::pair<std::string_view, role> kRoles[] = {{"viewer", role_viewer},
                                                        {"operator", role_operator},
                                                        {"clinician", role_clinician},
                                                        {"auditor", role_auditor}};

bool is_hex64(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace

std::optional<role_set> parse_roles(std::string_view text) {
    role_set out = 0;
    while (!text.empty()) {
        auto comma = text.find(',');
        std::string_view word = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        bool known = false;
        for (auto [name, bit] : kRoles)
            if (word == name) {
                out |= bit;
                known = true;
            }
        if (!known) return std::nullopt;
    }
    if (out == 0) return std::nullopt;
    return out;
}

std::string roles_text(role_set roles) {
    std::string s;
    for (auto [name, bit] : kRoles)
        if (roles & bit) {
            if (!s.empty()) s += ',';
            s += name;
        }
    return s;
}

std::string token_hash(std::string_view token) {
    return core::sha256_hex(token);
}

std::string new_token() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        throw std::runtime_error("cannot make a token: OpenSSL's random generator failed");
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char b : bytes) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

std::string token_line(std::string_view name, role_set roles, std::string_view token) {
    return std::string(name) + ":" + roles_text(roles) + ":" + token_hash(token);
}

token_table token_table::read(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("admin: cannot read token file " + path);
    token_table t;
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        std::string where = "admin: token file " + path + " line " + std::to_string(n) + ": ";
        auto c1 = line.find(':');
        auto c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
        if (c1 == 0 || c2 == std::string::npos)
            throw std::runtime_error(where +
                                     "expected name:role[,role]:sha256-of-token (tokens are "
                                     "stored hashed; add one with `samband token add`)");
        std::string name = line.substr(0, c1);
        auto roles = parse_roles(std::string_view(line).substr(c1 + 1, c2 - c1 - 1));
        if (!roles)
            throw std::runtime_error(where + "roles of " + name +
                                     " must be a comma list of viewer, operator, clinician, "
                                     "auditor");
        std::string hash = line.substr(c2 + 1);
        if (!is_hex64(hash))
            throw std::runtime_error(where + "the token of " + name +
                                     " must be stored as 64 lowercase hex digits of its "
                                     "SHA-256 (use `samband token add`)");
        t.by_hash_[hash] = principal{name, *roles};
    }
    return t;
}

bool token_table::has_name(std::string_view name) const {
    for (const auto& [hash, who] : by_hash_)
        if (who.name == name) return true;
    return false;
}

std::optional<principal> token_table::find(std::string_view token) const {
    if (token.empty()) return std::nullopt;
    auto it = by_hash_.find(token_hash(token));
    if (it == by_hash_.end()) return std::nullopt;
    return it->second;
}

}  // namespace samband::admin
