// Benchmarks of the FHIR mappings, one Bundle per iteration, single thread: build + serialise the
// transaction Bundle of a start note without attachment (goal ≥ 5,000/s/core), and parse + score
// an incoming QuestionnaireResponse Bundle. The baseline is a plain parse + serialise of the same
// envelope through samband/json.hpp and RapidJSON's Writer.
#include "fhir/bundle.hpp"
#include "fhir/inbound.hpp"

#include <samband/json.hpp>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <benchmark/benchmark.h>

#include <string>

namespace {

const std::string note_json = R"({
  "schema": "samband.event/1", "id": "0192f7c8-0000-7000-8000-000000000001",
  "type": "rph.treatment.started", "occurred_at": "2026-11-24T10:15:00+01:00",
  "subject": { "fnr": "14839134623", "name": {"given": "Kari", "family": "Nordmann"} },
  "note": {
    "kind": "oppstartsnotat", "title": "Oppstartsnotat fra Rask psykisk helsehjelp",
    "message_type": "DIALOG_HELSEFAGLIG",
    "sections": [ { "heading": "Årsak til kontakt", "text": "Søvnvansker og bekymring." } ],
    "text": "Årsak til kontakt\nSøvnvansker og bekymring over lengre tid. Tiltak: samtaler, søvnhygiene, gradvis eksponering. Kartlegging: PHQ-9 14, GAD-7 11.\n\nPlan\nSeks samtaler over åtte uker, evaluering etter fire.",
    "issued_at": "2026-11-24T10:15:00+01:00",
    "sender": {
      "organisation": { "name": "Testby kommune", "her_id": "9900001", "org_nr": "999000001" },
      "service": { "name": "Rask psykisk helsehjelp Testby", "her_id": "9900011" },
      "therapist": { "given_name": "Marte", "family_name": "Terapeut", "title": "Psykolog",
                     "hpr": "9911001", "phone": "+4799000001" } },
    "receiver": {
      "organisation": { "name": "Fjordlegene legesenter", "her_id": "9900100", "org_nr": "999000100" },
      "person": { "given_name": "Lise", "family_name": "Fastlege", "her_id": "9900101", "hpr": "9900101" } },
    "patient": { "id": "14839134623", "id_type": "FNR", "given_name": "Kari", "family_name": "Nordmann" }
  }
})";

std::string qr_bundle() {
    std::string items;
    for (int i = 1; i <= 9; ++i)
        items += std::string(i > 1 ? "," : "") + R"({"linkId":")" + std::to_string(i) +
                 R"(","answer":[{"valueInteger":)" + std::to_string(i % 4) + "}]}";
    return R"({"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:9b0c0d3a-0000-4000-8000-000000000002","resource":{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}]},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"QuestionnaireResponse","identifier":{"system":"urn:tool","value":"qr-1"},"questionnaire":"http://loinc.org/q/44249-1","status":"completed","subject":{"reference":"urn:uuid:9b0c0d3a-0000-4000-8000-000000000002"},"basedOn":[{"identifier":{"value":"T-1001"}}],"authored":"2026-09-22T10:00:00+02:00","item":[)" +
           items + R"(]},"request":{"method":"POST","url":"QuestionnaireResponse"}}]})";
}

void baseline_json_round_trip(benchmark::State& state) {
    for (auto _ : state) {
        rapidjson::Document d;
        auto err = samband::json::parse(note_json, d);
        rapidjson::StringBuffer b;
        rapidjson::Writer<rapidjson::StringBuffer> w(b);
        d.Accept(w);
        benchmark::DoNotOptimize(err);
        benchmark::DoNotOptimize(b.GetString());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(baseline_json_round_trip);

void build_start_note_bundle(benchmark::State& state) {
    std::size_t bytes = 0;
    for (auto _ : state) {
        auto b = samband::fhir::build_bundle(note_json, {});
        if (!b) state.SkipWithError(b.error().text().c_str());
        bytes = b->json.size();
        benchmark::DoNotOptimize(b->json.data());
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["bundle_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(build_start_note_bundle);

void parse_incoming_qr_bundle(benchmark::State& state) {
    const std::string body = qr_bundle();
    samband::fhir::inbound_options o;
    o.allow_synthetic_ids = true;
    for (auto _ : state) {
        auto r = samband::fhir::parse_incoming("", body, o);
        if (!r) state.SkipWithError(r.error().text().c_str());
        benchmark::DoNotOptimize(r->front().envelope_json.data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(parse_incoming_qr_bundle);

}  // namespace
