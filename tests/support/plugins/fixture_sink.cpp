// A sink for tests that fails on command: reads a control file on every delivery and records
// every completed attempt as one JSON line.
//   control: {"mode": "ok" | "fail_times" | "permanent" | "slow" | "hang",
//             "times": N, "delay_ms": M, "message": "...",
//             "receipt": "ack" | "reject" | "warning"}   (absent = ok; receipt: sent after success)
//   record:  {"delivery_id", "event_id", "attempt", "external_id", "outcome", "at_ms"} per line
#include <samband/sdk.hpp>

#include <rapidjson/document.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <list>
#include <mutex>
#include <sstream>
#include <thread>

namespace {

using samband::sdk::error;

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

class fixture_sink {
public:
    static constexpr const char* name = "fixture-sink";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "Test sink that fails on command and records attempts";
    static constexpr std::uint32_t capabilities = SAMBAND_CAP_RECEIPTS;

    fixture_sink(samband::sdk::host h, std::string_view config) : host_(h) {
        rapidjson::Document d;
        d.Parse(config.data(), config.size());
        if (d.HasParseError() || !d.IsObject() || !d.HasMember("record_file") ||
            !d["record_file"].IsString())
            throw error(SAMBAND_INVALID, "fixture-sink: config needs \"record_file\"");
        record_ = d["record_file"].GetString();
        if (d.HasMember("control_file") && d["control_file"].IsString())
            control_ = d["control_file"].GetString();
        fd_ = ::open(record_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) throw error(SAMBAND_INVALID, "fixture-sink: cannot open " + record_);
    }
    ~fixture_sink() {
        stop();
        if (fd_ >= 0) ::close(fd_);
    }

    void stop() {
        std::list<samband::sdk::delivery> held;
        {
            std::lock_guard lock(mu_);
            held.swap(hung_);
        }
        for (auto& d : held) finish(d, "retry", "stopping");
        for (auto& t : threads_)
            if (t.joinable()) t.join();
        threads_.clear();
    }

    void deliver(samband::sdk::delivery d) {
        std::string mode = "ok", message = "fixture failure", receipt;
        int times = 0, delay = 0;
        if (!control_.empty()) {
            std::ifstream in(control_);
            std::stringstream ss;
            ss << in.rdbuf();
            rapidjson::Document c;
            c.Parse(ss.str().c_str());
            if (!c.HasParseError() && c.IsObject()) {
                if (c.HasMember("mode") && c["mode"].IsString()) mode = c["mode"].GetString();
                if (c.HasMember("times") && c["times"].IsInt()) times = c["times"].GetInt();
                if (c.HasMember("delay_ms") && c["delay_ms"].IsInt())
                    delay = c["delay_ms"].GetInt();
                if (c.HasMember("message") && c["message"].IsString())
                    message = c["message"].GetString();
                if (c.HasMember("receipt") && c["receipt"].IsString())
                    receipt = c["receipt"].GetString();
            }
        }
        if (mode == "fail_times" && static_cast<int>(d.attempt()) <= times)
            return finish(d, "retry", message);
        if (mode == "permanent") return finish(d, "permanent", message);
        if (mode == "hang") {
            std::lock_guard lock(mu_);
            hung_.push_back(std::move(d));
            return;
        }
        if (mode == "slow") {
            std::lock_guard lock(mu_);
            threads_.emplace_back([this, delay, dd = std::move(d)]() mutable {
                std::this_thread::sleep_for(std::chrono::milliseconds(delay));
                finish(dd, "ok", {});
            });
            return;
        }
        std::string ext = "fx-" + std::string(d.id());
        finish(d, "ok", {});
        // Like an Apprec arriving later for the message this delivery sent.
        if (receipt == "ack") host_.receipt(ext, SAMBAND_RECEIPT_ACK, "OK");
        if (receipt == "warning")
            host_.receipt(ext, SAMBAND_RECEIPT_WARNING, "3: OK, feil i delmelding");
        if (receipt == "reject")
            host_.receipt(ext, SAMBAND_RECEIPT_REJECT, "8221:E21 Mottaker finnes ikke");
    }

private:
    void finish(samband::sdk::delivery& d, const std::string& outcome, const std::string& message) {
        std::string ext = "fx-" + std::string(d.id());
        // The event type, for tests (a cheap scan; the envelope is compact JSON from the host).
        std::string type;
        std::string_view env = d.event().envelope_json;
        if (auto p = env.find("\"type\":\""); p != std::string_view::npos) {
            auto e = env.find('"', p + 8);
            if (e != std::string_view::npos) type = std::string(env.substr(p + 8, e - p - 8));
        }
        std::string line = "{\"delivery_id\":\"" + std::string(d.id()) + "\",\"event_id\":\"" +
                           std::string(d.event_id()) +
                           "\",\"attempt\":" + std::to_string(d.attempt()) + ",\"external_id\":\"" +
                           ext + "\",\"outcome\":\"" + outcome + "\",\"type\":\"" + type +
                           "\",\"at_ms\":" + std::to_string(now_ms()) + "}\n";
        // One write per line with O_APPEND: whole lines even when the daemon is killed.
        if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
            d.retry("fixture-sink: cannot record");
            return;
        }
        if (outcome == "ok")
            d.succeed(ext);
        else if (outcome == "permanent")
            d.fail(message);
        else
            d.retry(message);
    }

    samband::sdk::host host_;
    std::string record_, control_;
    int fd_ = -1;
    std::mutex mu_;
    std::list<samband::sdk::delivery> hung_;
    std::vector<std::thread> threads_;
};

}  // namespace

SAMBAND_PLUGIN(fixture_sink)
