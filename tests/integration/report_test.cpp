// `samband report outcomes` against the running daemon: referrals imported from a spreadsheet by
// the csv plugin, counted per month with small counts hidden, in md, csv and svg.
#include "harness.hpp"

namespace samband::test {
namespace {

TEST(report_outcomes, counts_imported_referrals_per_month_without_identifiers) {
    temp_dir tmp;
    fs::path root = tmp.path();
    write_file(root / "samband.json", config_head("it-report") + R"(  "endpoints": {
    "sheets": {"plugin": "csv", "config": {
      "inbox": "csv-in", "poll_ms": 50, "type": "rph.referral.received",
      "fields": {
        "/subject/fnr": {"column": "Fnr"},
        "/occurred_at": {"column": "Mottatt", "as": "date"},
        "/data/received_at": {"column": "Mottatt", "as": "date"},
        "/data/referral_id": {"column": "Henvisning"},
        "/data/treatment_id": {"column": "Henvisning"},
        "/data/reason": {"value": "Angst og søvnvansker"}
      }}}
  },
  "routes": []
})");
    daemon_process d(root / "samband.json", root);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root / "csv-in", "henvisninger.csv",
              "Fnr,Henvisning,Mottatt\n"
              "14839134623,h-1,02.11.2026\n02918502265,h-2,03.11.2026\n"
              "28860370052,h-3,04.11.2026\n09817045860,h-4,05.11.2026\n"
              "30899926664,h-5,06.11.2026\n05920763059,h-6,09.11.2026\n"
              "21826210262,h-7,01.12.2026\n14839134623,h-8,02.12.2026\n");
    ASSERT_TRUE(wait_for([&] { return fs::exists(root / "csv-in" / "done" / "henvisninger.csv"); },
                         std::chrono::seconds(20)))
        << d.log();

    auto [st, md] = d.cli("report outcomes --from 2026-10 --to 2026-12");
    ASSERT_EQ(st, 0) << md;
    EXPECT_NE(md.find("| 2026-10 | 0 | 0 | 0 |"), std::string::npos) << md;
    EXPECT_NE(md.find("| 2026-11 | 6 | 0 | 0 |"), std::string::npos) << md;
    EXPECT_NE(md.find("| 2026-12 | <5 | 0 | 0 |"), std::string::npos) << md;
    for (const char* id : {"h-1", "14839134623", "21826210262"})
        EXPECT_EQ(md.find(id), std::string::npos);

    auto [st2, out] = d.cli("report outcomes --from 2026-11 --to 2026-12 --format csv --out " +
                            (root / "r.csv").string());
    ASSERT_EQ(st2, 0) << out;
    auto [st3, rows] = run_command("python3 " + source_dir() + "/plugins/csv/tests/check_csv.py " +
                                   (root / "r.csv").string());
    ASSERT_EQ(st3, 0) << rows;
    EXPECT_NE(rows.find(R"(["2026-11", "6", "0", "0", "–")"), std::string::npos) << rows;

    auto [st4, svg] = d.cli("report outcomes --from 2026-11 --to 2026-12 --format svg --out " +
                            (root / "r.svg").string());
    ASSERT_EQ(st4, 0) << svg;
    auto [st5, lint] = run_command("xmllint --noout " + (root / "r.svg").string() + " 2>&1");
    EXPECT_EQ(st5, 0) << lint;

    auto [st6, bad] = d.cli("report outcomes --from 2026-11 --to 2026-13");
    EXPECT_NE(st6, 0);
    EXPECT_NE(bad.find("--to must be a month as yyyy-mm, got \"2026-13\""), std::string::npos)
        << bad;
    EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace samband::test
