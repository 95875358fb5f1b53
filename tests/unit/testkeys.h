/* testkeys: throwaway OpenPGP keys for the unit tests that need real gpg. */
#ifndef SEALPOST_TESTKEYS_H
#define SEALPOST_TESTKEYS_H

#include <gpgme.h>
#include <stdbool.h>

/* A new key for uid in ctx's keyring: ed25519 primary (sign, certify) and a
 * cv25519 encryption subkey, no passphrase, no expiry (also when another
 * key has the same uid). Its fingerprint (g_free); fails the test on error. */
char *testkeys_make(gpgme_ctx_t ctx, const char *uid);

/* The key fpr from ctx's keyring (secret: with its secret part);
 * gpgme_key_unref. Fails the test when it is not there. */
gpgme_key_t testkeys_get(gpgme_ctx_t ctx, const char *fpr, bool secret);

#endif
