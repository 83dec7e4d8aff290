// Apprec 1.0/1.1: the shared samples parse to the right status and codes; the Apprec we build
// validates and says what we mean.
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <samband_test/tools.hpp>

#include <cstdlib>
#include <filesystem>

namespace samband::nhn {
namespace {

using namespace test;

receipt sample(const std::string& rel) {
    auto r = the_codec().parse_receipt(read_file(shared("samples/app-rec/" + rel)));
    EXPECT_TRUE(r) << rel << ": " << (r ? "" : r.error().what());
    return r ? *r : receipt{};
}

TEST(NhnApprec, Version10OkParses) {
    auto r = sample("1.0/example-ok.xml");
    EXPECT_EQ(r.version, "1.0");
    EXPECT_EQ(r.status, apprec_status::ok);
    EXPECT_EQ(r.original_msg_id, "a6967e6a-8c0a-4be4-a647-c921d3086423");
    EXPECT_TRUE(r.errors.empty());
}

TEST(NhnApprec, Version10AvvistCarries8221Code) {
    auto r = sample("1.0/example-avvist.xml");
    EXPECT_EQ(r.status, apprec_status::rejected);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].code, "E21");
    EXPECT_EQ(r.errors[0].text, "Mottaker finnes ikke");
    EXPECT_EQ(r.errors[0].code_system, "2.16.578.1.12.4.1.1.8221");
    EXPECT_EQ(r.errors[0].detail, "Legen har sluttet");
    EXPECT_EQ(r.original_msg_id, "a6967e6a-8c0a-4be4-a647-c921d3086423");
}

TEST(NhnApprec, Version10OkFeilIDelmeldingCarriesEveryError) {
    auto r = sample("1.0/example-ok-feil-i-delmelding.xml");
    EXPECT_EQ(r.status, apprec_status::ok_with_errors);
    ASSERT_EQ(r.errors.size(), 2u);
    EXPECT_EQ(r.errors[0].code, "07");
    EXPECT_EQ(r.errors[1].code, "16");
    EXPECT_EQ(r.errors[1].code_system, "2.16.578.1.12.4.1.1.8223");
    EXPECT_EQ(r.original_msg_type, "LOM");
}

TEST(NhnApprec, Version11OkAndAvvistParse) {
    auto ok = sample("1.1/example-ok.xml");
    EXPECT_EQ(ok.version, "1.1");
    EXPECT_EQ(ok.status, apprec_status::ok);
    EXPECT_EQ(ok.original_msg_id, "4c793d90-c41b-11e0-962b-0800200c9a66");
    auto no = sample("1.1/example-avvist.xml");
    EXPECT_EQ(no.status, apprec_status::rejected);
    ASSERT_EQ(no.errors.size(), 1u);
    EXPECT_EQ(no.errors[0].code, "E21");
    EXPECT_EQ(no.original_msg_id, "e0e21a90-5ec8-11e1-b86c-0800200c9a66");
    EXPECT_EQ(no.sender.her_id, "56704");
}

TEST(NhnApprec, AllDataSamplesGiveSenderAndReceiver) {
    for (const char* v : {"1.0", "1.1"}) {
        auto r = sample(std::string(v) + "/all-data.xml");
        EXPECT_EQ(r.sender.her_id, "8142987") << v;
        EXPECT_EQ(r.sender.dept_her_id, "8143060") << v;
        EXPECT_EQ(r.receiver.her_id, "998877") << v;
        EXPECT_EQ(r.original_msg_type, "DIALOG_HELSEFAGLIG") << v;
    }
}

// Issue 15 item 3: the reason names the element and the rule, never the value found there.
TEST(NhnApprec, UnknownStatusIsRefusedNamingTheElementNotTheValue) {
    for (auto [file, value] :
         {std::pair{"1.0/unknown-status.xml", "73"}, std::pair{"1.1/unknown-status.xml", "123"}}) {
        auto r =
            the_codec().parse_receipt(read_file(shared(std::string("samples/app-rec/") + file)));
        ASSERT_FALSE(r) << file;
        EXPECT_EQ(r.error().code, codec_errc::unsupported_message);
        EXPECT_NE(r.error().message.find("Status V is not 1"), std::string::npos)
            << r.error().message;
        EXPECT_EQ(r.error().message.find(value), std::string::npos) << r.error().message;
    }
}

TEST(NhnApprec, EdiBusinessDocumentApprecParses) {
    rapidjson::Document d;
    std::string body = read_file(shared("edi2/get-business-document-apprec-response.json"));
    d.Parse(body.c_str());
    ASSERT_TRUE(d.HasMember("businessDocument"));
    auto xml = base64_decode(d["businessDocument"].GetString()).value();
    auto r = the_codec().parse_receipt(std::string(xml.begin(), xml.end()));
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->status, apprec_status::ok);
    EXPECT_EQ(r->original_msg_id, "a5e9665e-4982-4521-a50f-4b121fc25094");
    EXPECT_EQ(r->sender.her_id, "112374");
}

TEST(NhnApprec, OkApprecWeBuildValidatesAndAnswersTheMessage) {
    auto in = the_codec()
                  .parse(read_file(shared(
                      "samples/dialogmelding/1.0/foresporsel-og-svar/dialog-svar-webmed-test.xml")))
                  .value();
    auto req = apprec_for(in.header, apprec_status::ok);
    req.gen_date = "2025-06-10T11:00:00+02:00";
    auto xml = the_codec().make_apprec(req);
    ASSERT_TRUE(xml) << xml.error().what();
    EXPECT_TRUE(the_codec().validate(*xml));
    auto r = the_codec().parse_receipt(*xml);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->version, "1.1");
    EXPECT_EQ(r->status, apprec_status::ok);
    EXPECT_EQ(r->original_msg_id, "a748bb20-4e0f-4922-9b06-ec2c101eb9c1");
    EXPECT_EQ(r->original_msg_type, "DIALOG_SVAR");
    EXPECT_EQ(r->sender.her_id, "8142987");  // we received it
    EXPECT_EQ(r->sender.dept_her_id, "8143060");
    EXPECT_EQ(r->receiver.her_id, "8142952");  // they sent it
    EXPECT_EQ(r->id, derive_uuid("apprec:a748bb20-4e0f-4922-9b06-ec2c101eb9c1"));
    // The same answer again (a retry) is byte-identical.
    EXPECT_EQ(the_codec().make_apprec(req).value(), *xml);
}

TEST(NhnApprec, OurApprecAddressesTheGpAsWellAsTheOffice) {
    auto in = the_codec()
                  .parse(read_file(shared(
                      "samples/dialogmelding/1.0/foresporsel-og-svar/dialog-svar-webmed-test.xml")))
                  .value();
    message_header h = in.header;
    h.sender.person_name = "Lege Legesen";
    h.sender.person_her_id = "9900105";
    auto xml = the_codec().make_apprec(apprec_for(h, apprec_status::ok));
    ASSERT_TRUE(xml) << xml.error().what();
    auto r = the_codec().parse_receipt(*xml);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->receiver.her_id, "8142952");         // the office
    EXPECT_EQ(r->receiver.person_her_id, "9900105");  // and the GP, as the MsgHead named them
    EXPECT_EQ(r->receiver.person_name, "Lege Legesen");
    EXPECT_TRUE(r->receiver.has_her_id("9900105"));
    EXPECT_TRUE(r->receiver.has_her_id("8142952"));
    EXPECT_FALSE(r->receiver.has_her_id("8142987"));
    EXPECT_FALSE(r->receiver.has_her_id(""));
}

TEST(NhnApprec, SchemaInvalidMessageGetsAvvistWithT02) {
    std::string bad =
        read_file(shared("samples/dialogmelding/1.1/helsefaglig-dialog/samsvar-test-message.xml"));
    bad.erase(bad.find("<MIGversion>"),
              std::string("<MIGversion>v1.2 2006-05-24</MIGversion>").size());
    auto parsed = the_codec().parse(bad);
    ASSERT_FALSE(parsed);
    auto header = the_codec().peek(bad).value();
    auto req = apprec_for(header, apprec_status::rejected, {apprec_error_for(parsed.error())});
    auto xml = the_codec().make_apprec(req);
    ASSERT_TRUE(xml) << xml.error().what();
    auto r = the_codec().parse_receipt(*xml).value();
    EXPECT_EQ(r.status, apprec_status::rejected);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].code, "T02");
    EXPECT_EQ(r.errors[0].text, "XML validerer ikke");
    EXPECT_NE(r.errors[0].detail.find("schema_invalid"), std::string::npos);
    EXPECT_EQ(r.original_msg_id, "615aba81-6a88-41d1-a9f5-90b28cfc8b73");
}

TEST(NhnApprec, CodecErrorsMapTo8221Codes) {
    EXPECT_EQ(apprec_error_for({codec_errc::not_well_formed, "x", 1}).code, "T01");
    EXPECT_EQ(apprec_error_for({codec_errc::dtd_forbidden, "x", 1}).code, "T01");
    EXPECT_EQ(apprec_error_for({codec_errc::schema_invalid, "x", 1}).code, "T02");
    EXPECT_EQ(apprec_error_for({codec_errc::unsupported_message, "x", 1}).code, "T10");
    EXPECT_EQ(apprec_error_for({codec_errc::bad_base64, "x", 1}).code, "T99");
    EXPECT_EQ(apprec_error_for({codec_errc::internal, "x", 0}).code, "X99");
    EXPECT_EQ(make_apprec_error(apprec_codes::mottaker_finnes_ikke).text, "Mottaker finnes ikke");
}

TEST(NhnApprec, InconsistentRequestsAreRefused) {
    message_header h;
    h.msg_id = "m-1";
    h.msg_type = "DIALOG_SVAR";
    h.sender.her_id = "1";
    h.receiver.her_id = "2";
    auto rejected_without_error = the_codec().make_apprec(apprec_for(h, apprec_status::rejected));
    ASSERT_FALSE(rejected_without_error);
    EXPECT_EQ(rejected_without_error.error().code, codec_errc::invalid_input);
    auto ok_with_error = the_codec().make_apprec(
        apprec_for(h, apprec_status::ok, {make_apprec_error(apprec_codes::annen_feil)}));
    ASSERT_FALSE(ok_with_error);
    h.msg_id.clear();
    auto no_id = the_codec().make_apprec(apprec_for(h, apprec_status::ok));
    ASSERT_FALSE(no_id);
    EXPECT_EQ(no_id.error().code, codec_errc::missing_field);
}

TEST(NhnApprec, ApprecWeBuildPassesXmllint) {
    SAMBAND_REQUIRE_TOOL("xmllint");
    message_header h;
    h.msg_id = "m-1";
    h.msg_type = "DIALOG_HELSEFAGLIG";
    h.gen_date = "2026-11-24T10:15:00+01:00";
    h.sender.her_id = "9900100";
    h.receiver.her_id = "9900001";
    h.receiver.unit_her_id = "9900011";
    auto xml =
        the_codec()
            .make_apprec(apprec_for(
                h, apprec_status::rejected,
                {make_apprec_error(apprec_codes::pasient_finnes_ikke, "Ukjent pasient: æøå")}))
            .value();
    auto path = std::filesystem::temp_directory_path() / "nhn-apprec-xmllint.xml";
    {
        std::ofstream out(path, std::ios::binary);
        out << xml;
    }
    std::string cmd = samband::testing::find_tool("xmllint") + " --noout --nonet --schema " +
                      NHN_XSD_DIR + "/all-messages.xsd " + path.string() + " 2>/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << xml;
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace samband::nhn
