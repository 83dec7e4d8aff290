#include "ingest/ingest.hpp"

#include "core/ids.hpp"

#include <rapidjson/pointer.h>

#if __has_include(<samband/identifiers.hpp>)
#include <samband/identifiers.hpp>
#define SAMBAND_HAVE_IDENT 1
#endif

namespace samband::ingest {

namespace {

constexpr std::size_t kMaxKeptPayload = 256 * 1024;

// sha256 of an event's content as its source gave it: the stored envelope without the id the host
// gave it (its only part that differs between two submissions of the same input).
std::string content_hash(std::string_view envelope, std::string_view id) {
    auto at = id.empty() ? std::string_view::npos : envelope.find(id);
    if (at == std::string_view::npos) return core::sha256_hex(envelope);
    // The two parts around the id hashed in turn: the digest of their concatenation, without
    // copying an envelope of up to max_event_bytes.
    return core::sha256_hex({envelope.substr(0, at), envelope.substr(at + id.size())});
}

std::string idempotency_key_of(std::string_view raw) {
    if (auto p = codec::parse_json(raw); p && p->IsObject())
        return std::string(codec::string_at(*p, "/idempotency_key"));
    return {};
}

std::string keep_payload(std::string_view raw) {
    if (raw.size() <= kMaxKeptPayload) return std::string(raw);
    return std::string(raw.substr(0, kMaxKeptPayload)) + "\n…[truncated]";
}

// Checks a patient identifier; empty string when valid, else the reason.
std::string check_person_id(std::string_view field, std::string_view id, bool allow_synthetic) {
#ifdef SAMBAND_HAVE_IDENT
    auto r = samband::ident::check_person_id(id, {.allow_synthetic = allow_synthetic});
    if (r.ok) return {};
    return std::string(field) + ": " + std::string(r.reason);
#else
    (void)allow_synthetic;
    if (id.size() != 11) return std::string(field) + ": expected 11 digits";
    return {};
#endif
}

// Instrument-specific ranges (RPH.md): PHQ-9 0–27, GAD-7 0–21, integers.
std::string check_score(const std::string& where, const rapidjson::Value& v) {
    if (!v.IsObject()) return {};
    auto ins = v.FindMember("instrument");
    auto sc = v.FindMember("score");
    if (ins == v.MemberEnd() || sc == v.MemberEnd() || !ins->value.IsString() ||
        !sc->value.IsNumber())
        return {};
    std::string instrument = ins->value.GetString();
    double score = sc->value.GetDouble();
    int max = instrument == "PHQ-9" ? 27 : instrument == "GAD-7" ? 21 : -1;
    if (max < 0) return {};
    if (score != static_cast<int>(score))
        return where + "/score: " + instrument + " scores are whole numbers";
    if (score < 0 || score > max)
        return where + "/score: out of range for " + instrument + " (0–" + std::to_string(max) +
               ")";
    return {};
}

std::string check_scores(const std::string& where, const rapidjson::Value* arr) {
    if (!arr || !arr->IsArray()) return {};
    for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
        std::string e = check_score(where + "/" + std::to_string(i), (*arr)[i]);
        if (!e.empty()) return e;
    }
    return {};
}

int two(std::string_view s, std::size_t at) {
    return (s[at] - '0') * 10 + (s[at + 1] - '0');
}

bool digits(std::string_view s, std::size_t from, std::size_t n) {
    if (from + n > s.size()) return false;
    for (std::size_t i = from; i < from + n; ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

// A text shaped like an ISO-8601 date or date-time ("2026-13-45", "2026-02-30T25:00") must be a
// real one. Returns "" or the broken rule (never the value).
std::string check_calendar(std::string_view s) {
    if (s.size() < 10 || !digits(s, 0, 4) || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' ||
        !digits(s, 8, 2))
        return {};
    if (s.size() > 10 && s[10] != 'T') return {};  // not a date-time: free text
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + two(s, 2);
    int m = two(s, 5), d = two(s, 8);
    if (m < 1 || m > 12) return "not a calendar date (the month must be 01-12)";
    static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int last = days[m - 1] + (m == 2 && leap ? 1 : 0);
    if (d < 1 || d > last)
        return "not a calendar date (the day must be 01-" + std::to_string(last) +
               " in that month)";
    if (s.size() > 10) {
        if (!digits(s, 11, 2) || two(s, 11) > 23)
            return "not a time of day (the hour must be 00-23)";
        if (s.size() > 13 && s[13] == ':' && digits(s, 14, 2) && two(s, 14) > 59)
            return "not a time of day (the minute must be 00-59)";
        if (s.size() > 16 && s[16] == ':' && digits(s, 17, 2) && two(s, 17) > 60)
            return "not a time of day (the second must be 00-60)";
    }
    return {};
}

// Where check_dates is in the event: the chain of member names and indexes from the root, made
// into a JSON Pointer only for a failure (building it for every member cost more than the check).
struct place {
    const place* up;
    std::string_view key;  // a member's name; unused for an array element
    std::size_t index;
    bool element;
};

std::string pointer_of(const place* at) {
    std::vector<const place*> chain;
    for (; at; at = at->up) chain.push_back(at);
    std::string p;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        p += '/';
        if ((*it)->element) {
            p += std::to_string((*it)->index);
            continue;
        }
        for (char c : (*it)->key) {
            if (c == '~')
                p += "~0";
            else if (c == '/')
                p += "~1";
            else
                p += c;
        }
    }
    return p.empty() ? std::string("/") : p;
}

// Every date-shaped string in the event, by JSON Pointer.
std::string check_dates(const rapidjson::Value& v, const place* at = nullptr, int depth = 0) {
    if (depth > 64) return {};
    if (v.IsString()) {
        std::string why = check_calendar(std::string_view(v.GetString(), v.GetStringLength()));
        return why.empty() ? std::string() : pointer_of(at) + ": " + why;
    }
    if (v.IsObject()) {
        for (const auto& m : v.GetObject()) {
            place here{at, std::string_view(m.name.GetString(), m.name.GetStringLength()), 0,
                       false};
            if (std::string e = check_dates(m.value, &here, depth + 1); !e.empty()) return e;
        }
    } else if (v.IsArray()) {
        std::size_t i = 0;
        for (const auto& e : v.GetArray()) {
            place here{at, {}, i++, true};
            if (std::string w = check_dates(e, &here, depth + 1); !w.empty()) return w;
        }
    }
    return {};
}

}  // namespace

std::string check_rph(const std::string& type, const rapidjson::Value& data) {
    auto get = [&](const char* ptr) { return rapidjson::Pointer(ptr).Get(data); };
    if (type == "rph.assessment.scored") return check_score("/data", data);
    if (type == "rph.treatment.started")
        return check_scores("/data/assessment/scores", get("/assessment/scores"));
    if (type == "rph.session.attended") return check_scores("/data/scores", get("/scores"));
    if (type == "rph.treatment.ended") {
        std::string e = check_scores("/data/scores/start", get("/scores/start"));
        return e.empty() ? check_scores("/data/scores/end", get("/scores/end")) : e;
    }
    return {};
}

ingest::ingest(store::store& st, const codec::schema_set& schemas, options opts, core::logger& log)
    : store_(st), schemas_(schemas), opts_(opts), log_(log) {}

void ingest::set_routes(route_fn fn) {
    std::lock_guard lock(mu_);
    routes_ = std::make_shared<route_fn>(std::move(fn));
}

void ingest::set_options(const options& o) {
    std::lock_guard lock(mu_);
    opts_.lim.max_event_bytes = o.lim.max_event_bytes;
    opts_.lim.max_attachment_bytes = o.lim.max_attachment_bytes;
    opts_.lim.max_attachments = o.lim.max_attachments;
    opts_.allow_synthetic_ids = o.allow_synthetic_ids;
}

void ingest::set_observers(observers obs) {
    std::lock_guard lock(mu_);
    obs_ = std::move(obs);
}

boost::system::result<rapidjson::Document, std::string> ingest::validate(
    std::string_view source, std::string_view envelope_json,
    std::vector<store::attachment_input>* attachments) const {
    options o;
    {
        std::lock_guard lock(mu_);
        o = opts_;
    }
    return validate_envelope(schemas_, o, source, envelope_json, attachments);
}

boost::system::result<rapidjson::Document, std::string> validate_envelope(
    const codec::schema_set& schemas_, const options& opts_, std::string_view source,
    std::string_view envelope_json, std::vector<store::attachment_input>* attachments) {
    if (envelope_json.size() > opts_.lim.max_event_bytes) {
        return "event is " + std::to_string(envelope_json.size()) + " bytes, over the limit of " +
               std::to_string(opts_.lim.max_event_bytes);
    }
    auto parsed = codec::parse_json(envelope_json, opts_.lim.max_depth);
    if (!parsed) return parsed.error();
    rapidjson::Document doc = std::move(*parsed);
    if (!doc.IsObject()) return std::string("/: an event must be a JSON object");

    if (schemas_.has("samband.event")) {
        if (auto err = schemas_.validate("samband.event", doc)) return *err;
    } else {
        for (const char* f : {"type", "idempotency_key"}) {
            auto it = doc.FindMember(f);
            if (it == doc.MemberEnd() || !it->value.IsString() || it->value.GetStringLength() == 0)
                return std::string("/") + f + ": required string field is missing";
        }
    }
    auto type_it = doc.FindMember("type");
    if (type_it == doc.MemberEnd() || !type_it->value.IsString())
        return std::string("/type: required string field is missing");
    std::string type = type_it->value.GetString();
    if (!schemas_.has(type) || type == "samband.event")
        return "/type: unknown event type \"" + type + "\"";
    auto data_it = doc.FindMember("data");
    if (data_it == doc.MemberEnd()) return std::string("/data: required field is missing");
    if (auto err = schemas_.validate(type, data_it->value)) return "/data" + *err;
    if (std::string e = check_rph(type, data_it->value); !e.empty()) return e;
    if (std::string e = check_dates(doc); !e.empty()) return e;

    auto subj = doc.FindMember("subject");
    if (subj == doc.MemberEnd() || !subj->value.IsObject() ||
        (!subj->value.HasMember("fnr") && !subj->value.HasMember("dnr")))
        return std::string("/subject: the patient needs a fødselsnummer (fnr) or D-number (dnr)");
    if (subj != doc.MemberEnd() && subj->value.IsObject()) {
        for (const char* f : {"fnr", "dnr"}) {
            auto idv = subj->value.FindMember(f);
            if (idv == subj->value.MemberEnd()) continue;
            if (!idv->value.IsString()) return std::string("/subject/") + f + ": must be a string";
            std::string why = check_person_id(std::string("/subject/") + f, idv->value.GetString(),
                                              opts_.allow_synthetic_ids);
            if (!why.empty()) return why;
        }
    }

    // Attachments: the host computes sizes and hashes; the envelope lists what the source sent.
    auto& alloc = doc.GetAllocator();
    rapidjson::Value metas(rapidjson::kArrayType);
    if (attachments) {
        if (attachments->size() > opts_.lim.max_attachments) {
            return "too many attachments: " + std::to_string(attachments->size()) + " (limit " +
                   std::to_string(opts_.lim.max_attachments) + ")";
        }
        std::size_t n = 0;
        for (auto& a : *attachments) {
            ++n;
            if (a.path.empty()) {
                a.meta.size = a.bytes.size();
                a.meta.sha256 = core::sha256_hex(a.bytes);
            } else {
                core::file_digest d;
                std::string err;
                if (!core::sha256_file(a.path, d, err))
                    return "attachment " + a.meta.filename + ": " + err;
                a.meta.size = d.size;
                a.meta.sha256 = d.sha256;
            }
            if (a.meta.size > opts_.lim.max_attachment_bytes) {
                return "attachment " + a.meta.filename + " is " + std::to_string(a.meta.size) +
                       " bytes, over the limit of " +
                       std::to_string(opts_.lim.max_attachment_bytes);
            }
            a.meta.id = "a" + std::to_string(n);
            if (a.meta.media_type.empty()) a.meta.media_type = "application/octet-stream";
            rapidjson::Value m(rapidjson::kObjectType);
            m.AddMember("id", rapidjson::Value(a.meta.id.c_str(), alloc), alloc);
            m.AddMember("filename", rapidjson::Value(a.meta.filename.c_str(), alloc), alloc);
            m.AddMember("media_type", rapidjson::Value(a.meta.media_type.c_str(), alloc), alloc);
            m.AddMember("size", rapidjson::Value(static_cast<std::uint64_t>(a.meta.size)), alloc);
            m.AddMember("sha256", rapidjson::Value(a.meta.sha256.c_str(), alloc), alloc);
            metas.PushBack(m, alloc);
        }
    }
    doc.RemoveMember("attachments");
    doc.AddMember("attachments", metas, alloc);
    doc.RemoveMember("id");
    doc.RemoveMember("source");
    std::string id = core::uuid_v7();
    doc.AddMember("id", rapidjson::Value(id.c_str(), alloc), alloc);
    doc.AddMember("source", rapidjson::Value(source.data(), source.size(), alloc), alloc);
    if (!doc.HasMember("schema")) doc.AddMember("schema", "samband.event/1", alloc);
    return doc;
}

void ingest::reject(std::string_view source, std::string reason, std::string payload,
                    std::string idempotency_key,
                    std::function<void(const plugin::submit_result&)> done) {
    log_.warn("ingest.reject", reason, {{"source", source}, {"key", idempotency_key}});
    observers obs;
    {
        std::lock_guard lock(mu_);
        obs = obs_;
    }
    if (obs.rejected) obs.rejected(source, reason);
    store::error_record rec;
    rec.source = std::string(source);
    rec.reason = reason;
    rec.payload = keep_payload(payload);
    rec.idempotency_key = std::move(idempotency_key);
    ++pending_;
    store_.record_error(
        std::move(rec), [this, reason, done = std::move(done)](boost::system::error_code ec) {
            --pending_;
            plugin::submit_result r;
            if (ec) {
                r.status = SAMBAND_RETRY;
                r.message = "store cannot keep the rejected input now: " + ec.message();
            } else {
                r.status = SAMBAND_INVALID;
                r.message = "invalid event: " + reason;
            }
            done(r);
        });
}

void ingest::submit(std::string_view source, plugin::submission sub,
                    std::function<void(const plugin::submit_result&)> done) {
    if (stopping_.load()) {
        done({SAMBAND_RETRY, {}, false, "samband is stopping; submit again later"});
        return;
    }
    if (pending_.load() >= opts_.lim.max_pending_submits) {
        done({SAMBAND_RETRY, {}, false, "samband is busy (store queue full); submit again later"});
        return;
    }
    // A source's own refusal (a row it could not map): kept in the error store with its reason.
    if (sub.envelope_json.find("\"samband.input.rejected\"") != std::string::npos) {
        if (auto p = codec::parse_json(sub.envelope_json, opts_.lim.max_depth);
            p && p->IsObject() && codec::string_at(*p, "/type") == "samband.input.rejected") {
            std::string reason(codec::string_at(*p, "/rejected/reason"));
            std::string input(codec::string_at(*p, "/rejected/input"));
            std::string key(codec::string_at(*p, "/idempotency_key"));
            if (reason.empty()) reason = "refused by the source (no reason given)";
            reject(source, std::move(reason), std::move(input), std::move(key), std::move(done));
            return;
        }
    }
    std::vector<store::attachment_input> atts;
    atts.reserve(sub.attachments.size());
    for (auto& a : sub.attachments) {
        store::attachment_input in;
        in.meta.filename = a.filename;
        in.meta.media_type = a.media_type;
        in.bytes = std::move(a.bytes);
        in.path = a.path;
        atts.push_back(std::move(in));
    }
    auto valid = validate(source, sub.envelope_json, &atts);
    if (!valid) {
        std::string key;
        if (auto p = codec::parse_json(sub.envelope_json); p && p->IsObject())
            key = std::string(codec::string_at(*p, "/idempotency_key"));
        reject(source, valid.error(), std::move(sub.envelope_json), std::move(key),
               std::move(done));
        return;
    }
    rapidjson::Document& doc = *valid;

    std::shared_ptr<route_fn> routes;
    observers obs;
    {
        std::lock_guard lock(mu_);
        routes = routes_;
        obs = obs_;
    }
    store::new_event ev;
    ev.id = std::string(codec::string_at(doc, "/id"));
    ev.source = std::string(source);
    ev.idempotency_key = std::string(codec::string_at(doc, "/idempotency_key"));
    ev.type = std::string(codec::string_at(doc, "/type"));
    ev.occurred_at = std::string(codec::string_at(doc, "/occurred_at"));
    ev.treatment_id = std::string(codec::string_at(doc, "/data/treatment_id"));
    std::string_view pid = codec::string_at(doc, "/subject/fnr");
    if (pid.empty()) pid = codec::string_at(doc, "/subject/dnr");
    ev.order_key = pid.empty() ? std::string() : core::sha256_hex(pid).substr(0, 24);
    if (routes && *routes) ev.deliveries = (*routes)(source, doc);
    // The id, source and attachment list added: a little longer than what the source gave.
    ev.envelope_json = codec::to_json(doc, sub.envelope_json.size() + 256 * (1 + atts.size()));
    ev.content_sha256 = content_hash(ev.envelope_json, ev.id);
    ev.attachments = std::move(atts);

    if (ev.deliveries.empty()) {
        // At info once per source and type (an import-only endpoint would otherwise log every
        // row), at debug after that.
        bool first;
        {
            std::lock_guard lock(mu_);
            first = no_route_told_.insert(ev.source + '\x1f' + ev.type).second;
        }
        log_.log(first ? core::log_level::info : core::log_level::debug, "ingest.no_route",
                 first ? "no route matches; event kept without deliveries (said once per source "
                         "and type; later ones at debug)"
                       : "no route matches; event kept without deliveries",
                 {{"event", ev.id}, {"source", source}, {"type", ev.type}});
    }
    std::string id = ev.id, type = ev.type, src(source), treatment = ev.treatment_id;
    ++pending_;
    store_.submit(std::move(ev), [this, id, type, src, treatment, obs,
                                  raw = std::move(sub.envelope_json),
                                  done = std::move(done)](boost::system::error_code ec,
                                                          store::submit_outcome out) mutable {
        --pending_;
        if (!ec && out.conflict) {
            // The key names an event this source already gave with other content: kept in the
            // error store for the operator, never silently dropped as a duplicate.
            std::string key(idempotency_key_of(raw));
            reject(src,
                   "/idempotency_key: already used by this source for event " + out.event_id +
                       " with other content (a conflict: the first event is kept, this input is "
                       "not stored as an event)",
                   std::move(raw), std::move(key), std::move(done));
            return;
        }
        plugin::submit_result r;
        if (ec && store::is_blob_folder_error(ec)) {
            // The store raised one alert for the attachment folder's trouble; each refused
            // submit is a debug line only (a source retrying must not flood the log).
            r.status = SAMBAND_RETRY;
            r.message = "not accepted: " + ec.message();
            log_.debug("ingest.store", r.message, {{"event", id}, {"source", src}});
        } else if (ec) {
            r.status = SAMBAND_RETRY;
            r.message = "store error, not accepted: " + ec.message();
            log_.error("ingest.store", r.message, {{"event", id}, {"source", src}});
        } else {
            r.status = SAMBAND_OK;
            r.event_id = out.event_id;
            r.duplicate = out.duplicate;
            if (out.duplicate) {
                log_.debug("ingest.duplicate", "duplicate idempotency key; first event kept",
                           {{"event", out.event_id}, {"source", src}});
            } else {
                // Per event at debug: every accepted event is in the audit trail already, and a
                // line per event at info cost a write per row of a bulk import.
                log_.debug("ingest.accepted", "event stored",
                           {{"event", out.event_id}, {"source", src}, {"type", type}});
                if (obs.accepted) obs.accepted(src, type);
            }
        }
        done(r);
        if (!ec && !out.duplicate && type == "rph.consent.changed" && !treatment.empty() &&
            obs.consent_changed)
            obs.consent_changed(treatment);
        if (!ec && obs.committed) obs.committed();
    });
}

}  // namespace samband::ingest
