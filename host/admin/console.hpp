// The web console's files, compiled into the daemon (cmake/embed_files.cmake, from admin/console/).
#pragma once

#include <optional>
#include <string_view>

namespace samband::admin {

struct console_asset {
    std::string_view name;  // "index.html", "console.js", …
    std::string_view type;  // its media type
    std::string_view body;
};

// The file `name` of the console folder, or nullopt.
std::optional<console_asset> find_console_asset(std::string_view name);

}  // namespace samband::admin
