// CSV import parsed and validated, without the commit (issue 14's goal names exactly this): the
// real csv plugin, loaded through the host's plugin loader, imports a sheet from its inbox; each
// row it submits goes through the host's ABI submit and is validated by the host's own ingest
// validation (ingest::validate_envelope with the daemon's schema set: the envelope and event
// schemas, the RPH score checks, calendar dates, the fødselsnummer check, normalisation) and is
// answered at once instead of being stored. Prints one JSON object: rows, seconds, rows_per_s
// (best of 3 imports), validated, refused.
// Usage: bench_csv_validate PLUGIN.so SCHEMAS_DIR [ROWS]
#include "codec/json.hpp"
#include "ingest/ingest.hpp"
#include "plugin/plugin_host.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace {

namespace fs = std::filesystem;
using namespace samband;

std::string sheet(std::size_t n) {
    static const char* fnrs[] = {"14839134623", "02918502265", "28860370052",
                                 "09817045860", "30899926664", "05920763059"};
    std::string s =
        "\xEF\xBB\xBF"
        "Fødselsnummer;Behandling;Dato;Type;Møtt;Notat\r\n";
    char buf[256];
    for (std::size_t i = 0; i < n; ++i) {
        std::snprintf(
            buf, sizeof buf, "%s;b-%zu;%02zu.%02zu.2026;%s;%s;%s\r\n", fnrs[i % 6], i, 1 + i % 28,
            1 + i % 12, i % 3 ? "Gruppe" : "Individuell", i % 7 == 0 ? "nei" : "ja",
            i % 10 == 0 ? "\"Gikk bra.\r\nNeste gang: pust; søvn\"" : "Øvelse på å roe ned");
        s += buf;
    }
    return s;
}

// The host side without a store: every submission is validated as ingest validates it, then
// answered (OK, or INVALID with the reason) as a commit would answer it.
class validating_services final : public plugin::host_services {
public:
    validating_services(const codec::schema_set& schemas, ingest::options opts)
        : schemas_(schemas), opts_(opts) {}
    std::atomic<std::size_t> validated{0}, refused{0};
    std::string first_refusal;

    bool log_enabled(std::string_view, samband_log_level level) override {
        return level <= SAMBAND_LOG_WARN;
    }
    void log(std::string_view, samband_log_level, std::string_view m) override {
        std::fprintf(stderr, "plugin: %.*s\n", static_cast<int>(m.size()), m.data());
    }
    std::optional<std::string> secret(std::string_view, std::string_view) override { return {}; }
    samband_status submit(std::string_view endpoint, plugin::submission sub,
                          std::function<void(const plugin::submit_result&)> done) override {
        plugin::submit_result r;
        auto v = ingest::validate_envelope(schemas_, opts_, endpoint, sub.envelope_json, nullptr);
        if (v) {
            ++validated;
            r.status = SAMBAND_OK;
            r.event_id = codec::string_at(*v, "/id");
        } else {
            if (refused++ == 0) first_refusal = v.error();
            r.status = SAMBAND_INVALID;
            r.message = v.error();
        }
        done(r);
        return SAMBAND_OK;
    }
    void complete(std::string_view, std::uint64_t, plugin::completion) override {}
    void receipt(std::string_view, std::string_view, std::int32_t, std::string_view) override {}
    boost::system::result<std::size_t> read_attachment(std::uint64_t, std::uint64_t, std::uint8_t*,
                                                       std::size_t) override {
        return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
    }

private:
    const codec::schema_set& schemas_;
    ingest::options opts_;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: bench_csv_validate PLUGIN.so SCHEMAS_DIR [ROWS]\n");
        return 2;
    }
    std::size_t n = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 200000;
    auto schemas = codec::schema_set::load_dir(argv[2]);
    ingest::options opts;
    opts.allow_synthetic_ids = true;
    validating_services svc(schemas, opts);

    plugin::registry reg;
    auto loaded = reg.load(argv[1]);
    if (!loaded) {
        std::fprintf(stderr, "%s: %s\n", argv[1], loaded.error().reason.c_str());
        return 1;
    }
    fs::path dir = fs::temp_directory_path() /
                   ("samband-bench-csv-" + std::to_string(static_cast<long>(::getpid())));
    fs::create_directories(dir / "in");
    // The attendance-list mapping of docs/csv.md (as bench/csv/run.py configures the daemon).
    std::string config = R"({"inbox":")" + (dir / "in").string() +
                         R"(","poll_ms":10,"window":256,"type":"rph.session.attended","fields":{)"
                         R"("/subject/fnr":{"column":"Fødselsnummer"},)"
                         R"("/occurred_at":{"column":"Dato","as":"date"},)"
                         R"("/data/treatment_id":{"column":"Behandling"},)"
                         R"("/data/session_at":{"column":"Dato","as":"date"},)"
                         R"("/data/kind":{"column":"Type","map":{"Individuell":"individuell",)"
                         R"("Gruppe":"gruppe"}},)"
                         R"("/data/attended":{"column":"Møtt","as":"boolean"},)"
                         R"("/data/content":{"column":"Notat","optional":true}}})";
    auto inst = plugin::instance::create(**loaded, "sheets", config, svc);
    if (!inst) {
        std::fprintf(stderr, "create: %s\n", inst.error().c_str());
        return 1;
    }
    if (auto s = (*inst)->start(); !s.ok()) {
        std::fprintf(stderr, "start: %s\n", s.message.c_str());
        return 1;
    }
    const std::string file = sheet(n);
    double best = 1e9;
    int status = 0;
    for (int run = 0; run < 3 && status == 0; ++run) {
        std::string name = "oppmote-" + std::to_string(run) + ".csv";
        fs::path hidden = dir / "in" / ("." + name + ".tmp");
        std::ofstream(hidden, std::ios::binary)
            .write(file.data(), static_cast<std::streamsize>(file.size()));
        std::size_t before = svc.validated.load();
        auto t0 = std::chrono::steady_clock::now();
        fs::rename(hidden, dir / "in" / name);
        auto deadline = t0 + std::chrono::minutes(5);
        while (!fs::exists(dir / "in" / "done" / name)) {
            if (fs::exists(dir / "in" / "error" / name) ||
                std::chrono::steady_clock::now() > deadline) {
                std::fprintf(stderr, "%s was not imported\n", name.c_str());
                status = 1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (status == 0 && svc.validated.load() - before != n) {
            std::fprintf(stderr, "%zu of %zu rows validated; first refusal: %s\n",
                         svc.validated.load() - before, n, svc.first_refusal.c_str());
            status = 1;
        }
        best = std::min(best, secs);
    }
    (*inst)->stop();
    inst->reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (status != 0) return status;
    std::printf(
        "{\"rows\": %zu, \"bytes\": %zu, \"seconds\": %.4f, \"rows_per_s\": %.0f, "
        "\"validated\": %zu, \"refused\": %zu}\n",
        n, file.size(), best, static_cast<double>(n) / best, svc.validated.load(),
        svc.refused.load());
    return 0;
}
