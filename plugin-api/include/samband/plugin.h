/* The Samband plugin ABI 1.0: the stable C contract between the samband host and adapter plugins.
 */
#ifndef SAMBAND_PLUGIN_H
#define SAMBAND_PLUGIN_H

/*
 * Rules (see docs/abi/versioning.md):
 *  - Plain C99; compiles as C and as C++20. No C++ types, no exceptions, no free() across the line.
 *  - Every struct that may grow starts with `uint32_t struct_size` (sizeof as the writer compiled
 *    it) and is read through samband_copy_struct() into the reader's own struct: what the writer
 *    did not have reads as zero, a non-zero tail the reader does not know is refused. The host
 *    writes every struct it hands a plugin at the size of the plugin's own ABI minor.
 *  - Structs and function tables only ever grow at the end; a changed function is added as `_v2`.
 *    A growable struct is never nested by value and never laid out in an array: arrays are arrays
 *    of pointers, so each element carries its own struct_size.
 *  - Text and bytes are {data,size}. The type says who owns them: samband_host_str and
 *    samband_host_buffer are host-owned (valid as the struct holding them says), samband_str and
 *    samband_buffer are plugin-owned (the host copies what it keeps before the call returns).
 *  - Each callback says which thread calls it (THREAD:) and each struct who owns it (OWNERSHIP:).
 *  - Status codes are a closed set; a reader treats an unknown code as SAMBAND_INTERNAL.
 *  - Counts are bounded (SAMBAND_MAX_*): a larger count is refused as INVALID.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ---------------------------------------------------------------------------- */

#define SAMBAND_ABI_MAJOR 1
#define SAMBAND_ABI_MINOR 0
/* A version as one number: major in the high 16 bits, minor in the low 16 bits. */
#define SAMBAND_ABI_MAKE(major, minor) ((((uint32_t)(major)) << 16) | ((uint32_t)(minor)&0xffffu))
#define SAMBAND_ABI_VERSION SAMBAND_ABI_MAKE(SAMBAND_ABI_MAJOR, SAMBAND_ABI_MINOR)
#define SAMBAND_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define SAMBAND_ABI_MINOR_OF(v) ((uint32_t)(v)&0xffffu)

/* The size of `type` up to and including `field`. */
#define SAMBAND_SIZE_UPTO(type, field) (offsetof(type, field) + sizeof(((type*)0)->field))
/* True when a struct of the given struct_size holds `field` of `type`. After samband_copy_struct
 * every field of the reader's own type is safe to read (missing ones are zero); this macro tells a
 * zero the writer meant from a field the writer did not have. */
#define SAMBAND_HAS_FIELD(ptr, type, field) ((ptr)->struct_size >= SAMBAND_SIZE_UPTO(type, field))

#if defined(_WIN32)
#define SAMBAND_EXPORT __declspec(dllexport)
#else
#define SAMBAND_EXPORT __attribute__((visibility("default")))
#endif

/* ---- limits and deadlines ------------------------------------------------------------------ */

/* The largest struct_size either side accepts (anything larger is a bogus size). */
#define SAMBAND_MAX_STRUCT_SIZE 65536u
/* The most attachments one event or submission may carry (the envelope schema's maxItems). */
#define SAMBAND_MAX_ATTACHMENTS 1000u

/* How long the host waits for create, start, deliver, render and transform to return. A call that
 * overruns is reported as timed out (RETRY for a delivery) and the instance gets no further calls
 * until it returns. (`samband plugin check` still uses 2 s per call; it moves onto these.) */
#define SAMBAND_CALL_DEADLINE_MS 5000
/* How long the host waits for stop and destroy to return. */
#define SAMBAND_STOP_DEADLINE_MS 50000

/* ---- basic types ------------------------------------------------------------------------- */

/* The closed status set. Any other value received counts as SAMBAND_INTERNAL. */
typedef int32_t samband_status;
#define SAMBAND_OK 0          /* done */
#define SAMBAND_RETRY 1       /* transient failure: try again later */
#define SAMBAND_PERMANENT 2   /* will never succeed as it is (reason in the error text) */
#define SAMBAND_INVALID 3     /* the input is invalid (reason in the error text) */
#define SAMBAND_UNSUPPORTED 4 /* the operation is not supported by this plugin */
#define SAMBAND_INTERNAL 5    /* a bug or unexpected failure inside the plugin or host */

/* Plugin-owned bytes passed to the host. OWNERSHIP: plugin-owned, borrowed for the call; the host
 * copies what it keeps and never frees them. THREAD: n/a. */
typedef struct samband_buffer {
    const uint8_t* data;
    size_t size;
} samband_buffer;

/* Plugin-owned UTF-8 text passed to the host, not necessarily NUL-terminated.
 * OWNERSHIP: as samband_buffer. THREAD: n/a. */
typedef struct samband_str {
    const char* data;
    size_t size;
} samband_str;

/* Host-owned bytes passed to a plugin. OWNERSHIP: host-owned, valid as the struct or callback
 * holding them says; the plugin copies what it keeps and never frees them. THREAD: n/a. */
typedef struct samband_host_buffer {
    const uint8_t* data;
    size_t size;
} samband_host_buffer;

/* Host-owned UTF-8 text passed to a plugin, not necessarily NUL-terminated.
 * OWNERSHIP: as samband_host_buffer. THREAD: n/a. */
typedef struct samband_host_str {
    const char* data;
    size_t size;
} samband_host_str;

/* Where a plugin writes error text. OWNERSHIP: host-owned, valid only during the call it is
 * passed to. THREAD: used only on the thread of that call. Write with host->error_set. */
typedef struct samband_error samband_error;

/* Log levels for host->log. */
typedef int32_t samband_log_level;
#define SAMBAND_LOG_TRACE 0
#define SAMBAND_LOG_DEBUG 1
#define SAMBAND_LOG_INFO 2
#define SAMBAND_LOG_WARN 3
#define SAMBAND_LOG_ERROR 4

/* Plugin kinds (bits; a plugin may be several). */
#define SAMBAND_KIND_SOURCE 0x1u
#define SAMBAND_KIND_SINK 0x2u
#define SAMBAND_KIND_TRANSFORM 0x4u

/* Capability bits a plugin declares in its descriptor. The host enforces each one; a bit it does
 * not know is refused at load (a plugin may not claim what this host cannot honour). */
#define SAMBAND_CAP_RENDER 0x1u /* sink offers render(): set exactly when sink->render is set */
#define SAMBAND_CAP_RECEIPTS                                              \
    0x2u /* sink reports receipts (host->receipt) for earlier deliveries; \
            the host then watches each delivery's receipt window. Without \
            it host->receipt returns UNSUPPORTED. */

/* ---- the copy helper ----------------------------------------------------------------------- */

/* Copies a struct that crossed the ABI into the reader's own `dst` of `dst_size` bytes, by the
 * rules of the Linux kernel's copy_struct_from_user:
 *  - the writer's size is the struct_size at the start of `src`;
 *  - below `min_size` (the reader's 1.0 size) or above SAMBAND_MAX_STRUCT_SIZE: refused;
 *  - smaller than dst_size: the fields the writer did not have are zero-filled;
 *  - larger than dst_size: accepted only when every byte beyond dst_size is zero (a newer writer
 *    asking for nothing this reader does not know), else refused.
 * dst keeps the writer's struct_size (for SAMBAND_HAS_FIELD). Returns SAMBAND_OK, or
 * SAMBAND_INVALID with dst zeroed. OWNERSHIP: pointers inside are copied, not what they point to.
 * THREAD: any. */
static inline samband_status samband_copy_struct(void* dst, size_t dst_size, const void* src,
                                                 size_t min_size) {
    uint32_t src_size = 0;
    size_t i;
    if (!dst || dst_size < sizeof(uint32_t)) return SAMBAND_INVALID;
    memset(dst, 0, dst_size);
    if (!src) return SAMBAND_INVALID;
    memcpy(&src_size, src, sizeof src_size);
    if (src_size < min_size || src_size < sizeof(uint32_t) || src_size > SAMBAND_MAX_STRUCT_SIZE)
        return SAMBAND_INVALID;
    if (src_size > dst_size) {
        for (i = dst_size; i < src_size; ++i)
            if (((const unsigned char*)src)[i] != 0) return SAMBAND_INVALID;
        memcpy(dst, src, dst_size);
    } else {
        memcpy(dst, src, src_size);
    }
    return SAMBAND_OK;
}

/* ---- attachments, events, deliveries (host to plugin) ------------------------------------ */

/* One attachment as the host offers it to a plugin.
 * OWNERSHIP: the struct and every pointer in it are host-owned, valid as long as the event holding
 * it. THREAD: n/a. */
typedef struct samband_attachment {
    uint32_t struct_size;
    samband_host_str id;         /* attachment id within its event */
    samband_host_str filename;   /* e.g. "henvisning.pdf" */
    samband_host_str media_type; /* e.g. "application/pdf" */
    samband_host_str sha256_hex; /* 64 lowercase hex characters */
    uint64_t size;               /* bytes */
    samband_host_str path;       /* a host-owned file holding the bytes, read-only; may be empty */
    uint64_t handle;             /* for host->attachment_read (chunked reads); 0 = none */
} samband_attachment;

/* An event handed to a transform or a sink.
 * OWNERSHIP: host-owned, valid for the call (for a delivery: until completion). THREAD: n/a. */
typedef struct samband_event {
    uint32_t struct_size;
    samband_host_str envelope_json; /* the event envelope (schema: samband.event.json), UTF-8 */
    /* attachment_count pointers (at most SAMBAND_MAX_ATTACHMENTS), each to one attachment. */
    const samband_attachment* const* attachments;
    size_t attachment_count;
} samband_event;

/* One delivery of an event to a sink.
 * OWNERSHIP: host-owned (the struct, the event it points to and every string); valid from
 * deliver() until the plugin calls host->complete for `token` (for render(): during the call).
 * THREAD: n/a. */
typedef struct samband_delivery {
    uint32_t struct_size;
    uint32_t attempt;             /* 1 for the first attempt */
    uint64_t token;               /* completion token: pass to host->complete exactly once */
    samband_host_str delivery_id; /* stable across attempts: derive external ids (MsgId) from it */
    samband_host_str event_id;    /* the stored event's id */
    samband_host_str destination; /* the endpoint name of this sink instance */
    int64_t deadline_unix_ms;     /* complete before this, or the attempt counts as timed out */
    const samband_event* event;   /* the event after the route's transforms; never NULL */
} samband_delivery;

/* The host's answer to a submission, given only after the event is durably stored (OK), or
 * refused (INVALID with the reason, RETRY when the store cannot accept now).
 * OWNERSHIP: host-owned, valid during the samband_submit_done_fn callback. THREAD: n/a. */
typedef struct samband_submit_result {
    uint32_t struct_size;
    samband_status status;
    samband_host_str event_id; /* on OK: the stored event's id (the first one's for a duplicate) */
    samband_host_str message;  /* on failure: why */
    int32_t duplicate;         /* 1 when (source, idempotency_key) was seen before */
} samband_submit_result;

/* ---- what a plugin hands the host ---------------------------------------------------------- */

/* The outcome of one delivery, passed to host->complete.
 * OWNERSHIP: plugin-owned, borrowed for the call (the host copies what it keeps). THREAD: n/a. */
typedef struct samband_completion {
    uint32_t struct_size;
    samband_status status; /* OK, RETRY or PERMANENT (INVALID counts as PERMANENT) */
    samband_str
        external_id;     /* on OK: the id the receiver knows it by (for receipts); may be empty */
    samband_str message; /* on failure: why, for the operator (no patient data) */
} samband_completion;

/* Receipt kinds for samband_receipt.kind. */
#define SAMBAND_RECEIPT_ACK 1     /* receiver accepted (Apprec OK, AA) */
#define SAMBAND_RECEIPT_REJECT 2  /* receiver rejected (Apprec Avvist, AR/AE) */
#define SAMBAND_RECEIPT_WARNING 3 /* accepted with warnings (Apprec status 3) */

/* A receipt for an earlier delivery, correlated by its external id.
 * OWNERSHIP: plugin-owned, borrowed for the call. THREAD: n/a. */
typedef struct samband_receipt {
    uint32_t struct_size;
    int32_t kind;            /* SAMBAND_RECEIPT_* */
    samband_str external_id; /* the id the sink reported when it completed the delivery */
    samband_str text;        /* codes and texts from the receiver, e.g. "8221:E10 Ugyldig ..." */
} samband_receipt;

/* An attachment a source submits with an event: either bytes in memory or a file to copy.
 * OWNERSHIP: plugin-owned, borrowed until host->submit returns (the host copies or reads it
 * before returning). THREAD: n/a. */
typedef struct samband_submit_attachment {
    uint32_t struct_size;
    samband_str filename;
    samband_str media_type;
    samband_buffer bytes; /* used when path is empty */
    samband_str path;     /* a readable file with the bytes; the host copies it into the store */
} samband_submit_attachment;

/* An event a source submits.
 * OWNERSHIP: plugin-owned, borrowed until host->submit returns. THREAD: n/a. */
typedef struct samband_submission {
    uint32_t struct_size;
    samband_str envelope_json; /* the envelope without `id`, `source` and attachment hashes */
    /* attachment_count pointers (at most SAMBAND_MAX_ATTACHMENTS), each to one attachment. */
    const samband_submit_attachment* const* attachments;
    size_t attachment_count;
} samband_submission;

/* Called once per submission with its result.
 * THREAD: a host thread (the store's commit thread), never the thread inside host->submit; must
 * not block (hand work off). */
typedef void (*samband_submit_done_fn)(void* user, const samband_submit_result* result);

/* Called by host->get_secret with the secret's bytes.
 * OWNERSHIP: the bytes are host-owned, valid only during the callback: copy and wipe your copy
 * when done. THREAD: the thread that called get_secret, before get_secret returns. */
typedef void (*samband_secret_fn)(void* user, samband_host_buffer secret);

/* Where render() writes its bytes through host->render_write.
 * OWNERSHIP: host-owned, valid during render(). THREAD: the render() thread. */
typedef struct samband_render_out samband_render_out;

/* Where transform() writes its output event through host->transform_emit.
 * OWNERSHIP: host-owned, valid during transform(). THREAD: the transform() thread. */
typedef struct samband_transform_out samband_transform_out;

/* ---- the host API given to each plugin instance ------------------------------------------ */

/* Services the host offers one plugin instance; read it with samband_copy_struct (the SDK does).
 * OWNERSHIP: host-owned; valid from create() until destroy() returns. THREAD: each function says.
 */
typedef struct samband_host_api {
    uint32_t struct_size;
    uint32_t abi_version; /* the host's SAMBAND_ABI_VERSION */
    void* ctx;            /* pass as the first argument of every call below */

    /* Copies `text` as the error of the current call. THREAD: the thread of the call that got
     * `err`. */
    void (*error_set)(samband_error* err, samband_str text);

    /* Whether `level` is logged now (skip building messages that would be dropped). THREAD: any. */
    int32_t (*log_enabled)(void* ctx, samband_log_level level);
    /* Logs one line for this endpoint; the host masks identifiers (fødselsnummer). THREAD: any. */
    void (*log)(void* ctx, samband_log_level level, samband_str message);

    /* Looks up a secret by name (from a file or the environment as the operator configured it);
     * calls `fn` with its bytes before returning. Returns OK, or INVALID if unknown. THREAD: any.
     */
    samband_status (*get_secret)(void* ctx, samband_str name, samband_secret_fn fn, void* user);

    /* SOURCE: submits an event. Returns OK when taken: then `done` is called exactly once with
     * the outcome (OK after the event is committed; INVALID with the reason, the input being kept
     * in the host's error store; RETRY when the store cannot accept now). Returns RETRY (host
     * stopping or overloaded) or INVALID (malformed submission: bad struct_size, too many
     * attachments) without calling `done`. THREAD: any. */
    samband_status (*submit)(void* ctx, const samband_submission* submission,
                             samband_submit_done_fn done, void* user);

    /* SINK: completes the delivery with `token`, exactly once per accepted delivery. Returns OK,
     * or INVALID (and ignores it) for a token that is unknown or already completed, or a malformed
     * completion. THREAD: any (also from inside deliver()). */
    samband_status (*complete)(void* ctx, uint64_t token, const samband_completion* completion);

    /* SINK: reports a receipt for an earlier delivery by its external id. Returns OK, UNSUPPORTED
     * when the plugin did not declare SAMBAND_CAP_RECEIPTS, or INVALID for a malformed receipt.
     * THREAD: any. */
    samband_status (*receipt)(void* ctx, const samband_receipt* receipt);

    /* Reads up to `capacity` bytes of an attachment from `offset` into `out`; `*read` gets the
     * count (0 at the end). Valid while the event or delivery holding the handle is. THREAD: any.
     */
    samband_status (*attachment_read)(void* ctx, uint64_t handle, uint64_t offset, uint8_t* out,
                                      size_t capacity, size_t* read);

    /* SINK render(): appends bytes to the rendered output. THREAD: the render() thread. */
    void (*render_write)(samband_render_out* out, samband_buffer bytes);
    /* SINK render(): names the rendered output (e.g. "note.xml"); optional. THREAD: as above. */
    void (*render_name)(samband_render_out* out, samband_str name);

    /* TRANSFORM: sets the output envelope (attachments pass through unchanged). It must be valid
     * against samband.event.json and the event type's schema; the host is to fail the delivery
     * with the reason when it is not (not yet enforced). THREAD: the transform() thread. */
    void (*transform_emit)(samband_transform_out* out, samband_str envelope_json);
} samband_host_api;

/* ---- the tables a plugin provides ---------------------------------------------------------- */

/*
 * THREAD (for every callback below unless it says otherwise): a host thread of the instance.
 * Calls into one instance never overlap: create, start, deliver, render, transform, stop and
 * destroy run one at a time, in that order of life. They need not run on the thread that loaded
 * the plugin, nor always on the same thread. Each must return within SAMBAND_CALL_DEADLINE_MS
 * (stop and destroy: SAMBAND_STOP_DEADLINE_MS).
 */

/* A source: after start() it submits events through host->submit on threads of its own.
 * OWNERSHIP: plugin-owned, static for the life of the process. */
typedef struct samband_source_api {
    uint32_t struct_size;
    /* Reserved for later minors; a 1.0 source needs no callbacks beyond the lifecycle. */
    void* reserved;
} samband_source_api;

/* A sink: receives deliveries and completes them asynchronously.
 * OWNERSHIP: plugin-owned, static for the life of the process. */
typedef struct samband_sink_api {
    uint32_t struct_size;
    /* Takes a delivery. Returns OK when it accepted it (then it MUST call host->complete with
     * d->token exactly once, on any thread, even while stopping), or RETRY/PERMANENT/INVALID to
     * fail it at once (host->complete must then NOT be called). Must return at once: queue the
     * work and do the I/O on a thread of your own (the C++ SDK's sdk::worker does). REQUIRED. */
    samband_status (*deliver)(void* instance, const samband_delivery* d, samband_error* err);
    /* Writes the exact bytes deliver() would send for `d` through host->render_write, without
     * sending anything. Pure: no side effects. Optional (NULL = not offered; then
     * SAMBAND_CAP_RENDER must not be set). d->token is 0. */
    samband_status (*render)(void* instance, const samband_delivery* d, samband_render_out* out,
                             samband_error* err);
} samband_sink_api;

/* A transform: one event in, one event out (host->transform_emit) or a rejection.
 * OWNERSHIP: plugin-owned, static for the life of the process. */
typedef struct samband_transform_api {
    uint32_t struct_size;
    /* Returns OK after calling transform_emit once, or INVALID/PERMANENT with a reason (the event
     * is rejected for this route), or RETRY. REQUIRED. */
    samband_status (*transform)(void* instance, const samband_event* in, samband_transform_out* out,
                                samband_error* err);
} samband_transform_api;

/* What a plugin is. Returned by samband_plugin_entry.
 * OWNERSHIP: plugin-owned, static for the life of the process (never freed); the strings are
 * plugin-owned, NUL-terminated and static too. THREAD: n/a. */
typedef struct samband_plugin_descriptor {
    uint32_t struct_size;
    uint32_t abi_version;    /* the SAMBAND_ABI_VERSION the plugin was built against */
    const char* name;        /* unique among loaded plugins, [a-z0-9_.-]+ */
    const char* version;     /* the plugin's own version */
    const char* description; /* one line */
    uint32_t kinds;          /* SAMBAND_KIND_* bits */
    uint32_t capabilities;   /* SAMBAND_CAP_* bits */

    /* Creates an instance for one endpoint with its config exactly as written in the daemon's
     * config file (the endpoint's "config" member as JSON text; never holding secrets: use
     * host->get_secret). `host` stays valid until destroy(). Returns OK and sets *instance, or
     * INVALID (bad config) / INTERNAL with a reason. REQUIRED. */
    samband_status (*create)(const samband_host_api* host, samband_host_str config_json,
                             samband_error* err, void** instance);
    /* Starts the instance (sources begin submitting). REQUIRED. */
    samband_status (*start)(void* instance, samband_error* err);
    /* Stops: a source stops submitting; a sink finishes or completes (RETRY) every accepted
     * delivery before returning. REQUIRED. */
    void (*stop)(void* instance);
    /* Frees the instance. REQUIRED. Called after stop(). */
    void (*destroy)(void* instance);

    const samband_source_api* source;       /* non-NULL iff kinds has SOURCE */
    const samband_sink_api* sink;           /* non-NULL iff kinds has SINK */
    const samband_transform_api* transform; /* non-NULL iff kinds has TRANSFORM */

    /* A JSON Schema (draft-04 keywords as RapidJSON checks them) for the endpoint's config, or
     * NULL. For `samband config check` and the daemon to validate each endpoint's config by JSON
     * path before create(); today's host only checks that it is a JSON object. NUL-terminated. */
    const char* config_schema_json;
} samband_plugin_descriptor;

/* The one exported entry point. The host passes its ABI version; the plugin returns OK and sets
 * *descriptor, or UNSUPPORTED if it cannot work with that host. Must not allocate or start
 * threads. THREAD: the thread loading the plugin, once per load. */
typedef samband_status (*samband_plugin_entry_fn)(uint32_t host_abi_version,
                                                  const samband_plugin_descriptor** descriptor);
#define SAMBAND_PLUGIN_ENTRY_NAME "samband_plugin_entry"

/* The sizes of the ABI 1.0 structs: the `min_size` for samband_copy_struct. A reader refuses
 * anything smaller (a truncated struct); the host writes these sizes for a 1.0 plugin. */
#define SAMBAND_V1_0_ATTACHMENT_SIZE SAMBAND_SIZE_UPTO(samband_attachment, handle)
#define SAMBAND_V1_0_EVENT_SIZE SAMBAND_SIZE_UPTO(samband_event, attachment_count)
#define SAMBAND_V1_0_DELIVERY_SIZE SAMBAND_SIZE_UPTO(samband_delivery, event)
#define SAMBAND_V1_0_SUBMIT_RESULT_SIZE SAMBAND_SIZE_UPTO(samband_submit_result, duplicate)
#define SAMBAND_V1_0_COMPLETION_SIZE SAMBAND_SIZE_UPTO(samband_completion, message)
#define SAMBAND_V1_0_RECEIPT_SIZE SAMBAND_SIZE_UPTO(samband_receipt, text)
#define SAMBAND_V1_0_SUBMIT_ATTACHMENT_SIZE SAMBAND_SIZE_UPTO(samband_submit_attachment, path)
#define SAMBAND_V1_0_SUBMISSION_SIZE SAMBAND_SIZE_UPTO(samband_submission, attachment_count)
#define SAMBAND_V1_0_HOST_API_SIZE SAMBAND_SIZE_UPTO(samband_host_api, transform_emit)
#define SAMBAND_V1_0_SOURCE_API_SIZE SAMBAND_SIZE_UPTO(samband_source_api, reserved)
#define SAMBAND_V1_0_SINK_API_SIZE SAMBAND_SIZE_UPTO(samband_sink_api, render)
#define SAMBAND_V1_0_TRANSFORM_API_SIZE SAMBAND_SIZE_UPTO(samband_transform_api, transform)
#define SAMBAND_V1_0_DESCRIPTOR_SIZE \
    SAMBAND_SIZE_UPTO(samband_plugin_descriptor, config_schema_json)

#ifdef __cplusplus
}
#endif

#endif /* SAMBAND_PLUGIN_H */
