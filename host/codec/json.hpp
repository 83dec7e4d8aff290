// JSON helpers shared by ingest, the engine and preview: safe parsing, schemas, readable errors.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/schema.h>
#include <samband/json.hpp>

#include <boost/system/result.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::codec {

// The daemon's one JSON entry point (samband::json::parse: iterative, depth- and size-limited;
// RapidJSON 1.1.0 has no depth limit of its own). Every JSON text the host reads comes through
// here. The error names the size, the depth and its offset, or the line, column and reason.
boost::system::result<rapidjson::Document, std::string> parse_json(std::string_view text,
                                                                   const json::limits& lim);
boost::system::result<rapidjson::Document, std::string> parse_json(std::string_view text,
                                                                   std::size_t max_depth = 64);

// Serialises a value compactly; `expected_size` (when known) sizes the buffer once.
std::string to_json(const rapidjson::Value& v, std::size_t expected_size = 0);

// The string at JSON pointer `ptr`, or empty.
std::string_view string_at(const rapidjson::Value& root, const char* ptr);

// A set of compiled JSON Schemas (draft-04) by name (file name without ".json").
class schema_set {
public:
    // Loads every *.json in `dir`. Throws std::runtime_error naming the file on a bad schema.
    static schema_set load_dir(const std::string& dir);
    // Adds (or replaces) one schema from its text; the error says why it cannot be used.
    boost::system::result<void, std::string> add(const std::string& name,
                                                 std::string_view schema_json);
    bool has(const std::string& name) const { return schemas_.count(name) != 0; }
    // Validates; nullopt when valid, else a sentence naming the field, e.g.
    // "/data/scores/0/score: 31 is greater than the maximum 27".
    std::optional<std::string> validate(const std::string& name, const rapidjson::Value& doc) const;
    std::size_t size() const { return schemas_.size(); }

private:
    // A compiled schema with its validator. RapidJSON 1.1 keeps a "pattern" regex's match state
    // inside the SchemaDocument, so one compiled copy serves one validation at a time.
    struct compiled {
        explicit compiled(const rapidjson::Document& source) : schema(source), validator(schema) {}
        rapidjson::SchemaDocument schema;
        rapidjson::SchemaValidator validator;
    };
    struct entry {
        std::unique_ptr<rapidjson::Document> source;
        // Idle compiled copies: a validation takes one (compiling another when every copy is in
        // use on another thread) and gives it back, so threads never wait for each other.
        std::mutex mu;
        std::vector<std::unique_ptr<compiled>> idle;
    };
    std::map<std::string, std::shared_ptr<entry>> schemas_;
};

}  // namespace samband::codec
