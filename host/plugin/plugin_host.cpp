#include "plugin/plugin_host.hpp"

#include "core/log.hpp"
#include "core/thread_name.hpp"
#include "plugin/process.hpp"

#include <rapidjson/document.h>
#include <boost/dll/shared_library.hpp>

#include <dlfcn.h>

#include <filesystem>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>
#include <unordered_map>

// Opaque ABI types, defined by the host.
struct samband_error {
    std::string text;
    bool set = false;
};
struct samband_render_out {
    std::string bytes;
    std::string name;
};
struct samband_transform_out {
    std::string envelope;
    bool set = false;
};

namespace samband::plugin {

namespace {

std::string status_name(samband_status s) {
    switch (s) {
        case SAMBAND_OK:
            return "OK";
        case SAMBAND_RETRY:
            return "RETRY";
        case SAMBAND_PERMANENT:
            return "PERMANENT";
        case SAMBAND_INVALID:
            return "INVALID";
        case SAMBAND_UNSUPPORTED:
            return "UNSUPPORTED";
        case SAMBAND_INTERNAL:
            return "INTERNAL";
    }
    return "unknown status " + std::to_string(s);
}

samband_status normalise(samband_status s) {
    return (s >= SAMBAND_OK && s <= SAMBAND_INTERNAL) ? s : SAMBAND_INTERNAL;
}

std::string version_text(std::uint32_t v) {
    return std::to_string(SAMBAND_ABI_MAJOR_OF(v)) + "." + std::to_string(SAMBAND_ABI_MINOR_OF(v));
}

std::string view(samband_str s) {
    return s.data ? std::string(s.data, s.size) : std::string();
}
samband_host_str str(const std::string& s) {
    return samband_host_str{s.data(), s.size()};
}

// The struct_size the host writes for a plugin: the size its ABI minor knows, so the plugin's
// copy (samband_copy_struct) never meets a tail it does not know. 1.0 is the only older size yet.
std::uint32_t size_for(std::uint32_t plugin_abi, std::size_t current, std::size_t v1_0) {
    // (The majors are equal: the loader checked.)
    if (plugin_abi >= SAMBAND_ABI_VERSION) return static_cast<std::uint32_t>(current);
    return static_cast<std::uint32_t>(v1_0);
}

// The oldest ABI this host still loads.
constexpr std::uint32_t kMinimumAbi = SAMBAND_ABI_MAKE(1, 0);

}  // namespace

// ---- registry -------------------------------------------------------------------------------

struct registry::impl {
    std::mutex mu;
    std::map<std::string, std::unique_ptr<loaded_plugin>> by_path;
    // Libraries are never unloaded while the process runs (plugins may own threads and
    // static data); they are intentionally kept past the registry's life.
    std::vector<boost::dll::shared_library>* libraries =
        new std::vector<boost::dll::shared_library>();
};

registry::registry() : impl_(std::make_unique<impl>()) {}
registry::~registry() = default;

boost::system::result<const loaded_plugin*, load_failure> registry::load(const std::string& path) {
    std::lock_guard lock(impl_->mu);
    auto fail =
        [&](std::string reason) -> boost::system::result<const loaded_plugin*, load_failure> {
        return load_failure{path, std::move(reason)};
    };
    std::error_code fec;
    std::string canonical = std::filesystem::weakly_canonical(path, fec).string();
    if (canonical.empty()) canonical = path;
    if (auto it = impl_->by_path.find(canonical); it != impl_->by_path.end())
        return it->second.get();

    boost::dll::shared_library lib;
    boost::system::error_code ec;
    lib.load(canonical, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec || !lib.is_loaded()) {
        const char* why = dlerror();
        return fail("cannot load: " + std::string(why ? why : ec.message()));
    }
    if (!lib.has(SAMBAND_PLUGIN_ENTRY_NAME)) {
        impl_->libraries->push_back(lib);
        return fail("no entry point: the library does not export " SAMBAND_PLUGIN_ENTRY_NAME);
    }
    auto entry = lib.get<samband_status(std::uint32_t, const samband_plugin_descriptor**)>(
        SAMBAND_PLUGIN_ENTRY_NAME);
    impl_->libraries->push_back(lib);

    const samband_plugin_descriptor* raw = nullptr;
    samband_status st = entry(SAMBAND_ABI_VERSION, &raw);
    if (st != SAMBAND_OK)
        return fail("entry point refused host ABI " + version_text(SAMBAND_ABI_VERSION) + " (" +
                    status_name(st) + ")");
    if (!raw) return fail("entry point returned no descriptor");
    auto lp = std::make_unique<loaded_plugin>();
    // Every table is read once, through the ABI's copy helper, into the host's own copies.
    auto copy = [&](auto* dst, const void* src, std::size_t min, const char* what) -> std::string {
        if (samband_copy_struct(dst, sizeof *dst, src, min) == SAMBAND_OK) return {};
        std::uint32_t size = 0;
        std::memcpy(&size, src, sizeof size);
        return std::string(what) + " struct_size " + std::to_string(size) +
               (size < min
                    ? " is smaller than ABI 1.0's " + std::to_string(min) + " (truncated struct)"
                    : " is not sane, or its tail beyond this host's " +
                          std::to_string(sizeof *dst) + " bytes is not zero");
    };
    if (auto why = copy(&lp->desc, raw, SAMBAND_V1_0_DESCRIPTOR_SIZE, "descriptor"); !why.empty())
        return fail(why);
    samband_plugin_descriptor* d = &lp->desc;
    std::uint32_t v = d->abi_version;
    if (SAMBAND_ABI_MAJOR_OF(v) != SAMBAND_ABI_MAJOR)
        return fail("plugin was built for ABI " + version_text(v) + "; this host speaks ABI " +
                    version_text(SAMBAND_ABI_VERSION) + " (major versions must match)");
    if (SAMBAND_ABI_MINOR_OF(v) > SAMBAND_ABI_MINOR)
        return fail("plugin needs ABI " + version_text(v) + "; this host has ABI " +
                    version_text(SAMBAND_ABI_VERSION) + " (upgrade samband)");
    if (v < kMinimumAbi)
        return fail("plugin ABI " + version_text(v) + " is older than the minimum " +
                    version_text(kMinimumAbi));
    static const std::regex name_re("^[a-z0-9_.-]{1,64}$");
    if (!d->name || !std::regex_match(d->name, name_re))
        return fail("descriptor name is missing or not [a-z0-9_.-]{1,64}");
    if (!d->version) return fail("descriptor version is missing");
    for (auto [fn, what] : {std::pair{reinterpret_cast<const void*>(d->create), "create"},
                            std::pair{reinterpret_cast<const void*>(d->start), "start"},
                            std::pair{reinterpret_cast<const void*>(d->stop), "stop"},
                            std::pair{reinterpret_cast<const void*>(d->destroy), "destroy"}}) {
        if (!fn) return fail(std::string("missing required callback ") + what);
    }
    constexpr std::uint32_t known =
        SAMBAND_KIND_SOURCE | SAMBAND_KIND_SINK | SAMBAND_KIND_TRANSFORM;
    if ((d->kinds & known) == 0) return fail("descriptor declares no plugin kind");
    if (d->kinds & ~known)
        return fail("descriptor declares unknown kind bits " + std::to_string(d->kinds & ~known));
    if (d->kinds & SAMBAND_KIND_SINK) {
        if (!d->sink) return fail("declares SINK but has no sink table");
        if (auto why = copy(&lp->sink, d->sink, SAMBAND_V1_0_SINK_API_SIZE, "sink table");
            !why.empty())
            return fail(why);
        if (!lp->sink.deliver) return fail("missing required callback sink.deliver");
        d->sink = &lp->sink;
    } else if (d->sink) {
        return fail("has a sink table but does not declare SINK");
    }
    if (d->kinds & SAMBAND_KIND_TRANSFORM) {
        if (!d->transform) return fail("declares TRANSFORM but has no transform table");
        if (auto why = copy(&lp->transform, d->transform, SAMBAND_V1_0_TRANSFORM_API_SIZE,
                            "transform table");
            !why.empty())
            return fail(why);
        if (!lp->transform.transform) return fail("missing required callback transform.transform");
        d->transform = &lp->transform;
    } else if (d->transform) {
        return fail("has a transform table but does not declare TRANSFORM");
    }
    if (d->kinds & SAMBAND_KIND_SOURCE) {
        if (!d->source) return fail("declares SOURCE but has no source table");
        if (auto why = copy(&lp->source, d->source, SAMBAND_V1_0_SOURCE_API_SIZE, "source table");
            !why.empty())
            return fail(why);
        d->source = &lp->source;
    } else if (d->source) {
        return fail("has a source table but does not declare SOURCE");
    }
    // Capabilities: each bit is enforced, so an unknown one is a claim this host cannot honour.
    constexpr std::uint32_t known_caps = SAMBAND_CAP_RENDER | SAMBAND_CAP_RECEIPTS;
    if (d->capabilities & ~known_caps)
        return fail("descriptor declares unknown capability bits 0x" + [&] {
            char b[16];
            std::snprintf(b, sizeof b, "%x", d->capabilities & ~known_caps);
            return std::string(b);
        }());
    bool has_render = (d->kinds & SAMBAND_KIND_SINK) && lp->sink.render;
    if (has_render != ((d->capabilities & SAMBAND_CAP_RENDER) != 0))
        return fail(has_render ? "sink.render is set but SAMBAND_CAP_RENDER is not declared"
                               : "SAMBAND_CAP_RENDER is declared but sink.render is missing");
    if ((d->capabilities & SAMBAND_CAP_RECEIPTS) && !(d->kinds & SAMBAND_KIND_SINK))
        return fail("SAMBAND_CAP_RECEIPTS is declared by a plugin that is not a sink");
    if (d->config_schema_json) {
        std::string schema = d->config_schema_json;
        rapidjson::Document doc;
        doc.Parse(schema.data(), schema.size());
        if (doc.HasParseError() || !doc.IsObject())
            return fail("config_schema_json is not a JSON object (offset " +
                        std::to_string(doc.GetErrorOffset()) + ")");
        lp->config_schema = std::move(schema);
    }
    for (const auto& [p, other] : impl_->by_path) {
        if (other->name == d->name)
            return fail(std::string("plugin name \"") + d->name + "\" is already loaded from " + p);
    }
    lp->path = canonical;
    lp->name = d->name;
    lp->version = d->version;
    lp->description = d->description ? d->description : "";
    lp->abi_version = v;
    lp->kinds = d->kinds;
    lp->capabilities = d->capabilities;
    lp->descriptor = &lp->desc;
    lp->renders = (d->capabilities & SAMBAND_CAP_RENDER) != 0;
    const loaded_plugin* out = lp.get();
    impl_->by_path[canonical] = std::move(lp);
    return out;
}

boost::system::result<const loaded_plugin*, load_failure> registry::probe(
    const std::string& path, const std::string& host_exe) {
    std::error_code fec;
    std::string canonical = std::filesystem::weakly_canonical(path, fec).string();
    if (canonical.empty()) canonical = path;
    {
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->by_path.find(canonical); it != impl_->by_path.end())
            return it->second.get();
    }
    process_options po;
    po.host_exe = host_exe;
    auto r = probe_in_child(canonical, po);  // not under the lock: it takes a while
    std::lock_guard lock(impl_->mu);
    if (!r) return load_failure{path, r.error()};
    if (auto it = impl_->by_path.find(canonical); it != impl_->by_path.end())
        return it->second.get();
    for (const auto& [p, other] : impl_->by_path) {
        if (other->name == r->name)
            return load_failure{path,
                                "plugin name \"" + r->name + "\" is already loaded from " + p};
    }
    auto lp = std::make_unique<loaded_plugin>(std::move(*r));
    lp->path = canonical;
    const loaded_plugin* out = lp.get();
    impl_->by_path[canonical] = std::move(lp);
    return out;
}

const loaded_plugin* registry::find(std::string_view name) const {
    std::lock_guard lock(impl_->mu);
    for (const auto& [p, lp] : impl_->by_path)
        if (lp->name == name) return lp.get();
    return nullptr;
}

std::vector<const loaded_plugin*> registry::list() const {
    std::lock_guard lock(impl_->mu);
    std::vector<const loaded_plugin*> out;
    for (const auto& [p, lp] : impl_->by_path) out.push_back(lp.get());
    return out;
}

// ---- attachment files -----------------------------------------------------------------------

std::uint64_t attachment_files::add(std::string path) {
    std::lock_guard lock(mu_);
    files_[next_] = std::move(path);
    return next_++;
}

boost::system::result<std::size_t> attachment_files::read(std::uint64_t handle,
                                                          std::uint64_t offset, std::uint8_t* out,
                                                          std::size_t capacity) const {
    std::string path;
    {
        std::lock_guard lock(mu_);
        auto it = files_.find(handle);
        if (it == files_.end())
            return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
        path = it->second;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return boost::system::errc::make_error_code(boost::system::errc::no_such_file_or_directory);
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(capacity));
    return static_cast<std::size_t>(in.gcount());
}

// ---- instance -------------------------------------------------------------------------------

namespace {

// The C view of an event, written at the plugin's ABI size; it points into `ref`.
struct c_event_view {
    std::vector<samband_attachment> atts;
    std::vector<const samband_attachment*> ptrs;
    samband_event e{};

    void build(const event_ref& ref, std::uint32_t abi) {
        atts.reserve(ref.attachments.size());
        for (const auto& a : ref.attachments) {
            samband_attachment c{};
            c.struct_size = size_for(abi, sizeof c, SAMBAND_V1_0_ATTACHMENT_SIZE);
            c.id = str(a.id);
            c.filename = str(a.filename);
            c.media_type = str(a.media_type);
            c.sha256_hex = str(a.sha256_hex);
            c.size = a.size;
            c.path = str(a.path);
            c.handle = a.handle;
            atts.push_back(c);
        }
        for (const auto& a : atts) ptrs.push_back(&a);
        e.struct_size = size_for(abi, sizeof e, SAMBAND_V1_0_EVENT_SIZE);
        e.envelope_json = str(ref.envelope_json);
        e.attachments = ptrs.data();
        e.attachment_count = ptrs.size();
    }
};

// The C view of a delivery, alive from deliver() until the plugin completes it. It shares the
// caller's ref (an 8 KB envelope is not copied per delivery).
struct c_delivery {
    std::shared_ptr<const delivery_ref> ref;
    c_event_view ev;
    samband_delivery d{};

    c_delivery(std::shared_ptr<const delivery_ref> r, std::uint32_t abi) : ref(std::move(r)) {
        ev.build(ref->event, abi);
        d.struct_size = size_for(abi, sizeof d, SAMBAND_V1_0_DELIVERY_SIZE);
        d.token = ref->token;
        d.delivery_id = str(ref->delivery_id);
        d.event_id = str(ref->event_id);
        d.destination = str(ref->destination);
        d.attempt = ref->attempt;
        d.deadline_unix_ms = ref->deadline_unix_ms;
        d.event = &ev.e;
    }
};

struct c_event {
    event_ref ref;
    c_event_view ev;
    c_event(const event_ref& r, std::uint32_t abi) : ref(r) { ev.build(ref, abi); }
};

}  // namespace

struct instance::impl {
    const loaded_plugin& plugin;
    std::string endpoint;
    host_services& svc;
    instance_options opts;
    samband_host_api api{};
    void* self = nullptr;  // the plugin's instance
    bool started = false;
    bool stopped = false;

    // Calls into the plugin run on this thread so a blocked callback never blocks the host.
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> queue;
    bool quit = false;
    std::thread worker;
    std::atomic<bool> stuck{false};

    // Once the instance is gone while a call is still blocked, the impl is leaked on purpose and
    // the trampolines stop reaching the host (the services may be gone too).
    std::recursive_mutex svc_mu;  // recursive: a callback may log from inside submit()
    bool detached = false;

    // Deliveries the plugin holds (until it completes them).
    std::mutex dmu;
    std::unordered_map<std::uint64_t, std::shared_ptr<c_delivery>> held;

    impl(const loaded_plugin& p, std::string ep, host_services& s, instance_options o)
        : plugin(p), endpoint(std::move(ep)), svc(s), opts(o) {
        api.struct_size = size_for(p.abi_version, sizeof api, SAMBAND_V1_0_HOST_API_SIZE);
        api.abi_version = SAMBAND_ABI_VERSION;
        api.ctx = this;
        api.error_set = &impl::t_error_set;
        api.log_enabled = &impl::t_log_enabled;
        api.log = &impl::t_log;
        api.get_secret = &impl::t_get_secret;
        api.submit = &impl::t_submit;
        api.complete = &impl::t_complete;
        api.receipt = &impl::t_receipt;
        api.attachment_read = &impl::t_attachment_read;
        api.render_write = &impl::t_render_write;
        api.render_name = &impl::t_render_name;
        api.transform_emit = &impl::t_transform_emit;
        worker = std::thread([this] {
            core::name_this_thread("ep:" + endpoint);
            run();
        });
    }

    ~impl() {
        {
            std::lock_guard lock(mu);
            quit = true;
        }
        cv.notify_all();
        if (worker.joinable()) worker.join();
    }

    // Cuts the plugin off from the host; returns true when the impl must be leaked because a
    // call is still blocked inside the plugin.
    bool detach_from_host() {
        {
            std::lock_guard lock(svc_mu);
            detached = true;
        }
        if (!stuck.load()) return false;
        {
            std::lock_guard lock(mu);
            quit = true;
        }
        cv.notify_all();
        worker.detach();
        return true;
    }

    void run() {
        for (;;) {
            std::function<void()> task;
            {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return quit || !queue.empty(); });
                if (queue.empty()) return;
                task = std::move(queue.front());
                queue.pop_front();
            }
            task();
        }
    }

    // Runs `fn` on the call thread and waits up to `timeout`: call_each of one call.
    call_result call(const char* what, std::function<call_result()> fn,
                     std::chrono::milliseconds timeout) {
        return std::move(call_each(
                             what, 1, [fn = std::move(fn)](std::size_t) { return fn(); }, timeout)
                             .front());
    }

    // Runs fn(0) … fn(n - 1) in order on the call thread, in one hop, and waits for each up to
    // `timeout` after the one before ended. On overrun the instance is stuck until that call
    // returns; it gets RETRY naming the callback, and the calls after it are not made (RETRY).
    std::vector<call_result> call_each(const char* what, std::size_t n,
                                       std::function<call_result(std::size_t)> fn,
                                       std::chrono::milliseconds timeout) {
        std::vector<call_result> out;
        if (n == 0) return out;
        auto not_called = [&] {
            return call_result{SAMBAND_RETRY, "plugin " + plugin.name + " endpoint " + endpoint +
                                                  ": an earlier call is still blocked; " + what +
                                                  " not called"};
        };
        if (stuck.load()) {
            out.assign(n, not_called());
            return out;
        }
        using clock = std::chrono::steady_clock;
        struct progress {
            std::mutex mu;
            std::condition_variable cv;
            std::vector<call_result> done;
            clock::time_point last_end;  // when the latest call in `done` returned
            bool abandoned = false;      // the caller gave up: make no further call
        };
        auto pr = std::make_shared<progress>();
        pr->done.reserve(n);
        // The first call's deadline counts from here, each later one's from the return of the
        // call before it.
        pr->last_end = clock::now();
        {
            std::lock_guard lock(mu);
            queue.push_back([this, pr, n, fn = std::move(fn)] {
                for (std::size_t i = 0; i < n; ++i) {
                    {
                        std::lock_guard l(pr->mu);
                        if (pr->abandoned) return;
                    }
                    call_result r;
                    try {
                        r = fn(i);
                    } catch (...) {
                        r = {SAMBAND_INTERNAL, "host error around the plugin call"};
                    }
                    std::lock_guard l(pr->mu);
                    pr->done.push_back(std::move(r));
                    pr->last_end = clock::now();
                    if (pr->abandoned) {
                        stuck.store(false);  // the overrun call returned: no longer stuck
                        return;
                    }
                    // The caller is woken once, when the last call returns (a wake-up per call
                    // cost a thread switch per delivery); it checks each call's deadline itself.
                    if (i + 1 == n) pr->cv.notify_one();
                }
            });
        }
        cv.notify_one();
        std::unique_lock lock(pr->mu);
        while (pr->done.size() < n) {
            // Woken at the running call's deadline: a call that returned meanwhile moved it on.
            clock::time_point deadline = pr->last_end + timeout;
            if (pr->cv.wait_until(lock, deadline, [&] {
                    return pr->done.size() == n || pr->last_end + timeout != deadline;
                }))
                continue;
            pr->abandoned = true;
            stuck.store(true);
            out = pr->done;
            lock.unlock();
            std::string msg = "plugin " + plugin.name + " endpoint " + endpoint + ": " + what +
                              " blocked past its deadline of " + std::to_string(timeout.count()) +
                              " ms";
            svc.log(endpoint, SAMBAND_LOG_ERROR, msg);
            out.push_back({SAMBAND_RETRY, msg});
            while (out.size() < n) out.push_back(not_called());
            return out;
        }
        return std::move(pr->done);
    }

    call_result finish(samband_status st, const samband_error& err, const char* what) {
        call_result r;
        r.status = normalise(st);
        if (r.status != SAMBAND_OK) {
            r.message = err.set ? err.text : std::string(what) + " returned " + status_name(st);
            if (st != r.status) r.message += " (unknown status " + std::to_string(st) + ")";
        }
        return r;
    }

    static impl* me(void* ctx) { return static_cast<impl*>(ctx); }

    // Runs `fn` with the host's services unless the instance was detached from them.
    template <class F, class R>
    static R with_host(void* ctx, R fallback, F&& fn) {
        impl* self = me(ctx);
        std::lock_guard lock(self->svc_mu);
        if (self->detached) return fallback;
        return fn(self);
    }

    static void t_error_set(samband_error* err, samband_str text) {
        if (!err) return;
        try {
            err->text = view(text);
            err->set = true;
        } catch (...) {
        }
    }
    static int32_t t_log_enabled(void* ctx, samband_log_level level) {
        try {
            return with_host(ctx, int32_t{0}, [&](impl* self) {
                return self->svc.log_enabled(self->endpoint, level) ? int32_t{1} : int32_t{0};
            });
        } catch (...) {
            return 0;
        }
    }
    static void t_log(void* ctx, samband_log_level level, samband_str message) {
        try {
            with_host(ctx, 0, [&](impl* self) {
                self->svc.log(self->endpoint, level, core::mask_identifiers(view(message)));
                return 0;
            });
        } catch (...) {
        }
    }
    static samband_status t_get_secret(void* ctx, samband_str name, samband_secret_fn fn,
                                       void* user) {
        try {
            auto s = with_host(ctx, std::optional<std::string>(), [&](impl* self) {
                return self->svc.secret(self->endpoint, view(name));
            });
            if (!s) return SAMBAND_INVALID;
            if (fn)
                fn(user,
                   samband_host_buffer{reinterpret_cast<const uint8_t*>(s->data()), s->size()});
            std::fill(s->begin(), s->end(), '\0');
            return SAMBAND_OK;
        } catch (...) {
            return SAMBAND_INTERNAL;
        }
    }
    static samband_status t_submit(void* ctx, const samband_submission* sub,
                                   samband_submit_done_fn done, void* user) {
        try {
            samband_submission c;
            if (samband_copy_struct(&c, sizeof c, sub, SAMBAND_V1_0_SUBMISSION_SIZE) != SAMBAND_OK)
                return refuse(ctx, "submit: malformed submission (struct_size)");
            if (c.attachment_count > SAMBAND_MAX_ATTACHMENTS)
                return refuse(ctx, "submit: " + std::to_string(c.attachment_count) +
                                       " attachments, more than the ABI's " +
                                       std::to_string(SAMBAND_MAX_ATTACHMENTS));
            if (c.attachment_count && !c.attachments)
                return refuse(ctx, "submit: attachment_count without attachments");
            submission s;
            s.envelope_json = view(c.envelope_json);
            for (size_t i = 0; i < c.attachment_count; ++i) {
                samband_submit_attachment a;
                if (samband_copy_struct(&a, sizeof a, c.attachments[i],
                                        SAMBAND_V1_0_SUBMIT_ATTACHMENT_SIZE) != SAMBAND_OK)
                    return refuse(ctx, "submit: malformed attachment " + std::to_string(i) +
                                           " (struct_size)");
                submission::attachment out;
                out.filename = view(a.filename);
                out.media_type = view(a.media_type);
                out.path = view(a.path);
                if (out.path.empty() && a.bytes.data)
                    out.bytes.assign(reinterpret_cast<const char*>(a.bytes.data), a.bytes.size);
                s.attachments.push_back(std::move(out));
            }
            std::uint32_t abi = me(ctx)->plugin.abi_version;
            return with_host(ctx, samband_status{SAMBAND_RETRY}, [&](impl* self) {
                return self->svc.submit(
                    self->endpoint, std::move(s), [done, user, abi](const submit_result& r) {
                        if (!done) return;
                        samband_submit_result c{};
                        c.struct_size = size_for(abi, sizeof c, SAMBAND_V1_0_SUBMIT_RESULT_SIZE);
                        c.status = r.status;
                        c.event_id = str(r.event_id);
                        c.duplicate = r.duplicate ? 1 : 0;
                        c.message = str(r.message);
                        done(user, &c);
                    });
            });
        } catch (...) {
            return SAMBAND_INTERNAL;
        }
    }
    // Logs why the host refused a plugin's call and returns INVALID.
    static samband_status refuse(void* ctx, const std::string& why) {
        with_host(ctx, 0, [&](impl* s) {
            s->svc.log(s->endpoint, SAMBAND_LOG_ERROR, "plugin " + s->plugin.name + ": " + why);
            return 0;
        });
        return SAMBAND_INVALID;
    }
    static samband_status t_complete(void* ctx, uint64_t token, const samband_completion* c) {
        try {
            samband_completion in;
            if (samband_copy_struct(&in, sizeof in, c, SAMBAND_V1_0_COMPLETION_SIZE) != SAMBAND_OK)
                return refuse(ctx, "complete: malformed completion (struct_size) for token " +
                                       std::to_string(token));
            impl* self = me(ctx);
            {
                std::lock_guard lock(self->dmu);
                if (self->held.erase(token) == 0)
                    return refuse(ctx, "complete: token " + std::to_string(token) +
                                           " is unknown or already completed");
            }
            completion out;
            out.status = normalise(in.status);
            out.external_id = view(in.external_id);
            out.message = view(in.message);
            with_host(ctx, 0, [&](impl* s) {
                s->svc.complete(s->endpoint, token, std::move(out));
                return 0;
            });
            return SAMBAND_OK;
        } catch (...) {
            return SAMBAND_INTERNAL;
        }
    }
    static samband_status t_receipt(void* ctx, const samband_receipt* r) {
        try {
            if (!(me(ctx)->plugin.capabilities & SAMBAND_CAP_RECEIPTS)) {
                refuse(ctx, "receipt: the plugin does not declare SAMBAND_CAP_RECEIPTS");
                return SAMBAND_UNSUPPORTED;
            }
            samband_receipt in;
            if (samband_copy_struct(&in, sizeof in, r, SAMBAND_V1_0_RECEIPT_SIZE) != SAMBAND_OK)
                return refuse(ctx, "receipt: malformed receipt (struct_size)");
            with_host(ctx, 0, [&](impl* self) {
                self->svc.receipt(self->endpoint, view(in.external_id), in.kind, view(in.text));
                return 0;
            });
            return SAMBAND_OK;
        } catch (...) {
            return SAMBAND_INTERNAL;
        }
    }
    static samband_status t_attachment_read(void* ctx, uint64_t handle, uint64_t offset,
                                            uint8_t* out, size_t capacity, size_t* read) {
        try {
            return with_host(ctx, samband_status{SAMBAND_INVALID}, [&](impl* self) {
                auto r = self->svc.read_attachment(handle, offset, out, capacity);
                if (!r) return samband_status{SAMBAND_INVALID};
                if (read) *read = *r;
                return samband_status{SAMBAND_OK};
            });
        } catch (...) {
            return SAMBAND_INTERNAL;
        }
    }
    static void t_render_write(samband_render_out* out, samband_buffer bytes) {
        try {
            if (out && bytes.data)
                out->bytes.append(reinterpret_cast<const char*>(bytes.data), bytes.size);
        } catch (...) {
        }
    }
    static void t_render_name(samband_render_out* out, samband_str name) {
        try {
            if (out) out->name = view(name);
        } catch (...) {
        }
    }
    static void t_transform_emit(samband_transform_out* out, samband_str env) {
        try {
            if (!out) return;
            out->envelope = view(env);
            out->set = true;
        } catch (...) {
        }
    }
};

instance::instance(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
instance::instance(std::unique_ptr<remote_instance> r) : remote_(std::move(r)) {}

boost::system::result<std::unique_ptr<instance>, std::string> instance::create(
    const loaded_plugin& plugin, std::string endpoint, std::string config_json,
    host_services& services, instance_options opts) {
    if (opts.isolated || !plugin.descriptor) {
        opts.isolated = true;
        auto r = remote_instance::create(plugin, std::move(endpoint), std::move(config_json),
                                         services, std::move(opts));
        if (!r) return r.error();
        return std::unique_ptr<instance>(new instance(std::move(*r)));
    }
    auto p = std::make_unique<impl>(plugin, endpoint, services, opts);
    impl* raw = p.get();
    auto r = raw->call(
        "create",
        [raw, config_json] {
            samband_error err;
            void* self = nullptr;
            samband_status st =
                raw->plugin.descriptor->create(&raw->api, str(config_json), &err, &self);
            if (st == SAMBAND_OK && !self)
                return call_result{SAMBAND_INTERNAL, "create returned no instance"};
            if (st == SAMBAND_OK) raw->self = self;
            return raw->finish(st, err, "create");
        },
        opts.call_timeout);
    if (!r.ok()) {
        return "endpoint " + endpoint + " (plugin " + plugin.name +
               "): create failed: " + status_name(r.status) + ": " + r.message;
    }
    return std::unique_ptr<instance>(new instance(std::move(p)));
}

instance::~instance() {
    if (remote_) return;  // its own destructor stops and destroys the child
    stop();
    if (impl_->stuck.load()) {
        impl_->svc.log(impl_->endpoint, SAMBAND_LOG_ERROR,
                       "plugin " + impl_->plugin.name + " endpoint " + impl_->endpoint +
                           ": a call is still blocked; the instance is abandoned, not destroyed");
        if (impl_->detach_from_host()) (void)impl_.release();  // leaked on purpose
        return;
    }
    if (impl_->self) {
        impl* raw = impl_.get();
        raw->call(
            "destroy",
            [raw] {
                raw->plugin.descriptor->destroy(raw->self);
                return call_result{SAMBAND_OK, {}};
            },
            raw->opts.call_timeout * 10);
    }
}

const loaded_plugin& instance::plugin() const {
    return remote_ ? remote_->plugin() : impl_->plugin;
}
const std::string& instance::endpoint() const {
    return remote_ ? remote_->endpoint() : impl_->endpoint;
}
bool instance::stuck() const {
    return remote_ ? false : impl_->stuck.load();  // an isolated call is killed, never stuck
}
bool instance::ready() const {
    return remote_ ? remote_->up() : !impl_->stuck.load();
}
call_result instance::destroy() {
    if (remote_) return remote_->destroy();
    return {SAMBAND_OK, {}};  // in-process: the destructor destroys
}
bool instance::wait_up(std::chrono::milliseconds timeout) {
    return remote_ ? remote_->wait_up(timeout) : !stuck();
}
std::string instance::quarantined() const {
    return remote_ ? remote_->quarantined() : std::string();
}
std::uint64_t instance::crashes() const {
    return remote_ ? remote_->crashes() : 0;
}
std::string instance::last_crash() const {
    return remote_ ? remote_->last_crash() : std::string();
}

call_result instance::start() {
    if (remote_) return remote_->start();
    impl* raw = impl_.get();
    auto r = raw->call(
        "start",
        [raw] {
            samband_error err;
            samband_status st = raw->plugin.descriptor->start(raw->self, &err);
            return raw->finish(st, err, "start");
        },
        raw->opts.call_timeout);
    raw->started = r.ok();
    return r;
}

void instance::stop() {
    if (remote_) return remote_->stop();
    impl* raw = impl_.get();
    if (raw->stopped || !raw->self) return;
    raw->stopped = true;
    raw->call(
        "stop",
        [raw] {
            raw->plugin.descriptor->stop(raw->self);
            return call_result{SAMBAND_OK, {}};
        },
        raw->opts.call_timeout * 10);
}

call_result instance::deliver(const delivery_ref& d) {
    if (remote_) return remote_->deliver(d);
    return deliver(std::vector<std::shared_ptr<const delivery_ref>>{
                       std::make_shared<const delivery_ref>(d)})
        .front();
}

std::vector<call_result> instance::deliver(
    const std::vector<std::shared_ptr<const delivery_ref>>& ds) {
    std::vector<call_result> out;
    if (remote_) {
        out.reserve(ds.size());
        for (const auto& d : ds) out.push_back(remote_->deliver(*d));
        return out;
    }
    impl* raw = impl_.get();
    if (!(raw->plugin.kinds & SAMBAND_KIND_SINK)) {
        out.assign(ds.size(), call_result{SAMBAND_UNSUPPORTED, "not a sink"});
        return out;
    }
    std::vector<std::shared_ptr<c_delivery>> cds;
    cds.reserve(ds.size());
    {
        std::lock_guard lock(raw->dmu);
        for (const auto& d : ds) {
            cds.push_back(std::make_shared<c_delivery>(d, raw->plugin.abi_version));
            raw->held[d->token] = cds.back();  // alive until the plugin completes it
        }
    }
    out = raw->call_each(
        "deliver", cds.size(),
        [raw, cds](std::size_t i) {
            samband_error err;
            samband_status st = raw->plugin.descriptor->sink->deliver(raw->self, &cds[i]->d, &err);
            return raw->finish(st, err, "deliver");
        },
        raw->opts.call_timeout);
    std::lock_guard lock(raw->dmu);
    for (std::size_t i = 0; i < ds.size(); ++i)
        if (!out[i].ok()) raw->held.erase(ds[i]->token);  // no completion follows a refusal
    return out;
}

bool instance::can_render() const {
    if (remote_) return (remote_->plugin().kinds & SAMBAND_KIND_SINK) && remote_->plugin().renders;
    const auto* s = impl_->plugin.descriptor->sink;
    return (impl_->plugin.kinds & SAMBAND_KIND_SINK) && s && s->render;
}

boost::system::result<rendered, call_result> instance::render(const delivery_ref& d) {
    if (remote_) return remote_->render(d);
    impl* raw = impl_.get();
    if (!can_render()) return call_result{SAMBAND_UNSUPPORTED, "plugin offers no render"};
    auto cd = std::make_shared<c_delivery>(std::make_shared<const delivery_ref>(d),
                                           raw->plugin.abi_version);
    auto out = std::make_shared<samband_render_out>();
    auto r = raw->call(
        "render",
        [raw, cd, out] {
            samband_error err;
            samband_status st =
                raw->plugin.descriptor->sink->render(raw->self, &cd->d, out.get(), &err);
            return raw->finish(st, err, "render");
        },
        raw->opts.call_timeout);
    if (!r.ok()) return r;
    return rendered{out->bytes, out->name};
}

boost::system::result<std::string, call_result> instance::transform(const event_ref& e) {
    if (remote_) return remote_->transform(e);
    impl* raw = impl_.get();
    if (!(raw->plugin.kinds & SAMBAND_KIND_TRANSFORM))
        return call_result{SAMBAND_UNSUPPORTED, "not a transform"};
    auto ce = std::make_shared<c_event>(e, raw->plugin.abi_version);
    auto out = std::make_shared<samband_transform_out>();
    auto r = raw->call(
        "transform",
        [raw, ce, out] {
            samband_error err;
            samband_status st =
                raw->plugin.descriptor->transform->transform(raw->self, &ce->ev.e, out.get(), &err);
            call_result cr = raw->finish(st, err, "transform");
            if (cr.ok() && !out->set)
                cr = {SAMBAND_INTERNAL, "transform returned OK without emitting an event"};
            return cr;
        },
        raw->opts.call_timeout);
    if (!r.ok()) return r;
    return std::move(out->envelope);
}

}  // namespace samband::plugin
