/* keystore: the GnuPG keyring (through GPGME) and the secrets sealpost keeps.
 * This header is the only way the rest of sealpost reaches them. */
#ifndef SEALPOST_KEYSTORE_H
#define SEALPOST_KEYSTORE_H

/* Initialises libsodium and GPGME and prepares GNUPGHOME (created 0700 with a
 * gpg.conf suited to concurrent operations when it does not exist yet).
 * Returns 0, or -1 with *error_r set to a static message. */
int keystore_init(const char *gnupg_home, const char **error_r);

/* The GPGME and libsodium versions in use, for `sealpost version`. */
const char *keystore_gpgme_version(void);
const char *keystore_sodium_version(void);

#endif
