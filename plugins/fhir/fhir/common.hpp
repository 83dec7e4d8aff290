// Shared pieces of the FHIR mappings: identifier systems, the error type, deterministic ids.
#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace samband::fhir {

// HL7 Norway's identifier systems (no-basis).
inline constexpr std::string_view system_fnr = "urn:oid:2.16.578.1.12.4.1.4.1";
inline constexpr std::string_view system_dnr = "urn:oid:2.16.578.1.12.4.1.4.2";
inline constexpr std::string_view system_hpr = "urn:oid:2.16.578.1.12.4.1.4.4";
inline constexpr std::string_view system_org_nr = "urn:oid:2.16.578.1.12.4.1.4.101";
inline constexpr std::string_view system_her_id = "urn:oid:2.16.578.1.12.4.1.2";
inline constexpr std::string_view system_loinc = "http://loinc.org";

// LOINC: the totals, and the panels a QuestionnaireResponse names as its questionnaire.
inline constexpr std::string_view loinc_phq9_total = "44261-6";
inline constexpr std::string_view loinc_gad7_total = "70274-6";
inline constexpr std::string_view loinc_phq9_panel = "44249-1";
inline constexpr std::string_view loinc_gad7_panel = "69737-5";

// A mapping failure: what is wrong, and where (a FHIRPath-like location, may be empty).
struct mapping_error {
    std::string message;
    std::string path;
    std::string text() const { return path.empty() ? message : path + ": " + message; }
};

template <class T>
using result = boost::system::result<T, mapping_error>;

[[noreturn]] void throw_exception_from_error(mapping_error const& e,
                                             boost::source_location const& loc);

// A UUID derived from `seed` (SHA-256, version 8, RFC 9562): the same seed always gives the same
// id, so a retried delivery names the same resources.
std::string derived_uuid(std::string_view seed);

// The severity band of a PHQ-9 or GAD-7 total (docs/rph.md); empty for other instruments or a
// score out of range.
std::string_view score_band(std::string_view instrument, double score);

// "PHQ-9" / "GAD-7" for the usual spellings (phq9, PHQ-9, phq_9 …); the input otherwise.
std::string canonical_instrument(std::string_view instrument);

// A FHIR dateTime from an ISO-8601 date or date-time: "YYYY", "YYYY-MM-DD", or a full date-time
// with seconds and zone; a date-time without seconds gets ":00"; one without a zone keeps its
// date only (FHIR requires a zone with a time). Empty when the text is not a date.
std::string fhir_date_time(std::string_view iso);
// A FHIR instant (date-time with seconds and zone), or empty.
std::string fhir_instant(std::string_view iso);

}  // namespace samband::fhir
