#include "core/audit_tool.hpp"

#include "config/config.hpp"
#include "core/runtime.hpp"
#include "store/audit_chain.hpp"
#include "store/store.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

namespace samband::core {

namespace {

namespace fs = std::filesystem;

// The store to read: a SQLite file, or a PostgreSQL store's connection string (a secret: never
// printed; `name` is how messages name the store).
struct store_source {
    std::string file, conninfo, name;
    bool ok() const { return !file.empty() || !conninfo.empty(); }
};

// The store --store or the config names, or none with the reason written to `err`.
store_source find_store(const audit_options& o, const char* cmd, std::ostream& err) {
    if (!o.store_path.empty()) return {o.store_path, {}, o.store_path};
    if (o.config_path.empty()) {
        err << "samband audit " << cmd << ": give --config (the daemon's config) or --store\n";
        return {};
    }
    auto loaded = config::load_config(o.config_path);
    if (!loaded.cfg) {
        err << config::format_errors(o.config_path, loaded.errors);
        return {};
    }
    const auto& cfg = *loaded.cfg;
    if (cfg.store.kind == "postgresql") {
        store_source s{{}, postgresql_conninfo(cfg), "the PostgreSQL store of " + o.config_path};
        if (s.conninfo.empty())
            err << "samband audit " << cmd << ": the secret \"" << cfg.store.conninfo_secret
                << "\" (the PostgreSQL connection string) is empty or unreadable\n";
        return s;
    }
    fs::path p = cfg.store.path;
    if (p.is_relative()) p = fs::path(cfg.base_dir) / p;
    return {p.string(), {}, p.string()};
}

// Every audit row of the store, oldest first, until `fn` returns false; `why` names a failure.
boost::system::result<void> read_rows(const store_source& s,
                                      const std::function<bool(const store::audit_row&)>& fn,
                                      std::string& why) {
    if (!s.conninfo.empty()) return store::read_audit_rows_pg(s.conninfo, fn, why);
    return store::read_audit_rows(s.file, fn);
}

// The chain check for the store: PostgreSQL's ids come from a sequence, which a rolled-back
// transaction leaves gaps in, so there only the hash chain shows a removed row.
store::audit_chain_check chain_check(const store_source& s) {
    return store::audit_chain_check(s.conninfo.empty());
}

// Milliseconds of 00:00 UTC of `day` (yyyy-mm-dd), or nullopt.
std::optional<std::int64_t> day_ms(const std::string& day) {
    int y = 0, m = 0, d = 0;
    char tail = 0;
    if (day.size() != 10 || std::sscanf(day.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
        return std::nullopt;
    if (m < 1 || m > 12 || d < 1 || d > 31) return std::nullopt;
    std::tm t{};
    t.tm_year = y - 1900;
    t.tm_mon = m - 1;
    t.tm_mday = d;
    std::time_t s = ::timegm(&t);
    std::tm back{};
    ::gmtime_r(&s, &back);
    if (back.tm_mday != d || back.tm_mon != m - 1) return std::nullopt;  // 2026-02-30
    return static_cast<std::int64_t>(s) * 1000;
}

std::string iso_utc(std::int64_t ms) {
    std::time_t s = static_cast<std::time_t>(ms / 1000);
    std::tm t{};
    ::gmtime_r(&s, &t);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                  t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                  static_cast<int>(ms % 1000));
    return buf;
}

void report_broken(const store::audit_chain_check& c, const std::string& file, std::ostream& err) {
    err << "audit chain BROKEN in " << file << " at row " << *c.broken_at() << ": " << c.problem()
        << " (" << c.rows() << " rows before it are intact";
    if (c.rows() > 0) err << ", up to row " << c.last_id();
    err << ")\n";
}

int read_error(const std::string& file, const boost::system::error_code& ec, const std::string& why,
               std::ostream& err) {
    if (ec == boost::system::errc::no_such_file_or_directory)
        err << "samband audit: no store at " << file << (why.empty() ? "" : " (" + why + ")")
            << "\n";
    else
        err << "samband audit: cannot read the audit log of " << file << ": "
            << (why.empty() ? ec.message() : why)
            << " (a store of an older samband is migrated when the daemon starts)\n";
    return 2;
}

}  // namespace

int run_audit_verify(const audit_options& opts, std::ostream& out, std::ostream& err) {
    const store_source src = find_store(opts, "verify", err);
    if (!src.ok()) return 2;
    store::audit_chain_check check = chain_check(src);
    std::string why;
    auto r = read_rows(
        src,
        [&](const store::audit_row& a) {
            return check.add(a.id, a.hash_version, a.at_ms, a.actor, a.action, a.subject, a.detail,
                             a.hash);
        },
        why);
    if (!r) return read_error(src.name, r.error(), why, err);
    if (!check.intact()) {
        report_broken(check, src.name, err);
        return 1;
    }
    out << "audit chain intact: " << check.rows() << " rows";
    if (check.rows() > 0)
        out << " (1 to " << check.last_id() << "); last row " << check.last_id() << " hash "
            << check.last_hash();
    out << "\n";
    return 0;
}

int run_audit_export(const audit_options& opts, std::ostream& out, std::ostream& err) {
    std::optional<std::int64_t> from, to;
    if (!opts.from.empty() && !(from = day_ms(opts.from))) {
        err << "samband audit export: --from " << opts.from << " is not a day (yyyy-mm-dd)\n";
        return 2;
    }
    if (!opts.to.empty()) {
        to = day_ms(opts.to);
        if (!to) {
            err << "samband audit export: --to " << opts.to << " is not a day (yyyy-mm-dd)\n";
            return 2;
        }
        *to += 24LL * 3600 * 1000;  // the whole day
    }
    if (from && to && *from >= *to) {
        err << "samband audit export: --from " << opts.from << " is after --to " << opts.to << "\n";
        return 2;
    }
    const store_source src = find_store(opts, "export", err);
    if (!src.ok()) return 2;
    std::ofstream file_out;
    std::ostream* dst = &out;
    if (!opts.out_path.empty()) {
        file_out.open(opts.out_path, std::ios::binary | std::ios::trunc);
        if (!file_out) {
            err << "samband audit export: cannot write " << opts.out_path << "\n";
            return 2;
        }
        dst = &file_out;
    }
    store::audit_chain_check check = chain_check(src);
    std::int64_t written = 0;
    std::string why;
    auto r = read_rows(
        src,
        [&](const store::audit_row& a) {
            std::string prev = check.last_hash();
            check.add(a.id, a.hash_version, a.at_ms, a.actor, a.action, a.subject, a.detail,
                      a.hash);
            if (to && a.at_ms >= *to) return check.intact();  // only checking from here on
            if (from && a.at_ms < *from) return check.intact();
            rapidjson::StringBuffer buf;
            rapidjson::Writer<rapidjson::StringBuffer> w(buf);
            w.StartObject();
            w.Key("id");
            w.Int64(a.id);
            w.Key("at");
            w.String(iso_utc(a.at_ms));
            w.Key("at_ms");
            w.Int64(a.at_ms);
            w.Key("actor");
            w.String(a.actor);
            w.Key("action");
            w.String(a.action);
            w.Key("subject");
            w.String(a.subject);
            w.Key("detail");
            w.String(a.detail);
            w.Key("hash_version");
            w.Int(a.hash_version);
            w.Key("prev_hash");
            w.String(prev);
            w.Key("hash");
            w.String(a.hash);
            w.EndObject();
            *dst << buf.GetString() << "\n";
            ++written;
            return check.intact();
        },
        why);
    if (!r) return read_error(src.name, r.error(), why, err);
    dst->flush();
    if (!*dst) {
        err << "samband audit export: writing failed\n";
        return 2;
    }
    if (!check.intact()) {
        report_broken(check, src.name, err);
        return 1;
    }
    err << "exported " << written << " audit rows; the chain is intact up to row "
        << check.last_id() << "\n";
    return 0;
}

}  // namespace samband::core
