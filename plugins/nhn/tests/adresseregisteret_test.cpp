// The Adresseregisteret reader against NHN's sample answers (tests/data/nhn/registries).
#include "test_support.hpp"

#include "nhn/codec/adresseregisteret.hpp"

#include <gtest/gtest.h>

namespace samband::nhn {
namespace {

using namespace test;

std::string sample(const std::string& name) {
    return read_file(shared("registries/adresseregisteret-client/get-communication-party-details-" +
                            name + "-response.xml"));
}

TEST(NhnAdresseregisteret, PersonWithParentAndEdiAddressCanReceive) {
    auto a = ar::parse_details_response(sample("person"));
    ASSERT_TRUE(a) << a.error().what();
    ASSERT_TRUE(a->found);
    const auto& p = a->party;
    EXPECT_EQ(p.her_id, "115522");
    EXPECT_EQ(p.type, "OrganizationPerson");
    EXPECT_EQ(p.name, "Anne-Marie Bach");
    EXPECT_EQ(p.parent_her_id, "84556");
    EXPECT_EQ(p.parent_name, "Tysnes Helsesenter");
    EXPECT_TRUE(p.active);
    EXPECT_TRUE(p.valid_communication_party);
    EXPECT_TRUE(p.has_edi_address);
    EXPECT_TRUE(p.can_receive());
}

TEST(NhnAdresseregisteret, ServiceIsReadWithItsParent) {
    auto a = ar::parse_details_response(sample("service"));
    ASSERT_TRUE(a) << a.error().what();
    EXPECT_EQ(a->party.her_id, "8094866");
    EXPECT_EQ(a->party.type, "Service");
    EXPECT_EQ(a->party.parent_her_id, "112374");
    EXPECT_TRUE(a->party.can_receive());
}

TEST(NhnAdresseregisteret, InvalidPartiesSayWhyTheyCannotReceive) {
    auto org = ar::parse_details_response(sample("organzation")).value();
    EXPECT_EQ(org.party.her_id, "8142987");
    EXPECT_EQ(org.party.parent_her_id, "") << "-1 means no parent";
    std::string why;
    EXPECT_FALSE(org.party.can_receive(&why));
    EXPECT_EQ(why,
              "HER-id 8142987 (KS-DIGITALE FELLESTJENESTER AS) is not a valid communication party");
    auto no_parent = ar::parse_details_response(sample("no-parent")).value();
    EXPECT_EQ(no_parent.party.her_id, "12345");
    EXPECT_FALSE(no_parent.party.has_edi_address);
    auto with_parent = ar::parse_details_response(sample("with-parent")).value();
    EXPECT_EQ(with_parent.party.parent_her_id, "987654");
    EXPECT_EQ(with_parent.party.parent_name, "Overordnet Organisasjon");
    with_parent.party.valid_communication_party = true;
    EXPECT_FALSE(with_parent.party.can_receive(&why));
    EXPECT_EQ(why, "HER-id 55555 (ET LEGEKONTOR) has no EDI address");
}

TEST(NhnAdresseregisteret, UnknownHerIdIsNotFoundAndOtherFaultsAreErrors) {
    auto a = ar::parse_details_response(sample("not-found"));
    ASSERT_TRUE(a) << a.error().what();
    EXPECT_FALSE(a->found);
    EXPECT_EQ(a->fault_code, "InvalidHerIdSupplied");
    std::string other = sample("not-found");
    other.replace(other.find("InvalidHerIdSupplied"), 20, "AccessDenied");
    auto e = ar::parse_details_response(other);
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find("Adresseregisteret fault AccessDenied"), std::string::npos)
        << e.error().what();
    EXPECT_FALSE(ar::parse_details_response("<html>proxy error</html>"));
    EXPECT_EQ(ar::parse_details_response(R"(<!DOCTYPE x [<!ENTITY a "b">]><x/>)").error().code,
              codec_errc::dtd_forbidden);
}

TEST(NhnAdresseregisteret, RequestAsksForOneHerIdAndIsWellFormed) {
    std::string req = ar::details_request("115522");
    EXPECT_NE(req.find("<herId>115522</herId>"), std::string::npos);
    EXPECT_NE(req.find(ar::soap_action), std::string::npos);
    EXPECT_TRUE(parse_xml(req));
}

// The local parties file, shared by the plugin's and the daemon's lookups.
TEST(NhnAdresseregisteret, PartiesFileIsReadAndItsMistakesAreNamed) {
    auto ok = ar::parse_parties_file(R"({"parties": [
        {"her_id": "9900101", "name": "Lise Fastlege", "active": true, "valid": true,
         "edi_address": true, "message_types": ["DIALOG_SVAR"]},
        {"her_id": "9900102", "active": true}]})");
    ASSERT_TRUE(ok) << ok.error().what();
    ASSERT_EQ(ok->size(), 2u);
    const auto& lise = ok->at("9900101");
    EXPECT_TRUE(lise.party.can_receive());
    EXPECT_EQ(lise.message_types, std::vector<std::string>{"DIALOG_SVAR"});
    std::string why;
    EXPECT_FALSE(ok->at("9900102").party.can_receive(&why));
    EXPECT_EQ(why, "HER-id 9900102 is not a valid communication party");
    for (auto [text, expect] :
         {std::pair{R"({"people": []})", "expected {\"parties\""},
          std::pair{R"({"parties": [{"her_id": 1}]})", "parties[0] needs a string her_id"},
          std::pair{R"({"parties": [{"her_id": "1"}, {"her_id": "2", "valid": 1}]})",
                    "parties[1].valid must be true or false"},
          std::pair{R"({"parties": [{"her_id": "1", "message_types": ["DIALOG_X"]}]})",
                    "parties[0].message_types: \"DIALOG_X\" is not one of"}}) {
        auto r = ar::parse_parties_file(text);
        ASSERT_FALSE(r) << text;
        EXPECT_NE(r.error().message.find(expect), std::string::npos) << r.error().message;
    }
}

}  // namespace
}  // namespace samband::nhn
