// The nhn plugin: Norsk Helsenett messaging. A sink that turns rendered notes into MsgHead 1.2 +
// Dialogmelding 1.1 (validated against the official schemas before anything leaves) and a source
// that reads incoming messages and Apprec receipts, over a file catalogue shared with a local
// message server or over EDI 2.0 with HelseID (see docs/nhn.md).
//
//   config: {"xsd_dir": "…/nhn/xsd", "out_dir": "…", "in_dir": "…", "poll_ms": 500,
//            "own": {"name": "Testby kommune", "her_id": "9900001",
//                    "dept_name": "Rask psykisk helsehjelp", "dept_her_id": "9900011"},
//            "receiver_message_types": {"9900100": "DIALOG_HELSEFAGLIG"}, "request_apprec": true,
//            "state_dir": "nhn-state", "allow_synthetic_ids": true}
#include "net/helseid.hpp"
#include "net/http.hpp"
#include "nhn/codec/adresseregisteret.hpp"
#include "nhn/codec/codec.hpp"
#include "nhn/edi/client.hpp"

#include <samband/identifiers.hpp>
#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
using samband::sdk::error;
using samband::sdk::log_level;
namespace nhn = samband::nhn;

// Reads a catalogue file after checking its size with fstat on the open descriptor: a file over
// `max` is refused without reading a byte of it (and without racing a rename between check and
// read). The reason names the size, never the content.
// Returns false with `reason` (naming the size, never the content) when it refuses.
bool read_bounded(const fs::path& p, std::size_t max, std::string& out, std::string& reason) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        reason = std::string("cannot open: ") + std::strerror(errno);
        return false;
    }
    struct fd_closer {
        int fd;
        ~fd_closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        reason = "not a regular file";
        return false;
    }
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > max) {
        reason = "file of " + std::to_string(size) + " bytes is over the limit of " +
                 std::to_string(max) + " bytes; not read";
        return false;
    }
    out.assign(static_cast<std::size_t>(size), '\0');
    std::size_t got = 0;
    while (got < out.size()) {
        ssize_t r = ::read(fd, out.data() + got, out.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            reason = std::string("cannot read: ") + std::strerror(errno);
            return false;
        }
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return true;
}

// tmp → fsync → rename → fsync dir: a message server never sees half a file.
bool write_atomic(const fs::path& target, std::string_view bytes) {
    fs::path tmp = target.parent_path() / ("." + target.filename().string() + ".tmp");
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    const char* p = bytes.data();
    std::size_t n = bytes.size();
    bool ok = true;
    while (n > 0 && ok) {
        ssize_t w = ::write(fd, p, n);
        ok = w > 0;
        if (ok) {
            p += w;
            n -= static_cast<std::size_t>(w);
        }
    }
    ok = ok && ::fsync(fd) == 0;
    ok = (::close(fd) == 0) && ok;
    std::error_code ec;
    if (ok) fs::rename(tmp, target, ec);
    if (!ok || ec) {
        fs::remove(tmp, ec);
        return false;
    }
    int dfd = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    return true;
}

std::string str(const rapidjson::Value& o, const char* k) {
    auto it = o.FindMember(k);
    return it != o.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
}

// One message we sent: what an Apprec is checked against and an answer is linked to.
struct sent_record {
    std::string msg_id, event_id, destination, treatment_id;
    std::string office_her_id, gp_her_id;  // whom it went to: only they may send its Apprec
    std::string edi_id;                    // EDI 2.0: the server's id of the sent message
    bool receipt = false;                  // an Apprec was applied (EDI 2.0 stops polling)
};

// The messages we sent, kept in `state_dir`/sent.jsonl: one JSON object per line, appended and
// fsynced before the message leaves, so an Apprec can always be checked against its message and
// an answer linked to its note, across restarts. A later line for the same MsgId adds to it.
class sent_ledger {
public:
    explicit sent_ledger(fs::path file) : file_(std::move(file)) {
        std::ifstream in(file_);
        std::string line;
        while (std::getline(in, line)) {
            rapidjson::Document d;
            d.Parse(line.data(), line.size());
            if (d.HasParseError() || !d.IsObject()) continue;  // a torn last line after a crash
            sent_record r;
            r.msg_id = str(d, "msg_id");
            if (r.msg_id.empty()) continue;
            auto& cur = records_[r.msg_id];
            cur.msg_id = r.msg_id;
            for (auto [k, f] : fields())
                if (auto v = str(d, k); !v.empty()) cur.*f = v;
            if (d.HasMember("receipt") && d["receipt"].IsBool() && d["receipt"].GetBool())
                cur.receipt = true;
        }
    }

    // Appends `r` durably; false when it could not be written (the caller retries).
    bool add(const sent_record& r) {
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        w.StartObject();
        w.Key("msg_id");
        w.String(r.msg_id);
        for (auto [k, f] : fields()) {
            if ((r.*f).empty()) continue;
            w.Key(k);
            w.String(r.*f);
        }
        if (r.receipt) {
            w.Key("receipt");
            w.Bool(true);
        }
        w.EndObject();
        std::string line = std::string(sb.GetString(), sb.GetSize()) + "\n";
        std::lock_guard lock(mu_);
        int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) return false;
        bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        ok = ::fsync(fd) == 0 && ok;
        ok = ::close(fd) == 0 && ok;
        if (!ok) return false;
        auto& cur = records_[r.msg_id];
        cur.msg_id = r.msg_id;
        for (auto [k, f] : fields())
            if (!(r.*f).empty()) cur.*f = r.*f;
        cur.receipt = cur.receipt || r.receipt;
        return true;
    }

    std::optional<sent_record> find(const std::string& msg_id) const {
        std::lock_guard lock(mu_);
        auto it = records_.find(msg_id);
        if (it == records_.end()) return std::nullopt;
        return it->second;
    }

    // Sent over EDI 2.0 and still without an applied Apprec.
    std::vector<sent_record> awaiting_receipt() const {
        std::lock_guard lock(mu_);
        std::vector<sent_record> out;
        for (const auto& [id, r] : records_)
            if (!r.edi_id.empty() && !r.receipt) out.push_back(r);
        return out;
    }

private:
    static std::array<std::pair<const char*, std::string sent_record::*>, 6> fields() {
        return {{{"event_id", &sent_record::event_id},
                 {"destination", &sent_record::destination},
                 {"treatment_id", &sent_record::treatment_id},
                 {"office_her_id", &sent_record::office_her_id},
                 {"gp_her_id", &sent_record::gp_her_id},
                 {"edi_id", &sent_record::edi_id}}};
    }

    fs::path file_;
    mutable std::mutex mu_;
    std::map<std::string, sent_record> records_;
};

// Whether a receiver (HER-id) can take messages, from the Adresseregisteret (SOAP), cached, with
// a local file as fallback when the register cannot be reached:
//   {"parties": [{"her_id": "9900101", "name": "…", "active": true, "valid": true,
//                 "edi_address": true}]}
class ar_lookup {
public:
    struct verdict {
        bool known = false;  // false: neither the register nor the file could say (retry later)
        bool can_receive = false;
        std::string reason;  // why not, or why unknown
    };

    ar_lookup(const std::string& url, nhn::edi::tls_options tls, std::chrono::milliseconds timeout,
              std::chrono::seconds cache_for, const std::string& file, std::string auth,
              nhn::edi::log_fn log)
        : timeout_(timeout), cache_for_(cache_for), auth_(std::move(auth)) {
        if (!url.empty()) {
            auto u = nhn::edi::parse_endpoint_url(url);
            if (!u) throw std::runtime_error("adresseregisteret.url is not an http(s) URL: " + url);
            url_ = *u;
            http_ =
                std::make_unique<nhn::edi::http_client>(*u, tls, std::move(log), 4u * 1024 * 1024);
        }
        if (!file.empty()) {
            std::ifstream in(file);
            if (!in) throw std::runtime_error("cannot read adresseregisteret.file " + file);
            std::stringstream ss;
            ss << in.rdbuf();
            auto parties = nhn::ar::parse_parties_file(ss.str());
            if (!parties)
                throw std::runtime_error("adresseregisteret.file " + file + ": " +
                                         parties.error().message);
            for (auto& [her, f] : *parties) file_[her] = std::move(f.party);
        }
    }

    verdict check(const std::string& her_id) {
        auto now = std::chrono::steady_clock::now();
        {
            std::lock_guard lock(mu_);
            auto it = cache_.find(her_id);
            if (it != cache_.end() && it->second.first > now) return it->second.second;
        }
        verdict v;
        std::string failure;
        if (http_) {
            namespace http = boost::beast::http;
            nhn::edi::http_request req{http::verb::post, url_.path, 11};
            req.set(http::field::content_type, "application/soap+xml; charset=utf-8; action=\"" +
                                                   std::string(nhn::ar::soap_action) + "\"");
            if (!auth_.empty()) req.set(http::field::authorization, auth_);
            req.body() = nhn::ar::details_request(her_id);
            auto res = http_->send(std::move(req), now + timeout_);
            if (!res) {
                failure = "Adresseregisteret not reached: " + res.error().message();
            } else {
                auto a = nhn::ar::parse_details_response(res->body());
                if (!a) {
                    failure = "Adresseregisteret answer (HTTP " +
                              std::to_string(res->result_int()) + "): " + a.error().what();
                } else {
                    v.known = true;
                    if (!a->found)
                        v.reason = "HER-id " + her_id + " does not exist in the Adresseregisteret";
                    else
                        v.can_receive = a->party.can_receive(&v.reason);
                }
            }
        }
        if (!v.known) {
            auto it = file_.find(her_id);
            if (it != file_.end()) {
                v.known = true;
                v.can_receive = it->second.can_receive(&v.reason);
                if (!v.reason.empty()) v.reason += " (local file)";
            } else {
                v.reason =
                    failure.empty() ? "HER-id " + her_id + " is not in the local file" : failure;
            }
        }
        if (v.known) {
            std::lock_guard lock(mu_);
            cache_[her_id] = {now + cache_for_, v};
        }
        return v;
    }

private:
    nhn::edi::endpoint_url url_;
    std::unique_ptr<nhn::edi::http_client> http_;
    std::chrono::milliseconds timeout_;
    std::chrono::seconds cache_for_;
    std::string auth_;
    std::map<std::string, nhn::ar::communication_party> file_;
    std::mutex mu_;
    std::map<std::string, std::pair<std::chrono::steady_clock::time_point, verdict>> cache_;
};

// The codec's document limit (parse_limits::max_bytes): a catalogue file over it is not read.
constexpr std::size_t max_document_bytes = 20 * 1024 * 1024;

class nhn_plugin {
public:
    static constexpr const char* name = "nhn";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "Norsk Helsenett: MsgHead 1.2 + Dialogmelding 1.1 with attachments, Apprec (file "
        "catalogue)";
    static constexpr bool is_source = true;
    static constexpr std::uint32_t capabilities = SAMBAND_CAP_RECEIPTS;
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0]
    // (in a scratch folder) when run without --config.
    static constexpr const char* config_schema = R"json(
        {
          "$schema": "http://json-schema.org/draft-04/schema#",
          "title": "nhn plugin endpoint config (docs/nhn.md)",
          "type": "object",
          "anyOf": [
            {"required": ["out_dir"]},
            {"required": ["transport", "edi2"], "properties": {"transport": {"enum": ["edi2"]}}}
          ],
          "properties": {
            "xsd_dir": {
              "type": "string",
              "description": "the MsgHead/Dialogmelding/Apprec XSDs; found beside the plugin or installed when absent"
            },
            "out_dir": {"type": "string", "description": "file catalogue: outgoing messages"},
            "in_dir": {
              "type": "string",
              "description": "file catalogue: incoming messages and Apprecs"
            },
            "transport": {
              "enum": ["catalogue", "edi2"],
              "description": "edi2: the NHN EDI 2.0 REST API with HelseID"
            },
            "edi2": {
              "type": "object",
              "description": "token_url, api_base, client_id, scope, key_secret, poll_her_id, …"
            },
            "poll_ms": {"type": "integer"},
            "request_apprec": {"type": "boolean", "default": true},
            "own": {
              "type": "object",
              "properties": {
                "name": {"type": "string"},
                "her_id": {"type": "string"},
                "dept_name": {"type": "string"},
                "dept_her_id": {"type": "string"}
              }
            },
            "receiver_message_types": {"type": "object", "additionalProperties": {"type": "string"}},
            "adresseregisteret": {
              "type": "object",
              "description": "url or file, ca_file, username, password_secret, timeout_ms, cache_s"
            },
            "state_dir": {"type": "string"},
            "allow_synthetic_ids": {"type": "boolean", "default": false}
          },
          "examples": [
            {
              "out_dir": "nhn/out",
              "in_dir": "nhn/in",
              "state_dir": "nhn/state",
              "own": {
                "name": "Testby kommune",
                "her_id": "9900001",
                "dept_name": "Rask psykisk helsehjelp Testby",
                "dept_her_id": "9900011"
              },
              "allow_synthetic_ids": true
            }
          ]
        }
    )json";

    nhn_plugin(samband::sdk::host h, std::string_view config)
        : host_(h), codec_(make_codec(config)) {
        rapidjson::Document d;
        (void)samband::json::parse(config, d);  // make_codec has checked it
        out_dir_ = str(d, "out_dir");
        in_dir_ = str(d, "in_dir");
        std::string transport = str(d, "transport");
        if (transport == "edi2") {
            if (!d.HasMember("edi2") || !d["edi2"].IsObject())
                throw error(SAMBAND_INVALID, "nhn: transport edi2 needs an \"edi2\" object");
            const auto& e = d["edi2"];
            nhn::edi::helseid_config h;
            h.token_endpoint = str(e, "token_url");
            h.audience = str(e, "audience").empty() ? h.token_endpoint : str(e, "audience");
            h.client_id = str(e, "client_id");
            if (!str(e, "scope").empty()) h.scope = str(e, "scope");
            h.signing_alg = str(e, "signing_alg");
            nhn::edi::edi_config c;
            c.base_url = str(e, "api_base");
            if (!str(e, "api_version").empty()) c.api_version = str(e, "api_version");
            if (!str(e, "source_system").empty()) c.source_system = str(e, "source_system");
            if (e.HasMember("timeout_ms") && e["timeout_ms"].IsInt())
                c.timeout = std::chrono::milliseconds(e["timeout_ms"].GetInt());
            c.tls.ca_file = str(e, "ca_file");
            c.tls.allow_plain_http_loopback = e.HasMember("allow_plain_http_loopback") &&
                                              e["allow_plain_http_loopback"].IsBool() &&
                                              e["allow_plain_http_loopback"].GetBool();
            h.tls = c.tls;
            key_secret_ = str(e, "key_secret");
            if (key_secret_.empty())
                throw error(SAMBAND_INVALID,
                            "nhn: edi2 needs \"key_secret\" (the HelseID key, a host secret)");
            if (e.HasMember("receipt_poll_ms") && e["receipt_poll_ms"].IsInt())
                receipt_poll_ms_ = std::max(20, e["receipt_poll_ms"].GetInt());
            if (e.HasMember("receipt_batch") && e["receipt_batch"].IsInt())
                receipt_batch_ = static_cast<std::size_t>(std::max(1, e["receipt_batch"].GetInt()));
            if (e.HasMember("poll_her_id") && e["poll_her_id"].IsInt64())
                poll_her_id_ = e["poll_her_id"].GetInt64();
            timeout_ = c.timeout;
            // The key is fetched and the client built in start(): rendering (preview) needs
            // neither, and a preview has no secrets.
            helseid_cfg_ = std::move(h);
            edi_cfg_ = std::move(c);
            use_edi_ = true;
        } else if (out_dir_.empty()) {
            throw error(SAMBAND_INVALID,
                        "nhn: config needs \"out_dir\" (the outgoing catalogue) or \"transport\": "
                        "\"edi2\"");
        }
        if (d.HasMember("poll_ms") && d["poll_ms"].IsInt())
            poll_ms_ = std::max(20, d["poll_ms"].GetInt());
        if (d.HasMember("request_apprec") && d["request_apprec"].IsBool())
            request_apprec_ = d["request_apprec"].GetBool();
        if (d.HasMember("own") && d["own"].IsObject()) {
            const auto& o = d["own"];
            own_.name = str(o, "name");
            own_.her_id = str(o, "her_id");
            own_.dept_name = str(o, "dept_name");
            own_.dept_her_id = str(o, "dept_her_id");
        }
        if (d.HasMember("receiver_message_types") && d["receiver_message_types"].IsObject()) {
            // By index: clang 14 in C++20 finds RapidJSON's member-iterator != ambiguous.
            const auto& types = d["receiver_message_types"];
            for (rapidjson::SizeType i = 0; i < types.MemberCount(); ++i) {
                const auto& m = *(types.MemberBegin() + i);
                if (m.value.IsString()) receiver_types_[m.name.GetString()] = m.value.GetString();
            }
        }
        if (d.HasMember("adresseregisteret") && d["adresseregisteret"].IsObject()) {
            const auto& a = d["adresseregisteret"];
            nhn::edi::tls_options tls;
            tls.ca_file = str(a, "ca_file");
            tls.allow_plain_http_loopback = a.HasMember("allow_plain_http_loopback") &&
                                            a["allow_plain_http_loopback"].IsBool() &&
                                            a["allow_plain_http_loopback"].GetBool();
            auto ms = [&](const char* k, int def) {
                return a.HasMember(k) && a[k].IsInt() ? a[k].GetInt() : def;
            };
            std::string auth;  // Basic: username + a host secret, only when configured
            if (!str(a, "username").empty() && !str(a, "password_secret").empty()) {
                auto pw = host_.secret(str(a, "password_secret"));
                if (pw) {
                    std::string up = str(a, "username") + ":" + *pw;
                    auth = "Basic " +
                           nhn::base64_encode(std::span<const std::uint8_t>(
                               reinterpret_cast<const std::uint8_t*>(up.data()), up.size()));
                }
            }
            if (str(a, "url").empty() && str(a, "file").empty())
                throw error(SAMBAND_INVALID, "nhn: adresseregisteret needs \"url\" or \"file\"");
            try {
                ar_ = std::make_unique<ar_lookup>(
                    str(a, "url"), tls, std::chrono::milliseconds(ms("timeout_ms", 10000)),
                    std::chrono::seconds(ms("cache_s", 3600)), str(a, "file"), auth,
                    [this](nhn::edi::log_level, std::string_view m) {
                        host_.log(log_level::debug, m);
                    });
            } catch (const std::exception& ex) {
                throw error(SAMBAND_INVALID, std::string("nhn: ") + ex.what());
            }
        }
        state_dir_ = str(d, "state_dir");
        if (state_dir_.empty()) {
            // Beside the outgoing catalogue (never inside the config's folder when the catalogue
            // is elsewhere), else relative to the config's folder.
            fs::path base = out_dir_.empty() ? fs::path() : fs::path(out_dir_).parent_path();
            state_dir_ = (base / "nhn-state").string();
        }
        if (d.HasMember("allow_synthetic_ids") && d["allow_synthetic_ids"].IsBool())
            allow_synthetic_ = d["allow_synthetic_ids"].GetBool();
        std::error_code ec;
        for (const auto& dir : {out_dir_, in_dir_}) {
            if (dir.empty()) continue;
            fs::create_directories(dir, ec);
            if (ec) throw error(SAMBAND_INVALID, "nhn: cannot create " + dir + ": " + ec.message());
        }
        if (!in_dir_.empty()) {
            fs::create_directories(fs::path(in_dir_) / "done", ec);
            fs::create_directories(fs::path(in_dir_) / "error", ec);
            fs::create_directories(fs::path(in_dir_) / "unlinked", ec);
        }
    }
    ~nhn_plugin() { stop(); }

    void start() {
        if (running_) return;
        if (use_edi_ && !edi_) make_edi_client();
        if (!ledger_) {
            std::error_code ec;
            for (const char* sub : {"", "error", "unlinked"}) {
                fs::create_directories(fs::path(state_dir_) / sub, ec);
                if (ec)
                    throw error(SAMBAND_INVALID, "nhn: cannot create the state folder " +
                                                     state_dir_ + ": " + ec.message());
            }
            ledger_ = std::make_unique<sent_ledger>(fs::path(state_dir_) / "sent.jsonl");
        }
        running_ = true;
        if (edi_) sender_ = std::thread([this] { send_loop(); });
        if (!in_dir_.empty() || edi_) reader_ = std::thread([this] { read_loop(); });
    }
    void stop() {
        worker_.stop();  // first: catalogue writes in progress finish, queued ones RETRY
        {
            std::lock_guard lock(mu_);
            if (!running_) return;
            running_ = false;
        }
        cv_.notify_all();
        if (reader_.joinable()) reader_.join();
        if (sender_.joinable()) sender_.join();
        std::deque<samband::sdk::delivery> rest;
        {
            std::lock_guard lock(mu_);
            rest.swap(queue_);
        }
        for (auto& d : rest) d.retry("nhn: stopping");
    }

    // The Adresseregisteret's word on the receiver (the GP when named, else the office): false
    // when the delivery was completed here (cannot receive: dead with the reason; unknown: retry).
    bool receiver_can_take(samband::sdk::delivery& d) {
        if (!ar_) return true;
        rapidjson::Document env;
        env.Parse(d.event().envelope_json.data(), d.event().envelope_json.size());
        std::string her;
        if (!env.HasParseError() && env.IsObject() && env.HasMember("note") &&
            env["note"].IsObject() && env["note"].HasMember("receiver") &&
            env["note"]["receiver"].IsObject()) {
            const auto& rc = env["note"]["receiver"];
            if (rc.HasMember("person") && rc["person"].IsObject())
                her = str(rc["person"], "her_id");
            if (her.empty() && rc.HasMember("organisation") && rc["organisation"].IsObject())
                her = str(rc["organisation"], "her_id");
        }
        if (her.empty()) return true;  // the codec refuses a note without a receiver
        auto v = ar_->check(her);
        if (!v.known) {
            d.retry("nhn: receiver not checked: " + v.reason);
            return false;
        }
        if (!v.can_receive) {
            d.fail("nhn: the receiver cannot take the message: " + v.reason);
            return false;
        }
        return true;
    }

    // Returns at once (the ABI's rule): the receiver check, serialising (attachments, schema
    // validation) and the send run on the EDI send thread or, for the file catalogue, the worker.
    void deliver(samband::sdk::delivery d) {
        if (use_edi_) {
            {
                std::lock_guard lock(mu_);
                queue_.push_back(std::move(d));
            }
            cv_.notify_all();
            return;
        }
        worker_.post(std::move(d), [this](samband::sdk::delivery& d) { write_catalogue(d); });
    }

    void write_catalogue(samband::sdk::delivery& d) {
        if (!receiver_can_take(d)) return;
        auto msg = serialize(msg_id_for(d.event_id(), d.destination(), d.id()), d.event());
        if (!msg) {
            // An invalid message is never sent: permanent, with the schema error.
            d.fail("nhn: the message would not be valid, not sent: " + msg.error().what());
            return;
        }
        if (!record_sent(d, msg->msg_id))
            return d.retry("nhn: cannot record the message in " + state_dir_);
        fs::path file = fs::path(out_dir_) / (msg->msg_id + ".xml");
        if (!write_atomic(file, msg->xml)) {
            d.retry("nhn: cannot write " + file.string());
            return;
        }
        host_.log(log_level::info,
                  "message " + msg->msg_id + " (" + msg->message_type + ") written");
        d.succeed(msg->msg_id);  // the MsgId: Apprecs name it as OriginalMsgId
    }

    samband::sdk::rendered render(const samband::sdk::delivery_view& v) {
        auto msg = serialize(msg_id_for(v.event_id, v.destination, v.id), v.event);
        if (!msg)
            throw error(SAMBAND_PERMANENT,
                        "nhn: the message would not be valid: " + msg.error().what());
        return {msg->xml, msg->msg_id + ".xml"};
    }

private:
    // Records whom the message goes to and which event and treatment it belongs to, before it
    // leaves (an Apprec or answer may come back at once).
    bool record_sent(samband::sdk::delivery& d, const std::string& msg_id) {
        sent_record r;
        r.msg_id = msg_id;
        r.event_id = std::string(d.event_id());
        r.destination = std::string(d.destination());
        const auto& ev = d.event();
        rapidjson::Document env;
        env.Parse(ev.envelope_json.data(), ev.envelope_json.size());
        if (!env.HasParseError() && env.IsObject()) {
            if (env.HasMember("data") && env["data"].IsObject())
                r.treatment_id = str(env["data"], "treatment_id");
            if (env.HasMember("note") && env["note"].IsObject() &&
                env["note"].HasMember("receiver") && env["note"]["receiver"].IsObject()) {
                const auto& rc = env["note"]["receiver"];
                if (rc.HasMember("organisation") && rc["organisation"].IsObject())
                    r.office_her_id = str(rc["organisation"], "her_id");
                if (rc.HasMember("person") && rc["person"].IsObject())
                    r.gp_her_id = str(rc["person"], "her_id");
            }
        }
        return ledger_->add(r);
    }

    // The schemas that ship with the plugin: beside it in the build tree (plugins/nhn/xsd), then
    // relative to its installed location (lib/…/samband/plugins → share/samband/nhn/xsd), then the
    // install prefix it was built for. "" when none holds all-messages.xsd.
    static std::string installed_xsd_dir() {
        Dl_info info{};
        std::vector<fs::path> candidates;
        if (dladdr(reinterpret_cast<void*>(&installed_xsd_dir), &info) != 0 && info.dli_fname) {
            fs::path here = fs::path(info.dli_fname).parent_path();
            candidates.push_back(here / "nhn" / "xsd");
            candidates.push_back(here / NHN_XSD_RELATIVE_TO_PLUGIN);
        }
        candidates.push_back(NHN_XSD_INSTALL_DIR);
        std::error_code ec;
        for (const auto& c : candidates)
            if (fs::exists(c / "all-messages.xsd", ec)) return fs::weakly_canonical(c, ec).string();
        return {};
    }

    void make_edi_client() {
        auto key = host_.secret(key_secret_);
        if (!key)
            throw error(SAMBAND_INVALID,
                        "nhn: the secret \"" + key_secret_ + "\" is not configured");
        nhn::edi::helseid_config h = *helseid_cfg_;
        h.key_pem = std::move(*key);
        try {
            auto log = [this](nhn::edi::log_level l, std::string_view m) {
                host_.log(l == nhn::edi::log_level::error     ? log_level::error
                          : l == nhn::edi::log_level::warning ? log_level::warn
                          : l == nhn::edi::log_level::info    ? log_level::info
                                                              : log_level::debug,
                          m);
            };
            auto tokens = std::make_shared<nhn::edi::token_client>(std::move(h),
                                                                   nhn::edi::wall_clock_fn{}, log);
            edi_ = std::make_unique<nhn::edi::edi_client>(*edi_cfg_, tokens, log);
        } catch (const std::exception& ex) {
            throw error(SAMBAND_INVALID, std::string("nhn: edi2: ") + ex.what());
        }
    }

    static nhn::codec make_codec(std::string_view config) {
        rapidjson::Document d;
        if (std::string err = samband::json::parse(config, d); !err.empty() || !d.IsObject())
            throw error(SAMBAND_INVALID, "nhn: config must be a JSON object" +
                                             (err.empty() ? std::string() : " (" + err + ")"));
        std::string xsd = str(d, "xsd_dir");
        if (xsd.empty()) xsd = installed_xsd_dir();
        if (xsd.empty())
            throw error(
                SAMBAND_INVALID,
                "nhn: the official schemas were not found beside the plugin (nhn/xsd) or in "
                "the install prefix (" NHN_XSD_INSTALL_DIR "); set \"xsd_dir\"");
        try {
            return nhn::codec(nhn::codec_config{xsd, {}});
        } catch (const std::exception& e) {
            throw error(SAMBAND_INVALID, std::string("nhn: schemas in ") + xsd + ": " + e.what());
        }
    }

    // The MsgId of a delivery: a name-based UUID of the event's id (a UUIDv7, unique across
    // stores and installations) and the destination, so it is the same on every retry of the
    // delivery and never repeats after a reinstall or in another store, where the per-store
    // delivery number does. The delivery id is only a fallback for an event without an id.
    static std::string msg_id_for(std::string_view event_id, std::string_view destination,
                                  std::string_view delivery_id) {
        if (event_id.empty())
            return nhn::derive_uuid("samband-delivery:" + std::string(delivery_id));
        return nhn::derive_uuid("samband-msg:" + std::string(event_id) + "/" +
                                std::string(destination));
    }

    nhn::codec_result<nhn::serialized_message> serialize(const std::string& msg_id,
                                                         const samband::sdk::event_view& ev) {
        std::vector<std::string> blobs;
        blobs.reserve(ev.attachments.size());
        std::vector<nhn::outgoing_attachment> atts;
        for (const auto& a : ev.attachments) {
            auto bytes = host_.attachment_bytes(a);
            if (!bytes)
                return nhn::make_error(nhn::codec_errc::internal,
                                       "cannot read attachment " + std::string(a.filename));
            blobs.push_back(std::move(*bytes));
        }
        for (std::size_t i = 0; i < ev.attachments.size(); ++i) {
            const auto& a = ev.attachments[i];
            atts.push_back(
                {std::string(a.id), std::string(a.filename), std::string(a.media_type),
                 std::span<const std::uint8_t>(
                     reinterpret_cast<const std::uint8_t*>(blobs[i].data()), blobs[i].size())});
        }
        nhn::serialize_options o;
        o.msg_id = msg_id;
        o.request_apprec = request_apprec_;
        rapidjson::Document env;
        if (samband::json::parse(ev.envelope_json, env).empty() && env.IsObject() &&
            env.HasMember("note")) {
            const auto& note = env["note"];
            if (note.HasMember("receiver") && note["receiver"].HasMember("organisation")) {
                auto it = receiver_types_.find(str(note["receiver"]["organisation"], "her_id"));
                if (it != receiver_types_.end()) o.receiver_message_type = it->second;
            }
        }
        return codec_.serialize_json(ev.envelope_json, atts, o);
    }

    void send_loop() {
        for (;;) {
            std::optional<samband::sdk::delivery> d;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return !running_ || !queue_.empty(); });
                if (!running_) return;
                d.emplace(std::move(queue_.front()));
                queue_.pop_front();
            }
            send_edi(*d);
        }
    }

    void send_edi(samband::sdk::delivery& d) {
        if (!receiver_can_take(d)) return;
        auto msg = serialize(msg_id_for(d.event_id(), d.destination(), d.id()), d.event());
        if (!msg)
            return d.fail("nhn: the message would not be valid, not sent: " + msg.error().what());
        if (!record_sent(d, msg->msg_id))
            return d.retry("nhn: cannot record the message in " + state_dir_);
        for (int tries = 0;; ++tries) {
            auto sent = edi_->send_message(msg->xml);
            if (sent) {
                host_.log(log_level::info,
                          "message " + msg->msg_id + " sent over EDI 2.0 as " + *sent);
                sent_record r;
                r.msg_id = msg->msg_id;
                r.edi_id = *sent;
                if (!ledger_->add(r))  // sent anyway: its Apprec still arrives as a document
                    host_.log(log_level::error, "cannot record the EDI 2.0 id of " + msg->msg_id);
                return d.succeed(msg->msg_id);
            }
            const auto& f = sent.error();
            if (f.kind == nhn::edi::failure_kind::permanent)
                return d.fail("nhn: EDI 2.0 refused the message: " + f.message);
            // Honour Retry-After within this attempt's deadline; otherwise the host retries later.
            std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
            std::int64_t after = f.retry_after.count();
            if (tries < 3 && after > 0 && now_ms + after * 1000 + 1000 < d.deadline_unix_ms()) {
                std::unique_lock lock(mu_);
                cv_.wait_for(lock, std::chrono::seconds(after), [&] { return !running_; });
                if (!running_) return d.retry("nhn: stopping");
                continue;
            }
            return d.retry("nhn: EDI 2.0: " + f.message);
        }
    }

    void poll_edi() {
        nhn::edi::poll_query q;
        q.receiver_her_ids = {static_cast<int>(poll_her_id_)};
        auto list = edi_->poll_unread(q);
        if (!list) {
            host_.log(log_level::warn, "EDI 2.0 poll failed: " + list.error().message);
            return;
        }
        for (const auto& m : *list) {
            {
                std::lock_guard lock(mu_);
                if (in_flight_.count(m.id)) continue;
            }
            auto xml = edi_->business_document(m.id);
            if (!xml) {
                host_.log(log_level::warn,
                          "EDI 2.0 fetch of " + m.id + " failed: " + xml.error().message);
                continue;
            }
            std::string id = m.id;
            int her = m.receiver_her_id ? m.receiver_her_id : static_cast<int>(poll_her_id_);
            incoming in;
            in.name = id;
            in.apprec = [this, id](const nhn::apprec_request& r) {
                nhn::edi::outgoing_apprec a;
                a.status = r.status == nhn::apprec_status::ok ? nhn::edi::apprec_status::ok
                           : r.status == nhn::apprec_status::rejected
                               ? nhn::edi::apprec_status::rejected
                               : nhn::edi::apprec_status::ok_error_in_message_part;
                for (const auto& e : r.errors)
                    a.errors.push_back(
                        {e.code, e.detail.empty() ? e.text : e.detail, e.text, e.code_system});
                auto sent = edi_->send_apprec(id, static_cast<int>(poll_her_id_), a);
                if (!sent)
                    host_.log(log_level::warn,
                              "EDI 2.0 Apprec for " + id + " failed: " + sent.error().message);
            };
            auto doc = std::make_shared<std::string>(*xml);
            in.finish = [this, id, her, doc](outcome o, const std::string& reason) {
                if (o != outcome::done) {
                    fs::path dir =
                        fs::path(state_dir_) / (o == outcome::error ? "error" : "unlinked");
                    write_atomic(dir / (id + ".xml"), *doc);
                    write_atomic(dir / (id + ".xml.reason"), reason + "\n");
                }
                auto r = edi_->mark_read(id, her);
                if (!r)
                    host_.log(log_level::warn,
                              "EDI 2.0 mark read of " + id + " failed: " + r.error().message);
            };
            take_xml(*xml, std::move(in));
        }
    }

    static std::int64_t now_ms() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    // EDI 2.0 receipts: for each message sent and not yet acknowledged, GET /Messages/{id}/apprec
    // — at most `receipt_batch` per round, each message first after `receipt_poll_ms` and then
    // with its interval doubling up to 32 times that — and map an answer as a catalogue Apprec:
    // only from a receiver the message went to (office or GP), else kept in state_dir/error.
    void poll_receipts() {
        const std::int64_t now = now_ms();
        std::size_t asked = 0;
        for (const auto& r : ledger_->awaiting_receipt()) {
            if (receipt_refused_.count(r.msg_id)) continue;
            auto& c = receipt_checks_[r.msg_id];
            if (c.interval_ms == 0) {
                c.interval_ms = receipt_poll_ms_;
                c.next_ms = now + c.interval_ms;
            }
            if (c.next_ms > now) continue;
            if (asked++ >= receipt_batch_) break;
            c.interval_ms = std::min<std::int64_t>(c.interval_ms * 2, 32LL * receipt_poll_ms_);
            c.next_ms = now + c.interval_ms;
            auto list = edi_->apprec(r.edi_id);
            if (!list) {
                host_.log(log_level::warn, "EDI 2.0 Apprec of " + r.msg_id + " (" + r.edi_id +
                                               ") not read: " + list.error().message);
                continue;
            }
            for (const auto& a : *list) {
                if (a.status.empty()) continue;  // none yet
                std::string her = std::to_string(a.receiver_her_id);
                if (her != r.office_her_id && her != r.gp_her_id) {
                    std::string why = "EDI 2.0 Apprec from HER-id " + her + " for MsgId " +
                                      r.msg_id + ", which went to office " + r.office_her_id +
                                      (r.gp_her_id.empty() ? "" : " / GP " + r.gp_her_id) +
                                      ": not applied";
                    host_.log(log_level::warn, why);
                    write_atomic(fs::path(state_dir_) / "error" / (r.edi_id + ".apprec.reason"),
                                 why + "\n");
                    receipt_refused_.insert(r.msg_id);
                    continue;
                }
                std::int32_t kind = a.status == "Ok"         ? SAMBAND_RECEIPT_ACK
                                    : a.status == "Rejected" ? SAMBAND_RECEIPT_REJECT
                                                             : SAMBAND_RECEIPT_WARNING;
                std::string text = a.status == "Ok"         ? "OK"
                                   : a.status == "Rejected" ? "Avvist"
                                                            : "OK, feil i delmelding";
                for (const auto& e : a.errors)
                    text += "; " + e.error_code + " " + e.description +
                            (e.details.empty() ? "" : " (" + e.details + ")");
                host_.receipt(r.msg_id, kind, text);
                sent_record done;
                done.msg_id = r.msg_id;
                done.receipt = true;
                ledger_->add(done);
                receipt_checks_.erase(r.msg_id);
                break;
            }
        }
    }

    void read_loop() {
        std::unique_lock lock(mu_);
        while (running_) {
            lock.unlock();
            if (!in_dir_.empty()) scan();
            if (edi_ && poll_her_id_) poll_edi();
            if (edi_) poll_receipts();
            lock.lock();
            cv_.wait_for(lock, std::chrono::milliseconds(poll_ms_), [&] { return !running_; });
        }
    }

    void move_to(const fs::path& file, const char* where, const std::string& reason = {}) {
        std::error_code ec;
        fs::path dir = fs::path(in_dir_) / where;
        if (!reason.empty())
            write_atomic(dir / (file.filename().string() + ".reason"), reason + "\n");
        fs::rename(file, dir / file.filename(), ec);
    }

    void send_apprec(const nhn::apprec_request& req) {
        auto xml = codec_.make_apprec(req);
        if (!xml) {
            host_.log(log_level::error, "cannot build an Apprec for " + req.original_msg_id + ": " +
                                            xml.error().what());
            return;
        }
        write_atomic(fs::path(out_dir_) / ("apprec-" + req.original_msg_id + ".xml"), *xml);
    }

    nhn::apprec_request our_side(nhn::apprec_request r) {
        if (!own_.her_id.empty()) r.sender = own_;
        return r;
    }

    // An Apprec changes a delivery only when it answers a MsgId we sent and comes from the party
    // that message went to (the office or the GP, by HER-id). Otherwise the reason, for the error
    // store; empty when it was applied.
    std::string apply_receipt(const nhn::receipt& r) {
        auto sent = ledger_->find(r.original_msg_id);
        auto who = [&] {
            std::string s = r.sender.her_id.empty() ? "no HER-id" : "HER-id " + r.sender.her_id;
            if (!r.sender.dept_her_id.empty()) s += "/" + r.sender.dept_her_id;
            if (!r.sender.person_her_id.empty()) s += "/" + r.sender.person_her_id;
            return s;
        };
        if (!sent)
            return "Apprec from " + who() + " for MsgId " + r.original_msg_id +
                   ", which we never sent: not applied";
        if (!r.sender.has_her_id(sent->office_her_id) && !r.sender.has_her_id(sent->gp_her_id))
            return "Apprec from " + who() + " for MsgId " + r.original_msg_id +
                   ", which went to office " + sent->office_her_id +
                   (sent->gp_her_id.empty() ? "" : " / GP " + sent->gp_her_id) + ": not applied";
        report_receipt(r);
        sent_record done;
        done.msg_id = r.original_msg_id;
        done.receipt = true;
        ledger_->add(done);
        return {};
    }

    void report_receipt(const nhn::receipt& r) {
        std::int32_t kind = r.status == nhn::apprec_status::ok         ? SAMBAND_RECEIPT_ACK
                            : r.status == nhn::apprec_status::rejected ? SAMBAND_RECEIPT_REJECT
                                                                       : SAMBAND_RECEIPT_WARNING;
        std::string text = r.status_dn;
        for (const auto& e : r.errors)
            text += "; " + e.code + " " + e.text + (e.detail.empty() ? "" : " (" + e.detail + ")");
        host_.receipt(r.original_msg_id, kind, text);
    }

    void scan() {
        std::vector<fs::path> files;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(in_dir_, ec)) {
            std::string n = e.path().filename().string();
            if (!e.is_regular_file(ec) || n.empty() || n[0] == '.' ||
                e.path().extension() != ".xml")
                continue;
            {
                std::lock_guard lock(mu_);
                if (in_flight_.count(n)) continue;
            }
            files.push_back(e.path());
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) take(f);
    }

    // Where an incoming document came from, how to answer it and what to do once it is handled.
    enum class outcome { done, error, unlinked };
    struct incoming {
        std::string name;
        std::function<void(const nhn::apprec_request&)> apprec;
        std::function<void(outcome, const std::string& reason)> finish;
    };

    void take(const fs::path& file) {
        incoming in;
        in.name = file.filename().string();
        in.apprec = [this](const nhn::apprec_request& r) { send_apprec(r); };
        in.finish = [this, file](outcome o, const std::string& reason) {
            move_to(file,
                    o == outcome::done    ? "done"
                    : o == outcome::error ? "error"
                                          : "unlinked",
                    reason);
        };
        std::string xml, reason;
        if (!read_bounded(file, max_document_bytes, xml, reason)) {
            host_.log(log_level::warn, "refused " + in.name + ": " + reason);
            return in.finish(outcome::error, reason);
        }
        take_xml(xml, std::move(in));
    }

    // A refusal: kept with the reason (error store) and answered with an Apprec Avvist when the
    // sender can be addressed. Reasons come from our checks and the codec, never from payload.
    void refuse(incoming& in, const nhn::message_header* h, nhn::apprec_error e,
                const std::string& reason) {
        host_.log(log_level::warn, "refused " + in.name + ": " + reason);
        if (h != nullptr && !h->msg_id.empty() && !h->sender.her_id.empty())
            in.apprec(our_side(nhn::apprec_for(*h, nhn::apprec_status::rejected, {std::move(e)})));
        in.finish(outcome::error, reason);
    }

    void take_receipt(const std::string& xml, incoming& in) {
        auto r = codec_.parse_receipt(xml);
        if (!r) {
            host_.log(log_level::warn, "unreadable Apprec " + in.name + ": " + r.error().what());
            return in.finish(outcome::error, r.error().what());
        }
        std::string why = apply_receipt(*r);
        if (!why.empty()) {
            host_.log(log_level::warn, in.name + ": " + why);
            return in.finish(outcome::error, why);
        }
        in.finish(outcome::done, {});
    }

    void take_xml(const std::string& xml, incoming in) {
        auto header = codec_.peek(xml);
        if (!header && header.error().code == nhn::codec_errc::wrong_root) {
            // Apprec 1.0/1.1 travel as their own document (root AppRec), not inside a MsgHead.
            if (xml.find("AppRec") != std::string::npos && codec_.parse_receipt(xml))
                return take_receipt(xml, in);
            // A MsgHead in another namespace: its header is still readable, so the sender gets T10.
            std::string foreign;
            auto h = nhn::peek_header_any_namespace(xml, foreign);
            if (h && !foreign.empty())
                return refuse(in, &*h, nhn::apprec_error_for(header.error()),
                              header.error().what());
        }
        if (!header) {
            // Unreadable: no MsgId to answer; kept with the reason for the operator.
            return refuse(in, nullptr, {}, header.error().what());
        }
        if (header->msg_type == "APPREC") return take_receipt(xml, in);
        auto m = codec_.parse(xml);
        if (!m) return refuse(in, &*header, nhn::apprec_error_for(m.error()), m.error().what());
        if (m->patient_id.empty())
            return refuse(in, &*header, nhn::make_apprec_error(nhn::apprec_codes::fnr_mangler),
                          "the message names no patient");
        samband::ident::person_id_options id_opts;
        id_opts.allow_synthetic = allow_synthetic_;
        if (auto c = samband::ident::check_person_id(m->patient_id, id_opts); !c) {
            std::string why = "patient " + samband::ident::mask(c.reason);
            return refuse(in, &*header, nhn::make_apprec_error(nhn::apprec_codes::fnr_feil, why),
                          why);
        }
        // Link the message to the note it answers: RefToParent, else RefToConversation.
        nhn::event_context ctx;
        std::optional<sent_record> parent;
        for (const auto& ref : {m->ref_to_parent, m->ref_to_conversation}) {
            if (parent || !ref || ref->empty()) continue;
            parent = ledger_->find(*ref);
        }
        if (parent) ctx.treatment_id = parent->treatment_id;
        if (header->msg_type == "DIALOG_SVAR" && (!parent || parent->treatment_id.empty())) {
            // An answer to nothing we sent (or to a note without a treatment): kept and flagged
            // for a person, never given a made-up treatment. The GP gets Apprec OK: it arrived.
            std::string why =
                "unlinked answer: RefToParent " + m->ref_to_parent.value_or("(none)") +
                " / RefToConversation " + m->ref_to_conversation.value_or("(none)") +
                (parent ? " names a note without a treatment" : " is no MsgId we sent");
            host_.log(log_level::warn, in.name + ": " + why);
            in.apprec(our_side(nhn::apprec_for(*header, nhn::apprec_status::ok)));
            return in.finish(outcome::unlinked, why);
        }
        auto ev = nhn::to_event_json(*m, ctx);
        if (!ev) return refuse(in, &*header, nhn::apprec_error_for(ev.error()), ev.error().what());
        std::string event_json = *ev;
        if (parent && !parent->event_id.empty() && header->msg_type == "DIALOG_SVAR") {
            // The event this answers, beside its treatment.
            rapidjson::Document d;
            d.Parse(event_json.c_str());
            d["data"].AddMember("answers_event_id",
                                rapidjson::Value(parent->event_id.c_str(), d.GetAllocator()),
                                d.GetAllocator());
            rapidjson::StringBuffer sb;
            rapidjson::Writer<rapidjson::StringBuffer> w(sb);
            d.Accept(w);
            event_json.assign(sb.GetString(), sb.GetSize());
        }
        std::vector<samband::sdk::submit_attachment> atts;
        for (const auto& a : m->attachments)
            atts.push_back(
                {a.filename, a.mime_type, std::string(a.bytes.begin(), a.bytes.end()), {}});
        std::string n = in.name;
        {
            std::lock_guard lock(mu_);
            in_flight_.insert(n);
        }
        auto hdr = *header;
        auto shared = std::make_shared<incoming>(std::move(in));
        samband_status st = host_.submit(
            event_json, atts, [this, shared, hdr, n](const samband::sdk::submit_result& r) {
                if (r.status == SAMBAND_OK) {
                    shared->apprec(our_side(nhn::apprec_for(hdr, nhn::apprec_status::ok)));
                    shared->finish(outcome::done, {});
                } else if (r.status == SAMBAND_INVALID) {
                    // The host refused the event (kept in its error store). A refused patient
                    // number is E31; anything else X99. The host's reason names fields, not data.
                    std::string why = samband::ident::mask(r.message);
                    if (why.size() > 500) why.resize(500);
                    bool patient = why.find("fødselsnummer") != std::string::npos ||
                                   why.find("D-number") != std::string::npos ||
                                   why.find("subject") != std::string::npos;
                    shared->apprec(our_side(nhn::apprec_for(
                        hdr, nhn::apprec_status::rejected,
                        {nhn::make_apprec_error(
                            patient ? nhn::apprec_codes::fnr_feil : nhn::apprec_codes::annen_feil,
                            why)})));
                    shared->finish(outcome::error, why);
                }
                std::lock_guard lock(mu_);
                in_flight_.erase(n);
            });
        if (st != SAMBAND_OK) {
            std::lock_guard lock(mu_);
            in_flight_.erase(n);
        }
    }

    samband::sdk::host host_;
    nhn::codec codec_;
    std::string out_dir_, in_dir_;
    int poll_ms_ = 500;
    bool request_apprec_ = true;
    nhn::apprec_party own_;
    std::map<std::string, std::string> receiver_types_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    std::set<std::string> in_flight_;
    std::thread reader_;
    std::unique_ptr<nhn::edi::edi_client> edi_;
    std::string state_dir_;
    std::unique_ptr<ar_lookup> ar_;
    int receipt_poll_ms_ = 60000;
    std::size_t receipt_batch_ = 50;
    struct receipt_check {
        std::int64_t next_ms = 0;
        std::int64_t interval_ms = 0;
    };
    std::map<std::string, receipt_check> receipt_checks_;  // reader thread only
    std::set<std::string> receipt_refused_;                // reader thread only
    bool allow_synthetic_ = true;
    std::unique_ptr<sent_ledger> ledger_;
    bool use_edi_ = false;
    std::string key_secret_;
    std::optional<nhn::edi::helseid_config> helseid_cfg_;
    std::optional<nhn::edi::edi_config> edi_cfg_;
    std::chrono::milliseconds timeout_{30000};
    std::int64_t poll_her_id_ = 0;
    std::deque<samband::sdk::delivery> queue_;
    std::thread sender_;
    samband::sdk::worker worker_;  // last: stopped (and joined) before the rest goes
};

}  // namespace

SAMBAND_PLUGIN(nhn_plugin)
