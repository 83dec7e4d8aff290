// Header-only C++20 SDK for Samband plugins: write a class, add SAMBAND_PLUGIN(Class), done.
#pragma once

#include <samband/plugin.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace samband::sdk {

class config;  // the parsed endpoint config, in samband/config.hpp

// An error with an ABI status. Throw it from any plugin member; the SDK turns it into the status
// and the message at the boundary (any other exception becomes SAMBAND_INTERNAL).
class error : public std::runtime_error {
public:
    error(samband_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    samband_status status() const noexcept { return status_; }

private:
    samband_status status_;
};

inline samband_str to_str(std::string_view s) noexcept {
    return samband_str{s.data(), s.size()};
}
inline std::string_view to_view(samband_str s) noexcept {
    return s.data ? std::string_view(s.data, s.size) : std::string_view();
}
inline std::string_view to_view(samband_host_str s) noexcept {
    return s.data ? std::string_view(s.data, s.size) : std::string_view();
}

// Reads a struct the host handed over through the ABI's one copy helper (samband_copy_struct):
// missing fields read as zero; a truncated, oversized or unknown non-zero tail throws INVALID.
template <class T>
T copy_in(const T* src, std::size_t min_size, const char* what) {
    T out;
    if (samband_copy_struct(&out, sizeof out, src, min_size) != SAMBAND_OK)
        throw error(SAMBAND_INVALID, std::string("the host passed a malformed ") + what);
    return out;
}

enum class log_level : samband_log_level {
    trace = SAMBAND_LOG_TRACE,
    debug = SAMBAND_LOG_DEBUG,
    info = SAMBAND_LOG_INFO,
    warn = SAMBAND_LOG_WARN,
    error = SAMBAND_LOG_ERROR,
};

// A view of one attachment. Valid as long as the event or delivery it came with.
struct attachment_view {
    std::string_view id, filename, media_type, sha256_hex, path;
    std::uint64_t size = 0;
    std::uint64_t handle = 0;
};

// A view of an event: its envelope JSON and attachments. Valid for the call that got it.
struct event_view {
    std::string_view envelope_json;
    std::vector<attachment_view> attachments;

    // Throws sdk::error(SAMBAND_INVALID) when the host's structs are malformed.
    static event_view from(const samband_event* in) {
        auto e = copy_in(in, SAMBAND_V1_0_EVENT_SIZE, "event");
        if (e.attachment_count > SAMBAND_MAX_ATTACHMENTS || (e.attachment_count && !e.attachments))
            throw error(SAMBAND_INVALID, "the host passed a malformed attachment list");
        event_view v;
        v.envelope_json = to_view(e.envelope_json);
        v.attachments.reserve(e.attachment_count);
        for (std::size_t i = 0; i < e.attachment_count; ++i) {
            auto a = copy_in(e.attachments[i], SAMBAND_V1_0_ATTACHMENT_SIZE, "attachment");
            v.attachments.push_back({to_view(a.id), to_view(a.filename), to_view(a.media_type),
                                     to_view(a.sha256_hex), to_view(a.path), a.size, a.handle});
        }
        return v;
    }
};

// An attachment a source submits: bytes in memory, or a file the host copies.
struct submit_attachment {
    std::string filename;
    std::string media_type;
    std::string bytes;  // used when path is empty
    std::string path;
};

// The host's answer to a submission.
struct submit_result {
    samband_status status = SAMBAND_INTERNAL;
    std::string event_id;
    bool duplicate = false;
    std::string message;
};

// The host services for one plugin instance. Cheap to copy; valid until the instance is destroyed.
// `api` is the SDK's checked copy of the host's table (see detail::adapter::create).
class host {
public:
    explicit host(const samband_host_api* api) : api_(api) {}

    bool log_enabled(log_level l) const {
        return api_->log_enabled(api_->ctx, static_cast<samband_log_level>(l)) != 0;
    }
    void log(log_level l, std::string_view message) const {
        api_->log(api_->ctx, static_cast<samband_log_level>(l), to_str(message));
    }

    // The named secret's bytes, or nullopt if the operator configured none.
    std::optional<std::string> secret(std::string_view name) const {
        std::optional<std::string> out;
        auto fn = [](void* user, samband_host_buffer b) {
            static_cast<std::optional<std::string>*>(user)->emplace(
                reinterpret_cast<const char*>(b.data), b.size);
        };
        if (api_->get_secret(api_->ctx, to_str(name), fn, &out) != SAMBAND_OK) return std::nullopt;
        return out;
    }

    // Submits an event; `done` runs once, after the commit, on a host thread (keep it short).
    // Returns the immediate status: OK when queued; otherwise `done` is not called.
    samband_status submit(std::string_view envelope_json,
                          const std::vector<submit_attachment>& attachments,
                          std::function<void(const submit_result&)> done) const {
        if (attachments.size() > SAMBAND_MAX_ATTACHMENTS) return SAMBAND_INVALID;
        std::vector<samband_submit_attachment> atts;
        std::vector<const samband_submit_attachment*> ptrs;
        atts.reserve(attachments.size());
        for (const auto& a : attachments) {
            samband_submit_attachment s{};
            s.struct_size = sizeof s;
            s.filename = to_str(a.filename);
            s.media_type = to_str(a.media_type);
            s.bytes = samband_buffer{reinterpret_cast<const std::uint8_t*>(a.bytes.data()),
                                     a.bytes.size()};
            s.path = to_str(a.path);
            atts.push_back(s);
        }
        for (const auto& a : atts) ptrs.push_back(&a);
        samband_submission sub{};
        sub.struct_size = sizeof sub;
        sub.envelope_json = to_str(envelope_json);
        sub.attachments = ptrs.data();
        sub.attachment_count = ptrs.size();
        auto* cb = new std::function<void(const submit_result&)>(std::move(done));
        auto trampoline = [](void* user, const samband_submit_result* r) {
            std::unique_ptr<std::function<void(const submit_result&)>> f(
                static_cast<std::function<void(const submit_result&)>*>(user));
            submit_result out;
            samband_submit_result c;
            if (samband_copy_struct(&c, sizeof c, r, SAMBAND_V1_0_SUBMIT_RESULT_SIZE) ==
                SAMBAND_OK) {
                out.status = c.status;
                out.event_id = std::string(to_view(c.event_id));
                out.duplicate = c.duplicate != 0;
                out.message = std::string(to_view(c.message));
            } else {
                out.status = SAMBAND_INTERNAL;
                out.message = "the host passed a malformed submit result";
            }
            try {
                if (*f) (*f)(out);
            } catch (...) {
            }
        };
        samband_status st = api_->submit(api_->ctx, &sub, trampoline, cb);
        if (st != SAMBAND_OK) delete cb;
        return st;
    }

    // Reports a receipt for an earlier delivery, by the external id given at completion.
    // UNSUPPORTED unless the plugin declares SAMBAND_CAP_RECEIPTS in `capabilities`.
    samband_status receipt(std::string_view external_id, std::int32_t kind,
                           std::string_view text) const {
        samband_receipt r{};
        r.struct_size = sizeof r;
        r.external_id = to_str(external_id);
        r.kind = kind;
        r.text = to_str(text);
        return api_->receipt(api_->ctx, &r);
    }

    // Reads an attachment in chunks: calls `chunk` with each piece until the end.
    samband_status read_attachment(const attachment_view& a,
                                   const std::function<void(std::string_view)>& chunk,
                                   std::size_t chunk_size = 64 * 1024) const {
        std::vector<std::uint8_t> buf(chunk_size);
        std::uint64_t offset = 0;
        for (;;) {
            std::size_t n = 0;
            samband_status st =
                api_->attachment_read(api_->ctx, a.handle, offset, buf.data(), buf.size(), &n);
            if (st != SAMBAND_OK) return st;
            if (n == 0) return SAMBAND_OK;
            chunk(std::string_view(reinterpret_cast<const char*>(buf.data()), n));
            offset += n;
        }
    }

    // The whole attachment in memory (fine for small ones; large ones: read_attachment).
    std::optional<std::string> attachment_bytes(const attachment_view& a) const {
        std::string out;
        out.reserve(static_cast<std::size_t>(a.size));
        if (read_attachment(a, [&](std::string_view c) { out.append(c); }) != SAMBAND_OK)
            return std::nullopt;
        return out;
    }

    const samband_host_api* api() const noexcept { return api_; }

private:
    const samband_host_api* api_;
};

// One delivery handed to a sink. Move it to where the work happens (sdk::worker does) and complete
// it exactly once with succeed/retry/fail; if it is destroyed uncompleted it completes as RETRY.
// If deliver() throws, the SDK reports the exception's text instead (no completion follows).
class delivery {
public:
    // Shared by the copies a delivery moves through, so the SDK can see how a call ended.
    struct call_state {
        bool in_call = true;    // deliver() has not returned yet
        bool orphaned = false;  // destroyed by an exception inside deliver(), uncompleted
    };

    // Throws sdk::error(SAMBAND_INVALID) when the host's structs are malformed.
    delivery(const samband_host_api* api, const samband_delivery* d,
             std::shared_ptr<call_state> st = nullptr)
        : d_(copy_in(d, SAMBAND_V1_0_DELIVERY_SIZE, "delivery")),
          event_(event_view::from(d_.event)),
          state_(std::move(st)),
          unwinding_(std::uncaught_exceptions()) {
        api_ = api;  // last: a delivery that failed to construct owes no completion
    }
    delivery(delivery&& o) noexcept
        : api_(std::exchange(o.api_, nullptr)),
          d_(o.d_),
          event_(std::move(o.event_)),
          state_(std::move(o.state_)),
          unwinding_(std::uncaught_exceptions()) {}
    delivery& operator=(delivery&& o) noexcept {
        if (this != &o) {
            finish(SAMBAND_RETRY, {}, "delivery dropped by the plugin");
            api_ = std::exchange(o.api_, nullptr);
            d_ = o.d_;
            event_ = std::move(o.event_);
            state_ = std::move(o.state_);
            unwinding_ = std::uncaught_exceptions();
        }
        return *this;
    }
    delivery(const delivery&) = delete;
    delivery& operator=(const delivery&) = delete;
    ~delivery() {
        if (api_ && state_ && state_->in_call && std::uncaught_exceptions() > unwinding_) {
            state_->orphaned = true;  // the SDK reports the exception; no completion here
            return;
        }
        finish(SAMBAND_RETRY, {}, "delivery dropped by the plugin");
    }

    std::string_view id() const { return to_view(d_.delivery_id); }
    std::string_view event_id() const { return to_view(d_.event_id); }
    std::string_view destination() const { return to_view(d_.destination); }
    std::uint32_t attempt() const { return d_.attempt; }
    std::int64_t deadline_unix_ms() const { return d_.deadline_unix_ms; }
    const event_view& event() const { return event_; }
    bool pending() const { return api_ != nullptr; }

    void succeed(std::string_view external_id = {}) { finish(SAMBAND_OK, external_id, {}); }
    void retry(std::string_view why) { finish(SAMBAND_RETRY, {}, why); }
    void fail(std::string_view why) { finish(SAMBAND_PERMANENT, {}, why); }

    // Used by the SDK when deliver() threw before the delivery was handed on: the host is told
    // through the return status instead, so no completion may follow.
    void release() noexcept { api_ = nullptr; }

private:
    void finish(samband_status st, std::string_view external_id, std::string_view message) {
        if (!api_) return;
        samband_completion c{};
        c.struct_size = sizeof c;
        c.status = st;
        c.external_id = to_str(external_id);
        c.message = to_str(message);
        const samband_host_api* api = std::exchange(api_, nullptr);
        (void)api->complete(api->ctx, d_.token, &c);
    }

    const samband_host_api* api_ = nullptr;
    samband_delivery d_;
    event_view event_;
    std::shared_ptr<call_state> state_;
    int unwinding_;
};

// Runs sink work off the host's delivery thread, so deliver() returns at once (the ABI's rule).
// deliver() hands each delivery to post(); `threads` threads run the jobs in order of arrival.
// A full queue, or a post after stop(), completes the delivery as RETRY at once. stop() (also run
// by the destructor) lets the running jobs finish and completes the queued ones as RETRY. A job
// that throws completes its delivery as RETRY with the exception's text (an sdk::error with
// PERMANENT or INVALID fails it instead), unless it completed it.
class worker {
public:
    using job = std::function<void(delivery&)>;

    explicit worker(std::size_t threads = 1, std::size_t max_queue = 10000)
        : max_queue_(max_queue) {
        for (std::size_t i = 0; i < (threads ? threads : 1); ++i)
            threads_.emplace_back([this] { run(); });
    }
    ~worker() { stop(); }
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    // Queues `fn(d)`; returns at once.
    void post(delivery d, job fn) {
        bool stopping = false;
        {
            std::lock_guard lock(mu_);
            stopping = stopping_;
            if (!stopping && queue_.size() < max_queue_) {
                queue_.push_back({std::move(d), std::move(fn)});
                cv_.notify_one();
                return;
            }
        }
        d.retry(stopping ? "the plugin is stopping" : "the plugin's work queue is full");
    }

    // Idempotent. THREAD: not from a job.
    void stop() {
        std::deque<item> left;
        {
            std::lock_guard lock(mu_);
            if (stopping_ && threads_.empty()) return;
            stopping_ = true;
            left.swap(queue_);
        }
        cv_.notify_all();
        for (auto& t : threads_)
            if (t.joinable()) t.join();
        threads_.clear();
        for (auto& i : left) i.d.retry("the plugin stopped before sending");
    }

    std::size_t queued() const {
        std::lock_guard lock(mu_);
        return queue_.size();
    }

private:
    struct item {
        delivery d;
        job fn;
    };

    void run() {
        for (;;) {
            std::optional<item> it;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (stopping_) return;
                it.emplace(std::move(queue_.front()));
                queue_.pop_front();
            }
            try {
                it->fn(it->d);
            } catch (const error& e) {  // keeps its status: PERMANENT/INVALID fail, others retry
                if (e.status() == SAMBAND_PERMANENT || e.status() == SAMBAND_INVALID)
                    it->d.fail(e.what());
                else
                    it->d.retry(e.what());
            } catch (const std::exception& e) {
                it->d.retry(std::string("exception: ") + e.what());
            } catch (...) {
                it->d.retry("unknown exception");
            }
        }
    }

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<item> queue_;
    std::size_t max_queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

// A read-only view of a delivery, for render().
struct delivery_view {
    std::string_view id, event_id, destination;
    std::uint32_t attempt = 1;
    event_view event;
};

// What render() returns: the exact bytes and an optional file name.
struct rendered {
    std::string bytes;
    std::string name;
};

namespace detail {

inline void set_error(const samband_host_api* api, samband_error* err, std::string_view text) {
    if (api && err) api->error_set(err, to_str(text));
}

// Runs f and maps exceptions to statuses with their text.
template <class F>
samband_status guarded(const samband_host_api* api, samband_error* err, F&& f) noexcept {
    try {
        return f();
    } catch (const error& e) {
        set_error(api, err, e.what());
        samband_status s = e.status();
        return (s >= SAMBAND_OK && s <= SAMBAND_INTERNAL) ? s : SAMBAND_INTERNAL;
    } catch (const std::exception& e) {
        set_error(api, err, std::string("exception: ") + e.what());
        return SAMBAND_INTERNAL;
    } catch (...) {
        set_error(api, err, "unknown exception");
        return SAMBAND_INTERNAL;
    }
}

template <class P>
struct instance {
    samband_host_api host_api;    // the checked copy of the host's table
    const samband_host_api* api;  // = &host_api
    std::unique_ptr<P> plugin;
};

template <class P>
concept is_sink = requires(P& p, delivery d) {
    p.deliver(std::move(d));
};
template <class P>
concept has_render = requires(P& p, const delivery_view& v) {
    { p.render(v) } -> std::convertible_to<rendered>;
};
template <class P>
concept is_transform = requires(P& p, const event_view& e) {
    { p.transform(e) } -> std::convertible_to<std::string>;
};
template <class P>
concept is_source = requires {
    requires P::is_source;
};
template <class P>
concept has_start = requires(P& p) {
    p.start();
};
template <class P>
concept has_stop = requires(P& p) {
    p.stop();
};
template <class P>
concept has_capabilities = requires {
    { P::capabilities } -> std::convertible_to<std::uint32_t>;
};
template <class P>
concept has_config_schema = requires {
    { P::config_schema } -> std::convertible_to<const char*>;
};

// A plugin whose constructor takes `const sdk::config&` (samband/config.hpp) gets its config
// parsed by the SDK; `dependent` defers the use of config until the plugin is instantiated.
template <class P, class T>
struct dependent {
    using type = T;
};
template <class P>
concept takes_parsed_config =
    std::is_constructible_v<P, host, const typename dependent<P, config>::type&>;

template <class P>
std::unique_ptr<P> make_plugin(host h, std::string_view config_json) {
    if constexpr (takes_parsed_config<P>) {
        using cfg = typename dependent<P, config>::type;
        return std::make_unique<P>(h, cfg::parse(config_json));
    } else {
        return std::make_unique<P>(h, config_json);
    }
}

template <class P>
struct adapter {
    static samband_status create(const samband_host_api* api, samband_host_str config,
                                 samband_error* err, void** out) noexcept {
        auto inst = std::make_unique<instance<P>>();
        if (samband_copy_struct(&inst->host_api, sizeof inst->host_api, api,
                                SAMBAND_V1_0_HOST_API_SIZE) != SAMBAND_OK)
            return SAMBAND_INVALID;  // no usable error_set to say why
        inst->api = &inst->host_api;
        return guarded(inst->api, err, [&] {
            if (!out) throw error(SAMBAND_INVALID, "create called without an instance pointer");
            inst->plugin = make_plugin<P>(host(inst->api), to_view(config));
            *out = inst.release();
            return SAMBAND_OK;
        });
    }
    static samband_status start(void* self, samband_error* err) noexcept {
        auto* inst = static_cast<instance<P>*>(self);
        return guarded(inst->api, err, [&] {
            if constexpr (has_start<P>) inst->plugin->start();
            return SAMBAND_OK;
        });
    }
    static void stop(void* self) noexcept {
        auto* inst = static_cast<instance<P>*>(self);
        if constexpr (has_stop<P>) {
            try {
                inst->plugin->stop();
            } catch (const std::exception& e) {
                host(inst->api).log(log_level::error, std::string("stop threw: ") + e.what());
            } catch (...) {
                host(inst->api).log(log_level::error, "stop threw an unknown exception");
            }
        }
    }
    static void destroy(void* self) noexcept {
        auto* inst = static_cast<instance<P>*>(self);
        try {
            delete inst;
        } catch (...) {
        }
    }
    static samband_status deliver(void* self, const samband_delivery* d,
                                  samband_error* err) noexcept {
        auto* inst = static_cast<instance<P>*>(self);
        if constexpr (is_sink<P>) {
            auto state = std::make_shared<delivery::call_state>();
            std::optional<delivery> local;
            samband_status st = guarded(inst->api, err, [&] {
                local.emplace(inst->api, d, state);
                inst->plugin->deliver(std::move(*local));
                return SAMBAND_OK;
            });
            state->in_call = false;
            if (st != SAMBAND_OK && local) {
                if (local->pending()) {
                    // deliver threw before handing the delivery on: the status tells the host.
                    local->release();
                } else if (!state->orphaned) {
                    // It threw after handing it on: that copy still completes, so accept here.
                    host(inst->api).log(log_level::error,
                                        "deliver threw after taking the delivery");
                    st = SAMBAND_OK;
                }
            }
            return st;
        } else {
            set_error(inst->api, err, "not a sink");
            return SAMBAND_UNSUPPORTED;
        }
    }
    static samband_status render(void* self, const samband_delivery* d, samband_render_out* out,
                                 samband_error* err) noexcept {
        auto* inst = static_cast<instance<P>*>(self);
        if constexpr (has_render<P>) {
            return guarded(inst->api, err, [&] {
                auto c = copy_in(d, SAMBAND_V1_0_DELIVERY_SIZE, "delivery");
                delivery_view v{to_view(c.delivery_id), to_view(c.event_id), to_view(c.destination),
                                c.attempt, event_view::from(c.event)};
                rendered r = inst->plugin->render(v);
                inst->api->render_write(
                    out, samband_buffer{reinterpret_cast<const std::uint8_t*>(r.bytes.data()),
                                        r.bytes.size()});
                if (!r.name.empty()) inst->api->render_name(out, to_str(r.name));
                return SAMBAND_OK;
            });
        } else {
            set_error(inst->api, err, "render is not offered");
            return SAMBAND_UNSUPPORTED;
        }
    }
    static samband_status transform(void* self, const samband_event* in, samband_transform_out* out,
                                    samband_error* err) noexcept {
        auto* inst = static_cast<instance<P>*>(self);
        if constexpr (is_transform<P>) {
            return guarded(inst->api, err, [&] {
                std::string env = inst->plugin->transform(event_view::from(in));
                inst->api->transform_emit(out, to_str(env));
                return SAMBAND_OK;
            });
        } else {
            set_error(inst->api, err, "not a transform");
            return SAMBAND_UNSUPPORTED;
        }
    }

    static const samband_plugin_descriptor* descriptor() noexcept {
        static const samband_sink_api sink_api = {sizeof(samband_sink_api), &adapter::deliver,
                                                  has_render<P> ? &adapter::render : nullptr};
        static const samband_transform_api transform_api = {sizeof(samband_transform_api),
                                                            &adapter::transform};
        static const samband_source_api source_api = {sizeof(samband_source_api), nullptr};
        static const samband_plugin_descriptor desc = [] {
            samband_plugin_descriptor d{};
            d.struct_size = sizeof d;
            d.abi_version = SAMBAND_ABI_VERSION;
            d.name = P::name;
            d.version = P::version;
            d.description = P::description;
            d.kinds = (is_source<P> ? SAMBAND_KIND_SOURCE : 0u) |
                      (is_sink<P> ? SAMBAND_KIND_SINK : 0u) |
                      (is_transform<P> ? SAMBAND_KIND_TRANSFORM : 0u);
            std::uint32_t caps = has_render<P> ? SAMBAND_CAP_RENDER : 0u;
            if constexpr (has_capabilities<P>) caps |= P::capabilities;
            d.capabilities = caps;
            d.create = &adapter::create;
            d.start = &adapter::start;
            d.stop = &adapter::stop;
            d.destroy = &adapter::destroy;
            d.source = is_source<P> ? &source_api : nullptr;
            d.sink = is_sink<P> ? &sink_api : nullptr;
            d.transform = is_transform<P> ? &transform_api : nullptr;
            if constexpr (has_config_schema<P>) d.config_schema_json = P::config_schema;
            return d;
        }();
        return &desc;
    }

    // A host whose minor version is older than the one this plugin was built against.
    // (Through a named constant: a literal 0 would make GCC warn that the test is always false.)
    static constexpr std::uint32_t built_minor = SAMBAND_ABI_MINOR;
    static constexpr bool older_than_built(std::uint32_t host_minor) noexcept {
        return host_minor < built_minor;
    }

    static samband_status entry(std::uint32_t host_abi,
                                const samband_plugin_descriptor** out) noexcept {
        if (SAMBAND_ABI_MAJOR_OF(host_abi) != SAMBAND_ABI_MAJOR) return SAMBAND_UNSUPPORTED;
        if (older_than_built(SAMBAND_ABI_MINOR_OF(host_abi))) return SAMBAND_UNSUPPORTED;
        *out = descriptor();
        return SAMBAND_OK;
    }
};

}  // namespace detail
}  // namespace samband::sdk

// Exports the entry point for plugin class P. P needs:
//   static constexpr const char* name, version, description;
//   P(samband::sdk::host h, std::string_view config_json)  (throw sdk::error(SAMBAND_INVALID,..))
//   or P(samband::sdk::host h, const samband::sdk::config& c)  (samband/config.hpp: parsed, with
//   typed accessors whose errors name the JSON path)
// and one or more of:
//   void deliver(samband::sdk::delivery d);                  // a sink
//   samband::sdk::rendered render(const samband::sdk::delivery_view&);   // optional, pure
//   std::string transform(const samband::sdk::event_view&);  // a transform
//   static constexpr bool is_source = true;                  // a source (submits via host)
// and optionally void start(), void stop(), static constexpr std::uint32_t capabilities,
// static constexpr const char* config_schema (a JSON Schema the host checks the config against).
// deliver() must return at once: hand the delivery to an sdk::worker member (see worker).
#define SAMBAND_PLUGIN(P)                                                               \
    extern "C" SAMBAND_EXPORT samband_status samband_plugin_entry(                      \
        std::uint32_t host_abi_version, const samband_plugin_descriptor** descriptor) { \
        return ::samband::sdk::detail::adapter<P>::entry(host_abi_version, descriptor); \
    }
