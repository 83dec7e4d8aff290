// Who may use the admin API: roles, the token file (tokens stored as SHA-256), bearer-token checks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace samband::admin {

// A token's roles, as bits. Roles do not imply each other; a token may hold several.
enum role : std::uint32_t {
    role_viewer = 1,     // counts and states, endpoint health; no patient data
    role_operator = 2,   // retry, replay, submit; delivery and error lists with identifiers masked
    role_clinician = 4,  // overrides the consent gate and reads patient data, each with a reason
    role_auditor = 8,    // reads the audit log
};
using role_set = std::uint32_t;
constexpr role_set all_roles = role_viewer | role_operator | role_clinician | role_auditor;

// "viewer,operator" → bits; nullopt names nothing valid (unknown word or empty).
std::optional<role_set> parse_roles(std::string_view text);
// "viewer,operator" (empty for none).
std::string roles_text(role_set roles);

// Lowercase hex SHA-256 of a token: what the token file stores.
std::string token_hash(std::string_view token);
// A fresh token: 32 bytes from OpenSSL's RAND_bytes, hex (64 characters).
std::string new_token();
// The token file line for a token: "name:roles:sha256hex".
std::string token_line(std::string_view name, role_set roles, std::string_view token);

struct principal {
    std::string name;
    role_set roles = 0;
};

// The token file: one "name:role[,role]:sha256-hex-of-token" line per token, '#' comments.
class token_table {
public:
    token_table() = default;
    // Throws std::runtime_error naming the file and line when it cannot be read or is malformed
    // (including the old "name:token" lines, which kept tokens in clear).
    static token_table read(const std::string& path);
    bool empty() const { return by_hash_.empty(); }
    std::size_t size() const { return by_hash_.size(); }
    bool has_name(std::string_view name) const;
    // The holder of a bearer token, or nullopt.
    std::optional<principal> find(std::string_view token) const;

private:
    std::map<std::string, principal> by_hash_;
};

}  // namespace samband::admin
