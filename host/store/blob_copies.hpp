// Short-lived plaintext copies of attachments for plugins, removed when no attempt holds them.
#pragma once

#include "store/blob_seal.hpp"
#include "store/store.hpp"

#include <boost/system/result.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace samband::store {

// A file a plugin reads an attachment from, kept while `hold` lives.
struct attachment_file {
    std::string path;
    std::shared_ptr<const void> hold;  // null: a stored file that stays
};

// Materialises an attachment whose stored bytes a plugin cannot read as they are (sealed, or in
// PostgreSQL) into a private folder (0700, files 0600), decrypting through store::read_attachment
// one buffer at a time; the copy is verified chunk by chunk before it is handed out (a changed
// byte is an error naming the attachment by sha256, never garbage). Several attempts of the same
// attachment share one copy; it is removed when the last hold is released. Leftovers of a crash
// are removed when the folder is opened. THREAD: safe from any thread.
class blob_copies {
public:
    // Creates `folder` (0700) and removes whatever is in it. Throws std::runtime_error naming the
    // folder when it cannot be created.
    blob_copies(store& st, std::string folder);

    // The copy of `sha256`, or why there is none: `auth` when its stored bytes did not open (a
    // changed byte, a key not configured), else a folder or store error worth a retry.
    boost::system::result<attachment_file, blob_fault> acquire(const std::string& sha256);
    const std::string& folder() const { return folder_; }
    // Copies on disk now (tests).
    std::size_t live() const;

private:
    struct entry;
    store& st_;
    std::string folder_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::weak_ptr<entry>> live_;
    std::atomic<std::uint64_t> serial_{0};
};

}  // namespace samband::store
