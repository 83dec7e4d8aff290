#include "admin/server.hpp"

#include "admin/api.hpp"
#include "core/thread_name.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace samband::admin {

namespace {

namespace beast = boost::beast;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Lets an answer that arrives after stop() (a commit callback from the store's thread) be dropped
// instead of being posted to a destroyed io_context.
struct gate {
    std::mutex mu;
    bool open = true;
};

// What every connection shares; owned by server::impl, which outlives the sessions.
struct shared_state {
    const server_options& opts;
    api& handlers;
    asio::thread_pool& work;
    std::shared_ptr<gate> alive;
    std::atomic<std::size_t>& connections;
};

template <class Stream>
constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

// One connection: header (with its deadline and size limit) → admission on the header alone →
// body (with its own deadline and limit) → handler on the work pool → answer → next request.
template <class Stream>
class session : public std::enable_shared_from_this<session<Stream>> {
public:
    session(Stream stream, shared_state& st) : stream_(std::move(stream)), st_(st) {
        buf_.reserve(64 * 1024);
    }
    ~session() { st_.connections.fetch_sub(1); }

    void run() {
        // Start on the connection's strand: every step of one session runs there.
        asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
            if constexpr (is_tls<Stream>) {
                self->lowest().expires_after(self->st_.opts.header_timeout);
                self->stream_.async_handshake(ssl::stream_base::server,
                                              [self](beast::error_code ec) {
                                                  if (ec) return self->close();
                                                  self->read_header();
                                              });
            } else {
                self->read_header();
            }
        });
    }

private:
    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

    void read_header() {
        head_.emplace();
        head_->header_limit(static_cast<std::uint32_t>(st_.opts.max_header_bytes));
        head_->body_limit(st_.opts.max_body_bytes);
        // One deadline for the whole header, however slowly its bytes arrive; it also ends an
        // idle keep-alive connection.
        lowest().expires_after(st_.opts.header_timeout);
        http::async_read_header(stream_, buf_, *head_,
                                [self = this->shared_from_this()](
                                    beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        if (ec == http::error::header_limit)
            return refuse(error_reply(http::status::request_header_fields_too_large, "too_large",
                                      "request header is larger than the limit of " +
                                          std::to_string(st_.opts.max_header_bytes) + " bytes"));
        if (ec == http::error::body_limit)  // a Content-Length beyond the limit, seen in the header
            return refuse(error_reply(http::status::payload_too_large, "too_large",
                                      "request body is larger than the limit of " +
                                          std::to_string(st_.opts.max_body_bytes) + " bytes"));
        if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
            ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
            ec == asio::error::eof || ec == ssl::error::stream_truncated)
            return close();
        if (ec)
            return refuse(error_reply(http::status::bad_request, "bad_request",
                                      "malformed HTTP request: " + ec.message()));
        const auto& h = head_->get();
        version_ = h.version();
        keep_alive_ = h.keep_alive();
        if (auto len = head_->content_length(); len && *len > st_.opts.max_body_bytes)
            return refuse(error_reply(http::status::payload_too_large, "too_large",
                                      "request body is larger than the limit of " +
                                          std::to_string(st_.opts.max_body_bytes) + " bytes"));
        if (auto refusal = st_.handlers.admit(h)) {
            if (st_.opts.log) {
                beast::error_code pec;
                auto peer = lowest().socket().remote_endpoint(pec);
                std::string status = std::to_string(static_cast<int>(refusal->status));
                std::string from = pec ? std::string("?") : peer.address().to_string();
                std::string target(h.target().substr(0, 200));
                st_.opts.log->warn("admin", "request refused",
                                   {{"status", status},
                                    {"method", h.method_string()},
                                    {"path", target},
                                    {"peer", from},
                                    {"why", refusal->body}});
            }
            return refuse(std::move(*refusal));
        }
        body_.emplace(std::move(*head_));
        head_.reset();
        body_->body_limit(st_.opts.max_body_bytes);
        auto expect = body_->get()[http::field::expect];
        if (beast::iequals(expect, "100-continue")) {
            continue_.emplace(http::status::continue_, version_);
            lowest().expires_after(st_.opts.write_timeout);
            return http::async_write(
                stream_, *continue_,
                [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                    if (ec) return self->close();
                    self->read_body();
                });
        }
        read_body();
    }

    void read_body() {
        lowest().expires_after(st_.opts.body_timeout);
        http::async_read(stream_, buf_, *body_,
                         [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                             self->on_body(ec);
                         });
    }

    void on_body(beast::error_code ec) {
        if (ec == http::error::body_limit)
            return refuse(error_reply(http::status::payload_too_large, "too_large",
                                      "request body is larger than the limit of " +
                                          std::to_string(st_.opts.max_body_bytes) + " bytes"));
        if (ec) return close();
        lowest().expires_never();  // no I/O while the handler runs
        auto req = body_->release();
        body_.reset();
        auto self = this->shared_from_this();
        auto done = [self](reply r) {
            std::lock_guard lock(self->st_.alive->mu);
            if (!self->st_.alive->open) return;
            asio::post(self->stream_.get_executor(), [self, r = std::move(r)]() mutable {
                self->answer(std::move(r), self->keep_alive_);
            });
        };
        // Health answers on the I/O strand at once; everything else (store reads) on the pool,
        // so a slow read never delays /healthz.
        if (req.method() == http::verb::get &&
            (req.target() == "/healthz" || req.target() == "/readyz")) {
            st_.handlers.handle(std::move(req), std::move(done));
            return;
        }
        asio::post(st_.work, [self, req = std::move(req), done = std::move(done)]() mutable {
            self->st_.handlers.handle(std::move(req), std::move(done));
        });
    }

    // An answer before (or instead of) reading the body: the connection closes after it.
    void refuse(reply r) {
        keep_alive_ = false;
        unread_ = true;
        answer(std::move(r), false);
    }

    void answer(reply r, bool keep_alive) {
        res_.emplace(r.status, version_ ? version_ : 11);
        res_->set(http::field::server, "samband");
        res_->set(http::field::content_type, r.content_type);
        res_->set("X-Content-Type-Options", "nosniff");
        res_->set(http::field::cache_control, "no-store");  // answers may hold patient data
        for (auto& [k, v] : r.headers) res_->set(k, v);
        if (r.status == http::status::unauthorized)
            res_->set(http::field::www_authenticate, "Bearer realm=\"samband\"");
        res_->keep_alive(keep_alive);
        res_->body() = std::move(r.body);
        res_->prepare_payload();
        lowest().expires_after(st_.opts.write_timeout);
        http::async_write(
            stream_, *res_,
            [self = this->shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                self->res_.reset();
                if (ec) return self->close();
                if (keep_alive) return self->read_header();
                if (self->unread_) return self->drain();
                self->close();
            });
    }

    // After a refusal with the body unread: stop sending, then read and drop what the client
    // still sends (bounded in time and bytes), so its kernel does not reset the connection and
    // discard our answer before the client reads it.
    void drain() {
        head_.reset();
        body_.reset();
        beast::error_code ec;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
        lowest().expires_after(std::chrono::seconds(2));
        drain_some();
    }
    void drain_some() {
        lowest().async_read_some(
            asio::buffer(drain_buf_),
            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                self->drained_ += n;
                if (ec || self->drained_ > 1024 * 1024) return self->close();
                self->drain_some();
            });
    }

    void close() {
        beast::error_code ec;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
        lowest().close();
    }

    Stream stream_;
    shared_state& st_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::empty_body>> head_;
    std::optional<http::request_parser<http::string_body>> body_;
    std::optional<http::response<http::empty_body>> continue_;
    std::optional<http::response<http::string_body>> res_;
    unsigned version_ = 11;
    bool keep_alive_ = false;
    bool unread_ = false;  // refused before the whole body was read
    std::array<char, 16 * 1024> drain_buf_{};
    std::size_t drained_ = 0;
};

std::unique_ptr<ssl::context> make_tls(const tls_options& t) {
    if (t.cert_file.empty()) return nullptr;
    if (t.key_file.empty())
        throw std::runtime_error("admin: tls.cert_file is set but tls.key_file is not");
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                     ssl::context::single_dh_use);
    beast::error_code ec;
    ctx->use_certificate_chain_file(t.cert_file, ec);
    if (ec)
        throw std::runtime_error("admin: cannot use TLS certificate " + t.cert_file + ": " +
                                 ec.message());
    ctx->use_private_key_file(t.key_file, ssl::context::pem, ec);
    if (ec)
        throw std::runtime_error("admin: cannot use TLS key " + t.key_file + ": " + ec.message());
    if (!t.client_ca_file.empty()) {
        ctx->load_verify_file(t.client_ca_file, ec);
        if (ec)
            throw std::runtime_error("admin: cannot read tls.client_ca_file " + t.client_ca_file +
                                     ": " + ec.message());
        ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    return ctx;
}

}  // namespace

// Members in this order: the io_context is destroyed before what its pending sessions reference.
struct server::impl {
    server_options opts;
    api handlers;
    std::unique_ptr<ssl::context> tls;
    asio::thread_pool work;
    std::shared_ptr<gate> alive = std::make_shared<gate>();
    std::atomic<std::size_t> connections{0};
    shared_state st{opts, handlers, work, alive, connections};
    asio::io_context io{1};
    tcp::acceptor acceptor{io};
    asio::steady_timer accept_pause{io};
    std::thread thread;
    std::atomic<bool> stopped{false};

    impl(server_options o, backend& b)
        : opts(std::move(o)),
          handlers(b, api_options{opts.token_file, opts.metrics_open, opts.log}),
          tls(make_tls(opts.tls)),
          work(opts.work_threads ? opts.work_threads : 1) {
        auto colon = opts.listen.rfind(':');
        if (colon == std::string::npos) throw std::runtime_error("admin: listen must be host:port");
        std::string host = opts.listen.substr(0, colon), port = opts.listen.substr(colon + 1);
        if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
        if (!is_loopback(host) && !tls)
            throw std::runtime_error("admin: refusing to listen on " + opts.listen +
                                     " without TLS: beyond loopback the admin API needs "
                                     "admin.tls.cert_file and admin.tls.key_file");
        boost::system::error_code ec;
        tcp::resolver resolver(io);
        auto results = resolver.resolve(host, port, ec);
        if (ec || results.empty())
            throw std::runtime_error("admin: cannot resolve " + opts.listen + ": " + ec.message());
        tcp::endpoint ep = results.begin()->endpoint();
        if (!ep.address().is_loopback() && !tls)  // a name that resolves beyond loopback
            throw std::runtime_error("admin: refusing to listen on " + opts.listen + " (" +
                                     ep.address().to_string() +
                                     ") without TLS: beyond loopback the admin API needs "
                                     "admin.tls.cert_file and admin.tls.key_file");
        if (opts.log && opts.token_file.empty())
            opts.log->warn("admin", "admin.token_file is not set: only /healthz and /readyz answer",
                           {});
        else if (std::error_code fec; opts.log && !std::filesystem::exists(opts.token_file, fec))
            opts.log->warn("admin",
                           "the admin token file does not exist: only /healthz and /readyz answer "
                           "until `samband token add` creates it",
                           {{"file", opts.token_file}});
        acceptor.open(ep.protocol(), ec);
        if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acceptor.bind(ep, ec);
        if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec)
            throw std::runtime_error("admin: cannot listen on " + opts.listen + ": " +
                                     ec.message());
    }

    void accept() {
        acceptor.async_accept(
            asio::make_strand(io), [this](beast::error_code ec, tcp::socket sock) {
                if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
                if (ec) {
                    // Out of descriptors or similar: pause instead of spinning on the error.
                    accept_pause.expires_after(std::chrono::milliseconds(100));
                    accept_pause.async_wait([this](beast::error_code e) {
                        if (!e) accept();
                    });
                    return;
                }
                if (connections.load() >= opts.max_connections) {
                    beast::error_code ignored;
                    sock.close(ignored);
                } else {
                    connections.fetch_add(1);
                    if (tls)
                        std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
                            beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(sock)),
                                                                 *tls),
                            st)
                            ->run();
                    else
                        std::make_shared<session<beast::tcp_stream>>(
                            beast::tcp_stream(std::move(sock)), st)
                            ->run();
                }
                accept();
            });
    }
};

server::server(server_options opts, backend& b)
    : impl_(std::make_unique<impl>(std::move(opts), b)) {}

server::~server() {
    stop();
}

std::string server::address() const {
    auto ep = impl_->acceptor.local_endpoint();
    std::string host = ep.address().to_string();
    if (ep.address().is_v6()) host = "[" + host + "]";
    return host + ":" + std::to_string(ep.port());
}

void server::start() {
    impl_->accept();
    impl_->thread = std::thread([this] {
        core::name_this_thread("admin");
        impl_->io.run();
    });
}

void server::stop() {
    if (impl_->stopped.exchange(true)) return;
    impl_->io.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
    impl_->work.join();  // handlers still running finish; their answers go nowhere
    {
        std::lock_guard lock(impl_->alive->mu);
        impl_->alive->open = false;
    }
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
}

}  // namespace samband::admin
