// GP lookup in NHN's Fastlegeregisteret (SOAP, GetPatientGPDetails) behind the gp_directory
// interface.
#pragma once

#include "directory/gp_directory.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace samband::directory {

struct flr_options {
    std::string url;       // e.g. https://ws-web.test.nhn.no/v2/flr/Basic (BasicHttpBinding)
    std::string username;  // HTTP Basic authentication
    std::string password;  // from a secret, never from the config text
    std::chrono::milliseconds timeout{10000};
    std::string ca_file;     // extra trust anchors (PEM); system store otherwise
    bool verify_tls = true;  // off only for tests against plain http on loopback
};

// What a GetPatientGPDetails answer says: the GP's HER-id, "no GP" (a fault saying the person
// has no GP contract), or an error (any other fault or an unreadable answer).
struct flr_answer {
    std::optional<std::string> gp_her_id;
};
boost::system::result<flr_answer, std::string> parse_flr_response(std::string_view xml);

// The SOAP request body for one patient.
std::string flr_request(std::string_view patient_nin);

// A Fastlegeregisteret client. `names` (optional, e.g. the local directory file) completes the
// GP's name and office from the HER-id; without it only the HER-id is known.
std::unique_ptr<gp_directory> open_fastlegeregisteret(flr_options opts,
                                                      std::unique_ptr<gp_directory> names);

}  // namespace samband::directory
