// Norsk Helsenett over the file catalogue, end to end: an RPH start note with a PDF leaves as a
// MsgHead that validates against the official schemas and carries the PDF bit-exact; an Apprec OK
// acknowledges it; an Avvist makes it dead with the receiver's reason; an incoming message
// becomes an event and is answered with an Apprec.
#include <samband_test/tools.hpp>
#include "harness.hpp"

#include "nhn/codec/codec.hpp"

#include <rapidjson/document.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <set>

namespace samband::test {
namespace {

class nhn_test : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = tmp_.path();
        std::string src = source_dir();
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + src + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "gp_directory": {"kind": "file", "path": ")" +
                                               src + R"(/config/demo/directory.json"},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "notes": {"plugin": "rph", "config": {"sender": {
        "organisation": {"name": "Testby kommune", "her_id": "9900001", "org_nr": "999000001"},
        "service": {"name": "Rask psykisk helsehjelp Testby", "her_id": "9900011"}}}},
    "nhn": {"plugin": "nhn", "config": {"xsd_dir": ")" +
                                               src + R"(/plugins/nhn/xsd", "out_dir": "nhn-out",
            "in_dir": "nhn-in", "poll_ms": 50, "own": {"name": "Testby kommune", "her_id": "9900001"}}},
    "journal": {"plugin": "file", "config": {"outbox": "journal"}}
  },
  "routes": [
    {"name": "gp", "match": {"type": "rph.treatment.*", "source": "epj"}, "transforms": ["notes"],
     "to": ["nhn"], "recipient": "gp"},
    {"name": "from-gp", "match": {"type": "rph.referral.received", "source": "nhn"}, "to": ["journal"]},
    {"name": "answers", "match": {"type": "rph.info.replied", "source": "nhn"}, "to": ["journal"]}
  ]
})");
        codec_ = std::make_unique<nhn::codec>(nhn::codec_config{src + "/plugins/nhn/xsd", {}});
    }

    void drop_start_note_with_pdf() {
        std::string ev =
            read_file(fs::path(source_dir()) / "config/demo/events/02-kari-start.json");
        ev.insert(
            ev.rfind('}'),
            R"(, "attachments": [{"file": "epikrise.pdf", "filename": "epikrise.pdf", "media_type": "application/pdf"}])");
        fs::create_directories(root_ / "inbox");
        fs::copy_file(fs::path(source_dir()) / "config/demo/events/henvisning-kari.pdf",
                      root_ / "inbox/epikrise.pdf");
        drop_file(root_ / "inbox", "start.json", ev);
    }

    // The one outgoing message (not an Apprec) in the catalogue.
    fs::path sent_message() {
        for (auto& e : fs::directory_iterator(root_ / "nhn-out"))
            if (e.path().extension() == ".xml" &&
                e.path().filename().string().rfind("apprec-", 0) != 0)
                return e.path();
        return {};
    }

    std::string delivery_state(daemon_process& d) {
        auto r = d.get("/api/v1/deliveries?destination=nhn");
        rapidjson::Document doc;
        doc.Parse(r.body.c_str());
        if (doc.HasParseError() || !doc.IsArray() || doc.Empty()) return "none";
        return doc[0]["state"].GetString();
    }

    void answer_with_apprec(const std::string& msg_id, nhn::apprec_status status) {
        nhn::message_header h;
        auto parsed = codec_->parse(read_file(sent_message()));
        ASSERT_TRUE(parsed) << parsed.error().what();
        h = parsed->header;
        std::vector<nhn::apprec_error> errors;
        if (status == nhn::apprec_status::rejected)
            errors.push_back(nhn::make_apprec_error(nhn::apprec_codes::mottaker_finnes_ikke));
        auto req = nhn::apprec_for(h, status, errors);
        auto xml = codec_->make_apprec(req);
        ASSERT_TRUE(xml) << xml.error().what();
        ASSERT_EQ(req.original_msg_id, msg_id);
        drop_file(root_ / "nhn-in", "apprec.xml", *xml);
    }

    // A GP's answer (DIALOG_SVAR, from the shared sample) to `ref`, about `patient`.
    static std::string answer_to(const std::string& ref, const std::string& msg_id,
                                 const std::string& patient = "14839134623") {
        std::string xml = read_file(fs::path(source_dir()) /
                                    "tests/data/nhn/samples/dialogmelding/1.0/foresporsel-og-svar/"
                                    "dialog-svar-webmed-test.xml");
        auto swap = [&](const std::string& from, const std::string& to) {
            for (auto p = xml.find(from); p != std::string::npos; p = xml.find(from, p + to.size()))
                xml.replace(p, from.size(), to);
        };
        swap("4f77040c-3610-4d17-bef1-76994ab2726b", ref);
        swap("a748bb20-4e0f-4922-9b06-ec2c101eb9c1", msg_id);
        swap("15720255178", patient);
        return xml;
    }

    // Our Apprec answering `msg_id`, parsed (empty optional when there is none yet).
    std::optional<nhn::receipt> our_apprec(const std::string& msg_id) {
        fs::path f = root_ / "nhn-out" / ("apprec-" + msg_id + ".xml");
        if (!fs::exists(f)) return std::nullopt;
        auto r = codec_->parse_receipt(read_file(f));
        if (!r) return std::nullopt;
        return *r;
    }

    std::vector<std::string> journal() {
        std::vector<std::string> out;
        std::error_code ec;
        for (auto& e : fs::directory_iterator(root_ / "journal", ec))
            if (e.path().extension() == ".json") out.push_back(read_file(e.path()));
        return out;
    }

    temp_dir tmp_;
    fs::path root_;
    std::unique_ptr<nhn::codec> codec_;
};

TEST_F(nhn_test, start_note_with_a_pdf_leaves_valid_and_an_apprec_ok_acknowledges_it) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "nhn-out") && !sent_message().empty(); },
                         std::chrono::seconds(15)))
        << d.log();
    fs::path msg = sent_message();
    // Validates as a receiver would, with the official schemas and no network.
    SAMBAND_REQUIRE_TOOL("xmllint");
    auto [rc, out] = run_command("xmllint --noout --nonet --schema " + source_dir() +
                                 "/plugins/nhn/xsd/all-messages.xsd " + msg.string());
    EXPECT_EQ(rc, 0) << out;
    auto parsed = codec_->parse(read_file(msg));
    ASSERT_TRUE(parsed) << parsed.error().what();
    EXPECT_EQ(parsed->header.msg_type, "DIALOG_HELSEFAGLIG");
    EXPECT_EQ(parsed->patient_id, "14839134623");
    EXPECT_EQ(parsed->header.receiver.most_specific_her_id(), "9900101");
    ASSERT_EQ(parsed->attachments.size(), 1u);
    std::string pdf = read_file(fs::path(source_dir()) / "config/demo/events/henvisning-kari.pdf");
    EXPECT_EQ(std::string(parsed->attachments[0].bytes.begin(), parsed->attachments[0].bytes.end()),
              pdf);
    EXPECT_EQ(parsed->text.find("14839134623"), std::string::npos);
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(d) == "delivered"; }, std::chrono::seconds(10)));
    answer_with_apprec(parsed->header.msg_id, nhn::apprec_status::ok);
    EXPECT_TRUE(
        wait_for([&] { return delivery_state(d) == "acknowledged"; }, std::chrono::seconds(10)))
        << d.log();
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(nhn_test, apprec_avvist_makes_the_delivery_dead_with_the_8221_reason) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(d) == "delivered"; }, std::chrono::seconds(15)))
        << d.log();
    auto parsed = codec_->parse(read_file(sent_message()));
    ASSERT_TRUE(parsed);
    answer_with_apprec(parsed->header.msg_id, nhn::apprec_status::rejected);
    ASSERT_TRUE(wait_for([&] { return delivery_state(d) == "dead"; }, std::chrono::seconds(10)))
        << d.log();
    auto list = d.get("/api/v1/deliveries?destination=nhn");
    EXPECT_NE(list.body.find("E21"), std::string::npos) << list.body;
    EXPECT_NE(list.body.find("Mottaker finnes ikke"), std::string::npos) << list.body;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(nhn_test, incoming_referral_becomes_an_event_and_gets_an_apprec_ok_and_garbage_gets_none) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    fs::path sample = fs::path(source_dir()) / "tests/data/nhn/samples/dialogmelding";
    fs::path pick;
    for (auto& e : fs::recursive_directory_iterator(sample)) {
        if (e.path().extension() != ".xml") continue;
        auto m = codec_->parse(read_file(e.path()));
        if (m && !m->attachments.empty()) {
            pick = e.path();
            break;
        }
    }
    ASSERT_FALSE(pick.empty()) << "no valid sample with an attachment in " << sample;
    // The sample's patient number follows another test-number convention than ours: use one of
    // the synthetic patients (a real receiver would refuse an invalid number, as Samband does).
    std::string xml = read_file(pick);
    std::string nin = codec_->parse(xml)->patient_id;
    for (auto p = xml.find(nin); p != std::string::npos; p = xml.find(nin, p))
        xml.replace(p, nin.size(), "14839134623");
    drop_file(root_ / "nhn-in", "incoming.xml", xml);
    drop_file(root_ / "nhn-in", "garbage.xml", "<MsgHead><oops");
    ASSERT_TRUE(wait_for(
        [&] {
            return fs::exists(root_ / "nhn-in/done/incoming.xml") ||
                   fs::exists(root_ / "nhn-in/error/incoming.xml");
        },
        std::chrono::seconds(10)))
        << d.log();
    EXPECT_TRUE(fs::exists(root_ / "nhn-in/done/incoming.xml"))
        << read_file(root_ / "nhn-in/error/incoming.xml.reason") << "\n"
        << d.log();
    // The referral with its attachment reaches the EPJ journal.
    EXPECT_TRUE(wait_for(
        [&] {
            std::error_code ec;
            std::size_t n = 0;
            for (auto& e : fs::directory_iterator(root_ / "journal", ec))
                n += e.path().extension() == ".json";
            return n == 1;
        },
        std::chrono::seconds(10)))
        << d.log();
    EXPECT_TRUE(wait_for([&] { return fs::exists(root_ / "nhn-in/error/garbage.xml.reason"); },
                         std::chrono::seconds(10)));
    bool apprec = false;
    for (auto& e : fs::directory_iterator(root_ / "nhn-out"))
        apprec = apprec || e.path().filename().string().rfind("apprec-", 0) == 0;
    EXPECT_TRUE(apprec) << "every readable incoming business message is answered with an Apprec";
    EXPECT_TRUE(d.running());
    EXPECT_EQ(d.stop(), 0);
}

// Only the party the note went to may acknowledge or reject it, and only for a MsgId we sent:
// anything else changes no delivery and is kept in error/ with the reason.
TEST_F(nhn_test, apprecs_from_another_party_or_for_an_unknown_msg_id_change_nothing) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(d) == "delivered"; }, std::chrono::seconds(15)))
        << d.log();
    auto sent = codec_->parse(read_file(sent_message()));
    ASSERT_TRUE(sent);
    auto avvist = [&](nhn::message_header h) {
        auto req =
            nhn::apprec_for(h, nhn::apprec_status::rejected,
                            {nhn::make_apprec_error(nhn::apprec_codes::mottaker_finnes_ikke)});
        return codec_->make_apprec(req).value();
    };
    nhn::message_header stranger = sent->header;
    stranger.receiver.her_id = "9900999";  // an office the note never went to
    stranger.receiver.unit_her_id.clear();
    stranger.receiver.person_her_id.clear();
    drop_file(root_ / "nhn-in", "a-stranger.xml", avvist(stranger));
    nhn::message_header unknown = sent->header;
    unknown.msg_id = "00000000-0000-4000-8000-000000000001";
    drop_file(root_ / "nhn-in", "b-unknown.xml", avvist(unknown));
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "nhn-in/error/b-unknown.xml.reason"); },
                         std::chrono::seconds(10)))
        << d.log();
    std::string r1 = read_file(root_ / "nhn-in/error/a-stranger.xml.reason");
    EXPECT_NE(r1.find("Apprec from HER-id 9900999"), std::string::npos) << r1;
    EXPECT_NE(r1.find("which went to office 9900100 / GP 9900101: not applied"), std::string::npos)
        << r1;
    std::string r2 = read_file(root_ / "nhn-in/error/b-unknown.xml.reason");
    EXPECT_NE(r2.find("00000000-0000-4000-8000-000000000001, which we never sent"),
              std::string::npos)
        << r2;
    EXPECT_EQ(delivery_state(d), "delivered");
    // The GP itself (the person, not the office) may answer.
    nhn::message_header gp = sent->header;
    gp.receiver.her_id = "9900555";
    gp.receiver.person_her_id = "9900101";
    auto ok = codec_->make_apprec(nhn::apprec_for(gp, nhn::apprec_status::ok)).value();
    drop_file(root_ / "nhn-in", "c-gp.xml", ok);
    EXPECT_TRUE(
        wait_for([&] { return delivery_state(d) == "acknowledged"; }, std::chrono::seconds(10)))
        << d.log();
    EXPECT_EQ(d.stop(), 0);
}

// A GP's answer is linked through RefToParent to the note it answers: that note's treatment and
// event. An answer to a MsgId we never sent is kept in unlinked/ and flagged, with no treatment.
TEST_F(nhn_test, answers_are_linked_to_the_note_they_answer_and_unlinked_ones_are_kept) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(d) == "delivered"; }, std::chrono::seconds(15)))
        << d.log();
    auto sent = codec_->parse(read_file(sent_message()));
    ASSERT_TRUE(sent);
    auto list = d.get("/api/v1/deliveries?destination=nhn");
    rapidjson::Document dl;
    dl.Parse(list.body.c_str());
    ASSERT_TRUE(dl.IsArray() && !dl.Empty()) << list.body;
    std::string event_id = dl[0]["event_id"].GetString();

    drop_file(root_ / "nhn-in", "answer.xml",
              answer_to(sent->header.msg_id, "11111111-1111-4111-8111-111111111111"));
    drop_file(
        root_ / "nhn-in", "stray.xml",
        answer_to("22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"));
    ASSERT_TRUE(wait_for([&] { return journal().size() == 1; }, std::chrono::seconds(10)))
        << d.log();
    rapidjson::Document ev;
    ev.Parse(journal()[0].c_str());
    ASSERT_TRUE(ev.IsObject());
    EXPECT_STREQ(ev["type"].GetString(), "rph.info.replied");
    EXPECT_STREQ(ev["data"]["treatment_id"].GetString(), "T-1001");
    EXPECT_EQ(std::string(ev["data"]["answers_event_id"].GetString()), event_id);
    EXPECT_EQ(std::string(ev["data"]["in_reply_to"].GetString()), sent->header.msg_id);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "nhn-in/unlinked/stray.xml.reason"); },
                         std::chrono::seconds(10)))
        << d.log();
    std::string why = read_file(root_ / "nhn-in/unlinked/stray.xml.reason");
    EXPECT_NE(why.find("unlinked answer: RefToParent 22222222-2222-4222-8222-222222222222"),
              std::string::npos)
        << why;
    EXPECT_EQ(journal().size(), 1u) << "an unlinked answer is never submitted with a treatment";
    auto a = our_apprec("33333333-3333-4333-8333-333333333333");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, nhn::apprec_status::ok) << "it arrived and is kept for a person";
    EXPECT_EQ(d.stop(), 0);
}

// Every refusal is visible: kept in error/ with the reason and answered with the right 8221 code
// (E31 for a bad fødselsnummer, T10 for a MsgHead in the wrong namespace), addressed to the
// office and the GP as the MsgHead named them; reasons never quote the payload.
TEST_F(nhn_test, refusals_are_answered_with_e31_and_t10_and_kept_with_the_reason) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "nhn-in", "bad-fnr.xml",
              answer_to("x", "44444444-4444-4444-8444-444444444444", "14839134624"));
    std::string ns = "http://www.kith.no/xmlstds/msghead/2006-05-24";
    std::string wrong = answer_to("x", "55555555-5555-4555-8555-555555555555");
    for (auto p = wrong.find(ns); p != std::string::npos; p = wrong.find(ns, p))
        wrong.replace(p, ns.size(), "http://www.kith.no/xmlstds/msghead/2004-11-21");
    drop_file(root_ / "nhn-in", "wrong-ns.xml", wrong);
    ASSERT_TRUE(wait_for(
        [&] {
            return our_apprec("44444444-4444-4444-8444-444444444444") &&
                   our_apprec("55555555-5555-4555-8555-555555555555") &&
                   fs::exists(root_ / "nhn-in/error/bad-fnr.xml.reason") &&
                   fs::exists(root_ / "nhn-in/error/wrong-ns.xml.reason");
        },
        std::chrono::seconds(10)))
        << d.log();
    auto e31 = *our_apprec("44444444-4444-4444-8444-444444444444");
    EXPECT_EQ(e31.status, nhn::apprec_status::rejected);
    ASSERT_EQ(e31.errors.size(), 1u);
    EXPECT_EQ(e31.errors[0].code, "E31");
    EXPECT_EQ(e31.errors[0].detail.find("14839134624"), std::string::npos) << "never the number";
    EXPECT_EQ(e31.receiver.her_id, "8142952");         // the office that sent it
    EXPECT_EQ(e31.receiver.person_her_id, "8143025");  // and the GP, as the MsgHead named them
    auto t10 = *our_apprec("55555555-5555-4555-8555-555555555555");
    ASSERT_EQ(t10.errors.size(), 1u);
    EXPECT_EQ(t10.errors[0].code, "T10");
    EXPECT_EQ(read_file(root_ / "nhn-in/error/bad-fnr.xml.reason").find("14839134624"),
              std::string::npos);
    EXPECT_EQ(d.stop(), 0);
}

// The fake Adresseregisteret (tests/support/fake-ar/server.py) as a child process.
class fake_ar {
public:
    explicit fake_ar(const std::vector<std::string>& args) {
        int out[2];
        if (pipe(out) != 0) return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            std::string script = source_dir() + "/tests/support/fake-ar/server.py";
            std::vector<char*> argv{const_cast<char*>("python3"), script.data()};
            for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            execvp("python3", argv.data());
            _exit(127);
        }
        close(out[1]);
        FILE* f = fdopen(out[0], "r");
        char line[128] = {0};
        if (f && fgets(line, sizeof line, f) && std::sscanf(line, "LISTENING %d", &port_) != 1)
            port_ = 0;
        if (f) fclose(f);
    }
    ~fake_ar() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int st;
            waitpid(pid_, &st, 0);
        }
    }
    int port() const { return port_; }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

// With the Adresseregisteret configured, a note to a receiver the register says cannot take
// messages is not sent: the delivery ends with the register's reason. When the register cannot
// be reached, the local file decides.
TEST_F(nhn_test, the_adresseregisteret_decides_whether_the_receiver_can_take_the_message) {
    std::string ar_dir = source_dir() + "/tests/data/nhn/registries/adresseregisteret-client/";
    fake_ar ar({"9900101=" + ar_dir + "get-communication-party-details-organzation-response.xml",
                "--default", ar_dir + "get-communication-party-details-not-found-response.xml"});
    ASSERT_GT(ar.port(), 0) << "the fake Adresseregisteret did not start (python3?)";
    auto configure = [&](const std::string& ar_json) {
        std::string cfg = read_file(root_ / "samband.json");
        auto at = cfg.find(R"("in_dir": "nhn-in",)");
        cfg.insert(at, R"("adresseregisteret": )" + ar_json + ", ");
        write_file(root_ / "samband.json", cfg);
    };
    std::string original = read_file(root_ / "samband.json");
    configure(R"({"url": "http://127.0.0.1:)" + std::to_string(ar.port()) +
              R"(/ar", "allow_plain_http_loopback": true, "timeout_ms": 2000})");
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_start_note_with_pdf();
        ASSERT_TRUE(wait_for([&] { return delivery_state(d) == "dead"; }, std::chrono::seconds(15)))
            << delivery_state(d) << d.log();
        auto list = d.get("/api/v1/deliveries?destination=nhn");
        EXPECT_NE(list.body.find("is not a valid communication party"), std::string::npos)
            << list.body;
        EXPECT_FALSE(fs::exists(root_ / "nhn-out") && !sent_message().empty())
            << "nothing is sent to a receiver that cannot take it";
        EXPECT_EQ(d.stop(), 0);
    }
    // The register unreachable (a closed port): the local file says the GP can receive.
    fs::remove_all(root_ / "var");
    fresh_pg_store(root_);
    write_file(root_ / "ar.json",
               R"({"parties": [{"her_id": "9900101", "name": "Lise Fastlege", "active": true,
                                "valid": true, "edi_address": true}]})");
    write_file(root_ / "samband.json", original);
    configure(R"({"url": "http://127.0.0.1:1/ar", "allow_plain_http_loopback": true,
                  "timeout_ms": 500, "file": "ar.json"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    EXPECT_TRUE(
        wait_for([&] { return delivery_state(d) == "delivered"; }, std::chrono::seconds(15)))
        << delivery_state(d) << d.log();
    EXPECT_EQ(d.stop(), 0);
}

// Issue 11 item 8: the daemon's own receiver check (config "adresseregisteret"), decided in the
// prepare step like the GP lookup, so a receiver that cannot take the message is `held`.
class ar_host_test : public nhn_test {
protected:
    std::string ar_dir = source_dir() + "/tests/data/nhn/registries/adresseregisteret-client/";

    // Puts the daemon's receiver check and a second destination ("copy", the
    // same events to a folder) into the config.
    void configure(const std::string& ar_json) {
        std::string cfg = read_file(root_ / "samband.json");
        auto at = cfg.find(R"("endpoints": {)");
        cfg.insert(at, R"("adresseregisteret": )" + ar_json + ",\n  ");
        auto ep = cfg.find(R"("journal": {"plugin": "file")");
        cfg.insert(ep, R"("copy": {"plugin": "file", "config": {"outbox": "copy"}},
    )");
        auto rt = cfg.find(R"({"name": "from-gp")");
        cfg.insert(
            rt,
            R"({"name": "copy", "match": {"type": "rph.treatment.*", "source": "epj"}, "to": ["copy"]},
    )");
        write_file(root_ / "samband.json", cfg);
    }

    // The nhn delivery as the admin API lists it (state and reason).
    std::pair<std::string, std::string> nhn_delivery(daemon_process& d) {
        auto r = d.get("/api/v1/deliveries?destination=nhn");
        rapidjson::Document doc;
        doc.Parse(r.body.c_str());
        if (doc.HasParseError() || !doc.IsArray() || doc.Empty()) return {"none", ""};
        const auto& row = doc[0];
        return {row["state"].GetString(), row.HasMember("reason") && row["reason"].IsString()
                                              ? row["reason"].GetString()
                                              : ""};
    }

    bool copied() {
        std::error_code ec;
        return fs::exists(root_ / "copy", ec) && !fs::is_empty(root_ / "copy", ec);
    }
    bool sent() { return fs::exists(root_ / "nhn-out") && !sent_message().empty(); }
};

// An inactive receiver (NHN's person sample with Active false) is held with the register's reason,
// shown by the admin API, `samband status` and `deliveries list`; nothing is sent; an operator's
// override sends it.
TEST_F(ar_host_test, an_inactive_receiver_is_held_with_the_reason_and_an_override_sends_it) {
    std::string inactive =
        read_file(ar_dir + "get-communication-party-details-person-response.xml");
    auto active = inactive.find("<Active>true</Active>");
    ASSERT_NE(active, std::string::npos);
    inactive.replace(active, std::string("<Active>true</Active>").size(), "<Active>false</Active>");
    write_file(root_ / "inactive.xml", inactive);
    fake_ar ar({"9900101=" + (root_ / "inactive.xml").string(), "--default",
                ar_dir + "get-communication-party-details-not-found-response.xml"});
    ASSERT_GT(ar.port(), 0) << "the fake Adresseregisteret did not start (python3?)";
    configure(R"({"url": "http://127.0.0.1:)" + std::to_string(ar.port()) +
              R"(/ar", "timeout_ms": 5000})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(wait_for([&] { return nhn_delivery(d).first == "held"; }, std::chrono::seconds(20)))
        << nhn_delivery(d).first << d.log();
    auto [state, reason] = nhn_delivery(d);
    EXPECT_EQ(reason,
              "the receiver cannot take the message: HER-id 115522 (Anne-Marie Bach) is not active "
              "in the Adresseregisteret")
        << reason;
    EXPECT_FALSE(sent()) << "nothing is sent to a receiver that cannot take it";
    EXPECT_TRUE(wait_for([&] { return copied(); }, std::chrono::seconds(10)))
        << "the other destination delivers";
    auto [rc, status] = d.cli("status --json");
    ASSERT_EQ(rc, 0) << status;
    rapidjson::Document st;
    st.Parse(status.c_str());
    ASSERT_TRUE(st.IsObject() && st.HasMember("destinations")) << status;
    std::int64_t held = -1;
    for (const auto& dst : st["destinations"].GetArray())
        if (std::string(dst["destination"].GetString()) == "nhn") held = dst["held"].GetInt64();
    EXPECT_EQ(held, 1) << status;
    auto [lrc, list] = d.cli("deliveries list --state held");
    EXPECT_EQ(lrc, 0) << list;
    EXPECT_NE(list.find("not active in the Adresseregisteret"), std::string::npos) << list;

    // The operator's override: the check is skipped for this delivery and the note leaves.
    auto r = d.get("/api/v1/deliveries?destination=nhn");
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << r.body;
    std::string id = std::to_string(doc[0]["id"].GetInt64());
    auto ov = d.cli("deliveries override " + id + " --reason 'GP confirmed by phone'");
    EXPECT_EQ(ov.first, 0) << ov.second;
    EXPECT_TRUE(
        wait_for([&] { return nhn_delivery(d).first == "delivered"; }, std::chrono::seconds(15)))
        << nhn_delivery(d).first << d.log();
    EXPECT_TRUE(sent());
    EXPECT_EQ(d.stop(), 0);
}

// A receiver the register does not know (NHN's InvalidHerIdSupplied fault) is held; the answer is
// cached, so an operator's retry holds it again without asking the register twice.
TEST_F(ar_host_test, an_unknown_receiver_is_held_and_a_retry_uses_the_cached_answer) {
    fake_ar ar({"--default", ar_dir + "get-communication-party-details-not-found-response.xml"});
    ASSERT_GT(ar.port(), 0) << "the fake Adresseregisteret did not start (python3?)";
    std::string base = "127.0.0.1:" + std::to_string(ar.port());
    configure(R"({"url": "http://)" + base + R"(/ar", "timeout_ms": 5000, "cache_ttl_s": 600})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(wait_for([&] { return nhn_delivery(d).first == "held"; }, std::chrono::seconds(20)))
        << nhn_delivery(d).first << d.log();
    EXPECT_EQ(nhn_delivery(d).second,
              "the receiver cannot take the message: HER-id 9900101 does not exist in the "
              "Adresseregisteret");
    EXPECT_EQ(http(base, "GET", "/_test/calls").body, "1");
    auto r = d.get("/api/v1/deliveries?destination=nhn");
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << r.body;
    std::string id = std::to_string(doc[0]["id"].GetInt64());
    auto show = [&] { return d.cli("deliveries show " + id).second; };
    auto holds = [&] {
        std::string s = show();
        int n = 0;
        for (auto p = s.find("does not exist"); p != std::string::npos;
             p = s.find("does not exist", p + 1))
            ++n;
        return n;
    };
    int before = holds();
    ASSERT_GE(before, 1) << show();
    auto rt = d.cli("deliveries retry " + id);
    EXPECT_EQ(rt.first, 0) << rt.second;
    // Held again once the retry has been prepared: one more hold in the audit trail.
    EXPECT_TRUE(wait_for([&] { return nhn_delivery(d).first == "held" && holds() > before; },
                         std::chrono::seconds(15)))
        << show() << d.log();
    EXPECT_EQ(http(base, "GET", "/_test/calls").body, "1") << "the answer was not cached";
    EXPECT_FALSE(sent());
    EXPECT_EQ(d.stop(), 0);
}

// The register cannot be reached: the local file decides (the GP can receive → sent); a receiver
// in neither is retried with "receiver not checked", never sent unchecked.
TEST_F(ar_host_test, an_unreachable_register_falls_back_to_the_local_file) {
    write_file(root_ / "ar.json",
               R"({"parties": [{"her_id": "9900101", "name": "Lise Fastlege", "active": true,
                                "valid": true, "edi_address": true}]})");
    configure(R"({"url": "http://127.0.0.1:1/ar", "timeout_ms": 1000, "file": "ar.json"})");
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_start_note_with_pdf();
        EXPECT_TRUE(wait_for([&] { return nhn_delivery(d).first == "delivered"; },
                             std::chrono::seconds(15)))
            << nhn_delivery(d).first << d.log();
        EXPECT_TRUE(sent());
        EXPECT_EQ(d.stop(), 0);
    }
    fs::remove_all(root_ / "var");
    fresh_pg_store(root_);
    fs::remove_all(root_ / "nhn-out");
    write_file(root_ / "ar.json", R"({"parties": []})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(
        wait_for([&] { return nhn_delivery(d).first == "failed"; }, std::chrono::seconds(15)))
        << nhn_delivery(d).first << d.log();
    auto reason = nhn_delivery(d).second;
    EXPECT_EQ(reason.rfind("receiver not checked: Adresseregisteret: cannot connect", 0), 0u)
        << reason;
    EXPECT_NE(reason.find("not in the local file"), std::string::npos) << reason;
    EXPECT_FALSE(sent());
    EXPECT_EQ(d.stop(), 0);
}

// Message types: the register's answer carries none, the local file may. A receiver whose file
// entry does not list the type the note goes as (a start note: DIALOG_HELSEFAGLIG) is held with
// the reason; the nhn endpoint's receiver_message_types for the receiver's office overrides it.
TEST_F(ar_host_test, a_receiver_that_does_not_take_the_message_type_is_held_unless_overridden) {
    write_file(root_ / "ar.json",
               R"({"parties": [{"her_id": "9900101", "name": "Lise Fastlege", "active": true,
                                "valid": true, "edi_address": true,
                                "message_types": ["DIALOG_FORESPORSEL", "DIALOG_SVAR"]}]})");
    std::string original = read_file(root_ / "samband.json");
    configure(R"({"file": "ar.json"})");
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_start_note_with_pdf();
        ASSERT_TRUE(
            wait_for([&] { return nhn_delivery(d).first == "held"; }, std::chrono::seconds(20)))
            << nhn_delivery(d).first << d.log();
        EXPECT_EQ(nhn_delivery(d).second,
                  "the receiver cannot take the message: HER-id 9900101 (Lise Fastlege) does not "
                  "take DIALOG_HELSEFAGLIG (Dialogmelding 1.1); it takes DIALOG_FORESPORSEL, "
                  "DIALOG_SVAR (local file)");
        EXPECT_FALSE(sent());
        EXPECT_EQ(d.stop(), 0);
    }
    // The operator's word for the office (receiver_message_types) goes before the file's list.
    fs::remove_all(root_ / "var");
    fresh_pg_store(root_);
    write_file(root_ / "samband.json", original);
    configure(R"({"file": "ar.json"})");
    std::string cfg = read_file(root_ / "samband.json");
    auto at = cfg.find(R"("in_dir": "nhn-in",)");
    cfg.insert(at, R"("receiver_message_types": {"9900100": "DIALOG_FORESPORSEL"}, )");
    write_file(root_ / "samband.json", cfg);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(
        wait_for([&] { return nhn_delivery(d).first == "delivered"; }, std::chrono::seconds(20)))
        << nhn_delivery(d).first << d.log();
    ASSERT_TRUE(sent());
    auto m = codec_->parse(read_file(sent_message()));
    ASSERT_TRUE(m) << m.error().what();
    EXPECT_EQ(m->header.msg_type, "DIALOG_FORESPORSEL");
    EXPECT_EQ(d.stop(), 0);
}

// A register that never answers costs the nhn delivery the configured timeout (held open that
// long, -10 %) and a retry naming it; the other destination delivers meanwhile.
TEST_F(ar_host_test, a_register_that_hangs_times_out_while_other_destinations_deliver) {
    const int timeout_ms = 2000;
    fake_ar ar({"--hang", "9900101"});
    ASSERT_GT(ar.port(), 0) << "the fake Adresseregisteret did not start (python3?)";
    std::string base = "127.0.0.1:" + std::to_string(ar.port());
    configure(R"({"url": "http://)" + base + R"(/ar", "timeout_ms": )" +
              std::to_string(timeout_ms) + "}");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_start_note_with_pdf();
    ASSERT_TRUE(wait_for([&] { return http(base, "GET", "/_test/calls").body == "1"; },
                         std::chrono::seconds(10)))
        << d.log();
    auto asked = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_for([&] { return copied(); }, std::chrono::seconds(10))) << d.log();
    auto copy_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - asked)
                       .count();
    EXPECT_LT(copy_ms, timeout_ms) << "the other destination waited on the register";
    ASSERT_TRUE(
        wait_for([&] { return nhn_delivery(d).first == "failed"; }, std::chrono::seconds(15)))
        << nhn_delivery(d).first << d.log();
    EXPECT_EQ(nhn_delivery(d).second, "receiver not checked: Adresseregisteret: no answer within " +
                                          std::to_string(timeout_ms) + " ms (timeout)");
    std::string held;
    ASSERT_TRUE(wait_for(
        [&] {
            held = http(base, "GET", "/_test/held").body;
            return !held.empty();
        },
        std::chrono::seconds(10)));
    int first = std::stoi(held.substr(0, held.find(',')));
    EXPECT_GE(first, timeout_ms * 9 / 10) << "gave up early";
    EXPECT_LE(first, timeout_ms * 3 / 2) << "gave up late";
    EXPECT_FALSE(sent());
    EXPECT_EQ(d.stop(), 0);
}

// Issue 11: the per-store delivery number repeats in every fresh store; the MsgId must not.
TEST_F(nhn_test, msg_ids_never_repeat_across_two_fresh_stores) {
    std::vector<std::string> all;
    std::size_t per_run = 0;
    for (int run = 0; run < 2; ++run) {
        temp_dir tmp;
        fs::path root = tmp.path();
        fs::copy_file(root_ / "samband.json", root / "samband.json");
        fs::create_directories(root / "inbox");
        daemon_process d(root / "samband.json", root);
        ASSERT_TRUE(d.start()) << d.log();
        std::vector<fs::path> events;
        for (auto& e : fs::directory_iterator(fs::path(source_dir()) / "config/demo/events"))
            events.push_back(e.path());
        std::sort(events.begin(), events.end());
        for (const auto& e : events) {
            if (e.extension() != ".json") {
                fs::copy_file(e, root / "inbox" / e.filename());
                continue;
            }
            drop_file(root / "inbox", e.filename().string(), read_file(e));
        }
        // Settled: every event taken, and no nhn delivery pending, in flight or failed.
        auto settled = [&] {
            std::error_code ec;
            for (auto& e : fs::directory_iterator(root / "inbox", ec))
                if (e.path().extension() == ".json") return false;
            auto r = d.get("/api/v1/deliveries?destination=nhn");
            return !r.body.empty() && r.body.find("\"pending\"") == std::string::npos &&
                   r.body.find("\"in_flight\"") == std::string::npos &&
                   r.body.find("\"failed\"") == std::string::npos;
        };
        ASSERT_TRUE(wait_for(settled, std::chrono::seconds(30)))
            << d.get("/api/v1/deliveries?destination=nhn").body << "\n"
            << d.log();
        std::vector<std::string> ids;
        for (auto& e : fs::directory_iterator(root / "nhn-out")) {
            auto m = codec_->parse(read_file(e.path()));
            ASSERT_TRUE(m) << e.path() << ": " << m.error().what();
            ids.push_back(m->header.msg_id);
        }
        ASSERT_GE(ids.size(), 3u) << "the demo sends several notes to the GP";
        if (run == 0) per_run = ids.size();
        EXPECT_EQ(ids.size(), per_run) << "both runs send the same notes; deliveries of run " << run
                                       << ": " << d.get("/api/v1/deliveries?destination=nhn").body;
        all.insert(all.end(), ids.begin(), ids.end());
        EXPECT_EQ(d.stop(), 0);
    }
    std::set<std::string> unique(all.begin(), all.end());
    EXPECT_EQ(unique.size(), all.size()) << "a MsgId was used twice across two fresh stores";
}

// A file over the size limit is refused by its size alone (never read: this one is a sparse
// 512 MB file) and the files after it are handled as usual.
TEST_F(nhn_test, an_oversized_file_is_refused_unread_and_does_not_stall_other_input) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    fs::create_directories(root_ / "nhn-in");
    {
        fs::path tmp = root_ / "nhn-in/.a-huge.xml";
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::ftruncate(fd, 512LL * 1024 * 1024), 0);
        ::close(fd);
        fs::rename(tmp, root_ / "nhn-in/a-huge.xml");
    }
    drop_file(root_ / "nhn-in", "b-garbage.xml", "<MsgHead><oops");
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "nhn-in/error/b-garbage.xml.reason"); },
                         std::chrono::seconds(10)))
        << d.log();
    ASSERT_TRUE(fs::exists(root_ / "nhn-in/error/a-huge.xml.reason"));
    std::string reason = read_file(root_ / "nhn-in/error/a-huge.xml.reason");
    EXPECT_NE(reason.find("536870912 bytes is over the limit of 20971520 bytes; not read"),
              std::string::npos)
        << reason;
    EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace samband::test
