// The CLI's calls to the admin API end at their deadline (issue 10 item 1).
#include "harness.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <gtest/gtest.h>

#include <chrono>

namespace {

using samband::test::daemon_process;
using samband::test::run_command;

// A server that takes connections into its backlog and never reads or answers: the CLI's
// connect and request succeed, its answer never comes.
TEST(cli_test, a_call_to_an_admin_api_that_never_answers_ends_at_the_configured_timeout) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor silent(
        io, {boost::asio::ip::make_address("127.0.0.1"), 0});  // listening, never accepting
    std::string url = "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port());
    auto t0 = std::chrono::steady_clock::now();
    auto [rc, out] = run_command("SAMBAND_CLI_TIMEOUT_S=2 timeout 60 " + daemon_process::binary() +
                                 " status --admin " + url);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(rc, 3) << out;
    EXPECT_NE(out.find("did not answer within 2 s"), std::string::npos) << out;
    EXPECT_GE(secs, 1.8) << out;  // the deadline, not an early failure
    EXPECT_LT(secs, 10.0) << out;
}

TEST(cli_test, a_bad_timeout_setting_is_named) {
    auto [rc, out] = run_command("SAMBAND_CLI_TIMEOUT_S=soon " + daemon_process::binary() +
                                 " status --admin http://127.0.0.1:1");
    EXPECT_EQ(rc, 3) << out;
    EXPECT_NE(out.find("SAMBAND_CLI_TIMEOUT_S=soon is not a whole number of seconds"),
              std::string::npos)
        << out;
}

}  // namespace
