#include "plugin/plugin_host.hpp"

#include "core/log.hpp"

#include <boost/dll/shared_library.hpp>

#include <dlfcn.h>

#include <filesystem>

#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
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
samband_str str(const std::string& s) {
    return samband_str{s.data(), s.size()};
}

// The oldest ABI this host still loads.
constexpr std::uint32_t kMinimumAbi = SAMBAND_ABI_MAKE(1, 0);
constexpr std::uint32_t kMaxStructSize = 1u << 16;

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

    const samband_plugin_descriptor* d = nullptr;
    samband_status st = entry(SAMBAND_ABI_VERSION, &d);
    if (st != SAMBAND_OK)
        return fail("entry point refused host ABI " + version_text(SAMBAND_ABI_VERSION) + " (" +
                    status_name(st) + ")");
    if (!d) return fail("entry point returned no descriptor");
    if (d->struct_size < SAMBAND_V1_0_DESCRIPTOR_SIZE)
        return fail("descriptor struct_size " + std::to_string(d->struct_size) +
                    " is smaller than ABI 1.0's " + std::to_string(SAMBAND_V1_0_DESCRIPTOR_SIZE) +
                    " (truncated struct)");
    if (d->struct_size > kMaxStructSize)
        return fail("descriptor struct_size " + std::to_string(d->struct_size) + " is not sane");
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
    static const std::regex name_re("^[a-z0-9_.-]+$");
    if (!d->name || !std::regex_match(d->name, name_re))
        return fail("descriptor name is missing or not [a-z0-9_.-]+");
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
    if (d->kinds & SAMBAND_KIND_SINK) {
        if (!d->sink) return fail("declares SINK but has no sink table");
        if (d->sink->struct_size < SAMBAND_V1_0_SINK_API_SIZE ||
            d->sink->struct_size > kMaxStructSize)
            return fail("sink table struct_size " + std::to_string(d->sink->struct_size) +
                        " is smaller than ABI 1.0's " + std::to_string(SAMBAND_V1_0_SINK_API_SIZE));
        if (!d->sink->deliver) return fail("missing required callback sink.deliver");
    }
    if (d->kinds & SAMBAND_KIND_TRANSFORM) {
        if (!d->transform) return fail("declares TRANSFORM but has no transform table");
        if (d->transform->struct_size < SAMBAND_V1_0_TRANSFORM_API_SIZE ||
            d->transform->struct_size > kMaxStructSize)
            return fail("transform table struct_size " + std::to_string(d->transform->struct_size) +
                        " is too small");
        if (!d->transform->transform) return fail("missing required callback transform.transform");
    }
    if (d->kinds & SAMBAND_KIND_SOURCE) {
        if (!d->source) return fail("declares SOURCE but has no source table");
        if (d->source->struct_size < SAMBAND_V1_0_SOURCE_API_SIZE ||
            d->source->struct_size > kMaxStructSize)
            return fail("source table struct_size " + std::to_string(d->source->struct_size) +
                        " is too small");
    }
    for (const auto& [p, other] : impl_->by_path) {
        if (other->name == d->name)
            return fail(std::string("plugin name \"") + d->name + "\" is already loaded from " + p);
    }
    auto lp = std::make_unique<loaded_plugin>();
    lp->path = canonical;
    lp->name = d->name;
    lp->version = d->version;
    lp->description = d->description ? d->description : "";
    lp->abi_version = v;
    lp->kinds = d->kinds;
    lp->capabilities = d->capabilities;
    lp->descriptor = d;
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

// The C views of attachments; they point into `refs`, which must outlive them.
std::vector<samband_attachment> to_c(const std::vector<attachment_ref>& refs) {
    std::vector<samband_attachment> out;
    out.reserve(refs.size());
    for (const auto& a : refs) {
        samband_attachment c{};
        c.struct_size = sizeof c;
        c.id = str(a.id);
        c.filename = str(a.filename);
        c.media_type = str(a.media_type);
        c.sha256_hex = str(a.sha256_hex);
        c.size = a.size;
        c.path = str(a.path);
        c.handle = a.handle;
        out.push_back(c);
    }
    return out;
}

// The C view of a delivery, alive from deliver() until the plugin completes it.
struct c_delivery {
    delivery_ref ref;
    std::vector<samband_attachment> atts;
    samband_delivery d{};

    explicit c_delivery(const delivery_ref& r) : ref(r) {
        atts = to_c(ref.event.attachments);
        d.struct_size = sizeof d;
        d.token = ref.token;
        d.delivery_id = str(ref.delivery_id);
        d.event_id = str(ref.event_id);
        d.destination = str(ref.destination);
        d.attempt = ref.attempt;
        d.deadline_unix_ms = ref.deadline_unix_ms;
        d.event.struct_size = sizeof d.event;
        d.event.envelope_json = str(ref.event.envelope_json);
        d.event.attachments = atts.data();
        d.event.attachment_count = atts.size();
    }
};

struct c_event {
    event_ref ref;
    std::vector<samband_attachment> atts;
    samband_event e{};
    explicit c_event(const event_ref& r) : ref(r) {
        atts = to_c(ref.attachments);
        e.struct_size = sizeof e;
        e.envelope_json = str(ref.envelope_json);
        e.attachments = atts.data();
        e.attachment_count = atts.size();
    }
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
        api.struct_size = sizeof api;
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
        worker = std::thread([this] { run(); });
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

    // Runs `fn` on the call thread and waits up to `timeout`. On overrun the instance is stuck
    // until the call returns, and the caller gets RETRY naming the callback.
    call_result call(const char* what, std::function<call_result()> fn,
                     std::chrono::milliseconds timeout) {
        if (stuck.load())
            return {SAMBAND_RETRY, "plugin " + plugin.name + " endpoint " + endpoint +
                                       ": an earlier call is still blocked; " + what +
                                       " not called"};
        auto p = std::make_shared<std::promise<call_result>>();
        auto f = p->get_future();
        {
            std::lock_guard lock(mu);
            queue.push_back([this, p, fn = std::move(fn)] {
                call_result r;
                try {
                    r = fn();
                } catch (...) {
                    r = {SAMBAND_INTERNAL, "host error around the plugin call"};
                }
                stuck.store(false);
                p->set_value(std::move(r));
            });
        }
        cv.notify_one();
        if (f.wait_for(timeout) == std::future_status::ready) return f.get();
        stuck.store(true);
        std::string msg = "plugin " + plugin.name + " endpoint " + endpoint + ": " + what +
                          " blocked past its deadline of " + std::to_string(timeout.count()) +
                          " ms";
        svc.log(endpoint, SAMBAND_LOG_ERROR, msg);
        return {SAMBAND_RETRY, msg};
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
                fn(user, samband_buffer{reinterpret_cast<const uint8_t*>(s->data()), s->size()});
            std::fill(s->begin(), s->end(), '\0');
            return SAMBAND_OK;
        } catch (...) {
            return SAMBAND_INTERNAL;
        }
    }
    static samband_status t_submit(void* ctx, const samband_submission* sub,
                                   samband_submit_done_fn done, void* user) {
        try {
            if (!sub || sub->struct_size < SAMBAND_SIZE_UPTO(samband_submission, attachment_count))
                return SAMBAND_INVALID;
            submission s;
            s.envelope_json = view(sub->envelope_json);
            for (size_t i = 0; i < sub->attachment_count; ++i) {
                const auto& a = sub->attachments[i];
                submission::attachment c;
                c.filename = view(a.filename);
                c.media_type = view(a.media_type);
                c.path = view(a.path);
                if (c.path.empty() && a.bytes.data)
                    c.bytes.assign(reinterpret_cast<const char*>(a.bytes.data), a.bytes.size);
                s.attachments.push_back(std::move(c));
            }
            return with_host(ctx, samband_status{SAMBAND_RETRY}, [&](impl* self) {
                return self->svc.submit(self->endpoint, std::move(s),
                                        [done, user](const submit_result& r) {
                                            if (!done) return;
                                            samband_submit_result c{};
                                            c.struct_size = sizeof c;
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
    static void t_complete(void* ctx, uint64_t token, const samband_completion* c) {
        try {
            completion out;
            if (c) {
                out.status = normalise(c->status);
                out.external_id = view(c->external_id);
                out.message = view(c->message);
            }
            with_host(ctx, 0, [&](impl* self) {
                self->svc.complete(self->endpoint, token, std::move(out));
                return 0;
            });
            impl* self = me(ctx);
            std::lock_guard lock(self->dmu);
            self->held.erase(token);
        } catch (...) {
        }
    }
    static void t_receipt(void* ctx, const samband_receipt* r) {
        try {
            if (!r) return;
            with_host(ctx, 0, [&](impl* self) {
                self->svc.receipt(self->endpoint, view(r->external_id), r->kind, view(r->text));
                return 0;
            });
        } catch (...) {
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

boost::system::result<std::unique_ptr<instance>, std::string> instance::create(
    const loaded_plugin& plugin, std::string endpoint, std::string config_json,
    host_services& services, instance_options opts) {
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
    return impl_->plugin;
}
const std::string& instance::endpoint() const {
    return impl_->endpoint;
}
bool instance::stuck() const {
    return impl_->stuck.load();
}

call_result instance::start() {
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
    impl* raw = impl_.get();
    if (!(raw->plugin.kinds & SAMBAND_KIND_SINK)) return {SAMBAND_UNSUPPORTED, "not a sink"};
    auto cd = std::make_shared<c_delivery>(d);
    {
        std::lock_guard lock(raw->dmu);
        raw->held[d.token] = cd;  // alive until the plugin completes it
    }
    auto r = raw->call(
        "deliver",
        [raw, cd] {
            samband_error err;
            samband_status st = raw->plugin.descriptor->sink->deliver(raw->self, &cd->d, &err);
            return raw->finish(st, err, "deliver");
        },
        raw->opts.call_timeout);
    if (!r.ok()) {
        std::lock_guard lock(raw->dmu);
        raw->held.erase(d.token);  // no completion follows a refused delivery
    }
    return r;
}

bool instance::can_render() const {
    const auto* s = impl_->plugin.descriptor->sink;
    return (impl_->plugin.kinds & SAMBAND_KIND_SINK) && s && s->render;
}

boost::system::result<rendered, call_result> instance::render(const delivery_ref& d) {
    impl* raw = impl_.get();
    if (!can_render()) return call_result{SAMBAND_UNSUPPORTED, "plugin offers no render"};
    auto cd = std::make_shared<c_delivery>(d);
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
    impl* raw = impl_.get();
    if (!(raw->plugin.kinds & SAMBAND_KIND_TRANSFORM))
        return call_result{SAMBAND_UNSUPPORTED, "not a transform"};
    auto ce = std::make_shared<c_event>(e);
    auto out = std::make_shared<samband_transform_out>();
    auto r = raw->call(
        "transform",
        [raw, ce, out] {
            samband_error err;
            samband_status st =
                raw->plugin.descriptor->transform->transform(raw->self, &ce->e, out.get(), &err);
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
