// `samband preview`: routing, gate and transforms for one event, writing what each sink would get.
#pragma once

#include <ostream>
#include <string>

namespace samband::core {

struct preview_options {
    std::string config_path;
    std::string event_path;
    std::string out_dir;
    std::string source;       // the endpoint the event is previewed as coming from
    std::string event_id;     // preview as the stored event with this id (default: a fresh one)
    bool no_history = false;  // true: the gate sees this event alone, not the store's history
};

// Returns the exit status: 0 when every step ran (blocked/held deliveries are listed, not errors),
// 1 when the event is invalid or a step failed, 2 on config errors.
int run_preview(const preview_options& opts, std::ostream& out, std::ostream& err);

}  // namespace samband::core
