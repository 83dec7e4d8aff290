#include "delivery/receipt_window.hpp"

namespace samband::delivery {

boost::system::result<std::vector<store::delivery_row>> overdue_receipts(
    store::store& st, const std::string& destination, std::int64_t window_s, std::int64_t now_ms,
    std::size_t limit) {
    store::delivery_query q;
    q.state = store::delivery_state::delivered;
    q.destination = destination;
    q.updated_before_ms = now_ms - window_s * 1000;
    q.limit = limit;
    return st.list_deliveries(q);
}

std::vector<store::delivery_row> receipt_alerts::fresh(std::vector<store::delivery_row> rows) {
    std::vector<store::delivery_row> out;
    for (auto& r : rows)
        if (reported_.insert(r.id).second) out.push_back(std::move(r));
    return out;
}

}  // namespace samband::delivery
