/* pop3_maildrop: a table of the session's messages filled lazily: a message
 * is looked up in the view cache, else probed with TOP, and only one that
 * may be encrypted is downloaded and rendered (in parallel, on the shared
 * view pool). What was learnt stays for the session, so LIST, STAT, RETR
 * and TOP always agree. */
#include "pop3_maildrop.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "imap_decrypt.h"
#include "imap_view_pool.h"
#include "keystore_db.h"
#include "log.h"
#include "pop3_parser.h"
#include "pop3_upstream.h"
#include "inline_pgp.h"
#include "view_pin.h"

/* A UIDL is at most 70 characters (RFC 1939); longer ones get no key. */
#define POP3_MAILDROP_UIDL_MAX 256
/* A probe larger than this (a huge header) is not read further: the
 * message is simply downloaded. */
#define POP3_MAILDROP_PROBE_MAX (256 * 1024)
/* Messages downloaded before they are rendered together, and their bytes. */
#define POP3_MAILDROP_BATCH 32
#define POP3_MAILDROP_BATCH_BYTES (64u * 1024 * 1024)
/* A message may come out larger than LIST said (a line end more or less);
 * beyond this much more it is not held for decryption, so a provider that
 * understates sizes cannot make a batch hold more than its bound. */
#define POP3_MAILDROP_SIZE_SLACK (1024u * 1024)
/* How much of a probed text/plain body tells whether it is inline PGP
 * (the probe's first lines may end before). */
#define POP3_MAILDROP_TEXT_PREFIX 480
/* Commands sent before reading replies when the provider pipelines. */
#define POP3_MAILDROP_PIPELINE 32

#define POP3_MAILDROP_KEY_PREFIX "\0POP3\0"
#define POP3_MAILDROP_KEY_PREFIX_LEN 6

typedef struct {
	uint64_t upstream_size;		/* the provider's LIST size */
	char *uidl;			/* NULL: none (no UIDL, or unusable) */
	bool listed;			/* LIST named it */
	bool deleted;
	bool settled;
	bool view;			/* served from a view */
	uint64_t size;			/* what the client sees, once settled */
	/* A view that is not cached (transient: no key, locked key), held so
	 * that RETR shows what LIST counted. */
	GBytes *held;
} pop3_maildrop_msg;

struct pop3_maildrop {
	const session_env *env;
	conn *upstream;
	bool has_top;
	bool pipelining;
	uint64_t max_message;
	pop3_maildrop_msg *msgs;
	uint32_t count;
};

/* ---- probing ------------------------------------------------------------------ */

/* The value of the first header field name (unfolded, g_free), NULL when
 * absent; *count_r how many times it occurs. */
static char *pop3_maildrop_field(const uint8_t *hdr, size_t len, const char *name,
				 unsigned *count_r)
{
	size_t nlen = strlen(name);
	GString *value = NULL;
	bool in_field = false;
	size_t pos = 0;
	*count_r = 0;
	while (pos < len) {
		const uint8_t *nl = memchr(hdr + pos, '\n', len - pos);
		size_t next = nl != NULL ? (size_t)(nl - hdr) + 1 : len;
		size_t llen = next - pos;
		while (llen > 0 && (hdr[pos + llen - 1] == '\n' || hdr[pos + llen - 1] == '\r'))
			llen--;
		if (llen == 0)
			break;
		if (hdr[pos] == ' ' || hdr[pos] == '\t') {
			if (in_field && value != NULL && *count_r == 1)
				g_string_append_len(value, (const char *)hdr + pos, (gssize)llen);
		} else {
			/* "Name:" with blanks allowed before the colon, as parsers
			 * of MIME accept it. */
			size_t colon = nlen;
			while (colon < llen && (hdr[pos + colon] == ' ' || hdr[pos + colon] == '\t'))
				colon++;
			in_field = colon < llen && hdr[pos + colon] == ':' &&
				g_ascii_strncasecmp((const char *)hdr + pos, name, nlen) == 0;
			if (in_field) {
				(*count_r)++;
				if (*count_r == 1)
					value = g_string_new_len((const char *)hdr + pos + colon + 1,
								 (gssize)(llen - colon - 1));
			}
		}
		pos = next;
	}
	return value != NULL ? g_string_free(value, FALSE) : NULL;
}

/* The first word of a field value, lower case (g_free). */
static char *pop3_maildrop_token(const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	size_t n = strcspn(v, "; \t(");
	return g_ascii_strdown(v, (gssize)n);
}

/* The fields a view adds: a plain message carrying one is served with its
 * X-Sealpost-* fields removed (as over IMAP), so it is downloaded. */
static bool pop3_maildrop_has_status_field(const uint8_t *hdr, size_t len)
{
	static const char *const fields[] = {
		"X-Sealpost-Decryption", "X-Sealpost-Signature", "X-Sealpost-From-Mismatch",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
		unsigned n;
		char *v = pop3_maildrop_field(hdr, len, fields[i], &n);
		g_free(v);
		if (n > 0)
			return true;
	}
	return false;
}

static inline_pgp_encoding pop3_maildrop_encoding(const char *cte)
{
	if (cte != NULL && strcmp(cte, "base64") == 0)
		return INLINE_PGP_BASE64;
	if (cte != NULL && strcmp(cte, "quoted-printable") == 0)
		return INLINE_PGP_QUOTED_PRINTABLE;
	return INLINE_PGP_IDENTITY;
}

bool pop3_maildrop_probe_candidate(const uint8_t *probe, size_t len)
{
	size_t hlen = pop3_parser_top_length(probe, len, 0);
	if (pop3_maildrop_has_status_field(probe, hlen))
		return true;	/* forged X-Sealpost-* fields to remove */
	unsigned n_ct, n_cte;
	char *ct = pop3_maildrop_field(probe, hlen, "Content-Type", &n_ct);
	char *cte = pop3_maildrop_field(probe, hlen, "Content-Transfer-Encoding", &n_cte);
	bool candidate = true;
	if (n_ct <= 1 && n_cte <= 1) {
		char *type = pop3_maildrop_token(ct != NULL ? ct : "text/plain");
		char *enc = cte != NULL ? pop3_maildrop_token(cte) : NULL;
		if (type[0] == '\0' || strchr(type, '/') == NULL)
			candidate = true;
		else if (strcmp(type, "multipart/encrypted") == 0)
			candidate = true;
		else if (strcmp(type, "text/plain") == 0)
			candidate = inline_pgp_may_start(probe + hlen, len - hlen,
							 pop3_maildrop_encoding(enc),
							 POP3_MAILDROP_TEXT_PREFIX, true);
		else
			candidate = false;
		g_free(type);
		g_free(enc);
	}
	g_free(ct);
	g_free(cte);
	return candidate;
}

/* ---- the table -------------------------------------------------------------------- */

void pop3_maildrop_key(const char *account, const char *uidl, uint8_t *mailbox,
		       imap_view_key *key_r)
{
	size_t ulen = strlen(uidl);
	memcpy(mailbox, POP3_MAILDROP_KEY_PREFIX, POP3_MAILDROP_KEY_PREFIX_LEN);
	memcpy(mailbox + POP3_MAILDROP_KEY_PREFIX_LEN, uidl, ulen);
	key_r->account = account;
	key_r->mailbox = mailbox;
	key_r->mailbox_len = POP3_MAILDROP_KEY_PREFIX_LEN + ulen;
	key_r->uidvalidity = 1;
	key_r->uid = 1;
}

static int pop3_maildrop_lost(pop3_maildrop *md, const char *what, const char *error,
			      char *reason, size_t reason_size)
{
	snprintf(reason, reason_size, "%s: %s", what, error);
	log_warn(md->env->id, "provider", "%s", reason);
	return -1;
}

/* Reads "n word" lines of a LIST or UIDL body; calls fn for each. */
static int pop3_maildrop_read_list(pop3_maildrop *md, const char *command, bool uidl,
				   char *reason, size_t reason_size)
{
	const char *error;
	pop3_response resp;
	if (conn_printf(md->upstream, "%s\r\n", command) < 0 || conn_flush(md->upstream) < 0)
		return pop3_maildrop_lost(md, command, conn_last_error(md->upstream), reason,
					  reason_size);
	if (pop3_upstream_read_status(md->upstream, &resp, &error) < 0)
		return pop3_maildrop_lost(md, command, error, reason, reason_size);
	if (resp.status != POP3_RESP_OK) {
		if (uidl)
			return 0;	/* no UIDL: no keys */
		snprintf(reason, reason_size, "the provider refused LIST");
		return 1;
	}
	GByteArray *body = g_byte_array_new();
	bool too_big;
	/* About 30 bytes a message: a million messages fit. */
	if (pop3_upstream_read_body(md->upstream, body, 64u * 1024 * 1024, &too_big, &error) < 0) {
		g_byte_array_unref(body);
		return pop3_maildrop_lost(md, command, error, reason, reason_size);
	}
	int ret = 0;
	if (too_big) {
		snprintf(reason, reason_size, "the provider's %s is too long", command);
		ret = 1;
	}
	size_t pos = 0;
	while (ret == 0 && pos < body->len) {
		const uint8_t *line = body->data + pos;
		const uint8_t *nl = memchr(line, '\n', body->len - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) + 1 : body->len - pos;
		pos += len;
		pop3_command words;	/* "n value" splits like a command's arguments */
		const char *perror;
		uint64_t n;
		uint8_t fake[POP3_MAILDROP_UIDL_MAX + 32];
		if (len + 2 > sizeof(fake))
			continue;
		memcpy(fake, "X ", 2);
		memcpy(fake + 2, line, len);
		if (pop3_parser_command(fake, len + 2, &words, &perror) < 0 || words.n_args != 2 ||
		    pop3_parser_number(words.args[0], words.arg_len[0], 1000000000, &n) < 0 ||
		    n == 0)
			continue;
		if (n > md->count) {
			if (uidl)
				continue;
			md->msgs = g_renew(pop3_maildrop_msg, md->msgs, n);
			memset(md->msgs + md->count, 0, (n - md->count) * sizeof(pop3_maildrop_msg));
			md->count = (uint32_t)n;
		}
		pop3_maildrop_msg *m = &md->msgs[n - 1];
		if (uidl) {
			g_free(m->uidl);
			m->uidl = g_strndup((const char *)words.args[1], words.arg_len[1]);
		} else {
			uint64_t size;
			if (pop3_parser_number(words.args[1], words.arg_len[1], UINT64_MAX / 4,
					       &size) < 0)
				continue;
			m->upstream_size = size;
			m->listed = true;
		}
	}
	g_byte_array_unref(body);
	return ret;
}

int pop3_maildrop_load(const session_env *env, conn *upstream, const char *caps,
		       pop3_maildrop **md_r, char *reason, size_t reason_size)
{
	pop3_maildrop *md = g_new0(pop3_maildrop, 1);
	md->env = env;
	md->upstream = upstream;
	md->has_top = pop3_parser_capa_has(caps, "TOP");
	md->pipelining = pop3_parser_capa_has(caps, "PIPELINING");
	md->max_message = env->cfg->limits.max_literal;
	int ret = pop3_maildrop_read_list(md, "LIST", false, reason, reason_size);
	if (ret == 0)
		ret = pop3_maildrop_read_list(md, "UIDL", true, reason, reason_size);
	for (uint32_t i = 0; i < md->count && ret == 0; i++) {
		/* A message LIST did not name is gone already. */
		if (!md->msgs[i].listed)
			md->msgs[i].deleted = true;
	}
	if (ret != 0) {
		pop3_maildrop_free(&md);
		return ret;
	}
	log_debug(env->id, "maildrop", "%u messages", md->count);
	*md_r = md;
	return 0;
}

void pop3_maildrop_free(pop3_maildrop **mdp)
{
	pop3_maildrop *md = *mdp;
	if (md == NULL)
		return;
	for (uint32_t i = 0; i < md->count; i++) {
		g_free(md->msgs[i].uidl);
		if (md->msgs[i].held != NULL)
			g_bytes_unref(md->msgs[i].held);
	}
	g_free(md->msgs);
	g_free(md);
	*mdp = NULL;
}

uint32_t pop3_maildrop_count(const pop3_maildrop *md)
{
	return md->count;
}

bool pop3_maildrop_exists(const pop3_maildrop *md, uint64_t n)
{
	return n >= 1 && n <= md->count && !md->msgs[n - 1].deleted;
}

void pop3_maildrop_set_deleted(pop3_maildrop *md, uint32_t n)
{
	if (n >= 1 && n <= md->count)
		md->msgs[n - 1].deleted = true;
}

void pop3_maildrop_undelete_all(pop3_maildrop *md)
{
	for (uint32_t i = 0; i < md->count; i++) {
		if (md->msgs[i].listed)
			md->msgs[i].deleted = false;
	}
}

uint64_t pop3_maildrop_size(const pop3_maildrop *md, uint32_t n)
{
	const pop3_maildrop_msg *m = &md->msgs[n - 1];
	return m->settled ? m->size : m->upstream_size;
}

static bool pop3_maildrop_has_key(const pop3_maildrop_msg *m)
{
	return m->uidl != NULL && strlen(m->uidl) <= POP3_MAILDROP_UIDL_MAX;
}

/* Settles m from the cache; true when it knew the message. view_r (may be
 * NULL) gets the view. */
static bool pop3_maildrop_from_cache(pop3_maildrop *md, pop3_maildrop_msg *m, GBytes **view_r)
{
	if (!pop3_maildrop_has_key(m))
		return false;
	uint8_t mailbox[POP3_MAILDROP_KEY_PREFIX_LEN + POP3_MAILDROP_UIDL_MAX];
	imap_view_key key;
	pop3_maildrop_key(md->env->account->name, m->uidl, mailbox, &key);
	GBytes *view;
	if (!imap_view_cache_get(md->env->view_cache, &key, &view))
		return false;
	if (m->settled && m->view != (view != NULL)) {
		/* Settled otherwise in this session: the session's answer stands. */
		if (view != NULL)
			g_bytes_unref(view);
		return false;
	}
	if (!m->settled) {
		m->settled = true;
		m->view = view != NULL;
		if (view != NULL) {
			gsize len;
			const uint8_t *data = g_bytes_get_data(view, &len);
			m->size = pop3_parser_octets(data, len);
		} else {
			m->size = m->upstream_size;
		}
	}
	if (view_r != NULL)
		*view_r = view;
	else if (view != NULL)
		g_bytes_unref(view);
	return true;
}

static void pop3_maildrop_cache_put(pop3_maildrop *md, pop3_maildrop_msg *m, GBytes *view)
{
	if (!pop3_maildrop_has_key(m))
		return;
	uint8_t mailbox[POP3_MAILDROP_KEY_PREFIX_LEN + POP3_MAILDROP_UIDL_MAX];
	imap_view_key key;
	pop3_maildrop_key(md->env->account->name, m->uidl, mailbox, &key);
	imap_view_cache_put(md->env->view_cache, &key, view);
}

/* Sends one command per message of nums (pipelined when the provider can)
 * and reads each multi-line answer into bodies[i] (NULL when the provider
 * answered -ERR), at most max bytes of each; by_size: also at most the LIST
 * size and POP3_MAILDROP_SIZE_SLACK. */
static int pop3_maildrop_fetch(pop3_maildrop *md, const char *fmt, const uint32_t *nums,
			       size_t n, uint64_t max, bool by_size, GByteArray **bodies,
			       bool *too_big, char *reason, size_t reason_size)
{
	size_t step = md->pipelining ? POP3_MAILDROP_PIPELINE : 1;
	for (size_t start = 0; start < n; start += step) {
		size_t end = start + step < n ? start + step : n;
		for (size_t i = start; i < end; i++) {
			if (conn_printf(md->upstream, fmt, nums[i]) < 0)
				return pop3_maildrop_lost(md, "sending to the provider",
							  conn_last_error(md->upstream), reason,
							  reason_size);
		}
		if (conn_flush(md->upstream) < 0)
			return pop3_maildrop_lost(md, "sending to the provider",
						  conn_last_error(md->upstream), reason, reason_size);
		for (size_t i = start; i < end; i++) {
			pop3_response resp;
			const char *error;
			bodies[i] = NULL;
			too_big[i] = false;
			if (pop3_upstream_read_status(md->upstream, &resp, &error) < 0)
				return pop3_maildrop_lost(md, "reading the provider's reply", error,
							  reason, reason_size);
			if (resp.status != POP3_RESP_OK)
				continue;
			uint64_t cap = max;
			uint64_t listed = md->msgs[nums[i] - 1].upstream_size;
			if (by_size && listed + POP3_MAILDROP_SIZE_SLACK < cap)
				cap = listed + POP3_MAILDROP_SIZE_SLACK;
			bodies[i] = g_byte_array_new();
			if (pop3_upstream_read_body(md->upstream, bodies[i], cap, &too_big[i],
						    &error) < 0)
				return pop3_maildrop_lost(md, "reading a message from the provider",
							  error, reason, reason_size);
		}
	}
	return 0;
}

/* One line for a status reason the client may see. */
static void pop3_maildrop_one_line(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
	}
}

/* Renders one downloaded message with the pin protocol of the IMAP side:
 * the first signature status shown is pinned and shown ever after. 0 with
 * *view_r (NULL: plain) and *cache_r, 1 with reason. */
static int pop3_maildrop_render_one(pop3_maildrop *md, pop3_maildrop_msg *m, imap_view_job *job,
				    char **pin, GBytes **view_r, bool *cache_r, char *reason,
				    size_t reason_size)
{
	const char *account = md->env->account->name;
	uint8_t mailbox[POP3_MAILDROP_KEY_PREFIX_LEN + POP3_MAILDROP_UIDL_MAX];
	imap_view_key key;
	bool keyed = pop3_maildrop_has_key(m);
	if (keyed)
		pop3_maildrop_key(account, m->uidl, mailbox, &key);
	*view_r = NULL;
	*cache_r = true;
	for (int round = 0;; round++) {
		if (view_pin_drop_invalid(job, pin, round)) {
			log_warn(md->env->id, "decrypting",
				 "UIDL %s: the pinned signature status is not valid, verifying anew",
				 m->uidl != NULL ? m->uidl : "-");
			imap_view_pool_render(md->env->view_pool, job, 1);
			continue;
		}
		if (job->result == CRYPTO_VIEW_TEMPFAIL || job->result == CRYPTO_VIEW_INVALID) {
			snprintf(reason, reason_size, "%s",
				 job->status.reason != NULL ? job->status.reason : "temporary failure");
			pop3_maildrop_one_line(reason);
			log_warn(md->env->id, "decrypting", "%s", reason);
			return 1;
		}
		if (job->result == CRYPTO_VIEW_UNCHANGED) {
			gsize blen;
			const uint8_t *body = g_bytes_get_data(job->msg, &blen);
			GByteArray *stripped = imap_decrypt_strip_status_fields(body, blen);
			if (stripped != NULL) {
				*view_r = g_byte_array_free_to_bytes(stripped);
				log_info(md->env->id, "decrypting",
					 "X-Sealpost-* fields from the provider removed");
			}
			return 0;
		}
		if (keyed) {
			int pinned = view_pin_put_first(md->env, &key, job, pin, round, reason,
							reason_size);
			if (pinned < 0) {
				pop3_maildrop_one_line(reason);
				return 1;
			}
			if (pinned > 0) {
				imap_view_pool_render(md->env->view_pool, job, 1);
				continue;
			}
		}
		*view_r = g_byte_array_free_to_bytes(job->view);
		job->view = NULL;
		*cache_r = !job->status.transient;
		log_debug(md->env->id, "decrypting", "UIDL %s: %s%s%s",
			  m->uidl != NULL ? m->uidl : "-",
			  job->status.decrypted ? "decrypted, signature " : "not decrypted: ",
			  job->status.decrypted ? (job->status.signature != NULL ?
						   job->status.signature : "none") :
			  (job->status.reason != NULL ? job->status.reason : "?"),
			  job->status.transient ? " (not cached)" : "");
		return 0;
	}
}

/* Downloads and renders messages nums; settles each. want (may be NULL)
 * gets the view of nums[0]. */
static int pop3_maildrop_render(pop3_maildrop *md, const uint32_t *nums, size_t n,
				GBytes **want, char *reason, size_t reason_size)
{
	GByteArray **bodies = g_new0(GByteArray *, n);
	bool *too_big = g_new0(bool, n);
	imap_view_job *jobs = g_new0(imap_view_job, n);
	char **pins = g_new0(char *, n);
	int ret = pop3_maildrop_fetch(md, "RETR %u\r\n", nums, n, md->max_message, true, bodies,
				      too_big, reason, reason_size);
	for (size_t i = 0; i < n && ret == 0; i++) {
		pop3_maildrop_msg *m = &md->msgs[nums[i] - 1];
		if (bodies[i] == NULL) {
			snprintf(reason, reason_size, "the provider would not give message %u",
				 nums[i]);
			ret = 1;
			break;
		}
		if (pop3_maildrop_has_key(m)) {
			uint8_t mailbox[POP3_MAILDROP_KEY_PREFIX_LEN + POP3_MAILDROP_UIDL_MAX];
			imap_view_key key;
			pop3_maildrop_key(md->env->account->name, m->uidl, mailbox, &key);
			if (view_pin_get(md->env, &key, &pins[i], reason, reason_size) < 0) {
				pop3_maildrop_one_line(reason);
				ret = 1;
				break;
			}
		}
		jobs[i].msg = g_byte_array_free_to_bytes(bodies[i]);
		bodies[i] = NULL;
		jobs[i].pinned_signature = pins[i];
		jobs[i].policy = md->env->account->decrypt && !too_big[i] ?
			CRYPTO_DECRYPT_ROOT : CRYPTO_DECRYPT_NEVER;
		if (too_big[i]) {
			/* Beyond the limit: served as the provider has it. */
			log_warn(md->env->id, "decrypting",
				 "message %u is larger than max_literal_size (or than LIST said), not decrypted",
				 nums[i]);
			g_bytes_unref(jobs[i].msg);
			jobs[i].msg = NULL;
		}
	}
	if (ret == 0) {
		/* Render what was downloaded, all at once. */
		size_t k = 0;
		imap_view_job *work = g_new0(imap_view_job, n);
		size_t *where = g_new0(size_t, n);
		for (size_t i = 0; i < n; i++) {
			if (jobs[i].msg != NULL) {
				work[k] = jobs[i];
				where[k++] = i;
			}
		}
		imap_view_pool_render(md->env->view_pool, work, k);
		for (size_t j = 0; j < k; j++)
			jobs[where[j]] = work[j];
		g_free(work);
		g_free(where);
	}
	for (size_t i = 0; i < n && ret == 0; i++) {
		pop3_maildrop_msg *m = &md->msgs[nums[i] - 1];
		GBytes *view = NULL;
		bool cache = true;
		if (jobs[i].msg != NULL &&
		    pop3_maildrop_render_one(md, m, &jobs[i], &pins[i], &view, &cache, reason,
					     reason_size) != 0) {
			ret = 1;
			break;
		}
		if (!m->settled) {
			m->settled = true;
			m->view = view != NULL;
			if (view != NULL) {
				gsize len;
				const uint8_t *data = g_bytes_get_data(view, &len);
				m->size = pop3_parser_octets(data, len);
			} else {
				m->size = m->upstream_size;
			}
		}
		if (cache && !too_big[i])
			pop3_maildrop_cache_put(md, m, view);
		if (!cache && view != NULL && m->held == NULL)
			m->held = g_bytes_ref(view);
		if (want != NULL && i == 0 && view != NULL)
			*want = m->held != NULL ? g_bytes_ref(m->held) : g_bytes_ref(view);
		if (view != NULL)
			g_bytes_unref(view);
	}
	for (size_t i = 0; i < n; i++) {
		if (bodies[i] != NULL)
			g_byte_array_unref(bodies[i]);
		if (jobs[i].msg != NULL)
			g_bytes_unref(jobs[i].msg);
		imap_view_job_clear(&jobs[i]);
		g_free(pins[i]);
	}
	g_free(bodies);
	g_free(too_big);
	g_free(jobs);
	g_free(pins);
	return ret;
}

int pop3_maildrop_settle(pop3_maildrop *md, uint32_t first, uint32_t last,
			 char *reason, size_t reason_size)
{
	uint32_t *todo = g_new(uint32_t, (size_t)(last >= first ? last - first + 1 : 1));
	size_t n_todo = 0;
	for (uint32_t n = first < 1 ? 1 : first; n <= last && n <= md->count; n++) {
		pop3_maildrop_msg *m = &md->msgs[n - 1];
		if (!md->env->account->decrypt && !m->settled) {
			/* decrypt = false: every message as the provider has it. */
			m->settled = true;
			m->size = m->upstream_size;
		}
		if (m->deleted || m->settled || pop3_maildrop_from_cache(md, m, NULL))
			continue;
		todo[n_todo++] = n;
	}
	int ret = 0;
	/* Probe with TOP: only messages that may be encrypted are downloaded. */
	uint32_t *candidates = g_new(uint32_t, n_todo + 1);
	size_t n_cand = 0;
	if (md->has_top) {
		char fmt[32];
		snprintf(fmt, sizeof(fmt), "TOP %%u %u\r\n", POP3_MAILDROP_PROBE_LINES);
		for (size_t start = 0; start < n_todo && ret == 0; start += POP3_MAILDROP_BATCH) {
			size_t k = n_todo - start < POP3_MAILDROP_BATCH ? n_todo - start :
				POP3_MAILDROP_BATCH;
			GByteArray *probes[POP3_MAILDROP_BATCH];
			bool too_big[POP3_MAILDROP_BATCH];
			memset(probes, 0, sizeof(probes));
			ret = pop3_maildrop_fetch(md, fmt, todo + start, k, POP3_MAILDROP_PROBE_MAX,
						  false, probes, too_big, reason, reason_size);
			for (size_t i = 0; i < k; i++) {
				uint32_t n = todo[start + i];
				if (ret == 0) {
					if (probes[i] == NULL || too_big[i] ||
					    pop3_maildrop_probe_candidate(probes[i]->data,
									  probes[i]->len)) {
						candidates[n_cand++] = n;
					} else {
						pop3_maildrop_msg *m = &md->msgs[n - 1];
						m->settled = true;
						m->size = m->upstream_size;
						pop3_maildrop_cache_put(md, m, NULL);
					}
				}
				if (probes[i] != NULL)
					g_byte_array_unref(probes[i]);
			}
		}
	} else {
		memcpy(candidates, todo, n_todo * sizeof(uint32_t));
		n_cand = n_todo;
	}
	/* Download and render in batches bounded in count and bytes. */
	size_t start = 0;
	while (ret == 0 && start < n_cand) {
		size_t k = 0;
		uint64_t bytes = 0;
		while (start + k < n_cand && k < POP3_MAILDROP_BATCH &&
		       (k == 0 || bytes + md->msgs[candidates[start + k] - 1].upstream_size <=
			POP3_MAILDROP_BATCH_BYTES)) {
			bytes += md->msgs[candidates[start + k] - 1].upstream_size;
			k++;
		}
		ret = pop3_maildrop_render(md, candidates + start, k, NULL, reason, reason_size);
		start += k;
	}
	g_free(candidates);
	g_free(todo);
	return ret;
}

int pop3_maildrop_view(pop3_maildrop *md, uint32_t n, GBytes **view_r,
		       char *reason, size_t reason_size)
{
	*view_r = NULL;
	pop3_maildrop_msg *m = &md->msgs[n - 1];
	if (!m->settled) {
		int ret = pop3_maildrop_settle(md, n, n, reason, reason_size);
		if (ret != 0)
			return ret;
	}
	if (!m->view)
		return 0;
	if (m->held != NULL) {
		*view_r = g_bytes_ref(m->held);
		return 0;
	}
	if (pop3_maildrop_from_cache(md, m, view_r) && *view_r != NULL)
		return 0;
	/* Evicted since (or no cache): rendered again, to the same bytes. */
	uint32_t one = n;
	int ret = pop3_maildrop_render(md, &one, 1, view_r, reason, reason_size);
	if (ret == 0 && *view_r == NULL) {
		snprintf(reason, reason_size, "the view of message %u could not be rendered again",
			 n);
		ret = 1;
	}
	return ret;
}
