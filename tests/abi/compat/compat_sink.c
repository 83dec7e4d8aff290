/* A sink written in plain C against the FROZEN ABI 1.0 header (compat/plugin-1.0): every later
 * host must load it and pass `samband plugin check` on it. Never edit the frozen header. */
#include <samband/plugin.h>

#include <stdio.h>
#include <string.h>

typedef struct compat_instance {
    const samband_host_api* host;
} compat_instance;

static compat_instance the_instance;

static samband_status c_create(const samband_host_api* host, samband_str config, samband_error* err,
                               void** out) {
    (void)config;
    (void)err;
    the_instance.host = host;
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

/* Completes at once; the external id is derived from the delivery id, so repeats keep it. */
static samband_status c_deliver(void* self, const samband_delivery* d, samband_error* err) {
    compat_instance* inst = (compat_instance*)self;
    char ext[96];
    int n = snprintf(ext, sizeof ext, "compat-%.*s", (int)d->delivery_id.size, d->delivery_id.data);
    samband_completion c;
    (void)err;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    c.status = SAMBAND_OK;
    c.external_id.data = ext;
    c.external_id.size = (size_t)n;
    inst->host->complete(inst->host->ctx, d->token, &c);
    return SAMBAND_OK;
}

static samband_status c_render(void* self, const samband_delivery* d, samband_render_out* out,
                               samband_error* err) {
    compat_instance* inst = (compat_instance*)self;
    samband_buffer b;
    (void)err;
    b.data = (const uint8_t*)d->event.envelope_json.data;
    b.size = d->event.envelope_json.size;
    inst->host->render_write(out, b);
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
    0};

SAMBAND_EXPORT samband_status samband_plugin_entry(uint32_t host_abi,
                                                   const samband_plugin_descriptor** out) {
    if (SAMBAND_ABI_MAJOR_OF(host_abi) != 1) return SAMBAND_UNSUPPORTED;
    *out = &descriptor;
    return SAMBAND_OK;
}
