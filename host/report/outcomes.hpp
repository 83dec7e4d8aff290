// The RPH outcome report: monthly figures computed from stored events, with no identifiers.
#pragma once

#include <boost/system/result.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::store {
class store;
struct event_row;
}  // namespace samband::store

namespace samband::report {

// What one treatment contributes, taken from its events (the report keeps no identifiers).
struct treatment_facts {
    std::string referred_month, started_month, ended_month;  // "yyyy-mm" or empty
    std::optional<int> sessions;                             // from rph.treatment.ended
    std::optional<double> phq9_start, phq9_end, gad7_start, gad7_end;
};

// One month's figures. Counts are exact here; suppression happens when rendering.
struct month_row {
    std::string month;  // yyyy-mm
    int referrals = 0;
    int started = 0;
    int ended = 0;
    int sessions_n = 0;  // ended treatments with a session count
    double sessions_sum = 0;
    int with_scores = 0;         // ended with PHQ-9 or GAD-7 at both start and end
    int caseness = 0;            // of those: PHQ-9 >= 10 or GAD-7 >= 8 at the start
    int recovered = 0;           // of the cases: below both thresholds at the end
    int reliably_improved = 0;   // of with_scores: PHQ-9 down >= 6 or GAD-7 down >= 4, neither up
    int reliably_recovered = 0;  // recovered and reliably improved
};

// The outcome rules (docs/reports.md, shared domain notes RPH.md).
bool is_case(std::optional<double> phq9, std::optional<double> gad7);
bool reliably_improved(const treatment_facts& t);
bool reliably_deteriorated(const treatment_facts& t);

// Figures per month from `from` to `to` (both "yyyy-mm", inclusive; every month listed).
std::vector<month_row> compute(const std::vector<treatment_facts>& treatments,
                               const std::string& from, const std::string& to);

// Collects the facts of each treatment from stored rph.* events (referrals without a
// treatment id count on their own).
class collector {
public:
    void add(std::string_view type, std::string_view envelope_json);
    std::vector<treatment_facts> facts() const;

private:
    std::vector<std::pair<std::string, treatment_facts>> by_id_;
    std::vector<treatment_facts> loose_;
    treatment_facts& of(const std::string& id);
    struct score_time {
        std::string at;
        double score;
    };
    std::vector<std::pair<std::string, std::pair<std::vector<score_time>, std::vector<score_time>>>>
        scored_;  // treatment → (PHQ-9, GAD-7) rph.assessment.scored, for ends without scores
};

boost::system::result<std::vector<treatment_facts>> load(store::store& st);

// A cell as shown: counts 1–4 as "<5" (0 and 5+ as they are).
std::string cell(int n);

// Renders the figures; `format` is md, csv or svg. CSV is Excel-friendly (BOM, ';', CRLF).
std::string render(const std::vector<month_row>& rows, std::string_view format);

// Checks --from/--to ("yyyy-mm") and the format; the error names the problem.
std::optional<std::string> check_arguments(const std::string& from, const std::string& to,
                                           const std::string& format);

}  // namespace samband::report
