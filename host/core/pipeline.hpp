// The steps between a stored event and a sink: consent gate, GP resolution, transforms.
#pragma once

#include "codec/json.hpp"
#include "consent/gate.hpp"
#include "delivery/engine.hpp"
#include "directory/adresseregisteret.hpp"
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
// transform instance for an endpoint name (nullptr if it is not running). With `schemas`, each
// transform's output is checked (check_transform_output) and an invalid one ends the delivery
// dead with the reason. `in` is taken by value: a caller that moves it in spares a copy of the
// envelope.
delivery::prepared run_pipeline(
    const route_plan& plan, pipeline_input in, directory::gp_directory* gp,
    const std::function<plugin::instance*(const std::string&)>& find_instance,
    const codec::schema_set* schemas = nullptr);

// Asks the Adresseregisteret whether the receiver of a prepared send can take the message: the GP
// of `note.receiver` when named, else its organisation (else the envelope's `recipient`). A
// receiver that cannot (not found, inactive, not valid, no EDI address, or — when its message
// types are known — not the Dialogmelding 1.1 type this note goes as) turns it into `hold` with
// the reason; a register that cannot say (and no file) into `retry` ("receiver not checked: …").
// `receiver_types` is the destination's receiver_message_types (organisation HER-id → type): a
// receiver's organisation named there is sent that type, the operator's word over the register's.
// Anything else, and an envelope naming no receiver, is returned unchanged.
delivery::prepared check_receiver(delivery::prepared p, directory::receiver_directory& ar,
                                  const std::map<std::string, std::string>& receiver_types = {});

// The contract of a transform's output: an envelope with the same id that validates as
// `samband.event` with its type's data schema, plus `recipient`, `note` and `journal` objects
// (added by the pipeline and the transforms). Empty when valid, else the reason naming the field.
std::string check_transform_output(const codec::schema_set& schemas, std::string_view input_id,
                                   std::string_view output_json);

}  // namespace samband::core
