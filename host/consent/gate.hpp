// The consent and objection gate (DESIGN §6): decides, at dispatch, whether a note may go to a GP.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <vector>

namespace samband::consent {

enum class verdict { send, hold, block };

struct decision {
    verdict what = verdict::hold;
    std::string reason;  // always set: the audit log records it
};

// One event of the treatment as the gate needs it, in the order they were received.
struct treatment_event {
    std::string type;
    const rapidjson::Value* data = nullptr;  // the event's `data` object (borrowed)
};

// Decides for an event of `type` (with its `data`) going to the patient's GP, given every event of
// the same treatment received so far (including this one), and whether an operator overrode the
// gate for this delivery. Rules:
//  - rph.treatment.started, rph.info.requested: need consent to inform the GP ("given"), as last
//    recorded (the start note's consent_gp, then any rph.consent.changed); refused or withdrawn →
//    block; never recorded → hold.
//  - rph.treatment.ended: goes unless the patient objected (the end note's `objection`, then any
//    rph.consent.changed); objected → block; unknown → hold; no start note recorded → hold.
//  - other types: send.
decision decide(const std::string& type, const rapidjson::Value& data,
                const std::vector<treatment_event>& history, bool overridden);

}  // namespace samband::consent
