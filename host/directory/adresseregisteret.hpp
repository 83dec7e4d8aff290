// Whether a receiver (HER-id) can take a message: NHN's Adresseregisteret (SOAP), cached, with a
// local file as the fallback when the register cannot be reached.
#pragma once

#include "directory/soap_http.hpp"

#include <boost/system/result.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace samband::directory {

struct ar_options {
    soap_http_options http;  // url empty: the file alone decides
    // {"parties": [{"her_id", "name", "active", "valid", "edi_address", "message_types"?}]}
    std::string file;
    std::chrono::seconds cache_ttl{3600};
};

// The register's word on one receiver. `reason` says why it cannot take the message.
struct receiver_verdict {
    bool can_receive = false;
    std::string reason;
    std::string name;  // the party's name, when known
    // The Dialogmelding 1.1 message types it takes (DIALOG_HELSEFAGLIG, …); empty = not known.
    // Only the local file says: the register's answer has no field for them.
    std::vector<std::string> message_types;
    bool from_file = false;  // the local file answered, not the register
};

// Looks receivers up. An error = neither the register nor the file could say (retry later); the
// text names what failed. THREAD: safe from any thread.
class receiver_directory {
public:
    virtual ~receiver_directory() = default;
    virtual boost::system::result<receiver_verdict, std::string> check(std::string_view her_id) = 0;
};

// The Adresseregisteret client. Throws std::runtime_error naming the problem when the url or the
// file cannot be used. The register's answers (can or cannot receive) are cached for cache_ttl;
// failures and the file's answers are not.
std::unique_ptr<receiver_directory> open_adresseregisteret(
    ar_options opts, std::function<std::chrono::steady_clock::time_point()> clock = {});

}  // namespace samband::directory
