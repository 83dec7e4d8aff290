#include "core/daemon.hpp"
#include "core/error.hpp"

#include "admin/backend.hpp"
#include "admin/metrics.hpp"
#include "admin/server.hpp"
#include "codec/json.hpp"
#include "config/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/pipeline.hpp"
#include "core/runtime.hpp"
#include "core/services.hpp"
#include "delivery/engine.hpp"
#include "delivery/receipt_window.hpp"
#include "directory/adresseregisteret.hpp"
#include "directory/gp_directory.hpp"
#include "ingest/ingest.hpp"
#include "plugin/plugin_host.hpp"
#include "router/router.hpp"
#include "store/store.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>

namespace samband::core {

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;

void write_ready_file(const std::string& path, const std::string& text) {
    if (path.empty()) return;
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text << "\n";
    }
    fs::rename(tmp, path);
}

class daemon final : public admin::backend {
public:
    explicit daemon(daemon_options opts) : opts_(std::move(opts)) {}

    int run() {
        auto loaded = config::load_config(opts_.config_path);
        if (!loaded.cfg) {
            throw std::runtime_error("config " + opts_.config_path + " has errors:\n" +
                                     config::format_errors(opts_.config_path, loaded.errors));
        }
        cfg_ = std::make_shared<config::config>(std::move(*loaded.cfg));
        apply_log_settings(*cfg_);
        log_.info("start", "samband " SAMBAND_VERSION " starting",
                  {{"config", opts_.config_path}, {"node", cfg_->node.name}});

        // The store first: nothing is accepted before it is open and recovered.
        store_ = open_store(*cfg_, log_);
        store_->on_fatal([this](std::string reason) {
            log_.error("store.fatal", "storage I/O error; exiting for a clean restart: " + reason);
            asio::post(io_, [this] {
                exit_code_ = 3;
                shutdown();
            });
        });
        // The attachment folder's trouble: one alert when it begins, one line when it ends (the
        // store backs off and refuses submits with new attachments meanwhile; docs/operations.md).
        store_->on_blob_state([this](const store::blob_health& h) {
            if (h.trouble) {
                log_.error("store.blob_alert",
                           "ALERT: the attachment folder cannot be written; submits with new "
                           "attachments are refused (the sources keep them and try again) and "
                           "writes are retried with back-off until it recovers: " +
                               h.reason);
            } else {
                log_.warn("store.blob_recovered",
                          "the attachment folder can be written again; submits are accepted",
                          {{"after_s", std::to_string((h.recovered_ms - h.since_ms) / 1000)},
                           {"refused", std::to_string(h.refused)},
                           {"write_errors", std::to_string(h.write_errors)}});
            }
        });
        auto recovered = store_->recover_in_flight();
        if (!recovered)
            throw std::runtime_error("store recovery failed: " + recovered.error().message());
        log_.info("store.recovered", "store recovered",
                  {{"recovered_in_flight", std::to_string(*recovered)}});

        schemas_ = codec::schema_set::load_dir(cfg_->schemas_dir);
        log_.info("schemas", "event schemas loaded",
                  {{"dir", cfg_->schemas_dir}, {"count", std::to_string(schemas_.size())}});
        gp_ = open_gp_directory(*cfg_, log_);
        ar_ = open_receiver_directory(*cfg_, log_);
        ar_destinations_ = receiver_checked_destinations(*cfg_);

        ingest_ = std::make_unique<ingest::ingest>(*store_, schemas_, ingest_options(*cfg_), log_);

        // Plugins read sealed attachments (and PostgreSQL's) from short-lived decrypted copies; a
        // start empties the folder of what a crash left.
        copies_ = std::make_unique<store::blob_copies>(*store_, cfg_->store.attachment_copies);
        engine_ = std::make_unique<delivery::engine>(
            *store_, log_, handles_,
            [this](const std::string& sha) { return open_attachment(sha); });
        services_ = std::make_unique<daemon_services>(log_, *ingest_, *engine_, handles_, *store_,
                                                      secret_sources(*cfg_));

        // An endpoint config its plugin's schema refuses is a config error, named by path.
        if (auto bad = schema_errors(*cfg_); !bad.empty())
            throw std::runtime_error("endpoint configs do not match their plugins' schemas:\n" +
                                     config::format_errors(opts_.config_path, bad));
        // Plugins and endpoints; a plugin that fails to load skips its endpoint, never the host.
        rt_ = build_runtime(*cfg_, registry_, *services_, log_);
        install_routes(*cfg_);
        // A run-once source that is also a sink (nhn: an outbox and an inbox) is one plugin
        // instance, started only on the node holding its lock: deliveries to it wait for that
        // (start_run_once registers it), never reaching an instance that was not started.
        for (auto& [name, ep] : rt_->endpoints) {
            if (ep.inst && (ep.inst->plugin().kinds & SAMBAND_KIND_SINK) && !run_once(name))
                engine_->set_destination(name, ep.inst.get(), ep.pol);
        }
        engine_->set_prepare([this](const store::delivery_row& row, store::event_row& ev) {
            return prepare(row, ev);
        });
        ingest_->set_observers(
            {[this](std::string_view src, std::string_view type) { metrics_.event_in(src, type); },
             [this](std::string_view src, std::string_view) { metrics_.event_rejected(src); },
             [this] { engine_->event_stored(); },
             [this](const std::string& treatment) { regate(treatment); }});
        engine_->set_observers(
            {[this](const std::string& d, store::delivery_state s) {
                 metrics_.delivery_state(d, store::to_string(s));
             },
             [this](const std::string& d) { metrics_.retry(d); },
             [this](const std::string& d, double s) { metrics_.delivery_latency(d, s); },
             [this](const std::string& d, const char* kind) {
                 metrics_.late_completion(d, kind);
             }});
        store_->on_commit([this](const store::commit_info& c) { metrics_.commit(c); });

        start_admin();
        engine_->start();
        // Sinks and transforms first, sources last; a run-once source waits for its lock.
        start_endpoints(*rt_, log_, [this](const std::string& name) { return run_once(name); });
        schedule_run_once(std::chrono::milliseconds(0));
        schedule_retention();
        schedule_receipt_check();

        asio::signal_set signals(io_, SIGTERM, SIGINT, SIGHUP);
        std::function<void(boost::system::error_code, int)> on_signal =
            [&](boost::system::error_code ec, int sig) {
                if (ec) return;
                if (sig == SIGHUP) {
                    reload();
                    signals.async_wait(on_signal);
                    return;
                }
                log_.info("stop", sig == SIGTERM ? "SIGTERM: stopping" : "SIGINT: stopping");
                shutdown();
            };
        signals.async_wait(on_signal);
        ready_.store(true);
        write_ready_file(opts_.ready_file, admin_address_);
        log_.info("ready", "samband is running", {{"admin", admin_address_}});
        io_.run();
        log_.info("stop", "samband stopped", {{"exit", std::to_string(exit_code_)}});
        return exit_code_;
    }

private:
    void apply_log_settings(const config::config& c) {
        log_level l = log_level::info;
        if (parse_log_level(c.log.level, l)) log_.set_level(l);
        log_.set_json(c.log.format == "json");
    }

    static ingest::options ingest_options(const config::config& c) {
        ingest::options io;
        io.lim.max_event_bytes = c.limits.max_event_bytes;
        io.lim.max_attachment_bytes = c.limits.max_attachment_bytes;
        io.lim.max_attachments = c.limits.max_attachments;
        io.allow_synthetic_ids = c.identifiers.allow_synthetic;
        return io;
    }

    // Settings a reload cannot change in a running process, by JSON path. They keep their running
    // values (in `next` too), and the reload says which were not applied.
    static std::vector<std::string> keep_restart_only(const config::config& running,
                                                      config::config& next) {
        std::vector<std::string> kept;
        auto keep = [&](auto& field, const auto& now, const char* path) {
            if (field == now) return;
            kept.push_back(path);
            field = now;
        };
        keep(next.store.kind, running.store.kind, "/store/kind");
        keep(next.store.path, running.store.path, "/store/path");
        keep(next.store.attachment_copies, running.store.attachment_copies,
             "/store/attachment_copies");
        keep(next.store.synchronous, running.store.synchronous, "/store/synchronous");
        keep(next.store.conninfo_secret, running.store.conninfo_secret, "/store/conninfo_secret");
        keep(next.store.node_id, running.store.node_id, "/store/node_id");
        keep(next.store.lease_s, running.store.lease_s, "/store/lease_s");
        keep(next.admin.listen, running.admin.listen, "/admin/listen");
        keep(next.admin.token_file, running.admin.token_file, "/admin/token_file");
        keep(next.admin.tls_cert_file, running.admin.tls_cert_file, "/admin/tls/cert_file");
        keep(next.admin.tls_key_file, running.admin.tls_key_file, "/admin/tls/key_file");
        keep(next.admin.tls_client_ca_file, running.admin.tls_client_ca_file,
             "/admin/tls/client_ca_file");
        keep(next.admin.metrics_open, running.admin.metrics_open, "/admin/metrics_open");
        keep(next.plugin_dirs, running.plugin_dirs, "/plugin_dirs");
        keep(next.schemas_dir, running.schemas_dir, "/schemas_dir");
        keep(next.node.name, running.node.name, "/node/name");
        return kept;
    }

    boost::system::result<store::attachment_file, store::blob_fault> open_attachment(
        const std::string& sha) {
        if (!store_ || !copies_) return {boost::system::in_place_value, store::attachment_file{}};
        std::string path = store_->blob_path(sha);
        if (!path.empty())
            return {boost::system::in_place_value,
                    store::attachment_file{std::move(path), nullptr}};
        return copies_->acquire(sha);
    }

    void install_routes(const config::config& c) {
        auto r = std::make_shared<router::router>(c.routes);
        {
            std::lock_guard lock(mu_);
            router_ = r;
            plans_.clear();
            for (const auto& route : c.routes)
                plans_[route.name] = {route.transforms, route.recipient};
        }
        ingest_->set_routes([r](std::string_view source, const rapidjson::Document& env) {
            std::vector<store::new_delivery> out;
            for (auto& m : r->route(source, env)) {
                bool seen = false;
                for (const auto& d : out) seen = seen || d.destination == m.destination;
                if (seen) continue;  // one delivery per destination, whatever routes match
                store::new_delivery d;
                d.destination = m.destination;
                d.route = m.route;
                out.push_back(std::move(d));
            }
            return out;
        });
    }

    // `ev` is the engine's copy, read for this delivery: its envelope moves into the pipeline.
    delivery::prepared prepare(const store::delivery_row& row, store::event_row& ev) {
        route_plan plan;
        {
            std::lock_guard lock(mu_);
            auto it = plans_.find(row.route);
            if (it != plans_.end()) plan = it->second;
        }
        pipeline_input in;
        for (const auto& a : ev.attachments)
            in.attachments.push_back({a.id, a.filename, a.media_type, a.sha256, {}, a.size, 0});
        if (plan.recipient == "gp") {
            if (!ev.treatment_id.empty()) {
                auto hist = store_->events_of_treatment(ev.treatment_id);
                if (!hist) {
                    delivery::prepared p;
                    p.what = delivery::prepared::action::retry;
                    p.reason = "store read failed: " + hist.error().message();
                    return p;
                }
                for (auto& h : *hist) in.history_json.push_back(std::move(h.envelope_json));
            } else {
                in.history_json.push_back(ev.envelope_json);
            }
            in.overridden = row.overridden;
        }
        in.envelope_json = std::move(ev.envelope_json);
        auto prepared = run_pipeline(
            plan, std::move(in), gp_.get(),
            [this](const std::string& name) { return rt_ ? rt_->instance(name) : nullptr; },
            &schemas_);
        // The receiver must be able to take it (Adresseregisteret), unless an operator overrode.
        if (auto it = ar_destinations_.find(row.destination);
            ar_ && !row.overridden && it != ar_destinations_.end())
            prepared = check_receiver(std::move(prepared), *ar_, it->second);
        // Every gate decision is in the audit log; held/blocked ones come with their state change.
        if (plan.recipient == "gp" && prepared.what == delivery::prepared::action::send)
            store_->audit("gate", "gate.send", "delivery:" + std::to_string(row.id),
                          prepared.reason);
        return prepared;
    }

    void start_admin() {
        admin::server_options ao;
        ao.listen = cfg_->admin.listen;
        ao.token_file = cfg_->admin.token_file;
        ao.metrics_open = cfg_->admin.metrics_open;
        ao.log = &log_;
        ao.tls = {cfg_->admin.tls_cert_file, cfg_->admin.tls_key_file,
                  cfg_->admin.tls_client_ca_file};
        auto srv = std::make_shared<admin::server>(ao, *this);
        admin_address_ = srv->address();
        srv->start();
        admin_ = srv;
        log_.info("admin", "admin API listening", {{"address", admin_address_}});
    }
    void stop_admin() {
        if (admin_) admin_->stop();
    }

    // ---- admin::backend ----
    store::store& store() override { return *store_; }
    bool ready(std::string& why) override {
        if (!ready_.load()) {
            why = stopping_ ? "stopping" : "starting";
            return false;
        }
        return true;
    }
    std::string metrics_text() override { return metrics_.render(*store_); }
    std::vector<admin::endpoint_info> endpoints() override {
        std::vector<admin::endpoint_info> out;
        engine_->run_sync([&] {
            for (const auto& [name, ep] : rt_->endpoints) {
                admin::endpoint_info e;
                e.name = name;
                e.plugin = ep.inst ? ep.inst->plugin().name : ep.plugin_ref;
                e.version = ep.inst ? ep.inst->plugin().version : "";
                e.kinds = ep.inst ? ep.inst->plugin().kinds : 0;
                e.stuck = ep.inst && ep.inst->stuck();
                std::string quarantine = ep.inst ? ep.inst->quarantined() : std::string();
                e.state = !ep.inst              ? "failed"
                          : !quarantine.empty() ? "quarantined"
                          : e.stuck             ? "stuck"
                                                : "running";
                e.failure = !quarantine.empty() ? quarantine : ep.failure;
                out.push_back(std::move(e));
            }
        });
        return out;
    }
    std::vector<admin::plugin_info> plugins() override {
        std::vector<admin::plugin_info> out;
        for (const auto* p : registry_.list())
            out.push_back({p->name, p->version, p->description, p->path, p->abi_version, p->kinds,
                           p->capabilities});
        return out;
    }
    core::result<void> retry_delivery(std::int64_t id, const std::string& actor,
                                      const std::string& reason) override {
        auto d = store_->get_delivery(id);
        if (!d) return from_store(d.error(), "store read failed");
        if (!*d) return error{error_kind::not_found, "no delivery " + std::to_string(id)};
        auto st = (*d)->state;
        if (st == store::delivery_state::blocked)
            return error{error_kind::conflict,
                         "delivery " + std::to_string(id) +
                             " is blocked by the consent gate; only an override (with a reason) "
                             "can send it"};
        if (st != store::delivery_state::dead && st != store::delivery_state::failed &&
            st != store::delivery_state::held)
            return error{error_kind::conflict,
                         "delivery " + std::to_string(id) + " is " +
                             std::string(store::to_string(st)) +
                             "; only dead, failed or held deliveries can be retried"};
        return set_pending(id, actor, "retry by " + actor + ": " + reason, false);
    }
    core::result<void> override_delivery(std::int64_t id, const std::string& actor,
                                         const std::string& reason) override {
        auto d = store_->get_delivery(id);
        if (!d) return from_store(d.error(), "store read failed");
        if (!*d) return error{error_kind::not_found, "no delivery " + std::to_string(id)};
        auto st = (*d)->state;
        if (st != store::delivery_state::blocked && st != store::delivery_state::held)
            return error{error_kind::conflict,
                         "delivery " + std::to_string(id) + " is " +
                             std::string(store::to_string(st)) +
                             "; only blocked or held deliveries can be overridden"};
        log_.warn("gate.override", "consent gate overridden by an operator",
                  {{"delivery", std::to_string(id)}, {"actor", actor}, {"reason", reason}});
        return set_pending(id, actor, "override by " + actor + ": " + reason, true);
    }
    core::result<std::size_t> replay(const std::string& destination, std::int64_t since_ms,
                                     const std::string& actor) override {
        auto n = store_->replay(destination, since_ms, actor);
        if (!n) return from_store(n.error(), "store error");
        engine_->kick();
        return *n;
    }
    void submit(plugin::submission sub,
                std::function<void(const plugin::submit_result&)> done) override {
        ingest_->submit("api", std::move(sub), std::move(done));
    }

    // A consent change: held and blocked GP deliveries of the treatment go back through the gate.
    void regate(const std::string& treatment) {
        auto ds = store_->deliveries_of_treatment(treatment);
        if (!ds) return;
        std::vector<store::delivery_update> ups;
        for (const auto& d : *ds) {
            if (d.state != store::delivery_state::held && d.state != store::delivery_state::blocked)
                continue;
            store::delivery_update u;
            u.delivery_id = d.id;
            u.state = store::delivery_state::pending;
            u.reason = "consent changed; the gate decides again";
            u.actor = "gate";
            ups.push_back(u);
        }
        if (ups.empty()) return;
        log_.info("gate.recheck", "consent changed; gated deliveries re-evaluate",
                  {{"count", std::to_string(ups.size())}});
        store_->update(std::move(ups), [this](boost::system::error_code) { engine_->kick(); });
    }

    core::result<void> set_pending(std::int64_t id, const std::string& actor,
                                   const std::string& reason, bool override_gate) {
        store::delivery_update u;
        u.delivery_id = id;
        u.state = store::delivery_state::pending;
        u.reason = reason;
        u.actor = actor;
        u.override_gate = override_gate;  // a typed fact the gate reads (and an audit row)
        u.renew_attempts = true;          // an operator's retry gets a fresh attempt budget
        std::promise<boost::system::error_code> p;
        auto f = p.get_future();
        store_->update({u}, [&p](boost::system::error_code ec) { p.set_value(ec); });
        auto ec = f.get();
        if (ec) return from_store(ec, "store error");
        engine_->kick();
        return {};
    }

    // Endpoint configs that break their plugin's schema (a plugin that is missing or does not
    // load is not one: that endpoint is skipped and logged, the host runs on).
    std::vector<config::config_error> schema_errors(const config::config& c) {
        std::vector<config::config_error> bad;
        for (auto& e : check_endpoint_configs(c, registry_))
            if (e.path.size() < 7 || e.path.compare(e.path.size() - 7, 7, "/plugin") != 0)
                bad.push_back(std::move(e));
        return bad;
    }

    void reload() {
        log_.info("reload", "SIGHUP: reloading config", {{"config", opts_.config_path}});
        auto loaded = config::load_config(opts_.config_path);
        if (!loaded.cfg) {
            log_.error("reload", "reload refused; the running config stays",
                       {{"errors", config::format_errors(opts_.config_path, loaded.errors)}});
            return;
        }
        auto next = std::make_shared<config::config>(std::move(*loaded.cfg));
        auto kept = keep_restart_only(*cfg_, *next);
        // A changed GP directory is opened before anything live changes.
        std::unique_ptr<directory::gp_directory> gp_next;
        bool gp_changed = next->gp_directory != cfg_->gp_directory;
        if (gp_changed) {
            try {
                gp_next = open_gp_directory(*next, log_);
            } catch (const std::exception& e) {
                log_.error("reload", "reload refused; the running config stays",
                           {{"errors", std::string("/gp_directory: ") + e.what()}});
                return;
            }
        }
        // So is a changed Adresseregisteret check.
        std::unique_ptr<directory::receiver_directory> ar_next;
        bool ar_changed = next->adresseregisteret != cfg_->adresseregisteret;
        if (ar_changed) {
            try {
                ar_next = open_receiver_directory(*next, log_);
            } catch (const std::exception& e) {
                log_.error("reload", "reload refused; the running config stays",
                           {{"errors", std::string("/adresseregisteret: ") + e.what()}});
                return;
            }
        }
        if (auto bad = schema_errors(*next); !bad.empty()) {
            log_.error("reload", "reload refused; the running config stays",
                       {{"errors", config::format_errors(opts_.config_path, bad)}});
            return;
        }
        // Build new instances for added or changed endpoints before touching anything live.
        auto changes = plan_endpoint_changes(*rt_, *next);
        std::string why;
        auto fresh = create_endpoints(changes.create, *next, registry_, *services_, log_, why);
        if (!why.empty()) {
            log_.error("reload", "reload refused; the running config stays", {{"errors", why}});
            return;
        }
        // Sinks and transforms start now; new sources only once their routes are installed.
        std::vector<std::string> new_sources;
        for (auto& [name, ep] : fresh) {
            if (ep.inst->plugin().kinds & SAMBAND_KIND_SOURCE) {
                new_sources.push_back(name);
                continue;
            }
            auto st = ep.inst->start();
            if (!st.ok()) {
                log_.error("reload", "reload refused; the running config stays",
                           {{"errors", "endpoint " + name + ": start failed: " + st.message}});
                return;
            }
        }
        // Swap: engine destinations on the engine thread while no worker uses an instance, then
        // routes, then retire old ones.
        std::vector<std::unique_ptr<plugin::instance>> retired;
        engine_->run_quiet([&] {
            for (const auto& name : changes.remove) engine_->remove_destination(name);
            for (auto& [name, ep] : fresh) {
                auto old = rt_->endpoints.find(name);
                if (old != rt_->endpoints.end() && old->second.inst)
                    retired.push_back(std::move(old->second.inst));
                rt_->endpoints[name] = std::move(ep);
            }
            for (const auto& name : changes.remove) {
                auto old = rt_->endpoints.find(name);
                if (old != rt_->endpoints.end()) {
                    if (old->second.inst) retired.push_back(std::move(old->second.inst));
                    rt_->endpoints.erase(old);
                }
            }
            for (auto& [name, ep] : rt_->endpoints) {
                auto cit = next->endpoints.find(name);
                if (cit != next->endpoints.end()) ep.pol = to_policy(cit->second.policy);
                if (ep.inst && (ep.inst->plugin().kinds & SAMBAND_KIND_SINK) &&
                    (!run_once(name) || run_once_locks_.count(name)))
                    engine_->set_destination(name, ep.inst.get(), ep.pol);
            }
            if (gp_changed) gp_ = std::move(gp_next);  // no prepare runs while we swap
            if (ar_changed) ar_ = std::move(ar_next);
            ar_destinations_ = receiver_checked_destinations(*next);
        });
        install_routes(*next);
        apply_log_settings(*next);
        ingest_->set_options(ingest_options(*next));
        {
            std::lock_guard lock(mu_);
            cfg_ = next;
        }
        for (auto& inst : retired) inst->stop();
        std::string failed_sources;
        for (const auto& name : new_sources) {
            run_once_stopped_.erase(name);                                 // a fresh instance
            if (run_once(name) && !run_once_locks_.count(name)) continue;  // waits for its lock
            auto& ep = rt_->endpoints[name];
            auto st = ep.inst->start();
            if (!st.ok()) {
                ep.failure = "start failed: " + st.message;
                failed_sources += (failed_sources.empty() ? "" : "; ") + ("/endpoints/" + name) +
                                  ": start failed: " + st.message;
            }
        }
        engine_->kick();
        std::string not_applied;
        for (const auto& p : kept) not_applied += (not_applied.empty() ? "" : ", ") + p;
        if (!failed_sources.empty())
            log_.error("reload", "reload applied, but a new source did not start",
                       {{"errors", failed_sources}});
        log_.info(
            "reload",
            kept.empty() ? "reload applied" : "reload applied except settings that need a restart",
            {{"endpoints", std::to_string(rt_->endpoints.size())},
             {"routes", std::to_string(next->routes.size())},
             {"needs_restart", not_applied}});
        if (!kept.empty())
            log_.warn("reload", "these settings need a restart and keep their running values",
                      {{"paths", not_applied}});
    }

    void schedule_retention() {
        retention_.expires_after(std::chrono::seconds(10));
        retention_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;
            std::int64_t days = cfg_->store.retention_days;
            auto n = store_->prune(now_ms() - days * 86400000LL);
            if (n && *n > 0)
                log_.info("retention", "pruned delivered events", {{"count", std::to_string(*n)}});
            retention_.expires_after(std::chrono::hours(1));
            schedule_retention_next();
        });
    }
    void schedule_retention_next() {
        retention_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;
            schedule_retention();
        });
    }

    // A source that must run on one node at a time (postgresql store, `run_once`, the default):
    // it runs on the node holding its lock in the store.
    bool run_once(const std::string& name) const {
        if (cfg_->store.kind != "postgresql") return false;
        auto c = cfg_->endpoints.find(name);
        if (c == cfg_->endpoints.end() || !c->second.run_once) return false;
        auto ep = rt_->endpoints.find(name);
        return ep != rt_->endpoints.end() && ep->second.inst &&
               (ep->second.inst->plugin().kinds & SAMBAND_KIND_SOURCE);
    }

    // Every second: take the lock of each run-once source this node does not run and start it;
    // a source whose lock was lost (the database session ended) is taken again at once or, when
    // another node has it now, stopped here (a fresh instance starts if the lock comes back).
    void schedule_run_once(std::chrono::milliseconds after) {
        run_once_timer_.expires_after(after);
        run_once_timer_.async_wait([this](boost::system::error_code ec) {
            if (ec || stopping_) return;
            for (auto& [name, ep] : rt_->endpoints) {
                if (!run_once(name)) continue;
                auto held = run_once_locks_.find(name);
                if (held != run_once_locks_.end() && held->second->held()) continue;
                bool was_running = held != run_once_locks_.end();
                if (was_running) run_once_locks_.erase(held);
                auto lock = store_->try_run_once("source:" + name);
                if (!lock) {
                    if (was_running) {
                        log_.warn("source.run_once",
                                  "lost the lock of a run-once source; stopping it on this node",
                                  {{"endpoint", name}});
                        // A named copy: clang 14 cannot capture a structured binding.
                        if (ep.inst->plugin().kinds & SAMBAND_KIND_SINK)
                            engine_->run_quiet(
                                [&, endpoint = name] { engine_->remove_destination(endpoint); });
                        ep.inst->stop();
                        run_once_stopped_.insert(name);
                    }
                    continue;
                }
                if (!was_running && !start_run_once(name, ep)) continue;
                run_once_locks_[name] = std::move(lock);
            }
            schedule_run_once(std::chrono::seconds(1));
        });
    }
    bool start_run_once(const std::string& name, live_endpoint& ep) {
        if (run_once_stopped_.count(name)) {
            // A stopped instance does not start again: a fresh one replaces it.
            std::string why;
            auto fresh = create_endpoints({name}, *cfg_, registry_, *services_, log_, why);
            if (!why.empty() || !fresh.count(name) || !fresh[name].inst) {
                log_.error("source.run_once", "cannot create the source again: " + why,
                           {{"endpoint", name}});
                return false;
            }
            std::unique_ptr<plugin::instance> old;
            engine_->run_quiet([&] {
                old = std::move(ep.inst);
                ep = std::move(fresh[name]);
                // An endpoint that is also a sink (the file plugin's outbox): the engine holds
                // no pointer to the old instance when it is destroyed (the fresh one is
                // registered once started).
                engine_->remove_destination(name);
            });
            run_once_stopped_.erase(name);
        }
        auto st = ep.inst->start();
        if (!st.ok()) {
            ep.failure = "start failed: " + st.message;
            log_.error("plugin.start", ep.failure, {{"endpoint", name}});
            return false;
        }
        if (ep.inst->plugin().kinds & SAMBAND_KIND_SINK)
            engine_->run_quiet([&] { engine_->set_destination(name, ep.inst.get(), ep.pol); });
        log_.info("source.run_once", "this node holds the source's lock and runs it",
                  {{"endpoint", name}, {"node_id", cfg_->store.node_id}});
        return true;
    }

    // No receipt within the protocol's window (Apprec: 96 h) raises an alert: one error log line,
    // an audit row and a metric per delivery, for sinks that report receipts.
    void schedule_receipt_check() {
        std::int64_t min_window = 0;
        for (const auto& [name, ep] : rt_->endpoints) {
            if (!ep.inst || !(ep.inst->plugin().capabilities & SAMBAND_CAP_RECEIPTS)) continue;
            if (min_window == 0 || ep.pol.receipt_window_s < min_window)
                min_window = ep.pol.receipt_window_s;
        }
        if (min_window == 0) return;
        auto every = std::chrono::seconds(std::clamp<std::int64_t>(min_window / 4, 1, 60));
        receipts_.expires_after(every);
        receipts_.async_wait([this](boost::system::error_code ec) {
            if (ec || stopping_) return;
            check_receipts(now_ms());
            schedule_receipt_check();
        });
    }

    void check_receipts(std::int64_t now) {
        for (const auto& [name, ep] : rt_->endpoints) {
            if (!ep.inst || !(ep.inst->plugin().capabilities & SAMBAND_CAP_RECEIPTS)) continue;
            auto rows = delivery::overdue_receipts(*store_, name, ep.pol.receipt_window_s, now);
            if (!rows) continue;
            for (const auto& r : receipt_alerts_.fresh(std::move(*rows))) {
                std::string why = "no receipt within " + std::to_string(ep.pol.receipt_window_s) +
                                  " s of delivery (external id " + r.external_id + ")";
                log_.error("receipt.overdue", why,
                           {{"delivery", std::to_string(r.id)},
                            {"event", r.event_id},
                            {"endpoint", name}});
                store_->audit("engine", "receipt.overdue", "delivery:" + std::to_string(r.id), why);
                metrics_.receipt_overdue(name);
            }
        }
    }

    void shutdown() {
        if (stopping_) return;
        stopping_ = true;
        ready_.store(false);
        retention_.cancel();
        receipts_.cancel();
        run_once_timer_.cancel();
        // 1. Stop intake: sources stop, later submits get RETRY.
        ingest_->stop_intake();
        stop_endpoints(*rt_, SAMBAND_KIND_SOURCE, log_);
        // 2. Finish in-flight deliveries (or hand them back to pending).
        engine_->stop_dispatch(std::chrono::seconds(10));
        // 3. Stop sinks and transforms; flush the store.
        stop_endpoints(*rt_, SAMBAND_KIND_SINK | SAMBAND_KIND_TRANSFORM, log_);
        store_->flush();
        engine_->shutdown();
        stop_admin();
        io_.stop();
    }

    daemon_options opts_;
    logger log_;
    asio::io_context io_;
    asio::steady_timer retention_{io_};
    asio::steady_timer receipts_{io_};
    asio::steady_timer run_once_timer_{io_};
    std::map<std::string, std::unique_ptr<store::run_once_lock>> run_once_locks_;  // io_ thread
    std::set<std::string> run_once_stopped_;  // run-once sources stopped after losing their lock
    delivery::receipt_alerts receipt_alerts_;
    std::mutex mu_;
    std::shared_ptr<config::config> cfg_;
    std::unique_ptr<store::store> store_;
    std::unique_ptr<store::blob_copies> copies_;  // after store_: destroyed before it
    codec::schema_set schemas_;
    std::unique_ptr<directory::gp_directory> gp_;
    std::unique_ptr<directory::receiver_directory> ar_;  // null: no receiver check
    // Destinations the receiver check applies to, each with its receiver_message_types.
    std::map<std::string, std::map<std::string, std::string>> ar_destinations_;
    std::unique_ptr<ingest::ingest> ingest_;
    delivery::attachment_handles handles_;
    std::unique_ptr<delivery::engine> engine_;
    std::unique_ptr<daemon_services> services_;
    plugin::registry registry_;
    std::unique_ptr<runtime> rt_;
    std::shared_ptr<router::router> router_;
    std::map<std::string, route_plan> plans_;
    std::string admin_address_;
    std::shared_ptr<admin::server> admin_;
    admin::metrics metrics_;
    std::atomic<bool> ready_{false};
    bool stopping_ = false;
    int exit_code_ = 0;
};

// Process-wide: made before the daemon opens its store (the daemon's process only; tests and
// tools keep SQLite's defaults). SQLite counted every allocation of every connection under one
// global mutex, for sqlite3_memory_used, which samband never reads: the writer, the
// checkpointer and the readers took it for each allocation (about 3 % of the daemon's CPU at full
// rate). Only possible before SQLite initialises; refused, and harmless, after.
void configure_sqlite() {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

}  // namespace

int run_daemon(const daemon_options& opts) {
    configure_sqlite();
    // Relative paths in endpoint configs (inboxes, outboxes) are relative to the config file.
    daemon_options o = opts;
    if (!o.ready_file.empty()) o.ready_file = fs::absolute(o.ready_file).string();
    fs::path cfg = fs::absolute(o.config_path);
    o.config_path = cfg.string();
    std::error_code ec;
    fs::current_path(cfg.parent_path(), ec);
    if (ec)
        throw std::runtime_error("cannot enter the config directory " + cfg.parent_path().string());
    daemon d(o);
    return d.run();
}

}  // namespace samband::core
