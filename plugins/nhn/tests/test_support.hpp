// Test helpers for the NHN codec: paths, a shared codec, a rendered note to start from.
#pragma once

#include "nhn/codec/codec.hpp"

#include <cstdint>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace samband::nhn {
// Readable codes in GoogleTest failure messages.
inline void PrintTo(codec_errc code, std::ostream* os) {
    *os << to_string(code);
}
}  // namespace samband::nhn

namespace samband::nhn::test {

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::string s = read_file(path);
    return {s.begin(), s.end()};
}

inline std::string shared(const std::string& rel) {
    return std::string(NHN_TEST_DATA_DIR) + "/" + rel;
}

inline const codec& the_codec() {
    static const codec c(codec_config{NHN_XSD_DIR, {}});
    return c;
}

// The example of docs/rendered-note.md, with a synthetic patient from shared/testdata.
inline std::string start_note_json(const std::string& patient_id = "14839134623",
                                   const std::string& id_type = "FNR",
                                   const std::string& extra_note_fields = "",
                                   const std::string& attachments = "") {
    return R"({
  "schema": "samband.event/1",
  "id": "0192f7c8-0000-7000-8000-000000000001", "type": "rph.treatment.started",
  "occurred_at": "2026-11-24T10:15:00+01:00",
  "subject": { "fnr": ")" +
           patient_id + R"(", "name": { "given": "Kari", "family": "Nordmann" } },
  "attachments": [)" +
           attachments + R"(],
  "note": {
    "kind": "oppstartsnotat",
    "title": "Oppstartsnotat fra Rask psykisk helsehjelp",)" +
           extra_note_fields + R"(
    "sections": [ { "heading": "Årsak til kontakt", "text": "Søvnvansker og bekymring." } ],
    "text": "Årsak til kontakt\nSøvnvansker og bekymring. Blåbærsyltetøy: æøå ÆØÅ.",
    "issued_at": "2026-11-24T10:15:00+01:00",
    "sender": {
      "organisation": { "name": "Testby kommune", "her_id": "9900001", "org_nr": "999000001" },
      "service":      { "name": "Rask psykisk helsehjelp Testby", "her_id": "9900011" },
      "therapist":    { "given_name": "Marte", "family_name": "Terapeut", "title": "Psykolog",
                        "hpr": "9911001", "phone": "+4799000001" }
    },
    "receiver": {
      "organisation": { "name": "Fjordlegene legesenter", "her_id": "9900100", "org_nr": "999000100" },
      "person":       { "given_name": "Lise", "family_name": "Fastlege", "her_id": "9900101", "hpr": "9900101" }
    },
    "patient": { "id": ")" +
           patient_id + R"(", "id_type": ")" + id_type +
           R"(", "given_name": "Kari", "family_name": "Nordmann" }
  }
})";
}

inline rendered_note start_note() {
    return parse_rendered_note(start_note_json()).value();
}

inline serialize_options options(const std::string& delivery = "delivery-1") {
    serialize_options o;
    o.msg_id = derive_uuid(delivery);
    return o;
}

}  // namespace samband::nhn::test
