#include "directory/gp_directory.hpp"

#include "codec/json.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace samband::directory {

namespace {

std::string num_or_str(const rapidjson::Value& obj, const char* key) {
    auto it = obj.FindMember(key);
    if (it == obj.MemberEnd()) return {};
    if (it->value.IsString()) return it->value.GetString();
    if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
    return {};
}

class file_directory final : public gp_directory {
public:
    explicit file_directory(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw std::runtime_error("gp directory: cannot read " + path);
        std::stringstream ss;
        ss << in.rdbuf();
        auto doc = codec::parse_json(ss.str());
        if (!doc) throw std::runtime_error("gp directory " + path + ": " + doc.error());
        const auto& d = *doc;
        if (!d.IsObject()) throw std::runtime_error("gp directory " + path + ": not an object");
        std::unordered_map<std::string, gp_info> offices;
        if (d.HasMember("organisations") && d["organisations"].IsArray()) {
            for (const auto& org : d["organisations"].GetArray()) {
                if (!org.IsObject()) continue;
                gp_info office;
                office.office_her_id = num_or_str(org, "her_id");
                office.office_org_nr = num_or_str(org, "org_nr");
                office.office_name = num_or_str(org, "name");
                offices[office.office_her_id] = office;
                if (org.HasMember("people") && org["people"].IsArray()) {
                    for (const auto& p : org["people"].GetArray()) {
                        gp_info g = office;
                        g.gp_her_id = num_or_str(p, "her_id");
                        g.gp_hpr = num_or_str(p, "hpr");
                        g.gp_given_name = num_or_str(p, "given_name");
                        g.gp_family_name = num_or_str(p, "family_name");
                        people_[g.gp_her_id] = g;
                    }
                }
            }
        }
        if (d.HasMember("gp_list") && d["gp_list"].IsArray()) {
            for (const auto& e : d["gp_list"].GetArray()) {
                std::string patient = num_or_str(e, "patient");
                std::string gp = num_or_str(e, "gp_her_id");
                auto it = people_.find(gp);
                if (it != people_.end()) {
                    list_[patient] = it->second;
                } else {
                    auto off = offices.find(num_or_str(e, "office_her_id"));
                    gp_info g = off != offices.end() ? off->second : gp_info{};
                    g.gp_her_id = gp;
                    list_[patient] = g;
                }
            }
        }
    }
    boost::system::result<std::optional<gp_info>, std::string> find_gp(
        std::string_view patient_id) override {
        auto it = list_.find(std::string(patient_id));
        if (it == list_.end()) return std::optional<gp_info>();
        return std::optional<gp_info>(it->second);
    }
    boost::system::result<std::optional<gp_info>, std::string> find_by_her_id(
        std::string_view her_id) override {
        auto it = people_.find(std::string(her_id));
        if (it == people_.end()) return std::optional<gp_info>();
        return std::optional<gp_info>(it->second);
    }

private:
    std::unordered_map<std::string, gp_info> people_;
    std::unordered_map<std::string, gp_info> list_;
};

class cached final : public gp_directory {
public:
    cached(std::unique_ptr<gp_directory> inner, std::chrono::seconds ttl,
           std::function<std::chrono::steady_clock::time_point()> clock)
        : inner_(std::move(inner)), ttl_(ttl), clock_(std::move(clock)) {
        if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
    }
    boost::system::result<std::optional<gp_info>, std::string> find_gp(
        std::string_view patient_id) override {
        return lookup(by_patient_, patient_id, [&] { return inner_->find_gp(patient_id); });
    }
    boost::system::result<std::optional<gp_info>, std::string> find_by_her_id(
        std::string_view her_id) override {
        return lookup(by_her_, her_id, [&] { return inner_->find_by_her_id(her_id); });
    }

private:
    struct entry {
        std::optional<gp_info> value;
        std::chrono::steady_clock::time_point expires;
    };
    template <class F>
    boost::system::result<std::optional<gp_info>, std::string> lookup(
        std::unordered_map<std::string, entry>& cache, std::string_view key, F&& fetch) {
        auto now = clock_();
        {
            std::lock_guard lock(mu_);
            auto it = cache.find(std::string(key));
            if (it != cache.end() && it->second.expires > now) return it->second.value;
        }
        auto r = fetch();
        if (!r) return r;  // errors are not cached
        std::lock_guard lock(mu_);
        cache[std::string(key)] = entry{*r, now + ttl_};
        return r;
    }
    std::unique_ptr<gp_directory> inner_;
    std::chrono::seconds ttl_;
    std::function<std::chrono::steady_clock::time_point()> clock_;
    std::mutex mu_;
    std::unordered_map<std::string, entry> by_patient_, by_her_;
};

}  // namespace

std::unique_ptr<gp_directory> open_file_directory(const std::string& path) {
    return std::make_unique<file_directory>(path);
}

std::unique_ptr<gp_directory> with_cache(
    std::unique_ptr<gp_directory> inner, std::chrono::seconds ttl,
    std::function<std::chrono::steady_clock::time_point()> clock) {
    return std::make_unique<cached>(std::move(inner), ttl, std::move(clock));
}

}  // namespace samband::directory
