#include "plugin/wire.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace samband::plugin::wire {

namespace {

constexpr std::size_t kHeader = 16;  // u32 length, u16 type, u16 fd count, u64 id

boost::system::error_code last_error() {
    return {errno, boost::system::system_category()};
}

boost::system::result<void> write_all(int sock, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::send(sock, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return {};
}

// Reads exactly n bytes; eof at the first byte is reported as such.
boost::system::result<void> read_all(int sock, char* p, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = ::recv(sock, p + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        if (r == 0)
            return boost::system::error_code(got == 0 ? EPIPE : EPROTO,
                                             boost::system::system_category());
        got += static_cast<std::size_t>(r);
    }
    return {};
}

void put_le(char* p, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint64_t get_le(const char* p, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
        v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    return v;
}

}  // namespace

boost::system::result<void> send(int sock, msg type, std::uint64_t id, std::string_view payload,
                                 const std::vector<int>& fds) {
    if (payload.size() > kMaxPayload || fds.size() > kMaxFds)
        return boost::system::error_code(EMSGSIZE, boost::system::system_category());
    char header[kHeader];
    put_le(header, payload.size(), 4);
    put_le(header + 4, static_cast<std::uint16_t>(type), 2);
    put_le(header + 6, fds.size(), 2);
    put_le(header + 8, id, 8);
    // The header goes alone with the descriptors, so the receiver finds them on its header read.
    iovec iov{header, kHeader};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    std::vector<char> control;
    if (!fds.empty()) {
        control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
        mh.msg_control = control.data();
        mh.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        ssize_t w = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return last_error();
        if (static_cast<std::size_t>(w) < kHeader) {
            auto r = write_all(sock, header + w, kHeader - static_cast<std::size_t>(w));
            if (!r) return r;
        }
        break;
    }
    return write_all(sock, payload.data(), payload.size());
}

boost::system::result<frame> receive(int sock) {
    char header[kHeader];
    iovec iov{header, kHeader};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t r;
    do {
        r = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return last_error();
    if (r == 0) return boost::system::error_code(EPIPE, boost::system::system_category());
    frame f;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < n; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                f.fds.push_back(fd);
            }
        }
    }
    auto fail = [&](int e) -> boost::system::result<frame> {
        for (int fd : f.fds) ::close(fd);
        return boost::system::error_code(e, boost::system::system_category());
    };
    if (mh.msg_flags & MSG_CTRUNC) return fail(EPROTO);
    if (static_cast<std::size_t>(r) < kHeader) {
        if (!read_all(sock, header + r, kHeader - static_cast<std::size_t>(r))) return fail(EPROTO);
    }
    std::uint64_t len = get_le(header, 4);
    f.type = static_cast<msg>(get_le(header + 4, 2));
    std::size_t nfds = get_le(header + 6, 2);
    f.id = get_le(header + 8, 8);
    if (len > kMaxPayload || nfds != f.fds.size()) return fail(EPROTO);
    f.payload.resize(len);
    if (len > 0 && !read_all(sock, f.payload.data(), len)) return fail(EPROTO);
    return f;
}

writer& writer::u32(std::uint32_t v) {
    char b[4];
    put_le(b, v, 4);
    out_.append(b, 4);
    return *this;
}
writer& writer::u64(std::uint64_t v) {
    char b[8];
    put_le(b, v, 8);
    out_.append(b, 8);
    return *this;
}
writer& writer::str(std::string_view s) {
    u64(s.size());
    out_.append(s);
    return *this;
}

bool reader::u32(std::uint32_t& v) {
    if (in_.size() - pos_ < 4) return false;
    v = static_cast<std::uint32_t>(get_le(in_.data() + pos_, 4));
    pos_ += 4;
    return true;
}
bool reader::u64(std::uint64_t& v) {
    if (in_.size() - pos_ < 8) return false;
    v = get_le(in_.data() + pos_, 8);
    pos_ += 8;
    return true;
}
bool reader::i64(std::int64_t& v) {
    std::uint64_t u;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
}
bool reader::i32(std::int32_t& v) {
    std::uint32_t u;
    if (!u32(u)) return false;
    v = static_cast<std::int32_t>(u);
    return true;
}
bool reader::str(std::string& s) {
    std::uint64_t n;
    if (!u64(n) || in_.size() - pos_ < n) return false;
    s.assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
}

}  // namespace samband::plugin::wire
