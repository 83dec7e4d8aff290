// Test support: the npm FHIR peers (validate.js, and server.js as a child on 127.0.0.1:0).
#pragma once

#include "harness.hpp"

#include <samband_test/tools.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace samband::fhir::test {

namespace fs = std::filesystem;
using samband::test::read_file;
using samband::test::run_command;
using samband::test::wait_for;

inline fs::path peer_dir() {
    return FHIR_PEER_DIR;
}

// Runs the offline validator on `files`; returns {exit status, output}.
inline std::pair<int, std::string> validate(const std::vector<fs::path>& files) {
    std::string cmd = "node " + (peer_dir() / "validate.js").string();
    for (const auto& f : files) cmd += " '" + f.string() + "'";
    return run_command(cmd);
}

// @medplum/fhir-router behind node:http, started for a test and killed (by pid) after it.
class fhir_server {
public:
    // `env`: FHIR_AUTH_PUBLIC_KEY, FHIR_AUTH_DPOP … (see server.js).
    explicit fhir_server(const fs::path& workdir,
                         const std::vector<std::pair<std::string, std::string>>& env = {})
        : out_(workdir / "fhir-server.out") {
        pid_ = fork();
        if (pid_ == 0) {
            for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
            int fd = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            std::string script = (peer_dir() / "server.js").string();
            execlp("node", "node", script.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        wait_for(
            [&] {
                auto text = read_file(out_);
                auto p = text.find("PORT ");
                if (p == std::string::npos) return false;
                port_ = std::stoi(text.substr(p + 5));
                return true;
            },
            std::chrono::seconds(60));
    }
    ~fhir_server() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int st;
            waitpid(pid_, &st, 0);
        }
    }
    int port() const { return port_; }
    std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
    std::string hostport() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string output() const { return read_file(out_); }

    samband::test::http_response get(const std::string& target) const {
        return samband::test::http(hostport(), "GET", target);
    }
    samband::test::http_response post(const std::string& target, const std::string& body) const {
        return samband::test::http(hostport(), "POST", target, body);
    }
    // How many resources of `type` the server holds.
    int count(const std::string& type) const {
        auto r = get("/__search/" + type);
        rapidjson::Document d;
        d.Parse(r.body.c_str());
        if (d.HasParseError() || !d.IsObject() || !d.HasMember("entry")) return 0;
        return static_cast<int>(d["entry"].Size());
    }

private:
    fs::path out_;
    pid_t pid_ = -1;
    int port_ = 0;
};

}  // namespace samband::fhir::test
