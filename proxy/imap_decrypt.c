/* imap_decrypt: one client FETCH of content, answered in steps with the
 * provider: a probe (UID, size, structure) tells which messages may be
 * encrypted; those are downloaded with BODY.PEEK[], rendered in parallel,
 * and answered from their views; all others are fetched as the client
 * asked and streamed through untouched. */
#include "imap_decrypt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "imap_fetch.h"
#include "keystore_autocrypt.h"
#include "keystore_db.h"
#include "log.h"
#include "view.h"
#include "inline_pgp.h"
#include "view_pin.h"

/* Provider lines may be long (BODYSTRUCTURE of a big multipart). */
#define IMAP_DECRYPT_PROVIDER_MAX_LINE ((size_t)8 * 1024 * 1024)
/* Messages downloaded and rendered together: enough to keep every worker
 * busy, few enough to bound memory. */
#define IMAP_DECRYPT_BATCH_MESSAGES 64
#define IMAP_DECRYPT_BATCH_BYTES ((uint64_t)32 * 1024 * 1024)
/* How much of a single-part text/plain body tells whether it is inline PGP. */
#define IMAP_DECRYPT_TEXT_PREFIX 256
/* Longest sequence set sealpost writes in one command of its own. */
#define IMAP_DECRYPT_MAX_SET 4000

/* The X-Sealpost-* fields a client shows; a plain message carrying one is
 * served with its X-Sealpost-* fields removed. */
#define IMAP_DECRYPT_STATUS_FIELDS \
	"X-SEALPOST-DECRYPTION X-SEALPOST-SIGNATURE X-SEALPOST-FROM-MISMATCH"
/* What Autocrypt needs of a plain message, fetched with the probe. */
#define IMAP_DECRYPT_AUTOCRYPT_FIELDS \
	"FROM DATE AUTOCRYPT AUTO-SUBMITTED CONTENT-TYPE X-SPAM-FLAG"

/* ---- the client's command ---------------------------------------------------- */

typedef struct {
	const uint8_t *tag;
	size_t tag_len;
	bool uid;
	const uint8_t *set;
	size_t set_len;
	const uint8_t *items;		/* the item list as written */
	size_t items_len;
	const uint8_t *mods;		/* "(CHANGEDSINCE 12)" or empty */
	size_t mods_len;
	imap_fetch_atts atts;
	bool content;			/* an item is answered from content */
	bool sets_seen;
	bool changedsince;
} imap_decrypt_cmd;

static size_t imap_decrypt_line_end(const uint8_t *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

static int imap_decrypt_parse_cmd(const uint8_t *line, size_t len, const imap_command *cmd,
				  imap_decrypt_cmd *c, const char **error_r)
{
	memset(c, 0, sizeof(*c));
	size_t end = imap_decrypt_line_end(line, len);
	c->tag = cmd->tag;
	c->tag_len = cmd->tag_len;
	c->uid = strcmp(cmd->name, "UID FETCH") == 0;
	size_t pos = cmd->args_pos;
	while (pos < end && line[pos] == ' ')
		pos++;
	size_t start = pos;
	while (pos < end && line[pos] != ' ')
		pos++;
	if (pos == start || pos >= end) {
		*error_r = "Missing FETCH arguments";
		return -1;
	}
	c->set = line + start;
	c->set_len = pos - start;
	for (size_t i = 0; i < c->set_len; i++) {
		if (strchr("0123456789:,*$", c->set[i]) == NULL) {
			*error_r = "Invalid sequence set";
			return -1;
		}
	}
	pos++;
	imap_tokenizer t;
	imap_tokenizer_init(&t, line + pos, end - pos, 16);
	imap_token tok;
	const char *terr;
	if (imap_tokenizer_next(&t, &tok, &terr) < 0) {
		*error_r = terr;
		return -1;
	}
	if (tok.type == IMAP_TOKEN_LIST_OPEN) {
		while (t.depth > 0) {
			if (imap_tokenizer_next(&t, &tok, &terr) < 0) {
				*error_r = terr;
				return -1;
			}
			if (tok.type == IMAP_TOKEN_EOL) {
				*error_r = "Unterminated item list";
				return -1;
			}
		}
	} else if (tok.type != IMAP_TOKEN_ATOM) {
		*error_r = "Invalid FETCH items";
		return -1;
	}
	c->items = line + pos;
	c->items_len = t.pos;
	size_t m = pos + t.pos;
	while (m < end && line[m] == ' ')
		m++;
	c->mods = line + m;
	c->mods_len = end - m;
	if (imap_fetch_atts_parse(line + pos, end - pos, &c->atts, error_r) < 0)
		return -1;
	for (size_t i = 0; i < c->atts.n_atts; i++) {
		if (imap_fetch_att_from_content(&c->atts.atts[i]))
			c->content = true;
		if (imap_fetch_att_sets_seen(&c->atts.atts[i]))
			c->sets_seen = true;
	}
	for (size_t i = 0; i + 12 <= c->mods_len; i++) {
		if (strncasecmp((const char *)c->mods + i, "CHANGEDSINCE", 12) == 0)
			c->changedsince = true;
	}
	return 0;
}

imap_decrypt_check imap_decrypt_check_command(const session_env *env,
					      const imap_decrypt_mailbox *mailbox,
					      const uint8_t *line, size_t len,
					      const imap_command *cmd, const char **error_r)
{
	if (!env->account->decrypt || env->view_pool == NULL || !mailbox->selected)
		return IMAP_DECRYPT_PASS;
	if (strcmp(cmd->name, "FETCH") != 0 && strcmp(cmd->name, "UID FETCH") != 0)
		return IMAP_DECRYPT_PASS;
	imap_decrypt_cmd c;
	if (imap_decrypt_parse_cmd(line, len, cmd, &c, error_r) < 0) {
		imap_fetch_atts_clear(&c.atts);
		return IMAP_DECRYPT_BAD;
	}
	bool content = c.content;
	imap_fetch_atts_clear(&c.atts);
	return content ? IMAP_DECRYPT_TAKE : IMAP_DECRYPT_PASS;
}

int imap_decrypt_mailbox_name(const uint8_t *line, size_t len, const imap_command *cmd,
			      imap_decrypt_mailbox *mailbox)
{
	imap_tokenizer t;
	size_t end = imap_decrypt_line_end(line, len);
	if (cmd->args_pos > end)
		return -1;
	imap_tokenizer_init(&t, line + cmd->args_pos, end - cmd->args_pos, 8);
	const char *error;
	if (imap_tokenizer_astring(&t, mailbox->name, sizeof(mailbox->name),
				   &mailbox->name_len, &error) < 0)
		return -1;
	if (mailbox->name_len == 5 && strncasecmp((const char *)mailbox->name, "INBOX", 5) == 0)
		memcpy(mailbox->name, "INBOX", 5);
	return 0;
}

/* ---- X-Sealpost-* fields from the provider ----------------------------------- */

GByteArray *imap_decrypt_strip_status_fields(const uint8_t *msg, size_t len)
{
	static const char prefix[] = "X-Sealpost-";
	const size_t plen = sizeof(prefix) - 1;
	GByteArray *out = NULL;
	size_t pos = 0, kept = 0;
	bool dropping = false;
	while (pos < len) {
		const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
		size_t next = nl != NULL ? (size_t)(nl - msg) + 1 : len;
		size_t llen = next - pos;
		bool blank = llen == 1 || (llen == 2 && msg[pos] == '\r');
		if (blank)
			break;
		bool cont = msg[pos] == ' ' || msg[pos] == '\t';
		if (!cont)
			dropping = llen >= plen && strncasecmp((const char *)msg + pos, prefix, plen) == 0;
		if (dropping) {
			if (out == NULL)
				out = g_byte_array_sized_new((guint)len);
			g_byte_array_append(out, msg + kept, (guint)(pos - kept));
			kept = next;
		}
		pos = next;
	}
	if (out == NULL)
		return NULL;
	g_byte_array_append(out, msg + kept, (guint)(len - kept));
	return out;
}

/* ---- talking to the provider ------------------------------------------------- */

typedef struct {
	size_t name, name_len;		/* offsets into the response */
	size_t raw, raw_len;		/* the value as on the wire */
	const uint8_t *data;		/* string value (quoted unescaped, literal, atom) */
	size_t data_len;
	uint8_t *owned;			/* unescaped quoted data */
} imap_decrypt_item;

/* One message of the command. */
typedef struct {
	uint32_t seq, uid;
	uint64_t size;
	bool candidate;		/* may be encrypted, or carries X-Sealpost-* fields */
	GBytes *body;		/* the provider's message (downloaded) */
	GBytes *view;		/* what the client is shown (NULL: plain) */
	bool plain;		/* decided: streamed from the provider */
	/* The provider's answer to the metadata fetch. */
	GByteArray *meta;
	GArray *meta_items;	/* imap_decrypt_item */
	uint32_t meta_seq;
	/* Autocrypt: the probe's header fields (plain messages), what a
	 * decrypted view says, or nothing to do (a view from the cache was
	 * read when it was rendered). */
	GBytes *ac_header;
	bool ac_junk;
	bool ac_skip;
	struct imap_decrypt_ac *ac;
} imap_decrypt_msg;

typedef struct {
	const session_env *env;
	const imap_decrypt_mailbox *mb;
	conn *client;
	conn *upstream;
	imap_framer framer;
	uint64_t max_response;
	GByteArray *resp;
	GByteArray *stash;	/* untagged responses not ours, for the client */
	bool saw_expunge;
	unsigned tag_seq;
	char tag[24];
	char *error;
	size_t error_size;
	imap_decrypt_cmd cmd;
	GArray *msgs;		/* imap_decrypt_msg */
	GHashTable *by_uid;	/* uid -> index + 1 into msgs */
	/* The provider's final answer to the last command. */
	imap_status status;
	char status_text[512];
} imap_decrypt;

static int imap_decrypt_fail(imap_decrypt *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int imap_decrypt_fail(imap_decrypt *d, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(d->error, d->error_size, fmt, args);
	va_end(args);
	return -1;
}

static int imap_decrypt_client_write(imap_decrypt *d, const void *data, size_t len)
{
	if (conn_write(d->client, data, len) < 0)
		return imap_decrypt_fail(d, "writing to the client: %s", conn_last_error(d->client));
	return 0;
}

/* Reads one whole response (literals inline) into d->resp. */
static int imap_decrypt_read_response(imap_decrypt *d)
{
	g_byte_array_set_size(d->resp, 0);
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(d->upstream, &len);
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&d->framer, data, len, &fr, &error);
		if (ret == IMAP_PARSE_ERROR)
			return imap_decrypt_fail(d, "provider protocol error: %s", error);
		if (ret == IMAP_PARSE_MORE) {
			ssize_t n = conn_fill(d->upstream);
			if (n == 0)
				return imap_decrypt_fail(d, "provider closed the connection");
			if (n < 0)
				return imap_decrypt_fail(d, "reading from the provider: %s",
							 conn_last_error(d->upstream));
			continue;
		}
		if (d->resp->len + fr.len > d->max_response)
			return imap_decrypt_fail(d, "provider response larger than %llu bytes",
						 (unsigned long long)d->max_response);
		g_byte_array_append(d->resp, fr.data, (guint)fr.len);
		conn_consume(d->upstream, fr.len);
		if (fr.type == IMAP_FRAME_TEXT && fr.line_end)
			return 0;
	}
}

static void imap_decrypt_items_clear(GArray *items)
{
	for (guint i = 0; i < items->len; i++)
		g_free(g_array_index(items, imap_decrypt_item, i).owned);
	g_array_set_size(items, 0);
}

/* The items of "* N FETCH (...)" in buf from pos. */
static int imap_decrypt_parse_items(const uint8_t *buf, size_t len, size_t pos, GArray *items)
{
	imap_tokenizer t;
	imap_tokenizer_init(&t, buf, len, 1024);
	t.pos = pos;
	imap_token tok;
	const char *error;
	if (imap_tokenizer_next(&t, &tok, &error) < 0 || tok.type != IMAP_TOKEN_LIST_OPEN)
		return -1;
	for (;;) {
		if (imap_tokenizer_next(&t, &tok, &error) < 0)
			return -1;
		if (tok.type == IMAP_TOKEN_LIST_CLOSE)
			return 0;
		if (tok.type != IMAP_TOKEN_ATOM)
			return -1;
		imap_decrypt_item it = { 0 };
		it.name = (size_t)(tok.data - buf);
		it.name_len = tok.len;
		while (t.pos < len && buf[t.pos] == ' ')
			t.pos++;
		it.raw = t.pos;
		if (imap_tokenizer_next(&t, &tok, &error) < 0)
			return -1;
		switch (tok.type) {
		case IMAP_TOKEN_LIST_OPEN: {
			unsigned depth = t.depth - 1;
			while (t.depth > depth) {
				if (imap_tokenizer_next(&t, &tok, &error) < 0 ||
				    tok.type == IMAP_TOKEN_EOL)
					return -1;
			}
			break;
		}
		case IMAP_TOKEN_QUOTED:
			it.owned = g_malloc(tok.len + 1);
			if (imap_quoted_unescape(tok.data, tok.len, it.owned, tok.len + 1,
						 &it.data_len) < 0) {
				g_free(it.owned);
				return -1;
			}
			it.data = it.owned;
			break;
		case IMAP_TOKEN_LITERAL:
			if (tok.data == NULL && tok.literal_size > 0)
				return -1;
			it.data = tok.data != NULL ? tok.data : (const uint8_t *)"";
			it.data_len = tok.len;
			break;
		case IMAP_TOKEN_ATOM:
			it.data = tok.data;
			it.data_len = tok.len;
			break;
		default:
			return -1;
		}
		it.raw_len = t.pos - it.raw;
		g_array_append_val(items, it);
	}
}

static const imap_decrypt_item *imap_decrypt_find(const uint8_t *buf, const GArray *items,
						  const char *name, size_t name_len, bool prefix)
{
	for (guint i = 0; i < items->len; i++) {
		const imap_decrypt_item *it = &g_array_index(items, imap_decrypt_item, i);
		if ((prefix ? it->name_len >= name_len : it->name_len == name_len) &&
		    strncasecmp((const char *)buf + it->name, name, name_len) == 0)
			return it;
	}
	return NULL;
}

static bool imap_decrypt_has_content(const uint8_t *buf, const GArray *items)
{
	static const char *const content[] = { "BODY", "RFC822", "BINARY", "ENVELOPE", "PREVIEW",
					       "SNIPPET" };
	for (guint i = 0; i < items->len; i++) {
		const imap_decrypt_item *it = &g_array_index(items, imap_decrypt_item, i);
		for (size_t j = 0; j < G_N_ELEMENTS(content); j++) {
			size_t n = strlen(content[j]);
			if (it->name_len >= n && strncasecmp((const char *)buf + it->name, content[j], n) == 0)
				return true;
		}
	}
	return false;
}

static bool imap_decrypt_number(const imap_decrypt_item *it, uint64_t *n_r)
{
	if (it == NULL || it->data_len == 0 || it->data_len > 19)
		return false;
	uint64_t n = 0;
	for (size_t i = 0; i < it->data_len; i++) {
		if (it->data[i] < '0' || it->data[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(it->data[i] - '0');
	}
	*n_r = n;
	return true;
}

/* Called for each untagged FETCH of a command of sealpost's own; returns
 * true when it was the answer (false: the client gets it as it is). */
typedef bool imap_decrypt_fetch_fn(imap_decrypt *d, uint32_t seq, const uint8_t *buf,
				   size_t len, GArray *items);

/* Sends "TAG text" and reads until its tagged reply; d->status and
 * d->status_text hold that reply. */
static int imap_decrypt_command(imap_decrypt *d, const char *text, imap_decrypt_fetch_fn *fn)
{
	snprintf(d->tag, sizeof(d->tag), "sp%u", ++d->tag_seq);
	if (conn_printf(d->upstream, "%s %s\r\n", d->tag, text) < 0 ||
	    conn_flush(d->upstream) < 0)
		return imap_decrypt_fail(d, "writing to the provider: %s",
					 conn_last_error(d->upstream));
	GArray *items = g_array_new(FALSE, TRUE, sizeof(imap_decrypt_item));
	int ret = -1;
	for (;;) {
		if (imap_decrypt_read_response(d) < 0)
			break;
		imap_response resp;
		const char *error;
		if (imap_parser_response(d->resp->data, d->resp->len, &resp, &error) < 0) {
			imap_decrypt_fail(d, "provider protocol error: %s", error);
			break;
		}
		if (resp.kind == IMAP_RESP_TAGGED) {
			if (resp.tag_len != strlen(d->tag) || memcmp(resp.tag, d->tag, resp.tag_len) != 0) {
				imap_decrypt_fail(d, "provider protocol error: unexpected tag");
				break;
			}
			d->status = resp.status;
			size_t tlen = d->resp->len - (resp.tag_len + 1);
			tlen = imap_decrypt_line_end(d->resp->data + resp.tag_len + 1, tlen);
			if (tlen >= sizeof(d->status_text))
				tlen = sizeof(d->status_text) - 1;
			memcpy(d->status_text, d->resp->data + resp.tag_len + 1, tlen);
			d->status_text[tlen] = '\0';
			ret = 0;
			break;
		}
		if (resp.kind == IMAP_RESP_CONTINUATION) {
			imap_decrypt_fail(d, "provider protocol error: unexpected continuation");
			break;
		}
		if (resp.status == IMAP_STATUS_BYE) {
			imap_decrypt_client_write(d, d->resp->data, d->resp->len);
			imap_decrypt_fail(d, "provider closed the connection (BYE)");
			break;
		}
		if (strcmp(resp.keyword, "CAPABILITY") == 0 || imap_response_code_is(&resp, "CAPABILITY"))
			continue;	/* never passed on unfiltered */
		bool ours = false;
		if (strcmp(resp.keyword, "FETCH") == 0) {
			/* Content the provider sends during sealpost's own
			 * commands never goes to the client as it is: only
			 * metadata updates (FLAGS, MODSEQ) pass. */
			imap_decrypt_items_clear(items);
			if (imap_decrypt_parse_items(d->resp->data, d->resp->len, resp.args_pos,
						     items) < 0) {
				log_warn(d->env->id, "serving FETCH",
					 "unreadable FETCH response from the provider dropped");
				continue;
			}
			if (fn != NULL && resp.has_number)
				ours = fn(d, resp.number, d->resp->data, d->resp->len, items);
			if (!ours && imap_decrypt_has_content(d->resp->data, items))
				continue;
		}
		if (!ours) {
			if (strcmp(resp.keyword, "EXPUNGE") == 0 || strcmp(resp.keyword, "VANISHED") == 0)
				d->saw_expunge = true;
			if (d->stash->len + d->resp->len > d->max_response) {
				imap_decrypt_fail(d, "too many untagged responses from the provider");
				break;
			}
			g_byte_array_append(d->stash, d->resp->data, d->resp->len);
		}
	}
	imap_decrypt_items_clear(items);
	g_array_free(items, TRUE);
	return ret;
}

/* ---- Autocrypt ---------------------------------------------------------------- */

GPtrArray *imap_decrypt_header_values(const uint8_t *msg, size_t len, const char *name)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	size_t nlen = strlen(name);
	size_t pos = 0;
	GString *cur = NULL;
	while (pos < len) {
		const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
		size_t next = nl != NULL ? (size_t)(nl - msg) + 1 : len;
		size_t llen = next - pos;
		size_t tlen = llen;
		if (tlen > 0 && msg[pos + tlen - 1] == '\n')
			tlen--;
		if (tlen > 0 && msg[pos + tlen - 1] == '\r')
			tlen--;
		if (tlen == 0)
			break;	/* the end of the header */
		bool cont = msg[pos] == ' ' || msg[pos] == '\t';
		if (!cont && cur != NULL) {
			g_ptr_array_add(out, g_strstrip(g_string_free(cur, FALSE)));
			cur = NULL;
		}
		if (cont) {
			if (cur != NULL && cur->len < KEYSTORE_AUTOCRYPT_HEADER_MAX * 2)
				g_string_append_len(cur, (const char *)msg + pos, (gssize)tlen);
		} else if (tlen > nlen && msg[pos + nlen] == ':' &&
			   strncasecmp((const char *)msg + pos, name, nlen) == 0) {
			cur = g_string_new_len((const char *)msg + pos + nlen + 1,
					       (gssize)(tlen - nlen - 1));
		}
		pos = next;
	}
	if (cur != NULL)
		g_ptr_array_add(out, g_strstrip(g_string_free(cur, FALSE)));
	return out;
}

/* What one fetched message says for Autocrypt. */
typedef struct imap_decrypt_ac {
	char *from;
	int64_t date;
	GPtrArray *autocrypt;	/* values, NULL-terminated */
	GPtrArray *gossip;
	GPtrArray *recipients;
	bool encrypted;
} imap_decrypt_ac;

static void imap_decrypt_ac_free(imap_decrypt_ac *ac)
{
	if (ac == NULL)
		return;
	g_free(ac->from);
	g_ptr_array_unref(ac->autocrypt);
	g_ptr_array_unref(ac->gossip);
	g_ptr_array_unref(ac->recipients);
	g_free(ac);
}

static bool imap_decrypt_autocrypt_on(const imap_decrypt *d)
{
	return d->env->keyring != NULL && d->env->account->address != NULL;
}

/* The bare addresses of the mailboxes in values (groups opened). */
static void imap_decrypt_mailboxes(GPtrArray *values, GPtrArray *out, bool *group_r)
{
	for (guint i = 0; i < values->len; i++) {
		InternetAddressList *list = internet_address_list_parse(NULL, values->pdata[i]);
		int n = list != NULL ? internet_address_list_length(list) : 0;
		for (int j = 0; j < n; j++) {
			InternetAddress *ia = internet_address_list_get_address(list, j);
			if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
				const char *a = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
				if (a != NULL && *a != '\0')
					g_ptr_array_add(out, g_strdup(a));
			} else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
				if (group_r != NULL)
					*group_r = true;
				InternetAddressList *members =
					internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
				int m = members != NULL ? internet_address_list_length(members) : 0;
				for (int k = 0; k < m; k++) {
					InternetAddress *mb = internet_address_list_get_address(members, k);
					if (INTERNET_ADDRESS_IS_MAILBOX(mb))
						g_ptr_array_add(out, g_strdup(internet_address_mailbox_get_addr(
							INTERNET_ADDRESS_MAILBOX(mb))));
				}
			}
		}
		if (list != NULL)
			g_object_unref(list);
	}
}

/* The Autocrypt facts of a header block; NULL with *why_r when the spec
 * says the message is not to be looked at. view: a decrypted view, whose
 * gossip and recipients count. */
static imap_decrypt_ac *imap_decrypt_ac_new(const uint8_t *hdr, size_t len, bool view,
					    const char **why_r)
{
	imap_decrypt_ac *ac = NULL;
	GPtrArray *v = imap_decrypt_header_values(hdr, len, "Auto-Submitted");
	bool skip = false;
	for (guint i = 0; i < v->len && !skip; i++)
		skip = g_ascii_strncasecmp(v->pdata[i], "auto-replied", 12) == 0;
	g_ptr_array_unref(v);
	if (skip) {
		*why_r = "Auto-Submitted: auto-replied";
		return NULL;
	}
	v = imap_decrypt_header_values(hdr, len, "X-Spam-Flag");
	for (guint i = 0; i < v->len && !skip; i++)
		skip = g_ascii_strncasecmp(v->pdata[i], "yes", 3) == 0;
	g_ptr_array_unref(v);
	if (skip) {
		*why_r = "marked as spam";
		return NULL;
	}
	v = imap_decrypt_header_values(hdr, len, "Content-Type");
	if (v->len > 0) {
		GMimeContentType *ct = g_mime_content_type_parse(NULL, v->pdata[0]);
		if (ct != NULL) {
			skip = g_mime_content_type_is_type(ct, "multipart", "report");
			g_object_unref(ct);
		}
	}
	g_ptr_array_unref(v);
	if (skip) {
		*why_r = "a multipart/report";
		return NULL;
	}
	v = imap_decrypt_header_values(hdr, len, "From");
	GPtrArray *from = g_ptr_array_new_with_free_func(g_free);
	bool group = false;
	if (v->len == 1)
		imap_decrypt_mailboxes(v, from, &group);
	g_ptr_array_unref(v);
	if (from->len != 1 || group) {
		g_ptr_array_unref(from);
		*why_r = "not one From address";
		return NULL;
	}
	ac = g_new0(imap_decrypt_ac, 1);
	ac->from = g_strdup(from->pdata[0]);
	g_ptr_array_unref(from);
	v = imap_decrypt_header_values(hdr, len, "Date");
	if (v->len > 0) {
		GDateTime *dt = g_mime_utils_header_decode_date(v->pdata[0]);
		if (dt != NULL) {
			ac->date = g_date_time_to_unix(dt);
			g_date_time_unref(dt);
		}
	}
	g_ptr_array_unref(v);
	ac->autocrypt = imap_decrypt_header_values(hdr, len, "Autocrypt");
	/* Gossip of a view comes from inside the encryption (the caller's). */
	ac->gossip = g_ptr_array_new_with_free_func(g_free);
	ac->recipients = g_ptr_array_new_with_free_func(g_free);
	if (view) {
		static const char *const fields[] = { "To", "Cc", "Reply-To" };
		for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
			v = imap_decrypt_header_values(hdr, len, fields[i]);
			imap_decrypt_mailboxes(v, ac->recipients, NULL);
			g_ptr_array_unref(v);
		}
	}
	ac->encrypted = view;
	return ac;
}

/* A message whose view decrypted: its header (the outer fields and the
 * protected ones), and the gossip from the header of the decrypted entity
 * (gossip, from crypto_view_status): only values from inside the
 * encryption count, and they count whether or not the sender declared
 * protected headers. Gossip fields the view shows among its outer ones
 * (the provider's) are never read. */
static void imap_decrypt_autocrypt_view(imap_decrypt *d, imap_decrypt_msg *m,
					char *const *gossip)
{
	gsize vlen;
	const uint8_t *view = g_bytes_get_data(m->view, &vlen);
	const char *why;
	m->ac = imap_decrypt_ac_new(view, vlen, true, &why);
	if (m->ac == NULL) {
		log_debug(d->env->id, "reading Autocrypt", "UID %u: not looked at (%s)", m->uid, why);
		m->ac_skip = true;
		return;
	}
	g_ptr_array_set_size(m->ac->gossip, 0);
	for (size_t i = 0; gossip != NULL && gossip[i] != NULL; i++)
		g_ptr_array_add(m->ac->gossip, g_strdup(gossip[i]));
}

static bool imap_decrypt_mailbox_is_junk(const imap_decrypt_mailbox *mb)
{
	return (mb->name_len == 4 && strncasecmp((const char *)mb->name, "Junk", 4) == 0) ||
		(mb->name_len == 4 && strncasecmp((const char *)mb->name, "Spam", 4) == 0);
}

static void imap_decrypt_autocrypt_one(imap_decrypt *d, imap_decrypt_msg *m)
{
	if (m->ac == NULL) {
		if (m->ac_header == NULL)
			return;
		gsize len;
		const uint8_t *hdr = g_bytes_get_data(m->ac_header, &len);
		const char *why;
		m->ac = imap_decrypt_ac_new(hdr, len, false, &why);
		if (m->ac == NULL) {
			log_debug(d->env->id, "reading Autocrypt", "UID %u: not looked at (%s)",
				  m->uid, why);
			return;
		}
	}
	imap_decrypt_ac *ac = m->ac;
	g_ptr_array_add(ac->autocrypt, NULL);
	g_ptr_array_add(ac->gossip, NULL);
	g_ptr_array_add(ac->recipients, NULL);
	keystore_autocrypt_message msg = {
		.account = d->env->account->address,
		.from = ac->from,
		.date = ac->date,
		.autocrypt = (const char *const *)ac->autocrypt->pdata,
		.gossip = (const char *const *)ac->gossip->pdata,
		.recipients = (const char *const *)ac->recipients->pdata,
		.encrypted = ac->encrypted,
	};
	keystore_autocrypt_result res;
	const char *error;
	if (keystore_autocrypt_process(d->env->db, d->env->keyring, &msg, &res, &error) < 0) {
		log_warn(d->env->id, "updating Autocrypt peer state", "UID %u <%s>: %s", m->uid,
			 ac->from, error);
		return;
	}
	static const char *const fates[] = {
		[KEYSTORE_AUTOCRYPT_KEY_NONE] = "no new key",
		[KEYSTORE_AUTOCRYPT_KEY_IMPORTED] = "key imported",
		[KEYSTORE_AUTOCRYPT_KEY_KNOWN] = "key known",
		[KEYSTORE_AUTOCRYPT_KEY_PENDING] = "key differs from the verified one: pending",
		[KEYSTORE_AUTOCRYPT_KEY_REJECTED] = "key rejected before",
		[KEYSTORE_AUTOCRYPT_KEY_UNUSABLE] = "key not usable",
	};
	if (res.key != KEYSTORE_AUTOCRYPT_KEY_NONE || res.gossip_taken > 0)
		log_info(d->env->id, "updating Autocrypt peer state",
			 "UID %u <%s>: %s%s%s; gossip %u taken, %u imported, %u ignored", m->uid,
			 ac->from, fates[res.key], res.key_why != NULL ? ": " : "",
			 res.key_why != NULL ? res.key_why : "", res.gossip_taken,
			 res.gossip_imported, res.gossip_ignored);
	else
		log_debug(d->env->id, "updating Autocrypt peer state", "UID %u <%s>: %s", m->uid,
			  ac->from, res.header_why != NULL ? res.header_why : "header taken");
}

/* Every message of the command, once the client has its answer. */
static void imap_decrypt_autocrypt_apply(imap_decrypt *d)
{
	if (imap_decrypt_mailbox_is_junk(d->mb))
		return;
	for (guint i = 0; i < d->msgs->len; i++) {
		imap_decrypt_msg *m = &g_array_index(d->msgs, imap_decrypt_msg, i);
		if (m->ac_skip || m->ac_junk)
			continue;
		imap_decrypt_autocrypt_one(d, m);
	}
}

/* ---- step 1: which messages may be encrypted --------------------------------- */

static bool imap_decrypt_str_is(const imap_token *tok, const char *word)
{
	size_t n = strlen(word);
	return (tok->type == IMAP_TOKEN_QUOTED || tok->type == IMAP_TOKEN_ATOM ||
		(tok->type == IMAP_TOKEN_LITERAL && tok->data != NULL)) &&
		tok->len == n && strncasecmp((const char *)tok->data, word, n) == 0;
}

typedef enum {
	IMAP_DECRYPT_STRUCT_OTHER,
	IMAP_DECRYPT_STRUCT_ENCRYPTED,	/* multipart/encrypted root */
	IMAP_DECRYPT_STRUCT_TEXT,	/* single-part text/plain root */
} imap_decrypt_struct;

/* The root of a BODYSTRUCTURE; for text/plain its transfer encoding. */
static imap_decrypt_struct imap_decrypt_root(const uint8_t *raw, size_t len, bool *base64_r,
					     bool *qp_r)
{
	imap_tokenizer t;
	imap_tokenizer_init(&t, raw, len, 1024);
	imap_token tok;
	const char *error;
	*base64_r = *qp_r = false;
	if (imap_tokenizer_next(&t, &tok, &error) < 0 || tok.type != IMAP_TOKEN_LIST_OPEN)
		return IMAP_DECRYPT_STRUCT_OTHER;
	if (imap_tokenizer_next(&t, &tok, &error) < 0)
		return IMAP_DECRYPT_STRUCT_OTHER;
	if (tok.type == IMAP_TOKEN_LIST_OPEN) {
		/* Multipart: skip the parts, the subtype follows. */
		for (;;) {
			while (t.depth > 1) {
				if (imap_tokenizer_next(&t, &tok, &error) < 0 ||
				    tok.type == IMAP_TOKEN_EOL)
					return IMAP_DECRYPT_STRUCT_OTHER;
			}
			if (imap_tokenizer_next(&t, &tok, &error) < 0)
				return IMAP_DECRYPT_STRUCT_OTHER;
			if (tok.type != IMAP_TOKEN_LIST_OPEN)
				break;
		}
		return imap_decrypt_str_is(&tok, "ENCRYPTED") ? IMAP_DECRYPT_STRUCT_ENCRYPTED :
			IMAP_DECRYPT_STRUCT_OTHER;
	}
	if (!imap_decrypt_str_is(&tok, "TEXT"))
		return IMAP_DECRYPT_STRUCT_OTHER;
	if (imap_tokenizer_next(&t, &tok, &error) < 0 || !imap_decrypt_str_is(&tok, "PLAIN"))
		return IMAP_DECRYPT_STRUCT_OTHER;
	/* parameters, id, description, then the encoding */
	for (int field = 0; field < 4; field++) {
		if (imap_tokenizer_next(&t, &tok, &error) < 0 || tok.type == IMAP_TOKEN_EOL)
			return IMAP_DECRYPT_STRUCT_TEXT;
		if (tok.type == IMAP_TOKEN_LIST_OPEN) {
			while (t.depth > 1) {
				if (imap_tokenizer_next(&t, &tok, &error) < 0 ||
				    tok.type == IMAP_TOKEN_EOL)
					return IMAP_DECRYPT_STRUCT_TEXT;
			}
		}
	}
	*base64_r = imap_decrypt_str_is(&tok, "BASE64");
	*qp_r = imap_decrypt_str_is(&tok, "QUOTED-PRINTABLE");
	return IMAP_DECRYPT_STRUCT_TEXT;
}

/* A FLAGS list naming the message junk ($Junk, Junk). */
static bool imap_decrypt_flags_junk(const uint8_t *raw, size_t len)
{
	imap_tokenizer t;
	imap_tokenizer_init(&t, raw, len, 2);
	imap_token tok;
	const char *error;
	while (imap_tokenizer_next(&t, &tok, &error) == 0 && tok.type != IMAP_TOKEN_EOL) {
		if (imap_token_is(&tok, "$Junk") || imap_token_is(&tok, "Junk"))
			return true;
	}
	return false;
}

static bool imap_decrypt_probe_fetch(imap_decrypt *d, uint32_t seq, const uint8_t *buf,
				     size_t len, GArray *items)
{
	(void)len;
	uint64_t uid, size = 0;
	const imap_decrypt_item *bs = imap_decrypt_find(buf, items, "BODYSTRUCTURE", 13, false);
	if (bs == NULL || !imap_decrypt_number(imap_decrypt_find(buf, items, "UID", 3, false), &uid) ||
	    uid == 0 || uid > UINT32_MAX)
		return false;
	imap_decrypt_number(imap_decrypt_find(buf, items, "RFC822.SIZE", 11, false), &size);
	imap_decrypt_msg m = { .seq = seq, .uid = (uint32_t)uid, .size = size };
	bool base64, qp;
	switch (imap_decrypt_root(buf + bs->raw, bs->raw_len, &base64, &qp)) {
	case IMAP_DECRYPT_STRUCT_ENCRYPTED:
		m.candidate = true;
		break;
	case IMAP_DECRYPT_STRUCT_TEXT: {
		const imap_decrypt_item *text = imap_decrypt_find(buf, items, "BODY[TEXT]", 10, true);
		inline_pgp_encoding enc = base64 ? INLINE_PGP_BASE64 :
			qp ? INLINE_PGP_QUOTED_PRINTABLE : INLINE_PGP_IDENTITY;
		/* Only bodies that may be inline PGP are downloaded. */
		m.candidate = text != NULL && text->data != NULL &&
			inline_pgp_may_start(text->data, text->data_len, enc,
					     IMAP_DECRYPT_TEXT_PREFIX, false);
		break;
	}
	default:
		break;
	}
	const imap_decrypt_item *hdr = imap_decrypt_find(buf, items, "BODY[HEADER.FIELDS (X-SEALPOST",
							 30, true);
	if (hdr != NULL && hdr->data != NULL && hdr->data_len > 2)
		m.candidate = true;	/* forged X-Sealpost-* fields to remove */
	const imap_decrypt_item *ac = imap_decrypt_find(buf, items, "BODY[HEADER.FIELDS (FROM", 24,
							true);
	if (ac != NULL && ac->data != NULL && ac->data_len > 2)
		m.ac_header = g_bytes_new(ac->data, ac->data_len);
	const imap_decrypt_item *flags = imap_decrypt_find(buf, items, "FLAGS", 5, false);
	if (flags != NULL)
		m.ac_junk = imap_decrypt_flags_junk(buf + flags->raw, flags->raw_len);
	if (g_hash_table_contains(d->by_uid, GUINT_TO_POINTER(m.uid))) {
		if (m.ac_header != NULL)
			g_bytes_unref(m.ac_header);
		return true;	/* the set named it twice */
	}
	g_array_append_val(d->msgs, m);
	g_hash_table_insert(d->by_uid, GUINT_TO_POINTER(m.uid), GUINT_TO_POINTER(d->msgs->len));
	return true;
}

static imap_decrypt_msg *imap_decrypt_msg_by_uid(imap_decrypt *d, uint32_t uid)
{
	guint idx = GPOINTER_TO_UINT(g_hash_table_lookup(d->by_uid, GUINT_TO_POINTER(uid)));
	return idx == 0 ? NULL : &g_array_index(d->msgs, imap_decrypt_msg, idx - 1);
}

/* ---- sets ------------------------------------------------------------------ */

static int imap_decrypt_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Appends to sets (a GPtrArray of g_strings) the numbers as sequence sets of
 * at most IMAP_DECRYPT_MAX_SET bytes each. */
static void imap_decrypt_sets(GArray *numbers, GPtrArray *sets)
{
	if (numbers->len == 0)
		return;
	g_array_sort(numbers, imap_decrypt_cmp_u32);
	GString *s = g_string_new(NULL);
	guint i = 0;
	while (i < numbers->len) {
		uint32_t first = g_array_index(numbers, uint32_t, i), last = first;
		while (i + 1 < numbers->len &&
		       (g_array_index(numbers, uint32_t, i + 1) == last + 1 ||
			g_array_index(numbers, uint32_t, i + 1) == last)) {
			i++;
			last = g_array_index(numbers, uint32_t, i);
		}
		i++;
		if (s->len > IMAP_DECRYPT_MAX_SET) {
			g_ptr_array_add(sets, g_string_free(s, FALSE));
			s = g_string_new(NULL);
		}
		if (s->len > 0)
			g_string_append_c(s, ',');
		if (first == last)
			g_string_append_printf(s, "%u", first);
		else
			g_string_append_printf(s, "%u:%u", first, last);
	}
	g_ptr_array_add(sets, g_string_free(s, FALSE));
}

/* ---- step 2: download and render ------------------------------------------- */

static bool imap_decrypt_body_fetch(imap_decrypt *d, uint32_t seq, const uint8_t *buf,
				    size_t len, GArray *items)
{
	(void)seq;
	(void)len;
	uint64_t uid;
	const imap_decrypt_item *body = imap_decrypt_find(buf, items, "BODY[]", 6, false);
	if (body == NULL || body->data == NULL ||
	    !imap_decrypt_number(imap_decrypt_find(buf, items, "UID", 3, false), &uid) ||
	    uid > UINT32_MAX)
		return false;
	imap_decrypt_msg *m = imap_decrypt_msg_by_uid(d, (uint32_t)uid);
	if (m == NULL || m->body != NULL)
		return false;
	m->body = g_bytes_new(body->data, body->data_len);
	return true;
}

static bool imap_decrypt_meta_fetch(imap_decrypt *d, uint32_t seq, const uint8_t *buf,
				    size_t len, GArray *items)
{
	uint64_t uid;
	if (!imap_decrypt_number(imap_decrypt_find(buf, items, "UID", 3, false), &uid) ||
	    uid > UINT32_MAX)
		return false;
	imap_decrypt_msg *m = imap_decrypt_msg_by_uid(d, (uint32_t)uid);
	if (m == NULL || m->meta != NULL || m->view == NULL)
		return false;
	m->meta = g_byte_array_sized_new((guint)len);
	g_byte_array_append(m->meta, buf, (guint)len);
	m->meta_items = g_array_new(FALSE, TRUE, sizeof(imap_decrypt_item));
	for (guint i = 0; i < items->len; i++) {
		imap_decrypt_item it = g_array_index(items, imap_decrypt_item, i);
		/* Only names and raw values are used later: drop the data. */
		it.owned = NULL;
		it.data = NULL;
		it.data_len = 0;
		g_array_append_val(m->meta_items, it);
	}
	m->meta_seq = seq;
	return true;
}

static imap_view_key imap_decrypt_key(const imap_decrypt *d, uint32_t uid)
{
	imap_view_key k = {
		.account = d->env->account->name,
		.mailbox = d->mb->name,
		.mailbox_len = d->mb->name_len,
		.uidvalidity = d->mb->uidvalidity,
		.uid = uid,
	};
	return k;
}

/* One line for a status reason the client may see. */
static void imap_decrypt_one_line(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n' || (unsigned char)*s < 0x20 || *s == '[' || *s == ']')
			*s = ' ';
	}
}

/* Renders the downloaded messages of the batch; the view of each, or plain.
 * 0, or 1 with reason when a message cannot be rendered now. */
static int imap_decrypt_render(imap_decrypt *d, imap_decrypt_msg **batch, size_t n,
			       char *reason, size_t reason_size)
{
	imap_view_job *jobs = g_new0(imap_view_job, n);
	char **pins = g_new0(char *, n);
	bool *repeat = g_new0(bool, n);
	int ret = 0;
	size_t n_jobs = 0;
	imap_decrypt_msg **job_msg = g_new0(imap_decrypt_msg *, n);
	for (size_t i = 0; i < n; i++) {
		if (batch[i]->body == NULL)
			continue;
		imap_view_key key = imap_decrypt_key(d, batch[i]->uid);
		if (view_pin_get(d->env, &key, &pins[n_jobs], reason, reason_size) < 0) {
			ret = 1;
			goto out;
		}
		jobs[n_jobs].msg = batch[i]->body;
		jobs[n_jobs].pinned_signature = pins[n_jobs];
		jobs[n_jobs].policy = CRYPTO_DECRYPT_ROOT;
		job_msg[n_jobs] = batch[i];
		n_jobs++;
	}
	imap_view_pool_render(d->env->view_pool, jobs, n_jobs);
	for (int round = 0; round < 2; round++) {
		size_t again = 0;
		for (size_t i = 0; i < n_jobs; i++) {
			imap_view_job *job = &jobs[i];
			imap_decrypt_msg *m = job_msg[i];
			repeat[i] = false;
			if (m->view != NULL || m->plain)
				continue;
			if (view_pin_drop_invalid(job, &pins[i], round)) {
				log_warn(d->env->id, "decrypting",
					 "UID %u: the pinned signature status is not valid, verifying anew",
					 m->uid);
				repeat[i] = true;
				again++;
				continue;
			}
			if (job->result == CRYPTO_VIEW_TEMPFAIL || job->result == CRYPTO_VIEW_INVALID) {
				snprintf(reason, reason_size, "%s",
					 job->status.reason != NULL ? job->status.reason : "temporary failure");
				imap_decrypt_one_line(reason);
				log_warn(d->env->id, "decrypting", "UID %u: %s", m->uid, reason);
				ret = 1;
				goto out;
			}
			imap_view_key key = imap_decrypt_key(d, m->uid);
			if (job->result == CRYPTO_VIEW_UNCHANGED) {
				gsize blen;
				const uint8_t *body = g_bytes_get_data(m->body, &blen);
				GByteArray *stripped = imap_decrypt_strip_status_fields(body, blen);
				if (stripped != NULL) {
					m->view = g_byte_array_free_to_bytes(stripped);
					log_info(d->env->id, "decrypting",
						 "UID %u: X-Sealpost-* fields from the provider removed",
						 m->uid);
				} else {
					m->plain = true;
				}
				imap_view_cache_put(d->env->view_cache, &key, m->view);
				continue;
			}
			/* RENDERED: pin the first signature status seen. */
			int pinned = view_pin_put_first(d->env, &key, job, &pins[i], round, reason,
							reason_size);
			if (pinned < 0) {
				ret = 1;
				goto out;
			}
			if (pinned > 0) {
				repeat[i] = true;
				again++;
				continue;
			}
			m->view = g_byte_array_free_to_bytes(job->view);
			job->view = NULL;
			if (job->status.decrypted && imap_decrypt_autocrypt_on(d))
				imap_decrypt_autocrypt_view(d, m, job->status.gossip);
			if (!job->status.transient)
				imap_view_cache_put(d->env->view_cache, &key, m->view);
			log_debug(d->env->id, "decrypting", "UID %u: %s%s%s", m->uid,
				 job->status.decrypted ? "decrypted, signature " : "not decrypted: ",
				 job->status.decrypted ? (job->status.signature != NULL ?
							  job->status.signature : "none") :
				 (job->status.reason != NULL ? job->status.reason : "?"),
				 job->status.transient ? " (not cached)" : "");
		}
		if (again == 0)
			break;
		/* Render the ones to repeat, packed to the front. */
		imap_view_job *rj = g_new0(imap_view_job, again);
		size_t k = 0;
		for (size_t i = 0; i < n_jobs; i++) {
			if (repeat[i]) {
				rj[k] = jobs[i];
				rj[k].pinned_signature = pins[i];
				k++;
			}
		}
		imap_view_pool_render(d->env->view_pool, rj, again);
		k = 0;
		for (size_t i = 0; i < n_jobs; i++) {
			if (repeat[i])
				jobs[i] = rj[k++];
		}
		g_free(rj);
	}
	for (size_t i = 0; i < n_jobs; i++) {
		if (job_msg[i]->view == NULL && !job_msg[i]->plain) {
			snprintf(reason, reason_size, "the view could not be settled");
			ret = 1;
		}
	}
out:
	for (size_t i = 0; i < n; i++) {
		imap_view_job_clear(&jobs[i]);
		g_free(pins[i]);
	}
	g_free(jobs);
	g_free(pins);
	g_free(repeat);
	g_free(job_msg);
	return ret;
}

/* ---- step 3: the responses of served messages ------------------------------ */

static const char *imap_decrypt_meta_name(const imap_fetch_att *att, size_t *len_r)
{
	switch (att->type) {
	case IMAP_FETCH_UID: *len_r = 3; return "UID";
	case IMAP_FETCH_FLAGS: *len_r = 5; return "FLAGS";
	case IMAP_FETCH_INTERNALDATE: *len_r = 12; return "INTERNALDATE";
	case IMAP_FETCH_MODSEQ: *len_r = 6; return "MODSEQ";
	default: {
		size_t n = 0;
		while (n < att->text_len && att->text[n] != '[' && att->text[n] != '<')
			n++;
		*len_r = n;
		return (const char *)att->text;
	}
	}
}

static void imap_decrypt_append_meta(GByteArray *out, const imap_decrypt_msg *m,
				     const char *name, size_t name_len)
{
	const imap_decrypt_item *it = imap_decrypt_find(m->meta->data, m->meta_items, name,
						      name_len, false);
	if (it == NULL)
		return;
	if (out->len > 0 && out->data[out->len - 1] != '(')
		g_byte_array_append(out, (const guint8 *)" ", 1);
	g_byte_array_append(out, m->meta->data + it->name, (guint)it->name_len);
	g_byte_array_append(out, (const guint8 *)" ", 1);
	g_byte_array_append(out, m->meta->data + it->raw, (guint)it->raw_len);
}

/* 0 written (or skipped: expunged meanwhile), 1 a part's encoding is
 * unknown (BINARY), -1 failure. */
static int imap_decrypt_write_served(imap_decrypt *d, imap_decrypt_msg *m)
{
	if (m->meta == NULL)
		return 0;	/* gone from the mailbox since the probe */
	const char *error;
	imap_fetch_msg *fm = imap_fetch_msg_new(m->view, &error);
	if (fm == NULL) {
		log_warn(d->env->id, "serving view", "UID %u: %s", m->uid, error);
		return 2;
	}
	GByteArray *out = g_byte_array_new();
	char head[64];
	int hn = snprintf(head, sizeof(head), "* %u FETCH (", m->meta_seq);
	g_byte_array_append(out, (const guint8 *)head, (guint)hn);
	bool has_uid = false, has_flags = false, has_modseq = false;
	for (size_t i = 0; i < d->cmd.atts.n_atts; i++) {
		has_uid = has_uid || d->cmd.atts.atts[i].type == IMAP_FETCH_UID;
		has_flags = has_flags || d->cmd.atts.atts[i].type == IMAP_FETCH_FLAGS;
		has_modseq = has_modseq || d->cmd.atts.atts[i].type == IMAP_FETCH_MODSEQ;
	}
	if (d->cmd.uid && !has_uid)
		imap_decrypt_append_meta(out, m, "UID", 3);
	int ret = 0;
	for (size_t i = 0; i < d->cmd.atts.n_atts && ret == 0; i++) {
		const imap_fetch_att *att = &d->cmd.atts.atts[i];
		if (!imap_fetch_att_from_content(att)) {
			size_t nlen;
			const char *name = imap_decrypt_meta_name(att, &nlen);
			imap_decrypt_append_meta(out, m, name, nlen);
			continue;
		}
		if (out->data[out->len - 1] != '(')
			g_byte_array_append(out, (const guint8 *)" ", 1);
		bool unknown_cte = false;
		if (imap_fetch_msg_item(fm, att, out, &unknown_cte, &error) < 0) {
			log_warn(d->env->id, "serving view", "UID %u: %s", m->uid, error);
			ret = unknown_cte ? 1 : 2;
		}
	}
	if (d->cmd.sets_seen && !has_flags)
		imap_decrypt_append_meta(out, m, "FLAGS", 5);
	if (d->cmd.changedsince && !has_modseq)
		imap_decrypt_append_meta(out, m, "MODSEQ", 6);
	g_byte_array_append(out, (const guint8 *)")\r\n", 3);
	if (ret == 0 && imap_decrypt_client_write(d, out->data, out->len) < 0)
		ret = -1;
	g_byte_array_unref(out);
	imap_fetch_msg_free(&fm);
	return ret;
}

/* ---- step 4: plain messages, streamed -------------------------------------- */

/* Sends "TAG text" and passes every response but its tagged reply to the
 * client as it arrives, literals chunk by chunk. */
static int imap_decrypt_stream(imap_decrypt *d, const char *text)
{
	snprintf(d->tag, sizeof(d->tag), "sp%u", ++d->tag_seq);
	if (conn_printf(d->upstream, "%s %s\r\n", d->tag, text) < 0 ||
	    conn_flush(d->upstream) < 0)
		return imap_decrypt_fail(d, "writing to the provider: %s",
					 conn_last_error(d->upstream));
	bool in_response = false, drop = false, bye = false;
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(d->upstream, &len);
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&d->framer, data, len, &fr, &error);
		if (ret == IMAP_PARSE_ERROR)
			return imap_decrypt_fail(d, "provider protocol error: %s", error);
		if (ret == IMAP_PARSE_MORE) {
			if (conn_output_len(d->client) > 0 && conn_flush(d->client) < 0)
				return imap_decrypt_fail(d, "writing to the client: %s",
							 conn_last_error(d->client));
			ssize_t n = conn_fill(d->upstream);
			if (n == 0)
				return imap_decrypt_fail(d, "provider closed the connection");
			if (n < 0)
				return imap_decrypt_fail(d, "reading from the provider: %s",
							 conn_last_error(d->upstream));
			continue;
		}
		if (!in_response && fr.type == IMAP_FRAME_TEXT && fr.line_start) {
			imap_response resp;
			drop = false;
			if (imap_parser_response(fr.data, fr.len, &resp, &error) < 0)
				return imap_decrypt_fail(d, "provider protocol error: %s", error);
			if (resp.kind == IMAP_RESP_TAGGED) {
				if (resp.tag_len != strlen(d->tag) ||
				    memcmp(resp.tag, d->tag, resp.tag_len) != 0 || !fr.line_end)
					return imap_decrypt_fail(d, "provider protocol error: unexpected tag");
				d->status = resp.status;
				size_t tlen = imap_decrypt_line_end(fr.data + resp.tag_len + 1,
								    fr.len - resp.tag_len - 1);
				if (tlen >= sizeof(d->status_text))
					tlen = sizeof(d->status_text) - 1;
				memcpy(d->status_text, fr.data + resp.tag_len + 1, tlen);
				d->status_text[tlen] = '\0';
				conn_consume(d->upstream, fr.len);
				return 0;
			}
			if (resp.kind == IMAP_RESP_CONTINUATION)
				return imap_decrypt_fail(d, "provider protocol error: unexpected continuation");
			bye = resp.status == IMAP_STATUS_BYE;
			drop = strcmp(resp.keyword, "CAPABILITY") == 0 ||
				imap_response_code_is(&resp, "CAPABILITY");
			if (strcmp(resp.keyword, "EXPUNGE") == 0 || strcmp(resp.keyword, "VANISHED") == 0)
				d->saw_expunge = true;
		}
		if (!drop && imap_decrypt_client_write(d, fr.data, fr.len) < 0)
			return -1;
		in_response = !(fr.type == IMAP_FRAME_TEXT && fr.line_end);
		conn_consume(d->upstream, fr.len);
		if (bye && !in_response)
			return imap_decrypt_fail(d, "provider closed the connection (BYE)");
	}
}

/* ---- the whole command ----------------------------------------------------- */

static void imap_decrypt_msg_clear(imap_decrypt_msg *m)
{
	if (m->body != NULL)
		g_bytes_unref(m->body);
	if (m->view != NULL)
		g_bytes_unref(m->view);
	if (m->meta != NULL)
		g_byte_array_unref(m->meta);
	if (m->meta_items != NULL)
		g_array_free(m->meta_items, TRUE);
	if (m->ac_header != NULL)
		g_bytes_unref(m->ac_header);
	imap_decrypt_ac_free(m->ac);
	m->body = m->view = NULL;
	m->meta = NULL;
	m->meta_items = NULL;
	m->ac_header = NULL;
	m->ac = NULL;
}

/* The client's tagged reply; the untagged responses kept back go first. */
static int imap_decrypt_finish(imap_decrypt *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int imap_decrypt_finish(imap_decrypt *d, const char *fmt, ...)
{
	if (d->stash->len > 0 && imap_decrypt_client_write(d, d->stash->data, d->stash->len) < 0)
		return -1;
	g_byte_array_set_size(d->stash, 0);
	if (imap_decrypt_client_write(d, d->cmd.tag, d->cmd.tag_len) < 0)
		return -1;
	char line[700];
	va_list args;
	va_start(args, fmt);
	vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (conn_printf(d->client, " %s\r\n", line) < 0)
		return imap_decrypt_fail(d, "writing to the client: %s", conn_last_error(d->client));
	return 0;
}

/* Downloads, renders and answers one batch of candidates. 0, 1 with reason
 * (answer NO), -1 failure. */
static int imap_decrypt_batch(imap_decrypt *d, imap_decrypt_msg **batch, size_t n,
			      GArray *plain, bool *unknown_cte, char *reason, size_t reason_size)
{
	/* Download what the cache does not hold. */
	GArray *uids = g_array_new(FALSE, FALSE, sizeof(uint32_t));
	GPtrArray *sets = g_ptr_array_new_with_free_func(g_free);
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		if (batch[i]->view == NULL && !batch[i]->plain)
			g_array_append_val(uids, batch[i]->uid);
	}
	imap_decrypt_sets(uids, sets);
	for (guint i = 0; i < sets->len; i++) {
		char *cmd = g_strdup_printf("UID FETCH %s (UID BODY.PEEK[])",
					    (const char *)sets->pdata[i]);
		int r = imap_decrypt_command(d, cmd, imap_decrypt_body_fetch);
		g_free(cmd);
		if (r < 0) {
			ret = -1;
			goto out;
		}
	}
	ret = imap_decrypt_render(d, batch, n, reason, reason_size);
	if (ret != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (batch[i]->body != NULL) {
			g_bytes_unref(batch[i]->body);
			batch[i]->body = NULL;
		}
	}

	/* Metadata (and \Seen) for the messages served from views. */
	g_array_set_size(uids, 0);
	g_ptr_array_set_size(sets, 0);
	for (size_t i = 0; i < n; i++) {
		if (batch[i]->view != NULL)
			g_array_append_val(uids, batch[i]->uid);
		else
			g_array_append_val(plain, batch[i]->uid);
	}
	imap_decrypt_sets(uids, sets);
	GString *meta = g_string_new("UID");
	if (d->cmd.sets_seen)
		g_string_append(meta, " FLAGS");
	if (d->cmd.changedsince)
		g_string_append(meta, " MODSEQ");
	for (size_t i = 0; i < d->cmd.atts.n_atts; i++) {
		const imap_fetch_att *att = &d->cmd.atts.atts[i];
		if (imap_fetch_att_from_content(att))
			continue;
		size_t nlen;
		const char *name = imap_decrypt_meta_name(att, &nlen);
		if (att->type == IMAP_FETCH_OTHER) {
			g_string_append_c(meta, ' ');
			g_string_append_len(meta, (const char *)att->text, (gssize)att->text_len);
		} else {
			g_string_append_printf(meta, " %.*s", (int)nlen, name);
		}
	}
	for (guint i = 0; i < sets->len && ret == 0; i++) {
		char *cmd;
		if (d->cmd.sets_seen && !d->mb->read_only) {
			cmd = g_strdup_printf("UID STORE %s +FLAGS.SILENT (\\Seen)",
					      (const char *)sets->pdata[i]);
			int r = imap_decrypt_command(d, cmd, NULL);
			g_free(cmd);
			if (r < 0)
				ret = -1;
			else if (d->status != IMAP_STATUS_OK)
				log_warn(d->env->id, "setting \\Seen", "the provider answered: %s",
					 d->status_text);
		}
		if (ret < 0)
			break;
		cmd = g_strdup_printf("UID FETCH %s (%s)", (const char *)sets->pdata[i], meta->str);
		if (imap_decrypt_command(d, cmd, imap_decrypt_meta_fetch) < 0)
			ret = -1;
		g_free(cmd);
	}
	g_string_free(meta, TRUE);
	for (size_t i = 0; i < n && ret == 0; i++) {
		if (batch[i]->view == NULL)
			continue;
		int r = imap_decrypt_write_served(d, batch[i]);
		if (r < 0)
			ret = -1;
		else if (r == 1)
			*unknown_cte = true;
		else if (r == 2) {
			snprintf(reason, reason_size, "a decrypted message is beyond the limits");
			ret = 1;
		}
	}
out:
	for (size_t i = 0; i < n; i++) {
		if (batch[i]->body != NULL) {
			g_bytes_unref(batch[i]->body);
			batch[i]->body = NULL;
		}
		/* Views and metadata are not needed any more. */
		if (batch[i]->view != NULL) {
			g_bytes_unref(batch[i]->view);
			batch[i]->view = NULL;
		}
		if (batch[i]->meta != NULL) {
			g_byte_array_unref(batch[i]->meta);
			batch[i]->meta = NULL;
			g_array_free(batch[i]->meta_items, TRUE);
			batch[i]->meta_items = NULL;
		}
	}
	g_array_free(uids, TRUE);
	g_ptr_array_free(sets, TRUE);
	return ret;
}

static int imap_decrypt_run(imap_decrypt *d)
{
	const imap_decrypt_cmd *c = &d->cmd;
	/* 1. What the set holds. */
	char *probe = g_strdup_printf(
		"%sFETCH %.*s (UID RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS ("
		IMAP_DECRYPT_STATUS_FIELDS ")] BODY.PEEK[TEXT]<0.%u>%s)%s%.*s",
		c->uid ? "UID " : "", (int)c->set_len, (const char *)c->set,
		IMAP_DECRYPT_TEXT_PREFIX,
		imap_decrypt_autocrypt_on(d) ?
		" FLAGS BODY.PEEK[HEADER.FIELDS (" IMAP_DECRYPT_AUTOCRYPT_FIELDS ")]" : "",
		c->mods_len > 0 ? " " : "", (int)c->mods_len, (const char *)c->mods);
	int r = imap_decrypt_command(d, probe, imap_decrypt_probe_fetch);
	g_free(probe);
	if (r < 0)
		return -1;
	if (d->status != IMAP_STATUS_OK)
		return imap_decrypt_finish(d, "%s", d->status_text);

	/* 2. Candidates: from the cache, or downloaded and rendered. */
	GArray *plain = g_array_new(FALSE, FALSE, sizeof(uint32_t));
	GPtrArray *cands = g_ptr_array_new();
	size_t n_cached = 0;
	for (guint i = 0; i < d->msgs->len; i++) {
		imap_decrypt_msg *m = &g_array_index(d->msgs, imap_decrypt_msg, i);
		if (!m->candidate) {
			g_array_append_val(plain, m->uid);
			continue;
		}
		imap_view_key key = imap_decrypt_key(d, m->uid);
		GBytes *view;
		if (imap_view_cache_get(d->env->view_cache, &key, &view)) {
			n_cached++;
			m->ac_skip = true;
			if (view == NULL) {
				m->plain = true;
				g_array_append_val(plain, m->uid);
				continue;
			}
			m->view = view;
		}
		g_ptr_array_add(cands, m);
	}
	size_t n_served = cands->len;
	bool unknown_cte = false;
	char reason[300] = "";
	int tempfail = 0;
	for (guint i = 0; i < cands->len && tempfail == 0;) {
		guint j = i;
		uint64_t bytes = 0;
		while (j < cands->len && j - i < IMAP_DECRYPT_BATCH_MESSAGES) {
			imap_decrypt_msg *m = cands->pdata[j];
			if (m->view == NULL) {
				if (j > i && bytes + m->size > IMAP_DECRYPT_BATCH_BYTES)
					break;
				bytes += m->size;
			}
			j++;
		}
		tempfail = imap_decrypt_batch(d, (imap_decrypt_msg **)cands->pdata + i, j - i,
					      plain, &unknown_cte, reason, sizeof(reason));
		i = j;
	}
	g_ptr_array_free(cands, TRUE);
	if (tempfail < 0) {
		g_array_free(plain, TRUE);
		return -1;
	}
	if (tempfail > 0) {
		g_array_free(plain, TRUE);
		return imap_decrypt_finish(d, "NO [UNAVAILABLE] A message cannot be decrypted now (%s), try again later.",
					   reason);
	}

	/* 3. Plain messages as the client asked, streamed. */
	size_t n_plain = plain->len;
	GArray *numbers = plain;
	bool by_uid = c->uid || d->saw_expunge;
	if (!by_uid) {
		numbers = g_array_new(FALSE, FALSE, sizeof(uint32_t));
		for (guint i = 0; i < plain->len; i++) {
			imap_decrypt_msg *m = imap_decrypt_msg_by_uid(d, g_array_index(plain, uint32_t, i));
			g_array_append_val(numbers, m->seq);
		}
	}
	GPtrArray *sets = g_ptr_array_new_with_free_func(g_free);
	imap_decrypt_sets(numbers, sets);
	if (numbers != plain)
		g_array_free(numbers, TRUE);
	g_array_free(plain, TRUE);
	imap_status worst = IMAP_STATUS_OK;
	char worst_text[sizeof(d->status_text)] = "";
	for (guint i = 0; i < sets->len; i++) {
		char *cmd = g_strdup_printf("%sFETCH %s %.*s%s%.*s", by_uid ? "UID " : "",
					    (const char *)sets->pdata[i], (int)c->items_len,
					    (const char *)c->items, c->mods_len > 0 ? " " : "",
					    (int)c->mods_len, (const char *)c->mods);
		r = imap_decrypt_stream(d, cmd);
		g_free(cmd);
		if (r < 0) {
			g_ptr_array_free(sets, TRUE);
			return -1;
		}
		if (d->status != IMAP_STATUS_OK && worst == IMAP_STATUS_OK) {
			worst = d->status;
			snprintf(worst_text, sizeof(worst_text), "%s", d->status_text);
		}
	}
	g_ptr_array_free(sets, TRUE);
	log_debug(d->env->id, "decrypting", "%sFETCH of %u messages: %zu from views (%zu cached), %zu from the provider",
		 c->uid ? "UID " : "", d->msgs->len, n_served, n_cached, n_plain);
	if (unknown_cte)
		return imap_decrypt_finish(d, "NO [UNKNOWN-CTE] A part has an unknown content transfer encoding.");
	if (worst != IMAP_STATUS_OK)
		return imap_decrypt_finish(d, "%s", worst_text);
	return imap_decrypt_finish(d, "OK Fetch completed.");
}

int imap_decrypt_fetch(const session_env *env, const imap_decrypt_mailbox *mailbox,
		       conn *client, conn *upstream, const uint8_t *line, size_t len,
		       char *error, size_t error_size)
{
	imap_command cmd;
	const char *perror;
	error[0] = '\0';
	if (imap_parser_command(line, len, &cmd, &perror) < 0) {
		snprintf(error, error_size, "internal error: %s", perror);
		return -1;
	}
	imap_decrypt d = {
		.env = env,
		.mb = mailbox,
		.client = client,
		.upstream = upstream,
		.error = error,
		.error_size = error_size,
	};
	if (imap_decrypt_parse_cmd(line, len, &cmd, &d.cmd, &perror) < 0) {
		imap_fetch_atts_clear(&d.cmd.atts);
		snprintf(error, error_size, "internal error: %s", perror);
		return -1;
	}
	const config_limits *limits = &env->cfg->limits;
	size_t max_line = limits->max_line > IMAP_DECRYPT_PROVIDER_MAX_LINE ?
		limits->max_line : IMAP_DECRYPT_PROVIDER_MAX_LINE;
	imap_framer_init(&d.framer, max_line, limits->max_literal);
	d.max_response = limits->max_literal + 2 * (uint64_t)max_line;
	d.resp = g_byte_array_new();
	d.stash = g_byte_array_new();
	d.msgs = g_array_new(FALSE, TRUE, sizeof(imap_decrypt_msg));
	d.by_uid = g_hash_table_new(g_direct_hash, g_direct_equal);
	int ret = imap_decrypt_run(&d);
	if (ret < 0 && d.stash->len > 0)
		imap_decrypt_client_write(&d, d.stash->data, d.stash->len);
	/* Autocrypt after the answer: the client does not wait for it. */
	if (ret == 0 && imap_decrypt_autocrypt_on(&d)) {
		if (conn_flush(client) < 0)
			ret = imap_decrypt_fail(&d, "writing to the client: %s", conn_last_error(client));
		else
			imap_decrypt_autocrypt_apply(&d);
	}
	for (guint i = 0; i < d.msgs->len; i++)
		imap_decrypt_msg_clear(&g_array_index(d.msgs, imap_decrypt_msg, i));
	g_array_free(d.msgs, TRUE);
	g_hash_table_destroy(d.by_uid);
	g_byte_array_unref(d.resp);
	g_byte_array_unref(d.stash);
	imap_fetch_atts_clear(&d.cmd.atts);
	return ret;
}
