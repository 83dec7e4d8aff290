// EDI 2.0 (NHN Meldingstjener REST API v2) transport client: send, poll, fetch, mark read, Apprec.
#pragma once

#include "net/common.hpp"
#include "net/helseid.hpp"
#include "net/http.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn::edi {

// The HTTP client, HelseID and JOSE live in the shared plugin-side library (plugins/net).
using namespace samband::net;

struct edi_config {
    // e.g. https://api.tjener.test.melding.nhn.no (test, internet); a path prefix is kept.
    std::string base_url;
    // The `api-version` header on every request.
    std::string api_version = "2";
    // The required `nhn-source-system` header: "name, version" of the calling system.
    std::string source_system = "Samband";
    // Per call: token fetch (if needed) plus the API request must finish within this.
    std::chrono::milliseconds timeout{30000};
    // Larger answers are refused (a business document with attachments, base64).
    std::size_t max_response_bytes = 64u * 1024 * 1024;
    tls_options tls;
};

// GET /Messages item and GET /Messages/{id} (Message schema). Metadata fields are empty/absent
// when IncludeMetadata was false.
struct message_info {
    std::string id;
    int receiver_her_id = 0;
    std::optional<int> sender_her_id;
    std::string business_document_id;  // MsgId of the business document
    std::string business_document_gen_date;
    std::string content_type;
    bool is_apprec = false;
};

// GET /Messages/{id}/status item (StatusInfo).
struct status_info {
    int receiver_her_id = 0;
    std::string transport_delivery_state;  // Unconfirmed | Acknowledged | Rejected
    std::string apprec_status;             // Ok | Rejected | OkErrorInMessagePart | "" (none yet)
};

struct apprec_error {
    std::string error_code;  // code list 8221, e.g. "E10"
    std::string details;
    std::string description;
    std::string oid;
};

// GET /Messages/{id}/apprec item (ApprecInfo).
struct apprec_info {
    int receiver_her_id = 0;
    std::string status;  // Ok | Rejected | OkErrorInMessagePart | "" (none yet)
    std::vector<apprec_error> errors;
};

enum class apprec_status { ok, rejected, ok_error_in_message_part };

// Body of POST /Messages/{id}/apprec/{appRecSenderHerId} (PostAppRecRequest).
struct outgoing_apprec {
    apprec_status status = apprec_status::ok;
    std::vector<apprec_error> errors;
};

// Query of GET /Messages.
struct poll_query {
    std::vector<int> receiver_her_ids;  // required, one or more
    std::optional<int> sender_her_id{};
    std::string business_document_id{};
    bool include_metadata = true;
    int messages_to_fetch = 10;  // 1-100
};

// One EDI 2.0 endpoint. Every request carries api-version, nhn-source-system,
// `Authorization: DPoP <token>` and a fresh DPoP proof (with ath); one use_dpop_nonce challenge
// and one refused (expired/revoked) token are handled by a single retry.
// THREAD: all members may be called from several threads at once.
class edi_client {
public:
    // Throws std::runtime_error on a bad config (URL, plain http, CA file).
    edi_client(edi_config config, std::shared_ptr<token_client> tokens, log_fn log);
    ~edi_client();

    // POST /Messages: `xml` (UTF-8, declared so on its first line) goes base64-encoded. Receivers
    // come from the document; `receiver_her_ids_subset` limits delivery to some of them. Returns
    // the id EDI 2.0 assigned.
    result<std::string> send_message(std::string_view xml,
                                     std::span<const int> receiver_her_ids_subset = {});

    // GET /Messages: unread messages for the given receivers.
    result<std::vector<message_info>> poll_unread(const poll_query& query);

    // GET /Messages/{id}
    result<message_info> get_message(std::string_view id);

    // GET /Messages/{id}/business-document, decoded from base64 (the XML bytes).
    result<std::string> business_document(std::string_view id);

    // PUT /Messages/{id}/read/{herId}
    result<void> mark_read(std::string_view id, int receiver_her_id);

    // GET /Messages/{id}/status
    result<std::vector<status_info>> status(std::string_view id);

    // GET /Messages/{id}/apprec
    result<std::vector<apprec_info>> apprec(std::string_view id);

    // POST /Messages/{id}/apprec/{appRecSenderHerId}: returns the id of the Apprec message.
    result<std::string> send_apprec(std::string_view id, int apprec_sender_her_id,
                                    const outgoing_apprec& apprec);

    const endpoint_url& base() const { return base_; }

private:
    struct answer {
        int status = 0;
        std::string body;
    };
    // Sends one authenticated request; non-2xx answers come back as classified failures.
    result<answer> call(boost::beast::http::verb method, const std::string& path_and_query,
                        std::string body);

    edi_config config_;
    std::shared_ptr<token_client> tokens_;
    log_fn log_;
    endpoint_url base_;
    http_client http_;
    mutable std::mutex nonce_mutex_;
    std::string nonce_;  // last DPoP-Nonce from the resource server
};

// True for a GUID in its usual 8-4-4-4-12 hex form (message ids go into URL paths).
bool is_guid(std::string_view s);

std::string_view to_string(apprec_status s);

}  // namespace samband::nhn::edi
