/* imap_append: APPEND through sealpost. The client's messages are spooled
 * (sealpost answers "+" to its synchronizing literals), each plaintext one
 * is encrypted to the account's own key with protected headers, and the
 * command goes to the provider under the client's tag with new sizes. */
#include "imap_append.h"

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keystore_keys.h"
#include "log.h"
#include "outbound.h"
#include "smtp_spool.h"
#include "worker.h"

/* A message is kept in memory up to this size, then in an unlinked file. */
#define IMAP_APPEND_SPOOL_MEMORY ((size_t)1024 * 1024)
/* MULTIAPPEND: messages in one command, and their bytes together (in
 * units of max_literal_size). */
#define IMAP_APPEND_MAX_MESSAGES 1000
#define IMAP_APPEND_TOTAL_FACTOR 4
#define IMAP_APPEND_CHUNK ((size_t)64 * 1024)
/* Bytes after the header that tell an armored PGP body. */
#define IMAP_APPEND_BODY_PREFIX 256
/* Provider lines read while waiting for "+" may be long (untagged data). */
#define IMAP_APPEND_PROVIDER_MAX_LINE ((size_t)8 * 1024 * 1024)

imap_append_action imap_append_decide(bool encrypt_append, bool already_encrypted,
				      bool decrypted_view)
{
	/* A view sealpost showed decrypted goes back encrypted, whatever it
	 * now looks like and whatever the setting. */
	if (decrypted_view)
		return IMAP_APPEND_ENCRYPT;
	if (already_encrypted || !encrypt_append)
		return IMAP_APPEND_KEEP;
	return IMAP_APPEND_ENCRYPT;
}

/* ---- the session side ------------------------------------------------------------ */

typedef struct {
	char *args;		/* flags and date as written, "" when none */
	smtp_spool *in;		/* as the client sent it */
	smtp_spool *out;	/* encrypted; NULL: in goes up untouched */
} imap_append_msg;

struct imap_append {
	const session_env *env;
	char *tag;
	imap_append_parser parser;
	GPtrArray *msgs;	/* imap_append_msg */
	char reply[400];
	/* For the messages being prepared. */
	gpgme_key_t key;
	crypto_worker *worker;
};

static void imap_append_msg_free(gpointer data)
{
	imap_append_msg *m = data;
	g_free(m->args);
	smtp_spool_free(&m->in);
	smtp_spool_free(&m->out);
	g_free(m);
}

imap_append *imap_append_new(const session_env *env, const uint8_t *tag, size_t tag_len)
{
	imap_append *a = g_new0(imap_append, 1);
	a->env = env;
	a->tag = g_strndup((const char *)tag, tag_len);
	uint64_t max = env->cfg->limits.max_literal;
	imap_append_parser_init(&a->parser, max, max * IMAP_APPEND_TOTAL_FACTOR,
				IMAP_APPEND_MAX_MESSAGES);
	a->msgs = g_ptr_array_new_with_free_func(imap_append_msg_free);
	return a;
}

void imap_append_free(imap_append **ap)
{
	imap_append *a = *ap;
	if (a == NULL)
		return;
	g_ptr_array_unref(a->msgs);
	if (a->key != NULL)
		gpgme_key_unref(a->key);
	crypto_worker_free(&a->worker);
	g_free(a->tag);
	g_free(a);
	*ap = NULL;
}

imap_append_status imap_append_feed(imap_append *a, const imap_frame *fr, size_t args_pos,
				    const char **reply_r)
{
	imap_append_event ev;
	imap_append_error kind;
	const char *error;
	*reply_r = a->reply;
	if (imap_append_parser_feed(&a->parser, fr, args_pos, &ev, &kind, &error) < 0) {
		if (kind == IMAP_APPEND_ERROR_TOOBIG)
			snprintf(a->reply, sizeof(a->reply), "NO [TOOBIG] %s (limit %llu bytes).",
				 error, (unsigned long long)(a->parser.messages >= a->parser.max_messages ?
							     a->parser.max_messages :
							     a->parser.max_message));
		else if (kind == IMAP_APPEND_ERROR_UNSUPPORTED)
			snprintf(a->reply, sizeof(a->reply), "NO [CANNOT] %s.", error);
		else
			snprintf(a->reply, sizeof(a->reply), "BAD %s.", error);
		log_info(a->env->id, "receiving APPEND", "refused: %s", error);
		return IMAP_APPEND_REFUSED;
	}
	switch (ev.type) {
	case IMAP_APPEND_EV_NONE:
		return IMAP_APPEND_MORE;
	case IMAP_APPEND_EV_LITERAL:
		if (ev.message) {
			imap_append_msg *m = g_new0(imap_append_msg, 1);
			m->args = g_strndup((const char *)ev.args, ev.args_len);
			m->in = smtp_spool_new(a->env->cfg->state_dir, IMAP_APPEND_SPOOL_MEMORY);
			g_ptr_array_add(a->msgs, m);
		}
		return ev.sync ? IMAP_APPEND_CONTINUE : IMAP_APPEND_MORE;
	case IMAP_APPEND_EV_DATA: {
		imap_append_msg *m = g_ptr_array_index(a->msgs, a->msgs->len - 1);
		if (ev.len > 0 && smtp_spool_write(m->in, ev.data, ev.len, &error) < 0) {
			log_error(a->env->id, "receiving APPEND", "spooling the message: %s", error);
			snprintf(a->reply, sizeof(a->reply),
				 "NO [SERVERBUG] The message cannot be stored for encryption.");
			return IMAP_APPEND_REFUSED;
		}
		return IMAP_APPEND_MORE;
	}
	case IMAP_APPEND_EV_DONE:
		return IMAP_APPEND_COMPLETE;
	}
	return IMAP_APPEND_MORE;
}

/* ---- preparing a message ---------------------------------------------------------- */

/* Reads a spooled message with every bare LF made CRLF, as the encrypting
 * writer wants canonical text. pending holds bytes read ahead. */
typedef struct {
	smtp_spool *spool;
	bool last_cr;
	uint8_t *raw;
	GByteArray *pending;
	size_t pending_pos;
	uint64_t skip;		/* after a rewind: bytes of the header to pass over */
	const char *error;
} imap_append_reader;

static ssize_t imap_append_read_canonical(imap_append_reader *r, uint8_t *buf, size_t size)
{
	if (r->pending_pos < r->pending->len) {
		size_t n = r->pending->len - r->pending_pos;
		if (n > size)
			n = size;
		memcpy(buf, r->pending->data + r->pending_pos, n);
		r->pending_pos += n;
		return (ssize_t)n;
	}
	ssize_t n = smtp_spool_read(r->spool, r->raw, IMAP_APPEND_CHUNK, &r->error);
	if (n <= 0)
		return n;
	g_byte_array_set_size(r->pending, 0);
	r->pending_pos = 0;
	for (ssize_t i = 0; i < n; i++) {
		if (r->raw[i] == '\n' && !r->last_cr)
			g_byte_array_append(r->pending, (const guint8 *)"\r", 1);
		g_byte_array_append(r->pending, r->raw + i, 1);
		r->last_cr = r->raw[i] == '\r';
	}
	return imap_append_read_canonical(r, buf, size);
}

static ssize_t imap_append_body_read(void *ctx, void *buf, size_t size)
{
	imap_append_reader *r = ctx;
	while (r->skip > 0) {
		uint8_t tmp[4096];
		ssize_t n = imap_append_read_canonical(r, tmp, r->skip < sizeof(tmp) ?
						       (size_t)r->skip : sizeof(tmp));
		if (n <= 0)
			return n < 0 ? -1 : 0;
		r->skip -= (uint64_t)n;
	}
	return imap_append_read_canonical(r, buf, size);
}

static int imap_append_reader_start(imap_append_reader *r, uint64_t skip)
{
	if (smtp_spool_rewind(r->spool, &r->error) < 0)
		return -1;
	r->last_cr = false;
	g_byte_array_set_size(r->pending, 0);
	r->pending_pos = 0;
	r->skip = skip;
	return 0;
}

typedef struct {
	imap_append_reader *reader;
	uint64_t header_len;
} imap_append_body;

static ssize_t imap_append_source_read(void *ctx, void *buf, size_t size)
{
	imap_append_body *b = ctx;
	return imap_append_body_read(b->reader, buf, size);
}

static int imap_append_source_rewind(void *ctx)
{
	imap_append_body *b = ctx;
	return imap_append_reader_start(b->reader, b->header_len);
}

static int imap_append_sink_write(void *ctx, const void *buf, size_t len)
{
	smtp_spool *out = ctx;
	const char *error;
	return smtp_spool_write(out, buf, len, &error);
}

/* Whether the header has an X-Sealpost-Decryption field: a view of
 * sealpost's coming back. */
static bool imap_append_is_view(const crypto_outbound_header *h)
{
	static const char name[] = "X-Sealpost-Decryption";
	size_t n = crypto_outbound_header_n_fields(h);
	for (size_t i = 0; i < n; i++) {
		const crypto_header_field *f = crypto_outbound_header_field(h, i);
		if (f->name_len == sizeof(name) - 1 && strncasecmp(f->raw, name, f->name_len) == 0)
			return true;
	}
	return false;
}

/* The own key to encrypt to: the account's, else the From address's. 0, or
 * 1 with the reply set. */
static int imap_append_own_key(imap_append *a, const crypto_outbound_header *h)
{
	if (a->key != NULL)
		return 0;
	const char *address = a->env->account->address;
	if (address == NULL)
		address = crypto_outbound_header_from(h);
	char why[200] = "no address";
	keystore_key_result r = KEYSTORE_KEY_NONE;
	if (address != NULL)
		r = keystore_keys_find(a->env->keys, address, true, &a->key, why, sizeof(why));
	if (r == KEYSTORE_KEY_FOUND)
		return 0;
	a->key = NULL;
	if (r == KEYSTORE_KEY_TEMPFAIL) {
		log_warn(a->env->id, "encrypting APPEND", "own key lookup: %s", why);
		snprintf(a->reply, sizeof(a->reply),
			 "NO [UNAVAILABLE] The own OpenPGP key cannot be looked up now, try again later.");
		return 1;
	}
	log_warn(a->env->id, "encrypting APPEND", "refused: no usable own key for <%s>: %s",
		 address != NULL ? address : "?", why);
	snprintf(a->reply, sizeof(a->reply),
		 "NO [CANNOT] Not stored: there is no usable own OpenPGP key for <%.100s> to "
		 "encrypt it to, and sealpost stores no plaintext on the provider.",
		 address != NULL ? address : "?");
	return 1;
}

/* Decides about one message and encrypts it when it must be. 0, 1 with the
 * reply set (refuse the command). */
static int imap_append_prepare(imap_append *a, imap_append_msg *m, size_t index)
{
	const char *id = a->env->id;
	imap_append_reader reader = { .spool = m->in, .raw = g_malloc(IMAP_APPEND_CHUNK),
				      .pending = g_byte_array_new() };
	GByteArray *buf = g_byte_array_new();
	uint8_t *chunk = g_malloc(IMAP_APPEND_CHUNK);
	crypto_outbound_header *h = NULL;
	int ret = 1;
	size_t block_len = 0;
	bool blank = false, at_end = false, found = false;
	if (imap_append_reader_start(&reader, 0) < 0)
		goto spool_error;
	while (!found) {
		ssize_t n = imap_append_read_canonical(&reader, chunk, IMAP_APPEND_CHUNK);
		if (n < 0)
			goto spool_error;
		at_end = n == 0;
		g_byte_array_append(buf, chunk, (guint)n);
		found = crypto_header_block_end(buf->data, buf->len, at_end, &block_len, &blank) == 1;
		if (!found && buf->len > CRYPTO_MAX_HEADER_BLOCK) {
			snprintf(a->reply, sizeof(a->reply),
				 "NO [LIMIT] The header section is larger than %d bytes.",
				 CRYPTO_MAX_HEADER_BLOCK);
			goto out;
		}
	}
	while (!at_end && buf->len < block_len + IMAP_APPEND_BODY_PREFIX) {
		ssize_t n = imap_append_read_canonical(&reader, chunk, IMAP_APPEND_CHUNK);
		if (n < 0)
			goto spool_error;
		at_end = n == 0;
		g_byte_array_append(buf, chunk, (guint)n);
	}
	size_t prefix = buf->len - block_len;
	if (prefix > IMAP_APPEND_BODY_PREFIX)
		prefix = IMAP_APPEND_BODY_PREFIX;
	h = crypto_outbound_header_parse(buf->data, block_len, blank, buf->data + block_len, prefix);
	bool view = imap_append_is_view(h);
	bool encrypted = crypto_outbound_header_encrypted(h);
	if (imap_append_decide(a->env->account->encrypt_append, encrypted, view) ==
	    IMAP_APPEND_KEEP) {
		log_info(id, "receiving APPEND", "message %zu (%llu bytes) goes up as it is (%s)",
			 index + 1, (unsigned long long)smtp_spool_size(m->in),
			 encrypted ? "already encrypted" : "encrypt_append is off");
		ret = 0;
		goto out;
	}
	if (imap_append_own_key(a, h) != 0)
		goto out;
	if (a->worker == NULL) {
		const char *error;
		a->worker = crypto_worker_new(&error);
		if (a->worker == NULL) {
			log_error(id, "starting OpenPGP", "%s", error);
			snprintf(a->reply, sizeof(a->reply),
				 "NO [UNAVAILABLE] OpenPGP is not available now, try again later.");
			goto out;
		}
	}
	imap_append_body body = { &reader, block_len };
	if (imap_append_source_rewind(&body) < 0)
		goto spool_error;
	m->out = smtp_spool_new(a->env->cfg->state_dir, IMAP_APPEND_SPOOL_MEMORY);
	gpgme_key_t recipients[2] = { a->key, NULL };
	crypto_outbound_options opts = {
		.recipients = recipients,
		.clear_subject = a->env->account->clear_subject,
		/* The copy is the user's own: whom it went to in Bcc stays
		 * readable to them, inside the encryption. */
		.keep_bcc = true,
	};
	crypto_source src = { imap_append_source_read, imap_append_source_rewind, &body };
	crypto_sink sink = { imap_append_sink_write, m->out };
	crypto_failure failure = CRYPTO_FAIL_TEMPORARY;
	const char *error = NULL;
	if (crypto_outbound_write_encrypted(h, a->worker, &opts, &src, &sink, &failure,
					    &error) < 0) {
		log_error(id, "encrypting APPEND", "message %zu: %s", index + 1,
			  reader.error != NULL ? reader.error : error);
		if (failure == CRYPTO_FAIL_PERMANENT)
			snprintf(a->reply, sizeof(a->reply),
				 "NO [CANNOT] The message cannot be encrypted: %.200s.", error);
		else
			snprintf(a->reply, sizeof(a->reply),
				 "NO [UNAVAILABLE] The message cannot be encrypted now, try again later.");
		goto out;
	}
	log_info(id, "receiving APPEND", "message %zu%s encrypted to the own key (%llu -> %llu bytes)",
		 index + 1, view ? " (a decrypted view)" : "",
		 (unsigned long long)smtp_spool_size(m->in),
		 (unsigned long long)smtp_spool_size(m->out));
	ret = 0;
	goto out;
spool_error:
	log_error(id, "receiving APPEND", "reading the spooled message: %s",
		  reader.error != NULL ? reader.error : "?");
	snprintf(a->reply, sizeof(a->reply),
		 "NO [SERVERBUG] The message cannot be read back for encryption.");
out:
	crypto_outbound_header_free(&h);
	g_byte_array_unref(buf);
	g_byte_array_unref(reader.pending);
	g_free(reader.raw);
	g_free(chunk);
	return ret;
}

/* ---- talking to the provider ------------------------------------------------------ */

typedef struct {
	imap_append *a;
	conn *client;
	conn *upstream;
	imap_framer framer;
	char *error;
	size_t error_size;
} imap_append_io;

static int imap_append_fail(imap_append_io *io, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int imap_append_fail(imap_append_io *io, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(io->error, io->error_size, fmt, args);
	va_end(args);
	return -1;
}

static int imap_append_client_write(imap_append_io *io, const void *data, size_t len)
{
	if (conn_write(io->client, data, len) < 0)
		return imap_append_fail(io, "writing to the client: %s", conn_last_error(io->client));
	return 0;
}

static int imap_append_upstream_write(imap_append_io *io, const void *data, size_t len)
{
	if (conn_write(io->upstream, data, len) < 0)
		return imap_append_fail(io, "writing to the provider: %s",
					conn_last_error(io->upstream));
	return 0;
}

/* Flushes and reads the provider's answers until its "+" (0, *refused_r
 * false) or the tagged reply to the command (0, *refused_r true; the reply
 * went to the client). Untagged responses go to the client, CAPABILITY
 * ones excepted (the relay filters those; these are never asked for). */
static int imap_append_wait_continue(imap_append_io *io, bool *refused_r)
{
	*refused_r = false;
	if (conn_flush(io->upstream) < 0)
		return imap_append_fail(io, "writing to the provider: %s",
					conn_last_error(io->upstream));
	bool in_response = false, drop = false, bye = false;
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(io->upstream, &len);
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&io->framer, data, len, &fr, &error);
		if (ret == IMAP_PARSE_ERROR)
			return imap_append_fail(io, "provider protocol error: %s", error);
		if (ret == IMAP_PARSE_MORE) {
			if (conn_output_len(io->client) > 0 && conn_flush(io->client) < 0)
				return imap_append_fail(io, "writing to the client: %s",
							conn_last_error(io->client));
			ssize_t n = conn_fill(io->upstream);
			if (n == 0)
				return imap_append_fail(io, "provider closed the connection");
			if (n < 0)
				return imap_append_fail(io, "reading from the provider: %s",
							conn_last_error(io->upstream));
			continue;
		}
		if (!in_response && fr.type == IMAP_FRAME_TEXT && fr.line_start) {
			imap_response resp;
			drop = false;
			if (imap_parser_response(fr.data, fr.len, &resp, &error) < 0)
				return imap_append_fail(io, "provider protocol error: %s", error);
			if (resp.kind == IMAP_RESP_CONTINUATION) {
				if (!fr.line_end)
					return imap_append_fail(io, "provider protocol error: "
								"literal in a continuation");
				conn_consume(io->upstream, fr.len);
				return 0;
			}
			if (resp.kind == IMAP_RESP_TAGGED) {
				if (resp.tag_len != strlen(io->a->tag) ||
				    memcmp(resp.tag, io->a->tag, resp.tag_len) != 0 || !fr.line_end)
					return imap_append_fail(io, "provider protocol error: unexpected tag");
				int wret = imap_append_client_write(io, fr.data, fr.len);
				conn_consume(io->upstream, fr.len);
				*refused_r = true;
				return wret;
			}
			bye = resp.status == IMAP_STATUS_BYE;
			drop = strcmp(resp.keyword, "CAPABILITY") == 0 ||
				imap_response_code_is(&resp, "CAPABILITY");
		}
		if (!drop && imap_append_client_write(io, fr.data, fr.len) < 0)
			return -1;
		in_response = !(fr.type == IMAP_FRAME_TEXT && fr.line_end);
		conn_consume(io->upstream, fr.len);
		if (bye && !in_response)
			return imap_append_fail(io, "provider closed the connection (BYE)");
	}
}

static int imap_append_send_spool(imap_append_io *io, smtp_spool *s)
{
	const char *error;
	if (smtp_spool_rewind(s, &error) < 0)
		return imap_append_fail(io, "reading the spooled message: %s", error);
	uint8_t *chunk = g_malloc(IMAP_APPEND_CHUNK);
	int ret = 0;
	for (;;) {
		ssize_t n = smtp_spool_read(s, chunk, IMAP_APPEND_CHUNK, &error);
		if (n < 0) {
			ret = imap_append_fail(io, "reading the spooled message: %s", error);
			break;
		}
		if (n == 0)
			break;
		if (imap_append_upstream_write(io, chunk, (size_t)n) < 0) {
			ret = -1;
			break;
		}
	}
	g_free(chunk);
	return ret;
}

/* A mailbox name goes up quoted when it can, else as a literal. */
static bool imap_append_quotable(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

static int imap_append_send(imap_append_io *io, bool *sent_r)
{
	imap_append *a = io->a;
	bool refused;
	GString *line = g_string_new(NULL);
	int ret = -1;
	g_string_append_printf(line, "%s APPEND ", a->tag);
	if (imap_append_quotable(a->parser.mailbox, a->parser.mailbox_len)) {
		g_string_append_c(line, '"');
		for (size_t i = 0; i < a->parser.mailbox_len; i++) {
			char c = (char)a->parser.mailbox[i];
			if (c == '"' || c == '\\')
				g_string_append_c(line, '\\');
			g_string_append_c(line, c);
		}
		g_string_append_c(line, '"');
	} else {
		g_string_append_printf(line, "{%zu}\r\n", a->parser.mailbox_len);
		if (imap_append_upstream_write(io, line->str, line->len) < 0 ||
		    imap_append_wait_continue(io, &refused) < 0)
			goto out;
		if (refused) {
			*sent_r = false;
			ret = 0;
			goto out;
		}
		g_string_truncate(line, 0);
		g_string_append_len(line, (const char *)a->parser.mailbox,
				    (gssize)a->parser.mailbox_len);
	}
	for (guint i = 0; i < a->msgs->len; i++) {
		imap_append_msg *m = g_ptr_array_index(a->msgs, i);
		smtp_spool *s = m->out != NULL ? m->out : m->in;
		g_string_append_c(line, ' ');
		if (m->args[0] != '\0')
			g_string_append_printf(line, "%s ", m->args);
		g_string_append_printf(line, "{%llu}\r\n", (unsigned long long)smtp_spool_size(s));
		if (imap_append_upstream_write(io, line->str, line->len) < 0 ||
		    imap_append_wait_continue(io, &refused) < 0)
			goto out;
		if (refused) {
			*sent_r = false;
			ret = 0;
			goto out;
		}
		g_string_truncate(line, 0);
		if (imap_append_send_spool(io, s) < 0)
			goto out;
	}
	if (imap_append_upstream_write(io, "\r\n", 2) < 0)
		goto out;
	if (conn_flush(io->upstream) < 0) {
		imap_append_fail(io, "writing to the provider: %s", conn_last_error(io->upstream));
		goto out;
	}
	*sent_r = true;
	ret = 0;
out:
	g_string_free(line, TRUE);
	return ret;
}

int imap_append_run(imap_append *a, conn *client, conn *upstream, bool *sent_r,
		    char *error, size_t error_size)
{
	*sent_r = false;
	error[0] = '\0';
	imap_append_io io = { a, client, upstream, { 0 }, error, error_size };
	const config_limits *limits = &a->env->cfg->limits;
	size_t max_line = limits->max_line > IMAP_APPEND_PROVIDER_MAX_LINE ?
		limits->max_line : IMAP_APPEND_PROVIDER_MAX_LINE;
	imap_framer_init(&io.framer, max_line, limits->max_literal);
	for (guint i = 0; i < a->msgs->len; i++) {
		if (imap_append_prepare(a, g_ptr_array_index(a->msgs, i), i) != 0) {
			if (conn_printf(client, "%s %s\r\n", a->tag, a->reply) < 0)
				return imap_append_fail(&io, "writing to the client: %s",
							conn_last_error(client));
			return 0;
		}
	}
	/* The plaintext is not needed any more. */
	for (guint i = 0; i < a->msgs->len; i++) {
		imap_append_msg *m = g_ptr_array_index(a->msgs, i);
		if (m->out != NULL)
			smtp_spool_clear(m->in);
	}
	return imap_append_send(&io, sent_r);
}
