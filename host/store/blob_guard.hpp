// Backs off writes to the attachment (blob) folder after an I/O error: one probe per delay, one
// alert.
#pragma once

#include "store/store.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace samband::store {

// The attachment folder's trouble state. While a write there fails (full disk, read-only, gone),
// submits that need a new blob are refused with blob_folder_error() (the source keeps its input
// and tries again) without touching the disk; one write is let through per delay as a probe, the
// delay doubling from `base` up to `max`. The observer hears each change (trouble begins, ends)
// once, not each refused submit. THREAD: safe from any thread.
class blob_guard {
public:
    blob_guard(std::chrono::milliseconds base, std::chrono::milliseconds max);

    // True when a write may be tried now: always while fine; once per delay while in trouble (the
    // probe). False means: refuse the submit without trying (counted).
    bool may_write();
    // After a write that reached the folder and went through: ends the trouble.
    void succeeded();
    // After a write to the folder failed; `reason` names the folder operation and the errno text.
    void failed(const std::string& reason);

    blob_health state() const;
    void on_change(std::function<void(const blob_health&)> fn);

private:
    std::int64_t now_ms() const;

    const std::chrono::milliseconds base_, max_;
    mutable std::mutex mu_;
    blob_health st_;
    std::int64_t delay_ms_ = 0;
    bool probing_ = false;
    std::function<void(const blob_health&)> fn_;
};

}  // namespace samband::store
