/* keystore_keys: key lookups by e-mail address. A gpgme key listing costs
 * more than an encryption, so answers are cached per address and dropped as
 * a whole whenever a keyring file or the database (a key rejected) changes. */
#include "keystore_keys.h"

#include "keystore_discover.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Files whose change means the cached answers may be wrong. */
static const char *const keystore_keyring_files[] = {
	"pubring.kbx", "pubring.gpg", "trustdb.gpg", "private-keys-v1.d",
};
#define KEYSTORE_N_FILES (sizeof(keystore_keyring_files) / sizeof(keystore_keyring_files[0]))

typedef struct {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
} keystore_file_state;

/* Keys expire by the clock, not only by keyring changes. */
#define KEYSTORE_CACHE_SECONDS 300

typedef struct {
	keystore_key_result result;
	gint64 fetched;			/* monotonic seconds */
	gpgme_key_t key;		/* FOUND only */
	char why[160];
} keystore_cache_entry;

typedef struct {
	char fpr[64];
	unsigned char *data;
	size_t len;
} keystore_export_entry;

struct keystore_keys {
	pthread_mutex_t lock;
	char *home;
	gpgme_ctx_t ctx;		/* guarded by lock */
	keystore_file_state files[KEYSTORE_N_FILES];
	GHashTable *pub, *own;		/* address -> keystore_cache_entry */
	GHashTable *exports;		/* fingerprint -> keystore_export_entry */
	keystore_db *db;		/* NULL: no rejections known */
	int64_t db_version;		/* keystore_db_data_version when cached */
	keystore_keys_stats stats;
	keystore_discover *discover;	/* NULL: no key discovery */
};

static void keystore_cache_entry_free(gpointer p)
{
	keystore_cache_entry *e = p;
	if (e->key != NULL)
		gpgme_key_unref(e->key);
	g_free(e);
}

static void keystore_export_entry_free(gpointer p)
{
	keystore_export_entry *e = p;
	g_free(e->data);
	g_free(e);
}

bool keystore_address_equal(const char *a, const char *b)
{
	const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');
	if (at_a == NULL || at_b == NULL)
		return strcmp(a, b) == 0;
	size_t la = (size_t)(at_a - a), lb = (size_t)(at_b - b);
	return la == lb && memcmp(a, b, la) == 0 && strcasecmp(at_a, at_b) == 0;
}

/* The cache key: the address with its domain in lower case. */
static char *keystore_address_key(const char *address)
{
	char *k = g_strdup(address);
	char *at = strrchr(k, '@');
	if (at != NULL)
		for (char *p = at; *p != '\0'; p++)
			*p = g_ascii_tolower(*p);
	return k;
}

static void keystore_keys_snapshot(const keystore_keys *ks, keystore_file_state *out)
{
	for (size_t i = 0; i < KEYSTORE_N_FILES; i++) {
		struct stat st;
		char path[4096];
		memset(&out[i], 0, sizeof(out[i]));
		snprintf(path, sizeof(path), "%s/%s", ks->home != NULL ? ks->home : ".",
			 keystore_keyring_files[i]);
		if (stat(path, &st) < 0)
			continue;
		out[i].exists = true;
		out[i].dev = st.st_dev;
		out[i].ino = st.st_ino;
		out[i].size = st.st_size;
		out[i].mtime = st.st_mtim;
		out[i].ctime = st.st_ctim;
	}
}

/* Drops every cached answer when the keyring or the database changed.
 * Under the lock. */
static void keystore_keys_check_fresh(keystore_keys *ks)
{
	keystore_file_state now[KEYSTORE_N_FILES];
	keystore_keys_snapshot(ks, now);
	/* One PRAGMA, no table read: cheap enough for every lookup, and it
	 * sees `sealpost keys reject` from another process at once. -1 (the
	 * database failed) never matches, so nothing cached is trusted then. */
	int64_t version = -1;
	if (ks->db != NULL) {
		const char *error;
		version = keystore_db_data_version(ks->db, &error);
	}
	if (memcmp(now, ks->files, sizeof(now)) == 0 &&
	    (ks->db == NULL || (version >= 0 && version == ks->db_version)))
		return;
	memcpy(ks->files, now, sizeof(now));
	ks->db_version = version;
	g_hash_table_remove_all(ks->pub);
	g_hash_table_remove_all(ks->own);
	g_hash_table_remove_all(ks->exports);
	ks->stats.invalidations++;
}

static gpgme_ctx_t keystore_keys_new_ctx(const char **error_r)
{
	gpgme_ctx_t ctx;
	gpgme_error_t err = gpgme_new(&ctx);
	if (err != 0) {
		*error_r = "cannot create a GPGME context";
		return NULL;
	}
	gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
	gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_ERROR);
	gpgme_set_armor(ctx, 0);
	return ctx;
}

keystore_keys *keystore_keys_new(const char *gnupg_home, const char **error_r)
{
	keystore_keys *ks = g_new0(keystore_keys, 1);
	pthread_mutex_init(&ks->lock, NULL);
	ks->home = g_strdup(gnupg_home);
	if (ks->home == NULL) {
		const char *env = g_getenv("GNUPGHOME");
		ks->home = env != NULL ? g_strdup(env)
			: g_build_filename(g_get_home_dir(), ".gnupg", NULL);
	}
	ks->ctx = keystore_keys_new_ctx(error_r);
	if (ks->ctx == NULL) {
		keystore_keys_free(&ks);
		return NULL;
	}
	ks->pub = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, keystore_cache_entry_free);
	ks->own = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, keystore_cache_entry_free);
	ks->exports = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, keystore_export_entry_free);
	keystore_keys_snapshot(ks, ks->files);
	return ks;
}

void keystore_keys_use_db(keystore_keys *ks, keystore_db *db)
{
	pthread_mutex_lock(&ks->lock);
	ks->db = db;
	ks->db_version = -1;
	pthread_mutex_unlock(&ks->lock);
}

void keystore_keys_free(keystore_keys **ksp)
{
	keystore_keys *ks = *ksp;
	if (ks == NULL)
		return;
	if (ks->pub != NULL)
		g_hash_table_destroy(ks->pub);
	if (ks->own != NULL)
		g_hash_table_destroy(ks->own);
	if (ks->exports != NULL)
		g_hash_table_destroy(ks->exports);
	if (ks->ctx != NULL)
		gpgme_release(ks->ctx);
	keystore_discover_free(&ks->discover);
	pthread_mutex_destroy(&ks->lock);
	g_free(ks->home);
	g_free(ks);
	*ksp = NULL;
}

static bool keystore_subkey_usable(const gpgme_subkey_t sk)
{
	return !sk->revoked && !sk->expired && !sk->disabled && !sk->invalid;
}

const char *keystore_key_unusable(gpgme_key_t key, const char *address, bool own)
{
	if (key->revoked)
		return "revoked";
	if (key->expired)
		return "expired";
	if (key->disabled)
		return "disabled";
	if (key->invalid || key->subkeys == NULL)
		return "invalid";
	bool enc = false;
	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next)
		if (sk->can_encrypt && keystore_subkey_usable(sk))
			enc = true;
	if (!enc)
		return "no usable encryption subkey";
	bool uid_ok = false;
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next)
		if (!uid->revoked && !uid->invalid && uid->email != NULL &&
		    keystore_address_equal(uid->email, address))
			uid_ok = true;
	if (!uid_ok)
		return "no user ID with this address";
	if (own && !key->secret)
		return "no secret key";
	return NULL;
}

/* Asks gpg. Under the lock. */
static void keystore_keys_lookup(keystore_keys *ks, const char *address, bool own,
				 keystore_cache_entry *e)
{
	char pattern[400];
	snprintf(pattern, sizeof(pattern), "<%s>", address);
	ks->stats.gpg_calls++;
	gpgme_set_keylist_mode(ks->ctx, GPGME_KEYLIST_MODE_LOCAL |
			       (own ? GPGME_KEYLIST_MODE_WITH_SECRET : 0));
	gpgme_error_t err = gpgme_op_keylist_start(ks->ctx, pattern, 0);
	if (err != 0) {
		e->result = KEYSTORE_KEY_TEMPFAIL;
		snprintf(e->why, sizeof(e->why), "key listing failed: %s", gpgme_strerror(err));
		return;
	}
	gpgme_key_t best = NULL;
	const char *last_reason = NULL;
	const char *db_error = NULL;
	for (;;) {
		gpgme_key_t key;
		err = gpgme_op_keylist_next(ks->ctx, &key);
		if (err != 0)
			break;
		const char *reason = keystore_key_unusable(key, address, own);
		if (reason == NULL && ks->db != NULL && db_error == NULL) {
			keystore_key_state state;
			bool found;
			if (keystore_key_state_get(ks->db, key->subkeys->fpr, &state, &found,
						   &db_error) < 0)
				reason = "its state is unknown";
			else if (found && state.acceptance == KEYSTORE_ACCEPTANCE_REJECTED)
				reason = "rejected by the user";
		}
		if (reason != NULL) {
			last_reason = reason;
			gpgme_key_unref(key);
			continue;
		}
		if (best == NULL || key->subkeys->timestamp > best->subkeys->timestamp) {
			if (best != NULL)
				gpgme_key_unref(best);
			best = key;
		} else {
			gpgme_key_unref(key);
		}
	}
	if (gpgme_err_code(err) != GPG_ERR_EOF) {
		gpgme_op_keylist_end(ks->ctx);
		if (best != NULL)
			gpgme_key_unref(best);
		e->result = KEYSTORE_KEY_TEMPFAIL;
		snprintf(e->why, sizeof(e->why), "key listing failed: %s", gpgme_strerror(err));
		return;
	}
	if (db_error != NULL) {
		/* Whether the user rejected a key cannot be told: not using it
		 * could send plaintext, using it could trust a rejected key. */
		if (best != NULL)
			gpgme_key_unref(best);
		e->result = KEYSTORE_KEY_TEMPFAIL;
		snprintf(e->why, sizeof(e->why), "key state lookup failed: %s", db_error);
		return;
	}
	if (best != NULL) {
		e->result = KEYSTORE_KEY_FOUND;
		e->key = best;
		return;
	}
	e->result = KEYSTORE_KEY_NONE;
	if (last_reason != NULL)
		snprintf(e->why, sizeof(e->why), "the key found is unusable (%s)", last_reason);
	else
		snprintf(e->why, sizeof(e->why), own ? "no own key" : "no key");
}

int keystore_keys_use_discovery(keystore_keys *ks, const keystore_discover_config *cfg,
				const char **error_r)
{
	if (cfg->methods == 0)
		return 0;
	if (ks->db == NULL) {
		*error_r = "key discovery needs the database";
		return -1;
	}
	keystore_discover *d = keystore_discover_new(cfg, ks->home, ks->db, error_r);
	if (d == NULL)
		return -1;
	pthread_mutex_lock(&ks->lock);
	keystore_discover_free(&ks->discover);
	ks->discover = d;
	pthread_mutex_unlock(&ks->lock);
	return 0;
}

/* keystore_keys_find by the keyring alone. *asked_r: gpg was asked (the
 * answer was not cached). */
static keystore_key_result keystore_keys_find_local(keystore_keys *ks, const char *address,
						    bool own, gpgme_key_t *key_r,
						    char *why, size_t why_size, bool *asked_r)
{
	*key_r = NULL;
	if (strlen(address) > 320 || strpbrk(address, "<>\r\n") != NULL ||
	    strchr(address, '@') == NULL) {
		if (why != NULL)
			snprintf(why, why_size, "not an address");
		return KEYSTORE_KEY_NONE;
	}
	char *k = keystore_address_key(address);
	pthread_mutex_lock(&ks->lock);
	ks->stats.lookups++;
	keystore_keys_check_fresh(ks);
	GHashTable *table = own ? ks->own : ks->pub;
	keystore_cache_entry *e = g_hash_table_lookup(table, k);
	gint64 now = g_get_monotonic_time() / G_USEC_PER_SEC;
	if (e != NULL && now - e->fetched > KEYSTORE_CACHE_SECONDS) {
		g_hash_table_remove(table, k);
		e = NULL;
	}
	if (e != NULL) {
		ks->stats.hits++;
	} else {
		*asked_r = true;
		e = g_new0(keystore_cache_entry, 1);
		e->fetched = now;
		keystore_keys_lookup(ks, address, own, e);
		if (e->result == KEYSTORE_KEY_TEMPFAIL) {
			/* Not cached: the next message asks again. */
			keystore_key_result r = e->result;
			if (why != NULL)
				snprintf(why, why_size, "%s", e->why);
			keystore_cache_entry_free(e);
			pthread_mutex_unlock(&ks->lock);
			g_free(k);
			return r;
		}
		g_hash_table_insert(table, k, e);
		k = NULL;
	}
	keystore_key_result r = e->result;
	if (r == KEYSTORE_KEY_FOUND) {
		gpgme_key_ref(e->key);
		*key_r = e->key;
	} else if (why != NULL) {
		snprintf(why, why_size, "%s", e->why);
	}
	pthread_mutex_unlock(&ks->lock);
	g_free(k);
	return r;
}

int keystore_keys_export_minimal(keystore_keys *ks, gpgme_key_t key,
				 unsigned char **data_r, size_t *len_r,
				 char *why, size_t why_size)
{
	const char *fpr = key->subkeys != NULL ? key->subkeys->fpr : NULL;
	if (fpr == NULL) {
		snprintf(why, why_size, "key without fingerprint");
		return -1;
	}
	pthread_mutex_lock(&ks->lock);
	keystore_keys_check_fresh(ks);
	keystore_export_entry *e = g_hash_table_lookup(ks->exports, fpr);
	if (e == NULL) {
		gpgme_data_t out = NULL;
		gpgme_error_t err = gpgme_data_new(&out);
		if (err == 0) {
			ks->stats.gpg_calls++;
			err = gpgme_op_export(ks->ctx, fpr, GPGME_EXPORT_MODE_MINIMAL, out);
		}
		if (err != 0) {
			pthread_mutex_unlock(&ks->lock);
			snprintf(why, why_size, "key export failed: %s", gpgme_strerror(err));
			if (out != NULL)
				gpgme_data_release(out);
			return -1;
		}
		size_t len;
		char *buf = gpgme_data_release_and_get_mem(out, &len);
		if (buf == NULL || len == 0) {
			pthread_mutex_unlock(&ks->lock);
			gpgme_free(buf);
			snprintf(why, why_size, "key export gave nothing");
			return -1;
		}
		e = g_new0(keystore_export_entry, 1);
		snprintf(e->fpr, sizeof(e->fpr), "%s", fpr);
		e->data = g_memdup2(buf, len);
		e->len = len;
		gpgme_free(buf);
		g_hash_table_insert(ks->exports, e->fpr, e);
	}
	*data_r = g_memdup2(e->data, e->len);
	*len_r = e->len;
	pthread_mutex_unlock(&ks->lock);
	return 0;
}

keystore_key_result keystore_keys_find(keystore_keys *ks, const char *address,
				       bool own, gpgme_key_t *key_r,
				       char *why, size_t why_size)
{
	bool asked = false;
	keystore_key_result r = keystore_keys_find_local(ks, address, own, key_r, why, why_size,
							 &asked);
	/* Discovery runs outside the lock, only when gpg was asked (at most
	 * once per cache period), and never for the user's own keys. */
	if (own || !asked || ks->discover == NULL || r == KEYSTORE_KEY_TEMPFAIL)
		return r;
	keystore_discover_result res;
	if (r == KEYSTORE_KEY_FOUND) {
		/* A found key is looked up again now and then: a changed one
		 * becomes a pending change, the key in use stays. */
		keystore_discover_lookup(ks->discover, address, false, true, &res);
		return r;
	}
	keystore_discover_lookup(ks->discover, address, false, false, &res);
	if (res.fate == KEYSTORE_DISCOVER_IMPORTED || res.fate == KEYSTORE_DISCOVER_KNOWN) {
		/* The keyring changed, which drops the cache anyway; the
		 * answer just cached must go even if the files look the same. */
		char *k = keystore_address_key(address);
		pthread_mutex_lock(&ks->lock);
		g_hash_table_remove(ks->pub, k);
		pthread_mutex_unlock(&ks->lock);
		g_free(k);
		r = keystore_keys_find_local(ks, address, own, key_r, why, why_size, &asked);
		if (r != KEYSTORE_KEY_NONE)
			return r;
	}
	if (why != NULL && res.fate != KEYSTORE_DISCOVER_CACHED) {
		size_t len = strnlen(why, why_size);
		if (len + 1 < why_size)
			snprintf(why + len, why_size - len, "; key discovery: %s", res.why);
	}
	return r;
}

void keystore_keys_get_stats(keystore_keys *ks, keystore_keys_stats *stats_r)
{
	pthread_mutex_lock(&ks->lock);
	*stats_r = ks->stats;
	pthread_mutex_unlock(&ks->lock);
}
