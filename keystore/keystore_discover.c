/* keystore_discover: WKD and keyserver lookups through dirmngr's Assuan socket (so
 * the deadline is ours), cleaning in a scratch keyring, then import or pending. */
#include "keystore_discover.h"

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gpgme.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "keystore_keyring.h"
#include "keystore_keys.h"

struct keystore_discover {
	pthread_mutex_t lock;		/* guards what follows cfg */
	pthread_cond_t done;		/* a lookup ended */
	keystore_discover_config cfg;
	char *home;
	GHashTable *inflight;		/* addresses being looked up now */
	char *socket_path;		/* dirmngr's, asked once */
	keystore_db *db;
	keystore_keyring *kr;
	keystore_discover_rate rate;
	keystore_discover_stats stats;
};

/* ---- the rules ---------------------------------------------------------------------- */

keystore_discover_due keystore_discover_check_cache(const keystore_discovery_row *row,
						    bool have_key, int64_t now,
						    const keystore_discover_config *cfg)
{
	if (row == NULL)
		return have_key ? KEYSTORE_DISCOVER_FRESH : KEYSTORE_DISCOVER_DUE;
	if (row->checked > now)
		return KEYSTORE_DISCOVER_DUE;
	/* With a key to use there is no hurry, whatever the last answer was. */
	int64_t ttl = have_key ? cfg->positive_ttl : cfg->negative_ttl;
	return now - row->checked >= ttl ? KEYSTORE_DISCOVER_DUE : KEYSTORE_DISCOVER_FRESH;
}

bool keystore_discover_rate_take(keystore_discover_rate *r, unsigned per_minute, int64_t now)
{
	if (per_minute == 0)
		return true;
	int64_t minute = now / 60;
	if (minute != r->minute) {
		r->minute = minute;
		r->used = 0;
	}
	if (r->used >= per_minute)
		return false;
	r->used++;
	return true;
}

static int keystore_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int keystore_discover_unescape(const char *arg, size_t len, unsigned char *out,
			       size_t *out_len, size_t max)
{
	size_t n = *out_len;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)arg[i];
		if (c == '%') {
			int hi = i + 2 < len ? keystore_hex(arg[i + 1]) : -1;
			int lo = hi >= 0 ? keystore_hex(arg[i + 2]) : -1;
			if (lo < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		}
		if (n >= max)
			return -1;
		out[n++] = c;
	}
	*out_len = n;
	return 0;
}

bool keystore_discover_address_ok(const char *addr)
{
	size_t len = strlen(addr);
	const char *at = strchr(addr, '@');
	if (len == 0 || len > 320 || at == NULL || at == addr || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)addr; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f || strchr("<>\"'%&|\\;,()[]", *p) != NULL)
			return false;
	}
	return true;
}

static const char *const keystore_discover_fate_names[] = {
	[KEYSTORE_DISCOVER_IMPORTED] = "imported",
	[KEYSTORE_DISCOVER_KNOWN] = "known",
	[KEYSTORE_DISCOVER_PENDING] = "pending",
	[KEYSTORE_DISCOVER_REJECTED] = "rejected",
	[KEYSTORE_DISCOVER_NOT_FOUND] = "not-found",
	[KEYSTORE_DISCOVER_FAILED] = "failed",
	[KEYSTORE_DISCOVER_CACHED] = "cached",
	[KEYSTORE_DISCOVER_RATE_LIMITED] = "rate-limited",
};

const char *keystore_discover_fate_name(keystore_discover_fate f)
{
	return (size_t)f < G_N_ELEMENTS(keystore_discover_fate_names)
		? keystore_discover_fate_names[f] : "?";
}

/* ---- setup --------------------------------------------------------------------------- */

keystore_discover *keystore_discover_new(const keystore_discover_config *cfg,
					 const char *gnupg_home, keystore_db *db,
					 const char **error_r)
{
	keystore_discover *d = g_new0(keystore_discover, 1);
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->done, NULL);
	d->inflight = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	d->cfg = *cfg;
	d->cfg.keyserver = g_strdup(cfg->keyserver);
	d->db = db;
	d->home = g_strdup(gnupg_home);
	if (d->home == NULL) {
		const char *env = g_getenv("GNUPGHOME");
		d->home = env != NULL ? g_strdup(env)
			: g_build_filename(g_get_home_dir(), ".gnupg", NULL);
	}
	d->kr = keystore_keyring_open(d->home, db, error_r);
	if (d->kr == NULL) {
		keystore_discover_free(&d);
		return NULL;
	}
	return d;
}

void keystore_discover_free(keystore_discover **dp)
{
	keystore_discover *d = *dp;
	if (d == NULL)
		return;
	keystore_keyring_close(&d->kr);
	g_free(d->cfg.keyserver);
	g_free(d->home);
	g_free(d->socket_path);
	g_hash_table_destroy(d->inflight);
	pthread_cond_destroy(&d->done);
	pthread_mutex_destroy(&d->lock);
	g_free(d);
	*dp = NULL;
}

void keystore_discover_get_stats(keystore_discover *d, keystore_discover_stats *stats_r)
{
	pthread_mutex_lock(&d->lock);
	*stats_r = d->stats;
	pthread_mutex_unlock(&d->lock);
}

/* ---- dirmngr's replies (pure) ------------------------------------------------------------ */

void keystore_discover_reply_init(keystore_discover_reply *r, size_t data_max)
{
	memset(r, 0, sizeof(*r));
	r->data_max = data_max;
}

void keystore_discover_reply_clear(keystore_discover_reply *r)
{
	g_free(r->data);
	memset(r, 0, sizeof(*r));
}

/* One whole line (without "\n"). 1: the reply ended, 0: more to come. */
static int keystore_discover_reply_line(keystore_discover_reply *r, const char *line, size_t len,
					const char **error_r)
{
	if (len == 2 ? memcmp(line, "OK", 2) == 0 : len > 2 && memcmp(line, "OK ", 3) == 0)
		return 1;
	if (len >= 4 && memcmp(line, "ERR ", 4) == 0) {
		/* "ERR 167772218 No data <Dirmngr>": the code's low 16 bits. */
		unsigned long v = 0;
		size_t i = 4;
		for (; i < len && g_ascii_isdigit(line[i]) && v < 0xffffffffUL; i++)
			v = v * 10 + (unsigned long)(line[i] - '0');
		while (i < len && line[i] == ' ')
			i++;
		r->err = true;
		r->code = (unsigned)(v & 0xffff);
		size_t n = MIN(len - i, sizeof(r->text) - 1);
		memcpy(r->text, line + i, n);
		r->text[n] = '\0';
		for (size_t k = 0; k < n; k++)
			if ((unsigned char)r->text[k] < 0x20 || r->text[k] == 0x7f)
				r->text[k] = '?';
		return 1;
	}
	if (len >= 2 && memcmp(line, "D ", 2) == 0) {
		/* Decoding never makes data longer: room for all of it, capped. */
		size_t want = MIN(r->data_len + len - 2, r->data_max);
		if (want > r->data_cap) {
			r->data_cap = MAX(want, MIN(r->data_cap * 2, r->data_max));
			r->data = g_realloc(r->data, r->data_cap);
		}
		if (keystore_discover_unescape(line + 2, len - 2, r->data, &r->data_len,
					       r->data_max) < 0) {
			*error_r = "malformed or too much data";
			return -1;
		}
		return 0;
	}
	if (len >= 7 && memcmp(line, "INQUIRE", 7) == 0) {
		/* Nothing asked here needs more from us. */
		*error_r = "an unexpected inquiry";
		return -1;
	}
	/* S (status), # (comment) and anything else: nothing to do. */
	return 0;
}

int keystore_discover_reply_feed(keystore_discover_reply *r, const char *buf, size_t len,
				 size_t *used_r, const char **error_r)
{
	*used_r = 0;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n') {
			if (r->have == sizeof(r->line)) {
				*error_r = "an overlong line";
				return -1;
			}
			r->line[r->have++] = buf[i];
			continue;
		}
		int ret = keystore_discover_reply_line(r, r->line, r->have, error_r);
		r->have = 0;
		if (ret != 0) {
			*used_r = i + 1;
			return ret;
		}
	}
	*used_r = len;
	return 0;
}

/* ---- dirmngr -------------------------------------------------------------------------- */

static gint64 keystore_now_ms(void)
{
	return g_get_monotonic_time() / 1000;
}

/* Runs gpgconf with args; its first stdout line (g_free) or NULL. Quick
 * local commands: no deadline of their own. */
static char *keystore_gpgconf(const char *home, const char *a1, const char *a2)
{
	const char *argv[] = { "gpgconf", "--homedir", home, a1, a2, NULL };
	char *out = NULL;
	gint status = 0;
	if (!g_spawn_sync(NULL, (char **)argv, NULL,
			  G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
			  &out, NULL, &status, NULL))
		return NULL;
	if (!g_spawn_check_wait_status(status, NULL)) {
		g_free(out);
		return NULL;
	}
	char *nl = strchr(out, '\n');
	if (nl != NULL)
		*nl = '\0';
	return out;
}

typedef struct {
	int fd;
	gint64 deadline;	/* monotonic ms */
	char buf[4096];		/* read, not yet fed */
	size_t have;
	bool broken;		/* a reply was cut off: the connection is unusable */
} keystore_dm;

static int keystore_dm_wait(keystore_dm *c, short events, const char **error_r)
{
	gint64 left = c->deadline - keystore_now_ms();
	if (left <= 0) {
		*error_r = "timed out";
		return -1;
	}
	struct pollfd pfd = { .fd = c->fd, .events = events };
	int r = poll(&pfd, 1, (int)MIN(left, 60000));
	if (r < 0 && errno == EINTR)
		return 0;
	if (r == 0) {
		*error_r = "timed out";
		return -1;
	}
	return r < 0 ? (*error_r = "poll failed", -1) : 0;
}

static int keystore_dm_connect(keystore_dm *c, const char *path, const char **error_r)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*error_r = "dirmngr's socket path is too long";
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		*error_r = "cannot create a socket";
		return -1;
	}
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return 0;
	if (errno == EINPROGRESS || errno == EAGAIN) {
		if (keystore_dm_wait(c, POLLOUT, error_r) < 0) {
			close(c->fd);
			c->fd = -1;
			return -1;
		}
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
			return 0;
	}
	*error_r = "cannot connect to dirmngr";
	close(c->fd);
	c->fd = -1;
	return -1;
}

static int keystore_dm_send(keystore_dm *c, const char *line, const char **error_r)
{
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = send(c->fd, line + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (keystore_dm_wait(c, POLLOUT, error_r) < 0)
				return -1;
			continue;
		}
		*error_r = "dirmngr closed the connection";
		return -1;
	}
	return 0;
}

/* Reads one whole reply into r; what follows it stays in c->buf. */
static int keystore_dm_reply(keystore_dm *c, keystore_discover_reply *r, const char **error_r)
{
	for (;;) {
		size_t used;
		int ret = keystore_discover_reply_feed(r, c->buf, c->have, &used, error_r);
		memmove(c->buf, c->buf + used, c->have - used);
		c->have -= used;
		if (ret != 0)
			return ret < 0 ? -1 : 0;
		ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n > 0) {
			c->have = (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (keystore_dm_wait(c, POLLIN, error_r) < 0)
				return -1;
			continue;
		}
		*error_r = "dirmngr closed the connection";
		return -1;
	}
}

typedef enum {
	KEYSTORE_DM_OK = 0,
	KEYSTORE_DM_ERR,	/* dirmngr answered ERR: *code_r, text in err */
	KEYSTORE_DM_FAIL,	/* talking to dirmngr failed: *error_r */
} keystore_dm_answer;

/* Sends cmd (with "\n") and reads its reply; data lines go to data (may
 * be NULL: none expected). */
static keystore_dm_answer keystore_dm_command(keystore_dm *c, const char *cmd, GByteArray *data,
					      unsigned *code_r, char *err, size_t err_size,
					      const char **error_r)
{
	if (keystore_dm_send(c, cmd, error_r) < 0) {
		c->broken = true;
		return KEYSTORE_DM_FAIL;
	}
	keystore_discover_reply r;
	keystore_discover_reply_init(&r, data != NULL ? KEYSTORE_IMPORT_MAX : 0);
	keystore_dm_answer a = KEYSTORE_DM_OK;
	const char *why = NULL;
	if (keystore_dm_reply(c, &r, &why) < 0) {
		/* A static string, or the reply's own (gone once cleared). */
		*error_r = why;
		c->broken = true;
		a = KEYSTORE_DM_FAIL;
	} else if (r.err) {
		*code_r = r.code;
		snprintf(err, err_size, "%s", r.text);
		a = KEYSTORE_DM_ERR;
	} else if (data != NULL) {
		g_byte_array_append(data, r.data, (guint)r.data_len);
	}
	keystore_discover_reply_clear(&r);
	return a;
}

/* dirmngr's socket path (asked once); under d->lock. */
static const char *keystore_dm_socket(keystore_discover *d, const char **error_r)
{
	if (d->socket_path == NULL) {
		d->socket_path = keystore_gpgconf(d->home, "--list-dirs", "dirmngr-socket");
		if (d->socket_path == NULL || d->socket_path[0] == '\0') {
			g_free(d->socket_path);
			d->socket_path = NULL;
			*error_r = "gpgconf does not name dirmngr's socket";
			return NULL;
		}
	}
	return d->socket_path;
}

/* Connects to dirmngr, starting it when it does not run yet, and reads
 * its greeting. */
static int keystore_dm_open(keystore_discover *d, const char *socket_path, keystore_dm *c,
			    const char **error_r)
{
	c->fd = -1;
	c->have = 0;
	c->broken = false;
	if (keystore_dm_connect(c, socket_path, error_r) < 0) {
		char *out = keystore_gpgconf(d->home, "--launch", "dirmngr");
		if (out == NULL) {
			*error_r = "cannot start dirmngr (gpgconf --launch dirmngr failed)";
			return -1;
		}
		g_free(out);
		if (keystore_dm_connect(c, socket_path, error_r) < 0)
			return -1;
	}
	keystore_discover_reply r;
	keystore_discover_reply_init(&r, 0);
	int ret = keystore_dm_reply(c, &r, error_r);
	if (ret == 0 && r.err) {
		*error_r = "dirmngr refused the connection";
		ret = -1;
	}
	keystore_discover_reply_clear(&r);
	if (ret < 0) {
		close(c->fd);
		c->fd = -1;
	}
	return ret;
}

/* Whether dirmngr's error says "there is no key" rather than "it failed". */
static bool keystore_dm_not_found(unsigned code)
{
	return code == GPG_ERR_NO_DATA || code == GPG_ERR_NOT_FOUND || code == GPG_ERR_NO_NAME ||
		code == GPG_ERR_NO_PUBKEY;
}

typedef enum {
	KEYSTORE_FETCH_FOUND = 0,
	KEYSTORE_FETCH_NONE,
	KEYSTORE_FETCH_ERROR,
} keystore_fetch;

/* One method's key data for address into data. why gets the reason for
 * NONE and ERROR. */
static keystore_fetch keystore_discover_fetch(keystore_discover *d, keystore_dm *c,
					      unsigned method, const char *address,
					      GByteArray *data, char *why, size_t why_size)
{
	const char *error = NULL;
	char err[200] = "";
	unsigned code = 0;
	char *cmd;
	keystore_dm_answer a;
	if (method == KEYSTORE_DISCOVER_KEYSERVER) {
		if (d->cfg.keyserver != NULL) {
			cmd = g_strdup_printf("KEYSERVER --clear %s\n", d->cfg.keyserver);
			a = keystore_dm_command(c, cmd, NULL, &code, err, sizeof(err), &error);
			g_free(cmd);
			if (a != KEYSTORE_DM_OK) {
				snprintf(why, why_size, "keyserver %s: %s", d->cfg.keyserver,
					 a == KEYSTORE_DM_ERR ? err : error);
				return KEYSTORE_FETCH_ERROR;
			}
		}
		/* The exact-match form: the server's search for the address,
		 * not a substring of any user ID. */
		cmd = g_strdup_printf("KS_GET -- <%s>\n", address);
	} else {
		cmd = g_strdup_printf("WKD_GET -- %s\n", address);
	}
	g_byte_array_set_size(data, 0);
	a = keystore_dm_command(c, cmd, data, &code, err, sizeof(err), &error);
	g_free(cmd);
	const char *what = method == KEYSTORE_DISCOVER_KEYSERVER ? "keyserver" : "WKD";
	if (a == KEYSTORE_DM_OK && data->len > 0)
		return KEYSTORE_FETCH_FOUND;
	if (a == KEYSTORE_DM_OK || (a == KEYSTORE_DM_ERR && keystore_dm_not_found(code))) {
		snprintf(why, why_size, "%s: no key", what);
		return KEYSTORE_FETCH_NONE;
	}
	snprintf(why, why_size, "%s: %s", what, a == KEYSTORE_DM_ERR ? err : error);
	return KEYSTORE_FETCH_ERROR;
}

/* ---- cleaning and import ------------------------------------------------------------- */

static void keystore_rm_tree(const char *path)
{
	GDir *dir = g_dir_open(path, 0, NULL);
	if (dir != NULL) {
		const char *name;
		while ((name = g_dir_read_name(dir)) != NULL) {
			char *p = g_build_filename(path, name, NULL);
			if (g_file_test(p, G_FILE_TEST_IS_DIR) &&
			    !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
				keystore_rm_tree(p);
			else
				(void)g_unlink(p);
			g_free(p);
		}
		g_dir_close(dir);
	}
	(void)g_rmdir(path);
}

/* The key of data for address with only its user IDs for address, binary
 * (g_byte_array_unref), or NULL with why. *fpr_r and *uid_addr_r (the
 * address as the key writes it, size 321) describe it. Done in a scratch
 * keyring that is removed again. */
static GByteArray *keystore_discover_clean(const GByteArray *data, const char *address,
					   char *fpr_r, char *uid_addr_r, char *why,
					   size_t why_size)
{
	GError *gerr = NULL;
	char *scratch = g_dir_make_tmp("sealpost-discover-XXXXXX", &gerr);
	if (scratch == NULL) {
		snprintf(why, why_size, "cannot make a scratch keyring: %s", gerr->message);
		g_error_free(gerr);
		return NULL;
	}
	char *conf = g_build_filename(scratch, "gpg.conf", NULL);
	g_file_set_contents(conf, "no-random-seed-file\n", -1, NULL);
	g_free(conf);
	GByteArray *out = NULL;
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t in = NULL, exp = NULL;
	char *lower = g_ascii_strdown(address, -1);
	char *filter = g_strdup_printf("keep-uid=mbox = %s", lower);
	gpgme_error_t err = gpgme_new(&ctx);
	if (err == 0) {
		gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
		gpgme_set_armor(ctx, 0);
		err = gpgme_ctx_set_engine_info(ctx, GPGME_PROTOCOL_OpenPGP, NULL, scratch);
	}
	if (err == 0)
		err = gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_ERROR);
	if (err == 0)
		err = gpgme_set_ctx_flag(ctx, "import-filter", filter);
	if (err == 0)
		err = gpgme_data_new_from_mem(&in, (const char *)data->data, data->len, 0);
	if (err == 0)
		err = gpgme_op_import(ctx, in);
	if (err != 0) {
		snprintf(why, why_size, "the key data cannot be read: %s", gpgme_strerror(err));
		goto out;
	}
	/* Of what is left, the newest key usable for address. */
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL);
	err = gpgme_op_keylist_start(ctx, NULL, 0);
	gpgme_key_t best = NULL;
	const char *reason = "no key with a user ID for this address";
	while (err == 0) {
		gpgme_key_t key;
		err = gpgme_op_keylist_next(ctx, &key);
		if (err != 0)
			break;
		const char *r = keystore_key_unusable(key, address, false);
		if (r != NULL || key->subkeys == NULL) {
			reason = r != NULL ? r : "invalid";
			gpgme_key_unref(key);
		} else if (best == NULL || key->subkeys->timestamp > best->subkeys->timestamp) {
			if (best != NULL)
				gpgme_key_unref(best);
			best = key;
		} else {
			gpgme_key_unref(key);
		}
	}
	if (best == NULL) {
		snprintf(why, why_size, "the key found is unusable (%s)", reason);
		goto out;
	}
	snprintf(fpr_r, 65, "%s", best->subkeys->fpr);
	uid_addr_r[0] = '\0';
	for (gpgme_user_id_t uid = best->uids; uid != NULL; uid = uid->next)
		if (uid_addr_r[0] == '\0' && !uid->revoked && !uid->invalid &&
		    uid->email != NULL && keystore_address_equal(uid->email, address))
			snprintf(uid_addr_r, 321, "%s", uid->email);
	gpgme_key_unref(best);
	err = gpgme_data_new(&exp);
	if (err == 0)
		err = gpgme_op_export(ctx, fpr_r, 0, exp);
	if (err != 0) {
		snprintf(why, why_size, "cannot export the cleaned key: %s", gpgme_strerror(err));
		goto out;
	}
	size_t len = 0;
	char *buf = gpgme_data_release_and_get_mem(exp, &len);
	exp = NULL;
	if (buf == NULL || len == 0) {
		snprintf(why, why_size, "the cleaned key is empty");
		gpgme_free(buf);
		goto out;
	}
	out = g_byte_array_sized_new((guint)len);
	g_byte_array_append(out, (const guint8 *)buf, (guint)len);
	gpgme_free(buf);
out:
	if (exp != NULL)
		gpgme_data_release(exp);
	if (in != NULL)
		gpgme_data_release(in);
	if (ctx != NULL)
		gpgme_release(ctx);
	/* Secret key data (which nobody should publish, but a server may
	 * send) starts an agent there. */
	g_free(keystore_gpgconf(scratch, "--kill", "all"));
	keystore_rm_tree(scratch);
	g_free(scratch);
	g_free(filter);
	g_free(lower);
	return out;
}

/* The key found goes into the keyring, or to the pending changes. */
static void keystore_discover_take(keystore_discover *d, const char *address,
				   const GByteArray *clean, const char *fpr, const char *uid_addr,
				   keystore_key_source method, keystore_discover_result *res)
{
	const char *error = NULL;
	snprintf(res->fingerprint, sizeof(res->fingerprint), "%s", fpr);
	res->method = method;
	keystore_key_state state;
	bool found = false;
	if (keystore_key_state_get(d->db, fpr, &state, &found, &error) < 0) {
		res->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res->why, sizeof(res->why), "key state lookup failed: %s", error);
		return;
	}
	if (found && state.acceptance == KEYSTORE_ACCEPTANCE_REJECTED) {
		res->fate = KEYSTORE_DISCOVER_REJECTED;
		snprintf(res->why, sizeof(res->why), "key %s was rejected before", fpr);
		return;
	}
	keystore_keyring_key *keys = NULL;
	size_t n = 0;
	if (keystore_keyring_list(d->kr, address, &keys, &n, &error) < 0) {
		res->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res->why, sizeof(res->why), "listing the keyring failed: %s", error);
		return;
	}
	const char *old = NULL;
	bool known = false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(keys[i].fingerprint, fpr) == 0) {
			known = true;
			continue;
		}
		/* A key the user may rely on: never replaced silently. An
		 * expired or revoked key nobody verified is simply superseded. */
		if (keys[i].acceptance != KEYSTORE_ACCEPTANCE_REJECTED &&
		    (keys[i].unusable == NULL ||
		     keys[i].acceptance == KEYSTORE_ACCEPTANCE_VERIFIED) && old == NULL)
			old = keys[i].fingerprint;
	}
	if (old != NULL && !known) {
		keystore_pending_key p = {
			.account = (char *)"",
			.addr = (char *)address,
			.keydata = clean->data,
			.keydata_len = clean->len,
			.source = method,
		};
		snprintf(p.old_fingerprint, sizeof(p.old_fingerprint), "%s", old);
		snprintf(p.new_fingerprint, sizeof(p.new_fingerprint), "%s", fpr);
		if (keystore_pending_add(d->db, &p, &res->pending_id, &error) < 0) {
			res->fate = KEYSTORE_DISCOVER_FAILED;
			snprintf(res->why, sizeof(res->why), "recording the pending key failed: %s",
				 error);
		} else {
			res->fate = KEYSTORE_DISCOVER_PENDING;
			snprintf(res->why, sizeof(res->why), "key %s differs from the known key %s: "
				 "pending change %" G_GINT64_FORMAT, fpr, old, res->pending_id);
		}
		keystore_keyring_keys_free(&keys, n);
		return;
	}
	keystore_keyring_keys_free(&keys, n);
	const keystore_import_options opt = { .address = uid_addr, .source = method };
	if (keystore_keyring_import(d->kr, clean->data, clean->len, &opt, &keys, &n, &error) < 0) {
		res->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res->why, sizeof(res->why), "import failed: %s", error);
		return;
	}
	keystore_keyring_keys_free(&keys, n);
	res->fate = known ? KEYSTORE_DISCOVER_KNOWN : KEYSTORE_DISCOVER_IMPORTED;
	snprintf(res->why, sizeof(res->why), "%s key %s by %s", known ? "known" : "imported", fpr,
		 keystore_key_source_name(method));
}

/* ---- a lookup -------------------------------------------------------------------------- */

/* Not under d->lock: lookups of different addresses run side by side.
 * Asks dirmngr by each method until one finds a key. */
static void keystore_discover_ask(keystore_discover *d, const char *socket_path,
				  const char *address, keystore_discover_result *res)
{
	keystore_dm c;
	const char *error = NULL;
	c.deadline = keystore_now_ms() + (gint64)MAX(d->cfg.timeout, 1u) * 1000;
	if (keystore_dm_open(d, socket_path, &c, &error) < 0) {
		res->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res->why, sizeof(res->why), "dirmngr: %s", error);
		return;
	}
	GByteArray *data = g_byte_array_new();
	char why[200] = "", first_why[200] = "";
	bool any_error = false;
	res->fate = KEYSTORE_DISCOVER_NOT_FOUND;
	static const unsigned order[] = { KEYSTORE_DISCOVER_WKD, KEYSTORE_DISCOVER_KEYSERVER };
	for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
		if ((d->cfg.methods & order[i]) == 0)
			continue;
		keystore_fetch f = keystore_discover_fetch(d, &c, order[i], address, data, why,
							   sizeof(why));
		keystore_key_source method = order[i] == KEYSTORE_DISCOVER_KEYSERVER
			? KEYSTORE_SOURCE_KEYSERVER : KEYSTORE_SOURCE_WKD;
		if (f == KEYSTORE_FETCH_FOUND) {
			char fpr[65] = "", uid_addr[321] = "";
			GByteArray *clean = keystore_discover_clean(data, address, fpr, uid_addr,
								    why, sizeof(why));
			if (clean != NULL) {
				keystore_discover_take(d, address, clean, fpr, uid_addr, method, res);
				g_byte_array_unref(clean);
				break;
			}
			/* Unusable data counts as no key here; another method may do better. */
			snprintf(why + strlen(why), sizeof(why) - strlen(why), " (%s)",
				 keystore_key_source_name(method));
		}
		if (f == KEYSTORE_FETCH_ERROR)
			any_error = true;
		if (first_why[0] == '\0')
			snprintf(first_why, sizeof(first_why), "%s", why);
		else
			snprintf(first_why + strlen(first_why), sizeof(first_why) - strlen(first_why),
				 "; %s", why);
		if (c.broken || keystore_now_ms() >= c.deadline)
			break;
	}
	if (res->fate == KEYSTORE_DISCOVER_NOT_FOUND) {
		if (any_error)
			res->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res->why, sizeof(res->why), "%s", first_why[0] != '\0' ? first_why
			 : "no discovery method configured");
	}
	g_byte_array_unref(data);
	/* Without BYE; closing is enough, and dirmngr goes on with whatever
	 * it was still doing for us on its own time. */
	close(c.fd);
}

void keystore_discover_lookup(keystore_discover *d, const char *address, bool force,
			      bool have_key, keystore_discover_result *res_r)
{
	memset(res_r, 0, sizeof(*res_r));
	res_r->method = KEYSTORE_SOURCE_WKD;
	if (!keystore_discover_address_ok(address)) {
		res_r->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res_r->why, sizeof(res_r->why), "not an address discovery can ask for");
		return;
	}
	/* The cache's key: the domain in lower case, as keystore_keys's. */
	char *addr = g_strdup(address);
	for (char *p = strrchr(addr, '@'); p != NULL && *p != '\0'; p++)
		*p = g_ascii_tolower(*p);
	const char *error = NULL;
	pthread_mutex_lock(&d->lock);
	/* The same address asked by several sessions at once: one lookup,
	 * the others take its cached answer. */
	while (g_hash_table_contains(d->inflight, addr))
		pthread_cond_wait(&d->done, &d->lock);
	int64_t now = (int64_t)time(NULL);
	keystore_discovery_row row;
	bool have_row = false;
	if (keystore_discovery_get(d->db, addr, &row, &have_row, &error) < 0) {
		res_r->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res_r->why, sizeof(res_r->why), "discovery cache: %s", error);
		goto out;
	}
	if (!force && keystore_discover_check_cache(have_row ? &row : NULL, have_key, now,
						    &d->cfg) == KEYSTORE_DISCOVER_FRESH) {
		d->stats.cached++;
		res_r->fate = KEYSTORE_DISCOVER_CACHED;
		if (have_row) {
			res_r->method = row.method;
			snprintf(res_r->fingerprint, sizeof(res_r->fingerprint), "%s",
				 row.fingerprint);
		}
		snprintf(res_r->why, sizeof(res_r->why), "looked up %s ago: %s%s%s",
			 have_row ? (now - row.checked < 120 ? "moments" : "a while") : "never",
			 have_row ? keystore_discovery_result_name(row.result) : "not due",
			 have_row && row.detail[0] != '\0' ? ", " : "",
			 have_row ? row.detail : "");
		goto out;
	}
	if (!keystore_discover_rate_take(&d->rate, force ? 0 : d->cfg.rate, now)) {
		/* Not cached: the next message may ask again. */
		d->stats.rate_limited++;
		res_r->fate = KEYSTORE_DISCOVER_RATE_LIMITED;
		snprintf(res_r->why, sizeof(res_r->why), "more than %u lookups this minute",
			 d->cfg.rate);
		goto out;
	}
	d->stats.lookups++;
	const char *socket_path = keystore_dm_socket(d, &error);
	if (socket_path == NULL) {
		res_r->fate = KEYSTORE_DISCOVER_FAILED;
		snprintf(res_r->why, sizeof(res_r->why), "dirmngr: %s", error);
	} else {
		g_hash_table_add(d->inflight, g_strdup(addr));
		pthread_mutex_unlock(&d->lock);
		keystore_discover_ask(d, socket_path, addr, res_r);
		pthread_mutex_lock(&d->lock);
		g_hash_table_remove(d->inflight, addr);
		pthread_cond_broadcast(&d->done);
	}
	if (res_r->fate == KEYSTORE_DISCOVER_FAILED)
		d->stats.failed++;
	keystore_discovery_row put = { .checked = (int64_t)time(NULL), .method = res_r->method };
	switch (res_r->fate) {
	case KEYSTORE_DISCOVER_IMPORTED:
	case KEYSTORE_DISCOVER_KNOWN:
	case KEYSTORE_DISCOVER_PENDING:
	case KEYSTORE_DISCOVER_REJECTED:
		put.result = KEYSTORE_DISCOVERY_FOUND;
		snprintf(put.fingerprint, sizeof(put.fingerprint), "%s", res_r->fingerprint);
		break;
	case KEYSTORE_DISCOVER_NOT_FOUND:
		put.result = KEYSTORE_DISCOVERY_NONE;
		break;
	default:
		put.result = KEYSTORE_DISCOVERY_ERROR;
		break;
	}
	snprintf(put.detail, sizeof(put.detail), "%s: %s", keystore_discover_fate_name(res_r->fate),
		 res_r->why);
	if (keystore_discovery_put(d->db, addr, &put, &error) < 0)
		snprintf(res_r->why + strlen(res_r->why), sizeof(res_r->why) - strlen(res_r->why),
			 " (not cached: %s)", error);
out:
	pthread_mutex_unlock(&d->lock);
	g_free(addr);
}
