// Code list 8221 (errors in an application receipt, Apprec): the codes this codec uses, with the
// Norwegian texts that go in Error/@DN.
#pragma once

#include <string_view>

namespace samband::nhn::apprec_codes {

struct code {
    std::string_view v;   // Error/@V
    std::string_view dn;  // Error/@DN
};

inline constexpr std::string_view system = "2.16.578.1.12.4.1.1.8221";  // Error/@S

// Checked against the shared samples (E21 in app-rec/*/example-avvist.xml; E10, E20, E31 in
// edi2/get-apprecinfo-*.json) and, for the texts and the T codes, against two public
// implementations of code list 8221 (Digdir's integrasjonspunkt and NAV's emottak).
inline constexpr code ugyldig_meldingsidentifikator{"E10", "Ugyldig meldingsidentifikator"};
inline constexpr code lege_finnes_ikke{"E20", "Lege finnes ikke"};
inline constexpr code mottaker_finnes_ikke{"E21", "Mottaker finnes ikke"};
inline constexpr code fnr_mangler{"E30", "Pasientens fødselsnummer mangler"};
inline constexpr code fnr_feil{"E31", "Pasientens fødselsnummer er feil"};
inline constexpr code pasient_finnes_ikke{"E35", "Pasienten finnes ikke i mottakersystemet"};
inline constexpr code ikke_xml{"T01", "Ikke XML / ikke 'well formed' / uleselig"};
inline constexpr code validerer_ikke{"T02", "XML validerer ikke"};
inline constexpr code format_ikke_stottet{"T10", "Støtter ikke meldingsformatet"};
inline constexpr code annen_formatfeil{"T99", "Annen feil på format"};
inline constexpr code annen_feil{"X99", "Annen feil"};

}  // namespace samband::nhn::apprec_codes
