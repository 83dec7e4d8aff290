// The SQLite store's query plans, for tests that each indexed statement still finds its index.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace samband::store {

// The plan SQLite picks, on the SQLite store at `path`, for each statement that needs an index on
// deliveries or events, as {name, plan}; a plan ends "EPHEMERAL TABLES n" when the statement's
// program builds n ephemeral tables. Throws when the store cannot be opened.
std::vector<std::pair<std::string, std::string>> sqlite_query_plans(const std::string& path);

}  // namespace samband::store
