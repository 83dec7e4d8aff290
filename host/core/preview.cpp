#include "core/preview.hpp"

#include "codec/json.hpp"
#include "config/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/pipeline.hpp"
#include "core/runtime.hpp"
#include "ingest/ingest.hpp"
#include "router/router.hpp"
#include "store/store.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

namespace samband::core {

namespace {

namespace fs = std::filesystem;

// Host services for preview: nothing is stored or sent; attachments are read from files.
class preview_services final : public plugin::host_services {
public:
    explicit preview_services(logger& log) : log_(log) {}
    std::uint64_t add_file(const std::string& path) { return files_.add(path); }
    bool log_enabled(std::string_view, samband_log_level l) override {
        return log_.enabled(static_cast<log_level>(std::clamp(l, 0, 4)));
    }
    void log(std::string_view ep, samband_log_level l, std::string_view m) override {
        log_.log(static_cast<log_level>(std::clamp(l, 0, 4)), "plugin", m, {{"endpoint", ep}});
    }
    std::optional<std::string> secret(std::string_view, std::string_view) override {
        return std::nullopt;  // preview never needs to authenticate anywhere
    }
    samband_status submit(std::string_view, plugin::submission,
                          std::function<void(const plugin::submit_result&)>) override {
        return SAMBAND_RETRY;
    }
    void complete(std::string_view, std::uint64_t, plugin::completion) override {}
    void receipt(std::string_view, std::string_view, std::int32_t, std::string_view) override {}
    boost::system::result<std::size_t> read_attachment(std::uint64_t handle, std::uint64_t offset,
                                                       std::uint8_t* out,
                                                       std::size_t cap) override {
        return files_.read(handle, offset, out, cap);
    }

private:
    logger& log_;
    plugin::attachment_files files_;
};

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

int run_preview(const preview_options& opts, std::ostream& out, std::ostream& err) {
    fs::path event_path = fs::absolute(opts.event_path);
    fs::path out_dir = fs::absolute(opts.out_dir);
    auto loaded = config::load_config(opts.config_path);
    if (!loaded.cfg) {
        err << config::format_errors(opts.config_path, loaded.errors);
        return 2;
    }
    const config::config& cfg = *loaded.cfg;
    std::error_code ec;
    fs::current_path(cfg.base_dir, ec);
    if (!fs::exists(event_path)) {
        err << "samband preview: no event file " << event_path << "\n";
        return 1;
    }
    logger log(log_level::warn);
    log.set_sink(stderr);

    codec::schema_set schemas = codec::schema_set::load_dir(cfg.schemas_dir);
    ingest::options io;
    io.lim.max_event_bytes = cfg.limits.max_event_bytes;
    io.lim.max_attachment_bytes = cfg.limits.max_attachment_bytes;
    io.lim.max_attachments = cfg.limits.max_attachments;
    io.allow_synthetic_ids = cfg.identifiers.allow_synthetic;

    // Attachments named in the event (attachments[].file, relative to the event file).
    std::string text = read_all(event_path);
    std::vector<store::attachment_input> atts;
    if (auto raw = codec::parse_json(text); raw && raw->IsObject() &&
                                            raw->HasMember("attachments") &&
                                            (*raw)["attachments"].IsArray()) {
        for (auto& a : (*raw)["attachments"].GetArray()) {
            if (!a.IsObject() || !a.HasMember("file") || !a["file"].IsString()) continue;
            store::attachment_input in;
            in.path = (event_path.parent_path() / a["file"].GetString()).string();
            in.meta.filename = a.HasMember("filename") && a["filename"].IsString()
                                   ? a["filename"].GetString()
                                   : fs::path(in.path).filename().string();
            in.meta.media_type = a.HasMember("media_type") && a["media_type"].IsString()
                                     ? a["media_type"].GetString()
                                     : "";
            atts.push_back(std::move(in));
        }
    }
    plugin::registry reg;
    // The event is previewed as coming from --source, else from the first source endpoint.
    std::string source = opts.source;
    for (auto it = cfg.endpoints.begin(); source.empty() && it != cfg.endpoints.end(); ++it) {
        std::string why;
        std::string file = find_plugin_file(cfg, it->second.plugin, reg, why);
        if (file.empty()) continue;
        auto lp = reg.load(file);
        bool destination = false;  // a source+sink plugin used as a destination is no source here
        for (const auto& r : cfg.routes)
            for (const auto& t : r.to) destination = destination || t == it->first;
        if (lp && ((*lp)->kinds & SAMBAND_KIND_SOURCE) && !destination) source = it->first;
    }
    if (source.empty()) source = "preview";
    out << "preview of " << event_path.filename().string() << " as coming from endpoint " << source
        << "\n";
    auto doc = ingest::validate_envelope(schemas, io, source, text, &atts);
    if (!doc) {
        out << "INVALID  the event would be refused: " << doc.error() << "\n";
        return 1;
    }
    if (!opts.event_id.empty()) {
        // As the stored event with this id (ingest assigns ids; a sink may derive from them,
        // e.g. the nhn MsgId).
        (*doc)["id"].SetString(opts.event_id.c_str(),
                               static_cast<rapidjson::SizeType>(opts.event_id.size()),
                               doc->GetAllocator());
    } else {
        out << "event id: " << codec::string_at(*doc, "/id")
            << " (made up: ingest assigns the id, so ids derived from it, such as an NHN MsgId, "
               "will differ; --event-id previews as a stored event)\n";
    }
    router::router rt(cfg.routes);
    auto matches = rt.route(source, *doc);
    if (matches.empty()) {
        out << "NO ROUTE  no route matches this event (type " << codec::string_at(*doc, "/type")
            << ", source " << source << ")\n";
        return 0;
    }
    std::unique_ptr<directory::gp_directory> gp = open_gp_directory(cfg, log);
    preview_services svc(log);
    // Only the endpoints the matching routes use, created but never started: nothing is sent.
    std::map<std::string, std::unique_ptr<plugin::instance>> instances;
    auto get = [&](const std::string& name) -> plugin::instance* {
        if (auto it = instances.find(name); it != instances.end()) return it->second.get();
        auto cit = cfg.endpoints.find(name);
        if (cit == cfg.endpoints.end()) return nullptr;
        std::string why;
        std::string file = find_plugin_file(cfg, cit->second.plugin, reg, why);
        if (file.empty()) {
            err << "endpoint " << name << ": " << why << "\n";
            return nullptr;
        }
        auto lp = reg.load(file);
        if (!lp) {
            err << "endpoint " << name << ": " << lp.error().reason << "\n";
            return nullptr;
        }
        auto inst = plugin::instance::create(**lp, name, cit->second.config_json, svc);
        if (!inst) {
            err << inst.error() << "\n";
            return nullptr;
        }
        return (instances[name] = std::move(*inst)).get();
    };

    fs::create_directories(out_dir);
    std::string envelope = codec::to_json(*doc);
    std::vector<plugin::attachment_ref> refs;
    for (const auto& a : atts)
        refs.push_back({a.meta.id, a.meta.filename, a.meta.media_type, a.meta.sha256, a.path,
                        a.meta.size, svc.add_file(a.path)});
    // The treatment's history, as the daemon's gate sees it: the stored events of the treatment
    // (read-only, safe beside a running daemon), with this event last unless already stored.
    std::vector<std::string> history;
    const std::string treatment(codec::string_at(*doc, "/data/treatment_id"));
    const std::string event_id(codec::string_at(*doc, "/id"));
    if (!treatment.empty() && !opts.no_history) {
        const bool pg = cfg.store.kind == "postgresql";
        const std::string where = pg ? "the PostgreSQL store" : cfg.store.path;
        std::string why;
        boost::system::result<std::optional<std::vector<std::string>>> h =
            std::optional<std::vector<std::string>>();
        auto keys = store_keys(cfg);
        if (pg) {
            const std::string conninfo = postgresql_conninfo(cfg);
            if (conninfo.empty()) {
                err << "samband preview: the secret \"" << cfg.store.conninfo_secret
                    << "\" (the PostgreSQL connection string) is empty or unreadable "
                       "(--no-history previews the event alone)\n";
                return 1;
            }
            h = store::read_treatment_history_pg(conninfo, treatment, keys.get(), why);
        } else {
            h = store::read_treatment_history(cfg.store.path, treatment, keys.get());
        }
        if (!h) {
            err << "samband preview: cannot read treatment " << treatment << "'s history from "
                << (pg ? "" : "the store ") << where << ": "
                << (why.empty() ? h.error().message() : why)
                << " (--no-history previews the event alone)\n";
            return 1;
        }
        if (*h) {
            history = std::move(**h);
            out << "history: " << history.size() << " stored event(s) of treatment " << treatment
                << " from " << where << " (read-only)\n";
        } else {
            out << "history: none (no store " << (pg ? "in " : "at ") << where << ")\n";
        }
    } else if (!treatment.empty()) {
        out << "history: none (--no-history)\n";
    }
    bool stored = false;
    for (const auto& h : history)
        if (auto d = codec::parse_json(h);
            d && d->IsObject() && codec::string_at(*d, "/id") == event_id)
            stored = true;
    if (!stored) history.push_back(envelope);

    int status = 0;
    int n = 0;
    for (const auto& m : matches) {
        const config::route* route = nullptr;
        for (const auto& r : cfg.routes)
            if (r.name == m.route) route = &r;
        route_plan plan{route->transforms, route->recipient};
        pipeline_input in;
        in.envelope_json = envelope;
        in.attachments = refs;
        if (plan.recipient == "gp") in.history_json = history;  // as the daemon's prepare
        auto prep = run_pipeline(plan, std::move(in), gp.get(), get, &schemas);
        using act = delivery::prepared::action;
        if (prep.what == act::hold) {
            out << "HELD     " << m.destination << " (route " << m.route << "): " << prep.reason
                << "\n";
            continue;
        }
        if (prep.what == act::block) {
            out << "BLOCKED  " << m.destination << " (route " << m.route << "): " << prep.reason
                << "\n";
            continue;
        }
        if (prep.what != act::send) {
            out << "FAILED   " << m.destination << " (route " << m.route << "): " << prep.reason
                << "\n";
            status = 1;
            continue;
        }
        plugin::instance* sink = get(m.destination);
        if (!sink) {
            out << "FAILED   " << m.destination << ": the sink cannot be loaded\n";
            status = 1;
            continue;
        }
        plugin::delivery_ref ref;
        ref.token = 0;
        ref.delivery_id = "preview-" + std::to_string(++n);
        ref.event_id = std::string(codec::string_at(*doc, "/id"));
        ref.destination = m.destination;
        ref.attempt = 1;
        ref.deadline_unix_ms = now_ms() + 30000;
        ref.event = prep.event;
        std::string name, bytes, note;
        if (sink->can_render()) {
            auto r = sink->render(ref);
            if (!r) {
                out << "FAILED   " << m.destination << ": render: " << r.error().message << "\n";
                status = 1;
                continue;
            }
            bytes = r->bytes;
            std::string ext = fs::path(r->name).extension().string();
            name = m.destination + (ext.empty() ? ".out" : ext);
        } else {
            bytes = ref.event.envelope_json;
            name = m.destination + ".event.json";
            note = " (the sink offers no render: this is the event it would get)";
        }
        std::ofstream f(out_dir / name, std::ios::binary | std::ios::trunc);
        f << bytes;
        out << "SEND     " << m.destination << " (route " << m.route << ") → "
            << (out_dir / name).string() << " (" << bytes.size() << " bytes)" << note << "\n";
    }
    return status;
}

}  // namespace samband::core
