// Example vendor sink for Samband: writes each delivery as a JSON file into a folder.
//
// It shows everything a real adapter needs:
//   * one class and SAMBAND_PLUGIN(Class): the SDK turns it into the C ABI and catches every
//     exception at the boundary (a throw becomes a status and message, never a crash);
//   * config from the endpoint's JSON; errors as sdk::error(SAMBAND_INVALID, "...");
//   * deliver(): return at once, handing the delivery to an sdk::worker that does the I/O on its
//     own thread; complete every delivery exactly once (succeed/retry/fail);
//   * an external id that stays the same when the same delivery comes again (crash recovery
//     may repeat a delivery; the receiver must be able to recognise it);
//   * render(): the exact bytes deliver() would write, with no side effect (samband preview);
//   * logging through the host only (plugins never print; the host masks fødselsnummer).
#include <samband/sdk.hpp>

#include <cstdio>
#include <fstream>
#include <string>

namespace {

class example_sink {
public:
    // The descriptor: a unique name, a version and one line of description.
    static constexpr const char* name = "example-vendor";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description = "Example vendor sink: one JSON file per delivery";
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0]
    // (in a scratch folder) when run without --config.
    static constexpr const char* config_schema = R"json(
        {
          "$schema": "http://json-schema.org/draft-04/schema#",
          "title": "example-vendor endpoint config",
          "type": "object",
          "required": ["folder"],
          "properties": {
            "folder": {
              "type": "string",
              "description": "where each delivery is written as a JSON file"
            }
          },
          "examples": [{"folder": "vendor-in"}]
        }
    )json";

    // Called once per endpoint with its config, e.g. {"folder": "/var/lib/vendor/in"}.
    example_sink(samband::sdk::host host, std::string_view config) : host_(host) {
        // A real plugin parses JSON with a library; this keeps the example dependency-free.
        auto key = config.find("\"folder\"");
        auto open =
            key == std::string_view::npos ? key : config.find('"', config.find(':', key) + 1);
        auto close = open == std::string_view::npos ? open : config.find('"', open + 1);
        if (close == std::string_view::npos)
            throw samband::sdk::error(SAMBAND_INVALID, "example-vendor: config needs \"folder\"");
        folder_ = std::string(config.substr(open + 1, close - open - 1));
    }

    // The host hands over one delivery at a time and expects deliver() back at once: the worker
    // runs write() on its thread (queued ones are retried when the endpoint stops).
    void deliver(samband::sdk::delivery d) {
        worker_.post(std::move(d), [this](samband::sdk::delivery& d) { write(d); });
    }

    void write(samband::sdk::delivery& d) {
        std::string path = folder_ + "/" + file_name(d.id());
        std::string tmp = path + ".tmp";
        {
            std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
            out << d.event().envelope_json;
            if (!out) return d.retry("cannot write " + tmp);  // transient: the host retries
        }
        if (std::rename(tmp.c_str(), path.c_str()) != 0) return d.retry("cannot rename " + tmp);
        host_.log(samband::sdk::log_level::debug, "wrote " + path);
        d.succeed(file_name(d.id()));  // the external id: stable for the same delivery
    }

    // Exactly what deliver() would write, without writing it.
    samband::sdk::rendered render(const samband::sdk::delivery_view& v) {
        return {std::string(v.event.envelope_json), file_name(v.id)};
    }

private:
    static std::string file_name(std::string_view delivery_id) {
        return "delivery-" + std::string(delivery_id) + ".json";
    }

    samband::sdk::host host_;
    std::string folder_;
    samband::sdk::worker worker_;  // last: stopped (and joined) before the rest goes
};

}  // namespace

SAMBAND_PLUGIN(example_sink)
