// The daemon config: JSON validated against config/samband.schema.json, then checked as a whole.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace samband::config {

struct node_config {
    std::string name = "samband";
};
struct store_config {
    std::string kind = "sqlite";          // sqlite | postgresql
    std::string path = "var/samband.db";  // sqlite: the file; postgresql: PATH.blobs/ is a cache
    std::int64_t retention_days = 30;
    std::string synchronous = "full";
    // The private folder of attachments' short-lived plaintext copies for plugins (sealed or in
    // PostgreSQL); empty = <path>.copies.
    std::string attachment_copies;
    std::string conninfo_secret;  // postgresql: the secret holding the libpq connection string
    std::string node_id;          // postgresql: this node's name in leases (default node.name)
    std::int64_t lease_s = 60;    // postgresql: a claim's lease
    // Encryption at rest (sqlite): the key new records are sealed with, then older keys that
    // still open records; each as {key id, secret name}. Empty = off.
    std::vector<std::pair<std::string, std::string>> keys;
};
struct admin_config {
    std::string listen = "127.0.0.1:8780";
    std::string token_file;
    std::string tls_cert_file, tls_key_file, tls_client_ca_file;  // all resolved; empty = none
    bool metrics_open = false;                                    // /metrics without a token
};
struct log_config {
    std::string level = "info";
    std::string format = "logfmt";
};
struct limits_config {
    std::size_t max_event_bytes = 1024 * 1024;
    std::uint64_t max_attachment_bytes = 50ull * 1024 * 1024;
    std::size_t max_attachments = 20;
};
struct identifiers_config {
    bool allow_synthetic = false;
};
struct gp_directory_config {
    std::string kind = "file";
    std::string path;                                                 // file
    std::string url, username, password_secret, names_file, ca_file;  // fastlegeregisteret
    std::int64_t timeout_ms = 10000;
    std::int64_t cache_ttl_s = 3600;
    bool operator==(const gp_directory_config&) const = default;
};
// The receiver check in NHN's Adresseregisteret (docs/nhn.md). An empty `destinations` means
// every endpoint of the nhn plugin.
struct adresseregisteret_config {
    std::string url, username, password_secret, ca_file;
    std::string file;  // local fallback: {"parties": [...]}
    std::int64_t timeout_ms = 10000;
    std::int64_t cache_ttl_s = 3600;
    std::vector<std::string> destinations;
    bool operator==(const adresseregisteret_config&) const = default;
};
struct secret_ref {
    std::string file;
    std::string env;
};
// Per-destination delivery policy.
struct policy {
    int max_attempts = 10;
    std::int64_t backoff_base_ms = 1000;
    std::int64_t backoff_max_ms = 300000;
    std::int64_t attempt_timeout_ms = 30000;
    int concurrency = 4;
    std::int64_t receipt_window_s = 345600;  // 96 h, the Apprec window
};
struct endpoint_config {
    std::string name;
    std::string plugin;       // a plugin name, or a path to a .so
    std::string path;         // unused alias kept for compatibility (empty)
    std::string config_json;  // the `config` object as JSON text ("{}" if absent)
    samband::config::policy policy;
    std::string isolation;  // "process", "in-process", or "" (by where the plugin file lives)
    bool run_once = true;   // postgresql, sources: one node at a time (the lock holder)
    int max_crashes = 5;
    std::int64_t crash_window_s = 60;
    std::int64_t memory_limit_mb = 2048;
};
// One `where` predicate on the envelope (JSON pointer `path`).
struct predicate {
    enum class op { equals, not_equals, in, exists };
    std::string path;
    op what = op::exists;
    std::string value_json;                // equals / not_equals: the JSON value
    std::vector<std::string> values_json;  // in
    bool exists = true;
};
struct route {
    std::string name;
    std::string type_glob = "*";
    std::vector<std::string> source_globs;  // empty = any
    std::vector<predicate> where;
    std::vector<std::string> transforms;
    std::vector<std::string> to;
    std::string recipient;  // "" or "gp"
};

struct config {
    std::string file;      // the config file as given
    std::string base_dir;  // its directory; relative paths are relative to it
    node_config node;
    store_config store;
    admin_config admin;
    log_config log;
    std::vector<std::string> plugin_dirs;
    std::string schemas_dir;
    limits_config limits;
    identifiers_config identifiers;
    std::optional<gp_directory_config> gp_directory;
    std::optional<adresseregisteret_config> adresseregisteret;
    std::map<std::string, secret_ref> secrets;
    std::map<std::string, endpoint_config> endpoints;
    std::vector<route> routes;
};

// One problem, by JSON pointer into the config ("" = the whole file).
struct config_error {
    std::string path;
    std::string message;
};

struct config_result {
    std::optional<config> cfg;  // set only when there are no errors
    std::vector<config_error> errors;
};

// Reads, parses, validates (every error, each by path) and checks references between parts.
// Relative paths in the daemon's own settings are resolved against the config file's directory.
config_result load_config(const std::string& path);
// Same, for config text already in memory (`file` names it in messages; `base_dir` resolves).
config_result parse_config(const std::string& text, const std::string& file,
                           const std::string& base_dir);

// One line per error: "FILE: /routes/0/to/1: unknown endpoint ...".
std::string format_errors(const std::string& file, const std::vector<config_error>& errors);

// `samband config check`: prints the errors or a summary; returns 0 when valid, else 1.
int check_config_command(const std::string& path, std::ostream& out);

// The JSON Schema text compiled into the binary.
const char* config_schema_text();

}  // namespace samband::config
