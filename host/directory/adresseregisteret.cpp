#include "directory/adresseregisteret.hpp"

#include "nhn/codec/adresseregisteret.hpp"

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

std::map<std::string, nhn::ar::file_party> read_parties(const std::string& file) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error("adresseregisteret: cannot read the file " + file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto parties = nhn::ar::parse_parties_file(ss.str());
    if (!parties)
        throw std::runtime_error("adresseregisteret: " + file + ": " + parties.error().message);
    return std::move(*parties);
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
    std::map<std::string, nhn::ar::file_party> file_;
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
