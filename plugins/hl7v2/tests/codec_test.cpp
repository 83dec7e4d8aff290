// HL7 v2 codec: parsing, serialising, escapes, character sets, batches, limits, ACKs and MLLP.
#include "hl7v2/codec/ack.hpp"
#include "hl7v2/codec/mapping.hpp"
#include "hl7v2/codec/message.hpp"
#include "hl7v2/codec/mllp.hpp"

#include <gtest/gtest.h>

namespace samband::hl7v2 {
namespace {

const std::string kAdt =
    "MSH|^~\\&|EPJ|KOMMUNE|SAMBAND|RPH|20261124101500||ADT^A04^ADT_A01|MSG00001|P|2.5.1\r"
    "PID|1||14839134623^^^NOFNR^FNR~12345^^^EPJ^PI||Nordmann^Kari^Ann||19911214|F\r"
    "ZXY|1|custom^value&sub\r";

TEST(hl7v2_parse, fields_components_repetitions_subcomponents) {
    auto m = parse(kAdt);
    ASSERT_TRUE(m) << m.error().describe();
    ASSERT_EQ(m->segments.size(), 3u);
    EXPECT_EQ(m->message_type(), "ADT");
    EXPECT_EQ(m->trigger_event(), "A04");
    EXPECT_EQ(m->control_id(), "MSG00001");
    EXPECT_EQ(m->version(), "2.5.1");
    const segment* pid = m->find("PID");
    ASSERT_NE(pid, nullptr);
    EXPECT_EQ(pid->get(3, 1), "14839134623");
    EXPECT_EQ(pid->get(3, 5), "FNR");
    EXPECT_EQ(pid->get(3, 1, 1, 2), "12345");
    EXPECT_EQ(pid->get(3, 5, 1, 2), "PI");
    EXPECT_EQ(pid->get(5, 2), "Kari");
    EXPECT_EQ(pid->get(8), "F");
    EXPECT_EQ(pid->get(42), "");
    const segment* z = m->find("ZXY");
    ASSERT_NE(z, nullptr) << "Z-segments are kept";
    EXPECT_EQ(z->get(2, 2, 1), "value");
    EXPECT_EQ(z->get(2, 2, 2), "sub");
    EXPECT_EQ(m->find("MSH")->get(1), "|");
    EXPECT_EQ(m->find("MSH")->get(2), "^~\\&");
}

// Issue 15 item 3: a refusal (the error store's reason, the log line, the ACK's ERR text) names
// the segment, the field and the rule, never what the field holds.
TEST(hl7v2_inbound, refusals_name_the_field_never_its_content) {
    const std::string mark = "ZQXMARK";
    auto msh = [](const std::string& type, const std::string& time, const std::string& version) {
        return "MSH|^~\\&|EPJ|K|SAMBAND|RPH|" + time + "||" + type + "|C1|P|" + version + "\r";
    };
    const std::string pid =
        "PID|1||14839134623^^^^FNR||Nordmann^Kari\r"
        "PV1|1|O|||||||||||||||||T-1\r";
    const std::string obx = "OBX|1|NM|44261-6^PHQ-9^LN||";
    inbound_options opt;
    opt.allow_synthetic_ids = true;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"MSH-7", msh("ORU^R01", "2026" + mark, "2.5") + pid + obx + "12\r"},
        {"MSH-9", msh("ADT^" + mark, "20261124", "2.5") + pid},
        {"MSH-12", msh("ORU^R01", "20261124", "2." + mark) + pid},
        {"OBX-5", msh("ORU^R01", "20261124", "2.5") + pid + obx + mark + "\r"},
        {"OBX-5", msh("ORU^R01", "20261124", "2.5") + pid + obx + "9917\r"},
        {"OBX-5", msh("ORU^R01", "20261124", "2.5") + pid + "OBX|1|ED|DOC^Brev||^application^pdf^" +
                      mark + "^QUJD\r"},
        {"PID-3", msh("ORU^R01", "20261124", "2.5") + "PID|1||14139134623^^^^FNR\r" +
                      "PV1|1|O|||||||||||||||||T-1\r" + obx + "12\r"},
    };
    for (const auto& [field, text] : cases) {
        auto m = parse(text);
        ASSERT_TRUE(m) << m.error().describe();
        auto r = map_inbound(*m, opt);
        ASSERT_FALSE(r) << text;
        std::string why = r.error().describe();
        EXPECT_NE(why.find(field), std::string::npos) << why;
        for (const char* secret : {"ZQXMARK", "9917", "1413"})
            EXPECT_EQ(why.find(secret), std::string::npos) << why;
    }
    auto cs = parse("MSH|^~\\&|EPJ|K|SAMBAND|RPH|20261124||ORU^R01|C1|P|2.5||||||" + mark + "\r");
    ASSERT_FALSE(cs);
    EXPECT_NE(cs.error().describe().find("MSH-18"), std::string::npos) << cs.error().describe();
    EXPECT_EQ(cs.error().describe().find(mark), std::string::npos) << cs.error().describe();
    auto ack = parse("MSH|^~\\&|A|B|C|D|20261124||ACK|X1|P|2.5\rMSA|" + mark + "|C1\r");
    ASSERT_TRUE(ack) << ack.error().describe();
    auto info = read_ack(*ack);
    ASSERT_FALSE(info);
    EXPECT_EQ(info.error().describe().find(mark), std::string::npos) << info.error().describe();
}

TEST(hl7v2_parse, serialise_round_trips_byte_exact) {
    auto m = parse(kAdt);
    ASSERT_TRUE(m);
    EXPECT_EQ(serialize(*m), kAdt);
}

TEST(hl7v2_parse, separators_come_from_msh) {
    std::string text =
        "MSH#*@!$#EPJ#K#S#R#20261124##ADT*A04#X1#P#2.4\r"
        "PID#1##1@2*a$b\r";
    auto m = parse(text);
    ASSERT_TRUE(m) << m.error().describe();
    EXPECT_EQ(m->seps.field, '#');
    EXPECT_EQ(m->seps.component, '*');
    EXPECT_EQ(m->seps.repetition, '@');
    EXPECT_EQ(m->seps.escape, '!');
    EXPECT_EQ(m->seps.subcomponent, '$');
    EXPECT_EQ(m->trigger_event(), "A04");
    EXPECT_EQ(m->find("PID")->get(3, 1, 1, 1), "1");
    EXPECT_EQ(m->find("PID")->get(3, 2, 2, 2), "b");
    EXPECT_EQ(serialize(*m), text);
}

TEST(hl7v2_parse, escape_sequences_decode_and_encode) {
    std::string text =
        "MSH|^~\\&|A|B|C|D|20261124||ORU^R01|1|P|2.5\r"
        "OBX|1|TX|||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\g\\.br\\h\\H\\i\\N\\\r";
    auto m = parse(text);
    ASSERT_TRUE(m) << m.error().describe();
    EXPECT_EQ(m->find("OBX")->get(5), "a|b^c&d~e\\fAg\nhi");
    // Encoding: delimiters escaped, newline as \.br\, and the decoded text survives a round trip.
    segment& obx = m->segments[1];
    obx.set(5, "x|y^z&w~v\\u\nt");
    std::string out = serialize(*m);
    EXPECT_NE(out.find("x\\F\\y\\S\\z\\T\\w\\R\\v\\E\\u\\.br\\t"), std::string::npos) << out;
    auto again = parse(out);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->find("OBX")->get(5), "x|y^z&w~v\\u\nt");
}

TEST(hl7v2_parse, a_lone_escape_character_is_kept) {
    auto m = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBX|1|ST|||C:\\path");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->find("OBX")->get(5), "C:\\path");
}

TEST(hl7v2_parse, bad_hex_escape_names_the_field) {
    auto m = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBX|1|ST|||\\X4\\");
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().segment, "OBX");
    EXPECT_EQ(m.error().field, 5u);
    EXPECT_EQ(m.error().segment_seq, 2u);
    EXPECT_NE(m.error().describe().find("OBX-5"), std::string::npos) << m.error().describe();
}

TEST(hl7v2_parse, segment_ends_cr_crlf_lf_alike) {
    std::string cr = kAdt, crlf, lf;
    for (char c : kAdt) {
        if (c == '\r') {
            crlf += "\r\n";
            lf += "\n";
        } else {
            crlf += c;
            lf += c;
        }
    }
    for (const std::string* t : {&cr, &crlf, &lf}) {
        auto m = parse(*t);
        ASSERT_TRUE(m) << m.error().describe();
        EXPECT_EQ(m->segments.size(), 3u);
        EXPECT_EQ(serialize(*m), kAdt);
    }
}

TEST(hl7v2_parse, iso_8859_1_becomes_utf8_and_back) {
    std::string latin =
        "MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5|||||NOR|8859/1\r"
        "PID|1||x||\xd8ye\xe6r^Bj\xf8rn^\xc5se\r";
    auto m = parse(latin);
    ASSERT_TRUE(m) << m.error().describe();
    EXPECT_EQ(m->chars, charset::latin1);
    EXPECT_EQ(m->find("PID")->get(5, 1), "\xc3\x98ye\xc3\xa6r");  // Øyeær in UTF-8
    EXPECT_EQ(m->find("PID")->get(5, 2), "Bj\xc3\xb8rn");
    EXPECT_EQ(m->find("PID")->get(5, 3), "\xc3\x85se");
    EXPECT_EQ(serialize(*m), latin) << "serialised back in the charset MSH-18 names";
}

TEST(hl7v2_parse, hex_escape_in_latin1_is_converted) {
    auto m = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5|||||NOR|8859/1\rNTE|1||\\XE6F8E5\\");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->find("NTE")->get(3), "\xc3\xa6\xc3\xb8\xc3\xa5");
}

TEST(hl7v2_parse, utf8_declared_but_invalid_is_an_error) {
    auto m = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5|||||NOR|UNICODE UTF-8\rPID|1||x||\xd8ye");
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().segment, "PID");
    EXPECT_EQ(m.error().field, 5u);
    EXPECT_NE(m.error().text.find("UTF-8"), std::string::npos);
}

TEST(hl7v2_parse, default_charset_applies_when_msh18_is_empty) {
    std::string text = "MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rPID|1||x||\xe6";
    EXPECT_FALSE(parse(text));
    parse_options opt;
    opt.default_charset = charset::latin1;
    auto m = parse(text, opt);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->find("PID")->get(5), "\xc3\xa6");
}

TEST(hl7v2_parse, unsupported_charset_names_msh18) {
    auto m = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5|||||NOR|ISO IR87\rPID|1");
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().segment, "MSH");
    EXPECT_EQ(m.error().field, 18u);
    EXPECT_EQ(m.error().code, hl7_error::table_value);
}

TEST(hl7v2_parse, refuses_what_is_not_hl7) {
    for (std::string bad :
         {std::string(""), std::string("PID|1||x"), std::string("MSH"), std::string("MSH|^|A"),
          std::string("MSHa^~\\&|A"), std::string("MSH|^^\\&|A"),
          std::string("\x01\x02\x03 binary"), std::string("MSH|^~\\&|A\rP!D|1")}) {
        auto m = parse(bad);
        EXPECT_FALSE(m) << "accepted: " << bad;
        if (!m) {
            EXPECT_FALSE(m.error().text.empty());
        }
    }
}

TEST(hl7v2_parse, limits_are_enforced_with_a_reason) {
    std::string many = "MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\r";
    for (int i = 0; i < 10000; ++i) many += "NTE|" + std::to_string(i) + "||x\r";
    auto m = parse(many);
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().text.find("segments; the limit is 5000"), std::string::npos)
        << m.error().text;

    parse_options small;
    small.lim.max_message_bytes = 100;
    auto big = parse(kAdt, small);
    ASSERT_FALSE(big);
    EXPECT_NE(big.error().text.find("the limit is 100"), std::string::npos);

    small = {};
    small.lim.max_fields = 5;
    auto wide = parse(kAdt, small);
    ASSERT_FALSE(wide);
    EXPECT_NE(wide.error().text.find("more than 5 fields"), std::string::npos);
}

TEST(hl7v2_parse, builds_a_message_from_nothing) {
    message m;
    m.add("MSH").set(3, "SAMBAND").set(9, "MDM").set(9, "T02", 2).set(10, "ID1").set(12, "2.5");
    m.add("TXA").set(1, "1").set(2, "PN");
    m.add("OBX").set(1, "1").set(2, "TX").set(5, "line 1\nline | 2");
    std::string out = serialize(m);
    EXPECT_EQ(out,
              "MSH|^~\\&|SAMBAND||||||MDM^T02|ID1||2.5\r"
              "TXA|1|PN\r"
              "OBX|1|TX|||line 1\\.br\\line \\F\\ 2\r");
}

TEST(hl7v2_batch, file_and_batch_headers_around_messages) {
    std::string text =
        "FHS|^~\\&|EPJ|K|||20261124\r"
        "BHS|^~\\&|EPJ|K|||20261124\r"
        "MSH|^~\\&|EPJ|K|S|R|1||ORU^R01|M1|P|2.5\r"
        "PID|1||a\r"
        "MSH|^~\\&|EPJ|K|S|R|1||ORU^R01|M2|P|2.5\r"
        "PID|1||b\r"
        "BTS|2\r"
        "FTS|1\r";
    auto b = parse_batch(text);
    ASSERT_TRUE(b) << b.error().describe();
    ASSERT_EQ(b->headers.size(), 2u);
    EXPECT_EQ(b->headers[0].name, "FHS");
    EXPECT_EQ(b->headers[1].get(3), "EPJ");
    ASSERT_EQ(b->messages.size(), 2u);
    EXPECT_EQ(b->messages[0].control_id(), "M1");
    EXPECT_EQ(b->messages[1].find("PID")->get(3), "b");
    ASSERT_EQ(b->trailers.size(), 2u);
    EXPECT_EQ(b->trailers[0].get(1), "2");

    auto one = parse_batch(kAdt);
    ASSERT_TRUE(one);
    EXPECT_EQ(one->messages.size(), 1u);

    auto bad = parse_batch("BHS|^~\\&|E\rPID|1\rBTS|0\r");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().text.find("outside a message"), std::string::npos);
}

TEST(hl7v2_ack, original_mode_accept) {
    auto in = parse(kAdt);
    ASSERT_TRUE(in);
    EXPECT_FALSE(enhanced_mode(*in));
    EXPECT_EQ(ack_code_for(*in, outcome::accepted), ack_code::AA);
    EXPECT_EQ(ack_code_for(*in, outcome::rejected), ack_code::AR);
    ack_options o;
    o.timestamp = "20261124101501";
    std::string out = serialize(build_ack(&*in, ack_code::AA, "", nullptr, o));
    EXPECT_EQ(out,
              "MSH|^~\\&|SAMBAND||EPJ|KOMMUNE|20261124101501||ACK^A04^ACK|AMSG00001|P|2.5.1\r"
              "MSA|AA|MSG00001\r");
}

TEST(hl7v2_ack, enhanced_mode_follows_msh15) {
    auto al = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|X|P|2.5|||AL|NE\r");
    auto er = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|X|P|2.5|||ER|AL\r");
    auto ne = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|X|P|2.5|||NE|AL\r");
    ASSERT_TRUE(al && er && ne);
    EXPECT_TRUE(enhanced_mode(*al));
    EXPECT_EQ(ack_code_for(*al, outcome::accepted), ack_code::CA);
    EXPECT_EQ(ack_code_for(*al, outcome::error), ack_code::CE);
    EXPECT_EQ(ack_code_for(*al, outcome::rejected), ack_code::CR);
    EXPECT_TRUE(ack_wanted(*al, outcome::accepted));
    EXPECT_FALSE(ack_wanted(*er, outcome::accepted));
    EXPECT_TRUE(ack_wanted(*er, outcome::rejected));
    EXPECT_FALSE(ack_wanted(*ne, outcome::rejected));
}

TEST(hl7v2_ack, err_names_the_field_in_25_and_23) {
    parse_error e{hl7_error::data_type, "fødselsnummer check digit is wrong", "PID", 2, 3, 1};
    auto in25 = parse(kAdt);
    message a = build_ack(&*in25, ack_code::AR, "bad PID-3", &e);
    std::string out = serialize(a);
    EXPECT_NE(out.find("\rERR||PID^2^3^1^1|102^fødselsnummer check digit is wrong^HL70357|E||||"
                       "PID-3.1 (segment 2): fødselsnummer check digit is wrong\r"),
              std::string::npos)
        << out;
    auto info = read_ack(a);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->code, ack_code::AR);
    EXPECT_EQ(info->control_id, "MSG00001");
    EXPECT_NE(info->text.find("check digit"), std::string::npos);

    auto in23 = parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|Q1|P|2.3\r");
    std::string out23 = serialize(build_ack(&*in23, ack_code::AE, "bad", &e));
    EXPECT_NE(out23.find("\rERR|PID^2^3^102&fødselsnummer check digit is wrong&HL70357\r"),
              std::string::npos)
        << out23;
    EXPECT_NE(out23.find("|ACK^R01|AQ1|"), std::string::npos) << out23;
}

// Found by the fuzzer (a signed overflow reading MSH-12): a version of any length is read safely
// and, not being 2.x before 2.5, gets the 2.5 form of the ACK. The input is also a fuzz seed.
TEST(hl7v2_ack, a_version_with_a_huge_number_is_read_without_overflow) {
    for (const char* v : {"66666666666666666666", "2.66666666666666666666", "99999999999.1"}) {
        auto in = parse(std::string("MSH|^~\\&|A|B|C|D|1||ORU^R01|Q1|P|") + v + "\r");
        ASSERT_TRUE(in) << v;
        std::string out = serialize(build_ack(&*in, ack_code::AA, "", nullptr));
        EXPECT_NE(out.find("|ACK^R01^ACK|AQ1|"), std::string::npos) << v << ": " << out;
    }
}

TEST(hl7v2_ack, unreadable_message_still_gets_an_ack) {
    parse_error e{hl7_error::segment_sequence,
                  "the message does not start with an MSH segment",
                  "MSH",
                  1,
                  0,
                  0};
    std::string out = serialize(build_ack(nullptr, ack_code::AR, e.text, &e));
    auto back = parse(out);
    ASSERT_TRUE(back) << out;
    auto info = read_ack(*back);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->code, ack_code::AR);
    EXPECT_EQ(info->control_id, "");
}

TEST(hl7v2_ack, msa3_is_cut_to_80_characters) {
    auto in = parse(kAdt);
    message a = build_ack(&*in, ack_code::AE, std::string(300, 'x'), nullptr);
    EXPECT_EQ(a.find("MSA")->get(3).size(), 80u);
}

TEST(hl7v2_mllp, frames_split_anywhere_and_back_to_back) {
    std::string stream = mllp::frame("MSH|a") + "\r\n" + mllp::frame("MSH|b") + mllp::frame("");
    std::vector<std::string> got;
    mllp::reader r(1000);
    std::string out;
    for (char c : stream) {  // one byte at a time
        r.feed(std::string_view(&c, 1));
        for (auto st = r.next(out); st != mllp::reader::status::need_more; st = r.next(out)) {
            ASSERT_EQ(st, mllp::reader::status::frame);
            got.push_back(out);
        }
    }
    EXPECT_EQ(got, (std::vector<std::string>{"MSH|a", "MSH|b", ""}));

    mllp::reader all(1000);
    all.feed(stream);
    got.clear();
    while (all.next(out) == mllp::reader::status::frame) got.push_back(out);
    EXPECT_EQ(got.size(), 3u);
}

TEST(hl7v2_mllp, junk_is_reported_and_skipped) {
    mllp::reader r(1000);
    r.feed("garbage" + mllp::frame("MSH|ok"));
    std::string out;
    EXPECT_EQ(r.next(out), mllp::reader::status::junk);
    EXPECT_EQ(out, "7");
    EXPECT_EQ(r.next(out), mllp::reader::status::frame);
    EXPECT_EQ(out, "MSH|ok");
    EXPECT_EQ(r.next(out), mllp::reader::status::need_more);
}

TEST(hl7v2_mllp, oversized_frame_ends_the_stream) {
    mllp::reader r(10);
    std::string out;
    r.feed(std::string(1, mllp::start_block) + "0123456789");
    EXPECT_EQ(r.next(out), mllp::reader::status::need_more) << "at the limit, not over it";
    r.feed("A");
    EXPECT_EQ(r.next(out), mllp::reader::status::too_large);
    r.feed(mllp::frame("MSH|x"));
    EXPECT_EQ(r.next(out), mllp::reader::status::too_large);
}

TEST(hl7v2_mllp, fs_without_cr_is_accepted) {
    mllp::reader r(100);
    std::string out;
    r.feed(std::string("\x0bMSH|a\x1c"));
    EXPECT_EQ(r.next(out), mllp::reader::status::frame);
    EXPECT_EQ(out, "MSH|a");
    r.feed("\r");
    EXPECT_EQ(r.next(out), mllp::reader::status::need_more);
}

}  // namespace
}  // namespace samband::hl7v2
