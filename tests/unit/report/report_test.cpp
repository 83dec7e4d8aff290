// The outcome report (host/report) on a synthetic cohort whose figures are worked out by hand.
#include "report/outcomes.hpp"

#include "core/ids.hpp"
#include "store/store.hpp"

#include <gtest/gtest.h>

#include <future>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace samband::report {
namespace {

std::string ev(const std::string& type, const std::string& at, const std::string& data) {
    return R"({"type":")" + type + R"(","occurred_at":")" + at +
           R"(","subject":{"fnr":"14839134623"},"data":)" + data + "}";
}
std::string scores(int phq, int gad) {
    std::string s = "[";
    if (phq >= 0) s += R"({"instrument":"PHQ-9","score":)" + std::to_string(phq) + "}";
    if (gad >= 0)
        s += std::string(phq >= 0 ? "," : "") + R"({"instrument":"GAD-7","score":)" +
             std::to_string(gad) + "}";
    return s + "]";
}
std::string ended(const std::string& id, int sessions, int ps, int pe, int gs, int ge) {
    return R"({"treatment_id":")" + id + R"(","sessions":)" + std::to_string(sessions) +
           R"(,"scores":{"start":)" + scores(ps, gs) + R"(,"end":)" + scores(pe, ge) + "}}";
}

// The cohort (PHQ-9 start→end, GAD-7 start→end; -1 = not measured):
//  beh-1 15→5, 10→4   case, recovered, reliably improved (RI), reliably recovered (RR)
//  beh-2 12→9,  9→7   case, recovered, not RI (down 3 and 2)
//  beh-3  8→2,  5→3   not a case; RI (PHQ-9 down 6)
//  beh-4 20→18, 15→5  case, not recovered (PHQ-9 18), RI (GAD-7 down 10)
//  beh-5 10→17, 12→6  case, not recovered, not RI (PHQ-9 up 7: reliably worse)
//  beh-6 11→4, —      case, recovered, RI, RR (PHQ-9 only)
//  beh-7 no scores    ended, no paired scores
//  beh-8 —, 9→3       GAD-7 from two rph.assessment.scored: case, recovered, RI, RR
//  beh-9 14→6, 11→5   case, recovered, RI, RR
// February: ended 9, paired 8, cases 7, recovered 5 (71 % of 7), RI 6 (75 % of 8), RR 4 (<5).
// Sessions 6+8+5+12+10+4+3+7+9 = 64 over 9 = 7.1.
std::vector<month_row> cohort() {
    collector c;
    for (int i = 1; i <= 9; ++i) {
        std::string id = "beh-" + std::to_string(i);
        c.add("rph.referral.received", ev("rph.referral.received", "2026-01-0" + std::to_string(i),
                                          R"({"treatment_id":")" + id + R"(","referral_id":"r)" +
                                              std::to_string(i) + "\"}"));
        c.add("rph.treatment.started",
              ev("rph.treatment.started", i <= 6 ? "2026-01-15" : "2026-02-02",
                 R"({"treatment_id":")" + id + "\"}"));
    }
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-10", ended("beh-1", 6, 15, 5, 10, 4)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-11", ended("beh-2", 8, 12, 9, 9, 7)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-12", ended("beh-3", 5, 8, 2, 5, 3)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-13", ended("beh-4", 12, 20, 18, 15, 5)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-14", ended("beh-5", 10, 10, 17, 12, 6)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-15", ended("beh-6", 4, 11, 4, -1, -1)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-16", ended("beh-7", 3, -1, -1, -1, -1)));
    c.add(
        "rph.assessment.scored",
        ev("rph.assessment.scored", "2026-02-20",
           R"({"treatment_id":"beh-8","instrument":"GAD-7","score":3,"administered_at":"2026-02-20"})"));
    c.add(
        "rph.assessment.scored",
        ev("rph.assessment.scored", "2026-01-10",
           R"({"treatment_id":"beh-8","instrument":"GAD-7","score":9,"administered_at":"2026-01-10"})"));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-21", ended("beh-8", 7, -1, -1, -1, -1)));
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2026-02-22", ended("beh-9", 9, 14, 6, 11, 5)));
    // Outside the months asked for, and referrals without a treatment.
    c.add("rph.treatment.ended",
          ev("rph.treatment.ended", "2025-12-01", ended("beh-0", 9, 20, 1, 20, 1)));
    c.add("rph.referral.received",
          ev("rph.referral.received", "2026-03-01", R"({"referral_id":"x"})"));
    c.add("rph.referral.received",
          ev("rph.referral.received", "2026-03-02", R"({"referral_id":"y"})"));
    c.add("rph.treatment.started",
          ev("rph.treatment.started", "2026-03-05", R"({"treatment_id":"beh-10"})"));
    return compute(c.facts(), "2026-01", "2026-03");
}

TEST(outcomes, rules) {
    EXPECT_TRUE(is_case(10, std::nullopt));
    EXPECT_FALSE(is_case(9, 7));
    EXPECT_TRUE(is_case(std::nullopt, 8));
    treatment_facts t;
    t.phq9_start = 12, t.phq9_end = 6, t.gad7_start = 8, t.gad7_end = 12;
    EXPECT_TRUE(reliably_deteriorated(t));  // GAD-7 up 4
    EXPECT_FALSE(reliably_improved(t));
    t.gad7_end = 11;
    EXPECT_TRUE(reliably_improved(t));  // GAD-7 up 3 is not reliable
}

TEST(outcomes, cohort_matches_the_hand_count) {
    auto rows = cohort();
    ASSERT_EQ(rows.size(), 3u);
    const auto& jan = rows[0];
    EXPECT_EQ(jan.month, "2026-01");
    EXPECT_EQ(jan.referrals, 9);
    EXPECT_EQ(jan.started, 6);
    EXPECT_EQ(jan.ended, 0);
    const auto& feb = rows[1];
    EXPECT_EQ(feb.started, 3);
    EXPECT_EQ(feb.ended, 9);
    EXPECT_EQ(feb.sessions_n, 9);
    EXPECT_DOUBLE_EQ(feb.sessions_sum, 64);
    EXPECT_EQ(feb.with_scores, 8);
    EXPECT_EQ(feb.caseness, 7);
    EXPECT_EQ(feb.recovered, 5);
    EXPECT_EQ(feb.reliably_improved, 6);
    EXPECT_EQ(feb.reliably_recovered, 4);
    const auto& mar = rows[2];
    EXPECT_EQ(mar.referrals, 2);
    EXPECT_EQ(mar.started, 1);
    EXPECT_EQ(mar.ended, 0);
}

TEST(outcomes, markdown_suppresses_small_cells_and_shows_no_identifiers) {
    std::string md = render(cohort(), "md");
    EXPECT_NE(md.find("| 2026-01 | 9 | 6 | 0 | – | 0 | 0 | 0 | – | 0 | – | 0 | – |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| 2026-02 | 0 | <5 | 9 | 7.1 | 8 | 7 | 5 | 71 % | 6 | 75 % | <5 | – |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| 2026-03 | <5 | <5 | 0 |"), std::string::npos) << md;
    EXPECT_EQ(md.find("beh-"), std::string::npos);
    EXPECT_EQ(md.find("14839134623"), std::string::npos);
}

std::string run(const std::string& cmd, int& status) {
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    std::size_t n;
    while (p && (n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    status = p ? ::pclose(p) : -1;
    return out;
}

TEST(outcomes, csv_reads_back_with_pythons_strict_reader) {
    auto path = std::filesystem::temp_directory_path() / "samband-report-test.csv";
    std::ofstream(path, std::ios::binary) << render(cohort(), "csv");
    int st = 0;
    std::string out = run(std::string("python3 ") + SAMBAND_CSV_CHECK + " " + path.string(), st);
    std::filesystem::remove(path);
    ASSERT_EQ(st, 0) << out;
    EXPECT_NE(
        out.find(
            R"(["2026-02", "0", "<5", "9", "7,1", "8", "7", "5", "71 %", "6", "75 %", "<5", "–"])"),
        std::string::npos)
        << out;
}

TEST(outcomes, svg_is_well_formed_xml) {
    auto path = std::filesystem::temp_directory_path() / "samband-report-test.svg";
    std::string svg = render(cohort(), "svg");
    std::ofstream(path, std::ios::binary) << svg;
    int st = 0;
    std::string out = run("xmllint --noout " + path.string() + " 2>&1", st);
    std::filesystem::remove(path);
    EXPECT_EQ(st, 0) << out;
    EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
    EXPECT_NE(svg.find(">&lt;5</text>"), std::string::npos);
    EXPECT_EQ(svg.find("beh-"), std::string::npos);
}

// The same figures through a real store: every rph.* event is read back once, others are not.
TEST(outcomes, load_reads_the_events_from_the_store) {
    auto dir = std::filesystem::temp_directory_path() / ("samband-report-" + core::uuid_v7());
    std::filesystem::create_directories(dir);
    {
        store::sqlite_options o;
        o.path = (dir / "s.db").string();
        auto st = store::open_sqlite(o);
        int n = 0;
        auto put = [&](const std::string& type, const std::string& env) {
            store::new_event e;
            e.id = core::uuid_v7();
            e.source = "epj";
            e.idempotency_key = "k" + std::to_string(++n);
            e.type = type;
            e.envelope_json = env;
            std::promise<boost::system::error_code> p;
            st->submit(std::move(e), [&](boost::system::error_code ec, store::submit_outcome) {
                p.set_value(ec);
            });
            EXPECT_FALSE(p.get_future().get());
        };
        put("rph.treatment.started",
            ev("rph.treatment.started", "2026-01-15", R"({"treatment_id":"a"})"));
        put("rph.treatment.ended",
            ev("rph.treatment.ended", "2026-02-10", ended("a", 6, 15, 5, 10, 4)));
        put("samband.receipt",
            ev("rph.treatment.ended", "2026-02-10", ended("b", 6, 15, 5, 10, 4)));
        auto facts = load(*st);
        ASSERT_TRUE(facts);
        auto rows = compute(*facts, "2026-01", "2026-02");
        EXPECT_EQ(rows[0].started, 1);
        EXPECT_EQ(rows[1].ended, 1);  // the samband.receipt row is not read
        EXPECT_EQ(rows[1].recovered, 1);
    }
    std::filesystem::remove_all(dir);
}

TEST(outcomes, arguments_are_checked) {
    EXPECT_FALSE(check_arguments("2026-01", "2026-03", "md"));
    EXPECT_EQ(*check_arguments("2026-13", "2026-03", "md"),
              "--from must be a month as yyyy-mm, got \"2026-13\"");
    EXPECT_EQ(*check_arguments("2026-04", "2026-03", "md"),
              "--to (2026-03) is before --from (2026-04)");
    EXPECT_EQ(*check_arguments("2026-01", "2026-03", "pdf"),
              "--format must be md, csv or svg, got \"pdf\"");
}

}  // namespace
}  // namespace samband::report
