// The one private PostgreSQL server of a store test binary.
#pragma once

#include <samband_test/pg_server.hpp>

namespace samband::store {

// Started by the first test that needs it, stopped when the binary ends.
inline samband::testing::pg_server& shared_pg() {
    static samband::testing::pg_server server;
    return server;
}

}  // namespace samband::store
