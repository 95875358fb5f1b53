/* keystore_keys: recipients' and the user's own OpenPGP keys from the GnuPG
 * keyring through GPGME, behind a cache that is dropped when the keyring changes. */
#ifndef SEALPOST_KEYSTORE_KEYS_H
#define SEALPOST_KEYSTORE_KEYS_H

#include <gpgme.h>
#include <stdbool.h>
#include <stddef.h>

#include "keystore_db.h"
#include "keystore_discover.h"

typedef enum {
	KEYSTORE_KEY_FOUND = 0,
	KEYSTORE_KEY_NONE,	/* no usable key: a permanent answer */
	KEYSTORE_KEY_TEMPFAIL,	/* gpg could not be asked: try again later */
} keystore_key_result;

typedef struct keystore_keys keystore_keys;

/* gnupg_home: the GNUPGHOME in use (NULL: GnuPG's default), watched for
 * keyring changes. Thread-safe; one per process is enough. */
keystore_keys *keystore_keys_new(const char *gnupg_home, const char **error_r);
void keystore_keys_free(keystore_keys **ks);

/* From now on keys the user rejected (keystore_key_state) are unusable,
 * and cached answers are dropped whenever another process changed db.
 * Call before the first lookup; db must outlive ks. */
void keystore_keys_use_db(keystore_keys *ks, keystore_db *db);

/* From now on an address without a usable key is looked up by key
 * discovery (keystore_discover.h) as cfg says; cfg->methods 0 leaves it
 * off. Call after keystore_keys_use_db and before the first lookup. */
int keystore_keys_use_discovery(keystore_keys *ks, const keystore_discover_config *cfg,
				const char **error_r);

/* The usable key for address: not expired, revoked, disabled or invalid,
 * with an encryption-capable subkey in the same state, and a valid user ID
 * whose e-mail equals address (local part exactly, domain in any case), and
 * not rejected by the user (with keystore_keys_use_db). Of several, the
 * newest. own: the secret key must be in the keyring too.
 * FOUND: *key_r holds a reference (gpgme_key_unref). Otherwise why (may be
 * NULL) gets one line. Answers, negative ones too, are cached until the
 * keyring changes. With key discovery on, an address without a key (not
 * own) is looked up, within the discovery timeout, when its answer is
 * not cached here; a failed lookup is KEYSTORE_KEY_NONE, never TEMPFAIL. */
keystore_key_result keystore_keys_find(keystore_keys *ks, const char *address,
				       bool own, gpgme_key_t *key_r,
				       char *why, size_t why_size);

/* The key in its minimal transferable form (primary key, the matching user
 * ID, encryption subkey, newest self-signatures) for an Autocrypt header:
 * 0 with *data_r (g_free) and *len_r, or -1. Cached with the key. */
int keystore_keys_export_minimal(keystore_keys *ks, gpgme_key_t key,
				 unsigned char **data_r, size_t *len_r,
				 char *why, size_t why_size);

/* Cache statistics for tests and the status page. */
typedef struct {
	unsigned long lookups, hits, gpg_calls, invalidations;
} keystore_keys_stats;
void keystore_keys_get_stats(keystore_keys *ks, keystore_keys_stats *stats_r);

/* Why key cannot serve address by the keyring alone (the rule of
 * keystore_keys_find without the user's rejection), or NULL when it can:
 * a static string such as "expired". key must be listed with
 * GPGME_KEYLIST_MODE_WITH_SECRET when own is true. */
const char *keystore_key_unusable(gpgme_key_t key, const char *address, bool own);

/* True when address's domain equals domain's in any case and the local
 * parts are identical. */
bool keystore_address_equal(const char *a, const char *b);

#endif
