#include "fake_server.hpp"

#include <boost/beast/http/verb.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>

namespace samband::nhn::edi::test {

namespace fs = std::filesystem;
namespace http = boost::beast::http;

temp_dir::temp_dir() {
    char templ[] = "/tmp/samband-edi-XXXXXX";
    if (!mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
    path = templ;
}

temp_dir::~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
}

void write_key_pair(const fs::path& dir, key_type type) {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        type == key_type::rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"), &EVP_PKEY_free);
    if (!key) throw std::runtime_error("key generation failed");
    const auto priv = dir / "private.pem";
    const auto pub = dir / "public.pem";
    FILE* f = std::fopen(priv.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + priv.string());
    PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    fs::permissions(priv, fs::perms::owner_read | fs::perms::owner_write);
    f = std::fopen(pub.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + pub.string());
    PEM_write_PUBKEY(f, key.get());
    std::fclose(f);
}

fake_server::fake_server(const fs::path& public_key, const std::string& client_id) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execlp("node", "node", NHN_EDI_FAKE_SERVER, "--client-id", client_id.c_str(),
               "--client-key", public_key.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    close(out[1]);
    // First line: "LISTENING <port>".
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        pollfd p{out[0], POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buf[256];
        const auto n = read(out[0], buf, sizeof buf);
        if (n <= 0) break;
        line.append(buf, static_cast<std::size_t>(n));
    }
    close(out[0]);
    if (line.rfind("LISTENING ", 0) != 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
        throw std::runtime_error("fake server did not start: '" + line + "'");
    }
    port_ = std::atoi(line.c_str() + 10);
    tls_options tls;
    tls.allow_plain_http_loopback = true;
    http_.emplace(*parse_endpoint_url(base_url()), tls, nullptr);
}

fake_server::~fake_server() {
    if (pid_ <= 0) return;  // never signal pid 0 or -1
    kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
}

std::pair<int, std::string> fake_server::control(const std::string& method, const std::string& path,
                                                 const std::string& body) {
    http_request req{http::string_to_verb(method), path, 11};
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    auto res =
        http_->send(std::move(req), std::chrono::steady_clock::now() + std::chrono::seconds(5));
    if (!res) throw std::runtime_error("control call failed: " + res.error().message());
    return {static_cast<int>(res->result_int()), res->body()};
}

rapidjson::Document fake_server::stats() {
    rapidjson::Document doc;
    doc.Parse(control("GET", "/_test/stats").second);
    return doc;
}

}  // namespace samband::nhn::edi::test
