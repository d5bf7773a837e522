/* apikeys.h — facility API keys for the hub's HTTP API (hub-private).
 *
 * A facility (another hospital, an HIS/EMR) presents
 * "Authorization: Bearer TOKEN".  The hub keeps only the SHA-256 of each
 * token, one line per key in KEYS/api-keys.txt:
 *
 *     FACILITY SHA256-HEX [ISSUED-UTC]
 *
 * so a copy of the keys folder does not let anyone in.  `dxhub keygen
 * --api-key FACILITY --keys KEYS` makes a token, appends its hash and
 * prints the token once; `--revoke` removes every key of a facility.  A
 * facility may hold several keys at a time (rotation).  The hub reloads
 * the file on SIGHUP.
 *
 * Tokens are "dxk_" and 64 hex digits: 256 bits from getrandom(2).
 * Facility names: [A-Za-z0-9._-], 1..63 (as the allow-list's roles).
 */
#ifndef DXHUB_APIKEYS_H
#define DXHUB_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>

#define APIKEYS_FILE         "api-keys.txt"
#define APIKEY_PREFIX        "dxk_"
#define APIKEY_TOKEN_LEN     68 /* "dxk_" + 64 hex digits */
#define APIKEY_FACILITY_MAX  64 /* with the NUL */

bool apikeys_facility_valid(const char *facility);

typedef struct apikeys apikeys;
apikeys *apikeys_new(void);
void     apikeys_free(apikeys **k); /* NULL-safe; NULLs *k */

/* (Re)load DIR/api-keys.txt (a missing file is no keys).  Returns the
 * number of keys, or a negative code with the file and line in err; the
 * keys loaded before stay in force then.  Thread-safe. */
int    apikeys_load(apikeys *k, const char *dir, char *err, size_t errlen);
size_t apikeys_count(apikeys *k);

/* The facility holding token (len bytes, not NUL-terminated): 0 with
 * facility filled, -ENOENT for an unknown token. */
int apikeys_check(apikeys *k, const char *token, size_t len, char facility[APIKEY_FACILITY_MAX]);

/* Make a token for facility and append its hash to DIR/api-keys.txt
 * (mode 0600, rewritten atomically).  token gets APIKEY_TOKEN_LEN + 1
 * bytes.  0 or a negative code with the reason in err. */
int apikeys_issue(const char *dir, const char *facility, char token[APIKEY_TOKEN_LEN + 1], char *err,
                  size_t errlen);
/* Remove every key of facility: the number removed, or a negative code
 * (-ENOENT when it had none). */
int apikeys_revoke(const char *dir, const char *facility, char *err, size_t errlen);

#endif
