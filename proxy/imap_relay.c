/* imap_relay: streams an authenticated IMAP session between client and
 * provider. Literal bytes go straight from one side's input buffer to the
 * other's output; only line heads are looked at. */
#include "imap_relay.h"

/* 8 MiB: one SEARCH line for about a million messages. */
#define IMAP_RELAY_PROVIDER_MAX_LINE ((size_t)8 * 1024 * 1024)

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap_append.h"
#include "imap_capability.h"
#include "imap_decrypt.h"
#include "imap_parser.h"
#include "log.h"

/* Replies sealpost makes itself wait here while a provider response is
 * half-way through to the client; client input pauses when it fills. */
#define IMAP_RELAY_LOCAL_SIZE 4096
#define IMAP_RELAY_LOCAL_REPLY_MAX (IMAP_TAG_MAX + 512)
/* A read at least this large suggests bulk data: read on before flushing.
 * (A TLS record carries up to 16 KiB; Dovecot sends 4 KiB ones.) */
#define IMAP_RELAY_BULK_READ 4096

typedef struct {
	const session_env *env;
	conn *client;
	conn *upstream;
	imap_framer c2s;
	imap_framer s2c;
	imap_capability_context caps_ctx;

	/* client -> provider */
	char cur_tag[IMAP_TAG_MAX + 1];	/* tag of the command being relayed */
	bool c2s_discard;	/* dropping the rest of an intercepted command */
	bool c2s_wait_cont;	/* a synchronizing literal waits for "+" */
	char wait_tag[IMAP_TAG_MAX + 1];
	bool idle_pending;	/* IDLE sent: the client's next line is DONE */
	bool idle_active;	/* ...and the provider said "+" */
	char idle_tag[IMAP_TAG_MAX + 1];
	bool logout_sent;
	unsigned outstanding;	/* commands without tagged reply yet */
	/* A FETCH of content that imap_decrypt answers once nothing else is
	 * in flight; client input waits meanwhile. */
	uint8_t *pending_fetch;
	size_t pending_fetch_len;
	/* An APPEND whose messages are being received (sealpost answers "+"
	 * itself), then, once whole, waiting to be sent when nothing else is
	 * in flight; client input waits meanwhile. */
	imap_append *append;
	imap_append *pending_append;

	/* The selected mailbox, and the one a SELECT/EXAMINE in flight
	 * would select. */
	imap_decrypt_mailbox mailbox;
	imap_decrypt_mailbox selecting;
	char select_tag[IMAP_TAG_MAX + 1];
	/* The mailbox name of the SELECT being relayed comes as a literal:
	 * 1 while its bytes arrive, 2 once complete (until the line ends). */
	int select_literal;

	/* provider -> client */
	bool upstream_bye;
	/* What went to the client so far ends inside a response: no line of
	 * sealpost's own may be written now. */
	bool client_mid_line;

	char local[IMAP_RELAY_LOCAL_SIZE];
	size_t local_len;

	int64_t last_client_rx;
	int64_t last_upstream_activity;
	imap_relay_result *result;
} imap_relay;

static int64_t imap_relay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void imap_relay_end(imap_relay *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void imap_relay_end(imap_relay *r, const char *fmt, ...)
{
	if (r->result->reason[0] != '\0')
		return;
	va_list args;
	va_start(args, fmt);
	vsnprintf(r->result->reason, sizeof(r->result->reason), fmt, args);
	va_end(args);
}

static void imap_relay_copy_tag(char *dst, const uint8_t *tag, size_t len)
{
	if (len > IMAP_TAG_MAX)
		len = IMAP_TAG_MAX;
	memcpy(dst, tag, len);
	dst[len] = '\0';
}

static bool imap_relay_tag_is(const char *tag, const imap_response *resp)
{
	return tag[0] != '\0' && strlen(tag) == resp->tag_len &&
		memcmp(tag, resp->tag, resp->tag_len) == 0;
}

static uint32_t imap_relay_parse_u32(const uint8_t *s, size_t len)
{
	uint64_t n = 0;
	for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9' && n <= UINT32_MAX; i++)
		n = n * 10 + (uint64_t)(s[i] - '0');
	return n <= UINT32_MAX ? (uint32_t)n : 0;
}

/* A line of sealpost's own to the client, written at once when no provider
 * response is half-way through, else queued until one ends. */
static int imap_relay_local_reply(imap_relay *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int imap_relay_local_reply(imap_relay *r, const char *fmt, ...)
{
	char line[IMAP_RELAY_LOCAL_REPLY_MAX];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	if (r->local_len == 0 && !r->client_mid_line) {
		if (conn_write(r->client, line, (size_t)n) < 0) {
			imap_relay_end(r, "writing to the client: %s", conn_last_error(r->client));
			return -1;
		}
		return 0;
	}
	/* The client pump stops before the queue can overflow. */
	memcpy(r->local + r->local_len, line, (size_t)n);
	r->local_len += (size_t)n;
	return 0;
}

static int imap_relay_flush_local(imap_relay *r)
{
	if (r->local_len == 0 || r->client_mid_line)
		return 0;
	if (conn_write(r->client, r->local, r->local_len) < 0) {
		imap_relay_end(r, "writing to the client: %s", conn_last_error(r->client));
		return -1;
	}
	r->local_len = 0;
	return 0;
}

/* Last words to the client, only where a line may start. */
static void imap_relay_bye(imap_relay *r, const char *text)
{
	if (r->client_mid_line)
		return;
	if (imap_relay_flush_local(r) < 0)
		return;
	conn_printf(r->client, "* BYE %s\r\n", text);
}

/* ---- provider -> client ----------------------------------------------------- */

/* The first fragment of a provider response: bookkeeping on tags and
 * continuations, capability lists filtered. */
static int imap_relay_upstream_line(imap_relay *r, const imap_frame *fr)
{
	imap_response resp;
	const char *error;
	if (imap_parser_response(fr->data, fr->len, &resp, &error) == 0) {
		switch (resp.kind) {
		case IMAP_RESP_TAGGED:
			if (r->outstanding > 0)
				r->outstanding--;
			if (imap_relay_tag_is(r->select_tag, &resp)) {
				if (resp.status == IMAP_STATUS_OK) {
					r->mailbox = r->selecting;
					r->mailbox.selected = true;
					if (imap_response_code_is(&resp, "READ-ONLY"))
						r->mailbox.read_only = true;
				}
				r->select_tag[0] = '\0';
			}
			if (r->c2s_wait_cont && imap_relay_tag_is(r->wait_tag, &resp)) {
				/* Refused instead of "+": the client will not
				 * send the literal, its command is over. */
				imap_framer_cancel_literal(&r->c2s);
				r->c2s_wait_cont = false;
			}
			if (imap_relay_tag_is(r->idle_tag, &resp)) {
				r->idle_pending = false;
				r->idle_active = false;
				r->idle_tag[0] = '\0';
			}
			break;
		case IMAP_RESP_CONTINUATION:
			if (r->c2s_wait_cont)
				r->c2s_wait_cont = false;
			else if (r->idle_tag[0] != '\0')
				r->idle_active = true;
			break;
		case IMAP_RESP_UNTAGGED:
			if (resp.status == IMAP_STATUS_BYE)
				r->upstream_bye = true;
			if (r->select_tag[0] != '\0' && resp.status == IMAP_STATUS_OK &&
			    imap_response_code_is(&resp, "UIDVALIDITY"))
				r->selecting.uidvalidity = imap_relay_parse_u32(resp.code_args,
										resp.code_args_len);
			break;
		}
		bool caps = (resp.kind == IMAP_RESP_UNTAGGED &&
			     strcmp(resp.keyword, "CAPABILITY") == 0) ||
			imap_response_code_is(&resp, "CAPABILITY");
		if (caps && !fr->line_end) {
			/* A capability list has no place for a literal; passing
			 * it on unfiltered could announce COMPRESS. */
			imap_relay_bye(r, "[UNAVAILABLE] The provider sent an invalid response (literal in CAPABILITY).");
			imap_relay_end(r, "provider protocol error: literal in a CAPABILITY response");
			return -1;
		}
		if (caps) {
			size_t size = fr->len + 64;
			char *out = malloc(size);
			if (out == NULL) {
				imap_relay_end(r, "out of memory");
				return -1;
			}
			int n = imap_capability_rewrite_line(fr->data, fr->len, &r->caps_ctx,
							     out, size);
			if (n < 0) {
				/* Never pass an unfiltered capability list on. */
				free(out);
				imap_relay_end(r, "cannot filter the provider's capabilities");
				return -1;
			}
			int ret = n > 0 ? conn_write(r->client, out, (size_t)n) :
				conn_write(r->client, fr->data, fr->len);
			free(out);
			if (ret < 0) {
				imap_relay_end(r, "writing to the client: %s",
					       conn_last_error(r->client));
				return -1;
			}
			return 0;
		}
	}
	if (conn_write(r->client, fr->data, fr->len) < 0) {
		imap_relay_end(r, "writing to the client: %s", conn_last_error(r->client));
		return -1;
	}
	return 0;
}

static int imap_relay_pump_upstream(imap_relay *r)
{
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(r->upstream, &len);
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&r->s2c, data, len, &fr, &error);
		if (ret == IMAP_PARSE_MORE)
			return 0;
		if (ret == IMAP_PARSE_ERROR) {
			char text[160];
			snprintf(text, sizeof(text),
				 "[UNAVAILABLE] The provider sent an invalid response (%s).", error);
			imap_relay_bye(r, text);
			imap_relay_end(r, "provider protocol error: %s", error);
			return -1;
		}
		int wret;
		if (fr.type == IMAP_FRAME_TEXT && fr.line_start) {
			wret = imap_relay_upstream_line(r, &fr);
		} else {
			wret = conn_write(r->client, fr.data, fr.len);
			if (wret < 0)
				imap_relay_end(r, "writing to the client: %s",
					       conn_last_error(r->client));
		}
		if (wret < 0)
			return -1;
		r->client_mid_line = fr.type == IMAP_FRAME_LITERAL || !fr.line_end;
		conn_consume(r->upstream, fr.len);
		r->result->bytes_from_upstream += fr.len;
		if (imap_relay_flush_local(r) < 0)
			return -1;
	}
}

/* ---- client -> provider ----------------------------------------------------- */

/* After a local reply to a command that will not be forwarded: drop the
 * rest of it. A synchronizing literal will never come (the client got a
 * tagged reply instead of "+"); non-synchronizing ones are on their way. */
static void imap_relay_drop_rest(imap_relay *r, const imap_frame *fr)
{
	if (fr->line_end)
		return;
	if (fr->literal_sync)
		imap_framer_cancel_literal(&r->c2s);
	else
		r->c2s_discard = true;
}

/* SELECT {n}: the mailbox name is the literal that follows. */
static bool imap_relay_literal_name(const imap_frame *fr, const imap_command *cmd)
{
	imap_tokenizer t;
	imap_token tok;
	const char *error;
	if (cmd->args_pos > fr->len)
		return false;
	imap_tokenizer_init(&t, fr->data + cmd->args_pos, fr->len - cmd->args_pos, 1);
	return imap_tokenizer_next(&t, &tok, &error) == 0 && tok.type == IMAP_TOKEN_LITERAL &&
		tok.data == NULL && tok.literal_size <= sizeof(((imap_decrypt_mailbox *)0)->name);
}

/* The bytes of a SELECT's literal mailbox name as they pass. */
static void imap_relay_select_literal(imap_relay *r, const imap_frame *fr)
{
	imap_decrypt_mailbox *mb = &r->selecting;
	if (fr->type == IMAP_FRAME_LITERAL && r->select_literal == 1) {
		if (fr->len > sizeof(mb->name) - mb->name_len) {
			r->select_literal = 0;
			return;
		}
		memcpy(mb->name + mb->name_len, fr->data, fr->len);
		mb->name_len += fr->len;
		if (fr->literal_end) {
			r->select_literal = 2;
			if (mb->name_len == 5 && strncasecmp((const char *)mb->name, "INBOX", 5) == 0)
				memcpy(mb->name, "INBOX", 5);
		}
	} else if (fr->type == IMAP_FRAME_TEXT && fr->line_end) {
		if (r->select_literal == 2)
			snprintf(r->select_tag, sizeof(r->select_tag), "%s", r->cur_tag);
		r->select_literal = 0;
	}
}

/* What the APPEND being received wants after a frame. */
static int imap_relay_append_status(imap_relay *r, const imap_frame *fr,
				    imap_append_status st, const char *reply)
{
	switch (st) {
	case IMAP_APPEND_MORE:
		return 0;
	case IMAP_APPEND_CONTINUE:
		return imap_relay_local_reply(r, "+ Ready for literal data.\r\n");
	case IMAP_APPEND_COMPLETE:
		r->pending_append = r->append;
		r->append = NULL;
		return 0;
	case IMAP_APPEND_REFUSED:
		break;
	}
	if (fr->type == IMAP_FRAME_LITERAL)
		r->c2s_discard = true;
	else
		imap_relay_drop_rest(r, fr);
	/* reply may live in the APPEND's state: answer first. */
	int ret = imap_relay_local_reply(r, "%s %s\r\n", r->cur_tag, reply);
	imap_append_free(&r->append);
	return ret;
}

/* The first fragment of a client command: forward it, or answer it here. */
static int imap_relay_client_command(imap_relay *r, const imap_frame *fr,
				     bool *forward_r)
{
	*forward_r = false;
	if (r->idle_pending) {
		/* The line after IDLE is its DONE, whatever it looks like. */
		r->idle_pending = false;
		r->cur_tag[0] = '\0';
		*forward_r = true;
		return 0;
	}
	imap_command cmd;
	const char *error;
	if (imap_parser_command(fr->data, fr->len, &cmd, &error) < 0) {
		r->cur_tag[0] = '\0';
		imap_relay_drop_rest(r, fr);
		if (fr->len <= 2 && fr->line_end)
			return 0;	/* an empty line: nothing to answer */
		log_info(r->env->id, "relaying", "client sent an invalid command: %s", error);
		return imap_relay_local_reply(r, "* BAD Invalid command: %s.\r\n", error);
	}
	imap_relay_copy_tag(r->cur_tag, cmd.tag, cmd.tag_len);
	r->select_literal = 0;
	if (strcmp(cmd.name, "COMPRESS") == 0) {
		imap_relay_drop_rest(r, fr);
		log_info(r->env->id, "relaying", "refusing COMPRESS");
		return imap_relay_local_reply(r, "%s NO Compression is not available.\r\n",
					      r->cur_tag);
	}
	if (strcmp(cmd.name, "STARTTLS") == 0) {
		imap_relay_drop_rest(r, fr);
		return imap_relay_local_reply(r, "%s BAD STARTTLS is only possible before login.\r\n",
					      r->cur_tag);
	}
	if (strcmp(cmd.name, "SELECT") == 0 || strcmp(cmd.name, "EXAMINE") == 0) {
		/* Selecting deselects, whether or not the new one opens. */
		r->mailbox.selected = false;
		r->select_tag[0] = '\0';
		memset(&r->selecting, 0, sizeof(r->selecting));
		r->selecting.read_only = strcmp(cmd.name, "EXAMINE") == 0;
		r->select_literal = 0;
		if (fr->line_end &&
		    imap_decrypt_mailbox_name(fr->data, fr->len, &cmd, &r->selecting) == 0)
			snprintf(r->select_tag, sizeof(r->select_tag), "%s", r->cur_tag);
		else if (!fr->line_end && imap_relay_literal_name(fr, &cmd))
			r->select_literal = 1;
		else
			log_info(r->env->id, "relaying",
				 "mailbox name not readable: its encrypted messages stay encrypted");
	} else if (strcmp(cmd.name, "CLOSE") == 0 || strcmp(cmd.name, "UNSELECT") == 0) {
		r->mailbox.selected = false;
	} else if (strcmp(cmd.name, "FETCH") == 0 || strcmp(cmd.name, "UID FETCH") == 0) {
		/* A SELECT still in flight counts: pipelining clients send
		 * their FETCH before its answer. */
		imap_decrypt_mailbox mb = r->mailbox;
		mb.selected = mb.selected || r->select_tag[0] != '\0';
		if (mb.selected && r->env->account->decrypt && !fr->line_end) {
			imap_relay_drop_rest(r, fr);
			return imap_relay_local_reply(r, "%s BAD Literals in FETCH are not supported.\r\n",
						      r->cur_tag);
		}
		const char *derror;
		switch (imap_decrypt_check_command(r->env, &mb, fr->data, fr->len, &cmd, &derror)) {
		case IMAP_DECRYPT_PASS:
			break;
		case IMAP_DECRYPT_BAD:
			return imap_relay_local_reply(r, "%s BAD %.100s.\r\n", r->cur_tag, derror);
		case IMAP_DECRYPT_TAKE:
			r->pending_fetch = malloc(fr->len);
			if (r->pending_fetch == NULL) {
				imap_relay_end(r, "out of memory");
				return -1;
			}
			memcpy(r->pending_fetch, fr->data, fr->len);
			r->pending_fetch_len = fr->len;
			return 0;
		}
	}
	if (strcmp(cmd.name, "APPEND") == 0) {
		/* Every APPEND is looked at: even with encrypt_append off, a
		 * decrypted view must not go up as it is. */
		r->append = imap_append_new(r->env, cmd.tag, cmd.tag_len);
		const char *reply;
		imap_append_status st = imap_append_feed(r->append, fr, cmd.args_pos, &reply);
		return imap_relay_append_status(r, fr, st, reply);
	}
	if (strcmp(cmd.name, "IDLE") == 0) {
		r->idle_pending = true;
		r->idle_active = false;
		snprintf(r->idle_tag, sizeof(r->idle_tag), "%s", r->cur_tag);
	} else if (strcmp(cmd.name, "LOGOUT") == 0) {
		r->logout_sent = true;
	}
	r->outstanding++;
	*forward_r = true;
	return 0;
}

/* Oversize input from the client: a tagged BAD when the command's tag can
 * be read, then BYE; the session ends. */
static void imap_relay_client_error(imap_relay *r, const uint8_t *data, size_t len,
				    bool at_line_start, const char *error)
{
	bool line = strcmp(error, "line too long") == 0;
	bool literal = strcmp(error, "literal too large") == 0;
	uint64_t limit = line ? (uint64_t)r->c2s.max_line : r->c2s.max_literal;
	char text[160];
	snprintf(text, sizeof(text), "%s (limit %llu bytes)",
		 line ? "Command line too long" : literal ? "Literal too large" : error,
		 (unsigned long long)limit);
	imap_command cmd;
	const char *perror;
	if (at_line_start && !r->idle_pending &&
	    imap_parser_command(data, len < 512 ? len : 512, &cmd, &perror) == 0) {
		char tag[IMAP_TAG_MAX + 1];
		imap_relay_copy_tag(tag, cmd.tag, cmd.tag_len);
		imap_relay_local_reply(r, "%s BAD %s.\r\n", tag, text);
	}
	char bye[200];
	snprintf(bye, sizeof(bye), "%s, closing the connection.", text);
	imap_relay_bye(r, bye);
	imap_relay_end(r, "client protocol error: %s", error);
	r->result->client_error = true;
}

/* A synchronizing literal of an APPEND larger than max_literal_size: it is
 * refused with a tagged NO instead of "+", so the client does not send it
 * and the session goes on. True when handled (the fragment is consumed). */
static bool imap_relay_append_too_large(imap_relay *r, const uint8_t *data, size_t len,
					bool at_line_start, const char *error)
{
	if (strcmp(error, "literal too large") != 0 || r->idle_pending)
		return false;
	const uint8_t *lf = memchr(data, '\n', len);
	if (lf == NULL)
		return false;
	size_t n = (size_t)(lf - data) + 1;
	/* "...{N}\r\n": synchronizing, no '+' before the brace. */
	size_t end = n - 1;
	if (end > 0 && data[end - 1] == '\r')
		end--;
	if (end < 3 || data[end - 1] != '}' || data[end - 2] == '+')
		return false;
	char tag[IMAP_TAG_MAX + 1];
	if (at_line_start) {
		imap_command cmd;
		const char *perror;
		if (imap_parser_command(data, n, &cmd, &perror) < 0 || strcmp(cmd.name, "APPEND") != 0)
			return false;
		imap_relay_copy_tag(tag, cmd.tag, cmd.tag_len);
	} else if (r->append != NULL) {
		snprintf(tag, sizeof(tag), "%s", r->cur_tag);
		imap_append_free(&r->append);
	} else {
		return false;
	}
	log_info(r->env->id, "receiving APPEND", "refused: literal larger than %llu bytes",
		 (unsigned long long)r->c2s.max_literal);
	/* The client's command ends with the refused literal. */
	conn_consume(r->client, n);
	r->result->bytes_from_client += n;
	imap_framer_init(&r->c2s, r->c2s.max_line, r->c2s.max_literal);
	return imap_relay_local_reply(r, "%s NO [TOOBIG] Message too large (limit %llu bytes).\r\n",
				      tag, (unsigned long long)r->c2s.max_literal) == 0;
}

static int imap_relay_pump_client(imap_relay *r)
{
	while (!r->c2s_wait_cont && r->pending_fetch == NULL && r->pending_append == NULL &&
	       r->local_len + IMAP_RELAY_LOCAL_REPLY_MAX <= sizeof(r->local)) {
		size_t len;
		const uint8_t *data = conn_input(r->client, &len);
		imap_frame fr;
		const char *error;
		bool at_line_start = imap_framer_at_line_start(&r->c2s);
		imap_parse_result ret = imap_framer_next(&r->c2s, data, len, &fr, &error);
		if (ret == IMAP_PARSE_MORE)
			return 0;
		if (ret == IMAP_PARSE_ERROR) {
			if (imap_relay_append_too_large(r, data, len, at_line_start, error))
				continue;
			imap_relay_client_error(r, data, len, at_line_start, error);
			return -1;
		}
		bool forward;
		if (fr.type == IMAP_FRAME_TEXT && fr.line_start) {
			r->c2s_discard = false;
			if (imap_relay_client_command(r, &fr, &forward) < 0)
				return -1;
		} else if (r->append != NULL) {
			forward = false;
			const char *reply;
			imap_append_status st = imap_append_feed(r->append, &fr, 0, &reply);
			if (imap_relay_append_status(r, &fr, st, reply) < 0)
				return -1;
		} else if (r->c2s_discard) {
			forward = false;
			if (fr.type == IMAP_FRAME_TEXT && !fr.line_end && fr.literal_sync)
				imap_framer_cancel_literal(&r->c2s);
			if (fr.type == IMAP_FRAME_TEXT && fr.line_end)
				r->c2s_discard = false;
		} else {
			forward = true;
			if (r->select_literal != 0)
				imap_relay_select_literal(r, &fr);
		}
		if (forward) {
			if (conn_write(r->upstream, fr.data, fr.len) < 0) {
				imap_relay_end(r, "writing to the provider: %s",
					       conn_last_error(r->upstream));
				return -1;
			}
			r->last_upstream_activity = imap_relay_now_ms();
			if (fr.type == IMAP_FRAME_TEXT && !fr.line_end && fr.literal_sync) {
				r->c2s_wait_cont = true;
				snprintf(r->wait_tag, sizeof(r->wait_tag), "%s", r->cur_tag);
			}
		}
		conn_consume(r->client, fr.len);
		r->result->bytes_from_client += fr.len;
	}
	return 0;
}

/* ---- the loop --------------------------------------------------------------- */

/* Reads what is there without waiting. >0 bytes read, 0 nothing now,
 * -1 the side is gone (reason set). */
static ssize_t imap_relay_fill(imap_relay *r, conn *c, bool from_client)
{
	ssize_t n = conn_fill_nowait(c);
	if (n > 0) {
		if (from_client)
			r->last_client_rx = imap_relay_now_ms();
		else
			r->last_upstream_activity = imap_relay_now_ms();
		return n;
	}
	if (n == -2)
		return 0;
	if (from_client) {
		if (n == 0)
			imap_relay_end(r, "client closed the connection");
		else
			imap_relay_end(r, "reading from the client: %s", conn_last_error(c));
	} else if (n == 0) {
		if (r->client_mid_line) {
			imap_relay_end(r, "provider closed the connection in mid-response");
		} else if (r->logout_sent) {
			imap_relay_end(r, "logged out");
		} else {
			if (!r->upstream_bye)
				imap_relay_bye(r, "[UNAVAILABLE] The provider closed the connection.");
			imap_relay_end(r, "provider closed the connection%s",
				       r->upstream_bye ? " (BYE)" : "");
		}
	} else {
		imap_relay_bye(r, "[UNAVAILABLE] Lost the connection to the provider.");
		imap_relay_end(r, "reading from the provider: %s", conn_last_error(c));
	}
	return -1;
}

static bool imap_relay_client_paused(const imap_relay *r)
{
	return r->c2s_wait_cont || r->pending_fetch != NULL || r->pending_append != NULL ||
		r->local_len + IMAP_RELAY_LOCAL_REPLY_MAX > sizeof(r->local);
}

/* The pending FETCH, answered by imap_decrypt while nothing else is in
 * flight; then the relay goes on where it was. */
static int imap_relay_run_fetch(imap_relay *r)
{
	if (imap_relay_flush_local(r) < 0)
		return -1;
	if (!r->mailbox.selected) {
		/* The SELECT it was sent after failed: the provider answers. */
		int wret = conn_write(r->upstream, r->pending_fetch, r->pending_fetch_len);
		free(r->pending_fetch);
		r->pending_fetch = NULL;
		if (wret < 0) {
			imap_relay_end(r, "writing to the provider: %s", conn_last_error(r->upstream));
			return -1;
		}
		r->outstanding++;
		r->last_upstream_activity = imap_relay_now_ms();
		return 0;
	}
	char error[256];
	int ret = imap_decrypt_fetch(r->env, &r->mailbox, r->client, r->upstream,
				     r->pending_fetch, r->pending_fetch_len, error, sizeof(error));
	free(r->pending_fetch);
	r->pending_fetch = NULL;
	/* imap_decrypt read whole responses: the provider's stream is at a
	 * line start again, whatever this framer had scanned before. */
	imap_framer_init(&r->s2c, r->s2c.max_line, r->s2c.max_literal);
	r->last_upstream_activity = imap_relay_now_ms();
	if (ret < 0) {
		imap_relay_end(r, "serving a FETCH: %s", error);
		return -1;
	}
	return 0;
}

/* The complete APPEND, prepared and sent while nothing else is in flight;
 * the provider's tagged reply then comes through the relay. */
static int imap_relay_run_append(imap_relay *r)
{
	if (imap_relay_flush_local(r) < 0)
		return -1;
	char error[256];
	bool sent;
	int ret = imap_append_run(r->pending_append, r->client, r->upstream, &sent, error,
				  sizeof(error));
	imap_append_free(&r->pending_append);
	/* Whole responses were read: the provider's stream is at a line start. */
	imap_framer_init(&r->s2c, r->s2c.max_line, r->s2c.max_literal);
	r->last_upstream_activity = imap_relay_now_ms();
	if (ret < 0) {
		imap_relay_end(r, "serving an APPEND: %s", error);
		return -1;
	}
	if (sent)
		r->outstanding++;
	return 0;
}

void imap_relay_run(const session_env *env, conn *client, conn *upstream,
		    imap_relay_result *result_r)
{
	const config_limits *limits = &env->cfg->limits;
	imap_relay *r = calloc(1, sizeof(*r));
	memset(result_r, 0, sizeof(*result_r));
	if (r == NULL) {
		snprintf(result_r->reason, sizeof(result_r->reason), "out of memory");
		return;
	}
	r->env = env;
	r->client = client;
	r->upstream = upstream;
	r->result = result_r;
	imap_framer_init(&r->c2s, limits->max_line, limits->max_literal);
	/* Provider lines are only inspected at their start, and SEARCH,
	 * ESEARCH or VANISHED results of a big mailbox are long and
	 * legitimate: allow far more than on the client side, still bounded
	 * below the input buffer's ceiling. */
	size_t s2c_max_line = limits->max_line > IMAP_RELAY_PROVIDER_MAX_LINE ?
		limits->max_line : IMAP_RELAY_PROVIDER_MAX_LINE;
	imap_framer_init(&r->s2c, s2c_max_line, limits->max_literal);
	r->caps_ctx.pre_auth = false;
	r->caps_ctx.client_tls = conn_is_tls(client);
	/* A client that stops reading for this long is gone. */
	conn_set_timeout(client, (int)limits->command_timeout * 1000);
	conn_set_timeout(upstream, (int)limits->command_timeout * 1000);
	r->last_client_rx = r->last_upstream_activity = imap_relay_now_ms();
	log_info(env->id, "relaying", "client %s <-> provider %s", env->client_desc,
		 conn_desc(upstream));

	/* Which sides to read: both at first (login may have left pipelined
	 * input), later the ones poll() reports. After a large read a side is
	 * read again until it would block, so bulk data is batched; after a
	 * small one (a command, a reply) only if something may still wait
	 * inside TLS, which poll() cannot see. Either way nothing is left
	 * unseen when poll() is asked. */
	bool read_up = true, read_client = true;
	bool recheck_up = false, recheck_client = false;
	for (;;) {
		bool was_paused = imap_relay_client_paused(r);
		if (imap_relay_pump_upstream(r) < 0 || imap_relay_pump_client(r) < 0)
			goto out;
		if (r->pending_fetch != NULL && r->outstanding == 0 && !r->client_mid_line) {
			if (imap_relay_run_fetch(r) < 0)
				goto out;
			read_up = read_client = true;
			continue;
		}
		if (r->pending_append != NULL && r->outstanding == 0 && !r->client_mid_line) {
			if (imap_relay_run_append(r) < 0)
				goto out;
			read_up = read_client = true;
			continue;
		}
		if (was_paused && !imap_relay_client_paused(r))
			read_client = true;
		/* Input left after pumping is a partial frame; it hides whether
		 * TLS holds more, so such a side is read once more. */
		if (recheck_up)
			read_up = read_up || conn_has_pending(upstream);
		if (recheck_client)
			read_client = read_client || conn_has_pending(client);
		recheck_up = recheck_client = false;
		bool got = false;
		if (read_up) {
			ssize_t n = imap_relay_fill(r, upstream, false);
			if (n < 0)
				goto out;
			got = got || n > 0;
			read_up = n >= IMAP_RELAY_BULK_READ;
			recheck_up = n > 0 && !read_up;
		}
		if (read_client && !imap_relay_client_paused(r)) {
			ssize_t n = imap_relay_fill(r, client, true);
			if (n < 0)
				goto out;
			got = got || n > 0;
			read_client = n >= IMAP_RELAY_BULK_READ;
			recheck_client = n > 0 && !read_client;
		}
		/* Output leaves when the input side has nothing more, so bulk
		 * data goes out in large writes and a lone reply at once. */
		if (got)
			continue;
		if (conn_flush(client) < 0) {
			imap_relay_end(r, "writing to the client: %s", conn_last_error(client));
			goto out;
		}
		if (conn_flush(upstream) < 0) {
			imap_relay_end(r, "writing to the provider: %s", conn_last_error(upstream));
			goto out;
		}

		/* While commands are outstanding the provider owes an answer;
		 * otherwise (and during IDLE) the client owes activity. */
		bool upstream_owes = r->outstanding > 0 && !r->idle_active;
		int64_t deadline = upstream_owes ?
			r->last_upstream_activity + (int64_t)limits->command_timeout * 1000 :
			r->last_client_rx + (int64_t)limits->idle_timeout * 1000;
		int64_t left = deadline - imap_relay_now_ms();
		if (left <= 0) {
			if (upstream_owes) {
				imap_relay_bye(r, "[UNAVAILABLE] The provider did not answer in time.");
				imap_relay_end(r, "provider did not answer within %u s",
					       limits->command_timeout);
			} else {
				imap_relay_bye(r, "Idle for too long, closing the connection.");
				imap_relay_end(r, "client idle for %u s", limits->idle_timeout);
			}
			conn_flush(client);
			goto out;
		}
		/* Both sides were read until they would block, so nothing is
		 * hidden in a TLS buffer: the sockets tell the truth. */
		struct pollfd pfd[2] = {
			{ .fd = conn_fd(upstream), .events = POLLIN },
			{ .fd = conn_fd(client), .events = POLLIN },
		};
		nfds_t nfds = imap_relay_client_paused(r) ? 1 : 2;
		int ret = poll(pfd, nfds, left > 60000 ? 60000 : (int)left);
		if (ret < 0 && errno != EINTR) {
			imap_relay_end(r, "poll: %s", strerror(errno));
			goto out;
		}
		read_up = ret > 0 && pfd[0].revents != 0;
		read_client = ret > 0 && nfds == 2 && pfd[1].revents != 0;
	}
out:
	conn_flush(client);
	free(r->pending_fetch);
	imap_append_free(&r->append);
	imap_append_free(&r->pending_append);
	free(r);
}
