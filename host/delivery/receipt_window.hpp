// The receipt window: deliveries that were delivered but got no receipt (Apprec) in time.
#pragma once

#include "store/store.hpp"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace samband::delivery {

// Deliveries to `destination` still `delivered` (no receipt) whose last change is older than
// `window_s` at `now_ms` (the clock is a parameter, so tests move time). At most `limit`.
boost::system::result<std::vector<store::delivery_row>> overdue_receipts(
    store::store& st, const std::string& destination, std::int64_t window_s, std::int64_t now_ms,
    std::size_t limit = 1000);

// Remembers which overdue deliveries were already reported, so each raises one alert.
class receipt_alerts {
public:
    // The rows not reported before; marks them reported.
    std::vector<store::delivery_row> fresh(std::vector<store::delivery_row> rows);

private:
    std::set<std::int64_t> reported_;
};

}  // namespace samband::delivery
