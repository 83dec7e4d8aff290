#include "store/blob_guard.hpp"

#include <algorithm>

namespace samband::store {

namespace {

class blob_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "samband.blob"; }
    std::string message(int) const override {
        return "the attachment folder cannot be written now (backing off); submit again later";
    }
};

const blob_category& category() {
    static const blob_category c;
    return c;
}

}  // namespace

boost::system::error_code blob_folder_error() noexcept {
    return {1, category()};
}

bool is_blob_folder_error(const boost::system::error_code& ec) noexcept {
    return ec && &ec.category() == &category();
}

blob_guard::blob_guard(std::chrono::milliseconds base, std::chrono::milliseconds max)
    : base_(base), max_(std::max(base, max)) {}

std::int64_t blob_guard::now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool blob_guard::may_write() {
    std::lock_guard lock(mu_);
    if (!st_.trouble) return true;
    std::int64_t now = now_ms();
    if (!probing_ && now >= st_.next_probe_ms) {
        probing_ = true;  // this caller probes; the others keep being refused until it reports
        ++st_.probes;
        return true;
    }
    ++st_.refused;
    return false;
}

void blob_guard::succeeded() {
    std::function<void(const blob_health&)> fn;
    blob_health copy;
    {
        std::lock_guard lock(mu_);
        probing_ = false;
        if (!st_.trouble) return;
        st_.trouble = false;
        st_.recovered_ms = now_ms();
        delay_ms_ = 0;
        copy = st_;
        fn = fn_;
    }
    if (fn) fn(copy);
}

void blob_guard::failed(const std::string& reason) {
    std::function<void(const blob_health&)> fn;
    blob_health copy;
    {
        std::lock_guard lock(mu_);
        ++st_.write_errors;
        std::int64_t now = now_ms();
        bool begins = !st_.trouble;
        if (begins) {
            st_.trouble = true;
            st_.since_ms = now;
            st_.reason = reason;
            ++st_.episodes;
            delay_ms_ = base_.count();
        } else if (probing_) {
            delay_ms_ = std::min<std::int64_t>(delay_ms_ * 2, max_.count());
        }
        probing_ = false;
        st_.last_error = reason;
        st_.next_probe_ms = now + delay_ms_;
        if (!begins) return;
        copy = st_;
        fn = fn_;
    }
    if (fn) fn(copy);
}

blob_health blob_guard::state() const {
    std::lock_guard lock(mu_);
    return st_;
}

void blob_guard::on_change(std::function<void(const blob_health&)> fn) {
    std::lock_guard lock(mu_);
    fn_ = std::move(fn);
}

}  // namespace samband::store
