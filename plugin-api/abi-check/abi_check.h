/* The frozen layouts of ABI 1.0 on LP64: any change here is an ABI break. */
#include <samband/plugin.h>

#if defined(__cplusplus)
#define SAMBAND_STATIC_ASSERT static_assert
#else
#define SAMBAND_STATIC_ASSERT _Static_assert
#endif

#if defined(__LP64__)
SAMBAND_STATIC_ASSERT(sizeof(samband_buffer) == 16, "samband_buffer");
SAMBAND_STATIC_ASSERT(sizeof(samband_str) == 16, "samband_str");
SAMBAND_STATIC_ASSERT(sizeof(samband_host_buffer) == 16, "samband_host_buffer");
SAMBAND_STATIC_ASSERT(sizeof(samband_host_str) == 16, "samband_host_str");
SAMBAND_STATIC_ASSERT(sizeof(samband_attachment) == 104, "samband_attachment 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_event) == 40, "samband_event 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_delivery) == 80, "samband_delivery 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_completion) == 40, "samband_completion 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_receipt) == 40, "samband_receipt 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_submit_attachment) == 72, "samband_submit_attachment 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_submission) == 40, "samband_submission 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_submit_result) == 48, "samband_submit_result 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_host_api) == 104, "samband_host_api 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_source_api) == 16, "samband_source_api 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_sink_api) == 24, "samband_sink_api 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_transform_api) == 16, "samband_transform_api 1.0");
SAMBAND_STATIC_ASSERT(sizeof(samband_plugin_descriptor) == 104, "samband_plugin_descriptor 1.0");
SAMBAND_STATIC_ASSERT(SAMBAND_V1_0_DESCRIPTOR_SIZE == 104, "descriptor 1.0 size");
SAMBAND_STATIC_ASSERT(SAMBAND_V1_0_HOST_API_SIZE == 104, "host api 1.0 size");
SAMBAND_STATIC_ASSERT(SAMBAND_V1_0_DELIVERY_SIZE == 80, "delivery 1.0 size");
SAMBAND_STATIC_ASSERT(SAMBAND_V1_0_SUBMIT_RESULT_SIZE == 44, "submit result 1.0 size");
SAMBAND_STATIC_ASSERT(offsetof(samband_plugin_descriptor, create) == 40, "descriptor.create");
SAMBAND_STATIC_ASSERT(offsetof(samband_plugin_descriptor, config_schema_json) == 96,
                      "descriptor.config_schema_json");
SAMBAND_STATIC_ASSERT(offsetof(samband_host_api, submit) == 48, "host_api.submit");
SAMBAND_STATIC_ASSERT(offsetof(samband_delivery, event) == 72, "delivery.event");
SAMBAND_STATIC_ASSERT(offsetof(samband_event, attachments) == 24, "event.attachments");
#endif
SAMBAND_STATIC_ASSERT(SAMBAND_OK == 0 && SAMBAND_INTERNAL == 5, "status codes");
SAMBAND_STATIC_ASSERT(SAMBAND_ABI_VERSION == 0x00010000u, "ABI 1.0");
SAMBAND_STATIC_ASSERT(SAMBAND_MAX_ATTACHMENTS == 1000u, "attachment bound");
