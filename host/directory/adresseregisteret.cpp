#include "directory/adresseregisteret.hpp"

#include "codec/json.hpp"

#include "nhn/codec/adresseregisteret.hpp"
#include "nhn/codec/names.hpp"

#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace samband::directory {

namespace {

using check_result = boost::system::result<receiver_verdict, std::string>;

receiver_verdict refused(std::string reason) {
    receiver_verdict v;
    v.reason = std::move(reason);
    return v;
}

receiver_verdict verdict_of(const nhn::ar::communication_party& p) {
    receiver_verdict v;
    v.name = p.name;
    v.can_receive = p.can_receive(&v.reason);
    return v;
}

struct file_party {
    nhn::ar::communication_party party;
    std::vector<std::string> message_types;
};

std::map<std::string, file_party> read_parties(const std::string& file) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error("adresseregisteret: cannot read the file " + file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto doc = codec::parse_json(ss.str());
    if (!doc || !doc->IsObject() || !doc->HasMember("parties") || !(*doc)["parties"].IsArray())
        throw std::runtime_error("adresseregisteret: " + file +
                                 ": expected {\"parties\": [{\"her_id\": …}]}");
    std::map<std::string, file_party> out;
    const auto& parties = (*doc)["parties"];
    for (rapidjson::SizeType i = 0; i < parties.Size(); ++i) {
        const auto& p = parties[i];
        std::string at = file + ": parties[" + std::to_string(i) + "]";
        if (!p.IsObject() || !p.HasMember("her_id") || !p["her_id"].IsString())
            throw std::runtime_error("adresseregisteret: " + at + " needs a string her_id");
        auto flag = [&](const char* k) {
            auto it = p.FindMember(k);
            if (it == p.MemberEnd()) return false;
            if (!it->value.IsBool())
                throw std::runtime_error("adresseregisteret: " + at + "." + k +
                                         " must be true or false");
            return it->value.GetBool();
        };
        file_party f;
        if (auto t = p.FindMember("message_types"); t != p.MemberEnd()) {
            if (!t->value.IsArray())
                throw std::runtime_error("adresseregisteret: " + at +
                                         ".message_types must be a list of message types");
            for (const auto& m : t->value.GetArray()) {
                std::string type = m.IsString() ? m.GetString() : "";
                if (type != nhn::names::dialog_helsefaglig &&
                    type != nhn::names::dialog_foresporsel && type != nhn::names::dialog_svar)
                    throw std::runtime_error(
                        "adresseregisteret: " + at + ".message_types: \"" + type +
                        "\" is not one of DIALOG_HELSEFAGLIG, DIALOG_FORESPORSEL, DIALOG_SVAR");
                f.message_types.push_back(type);
            }
        }
        nhn::ar::communication_party& c = f.party;
        c.her_id = p["her_id"].GetString();
        if (auto n = p.FindMember("name"); n != p.MemberEnd() && n->value.IsString())
            c.name = n->value.GetString();
        c.active = flag("active");
        c.valid_communication_party = flag("valid");
        c.has_edi_address = flag("edi_address");
        out[c.her_id] = std::move(f);
    }
    return out;
}

class ar_directory final : public receiver_directory {
public:
    ar_directory(ar_options o, std::function<std::chrono::steady_clock::time_point()> clock)
        : ttl_(o.cache_ttl), clock_(std::move(clock)) {
        if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
        if (o.http.url.empty() && o.file.empty())
            throw std::runtime_error("adresseregisteret needs a url, a file or both");
        if (o.http.what.empty()) o.http.what = "Adresseregisteret";
        if (!o.http.url.empty()) http_.emplace(std::move(o.http));
        if (!o.file.empty()) {
            file_ = read_parties(o.file);
            has_file_ = true;
        }
    }

    check_result check(std::string_view her_id) override {
        std::string her(her_id);
        if (her.empty() || her.find_first_not_of("0123456789") != std::string::npos)
            return refused("the receiver's HER-id \"" + her + "\" is not a number");
        auto now = clock_();
        {
            std::lock_guard lock(mu_);
            auto it = cache_.find(her);
            if (it != cache_.end() && it->second.first > now) return it->second.second;
        }
        std::string failure;
        std::optional<receiver_verdict> v;
        if (http_) {
            auto body = http_->post(nhn::ar::details_request(her),
                                    "application/soap+xml; charset=utf-8; action=\"" +
                                        std::string(nhn::ar::soap_action) + "\"");
            if (!body) {
                failure = body.error();
            } else if (auto a = nhn::ar::parse_details_response(*body); !a) {
                failure = "Adresseregisteret: unreadable answer: " + std::string(a.error().what());
            } else if (!a->found) {
                v = refused("HER-id " + her + " does not exist in the Adresseregisteret");
            } else {
                v = verdict_of(a->party);
            }
        }
        if (!v) {
            auto it = file_.find(her);
            if (it != file_.end()) {
                v = verdict_of(it->second.party);
                v->message_types = it->second.message_types;
                v->from_file = true;
                if (!v->reason.empty()) v->reason += " (local file)";
            } else if (!failure.empty()) {
                return check_result(boost::system::in_place_error,
                                    failure + (has_file_ ? "; not in the local file" : ""));
            } else {
                v = refused("HER-id " + her + " is not in the local file");
            }
        }
        if (failure.empty() && http_) {  // the register's own answer; the file is read each time
            std::lock_guard lock(mu_);
            cache_[her] = {now + ttl_, *v};
        }
        return *v;
    }

private:
    std::optional<soap_http> http_;
    std::map<std::string, file_party> file_;
    bool has_file_ = false;
    std::chrono::seconds ttl_;
    std::function<std::chrono::steady_clock::time_point()> clock_;
    std::mutex mu_;
    std::map<std::string, std::pair<std::chrono::steady_clock::time_point, receiver_verdict>>
        cache_;
};

}  // namespace

std::unique_ptr<receiver_directory> open_adresseregisteret(
    ar_options opts, std::function<std::chrono::steady_clock::time_point()> clock) {
    return std::make_unique<ar_directory>(std::move(opts), std::move(clock));
}

}  // namespace samband::directory
