// Prometheus metrics of the daemon (prometheus-cpp core; text exposition format).
#pragma once

#include "store/store.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace samband::admin {

// THREAD: every method is safe from any thread.
class metrics {
public:
    metrics();
    void event_in(std::string_view source, std::string_view type);
    void event_rejected(std::string_view source);
    void delivery_state(std::string_view destination, std::string_view state);
    void retry(std::string_view destination);
    void delivery_latency(std::string_view destination, double seconds);
    // One group commit: its duration, the WAL sync that made it durable (when it carries one),
    // and per kind (jobs, events, state_changes, claimed) how many it held when it held any.
    void commit(const store::commit_info& c);
    void receipt_overdue(std::string_view destination);
    void late_completion(std::string_view destination, std::string_view kind);
    // The text exposition, with queue gauges read from the store at scrape time.
    std::string render(store::store& st);

private:
    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Family<prometheus::Counter>& events_in_;
    prometheus::Family<prometheus::Counter>& events_rejected_;
    prometheus::Family<prometheus::Counter>& transitions_;
    prometheus::Family<prometheus::Counter>& retries_;
    prometheus::Family<prometheus::Counter>& overdue_;
    prometheus::Family<prometheus::Counter>& late_;
    prometheus::Family<prometheus::Histogram>& latency_;
    prometheus::Histogram& commit_;
    prometheus::Histogram& wal_sync_;
    prometheus::Histogram* commit_size_[4];  // jobs, events, state_changes, claimed
    prometheus::Family<prometheus::Gauge>& depth_;
    prometheus::Family<prometheus::Gauge>& oldest_;
    prometheus::Family<prometheus::Gauge>& by_state_;
    prometheus::Gauge& blob_trouble_;
    prometheus::Counter& blob_alerts_;
    prometheus::Counter& blob_write_errors_;
    prometheus::Counter& blob_refused_;
    store::blob_health blob_seen_;  // the counts already added to the counters above
    std::mutex mu_;
};

}  // namespace samband::admin
