// Norsk Helsenett over EDI 2.0 with HelseID, against the fake server in tests/support/fake-edi
// (Node.js on 127.0.0.1): signed client assertion and DPoP on every call, token caching, faults
// (500, 429 with Retry-After, a dropped connection, a 400) that end delivered or dead — never lost
// or doubled — and incoming messages with Apprecs both ways.
#include <samband_test/tools.hpp>
#include "harness.hpp"

#include "nhn/codec/codec.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <set>

namespace samband::test {
namespace {

// The fake EDI 2.0 + HelseID server as a child process; its port from its first line.
class fake_edi {
public:
    explicit fake_edi(const fs::path& public_key) {
        int out[2];
        if (pipe(out) != 0) return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            std::string script = source_dir() + "/tests/support/fake-edi/server.js";
            execlp("node", "node", script.c_str(), "--client-id", "samband-test", "--client-key",
                   public_key.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        close(out[1]);
        FILE* f = fdopen(out[0], "r");
        char line[128] = {0};
        if (f && fgets(line, sizeof line, f)) {
            if (std::sscanf(line, "LISTENING %d", &port_) != 1) port_ = 0;
        }
        if (f) fclose(f);
    }
    ~fake_edi() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int st;
            waitpid(pid_, &st, 0);
        }
    }
    int port() const { return port_; }
    std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
    http_response get(const std::string& t) const {
        return http("127.0.0.1:" + std::to_string(port_), "GET", t);
    }
    http_response post(const std::string& t, const std::string& body) const {
        return http("127.0.0.1:" + std::to_string(port_), "POST", t, body);
    }
    // Queues a business document for us (receiver HER-id 9900011) to fetch.
    http_response to_inbox(const std::string& xml, bool is_apprec) const {
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        w.StartObject();
        w.Key("receiverHerId");
        w.Int(9900011);
        w.Key("isAppRec");
        w.Bool(is_apprec);
        w.Key("xml");
        w.String(xml.c_str(), static_cast<rapidjson::SizeType>(xml.size()));
        w.EndObject();
        return post("/_test/inbox", sb.GetString());
    }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

class edi_test : public ::testing::Test {
protected:
    void SetUp() override { write_config(false); }

    void write_config(bool poll) {
        root_ = tmp_.path();
        if (fake_) return write_samband_json(poll);
        SAMBAND_REQUIRE_TOOL("node");
        auto [rc, out] = run_command("openssl ecparam -name prime256v1 -genkey -noout -out " +
                                     (root_ / "key.pem").string() + " && openssl ec -in " +
                                     (root_ / "key.pem").string() + " -pubout -out " +
                                     (root_ / "pub.pem").string());
        ASSERT_EQ(rc, 0) << out;  // a throwaway test key, made here and never kept
        fake_ = std::make_unique<fake_edi>(root_ / "pub.pem");
        ASSERT_GT(fake_->port(), 0) << "the fake EDI 2.0 server did not start (is node installed?)";
        write_samband_json(poll);
        codec_ =
            std::make_unique<nhn::codec>(nhn::codec_config{source_dir() + "/plugins/nhn/xsd", {}});
    }

    // Polling the inbox is off unless a test needs it (faults hit every /Messages request).
    void write_samband_json(bool poll) {
        std::string src = source_dir();
        write_file(
            root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + src + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "gp_directory": {"kind": "file", "path": ")" +
                                        src + R"(/config/demo/directory.json"},
  "secrets": {"helseid-key": {"file": "key.pem"}},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "notes": {"plugin": "rph", "config": {"sender": {
        "organisation": {"name": "Testby kommune", "her_id": "9900001", "org_nr": "999000001"},
        "service": {"name": "Rask psykisk helsehjelp Testby", "her_id": "9900011"}}}},
    "nhn": {"plugin": "nhn", "config": {"xsd_dir": ")" +
                                        src + R"(/plugins/nhn/xsd", "transport": "edi2",
            "poll_ms": 100, "own": {"name": "Testby kommune", "her_id": "9900001"},
            "edi2": {"token_url": ")" + fake_->base() +
                                        R"(/connect/token", "api_base": ")" + fake_->base() +
                                        R"(",
                     "client_id": "samband-test", "scope": "nhn:msh/api", "key_secret": "helseid-key",
                     )" + std::string(poll ? "\"poll_her_id\": 9900011, " : "") +
                                        extra_edi2_ +
                                        R"("allow_plain_http_loopback": true, "timeout_ms": 2000}},
            "policy": {"max_attempts": 8, "backoff_base_ms": 200, "backoff_max_ms": 1000, "attempt_timeout_ms": 10000}},
    "journal": {"plugin": "file", "config": {"outbox": "journal"}}
  },
  "routes": [
    {"name": "gp", "match": {"type": "rph.treatment.*", "source": "epj"}, "transforms": ["notes"],
     "to": ["nhn"], "recipient": "gp"},
    {"name": "from-gp", "match": {"type": "rph.referral.received", "source": "nhn"}, "to": ["journal"]}
  ]
})");
    }

    void drop_start_note(const std::string& name, bool with_pdf) {
        std::string ev =
            read_file(fs::path(source_dir()) / "config/demo/events/02-kari-start.json");
        ev.replace(ev.find("gerica:start-1001"), 17, "gerica:" + name);
        if (with_pdf) {
            ev.insert(
                ev.rfind('}'),
                R"(, "attachments": [{"file": "epikrise.pdf", "filename": "epikrise.pdf", "media_type": "application/pdf"}])");
            fs::create_directories(root_ / "inbox");
            fs::copy_file(fs::path(source_dir()) / "config/demo/events/henvisning-kari.pdf",
                          root_ / "inbox/epikrise.pdf", fs::copy_options::overwrite_existing);
        }
        drop_file(root_ / "inbox", name + ".json", ev);
    }

    std::vector<std::string> sent_xml() {
        rapidjson::Document d;
        d.Parse(fake_->get("/_test/messages").body.c_str());
        std::vector<std::string> out;
        if (d.IsArray())
            for (auto& m : d.GetArray()) out.push_back(m["xml"].GetString());
        return out;
    }

    std::string state(daemon_process& d) {
        auto r = d.get("/api/v1/deliveries?destination=nhn");
        rapidjson::Document doc;
        doc.Parse(r.body.c_str());
        if (doc.HasParseError() || !doc.IsArray() || doc.Empty()) return "none";
        return std::string(doc[0]["state"].GetString()) + ": " + doc[0]["reason"].GetString();
    }

    std::string extra_edi2_;  // more "edi2" settings, each followed by ", "
    temp_dir tmp_;
    fs::path root_;
    std::unique_ptr<fake_edi> fake_;
    std::unique_ptr<nhn::codec> codec_;
};

// Rendering needs no secret: preview shows the exact XML of an EDI 2.0 destination although a
// preview is given no secrets at all, and nothing is sent.
TEST_F(edi_test, preview_renders_an_edi2_destination_without_secrets) {
    fs::path out = root_ / "preview";
    auto [code, text] = run_command(
        daemon_process::binary() + " preview -c " + (root_ / "samband.json").string() + " " +
        (fs::path(source_dir()) / "config/demo/events/02-kari-start.json").string() + " --out " +
        out.string() + " 2>&1");
    ASSERT_EQ(code, 0) << text;
    std::string xml;
    for (auto& e : fs::recursive_directory_iterator(out))
        if (e.path().extension() == ".xml") xml = read_file(e.path());
    ASSERT_FALSE(xml.empty()) << text;
    auto parsed = codec_->parse(xml);
    ASSERT_TRUE(parsed) << parsed.error().what();
    EXPECT_EQ(parsed->header.msg_type, "DIALOG_HELSEFAGLIG");
    EXPECT_TRUE(sent_xml().empty()) << "preview must send nothing";
    rapidjson::Document st;
    st.Parse(fake_->get("/_test/stats").body.c_str());
    EXPECT_EQ(st["token_requests"].GetInt(), 0);
}

TEST_F(edi_test, start_note_with_a_pdf_arrives_valid_and_bit_exact_with_one_cached_token) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("s1", true);
    ASSERT_TRUE(wait_for([&] { return sent_xml().size() == 1; }, std::chrono::seconds(15)))
        << d.log() << fake_->get("/_test/stats").body;
    auto parsed = codec_->parse(sent_xml()[0]);  // validates against the official schemas
    ASSERT_TRUE(parsed) << parsed.error().what();
    ASSERT_EQ(parsed->attachments.size(), 1u);
    EXPECT_EQ(std::string(parsed->attachments[0].bytes.begin(), parsed->attachments[0].bytes.end()),
              read_file(fs::path(source_dir()) / "config/demo/events/henvisning-kari.pdf"));
    ASSERT_TRUE(
        wait_for([&] { return state(d).rfind("delivered", 0) == 0; }, std::chrono::seconds(10)))
        << state(d);
    drop_start_note("s2", false);
    ASSERT_TRUE(wait_for([&] { return sent_xml().size() == 2; }, std::chrono::seconds(15)));
    rapidjson::Document st;
    st.Parse(fake_->get("/_test/stats").body.c_str());
    ASSERT_TRUE(st.IsObject());
    EXPECT_EQ(st["token_requests"].GetInt(), 1) << "the token must be cached";
    EXPECT_TRUE(st["rejections"].Empty())
        << "assertion or DPoP refused: " << fake_->get("/_test/stats").body;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(edi_test, server_faults_end_delivered_never_lost_or_doubled) {
    fake_->post(
        "/_test/faults",
        R"([{"status":500,"count":2},{"status":429,"retry_after":1,"count":1},{"drop":true,"count":1}])");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("f1", false);
    ASSERT_TRUE(
        wait_for([&] { return state(d).rfind("delivered", 0) == 0; }, std::chrono::seconds(30)))
        << state(d) << "\n"
        << d.log();
    auto list = d.get("/api/v1/deliveries?destination=nhn");
    rapidjson::Document doc;
    doc.Parse(list.body.c_str());
    ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << list.body;
    EXPECT_GE(doc[0]["attempts"].GetInt64(), 3)
        << "the 500s and the dropped connection are retried";
    auto sent = sent_xml();
    ASSERT_EQ(sent.size(), 1u) << "a faulted send must not be stored twice";
    std::set<std::string> ids;
    for (const auto& x : sent) ids.insert(codec_->parse(x)->header.msg_id);
    EXPECT_EQ(ids.size(), 1u);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(edi_test, a_slow_answer_times_out_and_the_retry_keeps_the_msg_id) {
    // 3 s > the client's 2 s timeout: the first attempt is abandoned and retried. The server may
    // then hold the message twice, but as a repeat the receiver recognises (the same MsgId).
    fake_->post("/_test/faults", R"([{"delay_ms":3000,"count":1}])");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("slow1", false);
    ASSERT_TRUE(
        wait_for([&] { return state(d).rfind("delivered", 0) == 0; }, std::chrono::seconds(30)))
        << state(d) << "\n"
        << d.log();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // let the slow request finish
    std::set<std::string> ids;
    for (const auto& x : sent_xml()) ids.insert(codec_->parse(x)->header.msg_id);
    EXPECT_EQ(ids.size(), 1u);
    EXPECT_GE(sent_xml().size(), 1u);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(edi_test, no_apprec_within_the_window_raises_an_alert) {
    // A 2 s receipt window instead of 96 h (the window is per destination policy).
    std::string cfg = read_file(root_ / "samband.json");
    cfg.replace(cfg.find("\"attempt_timeout_ms\": 10000"), 27,
                "\"attempt_timeout_ms\": 10000, \"receipt_window_s\": 2");
    write_file(root_ / "samband.json", cfg);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("w1", false);
    // Delivery, then the 2 s window, then a check every second: 60 s is only the deadline.
    ASSERT_TRUE(wait_for([&] { return d.log().find("step=receipt.overdue") != std::string::npos; },
                         std::chrono::seconds(60)))
        << d.log();
    // The metric is counted just after the log line is written.
    EXPECT_TRUE(wait_for(
        [&] {
            return d.get("/metrics")
                       .body.find("samband_receipts_overdue_total{destination=\"nhn\"} 1") !=
                   std::string::npos;
        },
        std::chrono::seconds(10)))
        << d.get("/metrics").body;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(edi_test, a_4xx_goes_dead_with_the_servers_message) {
    fake_->post("/_test/faults",
                R"([{"status":400,"count":1,"message":"Mottaker 9900101 har ikke tjenesten"}])");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("p1", false);
    ASSERT_TRUE(wait_for([&] { return state(d).rfind("dead", 0) == 0; }, std::chrono::seconds(15)))
        << state(d);
    EXPECT_NE(state(d).find("har ikke tjenesten"), std::string::npos) << state(d);
    EXPECT_TRUE(sent_xml().empty());
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(edi_test,
       apprec_through_edi_acknowledges_and_incoming_messages_are_answered_and_marked_read) {
    write_config(true);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("a1", false);
    ASSERT_TRUE(
        wait_for([&] { return sent_xml().size() == 1 && state(d).rfind("delivered", 0) == 0; },
                 std::chrono::seconds(15)));
    auto parsed = codec_->parse(sent_xml()[0]);
    ASSERT_TRUE(parsed);
    auto apprec = codec_->make_apprec(nhn::apprec_for(parsed->header, nhn::apprec_status::ok));
    ASSERT_TRUE(apprec);
    fake_->to_inbox(*apprec, true);
    EXPECT_TRUE(
        wait_for([&] { return state(d).rfind("acknowledged", 0) == 0; }, std::chrono::seconds(10)))
        << state(d);
    // An incoming referral: stored as an event, answered with an Apprec Ok, marked read.
    fs::path dir = fs::path(source_dir()) / "tests/data/nhn/samples/dialogmelding";
    std::string xml;
    for (auto& e : fs::recursive_directory_iterator(dir)) {
        if (e.path().extension() != ".xml") continue;
        auto m = codec_->parse(read_file(e.path()));
        if (m && !m->attachments.empty()) {
            xml = read_file(e.path());
            for (auto p = xml.find(m->patient_id); p != std::string::npos;
                 p = xml.find(m->patient_id, p))
                xml.replace(p, m->patient_id.size(), "14839134623");
            break;
        }
    }
    ASSERT_FALSE(xml.empty());
    fake_->to_inbox(xml, false);
    EXPECT_TRUE(wait_for(
        [&] {
            return fake_->get("/_test/inbox").body.find("\"appRecStatus\":\"Ok\"") !=
                   std::string::npos;
        },
        std::chrono::seconds(10)))
        << fake_->get("/_test/inbox").body << d.log();
    EXPECT_TRUE(wait_for(
        [&] { return fake_->get("/_test/inbox").body.find("\"read\":false") == std::string::npos; },
        std::chrono::seconds(10)))
        << "every fetched message is marked read: " << fake_->get("/_test/inbox").body;
    EXPECT_TRUE(wait_for(
        [&] {
            std::error_code ec;
            for (auto& e : fs::directory_iterator(root_ / "journal", ec))
                if (e.path().extension() == ".json") return true;
            return false;
        },
        std::chrono::seconds(10)));
    EXPECT_EQ(d.stop(), 0);
}

// Over EDI 2.0 a refused document is kept too: an Apprec from an office the note never went to
// changes nothing, is written to state_dir/error with the reason, and is marked read.
TEST_F(edi_test, a_stranger_apprec_over_edi_is_kept_with_the_reason_and_changes_nothing) {
    write_config(true);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("s1", false);
    ASSERT_TRUE(
        wait_for([&] { return sent_xml().size() == 1 && state(d).rfind("delivered", 0) == 0; },
                 std::chrono::seconds(15)));
    auto parsed = codec_->parse(sent_xml()[0]);
    ASSERT_TRUE(parsed);
    nhn::message_header h = parsed->header;
    h.receiver.her_id = "9900999";
    h.receiver.unit_her_id.clear();
    h.receiver.person_her_id.clear();
    auto apprec = codec_->make_apprec(
        nhn::apprec_for(h, nhn::apprec_status::rejected,
                        {nhn::make_apprec_error(nhn::apprec_codes::mottaker_finnes_ikke)}));
    ASSERT_TRUE(apprec);
    rapidjson::Document id;
    id.Parse(fake_->to_inbox(*apprec, true).body.c_str());
    ASSERT_TRUE(id.IsObject());
    fs::path reason =
        root_ / "nhn-state/error" / (std::string(id["id"].GetString()) + ".xml.reason");
    ASSERT_TRUE(wait_for([&] { return fs::exists(reason); }, std::chrono::seconds(10))) << d.log();
    EXPECT_NE(read_file(reason).find("Apprec from HER-id 9900999"), std::string::npos)
        << read_file(reason);
    EXPECT_TRUE(
        fs::exists(root_ / "nhn-state/error" / (std::string(id["id"].GetString()) + ".xml")));
    EXPECT_TRUE(wait_for(
        [&] { return fake_->get("/_test/inbox").body.find("\"read\":false") == std::string::npos; },
        std::chrono::seconds(10)));
    EXPECT_EQ(state(d).rfind("delivered", 0), 0u) << state(d);
    EXPECT_EQ(d.stop(), 0);
}

// Receipts over EDI 2.0 without any Apprec document: the plugin asks GET /Messages/{id}/apprec for
// what it sent. An Apprec from a HER-id the message never went to changes nothing (kept with the
// reason); the GP's Avvist makes the delivery dead with its 8221 code, and polling then stops.
TEST_F(edi_test, receipts_are_polled_for_sent_messages_and_checked_against_the_receiver) {
    extra_edi2_ = R"("receipt_poll_ms": 100, "receipt_batch": 10, )";
    write_samband_json(false);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note("r1", false);
    ASSERT_TRUE(
        wait_for([&] { return sent_xml().size() == 1 && state(d).rfind("delivered", 0) == 0; },
                 std::chrono::seconds(15)))
        << state(d) << d.log();
    rapidjson::Document msgs;
    msgs.Parse(fake_->get("/_test/messages").body.c_str());
    std::string id = msgs[0]["id"].GetString();
    auto apprec_calls = [&] {
        rapidjson::Document st;
        st.Parse(fake_->get("/_test/stats").body.c_str());
        int n = 0;
        for (auto& r : st["requests"].GetArray())
            n += std::string(r.GetString()) == "GET /Messages/" + id + "/apprec";
        return n;
    };
    ASSERT_TRUE(wait_for([&] { return apprec_calls() >= 1; }, std::chrono::seconds(10)))
        << "the plugin asks for the Apprec of what it sent";
    fake_->post("/_test/apprec/" + id,
                R"({"receiverHerId": 9900777, "appRecStatus": "Rejected", "appRecErrorList": [
                     {"errorCode": "E21", "description": "Mottaker finnes ikke", "details": "x"}]})");
    ASSERT_TRUE(
        wait_for([&] { return fs::exists(root_ / ("nhn-state/error/" + id + ".apprec.reason")); },
                 std::chrono::seconds(10)))
        << d.log();
    std::string why = read_file(root_ / ("nhn-state/error/" + id + ".apprec.reason"));
    EXPECT_NE(why.find("from HER-id 9900777"), std::string::npos) << why;
    EXPECT_EQ(state(d).rfind("delivered", 0), 0u) << state(d);
    EXPECT_EQ(d.stop(), 0);

    // Restarted (the ledger is on disk): the GP's own Avvist applies.
    fake_->post("/_test/apprec/" + id,
                R"([{"receiverHerId": 9900777, "appRecStatus": null},
                    {"receiverHerId": 9900101, "appRecStatus": "Rejected", "appRecErrorList": [
                     {"errorCode": "E21", "description": "Mottaker finnes ikke", "details": "ukjent"}]}])");
    daemon_process d2(root_ / "samband.json", root_);
    ASSERT_TRUE(d2.start()) << d2.log();
    ASSERT_TRUE(wait_for([&] { return state(d2).rfind("dead", 0) == 0; }, std::chrono::seconds(15)))
        << state(d2) << d2.log();
    EXPECT_NE(state(d2).find("E21 Mottaker finnes ikke"), std::string::npos) << state(d2);
    int after = apprec_calls();
    // Acknowledged or dead: no more polling for it (a second round would have asked by now).
    ASSERT_FALSE(wait_for([&] { return apprec_calls() > after; }, std::chrono::milliseconds(1500)));
    EXPECT_EQ(d2.stop(), 0);
}

}  // namespace
}  // namespace samband::test
