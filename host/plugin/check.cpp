#include "plugin/check.hpp"

#include "config/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "plugin/plugin_host.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <samband/json.hpp>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include <stdlib.h>
#include <unistd.h>
#include <vector>

namespace samband::plugin {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const char* kSampleEvent =
    R"({"schema":"samband.event/1","id":"0192f7c8-0000-7000-8000-000000000001","type":"rph.assessment.scored",)"
    R"("source":"check","idempotency_key":"check:1","occurred_at":"2026-11-24T10:15:00+01:00",)"
    R"("subject":{"fnr":"14839134623","name":{"given":"Kari","family":"Nordmann"}},)"
    R"("data":{"treatment_id":"check-1","instrument":"PHQ-9","score":12,"administered_at":"2026-11-24"},)"
    R"("attachments":[]})";

// Records what the plugin does through the host API.
class check_services final : public host_services {
public:
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::uint64_t, std::vector<completion>> completions;
    std::vector<std::string> logs;
    int submissions = 0;
    std::vector<std::string> envelopes;
    attachment_files files_;

    bool log_enabled(std::string_view, samband_log_level) override { return true; }
    void log(std::string_view, samband_log_level, std::string_view m) override {
        std::lock_guard lock(mu);
        logs.emplace_back(m);
        cv.notify_all();
    }
    std::optional<std::string> secret(std::string_view, std::string_view name) override {
        if (const char* v = std::getenv(("SAMBAND_CHECK_SECRET_" + std::string(name)).c_str()))
            return std::string(v);
        return std::nullopt;
    }
    samband_status submit(std::string_view, submission sub,
                          std::function<void(const submit_result&)> done) override {
        int n;
        {
            std::lock_guard lock(mu);
            n = ++submissions;
            envelopes.push_back(std::move(sub.envelope_json));
            cv.notify_all();
        }
        // The temporary store: accept at once with a fresh id, as after a commit.
        std::thread([done, n] {
            submit_result r;
            r.status = SAMBAND_OK;
            r.event_id = "check-event-" + std::to_string(n);
            done(r);
        }).detach();
        return SAMBAND_OK;
    }
    void complete(std::string_view, std::uint64_t token, completion c) override {
        std::lock_guard lock(mu);
        completions[token].push_back(std::move(c));
        cv.notify_all();
    }
    void receipt(std::string_view, std::string_view, std::int32_t, std::string_view) override {}
    boost::system::result<std::size_t> read_attachment(std::uint64_t handle, std::uint64_t offset,
                                                       std::uint8_t* out,
                                                       std::size_t cap) override {
        return files_.read(handle, offset, out, cap);
    }
    // The host's log line refusing the plugin's completion of `token` (a malformed struct), or
    // empty. Called under the lock.
    std::string refused_completion(std::uint64_t token) const {
        const std::string tail =
            "malformed completion (struct_size) for token " + std::to_string(token);
        for (const auto& l : logs)
            if (l.size() >= tail.size() &&
                l.compare(l.size() - tail.size(), tail.size(), tail) == 0)
                return l;
        return {};
    }
    // Waits until `token` has at least one completion, the host refused its completion (then
    // `refused` gets the reason), or the timeout.
    std::vector<completion> wait(std::uint64_t token, std::chrono::milliseconds timeout,
                                 std::string* refused = nullptr) {
        std::unique_lock lock(mu);
        cv.wait_for(lock, timeout, [&] {
            return !completions[token].empty() ||
                   (refused && !(*refused = refused_completion(token)).empty());
        });
        return completions[token];
    }
};

struct row {
    bool pass;
    std::string what;
};

std::string kinds_text(std::uint32_t k) {
    std::string s;
    if (k & SAMBAND_KIND_SOURCE) s += "source ";
    if (k & SAMBAND_KIND_SINK) s += "sink ";
    if (k & SAMBAND_KIND_TRANSFORM) s += "transform ";
    return s;
}

// The first entry of a JSON Schema's "examples", serialised; nothing when there is none.
std::optional<std::string> first_example(const std::string& schema) {
    rapidjson::Document d;
    if (schema.empty() || !samband::json::parse(schema, d).empty() || !d.IsObject())
        return std::nullopt;
    auto it = d.FindMember("examples");
    if (it == d.MemberEnd() || !it->value.IsArray() || it->value.Empty() ||
        !it->value[0].IsObject())
        return std::nullopt;
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    it->value[0].Accept(w);
    return std::string(buf.GetString(), buf.GetSize());
}

// A fresh folder that is the working directory while it lives; removed with what is in it.
class scratch_folder {
public:
    static boost::system::result<scratch_folder> make() {
        std::string tmpl = (fs::temp_directory_path() / "samband-check-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            return boost::system::error_code(errno, boost::system::system_category());
        std::error_code ec;
        fs::path before = fs::current_path(ec);
        if (ec) before = fs::temp_directory_path();
        fs::current_path(tmpl, ec);
        if (ec) {
            fs::remove_all(tmpl, ec);
            return boost::system::error_code(ec.value(), boost::system::system_category());
        }
        return scratch_folder(tmpl, before);
    }
    scratch_folder(scratch_folder&& o) noexcept
        : path_(std::exchange(o.path_, {})), before_(std::move(o.before_)) {}
    scratch_folder& operator=(scratch_folder&&) = delete;
    ~scratch_folder() {
        if (path_.empty()) return;
        std::error_code ec;
        fs::current_path(before_, ec);
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

private:
    scratch_folder(fs::path p, fs::path before) : path_(std::move(p)), before_(std::move(before)) {}
    fs::path path_, before_;
};

std::string status_text(samband_status s) {
    static const char* names[] = {"OK", "RETRY", "PERMANENT", "INVALID", "UNSUPPORTED", "INTERNAL"};
    return (s >= 0 && s <= 5) ? names[s] : "INTERNAL";
}

}  // namespace

int run_plugin_check(const std::string& so_path, const std::optional<std::string>& config_file,
                     std::ostream& out, const std::optional<std::string>& event_file,
                     const std::string& host_exe) {
    std::vector<row> rows;
    auto result = [&](bool pass, std::string what) { rows.push_back({pass, std::move(what)}); };
    auto print = [&] {
        out << "\n";
        int failed = 0;
        for (const auto& r : rows) {
            out << (r.pass ? "PASS  " : "FAIL  ") << r.what << "\n";
            failed += r.pass ? 0 : 1;
        }
        out << "\n" << (rows.size() - failed) << " passed, " << failed << " failed\n";
        return failed == 0 ? 0 : 1;
    };
    auto read_file = [](const std::string& path) -> std::optional<std::string> {
        std::ifstream in(path, std::ios::binary);
        if (!in) return std::nullopt;
        std::stringstream ss;
        ss << in.rdbuf();
        if (in.bad()) return std::nullopt;
        return ss.str();
    };

    std::optional<std::string> config;
    if (config_file) {
        auto c = read_file(*config_file);
        if (!c) {
            out << "samband plugin check: cannot read config file " << *config_file << "\n";
            return 2;
        }
        config = *c;
    }
    std::string sample = kSampleEvent;
    if (event_file) {
        auto e = read_file(*event_file);
        if (!e) {
            out << "samband plugin check: cannot read event file " << *event_file << "\n";
            return 2;
        }
        rapidjson::Document d;
        if (!samband::json::parse(*e, d).empty() || !d.IsObject()) {
            out << "samband plugin check: event file " << *event_file << " is not a JSON object\n";
            return 2;
        }
        sample = *e;
    }
    // The daemon's deadlines: each call, and the completion of an accepted delivery.
    const auto call_deadline = kCallTimeout;
    const std::chrono::milliseconds completion_deadline{config::policy{}.attempt_timeout_ms};

    out << "samband plugin check " << so_path << "\n";
    registry reg;
    auto loaded = reg.probe(so_path, host_exe);
    if (!loaded) {
        result(false, "load: " + loaded.error().reason);
        return print();
    }
    const loaded_plugin& p = **loaded;
    out << "  name:         " << p.name << "\n"
        << "  version:      " << p.version << "\n"
        << "  description:  " << p.description << "\n"
        << "  ABI:          " << SAMBAND_ABI_MAJOR_OF(p.abi_version) << "."
        << SAMBAND_ABI_MINOR_OF(p.abi_version) << " (host " << SAMBAND_ABI_MAJOR << "."
        << SAMBAND_ABI_MINOR << ")\n"
        << "  kinds:        " << kinds_text(p.kinds) << "\n"
        << "  capabilities: " << ((p.capabilities & SAMBAND_CAP_RENDER) ? "render " : "")
        << ((p.capabilities & SAMBAND_CAP_RECEIPTS) ? "receipts " : "") << "\n"
        << "  isolation:    process (samband plugin-host), as the daemon runs vendor plugins\n"
        << "  deadlines:    " << call_deadline.count() << " ms per call, "
        << completion_deadline.count() << " ms to complete a delivery\n";
    result(true, "load (in a child): entry point, ABI window, struct sizes, required callbacks");

    // Without --config the plugin is created with its schema's first example, in a scratch
    // folder (its relative paths land there), as a vendor's first run would.
    std::optional<scratch_folder> scratch;
    if (!config) {
        if (auto example = first_example(p.config_schema)) {
            auto made = scratch_folder::make();
            if (!made) {
                result(false, "create: cannot make a scratch folder: " + made.error().message());
                return print();
            }
            scratch.emplace(std::move(*made));
            config = std::move(*example);
            out << "  config:       the schema's first example, in " << scratch->path().string()
                << "\n";
        } else {
            config = "{}";
            out << "  config:       {} (no --config, and the plugin's schema gives no example)\n";
        }
    }

    check_services svc;
    instance_options io;
    io.isolated = true;
    io.call_timeout = call_deadline;
    io.process.host_exe = host_exe;
    io.process.max_crashes = 1 << 20;  // the kit reports every crash and goes on
    io.process.backoff_base = 0ms;
    io.process.backoff_max = 0ms;
    auto inst = instance::create(p, "check", *config, svc, io);
    if (!inst) {
        result(false, "create: " + inst.error());
        return print();
    }
    result(true, config_file ? "create with the given config" : "create with the default config");

    // After each step: a crash or hang of the child fails that step, naming the signal or the
    // deadline; the next step waits for a fresh child.
    std::uint64_t crashes_seen = 0;
    auto crashed = [&](const std::string& label) {
        std::uint64_t n = (*inst)->crashes();
        if (n == crashes_seen) return false;
        crashes_seen = n;
        result(false, label + ": plugin-host " + (*inst)->last_crash());
        (*inst)->wait_up(call_deadline * 3);
        return true;
    };

    auto st = (*inst)->start();
    if (!crashed("start"))
        result(st.ok(), st.ok() ? "start" : "start: " + status_text(st.status) + ": " + st.message);
    if (!st.ok()) return print();

    // The sample attachment: a fresh file, removed when the check ends.
    std::string pdf_path = (fs::temp_directory_path() / "samband-check-XXXXXX.pdf").string();
    if (int fd = ::mkstemps(pdf_path.data(), 4); fd >= 0) {
        ::close(fd);
    } else {
        result(false, "deliver: cannot make a temporary attachment file: " +
                          std::string(std::strerror(errno)));
        return print();
    }
    struct remove_on_exit {
        std::string path;
        ~remove_on_exit() {
            std::error_code ec;
            fs::remove(path, ec);
        }
    } pdf_guard{pdf_path};

    std::uint64_t token = 1;
    auto make = [&](const std::string& delivery_id, bool with_attachment) {
        delivery_ref d;
        d.token = token++;
        d.delivery_id = delivery_id;
        d.event_id = "0192f7c8-0000-7000-8000-000000000001";
        d.destination = "check";
        d.attempt = 1;
        d.deadline_unix_ms = core::now_ms() + completion_deadline.count();
        d.event.envelope_json = sample;
        if (with_attachment) {
            fs::path f = pdf_path;
            std::ofstream(f, std::ios::binary)
                << "%PDF-1.4\n% samband plugin check attachment\n%%EOF\n";
            attachment_ref a;
            a.id = "a1";
            a.filename = "vedlegg.pdf";
            a.media_type = "application/pdf";
            a.size = fs::file_size(f);
            std::ifstream in(f, std::ios::binary);
            std::stringstream ss;
            ss << in.rdbuf();
            a.sha256_hex = core::sha256_hex(ss.str());
            a.path = f.string();
            a.handle = svc.files_.add(f.string());
            d.event.attachments.push_back(a);
        }
        return d;
    };
    // Whether the sink refused the sample event for what it is (INVALID or PERMANENT) every time:
    // then a render that refuses it the same way is consistent, not a failure.
    bool sample_refused = true;
    auto refusal = [](samband_status s) { return s == SAMBAND_INVALID || s == SAMBAND_PERMANENT; };
    int tried = 0, delivered = 0;
    bool sink_crashed = false;
    // Delivers and waits for the completion until the delivery's deadline.
    auto deliver_once = [&](const delivery_ref& d, std::string label, std::string* external) {
        if (sink_crashed) return;
        ++tried;
        auto r = (*inst)->deliver(d);
        if (crashed(label)) {
            sink_crashed = true;
            return;
        }
        if (!r.ok() && r.message.find("blocked past its deadline") != std::string::npos) {
            // The host killed the child at the deadline; its death may not be counted yet.
            result(false, label + ": " + r.message);
            (*inst)->wait_up(call_deadline * 3);
            crashes_seen = (*inst)->crashes();
            sink_crashed = true;
            return;
        }
        if (!r.ok()) {
            sample_refused = sample_refused && refusal(r.status);
            result(true, label + ": refused at once with " + status_text(r.status) + " (" +
                             r.message + ")");
            return;
        }
        std::string refused;
        auto cs = svc.wait(d.token, completion_deadline, &refused);
        if (crashed(label)) {
            sink_crashed = true;
            return;
        }
        if (cs.empty() && !refused.empty()) {
            result(false,
                   label +
                       ": accepted, then completed with a completion the host refused: " + refused);
            return;
        }
        if (cs.empty()) {
            result(false, label + ": accepted but not completed within the deadline of " +
                              std::to_string(completion_deadline.count()) + " ms");
            return;
        }
        sample_refused = sample_refused && refusal(cs[0].status);
        if (external) *external = cs[0].external_id;
        if (cs[0].status == SAMBAND_OK) ++delivered;
        result(
            true,
            label + ": completed with " + status_text(cs[0].status) +
                (cs[0].external_id.empty() ? "" : " (external id \"" + cs[0].external_id + "\")") +
                (cs[0].message.empty() ? "" : ": " + cs[0].message));
    };

    if (p.kinds & SAMBAND_KIND_SINK) {
        deliver_once(make("check-1", false), "sink: delivery without attachment", nullptr);
        deliver_once(make("check-2", true), "sink: delivery with an attachment", nullptr);
        std::string e1, e2;
        deliver_once(make("check-3", false), "sink: a delivery", &e1);
        deliver_once(make("check-3", false), "sink: the same delivery again", &e2);
        if (!sink_crashed && (!e1.empty() || !e2.empty()))
            result(e1 == e2, e1 == e2 ? "sink: a repeat keeps the external id \"" + e1 + "\""
                                      : "sink: a repeat changed the external id (\"" + e1 +
                                            "\" then \"" + e2 + "\")");
        // With the operator's --config a sink must deliver a valid event; with the schema's
        // example (no --config) its receiver may well not exist, so the row only says so.
        if (!sink_crashed && delivered > 0)
            result(true, "sink: delivered " + std::to_string(delivered) + " of " +
                             std::to_string(tried) + " sample deliveries");
        else if (!sink_crashed && config_file)
            result(false, "sink: delivered none of the " + std::to_string(tried) +
                              " sample deliveries (each refused or failed): with the given "
                              "config a sink must deliver a valid event");
        else if (!sink_crashed)
            result(true, "sink: delivered none of the " + std::to_string(tried) +
                             " sample deliveries with the schema's example config; give --config "
                             "with a reachable receiver to check delivery");
        if ((*inst)->can_render()) {
            auto d = make("check-4", true);
            auto r1 = (*inst)->render(d);
            if (!crashed("sink: render")) {
                auto r2 = (*inst)->render(d);
                if (!crashed("sink: render")) {
                    if (!r1 && !r2 && sample_refused && refusal(r1.error().status) &&
                        r1.error().status == r2.error().status) {
                        result(true, "sink: render refuses the sample event as delivery did (" +
                                         status_text(r1.error().status) + ": " +
                                         r1.error().message +
                                         "); give --event with one it takes to check render");
                    } else if (!r1 || !r2) {
                        result(false, "sink: render failed: " +
                                          (!r1 ? r1.error().message : r2.error().message));
                    } else {
                        result(r1->bytes == r2->bytes,
                               r1->bytes == r2->bytes
                                   ? "sink: render is deterministic (" +
                                         std::to_string(r1->bytes.size()) + " bytes)"
                                   : "sink: render gave different bytes for the same delivery");
                        std::lock_guard lock(svc.mu);
                        result(svc.completions[d.token].empty(), "sink: render sends nothing");
                    }
                }
            }
        }
    }
    if (p.kinds & SAMBAND_KIND_TRANSFORM) {
        event_ref e;
        e.envelope_json = sample;
        auto r = (*inst)->transform(e);
        if (!crashed("transform: valid event")) {
            if (r) {
                rapidjson::Document d;
                const bool bad = !samband::json::parse(*r, d).empty();
                result(!bad && d.IsObject(),
                       bad || !d.IsObject() ? "transform: valid event → output is not a JSON object"
                                            : "transform: valid event → an event (" +
                                                  std::to_string(r->size()) + " bytes)");
            } else {
                result(r.error().status != SAMBAND_INTERNAL,
                       "transform: valid sample event rejected with " +
                           status_text(r.error().status) + ": " + r.error().message);
            }
        }
        event_ref bad;
        bad.envelope_json = "this is { not JSON";
        auto rb = (*inst)->transform(bad);
        if (!crashed("transform: invalid event"))
            result(!rb && !rb.error().message.empty() && rb.error().status != SAMBAND_INTERNAL,
                   rb ? "transform: invalid event was NOT rejected"
                      : "transform: invalid event rejected with " + status_text(rb.error().status) +
                            ": " + rb.error().message);
    }
    if (p.kinds & SAMBAND_KIND_SOURCE) {
        std::this_thread::sleep_for(1500ms);  // the source runs on its own threads meanwhile
        if (!crashed("source")) {
            std::lock_guard lock(svc.mu);
            int bad = 0;
            for (const auto& env : svc.envelopes) {
                rapidjson::Document d;
                bad += (!samband::json::parse(env, d).empty() || !d.IsObject()) ? 1 : 0;
            }
            result(bad == 0, bad == 0 ? "source: ran 1.5 s against a temporary store (" +
                                            std::to_string(svc.submissions) +
                                            " submissions, each a JSON object)"
                                      : "source: " + std::to_string(bad) + " of " +
                                            std::to_string(svc.submissions) +
                                            " submissions are not a JSON object");
        }
    }
    // A delivery while stopping must still complete (OK or RETRY) by the end of stop().
    std::uint64_t stopping_token = 0;
    if ((p.kinds & SAMBAND_KIND_SINK) && !sink_crashed) {
        auto d = make("check-5", false);
        stopping_token = d.token;
        auto r = (*inst)->deliver(d);
        if (crashed("sink: a delivery while stopping") || !r.ok()) stopping_token = 0;
    }
    auto t0 = std::chrono::steady_clock::now();
    (*inst)->stop();
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    int submitted_at_stop;
    {
        std::lock_guard lock(svc.mu);
        submitted_at_stop = svc.submissions;
    }
    if (!crashed("stop")) result(true, "stop returned in " + std::to_string(took.count()) + " ms");
    if (stopping_token) {
        auto cs = svc.wait(stopping_token, 0ms);  // stop() returns after every completion
        result(!cs.empty(),
               !cs.empty() ? "sink: a delivery accepted while stopping completed with " +
                                 status_text(cs[0].status) + " before stop returned"
                           : "sink: a delivery accepted while stopping was not completed by stop");
    }
    if (p.kinds & SAMBAND_KIND_SOURCE) {
        // A stopped source submits nothing more.
        std::unique_lock lock(svc.mu);
        bool more =
            svc.cv.wait_for(lock, 500ms, [&] { return svc.submissions > submitted_at_stop; });
        result(!more, more ? "source: submitted after stop returned"
                           : "source: nothing submitted after stop returned (waited 500 ms)");
    }
    {
        // Completions out of turn: twice for one delivery (the host refuses the second), or for
        // a refused one.
        std::lock_guard lock(svc.mu);
        int dropped = 0, output = 0, malformed = 0;
        std::string first_drop, first_output, first_malformed;
        const std::string refusal = "plugin " + p.name + ": ";
        for (const auto& l : svc.logs) {
            // The host's refusal of a malformed submission or receipt (bad struct_size or count).
            if (l.rfind(refusal + "submit: ", 0) == 0 || l.rfind(refusal + "receipt: ", 0) == 0) {
                if (!malformed++) first_malformed = l;
            }
            if (l.find("late completion)") != std::string::npos ||
                l.find("is unknown or already completed") != std::string::npos) {
                if (!dropped++) first_drop = l;
            }
            if (l.find("plugin wrote to stdout/stderr") != std::string::npos) {
                if (!output++) first_output = l;
            }
        }
        if (p.kinds & SAMBAND_KIND_SINK)
            result(dropped == 0, dropped == 0 ? "sink: every delivery completed exactly once"
                                              : "sink: " + std::to_string(dropped) +
                                                    " completion(s) out of turn: " + first_drop);
        if (p.kinds & (SAMBAND_KIND_SOURCE | SAMBAND_KIND_SINK))
            result(malformed == 0, malformed == 0
                                       ? "every submission and receipt was well-formed"
                                       : std::to_string(malformed) +
                                             " submission(s) or receipt(s) refused by the host: " +
                                             first_malformed);
        result(output == 0,
               output == 0
                   ? "nothing written to stdout/stderr"
                   : std::to_string(output) +
                         " line(s) written to stdout/stderr (use host->log): " + first_output);
    }
    t0 = std::chrono::steady_clock::now();
    auto dr = (*inst)->destroy();
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 t0);
    if (!crashed("destroy"))
        result(dr.ok(), dr.ok() ? "destroy returned in " + std::to_string(took.count()) +
                                      " ms and the child exited"
                                : "destroy: " + dr.message);
    inst->reset();
    {
        std::lock_guard lock(svc.mu);
        out << "  log lines:    " << svc.logs.size() << " (identifiers masked by the host)\n";
    }
    return print();
}

}  // namespace samband::plugin
