// Unit tests of the file plugin (plugins/file): the .so is dlopen'ed as the host does and driven
// through its C descriptor by a small fake host, without the daemon.
#include <samband/plugin.h>

#include <rapidjson/document.h>

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// The host-side definitions of the ABI's opaque types, as the fake host sees them.
struct samband_error {
    std::string text;
    bool set = false;
};
struct samband_render_out {
    std::string bytes;
    std::string name;
};
struct samband_transform_out {
    std::string envelope;
};

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string view(samband_str s) {
    return s.data ? std::string(s.data, s.size) : std::string();
}
samband_host_str str(const std::string& s) {
    return samband_host_str{s.data(), s.size()};
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
}
// The inbox convention: write NAME.tmp, then rename it to NAME.
void drop_file(const fs::path& dir, const std::string& name, const std::string& text) {
    write_file(dir / (name + ".tmp"), text);
    fs::rename(dir / (name + ".tmp"), dir / name);
}
std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file()) out.insert(e.path().filename().string());
    return out;
}
bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return pred();
}
std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(rng() & 0xff);
    return out;
}

// The plugin's descriptor, loaded like the host loads it (RTLD_NOW | RTLD_LOCAL, never unloaded).
const samband_plugin_descriptor* load_file_plugin() {
    void* h = ::dlopen(SAMBAND_FILE_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (!h) throw std::runtime_error(std::string("dlopen: ") + ::dlerror());
    auto entry = reinterpret_cast<samband_plugin_entry_fn>(::dlsym(h, SAMBAND_PLUGIN_ENTRY_NAME));
    if (!entry) throw std::runtime_error("no samband_plugin_entry");
    const samband_plugin_descriptor* d = nullptr;
    if (entry(SAMBAND_ABI_VERSION, &d) != SAMBAND_OK || !d)
        throw std::runtime_error("entry refused the host's ABI version");
    return d;
}

// One submission the plugin made, with its attachments' bytes as they were at submit time.
struct submitted {
    std::string envelope;
    struct attachment {
        std::string filename, media_type, path, bytes;
    };
    std::vector<attachment> attachments;
    samband_submit_done_fn done = nullptr;
    void* user = nullptr;
    bool answered = false;
};

// What the fake host does with a submission: the immediate status, and an answer to give at once
// (inline, before submit returns) or none (held until the test answers it).
struct submit_policy {
    samband_status immediate = SAMBAND_OK;
    std::optional<samband_status> answer_now;
    std::string message;
};

// A fake samband host for one plugin instance: records submissions, completions and log lines,
// serves attachment reads from memory, and collects render output.
class fake_host {
public:
    fake_host() {
        api_.struct_size = sizeof api_;
        api_.abi_version = SAMBAND_ABI_VERSION;
        api_.ctx = this;
        api_.error_set = [](samband_error* e, samband_str t) {
            e->text = view(t);
            e->set = true;
        };
        api_.log_enabled = [](void*, samband_log_level) -> int32_t { return 1; };
        api_.log = [](void* ctx, samband_log_level, samband_str m) {
            auto* self = static_cast<fake_host*>(ctx);
            std::lock_guard lock(self->mu_);
            self->logs_.push_back(view(m));
        };
        api_.get_secret = [](void*, samband_str, samband_secret_fn, void*) -> samband_status {
            return SAMBAND_INVALID;
        };
        api_.submit = &fake_host::t_submit;
        api_.complete = [](void* ctx, uint64_t token,
                           const samband_completion* in) -> samband_status {
            auto* self = static_cast<fake_host*>(ctx);
            samband_completion c;
            if (samband_copy_struct(&c, sizeof c, in, SAMBAND_V1_0_COMPLETION_SIZE) != SAMBAND_OK)
                return SAMBAND_INVALID;
            std::lock_guard lock(self->mu_);
            self->completions_[token].push_back({c.status, view(c.external_id), view(c.message)});
            return SAMBAND_OK;
        };
        api_.receipt = [](void*, const samband_receipt*) -> samband_status {
            return SAMBAND_UNSUPPORTED;
        };
        api_.attachment_read = &fake_host::t_attachment_read;
        api_.render_write = [](samband_render_out* o, samband_buffer b) {
            o->bytes.append(reinterpret_cast<const char*>(b.data), b.size);
        };
        api_.render_name = [](samband_render_out* o, samband_str n) { o->name = view(n); };
        api_.transform_emit = [](samband_transform_out* o, samband_str e) {
            o->envelope = view(e);
        };
    }
    fake_host(const fake_host&) = delete;
    fake_host& operator=(const fake_host&) = delete;

    const samband_host_api* api() const { return &api_; }

    void set_policy(submit_policy p) {
        std::lock_guard lock(mu_);
        policy_ = std::move(p);
    }
    // Attachment bytes behind a read handle; `fail_after` makes reads past that offset fail.
    void add_attachment(uint64_t handle, std::string bytes,
                        std::optional<uint64_t> fail_after = std::nullopt) {
        std::lock_guard lock(mu_);
        attachments_[handle] = {std::move(bytes), fail_after};
    }

    std::size_t submission_count() {
        std::lock_guard lock(mu_);
        return subs_.size();
    }
    submitted submission(std::size_t i) {
        std::lock_guard lock(mu_);
        return subs_.at(i);
    }
    // How many submissions are taken but not answered (the plugin awaits `done`).
    std::size_t unanswered() {
        std::lock_guard lock(mu_);
        std::size_t n = 0;
        for (const auto& s : subs_) n += s.answered ? 0 : 1;
        return n;
    }
    // Answers held submission i, as the store's commit thread would: from another thread.
    void answer(std::size_t i, samband_status st, const std::string& message = {},
                const std::string& event_id = "ev-1") {
        samband_submit_done_fn done;
        void* user;
        {
            std::lock_guard lock(mu_);
            auto& s = subs_.at(i);
            ASSERT_FALSE(s.answered) << "submission " << i << " answered twice";
            s.answered = true;
            done = s.done;
            user = s.user;
        }
        std::thread([=] {
            samband_submit_result r{};
            r.struct_size = sizeof r;
            r.status = st;
            r.event_id = str(event_id);
            r.message = str(message);
            done(user, &r);
        }).join();
    }

    // Answers every held submission (so stop() has nothing to wait for).
    void answer_all(samband_status st) {
        for (std::size_t i = 0; i < submission_count(); ++i) {
            bool held;
            {
                std::lock_guard lock(mu_);
                held = !subs_[i].answered;
            }
            if (held) answer(i, st);
        }
    }

    struct completion {
        samband_status status;
        std::string external_id, message;
    };
    std::vector<completion> completions(uint64_t token) {
        std::lock_guard lock(mu_);
        return completions_[token];
    }
    std::vector<std::string> logs() {
        std::lock_guard lock(mu_);
        return logs_;
    }

private:
    static samband_status t_submit(void* ctx, const samband_submission* in,
                                   samband_submit_done_fn done, void* user) {
        auto* self = static_cast<fake_host*>(ctx);
        samband_submission sub;
        if (samband_copy_struct(&sub, sizeof sub, in, SAMBAND_V1_0_SUBMISSION_SIZE) != SAMBAND_OK ||
            sub.attachment_count > SAMBAND_MAX_ATTACHMENTS)
            return SAMBAND_INVALID;
        submitted s;
        s.envelope = view(sub.envelope_json);
        for (std::size_t i = 0; i < sub.attachment_count; ++i) {
            samband_submit_attachment a;
            if (samband_copy_struct(&a, sizeof a, sub.attachments[i],
                                    SAMBAND_V1_0_SUBMIT_ATTACHMENT_SIZE) != SAMBAND_OK)
                return SAMBAND_INVALID;
            submitted::attachment c{view(a.filename), view(a.media_type), view(a.path), {}};
            // The host copies before submit returns: read the file now.
            c.bytes = c.path.empty()
                          ? std::string(reinterpret_cast<const char*>(a.bytes.data), a.bytes.size)
                          : read_file(c.path);
            s.attachments.push_back(std::move(c));
        }
        s.done = done;
        s.user = user;
        submit_policy p;
        {
            std::lock_guard lock(self->mu_);
            p = self->policy_;
            if (p.immediate != SAMBAND_OK) return p.immediate;  // `done` is never called
            s.answered = p.answer_now.has_value();
            self->subs_.push_back(s);
        }
        if (p.answer_now) {
            samband_submit_result r{};
            r.struct_size = sizeof r;
            r.status = *p.answer_now;
            r.event_id = str(std::string("ev-inline"));
            r.message = str(p.message);
            done(user, &r);
        }
        return SAMBAND_OK;
    }
    static samband_status t_attachment_read(void* ctx, uint64_t handle, uint64_t offset,
                                            uint8_t* out, size_t capacity, size_t* read) {
        auto* self = static_cast<fake_host*>(ctx);
        std::lock_guard lock(self->mu_);
        auto it = self->attachments_.find(handle);
        if (it == self->attachments_.end()) return SAMBAND_INVALID;
        const auto& [bytes, fail_after] = it->second;
        if (fail_after && offset > *fail_after) return SAMBAND_RETRY;
        std::size_t n =
            offset >= bytes.size() ? 0 : std::min<std::size_t>(capacity, bytes.size() - offset);
        if (n) std::memcpy(out, bytes.data() + offset, n);
        *read = n;
        return SAMBAND_OK;
    }

    samband_host_api api_{};
    std::mutex mu_;
    submit_policy policy_;
    std::vector<submitted> subs_;
    std::map<uint64_t, std::pair<std::string, std::optional<uint64_t>>> attachments_;
    std::map<uint64_t, std::vector<completion>> completions_;
    std::vector<std::string> logs_;
};

// One plugin instance (create + start), stopped and destroyed at the end of the test.
class plugin_instance {
public:
    plugin_instance(const samband_plugin_descriptor* d, fake_host& host, const std::string& config)
        : d_(d) {
        samband_error err;
        status_ = d_->create(host.api(), str(config), &err, &self_);
        error_ = err.text;
    }
    ~plugin_instance() {
        if (!self_) return;
        stop();
        d_->destroy(self_);
    }
    plugin_instance(const plugin_instance&) = delete;
    plugin_instance& operator=(const plugin_instance&) = delete;

    samband_status create_status() const { return status_; }
    const std::string& create_error() const { return error_; }
    void* self() const { return self_; }

    samband_status start() {
        samband_error err;
        return d_->start(self_, &err);
    }
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        d_->stop(self_);
    }

private:
    const samband_plugin_descriptor* d_;
    void* self_ = nullptr;
    samband_status status_ = SAMBAND_INTERNAL;
    std::string error_;
    bool stopped_ = false;
};

// A delivery the test builds, holding the strings its C struct points at.
struct test_delivery {
    std::string id, event_id, destination, envelope;
    struct att {
        std::string id, filename, media_type;
        uint64_t size;
        uint64_t handle;
    };
    std::vector<att> atts{};
    uint32_t attempt = 1;
    uint64_t token = 1;

    std::vector<samband_attachment> c_atts{};
    std::vector<const samband_attachment*> c_ptrs{};
    samband_event c_event{};
    samband_delivery c{};

    const samband_delivery* get() {
        c_atts.clear();
        c_ptrs.clear();
        for (const auto& a : atts) {
            samband_attachment s{};
            s.struct_size = sizeof s;
            s.id = str(a.id);
            s.filename = str(a.filename);
            s.media_type = str(a.media_type);
            s.size = a.size;
            s.handle = a.handle;
            c_atts.push_back(s);
        }
        for (const auto& a : c_atts) c_ptrs.push_back(&a);
        c = samband_delivery{};
        c.struct_size = sizeof c;
        c.token = token;
        c.delivery_id = str(id);
        c.event_id = str(event_id);
        c.destination = str(destination);
        c.attempt = attempt;
        c.deadline_unix_ms = 0;
        c_event = samband_event{};
        c_event.struct_size = sizeof c_event;
        c_event.envelope_json = str(envelope);
        c_event.attachments = c_ptrs.data();
        c_event.attachment_count = c_ptrs.size();
        c.event = &c_event;
        return &c;
    }
};

class file_plugin_test : public ::testing::Test {
protected:
    void SetUp() override {
        desc_ = load_file_plugin();
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        root_ = fs::temp_directory_path() /
                ("samband-file-plugin-" + std::to_string(::getpid()) + "-" + info->name());
        fs::remove_all(root_);
        fs::create_directories(root_);
    }
    void TearDown() override {
        if (!HasFailure()) fs::remove_all(root_);
    }

    std::string outbox_config() const {
        return R"({"outbox": ")" + (root_ / "out").string() + R"("})";
    }
    std::string inbox_config(const std::string& extra = {}) const {
        return R"({"inbox": ")" + (root_ / "in").string() + R"(", "poll_ms": 10)" + extra + "}";
    }

    const samband_plugin_descriptor* desc_ = nullptr;
    fs::path root_;
    fake_host host_;
};

const std::string kEnvelope =
    R"({"schema":"samband.event/1","id":"ev-1","type":"rph.treatment.started",)"
    R"("subject":{"fnr":"14839134623"},"data":{"treatment_id":"T-1"}})";

// ---- descriptor and config --------------------------------------------------------------------

TEST_F(file_plugin_test, descriptor_is_a_source_and_sink_that_renders) {
    EXPECT_STREQ(desc_->name, "file");
    EXPECT_EQ(SAMBAND_ABI_MAJOR_OF(desc_->abi_version), SAMBAND_ABI_MAJOR);
    EXPECT_EQ(desc_->kinds, SAMBAND_KIND_SOURCE | SAMBAND_KIND_SINK);
    EXPECT_EQ(desc_->capabilities, SAMBAND_CAP_RENDER);
    ASSERT_NE(desc_->sink, nullptr);
    EXPECT_NE(desc_->sink->render, nullptr);
    EXPECT_NE(desc_->source, nullptr);
}

TEST_F(file_plugin_test, config_without_inbox_or_outbox_is_refused_with_a_reason) {
    plugin_instance p(desc_, host_, R"({"poll_ms": 100})");
    EXPECT_EQ(p.create_status(), SAMBAND_INVALID);
    EXPECT_NE(p.create_error().find("inbox"), std::string::npos) << p.create_error();
}

TEST_F(file_plugin_test, config_with_unknown_on_done_or_bad_poll_is_refused) {
    plugin_instance a(desc_, host_, inbox_config(R"(, "on_done": "archive")"));
    EXPECT_EQ(a.create_status(), SAMBAND_INVALID);
    EXPECT_NE(a.create_error().find("on_done"), std::string::npos) << a.create_error();
    plugin_instance b(desc_, host_,
                      R"({"inbox": ")" + (root_ / "in").string() + R"(", "poll_ms": "fast"})");
    EXPECT_EQ(b.create_status(), SAMBAND_INVALID);
    plugin_instance c(desc_, host_, "not json");
    EXPECT_EQ(c.create_status(), SAMBAND_INVALID);
}

// ---- sink ------------------------------------------------------------------------------------

TEST_F(file_plugin_test, sink_writes_envelope_and_attachments_bit_exact_and_names_the_file) {
    plugin_instance p(desc_, host_, outbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    // Larger than the SDK's 64 KB read chunk, and holding NULs: read in several pieces.
    std::string pdf = random_bytes(200 * 1024 + 17, 1);
    std::string small = std::string("a\0b\r\nc", 6);
    host_.add_attachment(11, pdf);
    host_.add_attachment(12, small);
    test_delivery d{"d-1", "ev-1", "gp", kEnvelope};
    d.atts = {{"a1", "epikrise.pdf", "application/pdf", pdf.size(), 11},
              {"a2", "note.txt", "text/plain", small.size(), 12}};
    samband_error err;
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK) << err.text;
    ASSERT_TRUE(wait_for([&] { return !host_.completions(1).empty(); }));
    auto c = host_.completions(1);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].status, SAMBAND_OK) << c[0].message;
    EXPECT_EQ(c[0].external_id, "gp-d-1.json");

    fs::path out = root_ / "out";
    EXPECT_EQ(names_in(out),
              (std::set<std::string>{"gp-d-1.json", "gp-d-1.epikrise.pdf", "gp-d-1.note.txt"}));
    EXPECT_EQ(read_file(out / "gp-d-1.json"), kEnvelope);
    EXPECT_EQ(read_file(out / "gp-d-1.epikrise.pdf"), pdf);
    EXPECT_EQ(read_file(out / "gp-d-1.note.txt"), small);
}

TEST_F(file_plugin_test, sink_repeat_of_a_delivery_replaces_the_same_files_and_adds_none) {
    plugin_instance p(desc_, host_, outbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    host_.add_attachment(11, "first pdf");
    test_delivery d{"d-7", "ev-7", "gp", kEnvelope};
    d.atts = {{"a1", "x.pdf", "application/pdf", 9, 11}};
    samband_error err;
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !host_.completions(1).empty(); }));
    auto before = names_in(root_ / "out");

    // The repeat after a crash: same delivery id, a later attempt, a new token.
    host_.add_attachment(11, "second pdf");
    d.attempt = 2;
    d.token = 2;
    d.envelope = kEnvelope + " ";
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !host_.completions(2).empty(); }));
    EXPECT_EQ(host_.completions(2)[0].status, SAMBAND_OK);
    EXPECT_EQ(host_.completions(2)[0].external_id, host_.completions(1)[0].external_id);
    EXPECT_EQ(names_in(root_ / "out"), before);
    EXPECT_EQ(before.size(), 2u);
    EXPECT_EQ(read_file(root_ / "out" / "gp-d-7.json"), kEnvelope + " ");
    EXPECT_EQ(read_file(root_ / "out" / "gp-d-7.x.pdf"), "second pdf");
}

TEST_F(file_plugin_test, sink_failed_attachment_read_retries_and_leaves_no_partial_file) {
    plugin_instance p(desc_, host_, outbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    // A complete earlier copy exists; a failing rewrite must not clobber it or leave a temp file.
    std::string good = random_bytes(150 * 1024, 2);
    host_.add_attachment(11, good);
    test_delivery d{"d-2", "ev-2", "gp", kEnvelope};
    d.atts = {{"a1", "big.bin", "application/octet-stream", good.size(), 11}};
    samband_error err;
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !host_.completions(1).empty(); }));
    ASSERT_EQ(read_file(root_ / "out" / "gp-d-2.big.bin"), good);

    host_.add_attachment(11, random_bytes(150 * 1024, 3), /*fail_after=*/70000);
    d.token = 2;
    d.attempt = 2;
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !host_.completions(2).empty(); }));
    EXPECT_EQ(host_.completions(2)[0].status, SAMBAND_RETRY);
    EXPECT_FALSE(host_.completions(2)[0].message.empty());
    EXPECT_EQ(read_file(root_ / "out" / "gp-d-2.big.bin"), good);
    EXPECT_EQ(names_in(root_ / "out"), (std::set<std::string>{"gp-d-2.json", "gp-d-2.big.bin"}));
}

TEST_F(file_plugin_test, sink_render_returns_exactly_the_bytes_deliver_writes) {
    plugin_instance p(desc_, host_, outbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    test_delivery d{"d-3", "ev-3", "journal", kEnvelope};
    samband_render_out out;
    samband_error err;
    ASSERT_EQ(desc_->sink->render(p.self(), d.get(), &out, &err), SAMBAND_OK) << err.text;
    EXPECT_TRUE(names_in(root_ / "out").empty()) << "render must not write anything";
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !host_.completions(1).empty(); }));
    EXPECT_EQ(out.name, host_.completions(1)[0].external_id);
    EXPECT_EQ(out.bytes, read_file(root_ / "out" / out.name));
}

TEST_F(file_plugin_test, sink_naming_pattern_is_followed_and_ids_cannot_escape_the_outbox) {
    plugin_instance p(desc_, host_,
                      R"({"outbox": ")" + (root_ / "out").string() +
                          R"(", "naming": "samband_{delivery_id}_{destination}"})");
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    test_delivery d{"../../escape", "ev-4", "gp/x", kEnvelope};
    host_.add_attachment(11, "bytes");
    d.atts = {{"a1", "../../evil.pdf", "application/pdf", 5, 11}};
    samband_error err;
    ASSERT_EQ(desc_->sink->deliver(p.self(), d.get(), &err), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !host_.completions(1).empty(); }));
    auto c = host_.completions(1)[0];
    EXPECT_EQ(c.status, SAMBAND_OK);
    EXPECT_EQ(c.external_id.rfind("samband_", 0), 0u) << c.external_id;
    EXPECT_EQ(c.external_id.find('/'), std::string::npos) << c.external_id;
    EXPECT_EQ(names_in(root_ / "out").size(), 2u);
    EXPECT_TRUE(fs::exists(root_ / "out" / c.external_id));
    EXPECT_EQ(names_in(root_).size(), 0u) << "nothing written beside the outbox";
}

// ---- source ----------------------------------------------------------------------------------

TEST_F(file_plugin_test, source_ignores_unfinished_and_hidden_files_until_renamed_to_json) {
    fs::create_directories(root_ / "in");
    write_file(root_ / "in" / "a.json.tmp", kEnvelope);
    write_file(root_ / "in" / ".b.json", kEnvelope);
    write_file(root_ / "in" / "c.json.part", kEnvelope);
    write_file(root_ / "in" / "d.txt", kEnvelope);
    write_file(root_ / "in" / "e.pdf", "pdf");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    std::this_thread::sleep_for(200ms);  // 20 poll intervals
    EXPECT_EQ(host_.submission_count(), 0u);

    fs::rename(root_ / "in" / "a.json.tmp", root_ / "in" / "a.json");
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 1; }));
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "a.json"); }));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(host_.submission_count(), 1u);
    EXPECT_EQ(names_in(root_ / "in"),
              (std::set<std::string>{".b.json", "c.json.part", "d.txt", "e.pdf"}));
}

TEST_F(file_plugin_test, source_submits_attachments_by_path_and_moves_all_to_done_after_ok) {
    fs::create_directories(root_ / "in");
    std::string pdf = random_bytes(100 * 1024, 4);
    write_file(root_ / "in" / "henvisning-1.pdf", pdf);
    std::string ev =
        R"({"type":"rph.referral.received","idempotency_key":"epj:ref-1","attachments":[)"
        R"({"file":"henvisning-1.pdf","filename":"henvisning.pdf","media_type":"application/pdf"}]})";
    drop_file(root_ / "in", "ref-1.json", ev);
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 1; }));

    auto s = host_.submission(0);
    ASSERT_EQ(s.attachments.size(), 1u);
    EXPECT_EQ(s.attachments[0].filename, "henvisning.pdf");
    EXPECT_EQ(s.attachments[0].media_type, "application/pdf");
    EXPECT_FALSE(s.attachments[0].path.empty()) << "attachments go as paths (the host streams)";
    EXPECT_EQ(s.attachments[0].bytes, pdf);
    rapidjson::Document d;
    d.Parse(s.envelope.c_str());
    ASSERT_FALSE(d.HasParseError());
    EXPECT_STREQ(d["idempotency_key"].GetString(), "epj:ref-1") << "the file's key is kept";

    // Until the host answers, everything stays in the inbox and nothing is submitted again.
    std::this_thread::sleep_for(150ms);
    EXPECT_EQ(host_.submission_count(), 1u);
    EXPECT_TRUE(fs::exists(root_ / "in" / "ref-1.json"));
    host_.answer(0, SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "ref-1.json"); }));
    EXPECT_EQ(read_file(root_ / "in" / "done" / "ref-1.json"), ev);
    EXPECT_EQ(read_file(root_ / "in" / "done" / "henvisning-1.pdf"), pdf);
    EXPECT_FALSE(fs::exists(root_ / "in" / "ref-1.json"));
    EXPECT_FALSE(fs::exists(root_ / "in" / "henvisning-1.pdf"));
}

TEST_F(file_plugin_test, source_moves_refused_file_to_error_with_the_hosts_reason) {
    fs::create_directories(root_ / "in");
    write_file(root_ / "in" / "att.txt", "x");
    drop_file(root_ / "in", "bad.json",
              R"({"type":"rph.nope","attachments":[{"file":"att.txt"}]})");
    host_.set_policy({SAMBAND_OK, SAMBAND_INVALID, "unknown event type rph.nope"});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "error" / "bad.json"); }));
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "error" / "bad.json.reason"); }));
    EXPECT_NE(
        read_file(root_ / "in" / "error" / "bad.json.reason").find("unknown event type rph.nope"),
        std::string::npos);
    EXPECT_TRUE(fs::exists(root_ / "in" / "error" / "att.txt"));
    EXPECT_FALSE(fs::exists(root_ / "in" / "bad.json"));
    EXPECT_FALSE(fs::exists(root_ / "in" / "done" / "bad.json"));
    EXPECT_EQ(host_.submission_count(), 1u);
}

// Issue 15 item 4: a symbolic link (to a secret elsewhere), a FIFO, an unreadable file and an
// oversized one are each refused with the reason, none is read (nothing is submitted, the secret
// is not copied), and a good file beside them is still taken.
TEST_F(file_plugin_test,
       source_refuses_links_fifos_unreadable_and_oversized_files_without_reading) {
    fs::create_directories(root_ / "in");
    write_file(root_ / "secret.txt", "root:$6$not-a-real-hash:19000:0:99999:7:::");
    fs::create_symlink(root_ / "secret.txt", root_ / "in" / "link.json");
    ASSERT_EQ(::mkfifo((root_ / "in" / "pipe.json").c_str(), 0600), 0);
    drop_file(root_ / "in", "big.json", std::string(4096, ' ') + "{}");
    drop_file(root_ / "in", "locked.json", "{}");
    fs::permissions(root_ / "in" / "locked.json", fs::perms::none);
    bool root_reads_anyway = ::access((root_ / "in" / "locked.json").c_str(), R_OK) == 0;
    drop_file(root_ / "in", "good.json", R"({"type":"rph.treatment.started"})");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, ""});
    plugin_instance p(desc_, host_, inbox_config(R"(, "max_file_bytes": 1024)"));
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    auto reason = [&](const std::string& n) {
        return read_file(root_ / "in" / "error" / (n + ".reason"));
    };
    auto refused = [&](const std::string& n) {
        return fs::exists(root_ / "in" / "error" / (n + ".reason"));
    };
    ASSERT_TRUE(wait_for([&] {
        return refused("link.json") && refused("pipe.json") && refused("big.json") &&
               fs::exists(root_ / "in" / "done" / "good.json");
    }));
    EXPECT_NE(reason("link.json").find("is a symbolic link"), std::string::npos);
    EXPECT_NE(reason("pipe.json").find("is a FIFO"), std::string::npos);
    EXPECT_NE(reason("big.json").find("over max_file_bytes (1024)"), std::string::npos);
    // The link itself moved to error/; its target is where it was and was never read.
    EXPECT_TRUE(fs::is_symlink(fs::symlink_status(root_ / "in" / "error" / "link.json")));
    EXPECT_TRUE(fs::exists(root_ / "secret.txt"));
    if (!root_reads_anyway) {
        ASSERT_TRUE(wait_for([&] { return refused("locked.json"); }));
        EXPECT_NE(reason("locked.json").find("cannot be opened: Permission denied"),
                  std::string::npos);
    }
    // Each refusal went to the host as a samband.input.rejected with its reason and no input;
    // nothing submitted holds the secret.
    std::size_t rejected = 0;
    for (std::size_t i = 0; i < host_.submission_count(); ++i) {
        const std::string& env = host_.submission(i).envelope;
        EXPECT_EQ(env.find("not-a-real-hash"), std::string::npos) << env;
        if (env.find("samband.input.rejected") != std::string::npos) {
            ++rejected;
            EXPECT_NE(env.find("\"input\":\"\""), std::string::npos) << env;
        }
    }
    EXPECT_EQ(rejected, root_reads_anyway ? 3u : 4u);
    EXPECT_EQ(host_.submission_count(), 5u);  // 4 entries refused or read, and good.json
}

TEST_F(file_plugin_test, source_submits_malformed_json_raw_and_lets_the_host_refuse_it) {
    fs::create_directories(root_ / "in");
    const std::string garbage = "{\"type\": \"rph.treatment.started\", oops";
    drop_file(root_ / "in", "broken.json", garbage);
    host_.set_policy({SAMBAND_OK, SAMBAND_INVALID, "envelope is not JSON"});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "error" / "broken.json"); }));
    ASSERT_EQ(host_.submission_count(), 1u);
    EXPECT_EQ(host_.submission(0).envelope, garbage);
    EXPECT_NE(read_file(root_ / "in" / "error" / "broken.json.reason").find("not JSON"),
              std::string::npos);
}

TEST_F(file_plugin_test, source_leaves_the_file_in_place_on_retry_and_tries_again_later) {
    fs::create_directories(root_ / "in");
    write_file(root_ / "in" / "r.pdf", "pdf");
    drop_file(root_ / "in", "r.json",
              R"({"type":"rph.treatment.started","attachments":[{"file":"r.pdf"}]})");
    host_.set_policy({SAMBAND_OK, SAMBAND_RETRY, "store busy"});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() >= 3; }));
    EXPECT_TRUE(fs::exists(root_ / "in" / "r.json"));
    EXPECT_TRUE(fs::exists(root_ / "in" / "r.pdf"));
    EXPECT_TRUE(names_in(root_ / "in" / "done").empty());
    EXPECT_TRUE(names_in(root_ / "in" / "error").empty());
    // Every retry submits the same event: the same derived key.
    EXPECT_EQ(host_.submission(0).envelope, host_.submission(2).envelope);

    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "r.json"); }));
    EXPECT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "r.pdf"); }));
}

TEST_F(file_plugin_test, source_keeps_the_file_when_the_host_refuses_the_call_with_retry) {
    fs::create_directories(root_ / "in");
    drop_file(root_ / "in", "s.json", kEnvelope);
    host_.set_policy({SAMBAND_RETRY, std::nullopt, {}});  // stopping or overloaded: no `done`
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(fs::exists(root_ / "in" / "s.json"));
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "s.json"); }));
    EXPECT_EQ(host_.submission_count(), 1u);
}

TEST_F(file_plugin_test, source_never_has_one_file_submitted_twice_at_once) {
    fs::create_directories(root_ / "in");
    for (int i = 0; i < 5; ++i)
        drop_file(root_ / "in", "n" + std::to_string(i) + ".json", kEnvelope);
    plugin_instance p(desc_, host_, inbox_config());  // default policy: hold every answer
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 5; }));
    std::this_thread::sleep_for(200ms);  // 20 more scans with every answer outstanding
    ASSERT_EQ(host_.submission_count(), 5u);
    for (std::size_t i = 0; i < 5; ++i) host_.answer(i, SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return names_in(root_ / "in" / "done").size() == 5; }));
    EXPECT_EQ(host_.submission_count(), 5u);
}

TEST_F(file_plugin_test, source_window_caps_the_files_awaiting_an_answer) {
    fs::create_directories(root_ / "in");
    for (int i = 0; i < 6; ++i)
        drop_file(root_ / "in", "w" + std::to_string(i) + ".json", kEnvelope);
    plugin_instance p(desc_, host_, inbox_config(R"(, "window": 2)"));
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 2; }));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(host_.submission_count(), 2u);
    host_.answer(0, SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 3; }));
    EXPECT_LE(host_.unanswered(), 2u);
    host_.answer_all(SAMBAND_OK);
}

std::string key_of(const std::string& envelope) {
    rapidjson::Document d;
    d.Parse(envelope.c_str());
    if (d.HasParseError() || !d.HasMember("idempotency_key")) return {};
    return d["idempotency_key"].GetString();
}

TEST_F(file_plugin_test, source_derives_a_key_from_name_and_content_so_a_redrop_dedupes) {
    fs::create_directories(root_ / "in");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    drop_file(root_ / "in", "k.json", kEnvelope);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "k.json"); }));
    drop_file(root_ / "in", "k.json", kEnvelope);  // the same file dropped again
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 2; }));
    ASSERT_TRUE(wait_for([&] { return !fs::exists(root_ / "in" / "k.json"); }));
    drop_file(root_ / "in", "k.json", kEnvelope + "\n");  // same name, other content
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 3; }));

    std::string k1 = key_of(host_.submission(0).envelope);
    EXPECT_EQ(k1.rfind("file:k.json:", 0), 0u) << k1;
    EXPECT_EQ(key_of(host_.submission(1).envelope), k1);
    EXPECT_NE(key_of(host_.submission(2).envelope), k1);
}

// The derived key covers the attachment files too: the same JSON dropped again with a corrected
// attachment is a new event (it was taken as a duplicate and the new bytes were dropped).
TEST_F(file_plugin_test, source_derived_key_changes_when_an_attachment_changes) {
    fs::create_directories(root_ / "in");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    const std::string ev = R"({"type":"rph.referral.received","attachments":[{"file":"h.pdf"}]})";
    write_file(root_ / "in" / "h.pdf", "version 1");
    drop_file(root_ / "in", "h.json", ev);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "h.json"); }));
    write_file(root_ / "in" / "h.pdf", "version 2, corrected");
    drop_file(root_ / "in", "h.json", ev);
    ASSERT_TRUE(wait_for([&] { return host_.submission_count() == 2; }));
    EXPECT_NE(key_of(host_.submission(0).envelope), key_of(host_.submission(1).envelope));
}

TEST_F(file_plugin_test, source_on_done_delete_removes_the_files_after_ok) {
    fs::create_directories(root_ / "in");
    write_file(root_ / "in" / "x.pdf", "pdf");
    drop_file(root_ / "in", "x.json", R"({"type":"t","attachments":[{"file":"x.pdf"}]})");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    plugin_instance p(desc_, host_, inbox_config(R"(, "on_done": "delete")"));
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return !fs::exists(root_ / "in" / "x.json"); }));
    EXPECT_FALSE(fs::exists(root_ / "in" / "x.pdf"));
    EXPECT_TRUE(names_in(root_ / "in" / "done").empty());
    EXPECT_EQ(host_.submission_count(), 1u);
}

TEST_F(file_plugin_test, source_refuses_an_event_whose_attachment_file_is_missing_or_unsafe) {
    fs::create_directories(root_ / "in");
    write_file(root_ / "secret.txt", "outside the inbox");
    drop_file(root_ / "in", "m.json", R"({"type":"t","attachments":[{"file":"nope.pdf"}]})");
    drop_file(root_ / "in", "u.json", R"({"type":"t","attachments":[{"file":"../secret.txt"}]})");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "error" / "m.json.reason"); }));
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "error" / "u.json.reason"); }));
    // Named by its place in the event and the rule, not by the name given (issue 15 item 3).
    EXPECT_NE(read_file(root_ / "in" / "error" / "m.json.reason")
                  .find("/attachments/0/file: the file is not in the inbox"),
              std::string::npos)
        << read_file(root_ / "in" / "error" / "m.json.reason");
    EXPECT_EQ(read_file(root_ / "in" / "error" / "m.json.reason").find("nope"), std::string::npos);
    EXPECT_NE(read_file(root_ / "in" / "error" / "u.json.reason")
                  .find("/attachments/0/file: must be a plain file name in the inbox"),
              std::string::npos)
        << read_file(root_ / "in" / "error" / "u.json.reason");
    EXPECT_EQ(read_file(root_ / "in" / "error" / "u.json.reason").find("secret"),
              std::string::npos);
    // Each refusal is kept in the host's error store with the event's text as its input; nothing
    // outside the inbox reaches the host.
    ASSERT_EQ(host_.submission_count(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
        const std::string& env = host_.submission(i).envelope;
        EXPECT_NE(env.find("\"type\":\"samband.input.rejected\""), std::string::npos) << env;
        EXPECT_NE(env.find("/attachments/0/file"), std::string::npos) << env;
        EXPECT_NE(env.find("\"input\":\"{\\\"type\\\""), std::string::npos) << env;
        EXPECT_EQ(env.find("outside the inbox"), std::string::npos) << env;
    }
    EXPECT_TRUE(fs::exists(root_ / "secret.txt"));
}

// Issue 15 item 5: a host that answers RETRY (a full attachment folder) is not hammered: the file
// stays and is offered again after a delay doubling from poll_ms (10 ms here), and is taken as
// soon as the host can.
TEST_F(file_plugin_test, source_backs_off_a_file_the_host_asks_to_retry) {
    fs::create_directories(root_ / "in");
    drop_file(root_ / "in", "x.json", kEnvelope);
    host_.set_policy({SAMBAND_OK, SAMBAND_RETRY, "the attachment folder cannot be written now"});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    // Delays 10, 20, 40, ... ms: about 7 offers in a second; without the back-off, one per answer
    // (thousands).
    EXPECT_FALSE(wait_for([&] { return host_.submission_count() >= 15; }, 1000ms))
        << host_.submission_count() << " offers in 1 s";
    std::size_t offers = host_.submission_count();
    EXPECT_GE(offers, 3u);
    EXPECT_TRUE(fs::exists(root_ / "in" / "x.json")) << "the file stays while the host says RETRY";
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    EXPECT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "x.json"); }, 15000ms));
}

TEST_F(file_plugin_test, source_stop_returns_promptly_and_submits_nothing_after) {
    fs::create_directories(root_ / "in");
    host_.set_policy({SAMBAND_OK, SAMBAND_OK, {}});
    plugin_instance p(desc_, host_, inbox_config());
    ASSERT_EQ(p.create_status(), SAMBAND_OK) << p.create_error();
    ASSERT_EQ(p.start(), SAMBAND_OK);
    drop_file(root_ / "in", "before.json", kEnvelope);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "in" / "done" / "before.json"); }));
    auto t0 = std::chrono::steady_clock::now();
    p.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    drop_file(root_ / "in", "after.json", kEnvelope);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(host_.submission_count(), 1u);
    EXPECT_TRUE(fs::exists(root_ / "in" / "after.json"));
}

}  // namespace
