#include "store/audit_chain.hpp"

#include "core/ids.hpp"

namespace samband::store {

std::string audit_hash(int version, std::string_view prev, std::int64_t at_ms,
                       std::string_view actor, std::string_view action, std::string_view subject,
                       std::string_view detail) {
    std::string at = std::to_string(at_ms);
    std::string s;
    s.reserve(prev.size() + at.size() + actor.size() + action.size() + subject.size() +
              detail.size() + 48);
    if (version <= 1) {
        for (std::string_view f : {prev, std::string_view(at), actor, action, subject}) {
            s.append(f);
            s.push_back('|');
        }
        s.append(detail);
        return core::sha256_hex(s);
    }
    s.append("v2");
    for (std::string_view f : {prev, std::string_view(at), actor, action, subject, detail}) {
        s.push_back('|');
        s.append(std::to_string(f.size()));
        s.push_back(':');
        s.append(f);
    }
    return core::sha256_hex(s);
}

bool audit_chain_check::add(std::int64_t id, int version, std::int64_t at_ms,
                            std::string_view actor, std::string_view action,
                            std::string_view subject, std::string_view detail,
                            std::string_view hash) {
    if (broken_) return false;
    auto fail = [&](std::string why) {
        broken_ = id;
        problem_ = std::move(why);
        return false;
    };
    if (contiguous_ && rows_ == 0 && id != 1)
        return fail(id == 2 ? "row 1 is missing"
                            : "rows 1 to " + std::to_string(id - 1) + " are missing");
    if (contiguous_ && rows_ > 0 && id != last_id_ + 1) {
        return fail(id - last_id_ == 2 ? "row " + std::to_string(last_id_ + 1) + " is missing"
                                       : "rows " + std::to_string(last_id_ + 1) + " to " +
                                             std::to_string(id - 1) + " are missing");
    }
    if (!contiguous_ && rows_ > 0 && id <= last_id_)
        return fail("row ids out of order (" + std::to_string(id) + " after " +
                    std::to_string(last_id_) + ")");
    if (version < 1 || version > kAuditHashVersion)
        return fail("unknown hash format " + std::to_string(version));
    if (version < last_version_)
        return fail("hash format " + std::to_string(version) + " after format " +
                    std::to_string(last_version_) + " (a row was rewritten in an older format)");
    if (audit_hash(version, prev_, at_ms, actor, action, subject, detail) != hash)
        return fail(
            "its hash does not match its content and the previous row's hash (the row was "
            "changed, or rows before it were)");
    prev_ = std::string(hash);
    last_id_ = id;
    last_version_ = version;
    ++rows_;
    return true;
}

}  // namespace samband::store
