#include "directory/fastlegeregisteret.hpp"

#include "directory/soap_http.hpp"

#include <optional>

namespace samband::directory {

namespace {

constexpr const char* kAction =
    "http://schemas.nhn.no/reg/flr/IFlrReadOperations/GetPatientGPDetails";

using lookup = boost::system::result<std::optional<gp_info>, std::string>;
lookup lookup_error(std::string msg) {
    return lookup(boost::system::in_place_error, std::move(msg));
}

class flr_directory final : public gp_directory {
public:
    flr_directory(const flr_options& o, std::unique_ptr<gp_directory> names)
        : http_({"Fastlegeregisteret", o.url, o.username, o.password, o.timeout, o.ca_file,
                 o.verify_tls}),
          names_(std::move(names)) {}

    boost::system::result<std::optional<gp_info>, std::string> find_gp(
        std::string_view patient_id) override {
        auto body = http_.post(flr_request(patient_id), "text/xml; charset=utf-8",
                               {{"SOAPAction", std::string("\"") + kAction + "\""}});
        if (!body) return lookup_error(body.error());
        auto answer = parse_flr_response(*body);
        if (!answer) return lookup_error("Fastlegeregisteret: " + answer.error());
        if (!answer->gp_her_id) return std::optional<gp_info>();
        if (names_) {
            auto named = names_->find_by_her_id(*answer->gp_her_id);
            if (named && *named) return named;
        }
        gp_info g;
        g.gp_her_id = *answer->gp_her_id;
        return std::optional<gp_info>(g);
    }

    boost::system::result<std::optional<gp_info>, std::string> find_by_her_id(
        std::string_view her_id) override {
        if (names_) return names_->find_by_her_id(her_id);
        gp_info g;
        g.gp_her_id = std::string(her_id);
        return std::optional<gp_info>(g);
    }

private:
    soap_http http_;
    std::unique_ptr<gp_directory> names_;
};

}  // namespace

std::unique_ptr<gp_directory> open_fastlegeregisteret(flr_options opts,
                                                      std::unique_ptr<gp_directory> names) {
    return std::make_unique<flr_directory>(opts, std::move(names));
}

}  // namespace samband::directory
