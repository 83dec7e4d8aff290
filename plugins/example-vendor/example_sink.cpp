// Example vendor sink for Samband: writes each delivery as a JSON file into a folder.
//
// It shows everything a real adapter needs:
//   * one class and SAMBAND_PLUGIN(Class): the SDK turns it into the C ABI and catches every
//     exception at the boundary (a throw becomes a status and message, never a crash);
//   * config from the endpoint's JSON, parsed by the SDK (sdk::config) with typed accessors;
//     errors as sdk::error(SAMBAND_INVALID, "...");
//   * deliver(): return at once, handing the delivery to an sdk::worker that does the I/O on its
//     own thread; complete every delivery exactly once (succeed/retry/fail);
//   * an external id that stays the same when the same delivery comes again (crash recovery
//     may repeat a delivery; the receiver must be able to recognise it);
//   * render(): the exact bytes deliver() would write, with no side effect (samband preview);
//   * logging through the host only (plugins never print; the host masks fødselsnummer).
#include <samband/config.hpp>
#include <samband/sdk.hpp>

#include <cstdio>
#include <filesystem>
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

    // Called once per endpoint with its config, e.g. {"folder": "/var/lib/vendor/in"}, parsed by
    // the SDK (samband/config.hpp); a missing or mistyped value throws an error naming its path
    // ("config /folder: is required"), which the host shows as the reason create failed.
    example_sink(samband::sdk::host host, const samband::sdk::config& config)
        : host_(host), folder_(config.string("folder")) {
        std::error_code ec;  // made when missing; a folder that cannot be made is a config error
        std::filesystem::create_directories(folder_, ec);
        if (ec)
            throw samband::sdk::error(
                SAMBAND_INVALID, "config /folder: cannot create " + folder_ + ": " + ec.message());
    }

    // The host hands over one delivery at a time and expects deliver() back at once: the worker
    // runs write() on its thread (queued ones are retried when the endpoint stops).
    void deliver(samband::sdk::delivery d) {
        worker_.post(std::move(d), [this](samband::sdk::delivery& d) { write(d); });
    }

    // Stops the endpoint: a write in progress finishes, queued deliveries complete as RETRY.
    void stop() { worker_.stop(); }

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
