/* keystore_keyring: key management through GPGME. Imports are tried in a
 * scratch GNUPGHOME first, so that a bad input never touches the keyring. */
#include "keystore_keyring.h"

#include <errno.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gpgme.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keystore_keys.h"

/* Only self-signatures enter the keyring: third-party certifications are
 * of no use to sealpost, and a flood of them can make a key unusable. */
#define KEYSTORE_IMPORT_FILTER "drop-sig=sig_created -n"

static _Thread_local char keystore_keyring_error[1024];

struct keystore_keyring {
	char *home;
	keystore_db *db;
};

G_GNUC_PRINTF(1, 2)
static const char *keystore_keyring_errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(keystore_keyring_error, sizeof(keystore_keyring_error), fmt, ap);
	va_end(ap);
	/* One line, whatever gpg or a user ID put in it. */
	for (char *p = keystore_keyring_error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return keystore_keyring_error;
}

keystore_keyring *keystore_keyring_open(const char *gnupg_home, keystore_db *db,
					const char **error_r)
{
	if (gnupg_home == NULL || db == NULL) {
		*error_r = "keyring: no GNUPGHOME or no database";
		return NULL;
	}
	keystore_keyring *kr = g_new0(keystore_keyring, 1);
	kr->home = g_strdup(gnupg_home);
	kr->db = db;
	return kr;
}

void keystore_keyring_close(keystore_keyring **krp)
{
	keystore_keyring *kr = *krp;
	if (kr == NULL)
		return;
	g_free(kr->home);
	g_free(kr);
	*krp = NULL;
}

void keystore_keyring_key_clear(keystore_keyring_key *key)
{
	if (key == NULL)
		return;
	g_strfreev(key->addresses);
	memset(key, 0, sizeof(*key));
}

void keystore_keyring_keys_free(keystore_keyring_key **keys, size_t n)
{
	if (*keys == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		keystore_keyring_key_clear(&(*keys)[i]);
	g_free(*keys);
	*keys = NULL;
}

/* ---- GPGME contexts and passphrases ------------------------------------------ */

typedef struct {
	const keystore_passphrase *pp;
	bool asked;		/* gpg wanted a passphrase */
	bool gave_up;		/* and pp had none (more) to give */
} keystore_pp_bridge;

static gpgme_error_t keystore_keyring_passphrase_cb(void *hook, const char *uid_hint,
						    const char *info, int prev_was_bad,
						    int fd)
{
	(void)info;
	keystore_pp_bridge *b = hook;
	b->asked = true;
	if (b->pp == NULL || b->pp->fn == NULL) {
		b->gave_up = true;
		return gpg_error(GPG_ERR_CANCELED);
	}
	/* uid_hint is "KEYID USER-ID". */
	const char *hint = uid_hint != NULL ? strchr(uid_hint, ' ') : NULL;
	hint = hint != NULL ? hint + 1 : uid_hint;
	/* Room for the passphrase, its NUL and the newline gpg wants. */
	char *buf = sodium_malloc(KEYSTORE_PASSPHRASE_MAX + 2);
	if (buf == NULL)
		return gpg_error(GPG_ERR_ENOMEM);
	buf[0] = '\0';
	gpgme_error_t err = 0;
	if (b->pp->fn(b->pp->ctx, hint, prev_was_bad != 0, buf, KEYSTORE_PASSPHRASE_MAX + 1) < 0) {
		b->gave_up = true;
		err = gpg_error(prev_was_bad ? GPG_ERR_BAD_PASSPHRASE : GPG_ERR_CANCELED);
	} else {
		size_t len = strnlen(buf, KEYSTORE_PASSPHRASE_MAX);
		buf[len] = '\n';
		if (gpgme_io_writen(fd, buf, len + 1) != 0)
			err = gpgme_error_from_errno(errno);
	}
	sodium_free(buf);
	return err;
}

/* A context on home (NULL: the keyring's). With bridge, gpg asks for
 * passphrases through it (loopback pinentry); without, it may not ask. */
static gpgme_ctx_t keystore_keyring_ctx(const keystore_keyring *kr, const char *home,
					keystore_pp_bridge *bridge, const char **error_r)
{
	gpgme_ctx_t ctx;
	gpgme_error_t err = gpgme_new(&ctx);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot create a GPGME context: %s",
						   gpgme_strerror(err));
		return NULL;
	}
	gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
	err = gpgme_ctx_set_engine_info(ctx, GPGME_PROTOCOL_OpenPGP, NULL,
					home != NULL ? home : kr->home);
	if (err == 0)
		err = gpgme_set_pinentry_mode(ctx, bridge != NULL ? GPGME_PINENTRY_MODE_LOOPBACK
								  : GPGME_PINENTRY_MODE_ERROR);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot use GNUPGHOME %s: %s",
						   home != NULL ? home : kr->home,
						   gpgme_strerror(err));
		gpgme_release(ctx);
		return NULL;
	}
	if (bridge != NULL)
		gpgme_set_passphrase_cb(ctx, keystore_keyring_passphrase_cb, bridge);
	return ctx;
}

/* gpgconf, for what GPGME has no call for: the agent's socket, ending an
 * agent. NULL output when not wanted. */
static int keystore_keyring_gpgconf(const char *home, const char *what, const char *arg,
				    char **out_r)
{
	const char *gpgconf = gpgme_get_dirinfo("gpgconf-name");
	if (gpgconf == NULL)
		gpgconf = "gpgconf";
	const char *argv[] = { gpgconf, "--homedir", home, what, arg, NULL };
	int status = 0;
	GSpawnFlags flags = G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL;
	if (out_r == NULL)
		flags |= G_SPAWN_STDOUT_TO_DEV_NULL;
	if (!g_spawn_sync(NULL, (char **)argv, NULL, flags, NULL, NULL, out_r, NULL,
			  &status, NULL))
		return -1;
	return g_spawn_check_wait_status(status, NULL) ? 0 : -1;
}

/* ---- listing ----------------------------------------------------------------- */

static bool keystore_uid_valid(gpgme_user_id_t uid)
{
	return !uid->revoked && !uid->invalid && uid->email != NULL && uid->email[0] != '\0';
}

static char **keystore_key_addresses(gpgme_key_t key)
{
	GPtrArray *a = g_ptr_array_new();
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next) {
		if (!keystore_uid_valid(uid))
			continue;
		bool dup = false;
		for (guint i = 0; i < a->len && !dup; i++)
			dup = keystore_address_equal(g_ptr_array_index(a, i), uid->email);
		if (!dup)
			g_ptr_array_add(a, g_strdup(uid->email));
	}
	g_ptr_array_add(a, NULL);
	return (char **)g_ptr_array_free(a, FALSE);
}

static bool keystore_key_has_address(gpgme_key_t key, const char *address)
{
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next)
		if (keystore_uid_valid(uid) && keystore_address_equal(uid->email, address))
			return true;
	return false;
}

/* Fills k from key and the database. */
static int keystore_keyring_describe(keystore_keyring *kr, gpgme_key_t key,
				     keystore_keyring_key *k, const char **error_r)
{
	memset(k, 0, sizeof(*k));
	g_strlcpy(k->fingerprint, key->subkeys->fpr, sizeof(k->fingerprint));
	k->addresses = keystore_key_addresses(key);
	k->created = key->subkeys->timestamp > 0 ? key->subkeys->timestamp : 0;
	k->expires = key->subkeys->expires > 0 ? key->subkeys->expires : 0;
	k->own = key->secret;
	keystore_key_state state;
	bool found;
	if (keystore_key_state_get(kr->db, k->fingerprint, &state, &found, error_r) < 0) {
		keystore_keyring_key_clear(k);
		return -1;
	}
	k->source = state.source;
	k->acceptance = state.acceptance;
	/* Usable when it can serve one of its addresses. */
	k->unusable = k->addresses[0] == NULL ? "no user ID with an e-mail address" : NULL;
	for (size_t i = 0; k->addresses[i] != NULL; i++) {
		k->unusable = keystore_key_unusable(key, k->addresses[i], false);
		if (k->unusable == NULL)
			break;
	}
	if (k->unusable == NULL && k->acceptance == KEYSTORE_ACCEPTANCE_REJECTED)
		k->unusable = "rejected";
	return 0;
}

static int keystore_keyring_key_cmp(const void *pa, const void *pb)
{
	const keystore_keyring_key *a = pa, *b = pb;
	const char *aa = a->addresses[0] != NULL ? a->addresses[0] : "";
	const char *ab = b->addresses[0] != NULL ? b->addresses[0] : "";
	int c = g_ascii_strcasecmp(aa, ab);
	if (c != 0)
		return c;
	if (a->created != b->created)
		return a->created > b->created ? -1 : 1;
	return strcmp(a->fingerprint, b->fingerprint);
}

/* Lists keys on ctx: all (pattern NULL), or those pattern finds, kept when
 * address is NULL or they have it, or fpr is NULL or their primary or a
 * subkey has it. */
static int keystore_keyring_collect(keystore_keyring *kr, gpgme_ctx_t ctx, const char *pattern,
				    const char *address, const char *fpr,
				    GArray *out, const char **error_r)
{
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL | GPGME_KEYLIST_MODE_WITH_SECRET);
	gpgme_error_t err = gpgme_op_keylist_start(ctx, pattern, 0);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot list the keys: %s", gpgme_strerror(err));
		return -1;
	}
	int ret = 0;
	for (;;) {
		gpgme_key_t key;
		err = gpgme_op_keylist_next(ctx, &key);
		if (err != 0)
			break;
		bool keep = key->subkeys != NULL && key->subkeys->fpr != NULL;
		if (keep && address != NULL)
			keep = keystore_key_has_address(key, address);
		if (keep && fpr != NULL) {
			keep = false;
			for (gpgme_subkey_t sk = key->subkeys; sk != NULL && !keep; sk = sk->next)
				keep = sk->fpr != NULL && g_ascii_strcasecmp(sk->fpr, fpr) == 0;
		}
		if (keep && ret == 0) {
			keystore_keyring_key k;
			if (keystore_keyring_describe(kr, key, &k, error_r) < 0)
				ret = -1;
			else
				g_array_append_val(out, k);
		}
		gpgme_key_unref(key);
	}
	if (gpgme_err_code(err) != GPG_ERR_EOF) {
		gpgme_op_keylist_end(ctx);
		*error_r = keystore_keyring_errorf("cannot list the keys: %s", gpgme_strerror(err));
		return -1;
	}
	return ret;
}

static void keystore_keyring_array_clear(void *p)
{
	keystore_keyring_key_clear(p);
}

int keystore_keyring_list(keystore_keyring *kr, const char *filter,
			  keystore_keyring_key **keys_r, size_t *n_r,
			  const char **error_r)
{
	*keys_r = NULL;
	*n_r = 0;
	char fpr[65], pattern[400];
	const char *why, *want_fpr = NULL, *want_address = NULL, *pat = NULL;
	if (filter != NULL && keystore_fingerprint_normalise(filter, fpr, sizeof(fpr), &why) == 0) {
		want_fpr = pat = fpr;
	} else if (filter != NULL) {
		if (strchr(filter, '@') == NULL || strlen(filter) > 320 ||
		    strpbrk(filter, "<>\r\n") != NULL) {
			*error_r = keystore_keyring_errorf("neither an address nor a fingerprint");
			return -1;
		}
		snprintf(pattern, sizeof(pattern), "<%s>", filter);
		want_address = filter;
		pat = pattern;
	}
	gpgme_ctx_t ctx = keystore_keyring_ctx(kr, NULL, NULL, error_r);
	if (ctx == NULL)
		return -1;
	GArray *keys = g_array_new(FALSE, TRUE, sizeof(keystore_keyring_key));
	g_array_set_clear_func(keys, keystore_keyring_array_clear);
	int ret = keystore_keyring_collect(kr, ctx, pat, want_address, want_fpr, keys, error_r);
	gpgme_release(ctx);
	if (ret < 0) {
		g_array_free(keys, TRUE);
		return -1;
	}
	g_array_sort(keys, keystore_keyring_key_cmp);
	*n_r = keys->len;
	g_array_set_clear_func(keys, NULL);
	*keys_r = (keystore_keyring_key *)(void *)g_array_free(keys, keys->len == 0);
	return 0;
}

/* The one key with this fingerprint (the primary's), or an error. */
static int keystore_keyring_one(keystore_keyring *kr, const char *fingerprint,
				keystore_keyring_key *key_r, const char **error_r)
{
	char fpr[65];
	const char *why;
	if (keystore_fingerprint_normalise(fingerprint, fpr, sizeof(fpr), &why) < 0) {
		*error_r = keystore_keyring_errorf("invalid fingerprint: %s", why);
		return -1;
	}
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_keyring_list(kr, fpr, &keys, &n, error_r) < 0)
		return -1;
	if (n != 1 || strcmp(keys[0].fingerprint, fpr) != 0) {
		keystore_keyring_keys_free(&keys, n);
		*error_r = keystore_keyring_errorf("no key %s in the keyring%s", fpr,
						   n > 0 ? " (that is a subkey's fingerprint; give "
							   "the primary key's)" : "");
		return -1;
	}
	*key_r = keys[0];
	g_free(keys);
	return 0;
}

/* The gpgme key with this primary fingerprint, secret flag included. */
static gpgme_key_t keystore_keyring_get(gpgme_ctx_t ctx, const char *fpr, int mode,
					const char **error_r)
{
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL | GPGME_KEYLIST_MODE_WITH_SECRET | mode);
	gpgme_key_t key = NULL;
	gpgme_error_t err = gpgme_get_key(ctx, fpr, &key, 0);
	if (err != 0 || key == NULL) {
		*error_r = keystore_keyring_errorf("no key %s in the keyring: %s", fpr,
						   gpgme_strerror(err));
		return NULL;
	}
	return key;
}

/* ---- generate ---------------------------------------------------------------- */

static int keystore_keyring_check_address(const char *address, const char **error_r)
{
	char norm[321];
	const char *why;
	if (keystore_policy_target_normalise(address, norm, sizeof(norm), &why) < 0) {
		*error_r = keystore_keyring_errorf("invalid address: %s", why);
		return -1;
	}
	if (address[0] == '@') {
		*error_r = "invalid address: no local part (expected user@domain)";
		return -1;
	}
	return 0;
}

/* Removes a key half made or half imported; best effort. */
static void keystore_keyring_remove(gpgme_ctx_t ctx, const char *fpr)
{
	const char *ignored;
	gpgme_key_t key = keystore_keyring_get(ctx, fpr, 0, &ignored);
	if (key != NULL) {
		gpgme_op_delete_ext(ctx, key, GPGME_DELETE_ALLOW_SECRET | GPGME_DELETE_FORCE);
		gpgme_key_unref(key);
	}
}

static const char *keystore_keyring_pp_error(const keystore_pp_bridge *b, gpgme_error_t err,
					     const char *what)
{
	gpg_err_code_t code = gpgme_err_code(err);
	if (code == GPG_ERR_BAD_PASSPHRASE)
		return keystore_keyring_errorf("%s: wrong passphrase", what);
	if (b->gave_up || code == GPG_ERR_CANCELED || code == GPG_ERR_NO_PASSPHRASE)
		return keystore_keyring_errorf("%s: no passphrase given", what);
	return keystore_keyring_errorf("%s: %s", what, gpgme_strerror(err));
}

int keystore_keyring_generate(keystore_keyring *kr, const char *address,
			      const keystore_passphrase *pp, bool force,
			      keystore_keyring_key *key_r, const char **error_r)
{
	memset(key_r, 0, sizeof(*key_r));
	if (keystore_keyring_check_address(address, error_r) < 0)
		return -1;
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_keyring_list(kr, address, &keys, &n, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n && !force; i++) {
		if (keys[i].own && keys[i].unusable == NULL) {
			*error_r = keystore_keyring_errorf("%s already has a usable key of its own, %s "
							   "(give --force to make another)",
							   address, keys[i].fingerprint);
			keystore_keyring_keys_free(&keys, n);
			return -1;
		}
	}
	keystore_keyring_keys_free(&keys, n);

	keystore_pp_bridge bridge = { .pp = pp };
	gpgme_ctx_t ctx = keystore_keyring_ctx(kr, NULL, &bridge, error_r);
	if (ctx == NULL)
		return -1;
	char *userid = g_strdup_printf("<%s>", address);
	unsigned nopass = pp == NULL ? GPGME_CREATE_NOPASSWD : 0;
	/* FORCE: gpg refuses a second key with the same user ID; whether
	 * that is wanted was decided above. */
	gpgme_error_t err = gpgme_op_createkey(ctx, userid, "ed25519", 0, KEYSTORE_KEY_LIFETIME,
					       NULL, GPGME_CREATE_SIGN | GPGME_CREATE_CERT |
					       GPGME_CREATE_FORCE | nopass);
	g_free(userid);
	gpgme_genkey_result_t res = err == 0 ? gpgme_op_genkey_result(ctx) : NULL;
	if (err != 0 || res == NULL || res->fpr == NULL) {
		*error_r = keystore_keyring_pp_error(&bridge, err, "key generation failed");
		gpgme_release(ctx);
		return -1;
	}
	char fpr[65];
	g_strlcpy(fpr, res->fpr, sizeof(fpr));
	gpgme_key_t key = keystore_keyring_get(ctx, fpr, 0, error_r);
	if (key == NULL)
		goto undo;
	err = gpgme_op_createsubkey(ctx, key, "cv25519", 0, KEYSTORE_KEY_LIFETIME,
				    GPGME_CREATE_ENCR | nopass);
	gpgme_key_unref(key);
	if (err != 0) {
		*error_r = keystore_keyring_pp_error(&bridge, err,
						     "generating the encryption subkey failed");
		goto undo;
	}
	if (keystore_key_state_add(kr->db, fpr, KEYSTORE_SOURCE_MANUAL,
				   KEYSTORE_ACCEPTANCE_VERIFIED, NULL, error_r) < 0)
		goto undo;
	gpgme_release(ctx);
	return keystore_keyring_one(kr, fpr, key_r, error_r);
undo:
	keystore_keyring_remove(ctx, fpr);
	gpgme_release(ctx);
	return -1;
}

/* ---- import ------------------------------------------------------------------ */

static int keystore_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* A scratch GNUPGHOME: short, private, removed with its agent by
 * keystore_scratch_remove. */
static char *keystore_scratch_new(const char **error_r)
{
	GError *gerr = NULL;
	char *dir = g_dir_make_tmp("sealpost-keys-XXXXXX", &gerr);
	if (dir == NULL) {
		*error_r = keystore_keyring_errorf("cannot create a scratch keyring: %s",
						   gerr->message);
		g_error_free(gerr);
		return NULL;
	}
	char *conf = g_build_filename(dir, "gpg.conf", NULL);
	g_file_set_contents(conf, "no-random-seed-file\n", -1, NULL);
	g_free(conf);
	return dir;
}

static void keystore_scratch_remove(char **dirp)
{
	if (*dirp == NULL)
		return;
	/* Listing or importing secret keys starts an agent there. */
	keystore_keyring_gpgconf(*dirp, "--kill", "all", NULL);
	nftw(*dirp, keystore_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_free(*dirp);
	*dirp = NULL;
}

static const char *keystore_import_type_error(gpgme_data_type_t type)
{
	switch (type) {
	case GPGME_DATA_TYPE_PGP_KEY:
		return NULL;
	case GPGME_DATA_TYPE_PGP_SIGNED:
	case GPGME_DATA_TYPE_PGP_ENCRYPTED:
	case GPGME_DATA_TYPE_PGP_SIGNATURE:
		return "the input is an OpenPGP message or signature, not a key";
	case GPGME_DATA_TYPE_CMS_SIGNED:
	case GPGME_DATA_TYPE_CMS_ENCRYPTED:
	case GPGME_DATA_TYPE_CMS_OTHER:
	case GPGME_DATA_TYPE_X509_CERT:
	case GPGME_DATA_TYPE_PKCS12:
		return "the input is S/MIME (X.509) data, not an OpenPGP key";
	default:
		return "the input is not OpenPGP key data";
	}
}

/* What the input holds, as gpg reads it without importing (--show-keys). */
typedef struct {
	GPtrArray *fprs;	/* primary fingerprints */
	bool secret;
	const char *secret_fpr;
} keystore_import_scan;

static int keystore_import_scan_data(gpgme_ctx_t ctx, gpgme_data_t data,
				     keystore_import_scan *scan, const char **error_r)
{
	gpgme_data_seek(data, 0, SEEK_SET);
	gpgme_error_t err = gpgme_op_keylist_from_data_start(ctx, data, 0);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot read the key data: %s",
						   gpgme_strerror(err));
		return -1;
	}
	int ret = 0;
	for (;;) {
		gpgme_key_t key;
		err = gpgme_op_keylist_next(ctx, &key);
		if (err != 0)
			break;
		const char *fpr = key->subkeys != NULL ? key->subkeys->fpr : NULL;
		if (ret == 0 && (fpr == NULL || key->invalid || key->uids == NULL)) {
			/* What gpg lists of a cut-off key: the primary key
			 * without its self-signature or user IDs. */
			*error_r = keystore_keyring_errorf("the input is malformed or truncated: "
							   "key %s is incomplete",
							   fpr != NULL ? fpr : "?");
			ret = -1;
		} else if (ret == 0) {
			g_ptr_array_add(scan->fprs, g_strdup(fpr));
			if (key->secret && !scan->secret) {
				scan->secret = true;
				scan->secret_fpr = g_ptr_array_index(scan->fprs, scan->fprs->len - 1);
			}
		}
		gpgme_key_unref(key);
	}
	if (gpgme_err_code(err) != GPG_ERR_EOF) {
		gpgme_op_keylist_end(ctx);
		if (ret == 0)
			*error_r = keystore_keyring_errorf("the input is malformed: %s",
							   gpgme_strerror(err));
		return -1;
	}
	if (ret == 0 && scan->fprs->len == 0) {
		*error_r = "no OpenPGP key found in the input (malformed or truncated?)";
		return -1;
	}
	return ret;
}

/* Whether gpg imported every key of scan. */
static int keystore_import_check_result(gpgme_ctx_t ctx, const keystore_import_scan *scan,
					const char *where, const char **error_r)
{
	gpgme_import_result_t res = gpgme_op_import_result(ctx);
	if (res == NULL) {
		*error_r = keystore_keyring_errorf("%s: gpg gave no import result", where);
		return -1;
	}
	for (gpgme_import_status_t st = res->imports; st != NULL; st = st->next) {
		if (st->result != 0) {
			*error_r = keystore_keyring_errorf("%s: key %s: %s", where,
							   st->fpr != NULL ? st->fpr : "?",
							   gpgme_strerror(st->result));
			return -1;
		}
	}
	if (res->not_imported > 0 || res->no_user_id > 0 || res->skipped_v3_keys > 0 ||
	    res->considered < (int)scan->fprs->len) {
		*error_r = keystore_keyring_errorf("%s: gpg took %d of %u keys (malformed or "
						   "truncated input?)", where,
						   res->imported + res->unchanged, scan->fprs->len);
		return -1;
	}
	if (res->secret_read > res->secret_imported + res->secret_unchanged) {
		*error_r = keystore_keyring_errorf("%s: gpg took %d of %d secret keys", where,
						   res->secret_imported + res->secret_unchanged,
						   res->secret_read);
		return -1;
	}
	return 0;
}

static gpgme_error_t keystore_import_into(gpgme_ctx_t ctx, gpgme_data_t data,
					  keystore_key_source source)
{
	gpgme_error_t err = gpgme_set_ctx_flag(ctx, "import-filter", KEYSTORE_IMPORT_FILTER);
	if (err == 0)
		err = gpgme_set_ctx_flag(ctx, "key-origin",
					 source == KEYSTORE_SOURCE_MANUAL ? "file" : "url");
	if (err == 0) {
		gpgme_data_seek(data, 0, SEEK_SET);
		err = gpgme_op_import(ctx, data);
	}
	return err;
}

/* The addresses of key, "a@x, b@y" (g_free). */
static char *keystore_addresses_text(gpgme_key_t key)
{
	char **a = keystore_key_addresses(key);
	char *s = a[0] != NULL ? g_strjoinv(", ", a) : g_strdup("none");
	g_strfreev(a);
	return s;
}

/* opt's rules for every key of scan, as the scratch keyring now holds it. */
static int keystore_import_check_keys(gpgme_ctx_t ctx, const keystore_import_scan *scan,
				      const keystore_import_options *opt, const char **error_r)
{
	for (guint i = 0; i < scan->fprs->len; i++) {
		const char *fpr = g_ptr_array_index(scan->fprs, i);
		gpgme_key_t key = keystore_keyring_get(ctx, fpr, 0, error_r);
		if (key == NULL)
			return -1;
		char *have = keystore_addresses_text(key);
		int ret = 0;
		char **addrs = keystore_key_addresses(key);
		if (addrs[0] == NULL) {
			*error_r = keystore_keyring_errorf("key %s has no valid user ID with an "
							   "e-mail address", fpr);
			ret = -1;
		} else if (opt->address != NULL && !keystore_key_has_address(key, opt->address)) {
			*error_r = keystore_keyring_errorf("key %s has no user ID for %s (it has %s); "
							   "nothing imported", fpr, opt->address, have);
			ret = -1;
		}
		g_strfreev(addrs);
		g_free(have);
		gpgme_key_unref(key);
		if (ret < 0)
			return -1;
	}
	return 0;
}

int keystore_keyring_import(keystore_keyring *kr, const void *buf, size_t len,
			    const keystore_import_options *opt,
			    keystore_keyring_key **keys_r, size_t *n_r,
			    const char **error_r)
{
	*keys_r = NULL;
	*n_r = 0;
	if (len == 0) {
		*error_r = "the input is empty";
		return -1;
	}
	if (len > KEYSTORE_IMPORT_MAX) {
		*error_r = "the input is larger than 1 MiB; no key is that large";
		return -1;
	}
	if (opt->address != NULL && keystore_keyring_check_address(opt->address, error_r) < 0)
		return -1;
	gpgme_data_t data = NULL;
	gpgme_error_t err = gpgme_data_new_from_mem(&data, buf, len, 0);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot read the input: %s", gpgme_strerror(err));
		return -1;
	}
	const char *type_error = keystore_import_type_error(gpgme_data_identify(data, 0));
	/* gpg takes armor that stops after the last base64 line; a file cut
	 * there is still a cut file. */
	const char *begin = g_strstr_len(buf, (gssize)len, "-----BEGIN PGP ");
	if (type_error == NULL && begin != NULL &&
	    g_strstr_len(begin, (gssize)(len - (size_t)(begin - (const char *)buf)),
			 "-----END PGP ") == NULL)
		type_error = "the input is truncated: its ASCII armor has no END line";
	if (type_error != NULL) {
		*error_r = type_error;
		gpgme_data_release(data);
		return -1;
	}

	int ret = -1;
	keystore_import_scan scan = { .fprs = g_ptr_array_new_with_free_func(g_free) };
	gpgme_ctx_t scratch_ctx = NULL, ctx = NULL;
	char *scratch = keystore_scratch_new(error_r);
	if (scratch == NULL)
		goto out;
	scratch_ctx = keystore_keyring_ctx(kr, scratch, NULL, error_r);
	if (scratch_ctx == NULL || keystore_import_scan_data(scratch_ctx, data, &scan, error_r) < 0)
		goto out;
	if (scan.secret && !opt->secret) {
		*error_r = keystore_keyring_errorf("the input holds a secret key (%s); give --secret "
						   "to import secret keys; nothing imported",
						   scan.secret_fpr);
		goto out;
	}
	/* The trial: everything gpg would refuse or cut shows here. */
	err = keystore_import_into(scratch_ctx, data, opt->source);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("the input is malformed or truncated: %s",
						   gpgme_strerror(err));
		goto out;
	}
	if (keystore_import_check_result(scratch_ctx, &scan, "the input is malformed or truncated",
					 error_r) < 0 ||
	    keystore_import_check_keys(scratch_ctx, &scan, opt, error_r) < 0)
		goto out;

	ctx = keystore_keyring_ctx(kr, NULL, NULL, error_r);
	if (ctx == NULL)
		goto out;
	err = keystore_import_into(ctx, data, opt->source);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("import into %s failed: %s", kr->home,
						   gpgme_strerror(err));
		goto out;
	}
	if (keystore_import_check_result(ctx, &scan, "import into the keyring failed", error_r) < 0)
		goto out;
	GArray *keys = g_array_new(FALSE, TRUE, sizeof(keystore_keyring_key));
	g_array_set_clear_func(keys, keystore_keyring_array_clear);
	ret = 0;
	for (guint i = 0; ret == 0 && i < scan.fprs->len; i++) {
		const char *fpr = g_ptr_array_index(scan.fprs, i);
		keystore_keyring_key k;
		if (keystore_key_state_add(kr->db, fpr, opt->source,
					   KEYSTORE_ACCEPTANCE_UNVERIFIED, NULL, error_r) < 0 ||
		    keystore_keyring_one(kr, fpr, &k, error_r) < 0)
			ret = -1;
		else
			g_array_append_val(keys, k);
	}
	if (ret < 0) {
		g_array_free(keys, TRUE);
		goto out;
	}
	*n_r = keys->len;
	g_array_set_clear_func(keys, NULL);
	*keys_r = (keystore_keyring_key *)(void *)g_array_free(keys, FALSE);
out:
	if (ctx != NULL)
		gpgme_release(ctx);
	if (scratch_ctx != NULL)
		gpgme_release(scratch_ctx);
	keystore_scratch_remove(&scratch);
	g_ptr_array_free(scan.fprs, TRUE);
	gpgme_data_release(data);
	return ret;
}

int keystore_keyring_inspect(keystore_keyring *kr, const void *buf, size_t len,
			     keystore_keyring_key *key_r, const char **error_r)
{
	memset(key_r, 0, sizeof(*key_r));
	if (len == 0 || len > KEYSTORE_IMPORT_MAX) {
		*error_r = len == 0 ? "the key data is empty" : "the key data is larger than 1 MiB";
		return -1;
	}
	gpgme_data_t data = NULL;
	gpgme_error_t err = gpgme_data_new_from_mem(&data, buf, len, 0);
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot read the key data: %s",
						   gpgme_strerror(err));
		return -1;
	}
	const char *type_error = keystore_import_type_error(gpgme_data_identify(data, 0));
	if (type_error != NULL) {
		*error_r = type_error;
		gpgme_data_release(data);
		return -1;
	}
	gpgme_ctx_t ctx = keystore_keyring_ctx(kr, NULL, NULL, error_r);
	if (ctx == NULL) {
		gpgme_data_release(data);
		return -1;
	}
	/* gpg --show-keys: parsed and checked as an import would, nothing
	 * written to the keyring. */
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL);
	err = gpgme_op_keylist_from_data_start(ctx, data, 0);
	int ret = 0, n = 0;
	if (err != 0) {
		*error_r = keystore_keyring_errorf("cannot read the key data: %s",
						   gpgme_strerror(err));
		ret = -1;
	}
	while (err == 0) {
		gpgme_key_t key;
		err = gpgme_op_keylist_next(ctx, &key);
		if (err != 0)
			break;
		n++;
		const char *fpr = key->subkeys != NULL ? key->subkeys->fpr : NULL;
		if (ret == 0 && (fpr == NULL || key->invalid || key->uids == NULL)) {
			*error_r = keystore_keyring_errorf("the key data is malformed or truncated: "
							   "key %s is incomplete",
							   fpr != NULL ? fpr : "?");
			ret = -1;
		} else if (ret == 0 && key->secret) {
			*error_r = "the key data holds a secret key";
			ret = -1;
		} else if (ret == 0 && n == 1) {
			ret = keystore_keyring_describe(kr, key, key_r, error_r);
		}
		gpgme_key_unref(key);
	}
	if (ret == 0 && err != 0 && gpgme_err_code(err) != GPG_ERR_EOF) {
		gpgme_op_keylist_end(ctx);
		*error_r = keystore_keyring_errorf("the key data is malformed: %s",
						   gpgme_strerror(err));
		ret = -1;
	}
	if (ret == 0 && n != 1) {
		*error_r = n == 0 ? "no OpenPGP key in the key data (malformed or truncated?)"
				  : "the key data holds more than one key";
		ret = -1;
	}
	if (ret < 0)
		keystore_keyring_key_clear(key_r);
	gpgme_release(ctx);
	gpgme_data_release(data);
	return ret;
}

/* ---- export ------------------------------------------------------------------ */

typedef struct {
	int fd;
	size_t written;
	int error;		/* errno of a failed write */
} keystore_export_sink;

static ssize_t keystore_export_write(void *handle, const void *buf, size_t size)
{
	keystore_export_sink *s = handle;
	const char *p = buf;
	size_t left = size;
	while (left > 0) {
		ssize_t n = write(s->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->error = errno;
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	s->written += size;
	return (ssize_t)size;
}

static int keystore_write_all(int fd, const char *buf, size_t len, const char **error_r)
{
	keystore_export_sink sink = { .fd = fd };
	if (keystore_export_write(&sink, buf, len) < 0) {
		*error_r = keystore_keyring_errorf("cannot write the key: %s", strerror(sink.error));
		return -1;
	}
	return 0;
}

int keystore_keyring_export(keystore_keyring *kr, const char *const *fingerprints,
			    bool secret, bool armor, const keystore_passphrase *pp,
			    int fd, const char **error_r)
{
	if (fingerprints == NULL || fingerprints[0] == NULL) {
		*error_r = "no key to export";
		return -1;
	}
	keystore_pp_bridge bridge = { .pp = pp };
	gpgme_ctx_t ctx = keystore_keyring_ctx(kr, NULL, secret ? &bridge : NULL, error_r);
	if (ctx == NULL)
		return -1;
	gpgme_set_armor(ctx, armor ? 1 : 0);
	gpgme_data_t out = NULL;
	keystore_export_sink sink = { .fd = fd };
	struct gpgme_data_cbs cbs = { .write = keystore_export_write };
	/* A secret key goes straight to fd: no copy of it stays in memory. */
	gpgme_error_t err = secret ? gpgme_data_new_from_cbs(&out, &cbs, &sink)
				   : gpgme_data_new(&out);
	if (err == 0)
		err = gpgme_op_export_ext(ctx, (const char **)fingerprints,
					  secret ? GPGME_EXPORT_MODE_SECRET : 0, out);
	int ret = 0;
	if (err != 0) {
		if (sink.error != 0)
			*error_r = keystore_keyring_errorf("cannot write the key: %s",
							   strerror(sink.error));
		else
			*error_r = keystore_keyring_pp_error(&bridge, err, "export failed");
		ret = -1;
	} else if (secret) {
		if (sink.written == 0) {
			*error_r = "export failed: gpg gave no secret key";
			ret = -1;
		}
	} else {
		size_t len = 0;
		char *buf = gpgme_data_release_and_get_mem(out, &len);
		out = NULL;
		if (buf == NULL || len == 0) {
			*error_r = "export failed: gpg gave no key";
			ret = -1;
		} else {
			ret = keystore_write_all(fd, buf, len, error_r);
		}
		gpgme_free(buf);
	}
	if (out != NULL)
		gpgme_data_release(out);
	gpgme_release(ctx);
	return ret;
}

/* ---- delete, verify, reject -------------------------------------------------- */

int keystore_keyring_delete(keystore_keyring *kr, const char *fingerprint,
			    const char **error_r)
{
	keystore_keyring_key k;
	if (keystore_keyring_one(kr, fingerprint, &k, error_r) < 0)
		return -1;
	gpgme_ctx_t ctx = keystore_keyring_ctx(kr, NULL, NULL, error_r);
	int ret = -1;
	gpgme_key_t key = ctx != NULL ? keystore_keyring_get(ctx, k.fingerprint, 0, error_r) : NULL;
	if (key != NULL) {
		gpgme_error_t err = gpgme_op_delete_ext(ctx, key, GPGME_DELETE_ALLOW_SECRET |
							GPGME_DELETE_FORCE);
		if (err != 0)
			*error_r = keystore_keyring_errorf("cannot delete %s: %s", k.fingerprint,
							   gpgme_strerror(err));
		else
			ret = keystore_key_state_forget(kr->db, k.fingerprint, NULL, error_r);
		gpgme_key_unref(key);
	}
	if (ctx != NULL)
		gpgme_release(ctx);
	keystore_keyring_key_clear(&k);
	return ret;
}

int keystore_keyring_set_acceptance(keystore_keyring *kr, const char *fingerprint,
				    keystore_acceptance acceptance, const char **error_r)
{
	keystore_keyring_key k;
	if (keystore_keyring_one(kr, fingerprint, &k, error_r) < 0)
		return -1;
	int ret = keystore_key_state_set_acceptance(kr->db, k.fingerprint, acceptance, error_r);
	keystore_keyring_key_clear(&k);
	return ret;
}

/* ---- pending key changes ------------------------------------------------------ */

int keystore_keyring_pending_accept(keystore_keyring *kr, const keystore_pending_key *p,
				    keystore_keyring_key *key_r, const char **error_r)
{
	if (key_r != NULL)
		memset(key_r, 0, sizeof(*key_r));
	keystore_keyring_key k;
	if (keystore_keyring_inspect(kr, p->keydata, p->keydata_len, &k, error_r) < 0)
		return -1;
	int ret = 0;
	if (strcmp(k.fingerprint, p->new_fingerprint) != 0) {
		*error_r = keystore_keyring_errorf("pending change %" G_GINT64_FORMAT ": its key "
						   "data holds %s, not %s", p->id, k.fingerprint,
						   p->new_fingerprint);
		ret = -1;
	}
	/* gpg compares the local part exactly: import for the user ID as
	 * the key writes it. */
	const char *address = NULL;
	for (size_t i = 0; ret == 0 && k.addresses[i] != NULL && address == NULL; i++)
		if (g_ascii_strcasecmp(k.addresses[i], p->addr) == 0)
			address = k.addresses[i];
	if (ret == 0 && address == NULL) {
		*error_r = keystore_keyring_errorf("key %s has no user ID for %s", k.fingerprint,
						   p->addr);
		ret = -1;
	}
	keystore_keyring_key *keys = NULL;
	size_t n = 0;
	const keystore_import_options opt = { .address = address, .source = p->source };
	if (ret == 0)
		ret = keystore_keyring_import(kr, p->keydata, p->keydata_len, &opt, &keys, &n,
					      error_r);
	keystore_keyring_keys_free(&keys, n);
	if (ret == 0)
		ret = keystore_key_state_set_acceptance(kr->db, p->new_fingerprint,
							KEYSTORE_ACCEPTANCE_VERIFIED, error_r);
	keystore_keyring_key old;
	if (ret == 0 && strcmp(p->old_fingerprint, p->new_fingerprint) != 0 &&
	    keystore_keyring_one(kr, p->old_fingerprint, &old, error_r) == 0) {
		ret = keystore_key_state_set_acceptance(kr->db, p->old_fingerprint,
							KEYSTORE_ACCEPTANCE_REJECTED, error_r);
		keystore_keyring_key_clear(&old);
	}
	if (ret == 0)
		ret = keystore_pending_remove(kr->db, p->id, NULL, error_r);
	if (ret == 0 && key_r != NULL)
		ret = keystore_keyring_one(kr, p->new_fingerprint, key_r, error_r);
	keystore_keyring_key_clear(&k);
	return ret;
}

int keystore_keyring_pending_refuse(keystore_keyring *kr, const keystore_pending_key *p,
				    const char **error_r)
{
	if (keystore_key_state_add(kr->db, p->new_fingerprint, p->source,
				   KEYSTORE_ACCEPTANCE_REJECTED, NULL, error_r) < 0 ||
	    keystore_key_state_set_acceptance(kr->db, p->new_fingerprint,
					      KEYSTORE_ACCEPTANCE_REJECTED, error_r) < 0)
		return -1;
	return keystore_pending_remove(kr->db, p->id, NULL, error_r);
}

/* ---- unlock ------------------------------------------------------------------ */

/* Drops the passphrases gpg-agent caches for key's secret subkeys. -1 when
 * that cannot be done: the agent may still hold one. */
static int keystore_agent_forget(const keystore_keyring *kr, gpgme_key_t key)
{
	char *socket = NULL;
	if (keystore_keyring_gpgconf(kr->home, "--list-dirs", "agent-socket", &socket) < 0 ||
	    socket == NULL) {
		g_free(socket);
		return -1;
	}
	g_strstrip(socket);
	int ret = 0;
	gpgme_ctx_t actx = NULL;
	if (g_file_test(socket, G_FILE_TEST_EXISTS) && gpgme_new(&actx) == 0) {
		gpgme_set_protocol(actx, GPGME_PROTOCOL_ASSUAN);
		if (gpgme_ctx_set_engine_info(actx, GPGME_PROTOCOL_ASSUAN, socket, NULL) != 0)
			ret = -1;
		for (gpgme_subkey_t sk = key->subkeys; ret == 0 && sk != NULL; sk = sk->next) {
			if (sk->keygrip == NULL)
				continue;
			char cmd[128];
			snprintf(cmd, sizeof(cmd), "CLEAR_PASSPHRASE --mode=normal %s", sk->keygrip);
			gpgme_error_t op_err = 0;
			gpgme_error_t err = gpgme_op_assuan_transact_ext(actx, cmd, NULL, NULL, NULL,
									 NULL, NULL, NULL, &op_err);
			/* No agent listening: nothing is cached. */
			if (gpgme_err_code(err) == GPG_ERR_ASS_CONNECT_FAILED ||
			    gpgme_err_code(err) == GPG_ERR_ENOENT ||
			    gpgme_err_code(err) == GPG_ERR_ECONNREFUSED)
				break;
			if (err != 0 || op_err != 0)
				ret = -1;
		}
	} else if (g_file_test(socket, G_FILE_TEST_EXISTS)) {
		ret = -1;
	}
	if (actx != NULL)
		gpgme_release(actx);
	g_free(socket);
	return ret;
}

int keystore_keyring_unlock(keystore_keyring *kr, const char *address,
			    const keystore_passphrase *pp,
			    keystore_keyring_key *key_r, bool *asked_r,
			    const char **error_r)
{
	memset(key_r, 0, sizeof(*key_r));
	*asked_r = false;
	if (keystore_keyring_check_address(address, error_r) < 0)
		return -1;
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_keyring_list(kr, address, &keys, &n, error_r) < 0)
		return -1;
	/* The key sealpost would sign with: keystore_keys_find's choice. */
	size_t best = n;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].own && keys[i].unusable == NULL &&
		    (best == n || keys[i].created > keys[best].created))
			best = i;
	}
	if (best == n) {
		*error_r = keystore_keyring_errorf("%s has no usable key of its own", address);
		keystore_keyring_keys_free(&keys, n);
		return -1;
	}
	*key_r = keys[best];
	memset(&keys[best], 0, sizeof(keys[best]));
	keystore_keyring_keys_free(&keys, n);

	keystore_pp_bridge bridge = { .pp = pp };
	gpgme_ctx_t ctx = keystore_keyring_ctx(kr, NULL, &bridge, error_r);
	if (ctx == NULL)
		goto fail;
	gpgme_key_t key = keystore_keyring_get(ctx, key_r->fingerprint,
					       GPGME_KEYLIST_MODE_WITH_KEYGRIP, error_r);
	if (key == NULL) {
		gpgme_release(ctx);
		goto fail;
	}
	if (keystore_agent_forget(kr, key) < 0) {
		*error_r = keystore_keyring_errorf("cannot make gpg-agent forget the passphrase it "
						   "may hold for %s, so a wrong one would go "
						   "unnoticed", key_r->fingerprint);
		gpgme_key_unref(key);
		gpgme_release(ctx);
		goto fail;
	}
	gpgme_signers_clear(ctx);
	gpgme_error_t err = gpgme_signers_add(ctx, key);
	gpgme_key_unref(key);
	gpgme_data_t in = NULL, out = NULL;
	static const char test[] = "sealpost unlock check\n";
	if (err == 0)
		err = gpgme_data_new_from_mem(&in, test, sizeof(test) - 1, 0);
	if (err == 0)
		err = gpgme_data_new(&out);
	if (err == 0)
		err = gpgme_op_sign(ctx, in, out, GPGME_SIG_MODE_DETACH);
	if (in != NULL)
		gpgme_data_release(in);
	if (out != NULL)
		gpgme_data_release(out);
	*asked_r = bridge.asked;
	if (err != 0) {
		char what[96];
		snprintf(what, sizeof(what), "cannot unlock %s", key_r->fingerprint);
		*error_r = keystore_keyring_pp_error(&bridge, err, what);
		gpgme_release(ctx);
		goto fail;
	}
	gpgme_release(ctx);
	return 0;
fail:
	keystore_keyring_key_clear(key_r);
	return -1;
}
