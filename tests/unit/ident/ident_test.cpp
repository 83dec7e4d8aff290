// Identifier checks shared by host and plugins: each failure says which check failed.
#include <samband/identifiers.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

namespace samband::ident {
namespace {

TEST(ident, synthetic_test_patients_pass_only_when_synthetic_numbers_are_allowed) {
    const std::string path = std::string(SAMBAND_SOURCE_DIR) + "/tests/data/testdata/patients.json";
    std::ifstream in(path);
    ASSERT_TRUE(in) << "test data missing: " << path;
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    std::regex re("\"identifier\": \"([0-9]{11})\"");
    int n = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it, ++n) {
        std::string id = (*it)[1];
        EXPECT_TRUE(check_person_id(id, {.allow_synthetic = true}))
            << id << ": " << check_person_id(id, {.allow_synthetic = true}).reason;
        if (kind_of(id) == person_id_kind::fnr) {
            auto r = check_person_id(id);
            EXPECT_FALSE(r) << id;
            EXPECT_NE(r.reason.find("synthetic"), std::string::npos) << r.reason;
        }
    }
    EXPECT_GE(n, 8);
}

TEST(ident, each_failed_check_is_named) {
    EXPECT_NE(check_person_id("1234").reason.find("expected 11 digits"), std::string::npos);
    EXPECT_NE(check_person_id("1483913462x").reason.find("not all digits"), std::string::npos);
    EXPECT_NE(check_person_id("14839134624", {.allow_synthetic = true}).reason.find("k2"),
              std::string::npos);
    EXPECT_NE(check_person_id("14839134613", {.allow_synthetic = true}).reason.find("k1"),
              std::string::npos);
    EXPECT_NE(check_person_id("32019012345").reason.find("the day (digits 1-2)"),
              std::string::npos);
    EXPECT_NE(check_person_id("01139012345").reason.find("the month (digits 3-4) is not 01-12"),
              std::string::npos);
    // Issue 15 item 3: a reason names the part and the rule, never the digits.
    for (const char* bad : {"32019012345", "01139012345", "14839134624", "14839134613"}) {
        std::string why = check_person_id(bad).reason;
        EXPECT_EQ(why.find(std::string(bad).substr(0, 4)), std::string::npos) << why;
        EXPECT_EQ(why.find(" 32"), std::string::npos) << why;
        EXPECT_EQ(why.find(" 13"), std::string::npos) << why;
    }
    EXPECT_EQ(kind_of("57048806165"), person_id_kind::dnr);
    EXPECT_NE(check_person_id("77048806165", {.allow_synthetic = true}).reason.find("D-number"),
              std::string::npos);
}

TEST(ident, numbers_issued_from_2032_with_a_free_first_check_digit_pass) {
    // Skatteetaten's examples for the 2032 rule: k1 with remainder 0 and remainder 1.
    EXPECT_TRUE(check_person_id("30108299920")) << check_person_id("30108299920").reason;
    EXPECT_TRUE(check_person_id("30108299939")) << check_person_id("30108299939").reason;
    EXPECT_TRUE(check_person_id("02013299997")) << check_person_id("02013299997").reason;
}

TEST(ident, organisation_hpr_and_her_id) {
    EXPECT_TRUE(check_org_nr("974760673"));  // Brønnøysundregistrene
    EXPECT_NE(check_org_nr("974760674").reason.find("check digit"), std::string::npos);
    EXPECT_NE(check_org_nr("97476067").reason.find("9 digits"), std::string::npos);
    EXPECT_TRUE(check_hpr("9911001"));
    EXPECT_FALSE(check_hpr("0"));
    EXPECT_FALSE(check_hpr("12345678901"));
    EXPECT_TRUE(check_her_id("9900101"));
    EXPECT_FALSE(check_her_id("abc"));
}

TEST(ident, mask_hides_every_eleven_digit_run_but_nothing_else) {
    EXPECT_EQ(mask("patient 14839134623 and 57048806165"), "patient 148391***** and 570488*****");
    EXPECT_EQ(mask("HER 9900101, phone +4799000001"), "HER 9900101, phone +4799000001");
    EXPECT_EQ(mask("123456789012"), "123456789012");  // no valid number inside
}

TEST(ident, mask_finds_a_number_inside_a_longer_one_and_leaves_uuids_whole) {
    // A fødselsnummer with digits glued on either side is still masked.
    EXPECT_EQ(mask("ref 0014839134623"), "ref 00148391*****");
    EXPECT_EQ(mask("1483913462399"), "148391*****99");
    // A UUID keeps every digit, even an 11-digit run inside its last group.
    EXPECT_EQ(mask("event 3f2a9c1e-7b4d-4e8a-9f00-a14839134623 stored"),
              "event 3f2a9c1e-7b4d-4e8a-9f00-a14839134623 stored");
    EXPECT_EQ(mask("delivery 0c2f1d5e-0000-4000-8000-123456789012"),
              "delivery 0c2f1d5e-0000-4000-8000-123456789012");
    // Next to a UUID, a plain number is still masked.
    EXPECT_EQ(mask("3f2a9c1e-7b4d-4e8a-9f00-a14839134623 14839134623"),
              "3f2a9c1e-7b4d-4e8a-9f00-a14839134623 148391*****");
}

}  // namespace
}  // namespace samband::ident
