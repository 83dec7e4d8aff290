// A source for benchmarks: submits `count` events of `size_bytes` with at most `window` awaiting
// their commit, spread over many synthetic patients, and writes a JSON report at the end.
//   config: {"count": N, "size_bytes": 8192, "window": 256, "patients": 5000, "rate_per_s": 0,
//            "type": "rph.assessment.scored", "report_file": "PATH", "run": "r1"}
#include <samband/sdk.hpp>

#include <pthread.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using samband::sdk::error;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A synthetic fødselsnummer (month + 80) with valid mod-11 check digits, for patient n.
std::string synthetic_fnr(int n) {
    static const int w1[] = {3, 7, 6, 1, 8, 9, 4, 5, 2}, w2[] = {5, 4, 3, 2, 7, 6, 5, 4, 3, 2};
    int day = 1 + n % 28, month = 1 + (n / 28) % 12, year = 60 + (n / 336) % 40;
    for (int ind = 100 + n % 400;; ind = (ind + 1) % 500) {
        char b[12];
        std::snprintf(b, sizeof b, "%02d%02d%02d%03d", day, month + 80, year, ind);
        int d[11];
        for (int i = 0; i < 9; ++i) d[i] = b[i] - '0';
        int s = 0;
        for (int i = 0; i < 9; ++i) s += d[i] * w1[i];
        int k1 = 11 - s % 11;
        if (k1 == 11) k1 = 0;
        if (k1 == 10) continue;
        d[9] = k1;
        s = 0;
        for (int i = 0; i < 10; ++i) s += d[i] * w2[i];
        int k2 = 11 - s % 11;
        if (k2 == 11) k2 = 0;
        if (k2 == 10) continue;
        return std::string(b, 9) + char('0' + k1) + char('0' + k2);
    }
}

class bench_source {
public:
    static constexpr const char* name = "bench-source";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description = "Benchmark load generator (source)";
    static constexpr bool is_source = true;

    bench_source(samband::sdk::host h, std::string_view config) : host_(h) {
        rapidjson::Document d;
        d.Parse(config.data(), config.size());
        if (d.HasParseError() || !d.IsObject())
            throw error(SAMBAND_INVALID, "bench-source: bad config");
        auto i = [&](const char* k, int def) {
            return d.HasMember(k) && d[k].IsInt() ? d[k].GetInt() : def;
        };
        count_ = i("count", 10000);
        size_ = i("size_bytes", 8192);
        window_ = i("window", 256);
        rate_ = i("rate_per_s", 0);
        patients_ = std::max(1, i("patients", 5000));
        if (d.HasMember("report_file") && d["report_file"].IsString())
            report_ = d["report_file"].GetString();
        if (d.HasMember("run") && d["run"].IsString()) run_ = d["run"].GetString();
    }
    ~bench_source() { stop(); }

    void start() {
        stop_ = false;
        thread_ = std::thread([this] {
            pthread_setname_np(pthread_self(), "bench-source");
            run();
        });
    }
    void stop() {
        stop_ = true;
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

private:
    void run() {
        std::vector<std::string> fnrs;
        for (int p = 0; p < std::min(patients_, count_); ++p) fnrs.push_back(synthetic_fnr(p));
        lat_.assign(count_, 0);
        std::int64_t t0 = now_ns();
        for (int n = 0; n < count_ && !stop_; ++n) {
            if (rate_ > 0) {  // paced: event n leaves at t0 + n / rate
                std::int64_t due = t0 + static_cast<std::int64_t>(n) * 1000000000LL / rate_;
                std::int64_t wait = due - now_ns();
                if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
            }
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || outstanding_ < window_; });
                if (stop_) break;
                ++outstanding_;
            }
            std::int64_t sent = now_ns();
            std::string head =
                R"({"schema":"samband.event/1","type":"rph.assessment.scored","idempotency_key":"bench:)" +
                run_ + ":" + std::to_string(n) +
                R"(","occurred_at":"2026-11-24T10:15:00+01:00","subject":{"fnr":")" +
                fnrs[n % fnrs.size()] + R"("},"data":{"treatment_id":"b-)" +
                std::to_string(n % fnrs.size()) +
                R"(","instrument":"PHQ-9","score":9,"administered_at":"2026-11-24","sent_at_ns":)" +
                std::to_string(sent) + R"(,"note":")";
            std::string tail = "\"}}";
            int pad = std::max<int>(0, size_ - static_cast<int>(head.size() + tail.size()));
            std::string env = head + std::string(pad, 'x') + tail;
            samband_status st =
                host_.submit(env, {}, [this, n, sent](const samband::sdk::submit_result& r) {
                    std::lock_guard lock(mu_);
                    --outstanding_;
                    if (r.status == SAMBAND_OK) {
                        ++accepted_;
                        lat_[n] = now_ns() - sent;
                    } else {
                        ++rejected_;
                    }
                    cv_.notify_all();
                });
            if (st != SAMBAND_OK) {
                std::lock_guard lock(mu_);
                --outstanding_;
                ++rejected_;
            }
        }
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(60), [&] { return outstanding_ == 0; });
        double secs = (now_ns() - t0) / 1e9;
        std::vector<std::int64_t> l;
        for (auto v : lat_)
            if (v > 0) l.push_back(v);
        std::sort(l.begin(), l.end());
        auto pct = [&](double p) {
            return l.empty()
                       ? 0.0
                       : l[std::min(l.size() - 1, static_cast<std::size_t>(p * l.size()))] / 1e6;
        };
        if (!report_.empty()) {
            std::ofstream out(report_ + ".tmp");
            out << "{\"count\":" << count_ << ",\"accepted\":" << accepted_
                << ",\"rejected\":" << rejected_ << ",\"seconds\":" << secs
                << ",\"accepted_per_s\":" << (accepted_ / secs) << ",\"accept_p50_ms\":" << pct(0.5)
                << ",\"accept_p99_ms\":" << pct(0.99) << "}\n";
            out.close();
            std::rename((report_ + ".tmp").c_str(), report_.c_str());
        }
        host_.log(samband::sdk::log_level::info,
                  "bench-source done: " + std::to_string(accepted_) + " accepted");
    }

    samband::sdk::host host_;
    int count_, size_, window_, patients_, rate_ = 0;
    std::string report_, run_ = "r";
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    int outstanding_ = 0, accepted_ = 0, rejected_ = 0;
    std::vector<std::int64_t> lat_;
    std::thread thread_;
};

}  // namespace

SAMBAND_PLUGIN(bench_source)
