// Makes a folder's entries durable (files created, renamed or removed in it): fsync of the folder.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace samband::store {

// False (errno set) when the folder cannot be opened or synced.
inline bool fsync_dir(const std::filesystem::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    int e = errno;
    ::close(fd);
    errno = e;
    return ok;
}

}  // namespace samband::store
