// The HL7 v2 plugin: an MLLP listener (source, ACK only after the store committed the event) and
// an MLLP client (sink, waits for the ACK within a deadline), with the RPH mappings.
#include "hl7v2/codec/ack.hpp"
#include "hl7v2/codec/mapping.hpp"
#include "hl7v2/codec/message.hpp"
#include "hl7v2/codec/mllp.hpp"

#include <samband/sdk.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using samband::sdk::error;
using samband::sdk::log_level;
namespace h7 = samband::hl7v2;
using clock_type = std::chrono::steady_clock;

// Reads the endpoint config; every mistake throws with the key's name.
struct config {
    // source
    std::string listen;  // host:port
    std::string port_file;
    std::string reject_dir;  // where refused messages are kept with their reason (optional)
    std::size_t max_connections = 64;
    std::size_t max_frame_bytes = 16u * 1024 * 1024;
    std::chrono::milliseconds idle_timeout{300000};
    std::chrono::milliseconds frame_timeout{30000};
    h7::parse_options parse;
    h7::inbound_options inbound;
    h7::ack_options ack;
    // sink
    std::string connect;  // host:port
    std::chrono::milliseconds ack_timeout{10000};
    std::chrono::milliseconds connect_timeout{5000};
    h7::outbound_options outbound;
    // TLS (both sides): file paths; keys stay in files, never in the config text.
    bool tls = false;
    std::string tls_cert_file, tls_key_file, tls_ca_file, tls_server_name;
    bool tls_require_client_cert = true;

    explicit config(std::string_view text) {
        rapidjson::Document doc;
        doc.Parse(text.data(), text.size());
        if (doc.HasParseError() || !doc.IsObject())
            throw error(SAMBAND_INVALID, "hl7v2: config must be a JSON object");
        const rapidjson::Value& d = doc;  // const iterators: no C++20 reversed-operator ambiguity
        static const char* known[] = {"listen",
                                      "port_file",
                                      "max_connections",
                                      "max_frame_bytes",
                                      "idle_timeout_ms",
                                      "frame_timeout_ms",
                                      "max_segments",
                                      "max_fields",
                                      "default_charset",
                                      "allow_synthetic_ids",
                                      "session_kind",
                                      "sending_application",
                                      "sending_facility",
                                      "connect",
                                      "ack_timeout_ms",
                                      "connect_timeout_ms",
                                      "receiving_application",
                                      "receiving_facility",
                                      "version",
                                      "charset",
                                      "processing_id",
                                      "tls",
                                      "reject_dir"};
        for (auto it = d.MemberBegin(); it != d.MemberEnd(); ++it) {
            std::string k = it->name.GetString();
            if (std::find(std::begin(known), std::end(known), k) == std::end(known))
                throw error(SAMBAND_INVALID, "hl7v2: unknown config key \"" + k + "\"");
        }
        auto str = [&](const char* k, std::string fallback = {}) {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return fallback;
            if (!it->value.IsString())
                throw error(SAMBAND_INVALID, std::string("hl7v2: \"") + k + "\" must be a string");
            return std::string(it->value.GetString());
        };
        auto num = [&](const char* k, std::uint64_t fallback, std::uint64_t min,
                       std::uint64_t max) {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return fallback;
            if (!it->value.IsUint64() || it->value.GetUint64() < min || it->value.GetUint64() > max)
                throw error(SAMBAND_INVALID,
                            std::string("hl7v2: \"") + k + "\" must be an integer from " +
                                std::to_string(min) + " to " + std::to_string(max));
            return it->value.GetUint64();
        };
        auto boolean = [&](const char* k, bool fallback) {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return fallback;
            if (!it->value.IsBool())
                throw error(SAMBAND_INVALID,
                            std::string("hl7v2: \"") + k + "\" must be true or false");
            return it->value.GetBool();
        };
        listen = str("listen");
        connect = str("connect");
        if (listen.empty() == connect.empty())
            throw error(SAMBAND_INVALID,
                        "hl7v2: give \"listen\" (an MLLP source) or \"connect\" (an MLLP sink)");
        port_file = str("port_file");
        reject_dir = str("reject_dir");
        if (!reject_dir.empty()) {
            std::error_code ec;
            std::filesystem::create_directories(reject_dir, ec);
            if (ec)
                throw error(SAMBAND_INVALID, "hl7v2: cannot create \"reject_dir\" " + reject_dir +
                                                 ": " + ec.message());
        }
        max_connections = num("max_connections", 64, 1, 10000);
        max_frame_bytes = num("max_frame_bytes", 16u << 20, 1024, 256u << 20);
        parse.lim.max_message_bytes = max_frame_bytes;
        idle_timeout = std::chrono::milliseconds(num("idle_timeout_ms", 300000, 100, 86400000));
        frame_timeout = std::chrono::milliseconds(num("frame_timeout_ms", 30000, 100, 3600000));
        parse.lim.max_segments = num("max_segments", 5000, 2, 1000000);
        parse.lim.max_fields = num("max_fields", 1000, 10, 100000);
        auto cs =
            h7::charset_from_msh18(str("default_charset", "UNICODE UTF-8"), h7::charset::utf8);
        if (!cs)
            throw error(SAMBAND_INVALID,
                        "hl7v2: \"default_charset\" must be \"UNICODE UTF-8\" or \"8859/1\"");
        parse.default_charset = *cs;
        inbound.allow_synthetic_ids = boolean("allow_synthetic_ids", false);
        inbound.session_kind = str("session_kind", "individuell");
        inbound.max_attachment_bytes = max_frame_bytes;
        ack.sending_application = str("sending_application", "SAMBAND");
        ack.sending_facility = str("sending_facility");
        ack_timeout = std::chrono::milliseconds(num("ack_timeout_ms", 10000, 10, 3600000));
        connect_timeout = std::chrono::milliseconds(num("connect_timeout_ms", 5000, 10, 600000));
        outbound.sending_application = ack.sending_application;
        outbound.sending_facility = ack.sending_facility;
        outbound.receiving_application = str("receiving_application");
        outbound.receiving_facility = str("receiving_facility");
        outbound.version = str("version", "2.5");
        if (outbound.version != "2.3" && outbound.version != "2.3.1" && outbound.version != "2.4" &&
            outbound.version != "2.5" && outbound.version != "2.5.1")
            throw error(SAMBAND_INVALID,
                        "hl7v2: \"version\" must be 2.3, 2.3.1, 2.4, 2.5 or 2.5.1");
        auto ocs = h7::charset_from_msh18(str("charset", "UNICODE UTF-8"), h7::charset::utf8);
        if (!ocs || *ocs == h7::charset::ascii)
            throw error(SAMBAND_INVALID,
                        "hl7v2: \"charset\" must be \"UNICODE UTF-8\" or \"8859/1\"");
        outbound.chars = *ocs;
        outbound.processing_id = str("processing_id", "P");
        if (d.HasMember("tls")) read_tls(d["tls"]);
    }

    void read_tls(const rapidjson::Value& t) {
        if (!t.IsObject()) throw error(SAMBAND_INVALID, "hl7v2: \"tls\" must be an object");
        static const char* known[] = {"cert_file", "key_file", "ca_file", "require_client_cert",
                                      "server_name"};
        for (auto it = t.MemberBegin(); it != t.MemberEnd(); ++it) {
            std::string k = it->name.GetString();
            if (std::find(std::begin(known), std::end(known), k) == std::end(known))
                throw error(SAMBAND_INVALID, "hl7v2: unknown key \"tls." + k + "\"");
        }
        auto str = [&](const char* k) {
            if (!t.HasMember(k)) return std::string();
            if (!t[k].IsString())
                throw error(SAMBAND_INVALID,
                            std::string("hl7v2: \"tls.") + k + "\" must be a string");
            return std::string(t[k].GetString());
        };
        tls = true;
        tls_cert_file = str("cert_file");
        tls_key_file = str("key_file");
        tls_ca_file = str("ca_file");
        tls_server_name = str("server_name");
        if (t.HasMember("require_client_cert")) {
            if (!t["require_client_cert"].IsBool())
                throw error(SAMBAND_INVALID,
                            "hl7v2: \"tls.require_client_cert\" must be true or false");
            tls_require_client_cert = t["require_client_cert"].GetBool();
        }
        if (tls_cert_file.empty() != tls_key_file.empty())
            throw error(SAMBAND_INVALID, "hl7v2: give both \"tls.cert_file\" and \"tls.key_file\"");
        if (!listen.empty() && tls_cert_file.empty())
            throw error(SAMBAND_INVALID,
                        "hl7v2: a TLS listener needs \"tls.cert_file\" and \"tls.key_file\"");
        if (!listen.empty() && tls_require_client_cert && tls_ca_file.empty())
            throw error(
                SAMBAND_INVALID,
                "hl7v2: \"tls.require_client_cert\" needs \"tls.ca_file\" (the CAs that sign "
                "client certificates)");
        if (!connect.empty() && tls_ca_file.empty())
            throw error(SAMBAND_INVALID,
                        "hl7v2: a TLS sender needs \"tls.ca_file\" to check the server");
    }
};

std::pair<std::string, std::string> split_hostport(const std::string& hp, const char* key) {
    auto colon = hp.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == hp.size())
        throw error(SAMBAND_INVALID, std::string("hl7v2: \"") + key + "\" must be host:port");
    return {hp.substr(0, colon), hp.substr(colon + 1)};
}

std::string dtm_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S+0000", &tm);
    return buf;
}

using tls_stream = asio::ssl::stream<tcp::socket>;

// Builds the TLS context from the config; a bad file throws with its name.
std::unique_ptr<asio::ssl::context> make_tls_context(const config& c, bool server) {
    auto ctx = std::make_unique<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                           : asio::ssl::context::tls_client);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    auto need = [&](const char* what, const std::string& file) {
        if (ec)
            throw error(SAMBAND_INVALID, std::string("hl7v2: cannot load ") + what + " " + file +
                                             ": " + ec.message());
    };
    if (!c.tls_cert_file.empty()) {
        ctx->use_certificate_chain_file(c.tls_cert_file, ec);
        need("tls.cert_file", c.tls_cert_file);
        ctx->use_private_key_file(c.tls_key_file, asio::ssl::context::pem, ec);
        need("tls.key_file", c.tls_key_file);
    }
    if (!c.tls_ca_file.empty()) {
        ctx->load_verify_file(c.tls_ca_file, ec);
        need("tls.ca_file", c.tls_ca_file);
    }
    if (server) {
        if (c.tls_require_client_cert)
            ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
        else
            ctx->set_verify_mode(asio::ssl::verify_none);
    } else {
        ctx->set_verify_mode(asio::ssl::verify_peer);
    }
    return ctx;
}

// A TCP connection, with or without TLS over it.
class mllp_stream {
public:
    explicit mllp_stream(tcp::socket s) : tcp_(std::move(s)) {}
    mllp_stream(tcp::socket s, asio::ssl::context& ctx)
        : tls_(std::make_unique<tls_stream>(std::move(s), ctx)) {}

    bool tls() const { return tls_ != nullptr; }
    tls_stream& tls_layer() { return *tls_; }
    tcp::socket& socket() { return tls_ ? tls_->next_layer() : *tcp_; }

    template <class Buffer, class Handler>
    void async_read_some(const Buffer& b, Handler&& h) {
        if (tls_)
            tls_->async_read_some(b, std::forward<Handler>(h));
        else
            tcp_->async_read_some(b, std::forward<Handler>(h));
    }
    template <class Buffer, class Handler>
    void async_write(const Buffer& b, Handler&& h) {
        if (tls_)
            asio::async_write(*tls_, b, std::forward<Handler>(h));
        else
            asio::async_write(*tcp_, b, std::forward<Handler>(h));
    }

private:
    std::optional<tcp::socket> tcp_;
    std::unique_ptr<tls_stream> tls_;
};

// The io thread and a guard that keeps late host callbacks from touching a stopped plugin.
struct runtime {
    asio::io_context io;
    std::mutex mu;
    bool running = true;
    std::size_t open_sessions = 0;  // io thread only

    template <class F>
    void post(F&& f) {
        std::lock_guard lock(mu);
        if (running) asio::post(io, std::forward<F>(f));
    }
};

// One MLLP connection of the listener. All members are touched on the io thread only.
class session : public std::enable_shared_from_this<session> {
public:
    session(mllp_stream sock, std::shared_ptr<runtime> rt, const config& cfg,
            samband::sdk::host host)
        : sock_(std::move(sock)),
          timer_(rt->io),
          rt_(std::move(rt)),
          cfg_(cfg),
          host_(host),
          reader_(cfg.max_frame_bytes) {
        ++rt_->open_sessions;
        buf_.resize(64 * 1024);
    }
    ~session() { --rt_->open_sessions; }

    void start() {
        last_read_ = clock_type::now();
        arm_timer();
        if (!sock_.tls()) return read();
        frame_started_ = clock_type::now();  // the handshake must finish within frame_timeout_ms
        auto self = shared_from_this();
        sock_.tls_layer().async_handshake(
            asio::ssl::stream_base::server, [self](boost::system::error_code ec) {
                if (ec) {
                    self->host_.log(log_level::warn,
                                    "hl7v2: TLS handshake refused: " + ec.message());
                    return self->close();
                }
                self->frame_started_.reset();
                self->read();
            });
    }

private:
    struct slot {
        bool ready = false;
        std::string bytes;  // the framed ACK; empty = none wanted
        bool close_after = false;
    };

    void read() {
        auto self = shared_from_this();
        sock_.async_read_some(asio::buffer(buf_),
                              [self](boost::system::error_code ec, std::size_t n) {
                                  if (ec) return self->close();
                                  self->last_read_ = clock_type::now();
                                  if (self->closing_)
                                      return self->read();  // after a refusal: read and discard
                                  self->reader_.feed(std::string_view(self->buf_.data(), n));
                                  self->drain();
                                  if (self->reader_.in_frame() && !self->frame_started_)
                                      self->frame_started_ = clock_type::now();
                                  self->read();
                              });
    }

    // Takes every complete frame, until the input ends or is refused.
    void drain() {
        std::string frame;
        while (!closing_) {
            switch (reader_.next(frame)) {
                case h7::mllp::reader::status::need_more:
                    return;
                case h7::mllp::reader::status::frame:
                    frame_started_.reset();
                    handle(frame);
                    break;
                case h7::mllp::reader::status::junk:
                    refuse(frame + " bytes outside an MLLP frame (a frame starts with 0x0B)");
                    return;
                case h7::mllp::reader::status::too_large:
                    refuse("the frame exceeds max_frame_bytes (" +
                           std::to_string(cfg_.max_frame_bytes) + ")");
                    return;
            }
        }
    }

    // A protocol error: an AR without MSA-2, then the connection closes.
    void refuse(const std::string& why) {
        host_.log(log_level::warn, "hl7v2: refused a connection's input: " + why);
        h7::parse_error e{h7::hl7_error::segment_sequence, why, {}, 0, 0, 0};
        auto ack = h7::build_ack(nullptr, h7::ack_code::AR, why, &e, cfg_.ack);
        slots_.push_back({true, h7::mllp::frame(h7::serialize(ack)), true});
        closing_ = true;
        flush();
    }

    void handle(const std::string& frame) {
        slots_.push_back({});
        std::size_t index = base_ + slots_.size() - 1;
        auto parsed = h7::parse(frame, cfg_.parse);
        if (!parsed) {
            const auto& e = parsed.error();
            host_.log(log_level::warn, "hl7v2: message refused: " + e.describe());
            keep_refused(frame, e.describe());
            answer_error(index, nullptr, h7::outcome::rejected, e);
            return;
        }
        auto msg = std::make_shared<h7::message>(std::move(*parsed));
        auto events = h7::map_inbound(*msg, cfg_.inbound);
        if (!events) {
            const auto& e = events.error();
            bool reject = e.code == h7::hl7_error::unsupported_message_type ||
                          e.code == h7::hl7_error::unsupported_event ||
                          e.code == h7::hl7_error::unsupported_version;
            host_.log(log_level::warn, "hl7v2: message " + std::string(msg->control_id()) +
                                           " refused: " + e.describe());
            keep_refused(frame, e.describe());
            answer_error(index, msg.get(), reject ? h7::outcome::rejected : h7::outcome::error, e);
            return;
        }
        // Submit every event; answer when the host has answered for all of them.
        auto state = std::make_shared<pending>();
        state->left = events->size();
        auto self = shared_from_this();
        for (auto& ev : *events) {
            std::vector<samband::sdk::submit_attachment> atts;
            for (auto& a : ev.attachments)
                atts.push_back(
                    {std::move(a.filename), std::move(a.media_type), std::move(a.bytes), {}});
            auto rt = rt_;
            samband_status st =
                host_.submit(ev.envelope_json, atts, [rt, self, state, msg, index](const auto& r) {
                    rt->post(
                        [self, state, msg, index, r] { self->submitted(index, msg, state, r); });
                });
            if (st != SAMBAND_OK) {
                samband::sdk::submit_result r;
                r.status = SAMBAND_RETRY;
                r.message = "the host cannot take the message now";
                submitted(index, msg, state, r);
            }
        }
    }

    struct pending {
        std::size_t left = 0;
        samband_status worst = SAMBAND_OK;
        std::string message;
    };

    void submitted(std::size_t index, const std::shared_ptr<h7::message>& msg,
                   const std::shared_ptr<pending>& state, const samband::sdk::submit_result& r) {
        if (r.status != SAMBAND_OK && state->worst == SAMBAND_OK) {
            state->worst = r.status;
            state->message = r.message;
        }
        if (--state->left > 0) return;
        if (state->worst == SAMBAND_OK) {
            auto ack = h7::build_ack(msg.get(), h7::ack_code_for(*msg, h7::outcome::accepted), {},
                                     nullptr, cfg_.ack);
            fill(index, h7::ack_wanted(*msg, h7::outcome::accepted)
                            ? h7::mllp::frame(h7::serialize(ack))
                            : std::string());
            return;
        }
        std::string why = state->worst == SAMBAND_RETRY
                              ? "not stored now, send again: " + state->message
                              : "refused by Samband: " + state->message;
        host_.log(log_level::warn,
                  "hl7v2: message " + std::string(msg->control_id()) + " not taken: " + why);
        h7::parse_error e{
            state->worst == SAMBAND_RETRY ? h7::hl7_error::internal : h7::hl7_error::data_type,
            why,
            {},
            0,
            0,
            0};
        answer_error(index, msg.get(), h7::outcome::error, e);
    }

    // Keeps a refused message and its reason in reject_dir (written, then renamed into place).
    void keep_refused(const std::string& frame, const std::string& reason) {
        if (cfg_.reject_dir.empty()) return;
        static std::atomic<std::uint64_t> counter{0};
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
        std::string base =
            cfg_.reject_dir + "/" + std::to_string(ms) + "-" + std::to_string(++counter);
        auto put = [](const std::string& path, const std::string& text) {
            std::string tmp = path + ".tmp";
            {
                std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
                out << text;
                if (!out) return false;
            }
            return std::rename(tmp.c_str(), path.c_str()) == 0;
        };
        if (!put(base + ".hl7", frame) || !put(base + ".reason", reason + "\n"))
            host_.log(log_level::error,
                      "hl7v2: cannot keep a refused message in " + cfg_.reject_dir);
    }

    void answer_error(std::size_t index, const h7::message* msg, h7::outcome o,
                      const h7::parse_error& e) {
        h7::ack_code code =
            msg ? h7::ack_code_for(*msg, o)
                : (o == h7::outcome::rejected ? h7::ack_code::AR : h7::ack_code::AE);
        std::string text = e.describe();
        auto ack = h7::build_ack(msg, code, text, &e, cfg_.ack);
        bool wanted = !msg || h7::ack_wanted(*msg, o);
        fill(index, wanted ? h7::mllp::frame(h7::serialize(ack)) : std::string());
    }

    void fill(std::size_t index, std::string bytes) {
        if (index < base_ || index - base_ >= slots_.size()) return;
        auto& s = slots_[index - base_];
        s.ready = true;
        s.bytes = std::move(bytes);
        flush();
    }

    // Writes ready ACKs in the order their messages came.
    void flush() {
        if (writing_) return;
        while (!slots_.empty() && slots_.front().ready && slots_.front().bytes.empty() &&
               !slots_.front().close_after) {
            slots_.pop_front();
            ++base_;
        }
        if (slots_.empty() || !slots_.front().ready) return;
        writing_ = true;
        auto self = shared_from_this();
        sock_.async_write(asio::buffer(slots_.front().bytes),
                          [self](boost::system::error_code ec, std::size_t) {
                              self->writing_ = false;
                              bool close_after = self->slots_.front().close_after;
                              self->slots_.pop_front();
                              ++self->base_;
                              if (ec) return self->close();
                              if (close_after) {
                                  // Let the peer read the refusal: stop sending, discard what
                                  // it still sends, close when it does or after 2 s.
                                  boost::system::error_code ignore;
                                  self->sock_.socket().shutdown(tcp::socket::shutdown_send, ignore);
                                  self->linger_until_ = clock_type::now() + std::chrono::seconds(2);
                                  return;
                              }
                              self->flush();
                          });
    }

    void arm_timer() {
        auto self = shared_from_this();
        timer_.expires_after(std::chrono::milliseconds(100));
        timer_.async_wait([self](boost::system::error_code ec) {
            if (ec || self->closed_) return;
            auto now = clock_type::now();
            if (self->linger_until_ && now > *self->linger_until_) return self->close();
            if (self->frame_started_ && now - *self->frame_started_ > self->cfg_.frame_timeout) {
                self->host_.log(log_level::warn,
                                "hl7v2: a frame was not finished within frame_timeout_ms; "
                                "closing the connection");
                return self->close();
            }
            bool idle = self->slots_.empty() && !self->reader_.in_frame();
            if (idle && now - self->last_read_ > self->cfg_.idle_timeout) {
                self->host_.log(log_level::debug, "hl7v2: idle connection closed");
                return self->close();
            }
            self->arm_timer();
        });
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        boost::system::error_code ec;
        sock_.socket().shutdown(tcp::socket::shutdown_both, ec);
        sock_.socket().close(ec);
        timer_.cancel();
    }

    mllp_stream sock_;
    asio::steady_timer timer_;
    std::shared_ptr<runtime> rt_;
    const config& cfg_;
    samband::sdk::host host_;
    h7::mllp::reader reader_;
    std::vector<char> buf_;
    std::deque<slot> slots_;
    std::size_t base_ = 0;  // the index of slots_.front()
    bool writing_ = false, closing_ = false, closed_ = false;
    clock_type::time_point last_read_;
    std::optional<clock_type::time_point> frame_started_;
    std::optional<clock_type::time_point> linger_until_;
};

// The sink's one connection: deliveries go one at a time, each waiting for its ACK.
class mllp_client {
public:
    mllp_client(std::shared_ptr<runtime> rt, const config& cfg, samband::sdk::host host)
        : rt_(std::move(rt)),
          cfg_(cfg),
          host_(host),
          tls_ctx_(cfg.tls ? make_tls_context(cfg, false) : nullptr),
          timer_(rt_->io),
          reader_(cfg.max_frame_bytes) {
        buf_.resize(64 * 1024);
    }

    struct job {
        samband::sdk::delivery d;
        std::string control_id;
        std::string bytes;  // framed
    };

    void enqueue(job j) {
        queue_.push_back(std::move(j));
        if (!busy_) next();
    }

    void fail_all(const std::string& why) {
        for (auto& j : queue_) j.d.retry(why);
        queue_.clear();
    }

private:
    void next() {
        if (queue_.empty()) {
            busy_ = false;
            return;
        }
        busy_ = true;
        if (!sock_ || !sock_->socket().is_open()) return connect();
        send();
    }

    void connect() {
        auto [host, port] = split_hostport(cfg_.connect, "connect");
        tcp::resolver res(rt_->io);
        boost::system::error_code ec;
        auto eps = res.resolve(host, port, ec);
        if (ec) return finish_retry("cannot resolve " + cfg_.connect + ": " + ec.message());
        arm(cfg_.connect_timeout);
        sock_.reset();
        raw_ = std::make_unique<tcp::socket>(rt_->io);
        asio::async_connect(
            *raw_, eps, [this, host = host](boost::system::error_code ec, const tcp::endpoint&) {
                if (ec) {
                    timer_.cancel();
                    return finish_retry("cannot connect to " + cfg_.connect + ": " + ec.message());
                }
                reader_ = h7::mllp::reader(cfg_.max_frame_bytes);
                raw_->set_option(tcp::no_delay(true), ec);
                if (!tls_ctx_) {
                    timer_.cancel();
                    sock_.emplace(std::move(*raw_));
                    return send();
                }
                sock_.emplace(std::move(*raw_), *tls_ctx_);
                std::string name = cfg_.tls_server_name.empty() ? host : cfg_.tls_server_name;
                auto& t = sock_->tls_layer();
                SSL_set_tlsext_host_name(t.native_handle(), name.c_str());
                t.set_verify_callback(asio::ssl::host_name_verification(name));
                t.async_handshake(asio::ssl::stream_base::client,
                                  [this](boost::system::error_code ec) {
                                      timer_.cancel();
                                      if (ec)
                                          return finish_retry("TLS handshake with " + cfg_.connect +
                                                              ": " + ec.message());
                                      send();
                                  });
            });
    }

    void send() {
        arm(cfg_.ack_timeout);
        sock_->async_write(asio::buffer(queue_.front().bytes),
                           [this](boost::system::error_code ec, std::size_t) {
                               if (ec) return finish_retry("send failed: " + ec.message());
                               read_ack();
                           });
    }

    void read_ack() {
        std::string frame;
        for (;;) {
            auto st = reader_.next(frame);
            if (st == h7::mllp::reader::status::frame) {
                if (on_ack(frame)) return;
                continue;  // an ACK for something else: keep reading
            }
            if (st != h7::mllp::reader::status::need_more)
                return finish_retry("the peer sent bytes that are not an MLLP frame");
            break;
        }
        sock_->async_read_some(asio::buffer(buf_), [this](boost::system::error_code ec,
                                                          std::size_t n) {
            if (ec)
                return finish_retry("connection lost while waiting for the ACK: " + ec.message());
            reader_.feed(std::string_view(buf_.data(), n));
            read_ack();
        });
    }

    // True when this frame settled the current delivery.
    bool on_ack(const std::string& frame) {
        auto m = h7::parse(frame);
        if (!m) {
            finish_retry("the ACK cannot be read: " + m.error().describe());
            return true;
        }
        auto info = h7::read_ack(*m);
        if (!info) {
            finish_retry("the answer is not an ACK: " + info.error().describe());
            return true;
        }
        job& j = queue_.front();
        if (info->control_id != j.control_id) {
            host_.log(log_level::warn, "hl7v2: ignored an ACK for " + info->control_id +
                                           " while waiting for " + j.control_id);
            return false;
        }
        timer_.cancel();
        switch (info->code) {
            case h7::ack_code::AA:
            case h7::ack_code::CA:
                j.d.succeed(j.control_id);
                break;
            case h7::ack_code::AR:
            case h7::ack_code::CR:
                j.d.fail("the receiver rejected the message (" +
                         std::string(h7::to_string(info->code)) + "): " + info->text);
                break;
            default:
                j.d.retry("the receiver answered " + std::string(h7::to_string(info->code)) + ": " +
                          info->text);
        }
        queue_.pop_front();
        next();
        return true;
    }

    void arm(std::chrono::milliseconds ms) {
        timer_.expires_after(ms);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;
            timed_out_ = true;
            close_socket();  // the pending operation completes with an error
        });
    }

    void finish_retry(const std::string& why) {
        timer_.cancel();
        close_socket();
        std::string text = timed_out_ ? "no ACK within the deadline (" + why + ")" : why;
        timed_out_ = false;
        if (!queue_.empty()) {
            queue_.front().d.retry(text);
            queue_.pop_front();
        }
        host_.log(log_level::warn, "hl7v2: " + text);
        next();
    }

    void close_socket() {
        boost::system::error_code ignore;
        if (raw_ && raw_->is_open()) raw_->close(ignore);
        if (sock_) sock_->socket().close(ignore);
    }

    std::shared_ptr<runtime> rt_;
    const config& cfg_;
    samband::sdk::host host_;
    std::unique_ptr<asio::ssl::context> tls_ctx_;
    std::unique_ptr<tcp::socket> raw_;
    std::optional<mllp_stream> sock_;
    asio::steady_timer timer_;
    h7::mllp::reader reader_;
    std::vector<char> buf_;
    std::deque<job> queue_;
    bool busy_ = false;
    bool timed_out_ = false;
};

// The MSH-10 for a delivery: its id, cut and hashed to 20 characters where the version says so.
std::string control_id_for(std::string_view delivery_id, const std::string& version) {
    if (version == "2.5" || version == "2.5.1" || delivery_id.size() <= 20)
        return std::string(delivery_id.substr(0, 199));
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : delivery_id) h = (h ^ c) * 1099511628211ull;
    char buf[21];
    std::snprintf(buf, sizeof buf, "S%019llu",
                  static_cast<unsigned long long>(h % 10000000000000000000ull));
    return buf;
}

class hl7v2_plugin {
public:
    static constexpr const char* name = "hl7v2";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "HL7 v2 over MLLP: a listener that ACKs after commit, and a sender that waits for the ACK";
    static constexpr bool is_source = true;
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0]
    // (in a scratch folder) when run without --config.
    static constexpr const char* config_schema = R"json(
        {
          "$schema": "http://json-schema.org/draft-04/schema#",
          "title": "hl7v2 plugin endpoint config (docs/hl7v2.md)",
          "type": "object",
          "additionalProperties": false,
          "oneOf": [{"required": ["listen"]}, {"required": ["connect"]}],
          "properties": {
            "listen": {
              "type": "string",
              "description": "source: IP:port to listen on (127.0.0.1:0 picks a free port)"
            },
            "port_file": {"type": "string", "description": "source: write the bound port here"},
            "reject_dir": {
              "type": "string",
              "description": "source: keep each refused message and its reason here"
            },
            "max_connections": {"type": "integer", "minimum": 1},
            "max_frame_bytes": {"type": "integer", "minimum": 1},
            "idle_timeout_ms": {"type": "integer", "minimum": 1},
            "frame_timeout_ms": {"type": "integer", "minimum": 1},
            "max_segments": {"type": "integer", "minimum": 1},
            "max_fields": {"type": "integer", "minimum": 1},
            "default_charset": {"enum": ["UNICODE UTF-8", "8859/1"]},
            "allow_synthetic_ids": {"type": "boolean", "default": false},
            "session_kind": {"type": "string"},
            "sending_application": {"type": "string"},
            "sending_facility": {"type": "string"},
            "connect": {"type": "string", "description": "sink: host:port of the receiver"},
            "ack_timeout_ms": {"type": "integer", "minimum": 1},
            "connect_timeout_ms": {"type": "integer", "minimum": 1},
            "receiving_application": {"type": "string"},
            "receiving_facility": {"type": "string"},
            "version": {"enum": ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"]},
            "charset": {"enum": ["UNICODE UTF-8", "8859/1"]},
            "processing_id": {"type": "string"},
            "tls": {
              "type": "object",
              "description": "cert_file, key_file, ca_file, server_name, require_client_cert"
            }
          },
          "examples": [
            {"connect": "127.0.0.1:9", "connect_timeout_ms": 1000, "ack_timeout_ms": 1000},
            {"listen": "127.0.0.1:2575", "allow_synthetic_ids": true}
          ]
        }
    )json";

    hl7v2_plugin(samband::sdk::host h, std::string_view config_text)
        : host_(h), cfg_(config_text), rt_(std::make_shared<runtime>()) {
        if (!cfg_.listen.empty()) split_hostport(cfg_.listen, "listen");
        if (!cfg_.connect.empty()) split_hostport(cfg_.connect, "connect");
        if (cfg_.tls && !cfg_.listen.empty()) tls_ctx_ = make_tls_context(cfg_, true);
        if (cfg_.tls && !cfg_.connect.empty())
            make_tls_context(cfg_, false);  // check the files now
    }

    ~hl7v2_plugin() { stop(); }

    void start() {
        if (!cfg_.listen.empty()) {
            auto [host, port] = split_hostport(cfg_.listen, "listen");
            boost::system::error_code ec;
            auto addr = asio::ip::make_address(host, ec);
            if (ec) throw error(SAMBAND_INVALID, "hl7v2: \"listen\" host must be an IP address");
            acceptor_.emplace(rt_->io);
            tcp::endpoint ep(addr, static_cast<unsigned short>(std::stoi(port)));
            acceptor_->open(ep.protocol(), ec);
            if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
            if (!ec) acceptor_->bind(ep, ec);
            if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
            if (ec)
                throw error(SAMBAND_INVALID,
                            "hl7v2: cannot listen on " + cfg_.listen + ": " + ec.message());
            unsigned short bound = acceptor_->local_endpoint().port();
            host_.log(log_level::info,
                      "hl7v2: listening for MLLP on " + host + ":" + std::to_string(bound));
            if (!cfg_.port_file.empty()) {
                std::string tmp = cfg_.port_file + ".tmp";
                std::ofstream(tmp) << bound << "\n";
                std::rename(tmp.c_str(), cfg_.port_file.c_str());
            }
            accept();
        } else {
            client_ = std::make_unique<mllp_client>(rt_, cfg_, host_);
        }
        work_.emplace(asio::make_work_guard(rt_->io));
        thread_ = std::thread([rt = rt_] { rt->io.run(); });
    }

    void stop() {
        prep_.stop();  // first: a mapping in progress is enqueued, queued ones RETRY
        {
            std::lock_guard lock(rt_->mu);
            if (!rt_->running) return;
        }
        if (client_) {
            // Complete every queued delivery (RETRY) on the io thread, then stop.
            std::promise<void> done;
            auto f = done.get_future();
            rt_->post([this, &done] {
                client_->fail_all("the endpoint is stopping");
                done.set_value();
            });
            if (thread_.joinable()) f.wait_for(std::chrono::seconds(5));
        }
        {
            std::lock_guard lock(rt_->mu);
            rt_->running = false;
        }
        work_.reset();
        rt_->io.stop();
        if (thread_.joinable()) thread_.join();
    }

    // Returns at once (the ABI's rule): reading the attachments and mapping run on the worker
    // thread, the send and the wait for the ACK on the io thread.
    void deliver(samband::sdk::delivery d) {
        if (!client_) {
            d.fail("this hl7v2 endpoint is a listener (source), not a sink");
            return;
        }
        prep_.post(std::move(d), [this](samband::sdk::delivery& d) { map_and_send(d); });
    }

    void map_and_send(samband::sdk::delivery& d) {
        std::vector<h7::outbound_attachment> atts;
        for (const auto& a : d.event().attachments) {
            auto bytes = host_.attachment_bytes(a);
            if (!bytes) {
                d.retry("cannot read attachment " + std::string(a.filename));
                return;
            }
            atts.push_back({std::string(a.filename), std::string(a.media_type), std::move(*bytes)});
        }
        std::string cid = control_id_for(d.id(), cfg_.outbound.version);
        auto m = h7::map_outbound(d.event().envelope_json, atts, cid, dtm_now(), cfg_.outbound);
        if (!m) {
            d.fail("cannot map the event to HL7 v2: " + m.error().describe());
            return;
        }
        auto j = std::make_shared<mllp_client::job>(
            mllp_client::job{std::move(d), cid, h7::mllp::frame(h7::serialize(*m))});
        rt_->post([this, j] { client_->enqueue(std::move(*j)); });
    }

    samband::sdk::rendered render(const samband::sdk::delivery_view& v) {
        std::vector<h7::outbound_attachment> atts;
        for (const auto& a : v.event.attachments) {
            auto bytes = host_.attachment_bytes(a);
            atts.push_back({std::string(a.filename), std::string(a.media_type),
                            bytes ? std::move(*bytes) : std::string()});
        }
        std::string cid = control_id_for(v.id, cfg_.outbound.version);
        auto m = h7::map_outbound(v.event.envelope_json, atts, cid, dtm_now(), cfg_.outbound);
        if (!m) throw error(SAMBAND_INVALID, "hl7v2: " + m.error().describe());
        std::string text = h7::serialize(*m);
        for (auto& c : text)
            if (c == '\r') c = '\n';  // readable in a preview; the wire uses \r
        return {text, cid + ".hl7"};
    }

private:
    void accept() {
        acceptor_->async_accept([this](boost::system::error_code ec, tcp::socket sock) {
            if (ec) {
                if (ec == asio::error::operation_aborted) return;
                host_.log(log_level::warn, "hl7v2: accept failed: " + ec.message());
                return accept();
            }
            if (rt_->open_sessions >= cfg_.max_connections) {
                host_.log(log_level::warn, "hl7v2: max_connections reached; a connection closed");
                boost::system::error_code ignore;
                sock.close(ignore);
            } else {
                sock.set_option(tcp::no_delay(true), ec);
                auto stream = tls_ctx_ ? mllp_stream(std::move(sock), *tls_ctx_)
                                       : mllp_stream(std::move(sock));
                std::make_shared<session>(std::move(stream), rt_, cfg_, host_)->start();
            }
            accept();
        });
    }

    samband::sdk::host host_;
    config cfg_;
    std::shared_ptr<runtime> rt_;
    std::unique_ptr<asio::ssl::context> tls_ctx_;
    std::optional<tcp::acceptor> acceptor_;
    std::unique_ptr<mllp_client> client_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::thread thread_;
    samband::sdk::worker prep_;  // last: stopped (and joined) before the rest goes
};

}  // namespace

SAMBAND_PLUGIN(hl7v2_plugin)
