// Names the calling thread for top -H, perf and /proc/<pid>/task/*/comm.
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace samband::core {

// Linux keeps 15 bytes of a thread's name: a longer one is cut there. Best effort: a name that
// cannot be set leaves the thread named after the process.
inline void name_this_thread(std::string_view name) {
    std::string cut(name.substr(0, 15));
    ::pthread_setname_np(::pthread_self(), cut.c_str());
}

}  // namespace samband::core
