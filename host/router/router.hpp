// The router: matches an event to routes (type glob, source glob, predicates) → destinations.
#pragma once

#include "config/config.hpp"

#include <rapidjson/document.h>

#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace samband::router {

struct route_match {
    std::string route;
    std::string destination;
};

// Immutable once built; safe to use from many threads.
class router {
public:
    explicit router(const std::vector<config::route>& routes);
    // Every (route, destination) whose match holds, in config order.
    std::vector<route_match> route(std::string_view source, const rapidjson::Value& envelope) const;

private:
    struct compiled_predicate {
        std::string pointer;
        config::predicate::op what;
        rapidjson::Document value;                // equals / not_equals
        std::vector<rapidjson::Document> values;  // in
        bool exists = true;
    };
    struct compiled_route {
        std::string name;
        std::regex type;
        std::vector<std::regex> sources;
        std::vector<compiled_predicate> where;
        std::vector<std::string> to;
    };
    std::vector<compiled_route> routes_;
};

// Glob (* and ?) as a whole-string regex.
std::regex compile_glob(const std::string& glob);

}  // namespace samband::router
