/* hub_keys.c — hub.h's reader keys: the CURVE keypair and the hub's public
 * key, through keys.c, for reader software outside hub/. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "hub/hub.h"
#include "hub/keys.h"
#include "codecs/banned.h"

int hub_reader_keys_load(const char *keys_dir, const char *name, const char *hub_key_file, hub_reader_keys *out,
                         int *made, char *err, size_t errlen)
{
    _Static_assert(sizeof out->hub_public == KEY_Z85_LEN + 1, "Z85 key size");
    memset(out, 0, sizeof *out);
    char e[400];
    if (keys_read_hub_keys(hub_key_file, out->hub_public, out->hub_public_next, e, sizeof e) < 0) {
        snprintf(err, errlen, "--hub-key %s", e);
        return -1;
    }
    char secpath[4200];
    snprintf(secpath, sizeof secpath, "%s/%s.key", keys_dir, name);
    if (made)
        *made = access(secpath, F_OK) != 0;
    keypair kp;
    if (keys_load_or_create(keys_dir, name, &kp, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    memcpy(out->public_key, kp.pub, sizeof out->public_key);
    memcpy(out->secret_key, kp.sec, sizeof out->secret_key);
    memset(&kp, 0, sizeof kp);
    return 0;
}
