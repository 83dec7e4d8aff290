#include "report/outcomes.hpp"

#include "codec/json.hpp"
#include "codec/xml.hpp"
#include "store/store.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

namespace samband::report {
namespace {

// Thresholds and reliable-change indices (docs/reports.md).
constexpr double kPhqCase = 10, kGadCase = 8;
constexpr double kPhqReliable = 6, kGadReliable = 4;

std::string month_of(std::string_view iso) {
    if (iso.size() < 7 || iso[4] != '-') return {};
    for (std::size_t i : {0, 1, 2, 3, 5, 6})
        if (!std::isdigit(static_cast<unsigned char>(iso[i]))) return {};
    return std::string(iso.substr(0, 7));
}

// "PHQ-9", "phq9", "PHQ 9" → "PHQ9".
std::string instrument_key(std::string_view s) {
    std::string out;
    for (char c : s)
        if (std::isalnum(static_cast<unsigned char>(c)))
            out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    return out;
}

void scores_from(const rapidjson::Value* arr, std::optional<double>& phq,
                 std::optional<double>& gad) {
    if (!arr || !arr->IsArray()) return;
    for (const auto& s : arr->GetArray()) {
        if (!s.IsObject() || !s.HasMember("instrument") || !s["instrument"].IsString() ||
            !s.HasMember("score") || !s["score"].IsNumber())
            continue;
        std::string k = instrument_key(s["instrument"].GetString());
        if (k == "PHQ9") phq = s["score"].GetDouble();
        if (k == "GAD7") gad = s["score"].GetDouble();
    }
}

std::string next_month(const std::string& m) {
    int y = std::stoi(m.substr(0, 4)), mo = std::stoi(m.substr(5, 2)) + 1;
    if (mo > 12) mo = 1, ++y;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02d", y, mo);
    return buf;
}

// A rate in whole percent, or "–" when the figures behind it are too small to show.
std::string rate(int num, int den) {
    if (den < 5 || (num > 0 && num < 5)) return "–";
    return std::to_string(static_cast<int>(std::lround(100.0 * num / den))) + " %";
}

std::string mean(const month_row& r, char decimal) {
    if (r.sessions_n < 5) return "–";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", r.sessions_sum / r.sessions_n);
    std::string s = buf;
    for (char& c : s)
        if (c == '.') c = decimal;
    return s;
}

const char* kHeaders[] = {"Month",
                          "Referrals",
                          "Treatments started",
                          "Treatments ended",
                          "Mean sessions",
                          "Ended with paired scores",
                          "Caseness at start",
                          "Recovered",
                          "Recovery rate",
                          "Reliably improved",
                          "Reliable improvement rate",
                          "Reliably recovered",
                          "Reliable recovery rate"};

std::vector<std::string> cells(const month_row& r, char decimal) {
    return {r.month,
            cell(r.referrals),
            cell(r.started),
            cell(r.ended),
            mean(r, decimal),
            cell(r.with_scores),
            cell(r.caseness),
            cell(r.recovered),
            rate(r.recovered, r.caseness),
            cell(r.reliably_improved),
            rate(r.reliably_improved, r.with_scores),
            cell(r.reliably_recovered),
            rate(r.reliably_recovered, r.caseness)};
}

std::string render_svg(const std::vector<month_row>& rows) {
    // Grouped bars per month: referrals, started, ended; recovery rate written under each group.
    const int group = 90, bar = 22, left = 50, top = 60, height = 220, bottom = 70;
    const int width = left + group * static_cast<int>(std::max<std::size_t>(rows.size(), 1)) + 20;
    int max = 5;
    for (const auto& r : rows) max = std::max({max, r.referrals, r.started, r.ended});
    const char* colours[] = {"#4e79a7", "#59a14f", "#f28e2b"};
    const char* names[] = {"Referrals", "Treatments started", "Treatments ended"};
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\""
      << top + height + bottom << "\" viewBox=\"0 0 " << width << " " << top + height + bottom
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    o << "<title>RPH outcomes per month</title>\n";
    o << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
    o << "<text x=\"" << left << "\" y=\"20\" font-size=\"15\" font-weight=\"bold\">"
      << "RPH: referrals, treatments started and ended per month</text>\n";
    for (int i = 0; i < 3; ++i)
        o << "<rect x=\"" << left + i * 150 << "\" y=\"32\" width=\"12\" height=\"12\" fill=\""
          << colours[i] << "\"/><text x=\"" << left + i * 150 + 16 << "\" y=\"42\">" << names[i]
          << "</text>\n";
    int base = top + height;
    o << "<line x1=\"" << left << "\" y1=\"" << base << "\" x2=\"" << width - 10 << "\" y2=\""
      << base << "\" stroke=\"#333\"/>\n";
    for (int t = 0; t <= 4; ++t) {
        int v = static_cast<int>(std::lround(max * t / 4.0));
        int y = base - height * t / 4;
        o << "<text x=\"" << left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << v
          << "</text><line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << width - 10
          << "\" y2=\"" << y << "\" stroke=\"#ddd\"/>\n";
    }
    for (std::size_t m = 0; m < rows.size(); ++m) {
        const auto& r = rows[m];
        int x0 = left + static_cast<int>(m) * group + 10;
        int values[] = {r.referrals, r.started, r.ended};
        for (int i = 0; i < 3; ++i) {
            int v = values[i];
            bool hidden = v > 0 && v < 5;
            int h =
                hidden ? 0 : static_cast<int>(std::lround(static_cast<double>(height) * v / max));
            int x = x0 + i * bar;
            o << "<rect x=\"" << x << "\" y=\"" << base - h << "\" width=\"" << bar - 2
              << "\" height=\"" << h << "\" fill=\"" << colours[i] << "\"/>";
            o << "<text x=\"" << x + (bar - 2) / 2 << "\" y=\"" << base - h - 4
              << "\" text-anchor=\"middle\" font-size=\"10\">" << codec::xml_escape(cell(v))
              << "</text>\n";
        }
        o << "<text x=\"" << x0 + bar * 3 / 2 << "\" y=\"" << base + 16
          << "\" text-anchor=\"middle\">" << r.month << "</text>";
        o << "<text x=\"" << x0 + bar * 3 / 2 << "\" y=\"" << base + 32
          << "\" text-anchor=\"middle\" font-size=\"10\">recovery "
          << codec::xml_escape(rate(r.recovered, r.caseness)) << "</text>\n";
    }
    o << "<text x=\"" << left << "\" y=\"" << top + height + bottom - 8
      << "\" font-size=\"10\" fill=\"#555\">Counts 1–4 are shown as &lt;5 and drawn as "
         "no bar; rates from fewer than 5 are not shown.</text>\n";
    o << "</svg>\n";
    return o.str();
}

}  // namespace

bool is_case(std::optional<double> phq9, std::optional<double> gad7) {
    return (phq9 && *phq9 >= kPhqCase) || (gad7 && *gad7 >= kGadCase);
}

bool reliably_improved(const treatment_facts& t) {
    bool phq_down = t.phq9_start && t.phq9_end && *t.phq9_start - *t.phq9_end >= kPhqReliable;
    bool gad_down = t.gad7_start && t.gad7_end && *t.gad7_start - *t.gad7_end >= kGadReliable;
    return (phq_down || gad_down) && !reliably_deteriorated(t);
}

bool reliably_deteriorated(const treatment_facts& t) {
    bool phq_up = t.phq9_start && t.phq9_end && *t.phq9_end - *t.phq9_start >= kPhqReliable;
    bool gad_up = t.gad7_start && t.gad7_end && *t.gad7_end - *t.gad7_start >= kGadReliable;
    return phq_up || gad_up;
}

std::vector<month_row> compute(const std::vector<treatment_facts>& treatments,
                               const std::string& from, const std::string& to) {
    std::vector<month_row> rows;
    std::map<std::string, std::size_t> index;
    for (std::string m = from; m <= to; m = next_month(m)) {
        index[m] = rows.size();
        rows.push_back(month_row{m});
    }
    auto row = [&](const std::string& m) -> month_row* {
        auto it = index.find(m);
        return it == index.end() ? nullptr : &rows[it->second];
    };
    for (const auto& t : treatments) {
        if (auto* r = row(t.referred_month)) ++r->referrals;
        if (auto* r = row(t.started_month)) ++r->started;
        auto* r = row(t.ended_month);
        if (!r) continue;
        ++r->ended;
        if (t.sessions) ++r->sessions_n, r->sessions_sum += *t.sessions;
        bool phq = t.phq9_start && t.phq9_end, gad = t.gad7_start && t.gad7_end;
        if (!phq && !gad) continue;
        ++r->with_scores;
        // Only instruments measured at both ends count, so a missing end score never "recovers".
        std::optional<double> ps = phq ? t.phq9_start : std::nullopt;
        std::optional<double> gs = gad ? t.gad7_start : std::nullopt;
        std::optional<double> pe = phq ? t.phq9_end : std::nullopt;
        std::optional<double> ge = gad ? t.gad7_end : std::nullopt;
        bool case_start = is_case(ps, gs);
        bool recovered = case_start && !is_case(pe, ge);
        bool improved = reliably_improved(t);
        if (case_start) ++r->caseness;
        if (recovered) ++r->recovered;
        if (improved) ++r->reliably_improved;
        if (recovered && improved) ++r->reliably_recovered;
    }
    return rows;
}

treatment_facts& collector::of(const std::string& id) {
    for (auto& [k, v] : by_id_)
        if (k == id) return v;
    by_id_.emplace_back(id, treatment_facts{});
    return by_id_.back().second;
}

void collector::add(std::string_view type, std::string_view envelope_json) {
    auto parsed = codec::parse_json(envelope_json);
    if (!parsed || !parsed->IsObject()) return;
    const rapidjson::Document& d = *parsed;
    std::string month = month_of(codec::string_at(d, "/occurred_at"));
    std::string id(codec::string_at(d, "/data/treatment_id"));
    const rapidjson::Value* data = rapidjson::Pointer("/data").Get(d);
    if (!data || !data->IsObject()) return;
    if (type == "rph.referral.received") {
        if (id.empty()) {
            loose_.push_back(treatment_facts{month, {}, {}, {}, {}, {}, {}, {}});
            return;
        }
        auto& t = of(id);
        if (t.referred_month.empty()) t.referred_month = month;
        return;
    }
    if (id.empty()) return;
    if (type == "rph.treatment.started") {
        auto& t = of(id);
        if (t.started_month.empty()) t.started_month = month;
        std::optional<double> p, g;
        scores_from(rapidjson::Pointer("/assessment/scores").Get(*data), p, g);
        if (!t.phq9_start) t.phq9_start = p;
        if (!t.gad7_start) t.gad7_start = g;
    } else if (type == "rph.treatment.ended") {
        auto& t = of(id);
        t.ended_month = month;  // the last end counts (a corrected end note replaces)
        if (data->HasMember("sessions") && (*data)["sessions"].IsInt())
            t.sessions = (*data)["sessions"].GetInt();
        std::optional<double> ps, gs, pe, ge;
        scores_from(rapidjson::Pointer("/scores/start").Get(*data), ps, gs);
        scores_from(rapidjson::Pointer("/scores/end").Get(*data), pe, ge);
        if (ps) t.phq9_start = ps;
        if (gs) t.gad7_start = gs;
        if (pe) t.phq9_end = pe;
        if (ge) t.gad7_end = ge;
    } else if (type == "rph.assessment.scored") {
        std::string k = instrument_key(codec::string_at(*data, "/instrument"));
        auto sc = rapidjson::Pointer("/score").Get(*data);
        if ((k != "PHQ9" && k != "GAD7") || !sc || !sc->IsNumber()) return;
        of(id);
        auto it = std::find_if(scored_.begin(), scored_.end(),
                               [&](const auto& e) { return e.first == id; });
        if (it == scored_.end()) {
            scored_.push_back({id, {}});
            it = scored_.end() - 1;
        }
        auto& list = k == "PHQ9" ? it->second.first : it->second.second;
        list.push_back({std::string(codec::string_at(*data, "/administered_at")), sc->GetDouble()});
    }
}

std::vector<treatment_facts> collector::facts() const {
    std::vector<treatment_facts> out = loose_;
    for (const auto& entry : by_id_) {
        const std::string& id = entry.first;
        treatment_facts t = entry.second;
        // Scores sent one by one fill what the start and end notes did not say.
        for (const auto& scored : scored_) {
            if (scored.first != id) continue;
            const auto& lists = scored.second;
            auto fill = [&](std::vector<score_time> l, std::optional<double>& start,
                            std::optional<double>& end) {
                if (l.empty()) return;
                std::stable_sort(l.begin(), l.end(),
                                 [](const auto& a, const auto& b) { return a.at < b.at; });
                if (!start) start = l.front().score;
                if (!end && !t.ended_month.empty() && l.size() > 1) end = l.back().score;
            };
            fill(lists.first, t.phq9_start, t.phq9_end);
            fill(lists.second, t.gad7_start, t.gad7_end);
        }
        out.push_back(t);
    }
    return out;
}

boost::system::result<std::vector<treatment_facts>> load(store::store& st) {
    collector c;
    auto r = st.for_each_event("rph.",
                               [&](const store::event_row& e) { c.add(e.type, e.envelope_json); });
    if (!r) return r.error();
    return c.facts();
}

std::string cell(int n) {
    if (n > 0 && n < 5) return "<5";
    return std::to_string(n);
}

std::string render(const std::vector<month_row>& rows, std::string_view format) {
    std::string out;
    if (format == "md") {
        out += "|";
        for (const char* h : kHeaders) out += std::string(" ") + h + " |";
        out += "\n|";
        for (std::size_t i = 0; i < std::size(kHeaders); ++i) out += i ? " ---: |" : " --- |";
        out += "\n";
        for (const auto& r : rows) {
            out += "|";
            for (const auto& c : cells(r, '.')) out += " " + c + " |";
            out += "\n";
        }
        out += "\nCounts 1–4 are shown as <5; rates and means from fewer than 5 are shown as –.\n";
        return out;
    }
    if (format == "csv") {
        out = "\xEF\xBB\xBF";
        for (std::size_t i = 0; i < std::size(kHeaders); ++i)
            out += (i ? ";" : "") + std::string(kHeaders[i]);
        out += "\r\n";
        for (const auto& r : rows) {
            auto cs = cells(r, ',');
            for (std::size_t i = 0; i < cs.size(); ++i) out += (i ? ";" : "") + cs[i];
            out += "\r\n";
        }
        return out;
    }
    return render_svg(rows);
}

std::optional<std::string> check_arguments(const std::string& from, const std::string& to,
                                           const std::string& format) {
    auto ok = [](const std::string& m) {
        return m.size() == 7 && month_of(m) == m && m.substr(5, 2) >= "01" &&
               m.substr(5, 2) <= "12";
    };
    if (!ok(from)) return "--from must be a month as yyyy-mm, got \"" + from + "\"";
    if (!ok(to)) return "--to must be a month as yyyy-mm, got \"" + to + "\"";
    if (to < from) return "--to (" + to + ") is before --from (" + from + ")";
    int months = (std::stoi(to.substr(0, 4)) - std::stoi(from.substr(0, 4))) * 12 +
                 std::stoi(to.substr(5, 2)) - std::stoi(from.substr(5, 2)) + 1;
    if (months > 120) return std::string("at most 120 months in one report");
    if (format != "md" && format != "csv" && format != "svg")
        return "--format must be md, csv or svg, got \"" + format + "\"";
    return std::nullopt;
}

}  // namespace samband::report
