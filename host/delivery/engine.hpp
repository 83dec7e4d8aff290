// The delivery engine: claims due deliveries per destination, hands them to sinks, retries with
// backoff, moves them to dead, and correlates receipts.
#pragma once

#include "core/log.hpp"
#include "plugin/plugin_host.hpp"
#include "store/blob_copies.hpp"
#include "store/store.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace samband::delivery {

// Per-destination delivery policy (config `endpoints.<name>.policy`).
struct policy {
    int max_attempts = 10;
    std::int64_t backoff_base_ms = 1000;
    std::int64_t backoff_max_ms = 300000;
    std::int64_t attempt_timeout_ms = 30000;
    int concurrency = 4;
    std::int64_t receipt_window_s = 345600;
};

// The delay before attempt `attempt + 1` after `attempt` failed: exponential with "equal jitter"
// (half fixed, half random), so delays never shrink from one attempt to the next.
std::int64_t backoff_ms(const policy& p, int attempt, std::mt19937_64& rng);

// What to do with a claimed delivery, decided before it reaches the sink (gate, transforms).
struct prepared {
    enum class action { send, hold, block, dead, retry };
    action what = action::send;
    std::string reason;
    plugin::event_ref event;  // for send
    // What keeps the attachments' files (decrypted copies) until the attempt ends.
    std::vector<std::shared_ptr<const void>> holds;
};
// The file a plugin reads an attachment from (a stored file, or a short-lived decrypted copy kept
// while its hold lives), or why there is none (names the attachment by sha256; `auth` when its
// stored bytes did not open).
using attachment_opener =
    std::function<boost::system::result<store::attachment_file, store::blob_fault>(
        const std::string& sha256)>;
// The event is the engine's own copy, read for this delivery: prepare may move out of it.
using prepare_fn = std::function<prepared(const store::delivery_row&, store::event_row&)>;

// Observers for metrics and tests. THREAD: the engine thread.
struct engine_observers {
    std::function<void(const std::string& dest, store::delivery_state s)> state;
    std::function<void(const std::string& dest)> retry;
    std::function<void(const std::string& dest, double seconds)> latency;
    // A completion after its attempt ended: kind "late", "double" or "unknown".
    std::function<void(const std::string& dest, const char* kind)> late;
};

// Maps attachment handles given to plugins onto stored blobs. THREAD: safe from any thread.
class attachment_handles {
public:
    std::uint64_t add(std::string sha256);
    void remove(std::uint64_t handle);
    std::optional<std::string> find(std::uint64_t handle) const;

private:
    mutable std::mutex mu_;
    std::uint64_t next_ = 1;
    std::unordered_map<std::uint64_t, std::string> map_;
};

class engine {
public:
    engine(store::store& st, core::logger& log, attachment_handles& handles,
           attachment_opener open_attachment);
    ~engine();

    // Registers (or replaces, on reload) a destination. Call before start() or via post().
    void set_destination(const std::string& name, plugin::instance* sink, policy p);
    void remove_destination(const std::string& name);
    void set_prepare(prepare_fn fn) { prepare_ = std::move(fn); }
    void set_observers(engine_observers o) { obs_ = std::move(o); }

    void start();
    // New deliveries may be due. THREAD: any; coalesced.
    void kick();
    // An event was stored (ingest's commit): kicks unless the store tells the engine itself which
    // destinations may be due and hands it what it claimed at accept (SQLite: once per commit,
    // where this was once per event). THREAD: any.
    void event_stored();
    // A sink completed a delivery. THREAD: any.
    void on_complete(const std::string& endpoint, std::uint64_t token, plugin::completion c);
    // A sink reported a receipt. THREAD: any.
    void on_receipt(const std::string& endpoint, std::string external_id, std::int32_t kind,
                    std::string text);
    // Stops dispatching, waits up to `grace` for in-flight deliveries, hands the rest back to
    // pending. THREAD: not the engine thread.
    void stop_dispatch(std::chrono::milliseconds grace);
    // Ends the engine thread. THREAD: not the engine thread.
    void shutdown();

    // Runs `fn` on the engine thread and waits for it. THREAD: not the engine thread.
    void run_sync(std::function<void()> fn);
    // As run_sync, once no worker runs a prepare or a deliver() call (so `fn` may replace or
    // retire plugin instances and routes they use). Waits at most for the deadlines of those
    // calls. THREAD: not the engine thread.
    void run_quiet(std::function<void()> fn);
    std::size_t in_flight() const { return in_flight_total_.load(); }

private:
    // A destination's own threads: prepares run on the pool, deliver() calls on the strand.
    struct workers {
        workers(const std::string& destination, int threads);
        std::size_t size;  // threads: the concurrency, 1 to 4
        boost::asio::thread_pool pool;
        boost::asio::strand<boost::asio::thread_pool::executor_type> calls;
    };
    // The room a destination lends the store for deliveries claimed at accept time
    // (store::accept_claims). THREAD: shared with the store's writer, under `mu`.
    struct accept_room {
        std::mutex mu;
        int limit = 0;    // how many accepts may hold at once now (0: none)
        int taken = 0;    // taken by accepts, not yet at the engine
        bool due = true;  // a delivery may have become due that no claim has seen
    };
    struct destination {
        std::string name;
        plugin::instance* sink = nullptr;
        policy pol;
        int in_flight = 0;       // preparing or sent
        bool claiming = false;   // a claim is at the store
        bool caught_up = false;  // the last claim found fewer than it asked for
        std::shared_ptr<accept_room> room = std::make_shared<accept_room>();
        std::unique_ptr<workers> worker;
    };
    struct attempt {
        store::delivery_row row;
        std::string destination;
        std::int64_t started_ms = 0;
        std::int64_t received_ms = 0;
        std::unique_ptr<boost::asio::steady_timer> timer;
        std::vector<std::uint64_t> handles;
        std::vector<std::shared_ptr<const void>> holds;  // attachments' copies, until it ends
        std::shared_ptr<plugin::delivery_ref> ref;       // kept alive until completion
        std::string delivered_late;    // set when an earlier attempt answered OK meanwhile
        std::string late_external_id;  // its external id
    };
    // An attempt that ended, kept (bounded) to recognise late and double completions.
    struct ended_attempt {
        std::int64_t delivery_id = 0;
        std::string event_id;
        std::string destination;
        int attempt = 0;
        bool ok = false;
        std::string how;
        std::int64_t fence = 0;  // the claim's fencing token
    };
    static constexpr std::size_t kEndedKept = 65536;

    // `tick`: the periodic pump, which claims even a caught-up destination (retries come due).
    void pump_all(bool tick = false);
    void pump(destination& d, bool tick = false);
    void on_claimed(const std::string& name, boost::system::error_code ec,
                    std::vector<store::delivery_row> rows, std::size_t asked);
    // Claims at accept time: what the store may take now, the rows it took, its hooks.
    void publish(destination& d);
    void on_accepted(std::vector<store::delivery_row> rows);
    store::accept_claims accept_hooks();
    std::shared_ptr<accept_room> room_of(const std::string& name);
    // A claimed delivery the engine will not start goes back to pending, its attempt uncounted.
    static store::delivery_update hand_back(const store::delivery_row& r, std::string why);
    // Matches a receipt to its delivery and decides the change. THREAD: a destination worker.
    void correlate_receipt(const std::string& endpoint, const std::string& external_id,
                           std::int32_t kind, const std::string& text);
    struct prepared_one {
        std::uint64_t token = 0;
        std::int64_t received_ms = 0;
        prepared prep;
    };
    using send_list =
        std::vector<std::pair<plugin::instance*, std::shared_ptr<plugin::delivery_ref>>>;
    void begin(destination& d, std::vector<store::delivery_row> rows);
    prepared_one prepare_one(std::uint64_t token, const store::delivery_row& row,
                             boost::system::result<std::optional<store::event_row>> ev);
    // Adds a delivery to send to `sends`, or applies what the prepare decided instead.
    void on_prepared(std::uint64_t token, std::int64_t received_ms, prepared prep,
                     send_list* sends);
    void send(send_list sends);
    void worker_done();
    void finish(std::uint64_t token, plugin::completion c);
    // The completions that arrived since the engine thread last took them, in arrival order.
    void take_completions();
    void late(const std::string& endpoint, std::uint64_t token, plugin::completion c);
    void remember_ended(std::uint64_t token, const attempt& a, bool ok, std::string how);
    // Queues state changes for the store; apply_now() sends the queued ones as one job.
    void apply(std::vector<store::delivery_update> ups);
    void apply_now();
    void schedule_tick();

    store::store& store_;
    core::logger& log_;
    attachment_handles& handles_;
    attachment_opener open_attachment_;
    prepare_fn prepare_;
    engine_observers obs_;

    boost::asio::io_context io_;
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::thread thread_;
    boost::asio::steady_timer tick_;
    std::map<std::string, destination> dests_;
    std::unordered_map<std::uint64_t, attempt> attempts_;
    std::unordered_map<std::int64_t, std::uint64_t> by_delivery_;  // delivery id → token in flight
    std::unordered_map<std::uint64_t, ended_attempt> ended_;
    std::unordered_map<std::uint64_t, store::delivery_row> preparing_;  // token → claimed row
    std::vector<store::delivery_update> unapplied_;  // decided this turn, not yet at the store
    std::atomic<int> worker_jobs_{0};   // prepares and deliver() calls queued or running
    std::atomic<bool> holding_{false};  // run_quiet: start no new work
    std::mutex quiet_mu_;
    std::condition_variable quiet_cv_;
    std::deque<std::uint64_t> ended_order_;
    std::uint64_t next_token_ = 1;
    std::atomic<bool> kick_pending_{false};
    // Completions waiting for the engine thread: one post per engine turn, not one per completion
    // (a sink completing a list of deliveries woke the engine thread for each).
    struct arrived_completion {
        std::string endpoint;
        std::uint64_t token = 0;
        plugin::completion c;
    };
    std::mutex completions_mu_;
    std::vector<arrived_completion> completions_;
    std::atomic<bool> dispatching_{true};
    std::atomic<std::size_t> in_flight_total_{0};
    std::atomic<int> claims_out_{0};  // claims at the store, not yet back
    std::mt19937_64 rng_;
    bool accept_at_store_ = false;              // the store claims at accept time (set by start())
    std::atomic<bool> store_tells_due_{false};  // accept_at_store_, read off the engine thread
    std::mutex rooms_mu_;                       // rooms_: looked up by the store's writer
    std::unordered_map<std::string, std::shared_ptr<accept_room>> rooms_;
};

}  // namespace samband::delivery
