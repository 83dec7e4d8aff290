// Renders RPH events into the clinical notes a GP reads (docs/rendered-note.md), from templates.
#pragma once

#include <rapidjson/document.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::rph {

// The severity band of a score (RPH.md), e.g. band("PHQ-9", 12) == "moderat"; empty if unknown.
std::string band(std::string_view instrument, double score);
// "PHQ-9: 14 (moderat)".
std::string score_line(std::string_view instrument, double score);

struct therapist {
    std::string given_name, family_name, title, hpr, phone;
};

struct sender {
    std::string org_name, org_her_id, org_nr;
    std::string service_name, service_her_id;
};

struct renderer_config {
    sender from;
    std::vector<therapist> therapists;  // completes data.therapist by HPR; empty = no check
    std::string templates_json;         // empty = the built-in defaults (config/rph-templates.json)
};

// The outcome: the new envelope JSON, or the reason the event cannot become a note.
struct render_result {
    bool ok = false;
    std::string envelope_json;
    std::string error;
};

class renderer {
public:
    // Throws std::invalid_argument naming the problem when the templates are malformed.
    explicit renderer(renderer_config cfg);
    // Start, end, information request/reply and referral-sent events get a `note`; scores and
    // session attendance get a `journal` entry; other types pass through unchanged.
    render_result render(std::string_view envelope_json) const;

private:
    renderer_config cfg_;
    rapidjson::Document templates_;
};

// The compiled-in default templates (config/rph-templates.json at build time).
const char* default_templates();

}  // namespace samband::rph
