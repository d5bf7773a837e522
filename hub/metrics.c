/* metrics.c — the names of the hub's error kinds (label values). */
#include "hub/metrics.h"

const char *const hub_error_kind_names[HUB_ERR_KIND_COUNT] = {
    [HUB_ERR_INVALID_INSTANCE] = "invalid_instance",
    [HUB_ERR_STORE_FULL] = "store_full",
    [HUB_ERR_STORE_FAILED] = "store_failed",
    [HUB_ERR_ASSOC_REJECTED] = "association_rejected",
    [HUB_ERR_HTTP_BAD_REQUEST] = "http_bad_request",
    [HUB_ERR_HTTP_NOT_FOUND] = "http_not_found",
    [HUB_ERR_HTTP_UNAUTHORIZED] = "http_unauthorized",
    [HUB_ERR_PROTOCOL] = "protocol",
    [HUB_ERR_AUTH] = "auth",
    [HUB_ERR_HTTP_TOO_MANY] = "http_connections_per_address",
};

const double hub_http_bucket_ms[HUB_HTTP_BUCKETS - 1] = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 100, 1000};
