// Ingest: validates a submitted event, dedupes, routes and stores it; answers after the commit.
#pragma once

#include "codec/json.hpp"
#include "core/log.hpp"
#include "plugin/plugin_host.hpp"
#include "store/store.hpp"

#include <rapidjson/document.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace samband::ingest {

struct limits {
    std::size_t max_event_bytes = 1024 * 1024;
    std::uint64_t max_attachment_bytes = 50ull * 1024 * 1024;
    std::size_t max_attachments = 20;
    std::size_t max_depth = 64;
    std::size_t max_pending_submits = 20000;  // beyond this: RETRY (back-pressure)
};

struct options {
    limits lim;
    bool allow_synthetic_ids = false;
};

// Routing result for one accepted envelope (the router decides; ingest stores).
using route_fn = std::function<std::vector<store::new_delivery>(std::string_view source,
                                                                const rapidjson::Document& env)>;

// Observers for metrics. THREAD: any.
struct observers {
    std::function<void(std::string_view source, std::string_view type)> accepted;
    std::function<void(std::string_view source, std::string_view reason)> rejected;
    std::function<void()> committed;  // new deliveries may be due
    // An rph.consent.changed event of this treatment was stored: gated deliveries re-evaluate.
    std::function<void(const std::string& treatment_id)> consent_changed;
};

// The RPH checks a schema cannot express (score ranges per instrument) on an event's `data`;
// empty when fine, else the reason naming the field.
std::string check_rph(const std::string& type, const rapidjson::Value& data);

// Validates an envelope as ingest does and returns it normalised (id, source, attachment
// metadata with sizes and hashes); the error names the field or check that failed.
boost::system::result<rapidjson::Document, std::string> validate_envelope(
    const codec::schema_set& schemas, const options& opts, std::string_view source,
    std::string_view envelope_json, std::vector<store::attachment_input>* attachments);

// Takes events from sources. THREAD: submit is safe from any thread.
class ingest {
public:
    ingest(store::store& st, const codec::schema_set& schemas, options opts, core::logger& log);

    void set_routes(route_fn fn);
    // Reload: new size limits and identifier rules for the next submits (max_depth and
    // max_pending_submits stay as built).
    void set_options(const options& o);
    void set_observers(observers obs);

    // Validates and stores `sub` from endpoint `source`; `done` runs exactly once: OK after the
    // commit (with the first event's id for a duplicate), INVALID with the reason after the
    // input is kept in the error store, RETRY when the store cannot take it now.
    void submit(std::string_view source, plugin::submission sub,
                std::function<void(const plugin::submit_result&)> done);

    // Stops intake: later submits get RETRY ("stopping").
    void stop_intake() { stopping_.store(true); }
    bool stopping() const { return stopping_.load(); }

    // Validates an envelope exactly as submit would, without storing (preview).
    // On success returns the normalised envelope (id, source, attachments filled in).
    boost::system::result<rapidjson::Document, std::string> validate(
        std::string_view source, std::string_view envelope_json,
        std::vector<store::attachment_input>* attachments) const;

private:
    void reject(std::string_view source, std::string reason, std::string payload,
                std::string idempotency_key,
                std::function<void(const plugin::submit_result&)> done);

    store::store& store_;
    const codec::schema_set& schemas_;
    options opts_;
    core::logger& log_;
    mutable std::mutex mu_;
    std::shared_ptr<route_fn> routes_;
    std::set<std::string> no_route_told_;  // "source\x1ftype" already logged at info
    observers obs_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> pending_{0};
};

}  // namespace samband::ingest
