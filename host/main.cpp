// samband: the command line (argv and signals only; everything else lives in samband_core).
#include "admin/cli.hpp"
#include "config/config.hpp"
#include "core/audit_tool.hpp"
#include "core/config_check.hpp"
#include "core/daemon.hpp"
#include "core/preview.hpp"
#include "core/store_tool.hpp"
#include "plugin/check.hpp"
#include "plugin/process.hpp"

#include <CLI/CLI.hpp>

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <iostream>

namespace {

// The daemon's malloc settings, unless GLIBC_TUNABLES sets glibc.malloc itself. glibc's
// defaults give a thread's heap back to the kernel as soon as 128 KB is free at its top, so the
// 8 KB envelopes passing between threads grew and trimmed the heaps over and over (page faults
// and madvise: a tenth of the daemon's CPU at full rate). Keeping 4 MB per heap, in at most 4
// heaps, measured 1.15x delivered/s and 0.87x CPU per event (bench/core/run.py --compare, load
// 2.2) for ~5 MB more peak RSS. At most 8 heaps, not 4: beside a hung destination the threads
// sharing 4 heaps waited on each other's heap locks (futex waits in malloc and free); 8 gave
// 1.06-1.18x delivered/s there and the same peak RSS from 1,000,000 pending (session 14).
void tune_malloc() {
    const char* t = std::getenv("GLIBC_TUNABLES");
    if (t && std::strstr(t, "glibc.malloc.")) return;
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 512 << 10);
    mallopt(M_ARENA_MAX, 8);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "samband " SAMBAND_VERSION
        ": integration engine for Rask psykisk helsehjelp (RPH) in Norwegian municipalities.\n"
        "Routes RPH events between the EPJ, GPs (Norsk Helsenett) and other systems, durably."};
    app.require_subcommand(1);
    app.set_version_flag("--version", SAMBAND_VERSION);
    int exit_code = 0;

    // samband run
    samband::core::daemon_options run_opts;
    auto* run = app.add_subcommand("run", "Run the daemon with a config file");
    run->add_option("-c,--config", run_opts.config_path, "Config file (JSON)")->required();
    run->add_option("--ready-file", run_opts.ready_file,
                    "Write the admin API's host:port here once ready (tests, supervisors)");
    run->callback([&] {
        tune_malloc();
        exit_code = samband::core::run_daemon(run_opts);
    });

    // samband config check
    std::string check_cfg;
    auto* config = app.add_subcommand("config", "Work with config files");
    config->require_subcommand(1);
    auto* config_check =
        config->add_subcommand("check", "Validate a config; names every error by JSON path");
    config_check->add_option("-c,--config", check_cfg, "Config file (JSON)")->required();
    config_check->callback(
        [&] { exit_code = samband::core::run_config_check(check_cfg, std::cout); });

    // samband plugin check
    std::string plugin_path, plugin_cfg, plugin_event;
    auto* plugin = app.add_subcommand("plugin", "Work with plugins");
    plugin->require_subcommand(1);
    auto* plugin_check = plugin->add_subcommand(
        "check", "Conformance kit: load a plugin as the daemon does and run its battery");
    plugin_check->add_option("path", plugin_path, "The plugin (.so)")->required();
    plugin_check->add_option("--config", plugin_cfg, "The plugin's config JSON file");
    plugin_check->add_option("--event", plugin_event,
                             "A sample event envelope for the battery (default: a PHQ-9 score)");
    plugin_check->callback([&] {
        std::optional<std::string> cfg;
        if (!plugin_cfg.empty()) cfg = plugin_cfg;
        std::optional<std::string> ev;
        if (!plugin_event.empty()) ev = plugin_event;
        exit_code = samband::plugin::run_plugin_check(plugin_path, cfg, std::cout, ev);
    });

    // samband plugin-host: the child an isolated endpoint runs in (started by the daemon only).
    int host_fd = -1;
    std::uint64_t host_mem_mb = 0;
    std::string host_plugin;
    auto* plugin_host = app.add_subcommand(
        "plugin-host",
        "Run one plugin in this process for a daemon (internal: the daemon starts it)");
    plugin_host->group("");
    plugin_host->add_option("--socket-fd", host_fd, "The socket to the daemon")->required();
    plugin_host->add_option("--memory-limit-mb", host_mem_mb, "RLIMIT_AS in MiB (0 = none)");
    plugin_host->add_option("path", host_plugin, "The plugin (.so)")->required();
    plugin_host->callback(
        [&] { exit_code = samband::plugin::run_plugin_host(host_fd, host_plugin, host_mem_mb); });

    // samband preview
    samband::core::preview_options pv;
    auto* preview = app.add_subcommand(
        "preview", "Show the exact bytes each destination would get, without storing or sending");
    preview->add_option("-c,--config", pv.config_path, "Config file (JSON)")->required();
    preview->add_option("event", pv.event_path, "Event JSON file")->required();
    preview->add_option("--out", pv.out_dir, "Directory for one file per delivery")->required();
    preview->add_option("--source", pv.source,
                        "Source endpoint to preview as (default: first source)");
    preview->add_option("--event-id", pv.event_id,
                        "Preview as the stored event with this id (ids and values derived from "
                        "it, such as an NHN MsgId, then match what the daemon sends)");
    preview->add_flag("--no-history", pv.no_history,
                      "Let the consent gate see this event alone (default: the treatment's "
                      "stored events too, read-only from the config's store)");
    preview->callback([&] { exit_code = samband::core::run_preview(pv, std::cout, std::cerr); });

    // samband store rotate-key: re-seals the store's records under the current encryption key.
    samband::core::store_tool_options so;
    auto* store_cmd = app.add_subcommand("store", "Store maintenance");
    store_cmd->require_subcommand(1);
    auto* rotate = store_cmd->add_subcommand(
        "rotate-key",
        "Re-seal every stored envelope and refused input under store.encryption.key_id "
        "(resumable; safe beside the running daemon while the old key is under previous)");
    rotate->add_option("-c,--config", so.config_path, "The daemon's config")->required();
    rotate->add_option("--batch", so.batch, "Rows per transaction (default 500)");
    rotate->callback([&] { exit_code = samband::core::run_rotate_key(so, std::cout, std::cerr); });

    // samband audit verify|export: read-only, from the store file (works with the daemon stopped).
    samband::core::audit_options au;
    auto* audit = app.add_subcommand("audit", "Check and export the hash-chained audit log");
    audit->require_subcommand(1);
    auto add_store = [&](CLI::App* c) {
        c->add_option("-c,--config", au.config_path, "The daemon's config (its store is read)");
        c->add_option("--store", au.store_path, "The SQLite store file itself");
    };
    auto* audit_verify = audit->add_subcommand(
        "verify", "Check the hash chain end to end; names the first broken row (exit 1)");
    add_store(audit_verify);
    audit_verify->callback(
        [&] { exit_code = samband::core::run_audit_verify(au, std::cout, std::cerr); });
    auto* audit_export = audit->add_subcommand(
        "export",
        "Write audit rows as JSON lines (with each row's previous hash) and check the chain");
    add_store(audit_export);
    audit_export->add_option("--from", au.from, "First day, yyyy-mm-dd (UTC)");
    audit_export->add_option("--to", au.to, "Last day, yyyy-mm-dd (UTC), included");
    audit_export->add_option("--out", au.out_path, "Write to this file instead of standard output");
    audit_export->callback(
        [&] { exit_code = samband::core::run_audit_export(au, std::cout, std::cerr); });

    // status, deliveries, replay, send, errors: clients of the admin API.
    samband::admin::add_client_commands(app, [&](int code) { exit_code = code; });
    samband::admin::add_token_commands(app, [&](int code) { exit_code = code; });

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        std::cerr << "samband: " << e.what() << "\n";
        return 1;
    }
    return exit_code;
}
