// `samband audit verify|export`: checks the audit log's hash chain and exports rows, read-only.
#pragma once

#include <ostream>
#include <string>

namespace samband::core {

struct audit_options {
    std::string config_path;  // the daemon's config: its store is read
    std::string store_path;   // or the SQLite file itself (wins over the config)
    std::string from, to;     // export: days yyyy-mm-dd (UTC), both included; empty = open
    std::string out_path;     // export: a file instead of standard output
};

// Walks the whole chain. Exit status: 0 intact (prints rows and the last row's id and hash, which
// an auditor may keep to detect later truncation), 1 broken (names the first broken row and why),
// 2 on a config or store error.
int run_audit_verify(const audit_options& opts, std::ostream& out, std::ostream& err);

// Writes the rows of [from, to] as JSON lines (with each row's previous hash, so a range can be
// checked on its own) and checks the chain from the first row. Exit status as run_audit_verify.
int run_audit_export(const audit_options& opts, std::ostream& out, std::ostream& err);

}  // namespace samband::core
