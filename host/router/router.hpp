// The router: matches an event to routes (type glob, source glob, predicates) → destinations.
#pragma once

#include "config/config.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace samband::router {

// A glob matched against a whole string: * any run of characters, ? any one, every other
// character itself. Matched with fnmatch(3), not std::regex (about 2,700 instructions less per
// event for one route).
class glob {
public:
    explicit glob(const std::string& pattern);
    bool matches(const std::string& text) const;

private:
    std::string pattern_;  // for fnmatch: '[' and '\\' escaped, so they match themselves
};

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
        rapidjson::Pointer pointer;  // parsed once, not per event
        config::predicate::op what;
        rapidjson::Document value;                // equals / not_equals
        std::vector<rapidjson::Document> values;  // in
        bool exists = true;
    };
    struct compiled_route {
        std::string name;
        glob type{""};
        std::vector<glob> sources;
        std::vector<compiled_predicate> where;
        std::vector<std::string> to;
    };
    std::vector<compiled_route> routes_;
};

}  // namespace samband::router
