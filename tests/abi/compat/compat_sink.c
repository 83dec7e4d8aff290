/* A sink written in plain C against the FROZEN ABI 1.0 header (compat/plugin-1.0): every later
 * host must load it and pass `samband plugin check` on it. Never edit the frozen header.
 * It reads every host struct through samband_copy_struct, as the ABI asks, so a host that writes
 * a struct this plugin does not know (a non-zero tail) makes the delivery fail INVALID, and it
 * walks the attachments so their layout is proven too: the external id names them. */
#include <samband/plugin.h>

#include <stdio.h>
#include <string.h>

typedef struct compat_instance {
    samband_host_api host; /* the checked copy of the host's table */
} compat_instance;

static compat_instance the_instance;

static void say(samband_error* err, const char* text) {
    samband_str s;
    s.data = text;
    s.size = strlen(text);
    the_instance.host.error_set(err, s);
}

static samband_status c_create(const samband_host_api* host, samband_host_str config,
                               samband_error* err, void** out) {
    (void)config;
    (void)err;
    if (samband_copy_struct(&the_instance.host, sizeof the_instance.host, host,
                            SAMBAND_V1_0_HOST_API_SIZE) != SAMBAND_OK)
        return SAMBAND_INVALID;
    *out = &the_instance;
    return SAMBAND_OK;
}
static samband_status c_start(void* self, samband_error* err) {
    (void)self;
    (void)err;
    return SAMBAND_OK;
}
static void c_stop(void* self) {
    (void)self;
}
static void c_destroy(void* self) {
    (void)self;
}

/* Copies the delivery and its event; on success `ext` names the delivery and its attachments. */
static samband_status read_delivery(const samband_delivery* in, samband_delivery* d,
                                    samband_event* e, char* ext, size_t cap, samband_error* err) {
    size_t i;
    int n;
    if (samband_copy_struct(d, sizeof *d, in, SAMBAND_V1_0_DELIVERY_SIZE) != SAMBAND_OK) {
        say(err, "compat: malformed delivery");
        return SAMBAND_INVALID;
    }
    if (samband_copy_struct(e, sizeof *e, d->event, SAMBAND_V1_0_EVENT_SIZE) != SAMBAND_OK ||
        e->attachment_count > SAMBAND_MAX_ATTACHMENTS) {
        say(err, "compat: malformed event");
        return SAMBAND_INVALID;
    }
    n = snprintf(ext, cap, "compat-%.*s-%u", (int)d->delivery_id.size, d->delivery_id.data,
                 (unsigned)e->attachment_count);
    for (i = 0; i < e->attachment_count && n > 0 && (size_t)n < cap; ++i) {
        samband_attachment a;
        if (samband_copy_struct(&a, sizeof a, e->attachments[i], SAMBAND_V1_0_ATTACHMENT_SIZE) !=
            SAMBAND_OK) {
            say(err, "compat: malformed attachment");
            return SAMBAND_INVALID;
        }
        n += snprintf(ext + n, cap - (size_t)n, "-%.*s:%lu", (int)a.filename.size, a.filename.data,
                      (unsigned long)a.size);
    }
    return SAMBAND_OK;
}

/* Completes at once; the external id is derived from the delivery id, so repeats keep it. */
static samband_status c_deliver(void* self, const samband_delivery* in, samband_error* err) {
    compat_instance* inst = (compat_instance*)self;
    samband_delivery d;
    samband_event e;
    samband_completion c;
    char ext[512];
    samband_status st = read_delivery(in, &d, &e, ext, sizeof ext, err);
    if (st != SAMBAND_OK) return st;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    c.status = SAMBAND_OK;
    c.external_id.data = ext;
    c.external_id.size = strlen(ext);
    return inst->host.complete(inst->host.ctx, d.token, &c) == SAMBAND_OK ? SAMBAND_OK
                                                                          : SAMBAND_INTERNAL;
}

static samband_status c_render(void* self, const samband_delivery* in, samband_render_out* out,
                               samband_error* err) {
    compat_instance* inst = (compat_instance*)self;
    samband_delivery d;
    samband_event e;
    samband_buffer b;
    char ext[512];
    samband_status st = read_delivery(in, &d, &e, ext, sizeof ext, err);
    if (st != SAMBAND_OK) return st;
    b.data = (const uint8_t*)e.envelope_json.data;
    b.size = e.envelope_json.size;
    inst->host.render_write(out, b);
    return SAMBAND_OK;
}

static const samband_sink_api sink = {sizeof(samband_sink_api), c_deliver, c_render};
static const samband_plugin_descriptor descriptor = {
    sizeof(samband_plugin_descriptor),
    SAMBAND_ABI_VERSION,
    "compat-1-0",
    "1.0.0",
    "A C sink built from the frozen ABI 1.0 header",
    SAMBAND_KIND_SINK,
    SAMBAND_CAP_RENDER,
    c_create,
    c_start,
    c_stop,
    c_destroy,
    0,
    &sink,
    0,
    "{\"type\": \"object\", \"additionalProperties\": false}"};

SAMBAND_EXPORT samband_status samband_plugin_entry(uint32_t host_abi,
                                                   const samband_plugin_descriptor** out) {
    if (SAMBAND_ABI_MAJOR_OF(host_abi) != 1) return SAMBAND_UNSUPPORTED;
    *out = &descriptor;
    return SAMBAND_OK;
}
