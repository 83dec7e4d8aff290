// The csv plugin: imports spreadsheet files dropped in a folder (source) and writes events as rows
// of an Excel-friendly CSV that is rotated atomically (sink). See docs/csv.md.
//
// Source: each *.csv in the inbox is decoded (UTF-8 with or without BOM, or Windows-1252), its
// delimiter detected (';', ',' or tab) and each row mapped to an event by the "fields" rules
// (JSON Pointer in the event ← a column, converted). A row that cannot be mapped is refused with
// file, line, column and reason into the host's error store (a samband.input.rejected
// submission) while the good rows go on. A row's idempotency key is a hash of its cell values, so
// importing the same rows again (same file, renamed, or in a later cumulative export) adds nothing.
// After every row is answered the file moves to done/ (or error/ with NAME.reason when the file as
// a whole is refused: binary, too large, a header column missing, an unterminated quote).
//
// Sink: rows are appended (one write + fdatasync each) to a hidden .NAME.current.csv and renamed
// to NAME-<UTC time>.csv when it holds rotate_rows rows or is rotate_seconds old, so a reader only
// ever sees complete files. The first column is the event id; a repeat of an event already in the
// current file is not written twice.
#include "csv_parse.hpp"

#include <samband/sdk.hpp>

#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
using samband::sdk::error;
using samband::sdk::log_level;

std::string sha256_hex(std::string_view s) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

bool fsync_dir(const fs::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        if (n <= 0) return false;
        s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

bool write_atomic(const fs::path& target, std::string_view bytes) {
    fs::path tmp = target.parent_path() / ("." + target.filename().string() + ".tmp");
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    bool ok = write_all(fd, bytes) && ::fsync(fd) == 0;
    ok = (::close(fd) == 0) && ok;
    std::error_code ec;
    if (ok) fs::rename(tmp, target, ec);
    if (!ok || ec) {
        fs::remove(tmp, ec);
        return false;
    }
    return true;
}

// Header names compare trimmed and case-insensitively (ASCII and Æ Ø Å).
std::string fold(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    std::string out(s);
    for (std::size_t i = 0; i < out.size(); ++i) {
        auto c = static_cast<unsigned char>(out[i]);
        if (c < 0x80) {
            out[i] = static_cast<char>(std::tolower(c));
        } else if (c == 0xC3 && i + 1 < out.size()) {
            auto d = static_cast<unsigned char>(out[i + 1]);
            if (d == 0x86 || d == 0x98 || d == 0x85) out[i + 1] = static_cast<char>(d + 0x20);
            ++i;
        }
    }
    return out;
}

std::string json_text(const rapidjson::Value& v) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v.Accept(w);
    return std::string(sb.GetString(), sb.GetSize());
}

// One mapping rule: where in the event, from which column or constant, converted how.
struct field_rule {
    std::string pointer;
    std::string column;  // header name as configured; empty for a constant
    std::size_t index = 0;
    enum class kind { string, integer, number, date, boolean } as = kind::string;
    bool optional = false;
    std::shared_ptr<rapidjson::Document> constant;           // "value"
    std::vector<std::pair<std::string, std::string>> table;  // "map": folded text → JSON text
};

// One sink column: a header and a JSON Pointer into the event.
struct out_column {
    std::string header;
    std::string pointer;
    bool date_no = false;  // write yyyy-mm-dd… as dd.mm.yyyy
};

class csv_plugin {
public:
    static constexpr const char* name = "csv";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "CSV: spreadsheet files imported from a folder (source) and events exported as rows of an "
        "Excel-friendly, atomically rotated CSV (sink)";
    static constexpr bool is_source = true;
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0]
    // (in a scratch folder) when run without --config.
    static constexpr const char* config_schema = R"json(
        {
          "$schema": "http://json-schema.org/draft-04/schema#",
          "title": "csv plugin endpoint config (docs/csv.md)",
          "type": "object",
          "anyOf": [{"required": ["inbox", "type", "fields"]}, {"required": ["outbox"]}],
          "properties": {
            "inbox": {"type": "string", "description": "source: folder of CSV files to import"},
            "type": {"type": "string", "description": "source: the event type each row becomes"},
            "fields": {
              "type": "object",
              "description": "source: JSON Pointer in the event -> {column|value, as, map, optional}"
            },
            "key_columns": {
              "type": "array",
              "items": {"type": "string"},
              "description": "source: the columns whose values make a row's idempotency key"
            },
            "delimiter": {"enum": ["auto", ";", ",", "\t"], "default": "auto"},
            "encoding": {"enum": ["auto", "utf-8", "windows-1252"], "default": "auto"},
            "poll_ms": {"type": "integer", "minimum": 10},
            "window": {"type": "integer", "minimum": 1},
            "max_file_bytes": {"type": "integer", "minimum": 1},
            "max_columns": {"type": "integer", "minimum": 1},
            "max_field_bytes": {"type": "integer", "minimum": 1},
            "outbox": {"type": "string", "description": "sink: folder of the rotated CSV files"},
            "prefix": {"type": "string", "default": "samband"},
            "out_delimiter": {"enum": [";", ",", "\t"], "default": ";"},
            "bom": {"type": "boolean", "default": true},
            "decimal_comma": {"type": "boolean", "default": true},
            "id_header": {"type": "string", "default": "Hendelse"},
            "rotate_rows": {"type": "integer", "minimum": 1},
            "rotate_seconds": {"type": "integer", "minimum": 1},
            "columns": {
              "type": "array",
              "items": {
                "type": "object",
                "required": ["header", "pointer"],
                "properties": {
                  "header": {"type": "string"},
                  "pointer": {"type": "string"},
                  "as": {"enum": ["date"]}
                }
              }
            }
          },
          "examples": [
            {
              "inbox": "csv-in",
              "type": "rph.session.attended",
              "fields": {
                "/subject/fnr": {"column": "Fødselsnummer"},
                "/occurred_at": {"column": "Dato", "as": "date"},
                "/data/treatment_id": {"column": "Behandling"},
                "/data/session_at": {"column": "Dato", "as": "date"},
                "/data/attended": {"column": "Møtt", "as": "boolean"}
              },
              "outbox": "csv-out",
              "prefix": "oppmote",
              "columns": [
                {"header": "Behandling", "pointer": "/data/treatment_id"},
                {"header": "Dato", "pointer": "/data/session_at", "as": "date"}
              ]
            }
          ]
        }
    )json";

    csv_plugin(samband::sdk::host h, std::string_view config) : host_(h) {
        rapidjson::Document d;
        d.Parse(config.data(), config.size());
        if (d.HasParseError() || !d.IsObject())
            throw error(SAMBAND_INVALID, "csv plugin: config must be a JSON object");
        auto str = [&](const char* k, std::string def = {}) {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return def;
            if (!it->value.IsString())
                throw error(SAMBAND_INVALID,
                            std::string("csv plugin: \"") + k + "\" must be a string");
            return std::string(it->value.GetString());
        };
        auto num = [&](const char* k, std::uint64_t def, std::uint64_t min) {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return def;
            if (!it->value.IsUint64() || it->value.GetUint64() < min)
                throw error(SAMBAND_INVALID, std::string("csv plugin: \"") + k +
                                                 "\" must be an integer >= " + std::to_string(min));
            return it->value.GetUint64();
        };
        inbox_ = str("inbox");
        outbox_ = str("outbox");
        if (inbox_.empty() && outbox_.empty())
            throw error(SAMBAND_INVALID,
                        "csv plugin: give \"inbox\" (a source), \"outbox\" (a sink) or both");
        poll_ms_ = static_cast<int>(num("poll_ms", 200, 10));
        window_ = num("window", 256, 1);
        lim_.max_file_bytes = num("max_file_bytes", lim_.max_file_bytes, 1);
        lim_.max_columns = num("max_columns", lim_.max_columns, 1);
        lim_.max_field_bytes = num("max_field_bytes", lim_.max_field_bytes, 1);
        std::string delim = str("delimiter", "auto");
        if (delim == "auto")
            delimiter_ = 0;
        else if (delim == ";" || delim == "," || delim == "\t")
            delimiter_ = delim[0];
        else
            throw error(SAMBAND_INVALID,
                        "csv plugin: \"delimiter\" must be \"auto\", \";\", \",\" or a tab");
        std::string enc = str("encoding", "auto");
        if (enc == "auto")
            enc_ = samband::csv::encoding::automatic;
        else if (enc == "utf-8")
            enc_ = samband::csv::encoding::utf8;
        else if (enc == "windows-1252")
            enc_ = samband::csv::encoding::windows_1252;
        else
            throw error(SAMBAND_INVALID,
                        "csv plugin: \"encoding\" must be \"auto\", \"utf-8\" or \"windows-1252\"");

        if (!inbox_.empty()) read_source_config(d);
        if (!outbox_.empty()) read_sink_config(d, str, num);

        std::error_code ec;
        for (const auto& dir : {inbox_, outbox_}) {
            if (dir.empty()) continue;
            fs::create_directories(dir, ec);
            if (ec)
                throw error(SAMBAND_INVALID,
                            "csv plugin: cannot create folder " + dir + ": " + ec.message());
        }
        if (!inbox_.empty()) {
            fs::create_directories(fs::path(inbox_) / "done", ec);
            fs::create_directories(fs::path(inbox_) / "error", ec);
        }
        if (!outbox_.empty()) open_current();
    }

    ~csv_plugin() {
        stop();
        if (out_fd_ >= 0) ::close(out_fd_);
    }

    void start() {
        std::lock_guard lock(mu_);
        if (running_) return;
        running_ = true;
        if (!inbox_.empty()) watcher_ = std::thread([this] { watch(); });
        if (!outbox_.empty()) rotator_ = std::thread([this] { rotate_loop(); });
    }

    void stop() {
        sink_worker_.stop();  // first: a row being written finishes, queued ones RETRY
        {
            std::lock_guard lock(mu_);
            if (!running_) return;
            running_ = false;
        }
        cv_.notify_all();
        if (watcher_.joinable()) watcher_.join();
        if (rotator_.joinable()) rotator_.join();
    }

    // ---- sink ----------------------------------------------------------------------------
    // Returns at once (the ABI's rule): the row is written and synced on the sink worker thread.
    void deliver(samband::sdk::delivery d) {
        if (outbox_.empty()) {
            d.fail("this csv endpoint has no outbox (it is a source only)");
            return;
        }
        sink_worker_.post(std::move(d), [this](samband::sdk::delivery& d) { write_row(d); });
    }

    void write_row(samband::sdk::delivery& d) {
        rapidjson::Document ev;
        std::string_view env = d.event().envelope_json;
        ev.Parse(env.data(), env.size());
        if (ev.HasParseError() || !ev.IsObject()) {
            d.fail("the event is not a JSON object");
            return;
        }
        std::string id = ev.HasMember("id") && ev["id"].IsString() ? ev["id"].GetString()
                                                                   : std::string(d.event_id());
        std::string row;
        samband::csv::append_field(row, id, out_delim_);
        for (const auto& c : out_columns_) {
            row.push_back(out_delim_);
            samband::csv::append_field(row, cell(ev, c), out_delim_);
        }
        row += "\r\n";
        std::lock_guard lock(out_mu_);
        if (out_ids_.count(id)) {
            d.succeed(current_name_);  // a repeat: the row is already in the current file
            return;
        }
        if (out_fd_ < 0 && !open_current_locked()) {
            d.retry("cannot open " + (fs::path(outbox_) / current_name_).string());
            return;
        }
        if (!write_all(out_fd_, row) || ::fdatasync(out_fd_) != 0) {
            d.retry("cannot write " + current_name_);
            // Reopen next time: a torn row is cut off by the truncation to the last good size.
            if (::ftruncate(out_fd_, static_cast<off_t>(out_size_)) != 0) {
            }
            return;
        }
        out_size_ += row.size();
        out_ids_.insert(id);
        d.succeed(current_name_);
        if (out_ids_.size() >= rotate_rows_) rotate_locked();
    }

private:
    template <class Str, class Num>
    void read_sink_config(const rapidjson::Document& d, Str str, Num num) {
        prefix_ = str("prefix", "samband");
        for (char c : prefix_)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
                throw error(SAMBAND_INVALID,
                            "csv plugin: \"prefix\" may hold only letters, digits, - and _");
        std::string od = str("out_delimiter", ";");
        if (od != ";" && od != "," && od != "\t")
            throw error(SAMBAND_INVALID,
                        "csv plugin: \"out_delimiter\" must be \";\", \",\" or a tab");
        out_delim_ = od[0];
        if (d.HasMember("bom")) {
            if (!d["bom"].IsBool())
                throw error(SAMBAND_INVALID, "csv plugin: \"bom\" must be true or false");
            bom_ = d["bom"].GetBool();
        }
        if (d.HasMember("decimal_comma")) {
            if (!d["decimal_comma"].IsBool())
                throw error(SAMBAND_INVALID, "csv plugin: \"decimal_comma\" must be true or false");
            decimal_comma_ = d["decimal_comma"].GetBool();
        }
        rotate_rows_ = num("rotate_rows", 10000, 1);
        rotate_seconds_ = num("rotate_seconds", 3600, 1);
        id_header_ = str("id_header", "Hendelse");
        auto it = d.FindMember("columns");
        if (it == d.MemberEnd() || !it->value.IsArray() || it->value.Empty())
            throw error(
                SAMBAND_INVALID,
                "csv plugin: an outbox needs \"columns\": [{\"header\": …, \"pointer\": …}]");
        std::size_t i = 0;
        for (const auto& c : it->value.GetArray()) {
            std::string where = "csv plugin: columns[" + std::to_string(i++) + "]";
            if (!c.IsObject() || !c.HasMember("header") || !c["header"].IsString() ||
                !c.HasMember("pointer") || !c["pointer"].IsString())
                throw error(SAMBAND_INVALID, where + " needs \"header\" and \"pointer\" strings");
            out_column oc{c["header"].GetString(), c["pointer"].GetString(), false};
            if (!rapidjson::Pointer(oc.pointer.c_str()).IsValid())
                throw error(SAMBAND_INVALID,
                            where + ": \"" + oc.pointer + "\" is not a JSON Pointer");
            if (c.HasMember("as")) {
                if (!c["as"].IsString() || std::string(c["as"].GetString()) != "date")
                    throw error(SAMBAND_INVALID, where + ": \"as\" may only be \"date\"");
                oc.date_no = true;
            }
            out_columns_.push_back(std::move(oc));
        }
        current_name_ = "." + prefix_ + ".current.csv";
    }

    void read_source_config(const rapidjson::Document& d) {
        auto t = d.FindMember("type");
        if (t == d.MemberEnd() || !t->value.IsString() || t->value.GetStringLength() == 0)
            throw error(SAMBAND_INVALID,
                        "csv plugin: an inbox needs \"type\", the event type each row becomes");
        type_ = t->value.GetString();
        auto f = d.FindMember("fields");
        if (f == d.MemberEnd() || !f->value.IsObject() || f->value.MemberCount() == 0)
            throw error(
                SAMBAND_INVALID,
                "csv plugin: an inbox needs \"fields\": {\"/json/pointer\": {\"column\": …}}");
        for (const auto& m : f->value.GetObject()) {
            field_rule r;
            r.pointer = m.name.GetString();
            std::string where = "csv plugin: fields[\"" + r.pointer + "\"]";
            if (!rapidjson::Pointer(r.pointer.c_str()).IsValid() || r.pointer.empty())
                throw error(SAMBAND_INVALID,
                            where + ": the name must be a JSON Pointer such as /data/score");
            const auto& v = m.value;
            if (!v.IsObject()) throw error(SAMBAND_INVALID, where + " must be an object");
            if (v.HasMember("value")) {
                r.constant = std::make_shared<rapidjson::Document>();
                r.constant->CopyFrom(v["value"], r.constant->GetAllocator());
            } else if (v.HasMember("column") && v["column"].IsString()) {
                r.column = v["column"].GetString();
            } else {
                throw error(SAMBAND_INVALID,
                            where + " needs \"column\" (a header name) or \"value\"");
            }
            if (v.HasMember("as")) {
                std::string as = v["as"].IsString() ? v["as"].GetString() : "";
                if (as == "string")
                    r.as = field_rule::kind::string;
                else if (as == "integer")
                    r.as = field_rule::kind::integer;
                else if (as == "number")
                    r.as = field_rule::kind::number;
                else if (as == "date")
                    r.as = field_rule::kind::date;
                else if (as == "boolean")
                    r.as = field_rule::kind::boolean;
                else
                    throw error(
                        SAMBAND_INVALID,
                        where + ": \"as\" must be string, integer, number, date or boolean");
            }
            if (v.HasMember("optional")) {
                if (!v["optional"].IsBool())
                    throw error(SAMBAND_INVALID, where + ": \"optional\" must be true or false");
                r.optional = v["optional"].GetBool();
            }
            if (v.HasMember("map")) {
                if (!v["map"].IsObject())
                    throw error(SAMBAND_INVALID, where + ": \"map\" must be an object");
                for (const auto& e : v["map"].GetObject())
                    r.table.emplace_back(fold(e.name.GetString()), json_text(e.value));
            }
            rules_.push_back(std::move(r));
        }
        auto k = d.FindMember("key_columns");
        if (k != d.MemberEnd()) {
            if (!k->value.IsArray() || k->value.Empty())
                throw error(SAMBAND_INVALID,
                            "csv plugin: \"key_columns\" must be a list of header names");
            for (const auto& c : k->value.GetArray()) {
                if (!c.IsString())
                    throw error(SAMBAND_INVALID,
                                "csv plugin: \"key_columns\" must be a list of header names");
                key_columns_.push_back(c.GetString());
            }
        }
    }

    // ---- source --------------------------------------------------------------------------
    void watch() {
        std::unique_lock lock(mu_);
        while (running_) {
            lock.unlock();
            scan();
            lock.lock();
            cv_.wait_for(lock, std::chrono::milliseconds(poll_ms_), [&] { return !running_; });
        }
    }

    void scan() {
        std::vector<std::string> names;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(inbox_, ec)) {
            if (!e.is_regular_file(ec)) continue;
            std::string n = e.path().filename().string();
            std::string low = fold(n);
            if (n.empty() || n[0] == '.' || low.size() < 5 || low.substr(low.size() - 4) != ".csv")
                continue;
            names.push_back(n);
        }
        std::sort(names.begin(), names.end());
        for (const auto& n : names) {
            {
                std::lock_guard lock(mu_);
                if (!running_) return;
            }
            import_file(n);
        }
    }

    // The answers to one file's submissions.
    struct tally {
        std::mutex mu;
        std::condition_variable cv;
        std::size_t outstanding = 0, accepted = 0, duplicates = 0, refused = 0, retry = 0;
    };

    // Submits one envelope, keeping at most window_ unanswered; false when the host is stopping.
    bool submit(const std::shared_ptr<tally>& t, const std::string& envelope) {
        for (int attempt = 0;; ++attempt) {
            {
                std::unique_lock lock(t->mu);
                t->cv.wait(lock, [&] { return t->outstanding < window_; });
                ++t->outstanding;
            }
            samband_status st =
                host_.submit(envelope, {}, [t](const samband::sdk::submit_result& r) {
                    std::lock_guard lock(t->mu);
                    --t->outstanding;
                    if (r.status == SAMBAND_OK)
                        (r.duplicate ? t->duplicates : t->accepted)++;
                    else if (r.status == SAMBAND_RETRY)
                        t->retry++;
                    else
                        t->refused++;
                    t->cv.notify_all();
                });
            if (st == SAMBAND_OK) return true;
            {
                std::unique_lock lock(t->mu);
                --t->outstanding;
                // Busy: wait for one of this file's answers (or a short while) and try again.
                t->cv.wait_for(lock, std::chrono::milliseconds(50));
            }
            std::lock_guard lock(mu_);
            if (!running_ || attempt > 200) return false;
        }
    }

    // A refusal for the error store: what, where and why (the host keeps it as given).
    std::string rejection(const std::string& key, const std::string& reason,
                          std::string_view input) {
        rapidjson::Document d(rapidjson::kObjectType);
        auto& a = d.GetAllocator();
        d.AddMember("schema", "samband.event/1", a);
        d.AddMember("type", "samband.input.rejected", a);
        d.AddMember("idempotency_key", rapidjson::Value(key.c_str(), a), a);
        rapidjson::Value r(rapidjson::kObjectType);
        r.AddMember("reason", rapidjson::Value(reason.c_str(), a), a);
        std::string in(input.substr(0, 4096));
        r.AddMember("input",
                    rapidjson::Value(in.c_str(), static_cast<rapidjson::SizeType>(in.size()), a),
                    a);
        d.AddMember("rejected", r, a);
        return json_text(d);
    }

    void move_to(const std::string& n, const char* folder, const std::string& reason) {
        fs::path in(inbox_);
        std::error_code ec;
        if (!reason.empty()) write_atomic(in / folder / (n + ".reason"), reason + "\n");
        fs::rename(in / n, in / folder / n, ec);
        fsync_dir(in / folder);
    }

    void import_file(const std::string& n) {
        fs::path path = fs::path(inbox_) / n;
        auto t = std::make_shared<tally>();
        std::string file_key;
        auto refuse_file = [&](const std::string& reason) {
            std::string why = n + ": " + reason;
            submit(t, rejection("csv:file:" + n + ":" + file_key, why, {}));
            wait_answers(t);
            if (t->retry > 0) return;  // the store could not keep the refusal: try again later
            move_to(n, "error", why);
            host_.log(log_level::warn, "refused " + why);
        };
        std::error_code ec;
        auto size = fs::file_size(path, ec);
        if (ec) return;
        if (size > lim_.max_file_bytes) {
            file_key = std::to_string(size);
            refuse_file("the file is " + std::to_string(size) + " bytes, over the limit of " +
                        std::to_string(lim_.max_file_bytes) + " (max_file_bytes)");
            return;
        }
        std::string bytes;
        {
            std::ifstream in(path, std::ios::binary);
            bytes.resize(size);
            in.read(bytes.data(), static_cast<std::streamsize>(size));
            if (static_cast<std::size_t>(in.gcount()) != size) return;  // still being written
        }
        file_key = sha256_hex(bytes).substr(0, 32);
        auto text = samband::csv::decode(bytes, enc_);
        if (!text) {
            refuse_file(text.error());
            return;
        }
        bytes.clear();
        bytes.shrink_to_fit();
        char delim = delimiter_ ? delimiter_ : samband::csv::detect_delimiter(text->text);

        std::vector<std::string> header;
        std::vector<std::size_t> key_index;
        std::string file_error;
        std::size_t rows = 0;
        auto parsed = samband::csv::parse(text->text, delim, lim_, [&](samband::csv::record& rec) {
            if (header.empty()) {
                header = rec.fields;
                std::map<std::string, std::size_t> by_name;
                for (std::size_t i = 0; i < header.size(); ++i) by_name.emplace(fold(header[i]), i);
                for (auto& r : rules_) {
                    if (r.column.empty()) continue;
                    auto it = by_name.find(fold(r.column));
                    if (it == by_name.end()) {
                        file_error = "the header (line " + std::to_string(rec.line) +
                                     ") has no column \"" + r.column + "\" (needed for " +
                                     r.pointer + ")";
                        return false;
                    }
                    r.index = it->second;
                }
                for (const auto& k : key_columns_) {
                    auto it = by_name.find(fold(k));
                    if (it == by_name.end()) {
                        file_error = "the header has no key column \"" + k + "\"";
                        return false;
                    }
                    key_index.push_back(it->second);
                }
                return true;
            }
            ++rows;
            std::string env, why, key;
            std::size_t column = 0;
            if (map_row(rec, header, key_index, env, key, why, column)) {
                return submit(t, env);
            }
            std::string reason =
                n + " line " + std::to_string(rec.line) + " column " + std::to_string(column) +
                (column && column <= header.size() ? " (" + header[column - 1] + ")"
                                                   : std::string()) +
                ": " + why;
            return submit(t, rejection("csv:row:" + file_key + ":" + std::to_string(rec.line),
                                       reason, rec.raw));
        });
        if (!parsed) {
            const auto& e = parsed.error();
            file_error = "line " + std::to_string(e.line) + " column " + std::to_string(e.column) +
                         ": " + e.reason;
        } else if (header.empty() && file_error.empty()) {
            file_error = "the file is empty (no header line)";
        }
        if (!file_error.empty()) {
            wait_answers(t);  // rows before the error were submitted; they stand
            refuse_file(file_error);
            return;
        }
        wait_answers(t);
        if (t->retry > 0) {
            host_.log(log_level::warn, n + ": the host asked to retry " + std::to_string(t->retry) +
                                           " rows; the file stays for the next scan");
            return;
        }
        move_to(n, "done", {});
        host_.log(log_level::info, n + ": " + std::to_string(rows) +
                                       " rows: " + std::to_string(t->accepted) + " imported, " +
                                       std::to_string(t->duplicates) + " already known, " +
                                       std::to_string(t->refused) + " refused");
    }

    void wait_answers(const std::shared_ptr<tally>& t) {
        std::unique_lock lock(t->mu);
        t->cv.wait(lock, [&] { return t->outstanding == 0; });
    }

    // Builds one event from a row; on failure names the column (1-based, 0 = the row) and why.
    bool map_row(const samband::csv::record& rec, const std::vector<std::string>& header,
                 const std::vector<std::size_t>& key_index, std::string& env, std::string& key,
                 std::string& why, std::size_t& column) {
        if (rec.fields.size() != header.size()) {
            why = "the row has " + std::to_string(rec.fields.size()) + " columns, the header " +
                  std::to_string(header.size());
            column = std::min(rec.fields.size(), header.size()) + 1;
            if (rec.fields.size() < header.size()) column = rec.fields.size();
            return false;
        }
        rapidjson::Document d(rapidjson::kObjectType);
        auto& a = d.GetAllocator();
        d.AddMember("schema", "samband.event/1", a);
        d.AddMember("type", rapidjson::Value(type_.c_str(), a), a);
        for (const auto& r : rules_) {
            rapidjson::Pointer p(r.pointer.c_str());
            if (r.constant) {
                p.Set(d, rapidjson::Value(*r.constant, a));
                continue;
            }
            column = r.index + 1;
            std::string cellv = rec.fields[r.index];
            while (!cellv.empty() && (cellv.back() == ' ' || cellv.back() == '\t'))
                cellv.pop_back();
            while (!cellv.empty() && (cellv.front() == ' ' || cellv.front() == '\t'))
                cellv.erase(0, 1);
            if (cellv.empty()) {
                if (r.optional) continue;
                why = "empty, but " + r.pointer + " needs a value";
                return false;
            }
            if (!r.table.empty()) {
                std::string f = fold(cellv);
                auto it = std::find_if(r.table.begin(), r.table.end(),
                                       [&](const auto& e) { return e.first == f; });
                if (it == r.table.end()) {
                    why = "the value is not one of the mapped values (";
                    for (std::size_t i = 0; i < r.table.size(); ++i)
                        why += (i ? ", " : "") + r.table[i].first;
                    why += ")";
                    return false;
                }
                rapidjson::Document v;
                v.Parse(it->second.c_str());
                p.Set(d, rapidjson::Value(v, a));
                continue;
            }
            switch (r.as) {
                case field_rule::kind::string:
                    p.Set(d, rapidjson::Value(cellv.c_str(), a));
                    break;
                case field_rule::kind::integer:
                case field_rule::kind::number: {
                    double x;
                    if (!samband::csv::parse_number(cellv, x)) {
                        why = "the value is not a number";
                        return false;
                    }
                    const bool whole = x <= 9e15 && x >= -9e15 &&
                                       x == static_cast<double>(static_cast<std::int64_t>(x));
                    if (r.as == field_rule::kind::integer && !whole) {
                        why = "the value is not a whole number";
                        return false;
                    }
                    // A whole number stays one ("8", not "8.0" in the event and "8,0" in an
                    // export).
                    if (whole)
                        p.Set(d, rapidjson::Value(static_cast<std::int64_t>(x)));
                    else
                        p.Set(d, rapidjson::Value(x));
                    break;
                }
                case field_rule::kind::date: {
                    std::string iso = samband::csv::parse_date(cellv);
                    if (iso.empty()) {
                        why = "the value is not a date (dd.mm.yyyy or yyyy-mm-dd)";
                        return false;
                    }
                    p.Set(d, rapidjson::Value(iso.c_str(), a));
                    break;
                }
                case field_rule::kind::boolean: {
                    bool b;
                    if (!samband::csv::parse_boolean(cellv, b)) {
                        why = "the value is not ja/nei (yes/no, 1/0)";
                        return false;
                    }
                    p.Set(d, rapidjson::Value(b));
                    break;
                }
            }
        }
        // The key: the row's cell values (the chosen columns, or all), never the file's name.
        std::string basis = type_;
        auto add = [&](const std::string& c) {
            basis.push_back('\x1f');
            std::string_view v = c;
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
            while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
            basis.append(v);
        };
        if (key_index.empty())
            for (const auto& c : rec.fields) add(c);
        else
            for (auto i : key_index) add(rec.fields[i]);
        key = "csv:" + sha256_hex(basis).substr(0, 40);
        d.AddMember("idempotency_key", rapidjson::Value(key.c_str(), a), a);
        env = json_text(d);
        return true;
    }

    // ---- sink internals ------------------------------------------------------------------
    std::string cell(const rapidjson::Document& ev, const out_column& c) const {
        const rapidjson::Value* v = rapidjson::Pointer(c.pointer.c_str()).Get(ev);
        if (!v || v->IsNull()) return {};
        if (v->IsString()) {
            std::string s(v->GetString(), v->GetStringLength());
            if (c.date_no && s.size() >= 10 && s[4] == '-' && s[7] == '-')
                return s.substr(8, 2) + "." + s.substr(5, 2) + "." + s.substr(0, 4);
            return s;
        }
        if (v->IsBool()) return v->GetBool() ? "ja" : "nei";
        if (v->IsNumber()) {
            std::string t = json_text(*v);
            return decimal_comma_ ? samband::csv::decimal_comma(t) : t;
        }
        return json_text(*v);
    }

    std::string header_row() const {
        std::string h = bom_ ? "\xEF\xBB\xBF" : "";
        samband::csv::append_field(h, id_header_, out_delim_);
        for (const auto& c : out_columns_) {
            h.push_back(out_delim_);
            samband::csv::append_field(h, c.header, out_delim_);
        }
        return h + "\r\n";
    }

    void open_current() {
        std::lock_guard lock(out_mu_);
        if (!open_current_locked())
            throw error(SAMBAND_INVALID,
                        "csv plugin: cannot open " + (fs::path(outbox_) / current_name_).string());
    }

    // Opens (or resumes) the current file; rebuilds the set of event ids it holds.
    bool open_current_locked() {
        fs::path p = fs::path(outbox_) / current_name_;
        out_ids_.clear();
        std::error_code ec;
        if (fs::exists(p, ec)) {
            std::ifstream in(p, std::ios::binary);
            std::stringstream ss;
            ss << in.rdbuf();
            std::string text = ss.str();
            // Keep only complete rows (a crash may have torn the last one).
            auto last = text.rfind("\r\n");
            text.resize(last == std::string::npos ? 0 : last + 2);
            std::string_view body = text;
            if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);
            bool first = true;
            samband::csv::limits lim;
            lim.max_columns = out_columns_.size() + 2;
            auto r = samband::csv::parse(body, out_delim_, lim, [&](samband::csv::record& rec) {
                if (!first && !rec.fields.empty()) out_ids_.insert(rec.fields[0]);
                first = false;
                return true;
            });
            if (!r || first) text.clear();
            out_fd_ = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
            if (out_fd_ < 0) return false;
            if (::ftruncate(out_fd_, static_cast<off_t>(text.size())) != 0 ||
                ::lseek(out_fd_, 0, SEEK_END) < 0) {
                ::close(out_fd_);
                out_fd_ = -1;
                return false;
            }
            out_size_ = text.size();
            if (text.empty()) {
                out_ids_.clear();
                std::string h = header_row();
                if (!write_all(out_fd_, h) || ::fdatasync(out_fd_) != 0) return false;
                out_size_ = h.size();
            }
            struct stat st {};
            opened_at_ = ::stat(p.c_str(), &st) == 0
                             ? std::chrono::system_clock::from_time_t(st.st_mtime)
                             : std::chrono::system_clock::now();
            if (out_ids_.empty()) opened_at_ = std::chrono::system_clock::now();
            return true;
        }
        out_fd_ = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd_ < 0) return false;
        std::string h = header_row();
        if (!write_all(out_fd_, h) || ::fdatasync(out_fd_) != 0) return false;
        fsync_dir(outbox_);
        out_size_ = h.size();
        opened_at_ = std::chrono::system_clock::now();
        return true;
    }

    // Renames the current file (if it holds rows) to its final name and starts a new one.
    void rotate_locked() {
        if (out_ids_.empty()) return;
        std::time_t now = std::time(nullptr);
        std::tm tm{};
        ::gmtime_r(&now, &tm);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        fs::path dir(outbox_);
        fs::path target = dir / (prefix_ + "-" + stamp + ".csv");
        for (int i = 2; fs::exists(target); ++i)
            target = dir / (prefix_ + "-" + stamp + "-" + std::to_string(i) + ".csv");
        ::close(out_fd_);
        out_fd_ = -1;
        std::error_code ec;
        fs::rename(dir / current_name_, target, ec);
        if (ec) {
            host_.log(log_level::error, "cannot rotate " + current_name_ + ": " + ec.message());
        } else {
            fsync_dir(dir);
            host_.log(log_level::info, "wrote " + target.filename().string() + " (" +
                                           std::to_string(out_ids_.size()) + " rows)");
        }
        out_ids_.clear();
        open_current_locked();
    }

    void rotate_loop() {
        std::unique_lock lock(mu_);
        while (running_) {
            cv_.wait_for(
                lock,
                std::chrono::milliseconds(std::min<std::uint64_t>(1000, rotate_seconds_ * 1000)),
                [&] { return !running_; });
            std::lock_guard out(out_mu_);
            if (!out_ids_.empty() && std::chrono::system_clock::now() - opened_at_ >=
                                         std::chrono::seconds(rotate_seconds_))
                rotate_locked();
        }
    }

    samband::sdk::host host_;
    std::string inbox_, outbox_;
    samband::csv::limits lim_;
    samband::csv::encoding enc_ = samband::csv::encoding::automatic;
    char delimiter_ = 0;
    int poll_ms_ = 200;
    std::size_t window_ = 256;
    std::string type_;
    std::vector<field_rule> rules_;
    std::vector<std::string> key_columns_;

    std::string prefix_, current_name_, id_header_;
    char out_delim_ = ';';
    bool bom_ = true, decimal_comma_ = true;
    std::uint64_t rotate_rows_ = 10000, rotate_seconds_ = 3600;
    std::vector<out_column> out_columns_;
    std::mutex out_mu_;
    int out_fd_ = -1;
    std::size_t out_size_ = 0;
    std::set<std::string> out_ids_;
    std::chrono::system_clock::time_point opened_at_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    std::thread watcher_, rotator_;
    samband::sdk::worker sink_worker_;  // last: stopped (and joined) before the rest goes
};

}  // namespace

SAMBAND_PLUGIN(csv_plugin)
