// A transform for tests that breaks its output on command (config {"mode": …}):
//   keep        the event as given, plus a "note" object (a valid output)
//   change_id   a different "id"
//   drop_data   no "data"
//   bad_score   data.score set to 99 (over the PHQ-9 maximum)
//   bad_note    "note" as a string
//   extra       an unknown top-level member "x"
//   not_json    text that is not JSON
#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>

namespace {

using samband::sdk::error;

class fixture_transform {
public:
    static constexpr const char* name = "fixture-transform";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description = "Test transform that breaks its output on command";

    fixture_transform(samband::sdk::host, std::string_view config) {
        rapidjson::Document d;
        if (!samband::json::parse(config, d).empty() || !d.IsObject() || !d.HasMember("mode") ||
            !d["mode"].IsString())
            throw error(SAMBAND_INVALID, "fixture-transform: config needs \"mode\"");
        mode_ = d["mode"].GetString();
    }

    std::string transform(const samband::sdk::event_view& e) {
        if (mode_ == "not_json") return "{ not json";
        rapidjson::Document d;
        if (!samband::json::parse(e.envelope_json, d).empty() || !d.IsObject())
            throw error(SAMBAND_INVALID, "fixture-transform: the event is not a JSON object");
        auto& a = d.GetAllocator();
        if (mode_ == "change_id") d["id"].SetString("00000000-0000-7000-8000-000000000000", a);
        if (mode_ == "drop_data") d.RemoveMember("data");
        if (mode_ == "bad_score" && d.HasMember("data") && d["data"].IsObject()) {
            d["data"].RemoveMember("score");
            d["data"].AddMember("score", 99, a);
        }
        if (mode_ == "bad_note")
            d.AddMember("note", "a note as text", a);
        else
            d.AddMember("note", rapidjson::Value(rapidjson::kObjectType), a);
        if (mode_ == "extra") d.AddMember("x", 1, a);
        rapidjson::StringBuffer buf;
        rapidjson::Writer<rapidjson::StringBuffer> w(buf);
        d.Accept(w);
        return std::string(buf.GetString(), buf.GetSize());
    }

private:
    std::string mode_;
};

}  // namespace

SAMBAND_PLUGIN(fixture_transform)
