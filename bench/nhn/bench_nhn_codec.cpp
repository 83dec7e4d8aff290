// Benchmarks of the NHN codec: serialise + validate a start note (without and with a 200 KB
// PDF), parse + validate incoming messages, build an Apprec. One note per iteration.
#include "nhn/codec/codec.hpp"

#include <benchmark/benchmark.h>

#include <fstream>
#include <random>
#include <sstream>

namespace {

using namespace samband::nhn;

const codec& the_codec() {
    static const codec c(codec_config{NHN_XSD_DIR, {}});
    return c;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const char* note_json = R"({
  "schema": "samband.event/1", "id": "0192f7c8-0000-7000-8000-000000000001",
  "type": "rph.treatment.started", "occurred_at": "2026-11-24T10:15:00+01:00",
  "subject": { "fnr": "14839134623" },
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

std::vector<std::uint8_t> synthetic_pdf(std::size_t size) {
    std::vector<std::uint8_t> b(size);
    std::mt19937 rng(42);
    for (auto& c : b) c = static_cast<std::uint8_t>(rng());
    const char head[] = "%PDF-1.4\n";
    std::copy(head, head + sizeof head - 1, b.begin());
    return b;
}

serialize_options opts(std::int64_t i) {
    serialize_options o;
    o.msg_id = derive_uuid("delivery-" + std::to_string(i));
    return o;
}

void BM_SerializeValidate_NoAttachment(benchmark::State& state) {
    const rendered_note note = parse_rendered_note(note_json).value();
    std::int64_t i = 0;
    for (auto _ : state) {
        auto msg = the_codec().serialize(note, {}, opts(i++));
        if (!msg) state.SkipWithError(msg.error().what().c_str());
        benchmark::DoNotOptimize(msg);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SerializeValidate_NoAttachment)->Threads(1)->Threads(2)->UseRealTime();

// Includes reading the envelope JSON: what the plugin does per delivery.
void BM_SerializeValidate_FromJson(benchmark::State& state) {
    std::int64_t i = 0;
    for (auto _ : state) {
        auto msg = the_codec().serialize_json(note_json, {}, opts(i++));
        if (!msg) state.SkipWithError(msg.error().what().c_str());
        benchmark::DoNotOptimize(msg);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SerializeValidate_FromJson);

void BM_BuildOnly_NoAttachment(benchmark::State& state) {
    const rendered_note note = parse_rendered_note(note_json).value();
    std::int64_t i = 0;
    for (auto _ : state) {
        auto msg = build_note_xml(note, {}, opts(i++));
        benchmark::DoNotOptimize(msg);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BuildOnly_NoAttachment);

void BM_SerializeValidate_Pdf200KB(benchmark::State& state) {
    const rendered_note note = parse_rendered_note(note_json).value();
    const auto pdf = synthetic_pdf(200 * 1024);
    outgoing_attachment a{"", "henvisning.pdf", "application/pdf", pdf};
    std::int64_t i = 0;
    for (auto _ : state) {
        auto msg = the_codec().serialize(note, std::span(&a, 1), opts(i++));
        if (!msg) state.SkipWithError(msg.error().what().c_str());
        benchmark::DoNotOptimize(msg);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(pdf.size()));
}
BENCHMARK(BM_SerializeValidate_Pdf200KB);

void BM_ParseValidate_IncomingSample(benchmark::State& state) {
    const std::string xml = read_file(std::string(NHN_TEST_DATA_DIR) +
                                      "/samples/dialogmelding/1.1/helsefaglig-dialog/"
                                      "samsvar-test-message.xml");
    for (auto _ : state) {
        auto m = the_codec().parse(xml);
        if (!m) state.SkipWithError(m.error().what().c_str());
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseValidate_IncomingSample);

void BM_ParseValidate_Incoming200KB(benchmark::State& state) {
    const rendered_note note = parse_rendered_note(note_json).value();
    const auto pdf = synthetic_pdf(200 * 1024);
    outgoing_attachment a{"", "henvisning.pdf", "application/pdf", pdf};
    const std::string xml = the_codec().serialize(note, std::span(&a, 1), opts(0)).value().xml;
    for (auto _ : state) {
        auto m = the_codec().parse(xml);
        if (!m) state.SkipWithError(m.error().what().c_str());
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(xml.size()));
}
BENCHMARK(BM_ParseValidate_Incoming200KB);

void BM_ParseValidate_Apprec(benchmark::State& state) {
    const std::string xml =
        read_file(std::string(NHN_TEST_DATA_DIR) + "/samples/app-rec/1.1/example-avvist.xml");
    for (auto _ : state) {
        auto r = the_codec().parse_receipt(xml);
        if (!r) state.SkipWithError(r.error().what().c_str());
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseValidate_Apprec);

void BM_BuildValidate_Apprec(benchmark::State& state) {
    message_header h;
    h.msg_id = "615aba81-6a88-41d1-a9f5-90b28cfc8b73";
    h.msg_type = "DIALOG_HELSEFAGLIG";
    h.gen_date = "2025-05-13T11:56:21";
    h.sender.her_id = "112374";
    h.receiver.her_id = "8142987";
    auto req = apprec_for(h, apprec_status::ok);
    req.gen_date = "2025-05-13T12:00:00Z";
    for (auto _ : state) {
        auto xml = the_codec().make_apprec(req);
        if (!xml) state.SkipWithError(xml.error().what().c_str());
        benchmark::DoNotOptimize(xml);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BuildValidate_Apprec);

}  // namespace

namespace {

// A 2.2 MB document with 200,000 attributes on one element: refused by the linear pre-scan. Compare
// with BM_ParseValidate_IncomingSample in the same run (goal: well under 1 s per refusal).
void BM_Refuse_200kAttributes(benchmark::State& state) {
    std::string xml = R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><a)";
    for (int i = 0; i < 200 * 1000; ++i) xml += " a" + std::to_string(i) + "=\"x\"";
    xml += "/></MsgHead>";
    for (auto _ : state) {
        auto m = the_codec().parse(xml);
        if (m || m.error().code != codec_errc::too_large) state.SkipWithError("not refused");
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(xml.size()));
}
BENCHMARK(BM_Refuse_200kAttributes)->Unit(benchmark::kMillisecond);

}  // namespace
