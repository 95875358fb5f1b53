/* keystore_keyring: managing the keys of sealpost's GnuPG keyring — list,
 * generate, import, export, delete, verify, reject and unlock — for `sealpost keys`. */
#ifndef SEALPOST_KEYSTORE_KEYRING_H
#define SEALPOST_KEYSTORE_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore_db.h"

/* The largest key data import takes, bytes. */
#define KEYSTORE_IMPORT_MAX (1024 * 1024)
/* The longest passphrase, bytes. */
#define KEYSTORE_PASSPHRASE_MAX 1023
/* How long a generated key lives: three years, in seconds. */
#define KEYSTORE_KEY_LIFETIME (3UL * 365 * 24 * 60 * 60)

/* Asked when gpg needs a passphrase. hint names the key (may be NULL);
 * again: the previous answer was wrong. Writes a NUL-terminated passphrase
 * of at most size - 1 bytes into buf (sodium_malloc memory, wiped after
 * use) and returns 0, or returns -1 to give up. */
typedef int (*keystore_passphrase_fn)(void *ctx, const char *hint, bool again,
				      char *buf, size_t size);
typedef struct {
	keystore_passphrase_fn fn;
	void *ctx;
} keystore_passphrase;

typedef struct keystore_keyring keystore_keyring;

/* gnupg_home: the GNUPGHOME (prepared by keystore_init). db holds each
 * key's source and acceptance and must outlive the keyring. */
keystore_keyring *keystore_keyring_open(const char *gnupg_home, keystore_db *db,
					const char **error_r);
void keystore_keyring_close(keystore_keyring **kr);

typedef struct {
	char fingerprint[65];
	char **addresses;	/* the e-mail of each valid user ID, NULL-terminated */
	int64_t created;	/* unix seconds */
	int64_t expires;	/* unix seconds; 0: never */
	/* NULL when the key can be used (keystore_key_unusable for one of its
	 * addresses, and not rejected), else why not. */
	const char *unusable;
	keystore_key_source source;
	keystore_acceptance acceptance;
	bool own;		/* its secret key is in the keyring */
} keystore_keyring_key;

/* Frees what key holds (not key itself). */
void keystore_keyring_key_clear(keystore_keyring_key *key);
/* Frees an array of n keys and NULLs *keys. */
void keystore_keyring_keys_free(keystore_keyring_key **keys, size_t n);

/* The keys that match filter: NULL every key; a fingerprint (as
 * keystore_fingerprint_normalise takes it) the key with it; otherwise an
 * address, the keys with a valid user ID whose e-mail equals it. Ordered by
 * first address, newest first. No match is not an error: *n_r is 0. */
int keystore_keyring_list(keystore_keyring *kr, const char *filter,
			  keystore_keyring_key **keys_r, size_t *n_r,
			  const char **error_r);

/* An ed25519 primary key (certify, sign) with a cv25519 encryption subkey
 * and the user ID <address>, both expiring after KEYSTORE_KEY_LIFETIME;
 * protected by the passphrase pp gives, or by none when pp is NULL.
 * Refused when address already has a usable key of its own, unless force.
 * Recorded as manual and verified. Nothing is left behind on failure.
 * key_r (keystore_keyring_key_clear) describes the new key. */
int keystore_keyring_generate(keystore_keyring *kr, const char *address,
			      const keystore_passphrase *pp, bool force,
			      keystore_keyring_key *key_r, const char **error_r);

typedef struct {
	bool secret;		/* secret keys may be imported */
	const char *address;	/* NULL, or every key needs a user ID with it */
	/* What new keys are recorded as: manual by default; keys learned
	 * from mail (autocrypt, wkd, keyserver) with key-origin "url". */
	keystore_key_source source;
} keystore_import_options;

/* Imports key data, armored or binary: all of it or nothing. Every key is
 * checked in a scratch keyring first (complete, with an e-mail user ID,
 * opt's rules); only self-signatures are imported. New keys are recorded
 * as manual and unverified; known keys keep their state. *keys_r: the
 * imported keys as the keyring holds them now. */
int keystore_keyring_import(keystore_keyring *kr, const void *data, size_t len,
			    const keystore_import_options *opt,
			    keystore_keyring_key **keys_r, size_t *n_r,
			    const char **error_r);

/* Reads key data without importing it: exactly one complete public key,
 * armored or binary, at most KEYSTORE_IMPORT_MAX bytes. key_r
 * (keystore_keyring_key_clear) describes it as it would be once imported
 * (usable, and source and acceptance from the database when known). */
int keystore_keyring_inspect(keystore_keyring *kr, const void *data, size_t len,
			     keystore_keyring_key *key_r, const char **error_r);

/* Writes the keys with these fingerprints (NULL-terminated) to fd, armored
 * or binary. secret: the secret keys (gpg may ask pp for a passphrase),
 * written as gpg produces them; public keys are written only once all
 * were exported. */
int keystore_keyring_export(keystore_keyring *kr, const char *const *fingerprints,
			    bool secret, bool armor, const keystore_passphrase *pp,
			    int fd, const char **error_r);

/* Deletes the key, its secret key too, and its recorded state. */
int keystore_keyring_delete(keystore_keyring *kr, const char *fingerprint,
			    const char **error_r);

/* Records what the user said about a key in the keyring. */
int keystore_keyring_set_acceptance(keystore_keyring *kr, const char *fingerprint,
				    keystore_acceptance acceptance, const char **error_r);

/* A pending key change (keystore_pending_key) the user accepts: the new
 * key is imported (for the change's address) and marked verified, the
 * verified key it replaces is marked rejected so that the new one is the
 * one used, and the change is removed. key_r (may be NULL;
 * keystore_keyring_key_clear): the new key. */
int keystore_keyring_pending_accept(keystore_keyring *kr, const keystore_pending_key *p,
				    keystore_keyring_key *key_r, const char **error_r);
/* The user refuses it: the new key is recorded as rejected (so the same
 * key is never offered or used again), the old key stays as it was, and
 * the change is removed. */
int keystore_keyring_pending_refuse(keystore_keyring *kr, const keystore_pending_key *p,
				    const char **error_r);

/* Checks the passphrase of address's own usable key by signing a test
 * message through gpg-agent, which then keeps it cached for the running
 * sealpost; any passphrase cached before is dropped first, so a wrong one
 * is always noticed. *asked_r: whether a passphrase was needed at all (a
 * key without one needs no unlocking). key_r (keystore_keyring_key_clear):
 * the key unlocked. */
int keystore_keyring_unlock(keystore_keyring *kr, const char *address,
			    const keystore_passphrase *pp,
			    keystore_keyring_key *key_r, bool *asked_r,
			    const char **error_r);

#endif
