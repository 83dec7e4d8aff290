// The audit log's hash chain: how each row's hash is made, and a checker that walks the rows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace samband::store {

// The chain formats. 1 (rows written before schema 4): sha256 of the fields joined by '|', which
// lets text move across a '|' between fields unnoticed. 2: every field length-prefixed
// ("<bytes>:<text>"), so no two different rows hash alike. New rows are written in 2.
inline constexpr int kAuditHashVersion = 2;

// sha256 (lowercase hex) of one audit row chained to the previous row's hash ("" for the first).
std::string audit_hash(int version, std::string_view prev, std::int64_t at_ms,
                       std::string_view actor, std::string_view action, std::string_view subject,
                       std::string_view detail);

// Walks audit rows in id order and names the first broken link. Feed every row from the first.
class audit_chain_check {
public:
    // contiguous_ids: ids are 1, 2, 3 … with no gap (SQLite), so a gap names the missing rows;
    // false where a sequence may skip ids (PostgreSQL): the hashes alone find a removed row.
    explicit audit_chain_check(bool contiguous_ids = true) : contiguous_(contiguous_ids) {}
    // False, with problem() set, at the first row that breaks the chain; later rows are ignored.
    bool add(std::int64_t id, int version, std::int64_t at_ms, std::string_view actor,
             std::string_view action, std::string_view subject, std::string_view detail,
             std::string_view hash);
    bool intact() const { return !broken_; }
    std::optional<std::int64_t> broken_at() const { return broken_; }
    const std::string& problem() const { return problem_; }
    std::int64_t rows() const { return rows_; }
    std::int64_t last_id() const { return last_id_; }
    const std::string& last_hash() const { return prev_; }

private:
    bool contiguous_ = true;
    std::string prev_;
    std::int64_t last_id_ = 0;
    std::int64_t rows_ = 0;
    int last_version_ = 0;
    std::optional<std::int64_t> broken_;
    std::string problem_;
};

}  // namespace samband::store
