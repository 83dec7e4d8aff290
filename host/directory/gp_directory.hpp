// GP resolution: finds a patient's GP (fastlege) and office by identifier, behind one interface.
#pragma once

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace samband::directory {

struct gp_info {
    std::string gp_her_id, gp_hpr, gp_given_name, gp_family_name;
    std::string office_her_id, office_org_nr, office_name;
};

// Looks a patient's GP up. nullopt = the patient has no GP on record; an error = lookup failed.
class gp_directory {
public:
    virtual ~gp_directory() = default;
    virtual boost::system::result<std::optional<gp_info>, std::string> find_gp(
        std::string_view patient_id) = 0;
    // Completes a GP named by HER-id (names, office) when the event names one.
    virtual boost::system::result<std::optional<gp_info>, std::string> find_by_her_id(
        std::string_view gp_her_id) = 0;
};

// A local directory file in the shape of shared/testdata/directory.json (organisations with
// people, and gp_list). Throws std::runtime_error naming the file when it cannot be read.
std::unique_ptr<gp_directory> open_file_directory(const std::string& path);

// Caches another directory's answers (including "no GP") for `ttl`.
std::unique_ptr<gp_directory> with_cache(
    std::unique_ptr<gp_directory> inner, std::chrono::seconds ttl,
    std::function<std::chrono::steady_clock::time_point()> clock = {});

}  // namespace samband::directory
