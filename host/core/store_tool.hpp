// `samband store rotate-key`: re-seals the SQLite store's records under the current key.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>

namespace samband::core {

struct store_tool_options {
    std::string config_path;  // the daemon's config: its store and store.encryption keys
    std::size_t batch = 500;  // rows per transaction
};

// Re-seals every envelope and refused input not yet under store.encryption.key_id (the keys under
// `previous` open the older ones). Resumable and safe beside the running daemon. Exit status: 0
// done (prints how many were re-sealed and how many already were), 1 a record did not open (named,
// with its key id), 2 a config or store error.
int run_rotate_key(const store_tool_options& opts, std::ostream& out, std::ostream& err);

}  // namespace samband::core
