// The steps between a stored event and a sink: consent gate, GP resolution, transforms.
#pragma once

#include "consent/gate.hpp"
#include "delivery/engine.hpp"
#include "directory/gp_directory.hpp"
#include "plugin/plugin_host.hpp"

#include <rapidjson/document.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace samband::core {

// What a route asks for beyond matching (from the config).
struct route_plan {
    std::vector<std::string> transforms;  // transform endpoint names, in order
    std::string recipient;                // "gp": the patient's GP (gate + GP lookup)
};

struct pipeline_input {
    std::string envelope_json;
    std::vector<plugin::attachment_ref> attachments;
    std::vector<std::string> history_json;  // envelopes of the same treatment, oldest first
    bool overridden = false;                // an operator overrode the gate for this delivery
};

// Runs gate → GP resolution → transforms for one delivery. `find_instance` returns the live
// transform instance for an endpoint name (nullptr if it is not running).
delivery::prepared run_pipeline(
    const route_plan& plan, const pipeline_input& in, directory::gp_directory* gp,
    const std::function<plugin::instance*(const std::string&)>& find_instance);

}  // namespace samband::core
