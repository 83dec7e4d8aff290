// The hl7v2 plugin in the real daemon: Debian's python3-hl7 (mllp_send, an asyncio MLLP server),
// @medplum/hl7 (peer/medplum.js: Hl7Client and Hl7Connection) and raw MLLP sockets against the
// listener (ACK after commit) and the sender (ACK deadline).
#include "harness.hpp"

#include <samband_test/tools.hpp>

#include "hl7v2/codec/ack.hpp"
#include "hl7v2/codec/message.hpp"
#include "hl7v2/codec/mllp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <random>
#include <set>

namespace samband::test {
namespace {

namespace h7 = samband::hl7v2;

const char* kFnr = "14839134623";  // synthetic (month + 80), shared/testdata/patients.json
const char* kBadFnr = "14839134624";
const char* kPython = "/usr/bin/python3";

std::string fields(const std::string& control_id, const std::string& type,
                   const std::string& extra = "") {
    return "MSH|^~\\&|GPSYS|LEGEKONTOR|SAMBAND|RPH|20261124101500||" + type + "|" + control_id +
           "|P|2.5" + extra + "\r";
}

std::string referral(const std::string& control_id, const std::string& fnr,
                     const std::string& pdf_base64) {
    return fields(control_id, "REF^I12^REF_I12") + "RF1|A^Active|||||R-" + control_id +
           "|20261124|||^Angst og depresjon\r"
           "PRD|RP|Lege^Lise|||||123456789^HPR~87654^HER\r"
           "PID|1||" +
           fnr +
           "^^^^FNR||Nordmann^Kari\r"
           "NTE|1||Patienten har angst og depresjon.\r"
           "OBX|1|ED|attachment^henvisning.pdf||^AP^PDF^Base64^" +
           pdf_base64 + "\r";
}

// A PDF-like blob that holds every byte value, so a transfer must be 8-bit clean.
std::string sample_pdf() {
    std::string b = "%PDF-1.4\n";
    for (int round = 0; round < 40; ++round)
        for (int i = 0; i < 256; ++i) b.push_back(static_cast<char>(i));
    b += "\n%%EOF\n";
    return b;
}

std::string base64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
    }
    if (i + 1 == in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8);
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
    }
    return out;
}

// A plain blocking MLLP connection with deadlines.
class mllp_conn {
public:
    explicit mllp_conn(int port) : reader_(64 << 20) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
    ~mllp_conn() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool ok() const { return ok_; }
    bool send_raw(std::string_view s) {
        while (!s.empty()) {
            ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
            if (n <= 0) return false;
            s.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    bool send(const std::string& msg) { return send_raw(h7::mllp::frame(msg)); }
    // The next frame, or nullopt on timeout or close.
    std::optional<std::string> read(std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
        auto until = std::chrono::steady_clock::now() + timeout;
        std::string out;
        for (;;) {
            if (reader_.next(out) == h7::mllp::reader::status::frame) return out;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
            char buf[65536];
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) return std::nullopt;
            reader_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
        }
    }
    // True when the peer closed the connection within the timeout.
    bool closed_within(std::chrono::milliseconds timeout) {
        auto until = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
            char buf[4096];
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) return true;
        }
    }

private:
    int fd_ = -1;
    bool ok_ = false;
    h7::mllp::reader reader_;
};

h7::ack_info ack_of(const std::optional<std::string>& frame) {
    if (!frame) return {h7::ack_code::AR, "", "(no ACK)"};
    auto m = h7::parse(*frame);
    if (!m) return {h7::ack_code::AR, "", "(unreadable ACK) " + m.error().describe()};
    auto a = h7::read_ack(*m);
    if (!a) return {h7::ack_code::AR, "", "(not an ACK)"};
    return *a;
}

class hl7v2_daemon_test : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = tmp_.path();
        SAMBAND_REQUIRE_TOOL("mllp_send");
    }

    void write_config(const std::string& extra_endpoints = "",
                      const std::string& extra_routes = "") {
        std::string cfg = R"({
  "node": {"name": "it"},
  "store": {"kind": "sqlite", "path": "var/samband.db", "retention_days": 30},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"level": "info"},
  "plugin_dirs": [")" + plugin_dir() +
                          R"("],
  "identifiers": {"allow_synthetic": true},
  "schemas_dir": ")" + source_dir() +
                          R"(/config/schemas",
  "endpoints": {
    "lab": {"plugin": "hl7v2", "config": {"listen": "127.0.0.1:0", "port_file": "lab.port",
            "allow_synthetic_ids": true, "max_frame_bytes": 1048576, "frame_timeout_ms": 700,
            "max_segments": 5000, "reject_dir": "rejected"}},
    "epj": {"plugin": "file", "config": {"outbox": "outbox"}})" +
                          extra_endpoints + R"(
  },
  "routes": [{"name": "in", "match": {"type": "rph.*", "source": "lab"}, "to": ["epj"]})" +
                          extra_routes + R"(]
})";
        write_file(root_ / "samband.json", cfg);
    }

    std::unique_ptr<daemon_process> start() {
        fs::remove(root_ / "lab.port");
        auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
        EXPECT_TRUE(d->start()) << "daemon did not become ready:\n" << d->log();
        EXPECT_TRUE(
            wait_for([&] { return fs::exists(root_ / "lab.port"); }, std::chrono::seconds(10)))
            << d->log();
        port_ = std::stoi(read_file(root_ / "lab.port"));
        return d;
    }

    // mllp_send from python3-hl7: returns its output (the ACK text).
    std::string mllp_send(const std::string& message) {
        static int n = 0;
        fs::path f = root_ / ("send-" + std::to_string(++n) + ".hl7");
        write_file(f, h7::mllp::frame(message));  // mllp_send reads framed messages
        auto [rc, out] = run_command("mllp_send --port " + std::to_string(port_) + " --file " +
                                     f.string() + " 127.0.0.1");
        EXPECT_EQ(rc, 0) << out.substr(0, 2000);
        return out;
    }

    // @medplum/hl7's Hl7Client.sendAndWait (peer/medplum.js): returns the ACK, one segment a line.
    std::string medplum_send(const std::string& message, const std::string& encoding = "utf8") {
        static int n = 0;
        fs::path f = root_ / ("medplum-" + std::to_string(++n) + ".hl7");
        write_file(f, message);
        auto [rc, out] = run_command("node " + std::string(HL7V2_PEER_DIR) +
                                     "/medplum.js send --port " + std::to_string(port_) +
                                     " --file " + f.string() + " --encoding " + encoding);
        EXPECT_EQ(rc, 0) << out.substr(0, 2000);
        return out;
    }

    std::vector<fs::path> outbox_events() const {
        std::vector<fs::path> out;
        std::error_code ec;
        for (auto& e : fs::directory_iterator(root_ / "outbox", ec))
            if (e.path().extension() == ".json" && e.path().filename().string()[0] != '.')
                out.push_back(e.path());
        std::sort(out.begin(), out.end());
        return out;
    }

    std::size_t deliveries_to(daemon_process& d, const std::string& dest) {
        auto r = d.get("/api/v1/deliveries?limit=10000&destination=" + dest);
        rapidjson::Document doc;
        doc.Parse(r.body.c_str());
        if (doc.HasParseError()) return 9999;
        const rapidjson::Value* arr = doc.IsArray() ? &doc : nullptr;
        if (!arr && doc.IsObject() && doc.HasMember("deliveries")) arr = &doc["deliveries"];
        return arr && arr->IsArray() ? arr->Size() : 9999;
    }

    temp_dir tmp_;
    fs::path root_;
    int port_ = 0;
};

TEST_F(hl7v2_daemon_test, referral_with_pdf_is_acked_after_commit_and_arrives_bit_exact) {
    write_config();
    auto d = start();
    std::string pdf = sample_pdf();
    std::string out = mllp_send(referral("REF0001", kFnr, base64(pdf)));
    EXPECT_NE(out.find("MSA|AA|REF0001"), std::string::npos) << out << d->log();
    // The ACK came after the commit: the event is in the store now.
    EXPECT_EQ(deliveries_to(*d, "epj"), 1u);
    ASSERT_TRUE(wait_for([&] { return outbox_events().size() == 1; }, std::chrono::seconds(20)))
        << d->log();
    fs::path ev = outbox_events()[0];
    std::string base = ev.stem().string();
    EXPECT_EQ(read_file(ev.parent_path() / (base + ".henvisning.pdf")), pdf);
    rapidjson::Document doc;
    doc.Parse(read_file(ev).c_str());
    ASSERT_FALSE(doc.HasParseError());
    EXPECT_STREQ(doc["type"].GetString(), "rph.referral.received");
    EXPECT_STREQ(doc["subject"]["fnr"].GetString(), kFnr);
    EXPECT_STREQ(doc["data"]["referral_id"].GetString(), "R-REF0001");
    EXPECT_STREQ(doc["data"]["reason"].GetString(), "Angst og depresjon");
    EXPECT_STREQ(doc["data"]["text"].GetString(), "Patienten har angst og depresjon.");
    EXPECT_STREQ(doc["data"]["from"]["hpr"].GetString(), "123456789");
    EXPECT_STREQ(doc["idempotency_key"].GetString(), "hl7v2:GPSYS:LEGEKONTOR:REF0001");
    EXPECT_EQ(d->stop(), 0);
}

TEST_F(hl7v2_daemon_test, medplum_client_referral_with_pdf_is_acked_after_commit_bit_exact) {
    SAMBAND_REQUIRE_TOOL("node");
    write_config();
    auto d = start();
    std::string pdf = sample_pdf();
    std::string out = medplum_send(referral("REFM001", kFnr, base64(pdf)));
    EXPECT_NE(out.find("MSA|AA|REFM001"), std::string::npos) << out << d->log();
    EXPECT_EQ(deliveries_to(*d, "epj"), 1u);  // the ACK came after the commit
    ASSERT_TRUE(wait_for([&] { return outbox_events().size() == 1; }, std::chrono::seconds(20)))
        << d->log();
    fs::path ev = outbox_events()[0];
    EXPECT_EQ(read_file(ev.parent_path() / (ev.stem().string() + ".henvisning.pdf")), pdf);
    // The same message again (a peer that missed the ACK resends): stored once, same answer.
    std::string again = medplum_send(referral("REFM001", kFnr, base64(pdf)));
    EXPECT_NE(again.find("MSA|AA|REFM001"), std::string::npos) << again;
    EXPECT_EQ(deliveries_to(*d, "epj"), 1u);
    EXPECT_EQ(d->stop(), 0);
}

TEST_F(hl7v2_daemon_test, medplum_client_latin1_message_arrives_as_utf8) {
    SAMBAND_REQUIRE_TOOL("node");
    write_config();
    auto d = start();
    // Written as UTF-8 here; the peer encodes it to ISO 8859-1 on the wire (--encoding latin1).
    std::string msg = fields("SCOREM1", "ORU^R01", "|||||NOR|8859/1") + "PID|1||" + kFnr +
                      "^^^^FNR||\xc3\x98ye\xc3\xa6r^Bj\xc3\xb8rn \xc3\x85se\r"
                      "PV1|1|O|||||||||||||||||T-78\r"
                      "OBX|1|NM|44261-6^PHQ-9 total score^LN||14||||||F|||20261124093000+0100\r";
    std::string out = medplum_send(msg, "latin1");
    EXPECT_NE(out.find("MSA|AA|SCOREM1"), std::string::npos) << out << d->log();
    ASSERT_TRUE(wait_for([&] { return outbox_events().size() == 1; }, std::chrono::seconds(20)))
        << d->log();
    rapidjson::Document doc;
    doc.Parse(read_file(outbox_events()[0]).c_str());
    ASSERT_FALSE(doc.HasParseError());
    EXPECT_STREQ(doc["subject"]["name"]["family"].GetString(), "\xc3\x98ye\xc3\xa6r");
    EXPECT_STREQ(doc["subject"]["name"]["given"].GetString(), "Bj\xc3\xb8rn \xc3\x85se");
    EXPECT_EQ(doc["data"]["score"].GetInt(), 14);
}

TEST_F(hl7v2_daemon_test, a_resent_message_is_stored_once_and_gets_the_same_ack) {
    write_config();
    auto d = start();
    std::string msg = referral("REF0002", kFnr, base64("%PDF-1.4 small"));
    std::string first = mllp_send(msg);
    std::string second = mllp_send(msg);
    EXPECT_NE(first.find("MSA|AA|REF0002"), std::string::npos) << first;
    EXPECT_NE(second.find("MSA|AA|REF0002"), std::string::npos) << second;
    EXPECT_EQ(deliveries_to(*d, "epj"), 1u) << "the resent message was stored twice";
}

TEST_F(hl7v2_daemon_test, killed_before_the_ack_the_resend_is_stored_once) {
    write_config();
    auto d = start();
    std::string msg = referral("REF0003", kFnr, base64("%PDF-1.4 x"));
    {
        mllp_conn c(port_);
        ASSERT_TRUE(c.ok());
        ASSERT_TRUE(c.send(msg));
        d->kill9();  // between receipt and ACK (or just after the commit): the sender has no ACK
    }
    d = start();
    mllp_conn c(port_);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send(msg));
    auto a = ack_of(c.read());
    EXPECT_EQ(a.code, h7::ack_code::AA) << a.text;
    EXPECT_EQ(a.control_id, "REF0003");
    EXPECT_EQ(deliveries_to(*d, "epj"), 1u);
}

TEST_F(hl7v2_daemon_test, a_bad_fodselsnummer_is_refused_with_the_field_named) {
    write_config();
    auto d = start();
    std::string out = mllp_send(referral("REF0004", kBadFnr, base64("x")));
    EXPECT_NE(out.find("MSA|AE|REF0004"), std::string::npos) << out;
    EXPECT_NE(out.find("ERR||PID^4^3^1^1|102^"), std::string::npos) << out;
    EXPECT_NE(out.find("check digit"), std::string::npos) << out;
    EXPECT_EQ(out.find(kBadFnr), std::string::npos) << "the ACK must not echo the number";
    EXPECT_EQ(deliveries_to(*d, "epj"), 0u);
    // Nothing is lost: the refused message is kept with its reason.
    std::vector<fs::path> kept;
    for (auto& e : fs::directory_iterator(root_ / "rejected"))
        if (e.path().extension() == ".hl7") kept.push_back(e.path());
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_NE(
        read_file(kept[0]).find("MSH|^~\\&|GPSYS|LEGEKONTOR|SAMBAND|RPH|20261124101500||REF^I12"),
        std::string::npos);
    fs::path reason = kept[0];
    reason.replace_extension(".reason");
    EXPECT_NE(read_file(reason).find("PID-3"), std::string::npos) << read_file(reason);
}

TEST_F(hl7v2_daemon_test, iso_8859_1_message_arrives_as_utf8) {
    write_config();
    auto d = start();
    std::string msg = fields("SCORE1", "ORU^R01", "|||||NOR|8859/1") + "PID|1||" + kFnr +
                      "^^^^FNR||\xd8ye\xe6r^Bj\xf8rn \xc5se\r"
                      "PV1|1|O|||||||||||||||||T-77\r"
                      "OBR|1|T-77||44261-6^PHQ-9^LN|||20261124\r"
                      "OBX|1|NM|44261-6^PHQ-9 total score^LN||14||||||F|||20261124093000+0100\r"
                      "OBX|2|NM|70274-6^GAD-7 total score^LN||9||||||F|||20261124093000+0100\r";
    mllp_conn c(port_);
    ASSERT_TRUE(c.send(msg));
    auto a = ack_of(c.read());
    EXPECT_EQ(a.code, h7::ack_code::AA) << a.text << d->log();
    ASSERT_TRUE(wait_for([&] { return outbox_events().size() == 2; }, std::chrono::seconds(20)))
        << d->log();
    std::set<std::string> seen;
    for (const auto& p : outbox_events()) {
        rapidjson::Document doc;
        doc.Parse(read_file(p).c_str());
        ASSERT_FALSE(doc.HasParseError());
        EXPECT_STREQ(doc["subject"]["name"]["family"].GetString(), "\xc3\x98ye\xc3\xa6r");
        EXPECT_STREQ(doc["subject"]["name"]["given"].GetString(), "Bj\xc3\xb8rn \xc3\x85se");
        EXPECT_STREQ(doc["data"]["treatment_id"].GetString(), "T-77");
        EXPECT_STREQ(doc["data"]["administered_at"].GetString(), "2026-11-24T09:30:00+01:00");
        seen.insert(std::string(doc["data"]["instrument"].GetString()) + "=" +
                    std::to_string(doc["data"]["score"].GetInt()));
    }
    EXPECT_EQ(seen, (std::set<std::string>{"GAD-7=9", "PHQ-9=14"}));
}

TEST_F(hl7v2_daemon_test, enhanced_mode_answers_ca_and_mdm_becomes_a_journal_entry) {
    write_config();
    auto d = start();
    std::string msg = fields("DOC1", "MDM^T02", "|||AL|NE") + "EVN|T02|20261124\r" + "PID|1||" +
                      kFnr +
                      "^^^^FNR||Nordmann^Kari\r"
                      "PV1|1|O|||||||||||||||||T-9\r"
                      "TXA|1|PN|TX|20261124110000\r"
                      "OBX|1|TX|||Samtale om s\\E\\vn og \\.br\\mestring\r";
    mllp_conn c(port_);
    ASSERT_TRUE(c.send(msg));
    auto a = ack_of(c.read());
    EXPECT_EQ(a.code, h7::ack_code::CA) << a.text;
    ASSERT_TRUE(wait_for([&] { return outbox_events().size() == 1; }, std::chrono::seconds(20)));
    rapidjson::Document doc;
    doc.Parse(read_file(outbox_events()[0]).c_str());
    EXPECT_STREQ(doc["type"].GetString(), "rph.session.attended");
    EXPECT_STREQ(doc["data"]["content"].GetString(), "Samtale om s\\vn og \nmestring");
    EXPECT_STREQ(doc["data"]["session_at"].GetString(), "2026-11-24T11:00:00");
}

TEST_F(hl7v2_daemon_test, hostile_input_is_refused_while_other_connections_keep_working) {
    write_config();
    auto d = start();
    mllp_conn good(port_);
    ASSERT_TRUE(good.ok());

    // A frame without MSH: AR with the reason; the connection stays usable.
    mllp_conn c1(port_);
    ASSERT_TRUE(c1.send("PID|1||x\r"));
    auto a1 = ack_of(c1.read());
    EXPECT_EQ(a1.code, h7::ack_code::AR);
    EXPECT_NE(a1.text.find("does not start with an MSH"), std::string::npos) << a1.text;

    // Wrong separators.
    ASSERT_TRUE(c1.send("MSH|^^\\&|A|B|C|D|1||ORU^R01|W1|P|2.5\r"));
    auto a2 = ack_of(c1.read());
    EXPECT_EQ(a2.code, h7::ack_code::AR);
    EXPECT_NE(a2.text.find("different delimiters"), std::string::npos) << a2.text;

    // An unsupported message type: AR naming MSH-9.
    ASSERT_TRUE(c1.send(fields("ADT1", "ADT^A04") + "PID|1||" + kFnr + "^^^^FNR\r"));
    auto a3 = ack_of(c1.read());
    EXPECT_EQ(a3.code, h7::ack_code::AR);
    EXPECT_NE(a3.text.find("MSH-9"), std::string::npos) << a3.text;

    // 10,000 segments: over the segment limit.
    std::string many = fields("MANY", "ORU^R01");
    for (int i = 0; i < 10000; ++i) many += "NTE|" + std::to_string(i) + "\r";
    ASSERT_TRUE(c1.send(many));
    auto a4 = ack_of(c1.read());
    EXPECT_EQ(a4.code, h7::ack_code::AR);
    EXPECT_NE(a4.text.find("limit is 5000"), std::string::npos) << a4.text;

    // Binary junk outside a frame: AR, then the connection is closed.
    mllp_conn c2(port_);
    std::string junk;
    std::mt19937 rng(7);
    for (int i = 0; i < 5000; ++i) junk.push_back(static_cast<char>(rng() % 11));  // no 0x0B
    ASSERT_TRUE(c2.send_raw(junk));
    auto a5 = ack_of(c2.read());
    EXPECT_EQ(a5.code, h7::ack_code::AR);
    EXPECT_NE(a5.text.find("outside an MLLP frame"), std::string::npos) << a5.text;
    EXPECT_TRUE(c2.closed_within(std::chrono::seconds(5)));

    // A frame over max_frame_bytes (1 MiB here; the default is 16 MiB): AR, closed.
    mllp_conn c3(port_);
    std::string huge(1, h7::mllp::start_block);
    huge += fields("HUGE", "ORU^R01") + std::string(2 << 20, 'x');
    c3.send_raw(huge);
    auto a6 = ack_of(c3.read());
    EXPECT_EQ(a6.code, h7::ack_code::AR);
    EXPECT_NE(a6.text.find("max_frame_bytes"), std::string::npos) << a6.text;

    // An unterminated frame from a slow sender: closed after frame_timeout_ms.
    mllp_conn c4(port_);
    ASSERT_TRUE(c4.send_raw(std::string(1, h7::mllp::start_block) + "MSH|^~\\&|A"));
    EXPECT_TRUE(c4.closed_within(std::chrono::seconds(10)));

    // The first connection saw none of that.
    ASSERT_TRUE(good.send(referral("GOOD1", kFnr, base64("%PDF"))));
    auto ok = ack_of(good.read());
    EXPECT_EQ(ok.code, h7::ack_code::AA) << ok.text;
    EXPECT_TRUE(d->running());
}

TEST_F(hl7v2_daemon_test, pipelined_messages_get_their_acks_in_order) {
    write_config();
    auto d = start();
    mllp_conn c(port_);
    std::string burst;
    const int n = 200;
    for (int i = 0; i < n; ++i) {
        std::string id = "P" + std::to_string(i);
        burst += h7::mllp::frame(fields(id, "ORU^R01") + "PID|1||" + kFnr +
                                 "^^^^FNR\rPV1|1|O|||||||||||||||||T-1\r"
                                 "OBX|1|NM|44261-6^PHQ-9^LN||" +
                                 std::to_string(i % 28) + "||||||F\r");
    }
    ASSERT_TRUE(c.send_raw(burst));
    for (int i = 0; i < n; ++i) {
        auto a = ack_of(c.read());
        ASSERT_EQ(a.code, h7::ack_code::AA) << i << ": " << a.text;
        ASSERT_EQ(a.control_id, "P" + std::to_string(i));
    }
    EXPECT_EQ(deliveries_to(*d, "epj"), static_cast<std::size_t>(n));
}

// The sink: Samband sends to python3-hl7's asyncio MLLP server.
class hl7v2_sink_test : public hl7v2_daemon_test {
protected:
    // @medplum/hl7 as the receiver (peer/medplum.js serve), same interface as hl7_server.py.
    void start_medplum_peer(const std::string& answers) {
        peer_pid_ = fork();
        if (peer_pid_ == 0) {
            std::string script = std::string(HL7V2_PEER_DIR) + "/medplum.js";
            std::string pf = (root_ / "peer.port").string(), log = (root_ / "peer.log").string();
            execlp("node", "node", script.c_str(), "serve", "--port-file", pf.c_str(), "--log",
                   log.c_str(), "--answers", answers.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        ASSERT_TRUE(
            wait_for([&] { return fs::exists(root_ / "peer.port"); }, std::chrono::seconds(15)));
        peer_port_ = std::stoi(read_file(root_ / "peer.port"));
    }
    void start_peer(const std::string& answers) {
        peer_pid_ = fork();
        if (peer_pid_ == 0) {
            std::string script = std::string(SAMBAND_HL7V2_TESTS_DIR) + "/peers/hl7_server.py";
            std::string pf = (root_ / "peer.port").string(), log = (root_ / "peer.log").string();
            execl(kPython, kPython, script.c_str(), "--port-file", pf.c_str(), "--log", log.c_str(),
                  "--answers", answers.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        ASSERT_TRUE(
            wait_for([&] { return fs::exists(root_ / "peer.port"); }, std::chrono::seconds(15)));
        peer_port_ = std::stoi(read_file(root_ / "peer.port"));
    }
    void TearDown() override {
        if (peer_pid_ > 0) {
            ::kill(peer_pid_, SIGKILL);
            int st;
            waitpid(peer_pid_, &st, 0);
        }
    }
    std::vector<std::string> peer_log() {
        std::vector<std::string> out;
        std::istringstream in(read_file(root_ / "peer.log"));
        std::string l;
        while (std::getline(in, l)) out.push_back(l);
        return out;
    }
    void write_sink_config(int ack_timeout_ms = 3000) {
        write_config(R"(,
    "gp": {"plugin": "hl7v2", "config": {"connect": "127.0.0.1:)" +
                         std::to_string(peer_port_) + R"(", "ack_timeout_ms": )" +
                         std::to_string(ack_timeout_ms) + R"(,
           "receiving_application": "EPJ"},
           "policy": {"max_attempts": 5, "backoff_base_ms": 100, "backoff_max_ms": 300,
                      "attempt_timeout_ms": 10000}})",
                     R"(,
    {"name": "scores", "match": {"type": "rph.assessment.scored", "source": "lab"},
     "to": ["gp"]})");
    }
    std::string score_message(const std::string& id) {
        return fields(id, "ORU^R01") + "PID|1||" + kFnr +
               "^^^^FNR||Nordmann^Kari\rPV1|1|O|||||||||||||||||T-5\r"
               "OBX|1|NM|44261-6^PHQ-9^LN||11||||||F|||20261124\r";
    }
    std::string delivery_state(daemon_process& d) {
        auto r = d.get("/api/v1/deliveries?limit=10&destination=gp");
        return r.body;
    }
    pid_t peer_pid_ = -1;
    int peer_port_ = 0;
};

TEST_F(hl7v2_sink_test, retries_keep_msh10_and_an_aa_delivers) {
    start_peer("AE,NONE,AA");
    write_sink_config(1000);
    auto d = start();
    mllp_conn c(port_);
    ASSERT_TRUE(c.send(score_message("S1")));
    EXPECT_EQ(ack_of(c.read()).code, h7::ack_code::AA);
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(*d).find("\"delivered\"") != std::string::npos; },
                 std::chrono::seconds(30)))
        << delivery_state(*d) << d->log();
    auto log = peer_log();
    ASSERT_EQ(log.size(), 3u) << "AE → retry, no ACK → retry, AA → delivered";
    std::string id = log[0].substr(0, log[0].find(' '));
    for (const auto& l : log) EXPECT_EQ(l.substr(0, l.find(' ')), id) << "MSH-10 changed";
    EXPECT_NE(log[0].find("ORU^R01"), std::string::npos);
    EXPECT_NE(delivery_state(*d).find(id), std::string::npos) << "external id = MSH-10";
}

TEST_F(hl7v2_sink_test, a_medplum_receiver_sees_the_same_msh10_on_every_retry) {
    SAMBAND_REQUIRE_TOOL("node");
    start_medplum_peer("AE,NONE,AA");
    write_sink_config(1000);
    auto d = start();
    mllp_conn c(port_);
    ASSERT_TRUE(c.send(score_message("SM1")));
    EXPECT_EQ(ack_of(c.read()).code, h7::ack_code::AA);
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(*d).find("\"delivered\"") != std::string::npos; },
                 std::chrono::seconds(30)))
        << delivery_state(*d) << d->log();
    auto log = peer_log();
    ASSERT_EQ(log.size(), 3u) << "AE → retry, no ACK → retry, AA → delivered";
    std::string id = log[0].substr(0, log[0].find(' '));
    for (const auto& l : log) EXPECT_EQ(l.substr(0, l.find(' ')), id) << "MSH-10 changed";
    EXPECT_NE(log[0].find("ORU^R01"), std::string::npos) << log[0];
    EXPECT_NE(delivery_state(*d).find(id), std::string::npos) << "external id = MSH-10";
}

TEST_F(hl7v2_sink_test, an_ar_makes_the_delivery_dead_with_the_peers_answer) {
    start_peer("AR");
    write_sink_config();
    auto d = start();
    mllp_conn c(port_);
    ASSERT_TRUE(c.send(score_message("S2")));
    EXPECT_EQ(ack_of(c.read()).code, h7::ack_code::AA);
    ASSERT_TRUE(wait_for([&] { return delivery_state(*d).find("\"dead\"") != std::string::npos; },
                         std::chrono::seconds(30)))
        << delivery_state(*d) << d->log();
    EXPECT_EQ(peer_log().size(), 1u) << "a rejection is not retried";
    EXPECT_NE(delivery_state(*d).find("rejected"), std::string::npos) << delivery_state(*d);
}

// Throwaway TLS material for one test: a CA, a server certificate for 127.0.0.1/localhost and a
// client certificate, made with the openssl command.
struct tls_files {
    fs::path ca, server_cert, server_key, client_cert, client_key, other_cert, other_key;
    explicit tls_files(const fs::path& dir) {
        ca = dir / "ca.pem";
        server_cert = dir / "server.pem", server_key = dir / "server.key";
        client_cert = dir / "client.pem", client_key = dir / "client.key";
        other_cert = dir / "other.pem", other_key = dir / "other.key";
        write_file(dir / "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        std::string d = dir.string();
        std::string cmd =
            "cd " + d +
            " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
            "ca.key -out ca.pem -days 1 -subj /CN=test-ca"
            " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key"
            " -out server.csr -subj /CN=localhost"
            " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
            "server.pem -days 1 -extfile san.ext"
            " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key"
            " -out client.csr -subj /CN=client"
            " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
            "client.pem -days 1"
            // a self-signed certificate from no CA the server trusts
            " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
            "other.key -out other.pem -days 1 -subj /CN=stranger";
        auto [rc, out] = run_command("(" + cmd + ")");
        EXPECT_EQ(rc, 0) << out;
    }
};

// Sends one message over TLS; returns the ACK frame, or nullopt when the handshake or the read
// failed (a refused client certificate).
std::optional<std::string> tls_send(int port, const std::string& msg, const tls_files& f,
                                    bool with_cert, bool trusted_cert = true) {
    namespace asio = boost::asio;
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(f.ca.string());
    ctx.set_verify_mode(asio::ssl::verify_peer);
    if (with_cert) {
        ctx.use_certificate_chain_file((trusted_cert ? f.client_cert : f.other_cert).string());
        ctx.use_private_key_file((trusted_cert ? f.client_key : f.other_key).string(),
                                 asio::ssl::context::pem);
    }
    asio::ssl::stream<asio::ip::tcp::socket> s(io, ctx);
    boost::system::error_code ec;
    s.next_layer().connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)},
                           ec);
    if (ec) return std::nullopt;
    s.handshake(asio::ssl::stream_base::client, ec);
    if (ec) return std::nullopt;
    asio::write(s, asio::buffer(h7::mllp::frame(msg)), ec);
    if (ec) return std::nullopt;
    h7::mllp::reader r(1 << 20);
    std::string out;
    char buf[4096];
    for (;;) {
        std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return std::nullopt;
        r.feed(std::string_view(buf, n));
        if (r.next(out) == h7::mllp::reader::status::frame) return out;
    }
}

TEST_F(hl7v2_daemon_test, tls_listener_takes_only_clients_with_a_trusted_certificate) {
    tls_files f(root_);
    write_config(R"(,
    "tlsin": {"plugin": "hl7v2", "config": {"listen": "127.0.0.1:0", "port_file": "tls.port",
              "allow_synthetic_ids": true,
              "tls": {"cert_file": ")" +
                     f.server_cert.string() + R"(", "key_file": ")" + f.server_key.string() +
                     R"(", "ca_file": ")" + f.ca.string() + R"("}}})",
                 R"(,
    {"name": "tls", "match": {"type": "rph.*", "source": "tlsin"}, "to": ["epj"]})");
    auto d = start();
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "tls.port"); }, std::chrono::seconds(10)));
    int port = std::stoi(read_file(root_ / "tls.port"));
    std::string msg = referral("TLS1", kFnr, base64("%PDF-1.4 tls"));
    EXPECT_FALSE(tls_send(port, msg, f, false)) << "no client certificate: refused";
    EXPECT_FALSE(tls_send(port, msg, f, true, false)) << "an untrusted certificate: refused";
    EXPECT_EQ(deliveries_to(*d, "epj"), 0u);
    auto a = ack_of(tls_send(port, msg, f, true));
    EXPECT_EQ(a.code, h7::ack_code::AA) << a.text << d->log();
    EXPECT_EQ(deliveries_to(*d, "epj"), 1u);
    // A plain-text sender cannot talk to the TLS listener either.
    mllp_conn plain(port);
    ASSERT_TRUE(plain.send(msg));
    EXPECT_FALSE(plain.read(std::chrono::seconds(3)));
}

TEST_F(hl7v2_sink_test, sends_over_tls_with_a_client_certificate) {
    tls_files f(root_);
    peer_pid_ = fork();
    if (peer_pid_ == 0) {
        std::string script = std::string(SAMBAND_HL7V2_TESTS_DIR) + "/peers/hl7_server.py";
        std::string pf = (root_ / "peer.port").string(), log = (root_ / "peer.log").string();
        execl(kPython, kPython, script.c_str(), "--port-file", pf.c_str(), "--log", log.c_str(),
              "--answers", "AA", "--tls-cert", f.server_cert.c_str(), "--tls-key",
              f.server_key.c_str(), "--tls-ca", f.ca.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    ASSERT_TRUE(
        wait_for([&] { return fs::exists(root_ / "peer.port"); }, std::chrono::seconds(15)));
    peer_port_ = std::stoi(read_file(root_ / "peer.port"));
    write_config(R"(,
    "gp": {"plugin": "hl7v2", "config": {"connect": "127.0.0.1:)" +
                     std::to_string(peer_port_) + R"(", "ack_timeout_ms": 3000,
           "tls": {"ca_file": ")" +
                     f.ca.string() + R"(", "cert_file": ")" + f.client_cert.string() +
                     R"(", "key_file": ")" + f.client_key.string() +
                     R"(", "server_name": "localhost"}},
           "policy": {"max_attempts": 5, "backoff_base_ms": 100, "backoff_max_ms": 300,
                      "attempt_timeout_ms": 10000}})",
                 R"(,
    {"name": "scores", "match": {"type": "rph.assessment.scored", "source": "lab"},
     "to": ["gp"]})");
    auto d = start();
    mllp_conn c(port_);
    ASSERT_TRUE(c.send(score_message("T1")));
    EXPECT_EQ(ack_of(c.read()).code, h7::ack_code::AA);
    ASSERT_TRUE(
        wait_for([&] { return delivery_state(*d).find("\"delivered\"") != std::string::npos; },
                 std::chrono::seconds(30)))
        << delivery_state(*d) << d->log();
    EXPECT_EQ(peer_log().size(), 1u);
}

}  // namespace
}  // namespace samband::test
