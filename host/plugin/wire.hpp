// The framed protocol between the daemon and a `samband plugin-host` child over a Unix socketpair.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace samband::plugin::wire {

// Message types. Requests carry an id that the answer repeats.
enum class msg : std::uint16_t {
    // child → parent, once after exec: the plugin loaded (or why not).
    hello = 1,
    // parent → child requests; the child answers each with `reply` (same id).
    create = 10,
    start = 11,
    stop = 12,
    deliver = 13,
    render = 14,
    transform = 15,
    destroy = 16,
    reply = 20,
    // child → parent, from plugin threads.
    log = 30,
    complete = 31,
    receipt = 32,
    secret = 33,  // request: the parent answers with secret_answer (same id)
    submit = 34,  // request: the parent answers with submit_ack, later submit_done (same id)
    // parent → child answers to the child's requests.
    secret_answer = 40,
    submit_ack = 41,
    submit_done = 42,
};

// A payload larger than this is a protocol violation (the child is killed).
constexpr std::uint32_t kMaxPayload = 256u << 20;
constexpr std::size_t kMaxFds = 64;

struct frame {
    msg type{};
    std::uint64_t id = 0;
    std::string payload;
    std::vector<int> fds;  // received descriptors; the receiver owns (and closes) them
};

// Sends one frame; `fds` are passed with SCM_RIGHTS (the sender keeps its copies).
// THREAD: callers serialise writes on one socket.
boost::system::result<void> send(int sock, msg type, std::uint64_t id, std::string_view payload,
                                 const std::vector<int>& fds = {});
// Reads one frame. A clean end of stream is EPIPE, a broken or oversized frame EPROTO (or
// EMSGSIZE); received descriptors are closed on error.
boost::system::result<frame> receive(int sock);

// A little-endian record writer and a bounds-checked reader for payloads.
class writer {
public:
    writer& u32(std::uint32_t v);
    writer& u64(std::uint64_t v);
    writer& i64(std::int64_t v) { return u64(static_cast<std::uint64_t>(v)); }
    writer& str(std::string_view s);
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

class reader {
public:
    explicit reader(std::string_view in) : in_(in) {}
    bool u32(std::uint32_t& v);
    bool u64(std::uint64_t& v);
    bool i64(std::int64_t& v);
    bool i32(std::int32_t& v);
    bool str(std::string& s);
    bool done() const { return pos_ == in_.size(); }

private:
    std::string_view in_;
    std::size_t pos_ = 0;
};

}  // namespace samband::plugin::wire
