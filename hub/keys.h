/* keys.h — CURVE keypairs and the hub's allow-list (DESIGN.md §5).
 * Hub-private; the ZAP handler (zap.h) consults the allow-list.
 *
 * Files in a keys directory:
 *   NAME.key   the secret key, Z85, mode 0600 (never leaves the machine)
 *   NAME.pub   the public key, Z85
 *   allow.txt  one "PUBLICKEY ROLE" per line, '#' comments; ROLE is
 *              edge:<facility>, reader:<id> or peer:<hub>
 */
#ifndef DXHUB_KEYS_H
#define DXHUB_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEY_Z85_LEN 40

typedef struct keypair {
    char pub[KEY_Z85_LEN + 1];
    char sec[KEY_Z85_LEN + 1];
} keypair;

/* Write DIR/NAME.key and DIR/NAME.pub (refuses to overwrite an existing key). */
int keys_generate(const char *dir, const char *name, keypair *out, char *err, size_t errlen);
/* Load DIR/NAME.key (and derive its public key); create it when missing. */
int keys_load_or_create(const char *dir, const char *name, keypair *out, char *err, size_t errlen);
/* Read a public key file (a .pub, or a bare Z85 string). */
int keys_read_public(const char *path, char out[KEY_Z85_LEN + 1], char *err, size_t errlen);
/* The hub's key as a client is given it: one key (a file or the key), or
 * two separated by a comma while the hub changes its keypair ("NOW,NEXT":
 * a client tries the other when the handshake fails).  Returns how many
 * (1 or 2) into now and next ("" when one), or < 0 with the reason. */
int keys_read_hub_keys(const char *list, char now[KEY_Z85_LEN + 1], char next[KEY_Z85_LEN + 1], char *err,
                       size_t errlen);

/* Role strings: "edge:clinic1" → kind "edge", name "clinic1". */
int keys_role_valid(const char *role);

typedef struct allowlist allowlist;
allowlist *allowlist_new(void);
void       allowlist_free(allowlist **a);
/* (Re)load DIR/allow.txt; keeps the old list on error.  Thread-safe. */
int        allowlist_load(allowlist *a, const char *dir, char *err, size_t errlen);
/* Role of a 32-byte binary public key into role[n]; 0 or -1 unknown. */
int        allowlist_role(allowlist *a, const unsigned char key[32], char *role, size_t n);
/* Grows at every load that replaced the list: a verdict taken at one
 * generation holds until it changes. */
uint64_t   allowlist_gen(allowlist *a);
/* Whether the Z85 public key is in the list with exactly this role. */
bool       allowlist_allows(allowlist *a, const char *key_z85, const char *role);
/* cb with each role that starts with prefix ("edge:"), once per key. */
void       allowlist_roles(allowlist *a, const char *prefix, void (*cb)(void *ctx, const char *role), void *ctx);
/* Whether some key holds exactly this role ("edge:clinic1"). */
int        allowlist_has_role(allowlist *a, const char *role);
/* Add (or with revoke, remove) a key in DIR/allow.txt, atomically. */
int        allowlist_edit(const char *dir, const char *pub_z85, const char *role, int revoke,
                          char *err, size_t errlen);

#endif
