#include "admin/metrics.hpp"

#include "core/ids.hpp"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace samband::admin {

namespace {
const prometheus::Histogram::BucketBoundaries kLatencyBuckets{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
const prometheus::Histogram::BucketBoundaries kCommitBuckets{0.0005, 0.001, 0.002, 0.005, 0.01,
                                                             0.025,  0.05,  0.1,   0.25,  1};
const prometheus::Histogram::BucketBoundaries kCommitSizeBuckets{1,  2,   5,   10,  20,
                                                                 50, 100, 200, 500, 1000};
}  // namespace

metrics::metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      events_in_(prometheus::BuildCounter()
                     .Name("samband_events_in_total")
                     .Help("Events accepted and stored, by source endpoint and type")
                     .Register(*registry_)),
      events_rejected_(prometheus::BuildCounter()
                           .Name("samband_events_rejected_total")
                           .Help("Inputs refused and kept in the error store, by source")
                           .Register(*registry_)),
      transitions_(prometheus::BuildCounter()
                       .Name("samband_delivery_transitions_total")
                       .Help("Delivery state changes, by destination and new state")
                       .Register(*registry_)),
      retries_(prometheus::BuildCounter()
                   .Name("samband_delivery_retries_total")
                   .Help("Failed attempts that will be retried, by destination")
                   .Register(*registry_)),
      overdue_(prometheus::BuildCounter()
                   .Name("samband_receipts_overdue_total")
                   .Help("Deliveries with no receipt (Apprec) within the window, by destination")
                   .Register(*registry_)),
      late_(prometheus::BuildCounter()
                .Name("samband_late_completions_total")
                .Help("Completions after their attempt ended (kind late, double or unknown)")
                .Register(*registry_)),
      latency_(prometheus::BuildHistogram()
                   .Name("samband_delivery_latency_seconds")
                   .Help("From acceptance of the event to its delivery, by destination")
                   .Register(*registry_)),
      commit_(prometheus::BuildHistogram()
                  .Name("samband_store_commit_seconds")
                  .Help("Duration of one group commit of the store: its jobs and its commit "
                        "(SQLite: without the WAL sync, samband_store_wal_sync_seconds)")
                  .Register(*registry_)
                  .Add({}, kCommitBuckets)),
      wal_sync_(prometheus::BuildHistogram()
                    .Name("samband_store_wal_sync_seconds")
                    .Help("Duration of one sync of the SQLite store's WAL; one sync makes every "
                          "commit made before it durable")
                    .Register(*registry_)
                    .Add({}, kCommitBuckets)),
      depth_(prometheus::BuildGauge()
                 .Name("samband_queue_depth")
                 .Help("Deliveries waiting (pending, failed or in flight), by destination")
                 .Register(*registry_)),
      oldest_(prometheus::BuildGauge()
                  .Name("samband_queue_oldest_age_seconds")
                  .Help("Age of the oldest waiting delivery, by destination")
                  .Register(*registry_)),
      by_state_(prometheus::BuildGauge()
                    .Name("samband_deliveries")
                    .Help("Deliveries in the store, by destination and state")
                    .Register(*registry_)),
      blob_trouble_(prometheus::BuildGauge()
                        .Name("samband_blob_folder_trouble")
                        .Help("1 while the attachment folder cannot be written (submits with new "
                              "attachments are refused and writes back off), else 0")
                        .Register(*registry_)
                        .Add({})),
      blob_alerts_(prometheus::BuildCounter()
                       .Name("samband_blob_folder_alerts_total")
                       .Help("Times the attachment folder went into trouble (one alert each)")
                       .Register(*registry_)
                       .Add({})),
      blob_write_errors_(prometheus::BuildCounter()
                             .Name("samband_blob_write_errors_total")
                             .Help("Failed writes to the attachment folder")
                             .Register(*registry_)
                             .Add({})),
      blob_refused_(prometheus::BuildCounter()
                        .Name("samband_blob_submits_refused_total")
                        .Help("Submits refused without a write while the attachment folder "
                              "backs off")
                        .Register(*registry_)
                        .Add({})) {
    auto& size = prometheus::BuildHistogram()
                     .Name("samband_store_commit_size")
                     .Help(
                         "What one group commit of the store held, by kind: jobs queued, events "
                         "stored, delivery state changes, deliveries claimed (observed for the "
                         "commits that held that kind)")
                     .Register(*registry_);
    const char* kinds[] = {"jobs", "events", "state_changes", "claimed"};
    for (int i = 0; i < 4; ++i)
        commit_size_[i] = &size.Add({{"kind", kinds[i]}}, kCommitSizeBuckets);
}

void metrics::event_in(std::string_view source, std::string_view type) {
    events_in_.Add({{"source", std::string(source)}, {"type", std::string(type)}}).Increment();
}
void metrics::event_rejected(std::string_view source) {
    events_rejected_.Add({{"source", std::string(source)}}).Increment();
}
void metrics::delivery_state(std::string_view destination, std::string_view state) {
    transitions_.Add({{"destination", std::string(destination)}, {"state", std::string(state)}})
        .Increment();
}
void metrics::retry(std::string_view destination) {
    retries_.Add({{"destination", std::string(destination)}}).Increment();
}
void metrics::delivery_latency(std::string_view destination, double seconds) {
    latency_.Add({{"destination", std::string(destination)}}, kLatencyBuckets).Observe(seconds);
}
void metrics::commit(const store::commit_info& c) {
    commit_.Observe(c.seconds);
    if (c.sync_seconds > 0) wal_sync_.Observe(c.sync_seconds);
    std::size_t n[] = {c.jobs, c.events, c.state_changes, c.claimed};
    for (int i = 0; i < 4; ++i)
        if (n[i] > 0) commit_size_[i]->Observe(static_cast<double>(n[i]));
}
void metrics::late_completion(std::string_view destination, std::string_view kind) {
    late_.Add({{"destination", std::string(destination)}, {"kind", std::string(kind)}}).Increment();
}
void metrics::receipt_overdue(std::string_view destination) {
    overdue_.Add({{"destination", std::string(destination)}}).Increment();
}

std::string metrics::render(store::store& st) {
    std::lock_guard lock(mu_);
    if (auto stats = st.stats()) {
        std::int64_t now = core::now_ms();
        for (const auto& s : *stats) {
            std::map<std::string, std::string> l{{"destination", s.destination}};
            using ds = store::delivery_state;
            auto n = [&](ds x) { return static_cast<double>(s.by_state[static_cast<int>(x)]); };
            depth_.Add(l).Set(n(ds::pending) + n(ds::failed) + n(ds::in_flight));
            oldest_.Add(l).Set(s.oldest_pending_ms > 0 ? (now - s.oldest_pending_ms) / 1000.0
                                                       : 0.0);
            for (int i = 0; i < 8; ++i) {
                by_state_
                    .Add({{"destination", s.destination},
                          {"state", std::string(store::to_string(static_cast<ds>(i)))}})
                    .Set(static_cast<double>(s.by_state[i]));
            }
        }
    }
    store::blob_health b = st.blob_state();
    blob_trouble_.Set(b.trouble ? 1.0 : 0.0);
    auto add = [](prometheus::Counter& c, std::uint64_t now, std::uint64_t& seen) {
        if (now > seen) c.Increment(static_cast<double>(now - seen));
        seen = std::max(seen, now);
    };
    add(blob_alerts_, b.episodes, blob_seen_.episodes);
    add(blob_write_errors_, b.write_errors, blob_seen_.write_errors);
    add(blob_refused_, b.refused, blob_seen_.refused);
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_->Collect());
    return out.str();
}

}  // namespace samband::admin
