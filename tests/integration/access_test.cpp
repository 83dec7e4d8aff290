// Who may use the admin API (issue 15 item 1): every endpoint × every role × no token, from one
// table kept here and shared with nothing in the host; reads of patient data audited with who and
// why; without a token file only the health endpoints answer.
#include "harness.hpp"

#include <array>

namespace samband::test {
namespace {

// The columns of the matrix: no token, then one token per role.
constexpr std::array<const char*, 5> kWho = {"none", "viewer", "operator", "clinician", "auditor"};

struct row {
    const char* method;
    std::string target;  // {event} and {error}: the seeded event's and error's ids
    const char* body;
    std::array<int, 5> expect;  // by kWho
};

// The expected answer of every endpoint for every caller. 401: no token; 403: the token lacks
// the role; otherwise the endpoint's own answer (409: retry of a delivered delivery, override of
// one that is not gated; 404 for an unknown path only after a valid token).
const std::vector<row>& matrix() {
    static const std::vector<row> rows = {
        {"GET", "/healthz", "", {200, 200, 200, 200, 200}},
        {"GET", "/readyz", "", {200, 200, 200, 200, 200}},
        {"GET", "/console/", "", {200, 200, 200, 200, 200}},  // the page: no data, no token
        {"GET", "/console/console.js", "", {200, 200, 200, 200, 200}},
        {"GET", "/", "", {302, 302, 302, 302, 302}},  // to /console/
        {"GET", "/metrics", "", {401, 200, 200, 200, 200}},
        {"GET", "/api/v1/whoami", "", {401, 200, 200, 200, 200}},
        {"GET", "/api/v1/status", "", {401, 200, 200, 200, 200}},
        {"GET", "/api/v1/endpoints", "", {401, 200, 200, 200, 200}},
        {"GET", "/api/v1/plugins", "", {401, 200, 200, 200, 200}},
        {"GET", "/api/v1/reports/outcomes?from=2026-01&to=2026-12", "", {401, 200, 200, 200, 200}},
        {"GET", "/api/v1/deliveries", "", {401, 403, 200, 200, 403}},
        {"GET", "/api/v1/deliveries?state=delivered", "", {401, 403, 200, 200, 403}},
        {"GET", "/api/v1/deliveries/{delivery}", "", {401, 403, 200, 200, 403}},
        {"GET", "/api/v1/errors", "", {401, 403, 200, 200, 403}},
        {"GET", "/api/v1/errors/{error}?reason=matrix", "", {401, 403, 403, 200, 403}},
        {"GET", "/api/v1/errors/{error}", "", {401, 403, 403, 400, 403}},  // no reason stated
        {"GET", "/api/v1/events/{event}?reason=matrix", "", {401, 403, 403, 200, 403}},
        {"GET", "/api/v1/events/{event}", "", {401, 403, 403, 400, 403}},
        {"GET", "/api/v1/audit", "", {401, 403, 403, 403, 200}},
        {"GET", "/api/v1/audit?subject=delivery:{delivery}", "", {401, 403, 403, 403, 200}},
        {"POST",
         "/api/v1/deliveries/{delivery}/retry",
         R"({"reason":"matrix"})",
         {401, 403, 409, 403, 403}},
        {"POST",
         "/api/v1/deliveries/{delivery}/override",
         R"({"reason":"matrix"})",
         {401, 403, 403, 409, 403}},
        {"POST",
         "/api/v1/replay",
         R"({"destination":"journal","since_ms":4102444800000})",
         {401, 403, 200, 403, 403}},
        {"POST", "/api/v1/events", "not json", {401, 403, 422, 403, 403}},
        {"GET", "/api/v1/no-such-thing", "", {401, 404, 404, 404, 404}},
        {"POST", "/api/v1/status", "{}", {401, 405, 405, 405, 405}},
    };
    return rows;
}

class access_test : public ::testing::Test {
protected:
    void write_config(const std::string& admin) {
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": )" + admin + R"(,
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 20}},
    "journal": {"plugin": "fixture-sink", "config": {"record_file": "journal.jsonl"}}
  },
  "routes": [{"name": "to-journal", "match": {"type": "rph.treatment.*"}, "to": ["journal"]}]
})");
    }
    static std::string start_note() {
        return read_file(fs::path(source_dir()) / "config/demo/events/02-kari-start.json");
    }

    temp_dir tmp_;
    fs::path root_ = tmp_.path();
};

TEST_F(access_test, every_endpoint_answers_every_role_as_the_matrix_says) {
    std::array<std::string, 5> token;  // token[0]: none
    for (std::size_t i = 1; i < kWho.size(); ++i) {
        token[i] = add_token(root_ / "tokens", std::string("t-") + kWho[i], kWho[i]);
        ASSERT_FALSE(token[i].empty());
    }
    write_config(R"({"listen": "127.0.0.1:0", "token_file": "tokens"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    ASSERT_TRUE(d.token().empty()) << "the test's own token file is used";

    // Seed: one delivered event (delivery 1) and one refused input (error 1).
    drop_file(root_ / "inbox", "1.json", start_note());
    drop_file(root_ / "inbox", "2.json", "{\"not\": \"an event\"}");
    const std::string op = token[2];
    std::string event_id, error_id, delivery_id;  // read back: PostgreSQL's ids may skip
    ASSERT_TRUE(wait_for(
        [&] {
            rapidjson::Document ds, es;
            ds.Parse(d.get("/api/v1/deliveries?state=delivered", op).body.c_str());
            es.Parse(d.get("/api/v1/errors", op).body.c_str());
            if (!ds.IsArray() || ds.Empty() || !es.IsArray() || es.Empty()) return false;
            event_id = ds[0]["event_id"].GetString();
            delivery_id = std::to_string(ds[0]["id"].GetInt64());
            error_id = std::to_string(es[0]["id"].GetInt64());
            return true;
        },
        std::chrono::seconds(15)))
        << d.log();

    int checked = 0;
    for (const auto& r : matrix()) {
        std::string target = r.target;
        if (auto at = target.find("{event}"); at != std::string::npos)
            target.replace(at, 7, event_id);
        if (auto at = target.find("{error}"); at != std::string::npos)
            target.replace(at, 7, error_id);
        if (auto at = target.find("{delivery}"); at != std::string::npos)
            target.replace(at, 10, delivery_id);
        for (std::size_t i = 0; i < kWho.size(); ++i) {
            auto got = http(d.admin(), r.method, target, r.body, token[i]);
            EXPECT_EQ(got.status, r.expect[i])
                << r.method << " " << target << " as " << kWho[i] << ": " << got.body;
            if (got.status == 401) {
                EXPECT_NE(got.body.find("token"), std::string::npos) << got.body;
            }
            if (got.status == 403) {
                EXPECT_NE(got.body.find("needs the role"), std::string::npos) << got.body;
            }
            ++checked;
        }
    }
    EXPECT_EQ(checked, static_cast<int>(matrix().size() * kWho.size()));

    // A wrong token is no token.
    auto wrong = http(d.admin(), "GET", "/api/v1/status", {}, std::string(64, 'a'));
    EXPECT_EQ(wrong.status, 401) << wrong.body;

    // Every read of patient data is in the audit log with who and why; what the operator lists
    // carries no identifier.
    auto audit = d.get("/api/v1/audit?limit=1000", token[4]);
    ASSERT_EQ(audit.status, 200) << audit.body;
    rapidjson::Document doc;
    doc.Parse(audit.body.c_str());
    ASSERT_TRUE(doc.IsArray()) << audit.body;
    int event_reads = 0, error_reads = 0;
    for (auto& a : doc.GetArray()) {
        std::string action = a["action"].GetString(), subject = a["subject"].GetString();
        if (action != "api.read") continue;
        EXPECT_EQ(std::string(a["actor"].GetString()), "token:t-clinician") << audit.body;
        EXPECT_EQ(std::string(a["detail"].GetString()), "matrix") << audit.body;
        event_reads += subject == "event:" + event_id;
        error_reads += subject == "error:" + error_id;
    }
    EXPECT_EQ(event_reads, 1) << audit.body;  // one read granted; refusals read nothing
    EXPECT_EQ(error_reads, 1) << audit.body;
    const std::string fnr = "14839134623";  // the demo's synthetic patient
    auto read = d.get("/api/v1/events/" + event_id + "?reason=check", token[3]);
    EXPECT_NE(read.body.find(fnr), std::string::npos) << read.body;
    for (const std::string& t :
         {std::string("/api/v1/deliveries"), "/api/v1/deliveries/" + delivery_id,
          std::string("/api/v1/errors")}) {
        auto masked = d.get(t, op);
        EXPECT_EQ(masked.status, 200) << t;
        EXPECT_EQ(masked.body.find(fnr), std::string::npos) << t << ": " << masked.body;
    }
    auto refused = d.log();
    EXPECT_NE(refused.find("request refused"), std::string::npos) << "refusals are logged";

    // The same reads from the CLI: a clinician with a reason; an operator is refused.
    write_file(root_ / "dr.token", token[3] + "\n");
    write_file(root_ / "op.token", token[2] + "\n");
    const std::string as_dr = " --token-file " + (root_ / "dr.token").string();
    auto raw = d.cli("errors --show " + error_id + " --reason 'cli check'" + as_dr);
    EXPECT_EQ(raw.first, 0) << raw.second;
    EXPECT_NE(raw.second.find("an event"), std::string::npos) << raw.second;  // the raw input
    auto no_reason = d.cli("errors --show " + error_id + as_dr);
    EXPECT_EQ(no_reason.first, 2) << no_reason.second;
    auto ev = d.cli("events show " + event_id + " --reason 'cli check'" + as_dr);
    EXPECT_EQ(ev.first, 0) << ev.second;
    EXPECT_NE(ev.second.find(fnr), std::string::npos) << ev.second;
    auto op_read = d.cli("events show " + event_id + " --reason 'cli check' --token-file " +
                         (root_ / "op.token").string());
    EXPECT_EQ(op_read.first, 1) << op_read.second;
    EXPECT_NE(op_read.second.find("HTTP 403"), std::string::npos) << op_read.second;
    auto after = d.get("/api/v1/audit?subject=event:" + event_id, token[4]).body;
    EXPECT_NE(after.find("cli check"), std::string::npos) << after;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(access_test, without_a_token_file_only_the_health_endpoints_answer) {
    write_config(R"({"listen": "127.0.0.1:0", "token_file": ""})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    EXPECT_EQ(d.get("/healthz").status, 200);
    EXPECT_EQ(d.get("/readyz").status, 200);
    for (const char* t : {"/metrics", "/api/v1/status", "/api/v1/deliveries", "/api/v1/audit"}) {
        auto r = d.get(t);
        EXPECT_EQ(r.status, 401) << t << ": " << r.body;
        EXPECT_NE(r.body.find("no token file"), std::string::npos) << r.body;
    }
    EXPECT_EQ(d.post("/api/v1/events", "{}").status, 401);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(access_test, metrics_open_serves_metrics_without_a_token_and_nothing_else) {
    const std::string viewer = add_token(root_ / "tokens", "v", "viewer");
    write_config(R"({"listen": "127.0.0.1:0", "token_file": "tokens", "metrics_open": true})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    auto m = d.get("/metrics");
    EXPECT_EQ(m.status, 200) << m.body;
    EXPECT_NE(m.body.find("samband_"), std::string::npos) << m.body;
    EXPECT_EQ(d.get("/api/v1/status").status, 401);
    EXPECT_EQ(d.get("/api/v1/status", viewer).status, 200);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(access_test, a_token_file_with_clear_text_tokens_is_refused_at_start_naming_the_line) {
    write_file(root_ / "tokens", "# old format\nops:0123456789abcdef0123\n");
    write_config(R"({"listen": "127.0.0.1:0", "token_file": "tokens"})");
    daemon_process d(root_ / "samband.json", root_);
    EXPECT_FALSE(d.start());
    EXPECT_NE(d.log().find("line 2"), std::string::npos) << d.log();
    EXPECT_NE(d.log().find("samband token add"), std::string::npos) << d.log();
}

// A token added while the daemon runs works within a second; a deleted line stops working; a
// malformed edit is not taken (the tokens before stay) and is logged.
TEST_F(access_test, the_running_daemon_takes_token_file_changes_within_a_second) {
    const fs::path file = root_ / "tokens";
    const std::string viewer = add_token(file, "v", "viewer");
    const std::string viewer_line = read_file(file);
    write_config(R"({"listen": "127.0.0.1:0", "token_file": "tokens"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    auto status_as = [&](const std::string& token) {
        return d.get("/api/v1/deliveries", token).status;
    };
    EXPECT_EQ(status_as(viewer), 403);
    const std::string op = add_token(file, "ops", "operator");
    EXPECT_TRUE(wait_for([&] { return status_as(op) == 200; }, std::chrono::seconds(5))) << d.log();
    write_file(file, viewer_line + "ops:operator:not-a-hash\n");  // a bad edit: not taken
    // The file is looked at when a request needs a token.
    EXPECT_TRUE(wait_for(
        [&] {
            EXPECT_EQ(status_as(op), 200) << "the tokens read before stay";
            return d.log().find("not taken") != std::string::npos;
        },
        std::chrono::seconds(5)))
        << d.log();
    write_file(file, viewer_line);  // ops revoked
    EXPECT_TRUE(wait_for([&] { return status_as(op) == 401; }, std::chrono::seconds(5))) << d.log();
    EXPECT_EQ(status_as(viewer), 403);
    EXPECT_EQ(d.get("/api/v1/status", viewer).status, 200);
    fs::remove(file);  // gone: only the health endpoints
    EXPECT_TRUE(wait_for([&] { return d.get("/api/v1/status", viewer).status == 401; },
                         std::chrono::seconds(5)))
        << d.log();
    EXPECT_EQ(d.get("/healthz").status, 200);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(access_test, token_add_prints_the_token_once_and_stores_only_its_hash) {
    const fs::path file = root_ / "tokens";
    auto [code, out] = run_command(daemon_process::binary() + " token add alice --role " +
                                   "clinician,auditor --file " + file.string());
    ASSERT_EQ(code, 0) << out;
    std::string stored = read_file(file);
    auto colon = stored.rfind(':');
    ASSERT_NE(colon, std::string::npos) << stored;
    EXPECT_EQ(stored.substr(0, colon), "alice:clinician,auditor") << stored;
    std::string hash = stored.substr(colon + 1, 64);
    std::string token = out.substr(0, out.find('\n'));
    EXPECT_EQ(token.size(), 64u) << out;
    EXPECT_EQ(stored.find(token), std::string::npos) << "the token itself is never stored";
    EXPECT_NE(out.find("shown only this once"), std::string::npos) << out;
    EXPECT_EQ(fs::status(file).permissions() & fs::perms::others_read, fs::perms::none);
    // Refusals name the problem.
    auto dup = run_command(daemon_process::binary() + " token add alice --role viewer --file " +
                           file.string());
    EXPECT_EQ(dup.first, 1) << dup.second;
    EXPECT_NE(dup.second.find("already has a token for alice"), std::string::npos) << dup.second;
    auto bad = run_command(daemon_process::binary() + " token add bob --role admin --file " +
                           file.string());
    EXPECT_EQ(bad.first, 2) << bad.second;
    EXPECT_NE(bad.second.find("--role admin"), std::string::npos) << bad.second;
    // remove deletes the line, and names a name the file does not have.
    auto other = run_command(daemon_process::binary() + " token add carl --role viewer --file " +
                             file.string());
    ASSERT_EQ(other.first, 0) << other.second;
    auto rm = run_command(daemon_process::binary() + " token remove carl --file " + file.string());
    EXPECT_EQ(rm.first, 0) << rm.second;
    EXPECT_EQ(read_file(file).find("carl:"), std::string::npos) << read_file(file);
    EXPECT_NE(read_file(file).find("alice:"), std::string::npos) << read_file(file);
    auto rm2 = run_command(daemon_process::binary() + " token remove carl --file " + file.string());
    EXPECT_EQ(rm2.first, 1) << rm2.second;
    EXPECT_NE(rm2.second.find("no token for carl"), std::string::npos) << rm2.second;
    // The CLI names a missing token file, and the daemon's hashed file given by mistake.
    write_config(R"({"listen": "127.0.0.1:0", "token_file": "tokens"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    auto missing = d.cli("status --token-file " + (root_ / "nope").string());
    EXPECT_EQ(missing.first, 3) << missing.second;
    EXPECT_NE(missing.second.find("cannot read the token file"), std::string::npos)
        << missing.second;
    auto hashed = d.cli("status --token-file " + file.string());
    EXPECT_NE(hashed.first, 0) << hashed.second;
    EXPECT_NE(hashed.second.find("hashed tokens"), std::string::npos) << hashed.second;
    write_file(root_ / "alice.token", token + "\n");
    auto ok = d.cli("status --token-file " + (root_ / "alice.token").string());
    EXPECT_EQ(ok.first, 0) << ok.second;  // every role may see the status
    auto refused = d.cli("replay --destination journal --since 2h --token-file " +
                         (root_ / "alice.token").string());  // needs the operator role
    EXPECT_EQ(refused.first, 1) << refused.second;
    EXPECT_NE(refused.second.find("HTTP 403"), std::string::npos) << refused.second;
    EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace samband::test
