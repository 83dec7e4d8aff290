// XML namespaces, message types and code-list OIDs of the NHN messages this codec reads and writes.
#pragma once

#include <string_view>

namespace samband::nhn::names {

inline constexpr std::string_view msghead_ns = "http://www.kith.no/xmlstds/msghead/2006-05-24";
inline constexpr std::string_view dialog_11_ns = "http://www.kith.no/xmlstds/dialog/2013-01-23";
inline constexpr std::string_view dialog_10_ns = "http://www.kith.no/xmlstds/dialog/2006-10-11";
inline constexpr std::string_view apprec_10_ns = "http://www.kith.no/xmlstds/apprec/2004-11-21";
inline constexpr std::string_view apprec_11_ns = "http://www.kith.no/xmlstds/apprec/2012-02-15";
inline constexpr std::string_view base64_ns = "http://www.kith.no/xmlstds/base64container";
inline constexpr std::string_view fk1_ns = "http://www.kith.no/xmlstds/felleskomponent1";

inline constexpr std::string_view msghead_mig = "v1.2 2006-05-24";
inline constexpr std::string_view apprec_11_mig = "v1.1 2012-02-15";

// MsgInfo/Type V (code list 8279 "Meldingens funksjon").
inline constexpr std::string_view dialog_helsefaglig = "DIALOG_HELSEFAGLIG";
inline constexpr std::string_view dialog_foresporsel = "DIALOG_FORESPORSEL";
inline constexpr std::string_view dialog_svar = "DIALOG_SVAR";
inline constexpr std::string_view dialog_notat = "DIALOG_NOTAT";  // older Dialogmelding 1.0 use
inline constexpr std::string_view apprec = "APPREC";

// Identifier type systems.
inline constexpr std::string_view oid_org_ident = "2.16.578.1.12.4.1.1.9051";     // HER, ENH
inline constexpr std::string_view oid_person_ident = "2.16.578.1.12.4.1.1.8116";  // FNR DNR HPR HER
inline constexpr std::string_view oid_role_to_patient = "2.16.578.1.12.4.1.1.9034";  // 6 = Fastlege
inline constexpr std::string_view oid_tema_helsefaglig = "2.16.578.1.12.4.1.1.7322";
inline constexpr std::string_view oid_opplysning_pleie_omsorg = "2.16.578.1.12.4.1.1.9152";
inline constexpr std::string_view oid_opplysning_lege = "2.16.578.1.12.4.1.1.9153";
inline constexpr std::string_view oid_apprec_error = "2.16.578.1.12.4.1.1.8221";

}  // namespace samband::nhn::names
