// A sink for benchmarks: completes at once, measures accept-to-delivered latency from the
// event's data.sent_at_ns and writes a JSON report after `expect` deliveries (or at stop), with
// the latency distribution (`cdf_ms`: the 0th to 100th percentile). With `progress_file` it
// appends {"n": deliveries, "t_ns": unix ns} at the first delivery and every `progress_every`.
//   config: {"report_file": "PATH", "expect": N, "progress_file": "PATH", "progress_every": N}
#include <samband/sdk.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <vector>

namespace {

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

class bench_sink {
public:
    static constexpr const char* name = "bench-sink";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description = "Benchmark sink that completes at once";

    bench_sink(samband::sdk::host, std::string_view config) {
        rapidjson::Document d;
        d.Parse(config.data(), config.size());
        if (!d.HasParseError() && d.IsObject()) {
            if (d.HasMember("report_file") && d["report_file"].IsString())
                report_ = d["report_file"].GetString();
            if (d.HasMember("expect") && d["expect"].IsInt()) expect_ = d["expect"].GetInt();
            if (d.HasMember("progress_file") && d["progress_file"].IsString())
                progress_.open(d["progress_file"].GetString(), std::ios::app);
            if (d.HasMember("progress_every") && d["progress_every"].IsInt())
                every_ = std::max(1, d["progress_every"].GetInt());
        }
        lat_.reserve(static_cast<std::size_t>(std::max(expect_, 0)));
    }
    ~bench_sink() { write_report(); }

    void stop() { write_report(); }

    void deliver(samband::sdk::delivery d) {
        std::int64_t now = now_ns();
        // Cheap scan for "sent_at_ns": (no full parse on the hot path).
        std::string_view env = d.event().envelope_json;
        std::int64_t sent = 0;
        auto p = env.find("\"sent_at_ns\":");
        if (p != std::string_view::npos)
            sent = std::atoll(std::string(env.substr(p + 13, 20)).c_str());
        std::string ext = "b-" + std::string(d.id());
        d.succeed(ext);
        std::lock_guard lock(mu_);
        if (first_ == 0) first_ = now;
        last_ = now;
        if (sent > 0) lat_.push_back(now - sent);
        ++count_;
        if (progress_.is_open() && (count_ == 1 || count_ % every_ == 0))
            progress_ << "{\"n\":" << count_ << ",\"t_ns\":" << now << "}" << std::endl;
        if (static_cast<int>(lat_.size()) == expect_) write_locked();
    }

private:
    void write_report() {
        std::lock_guard lock(mu_);
        write_locked();
    }
    void write_locked() {
        if (report_.empty() || written_ == lat_.size()) return;
        written_ = lat_.size();
        std::vector<std::int64_t> l = lat_;
        std::sort(l.begin(), l.end());
        auto pct = [&](double q) {
            return l.empty()
                       ? 0.0
                       : l[std::min(l.size() - 1, static_cast<std::size_t>(q * l.size()))] / 1e6;
        };
        double secs = (last_ - first_) / 1e9;
        std::ofstream out(report_ + ".tmp");
        out << "{\"delivered\":" << l.size() << ",\"seconds\":" << secs
            << ",\"delivered_per_s\":" << (secs > 0 ? l.size() / secs : 0.0)
            << ",\"latency_p50_ms\":" << pct(0.5) << ",\"latency_p99_ms\":" << pct(0.99)
            << ",\"latency_max_ms\":" << (l.empty() ? 0.0 : l.back() / 1e6) << ",\"cdf_ms\":[";
        for (int q = 0; q <= 100; ++q) out << (q ? "," : "") << pct(q / 100.0);
        out << "]}\n";
        out.close();
        std::rename((report_ + ".tmp").c_str(), report_.c_str());
    }

    std::string report_;
    std::ofstream progress_;
    std::int64_t count_ = 0, every_ = 10000;
    int expect_ = -1;
    std::mutex mu_;
    std::vector<std::int64_t> lat_;
    std::int64_t first_ = 0, last_ = 0;
    std::size_t written_ = 0;
};

}  // namespace

SAMBAND_PLUGIN(bench_sink)
