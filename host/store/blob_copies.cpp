#include "store/blob_copies.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace samband::store {

namespace fs = std::filesystem;

struct blob_copies::entry {
    std::mutex mu;
    bool ready = false;
    std::string path;
    ~entry() {
        if (!path.empty()) ::unlink(path.c_str());
    }
};

blob_copies::blob_copies(store& st, std::string folder) : st_(st), folder_(std::move(folder)) {
    std::error_code ec;
    fs::create_directories(folder_, ec);
    if (ec || ::chmod(folder_.c_str(), 0700) != 0)
        throw std::runtime_error(
            "store: cannot create the folder for attachments' decrypted "
            "copies " +
            folder_ + ": " + (ec ? ec.message() : std::strerror(errno)));
    // A start removes what a crash left behind: no copy outlives the attempt that needed it.
    for (auto it = fs::directory_iterator(folder_, ec); !ec && it != fs::directory_iterator();
         it.increment(ec))
        fs::remove_all(it->path(), ec);
}

std::size_t blob_copies::live() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [sha, w] : live_) n += w.expired() ? 0 : 1;
    return n;
}

boost::system::result<attachment_file, blob_fault> blob_copies::acquire(const std::string& sha256) {
    using boost::system::in_place_error;
    if (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
        return {in_place_error, blob_fault{false, "attachment: not a sha256"}};
    std::shared_ptr<entry> e;
    {
        std::lock_guard lock(mu_);
        for (auto it = live_.begin(); it != live_.end();)
            it = it->second.expired() ? live_.erase(it) : std::next(it);
        auto& w = live_[sha256];
        e = w.lock();
        if (!e) {
            e = std::make_shared<entry>();
            w = e;
        }
    }
    std::lock_guard lock(e->mu);
    if (e->ready) return {boost::system::in_place_value, attachment_file{e->path, e}};
    // Written under a temporary name and renamed only once every byte was read and verified.
    // A name of its own per copy: an expiring copy's removal never hits its successor.
    std::string target = folder_ + "/" + sha256 + "." + std::to_string(++serial_);
    std::string tmp = target + ".part";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return {in_place_error,
                blob_fault{false, "attachment sha256 " + sha256 + ": cannot create its copy in " +
                                      folder_ + ": " + std::strerror(errno)}};
    std::vector<std::uint8_t> buf(1 << 20);
    std::uint64_t off = 0;
    std::string why;
    bool auth = false;
    for (;;) {
        auto n = st_.read_attachment(sha256, off, buf.data(), buf.size());
        if (!n) {
            auth = n.error() == sealed_record_error();
            why = "attachment sha256 " + sha256 + ": " + n.error().message();
            break;
        }
        if (*n == 0) break;
        const std::uint8_t* p = buf.data();
        std::size_t left = *n;
        while (left > 0) {
            ssize_t w = ::write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                why = "attachment sha256 " + sha256 + ": cannot write its copy in " + folder_ +
                      ": " + std::strerror(w < 0 ? errno : ENOSPC);
                break;
            }
            p += w;
            left -= static_cast<std::size_t>(w);
        }
        if (!why.empty()) break;
        off += *n;
    }
    ::close(fd);
    if (why.empty() && ::rename(tmp.c_str(), target.c_str()) != 0)
        why = "attachment sha256 " + sha256 + ": cannot rename its copy in " + folder_ + ": " +
              std::strerror(errno);
    if (!why.empty()) {
        ::unlink(tmp.c_str());
        return {in_place_error, blob_fault{auth, why}};
    }
    e->path = target;
    e->ready = true;
    return {boost::system::in_place_value, attachment_file{e->path, e}};
}

}  // namespace samband::store
