/* testkeys: throwaway OpenPGP keys for the unit tests (testkeys.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glib.h>

#include "testkeys.h"

char *testkeys_make(gpgme_ctx_t ctx, const char *uid)
{
	gpgme_error_t err = gpgme_op_createkey(ctx, uid, "ed25519", 0, 0, NULL,
					       GPGME_CREATE_SIGN | GPGME_CREATE_CERT |
					       GPGME_CREATE_NOPASSWD | GPGME_CREATE_NOEXPIRE |
					       GPGME_CREATE_FORCE);
	if (err != 0)
		fail_msg("createkey %s: %s", uid, gpgme_strerror(err));
	char *fpr = g_strdup(gpgme_op_genkey_result(ctx)->fpr);
	gpgme_key_t key = testkeys_get(ctx, fpr, true);
	err = gpgme_op_createsubkey(ctx, key, "cv25519", 0, 0,
				    GPGME_CREATE_ENCR | GPGME_CREATE_NOPASSWD |
				    GPGME_CREATE_NOEXPIRE);
	if (err != 0)
		fail_msg("createsubkey %s: %s", uid, gpgme_strerror(err));
	gpgme_key_unref(key);
	return fpr;
}

gpgme_key_t testkeys_get(gpgme_ctx_t ctx, const char *fpr, bool secret)
{
	gpgme_key_t key = NULL;
	gpgme_error_t err = gpgme_get_key(ctx, fpr, &key, secret);
	if (err != 0)
		fail_msg("get_key %s: %s", fpr, gpgme_strerror(err));
	return key;
}
