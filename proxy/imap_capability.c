/* imap_capability: filtering of CAPABILITY lists and of the lines that
 * carry them, so the client never negotiates something sealpost cannot
 * see through. Pure functions, no sockets. */
#include "imap_capability.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "imap_parser.h"

/* Removed whatever the provider says. A name ending in '=' matches every
 * "NAME=value"; one ending in '*' matches every name with that prefix. */
static const char *const imap_capability_denied[] = {
	/* Compression would hide every later byte from sealpost. */
	"COMPRESS=",
	/* Binary content and literal8 APPEND bypass the MIME-level
	 * decryption and encryption of later stages. */
	"BINARY",
	/* Messages assembled or fetched by the provider itself, where
	 * sealpost cannot see the content: CATENATE builds messages from
	 * server-side parts, URLAUTH lets third parties fetch content. */
	"CATENATE",
	"URLAUTH",
	"URLAUTH=",
	"URL-PARTIAL",
	/* Previews are computed by the provider from (encrypted) content. */
	"SNIPPET=",
	"PREVIEW",
	"PREVIEW=",
	/* NOTIFY can push FETCH data of content no client command asked
	 * for, around sealpost's handling of FETCH. */
	"NOTIFY",
	/* Referrals send the client to another server, around sealpost. */
	"LOGIN-REFERRALS",
	"MAILBOX-REFERRALS",
	/* Back to not-authenticated inside one relayed session: a second
	 * login would bypass sealpost's login phase. */
	"UNAUTHENTICATE",
	/* These describe a connection leg and are set by the context. */
	"STARTTLS",
	"LOGINDISABLED",
};

static bool imap_capability_denied_atom(const char *atom, size_t len)
{
	/* Channel binding (SCRAM-*-PLUS) would bind the client to its TLS
	 * session with sealpost, which the provider never sees: such a
	 * login always fails, so do not offer it. */
	if (len > 10 && strncasecmp(atom, "AUTH=", 5) == 0 &&
	    strncasecmp(atom + len - 5, "-PLUS", 5) == 0)
		return true;
	for (size_t i = 0; i < sizeof(imap_capability_denied) / sizeof(imap_capability_denied[0]); i++) {
		const char *d = imap_capability_denied[i];
		size_t dlen = strlen(d);
		if (d[dlen - 1] == '=') {
			if (len >= dlen && strncasecmp(atom, d, dlen) == 0)
				return true;
		} else if (len == dlen && strncasecmp(atom, d, dlen) == 0) {
			return true;
		}
	}
	return false;
}

bool imap_capability_next(const char *caps, size_t *pos,
			  const char **atom_r, size_t *len_r)
{
	size_t i = *pos;
	while (caps[i] == ' ')
		i++;
	if (caps[i] == '\0')
		return false;
	size_t start = i;
	while (caps[i] != '\0' && caps[i] != ' ')
		i++;
	*atom_r = caps + start;
	*len_r = i - start;
	*pos = i;
	return true;
}

bool imap_capability_has(const char *caps, const char *name)
{
	size_t pos = 0, len, nlen = strlen(name);
	const char *atom;
	while (imap_capability_next(caps, &pos, &atom, &len)) {
		if (len == nlen && strncasecmp(atom, name, len) == 0)
			return true;
	}
	return false;
}

static int imap_capability_append(char *out, size_t out_size, size_t *used,
				  const char *atom, size_t len)
{
	size_t need = len + (*used > 0 ? 1 : 0);
	if (*used + need + 1 > out_size)
		return -1;
	if (*used > 0)
		out[(*used)++] = ' ';
	memcpy(out + *used, atom, len);
	*used += len;
	out[*used] = '\0';
	return 0;
}

static bool imap_capability_atom_char(uint8_t c)
{
	/* Capabilities are atoms: printable ASCII without specials. */
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

int imap_capability_filter(const uint8_t *caps, size_t len,
			   const imap_capability_context *ctx, char *out,
			   size_t out_size)
{
	size_t used = 0;
	bool plain_leg = ctx->pre_auth && !ctx->client_tls;
	bool login_disabled = plain_leg && !ctx->plaintext_auth_allowed;
	if (out_size == 0)
		return -1;
	out[0] = '\0';
	size_t i = 0;
	while (i < len) {
		while (i < len && caps[i] == ' ')
			i++;
		size_t start = i;
		while (i < len && caps[i] != ' ')
			i++;
		if (i == start)
			break;
		const char *atom = (const char *)caps + start;
		size_t alen = i - start;
		bool valid = true;
		for (size_t k = 0; k < alen; k++)
			valid = valid && imap_capability_atom_char(caps[start + k]);
		/* Anything that is not a plain atom could break the line it is
		 * written into; it cannot be a capability a client needs. */
		if (!valid || imap_capability_denied_atom(atom, alen))
			continue;
		if (login_disabled && alen >= 5 && strncasecmp(atom, "AUTH=", 5) == 0)
			continue;
		if (imap_capability_append(out, out_size, &used, atom, alen) < 0)
			return -1;
	}
	if (plain_leg && imap_capability_append(out, out_size, &used, "STARTTLS", 8) < 0)
		return -1;
	if (login_disabled &&
	    imap_capability_append(out, out_size, &used, "LOGINDISABLED", 13) < 0)
		return -1;
	return (int)used;
}

int imap_capability_rewrite_line(const uint8_t *line, size_t len,
				 const imap_capability_context *ctx, char *out,
				 size_t out_size)
{
	imap_response resp;
	const char *error;
	if (imap_parser_response(line, len, &resp, &error) < 0)
		return 0;
	const uint8_t *caps;
	size_t caps_len;
	if (resp.kind == IMAP_RESP_UNTAGGED && resp.status == IMAP_STATUS_NONE &&
	    strcmp(resp.keyword, "CAPABILITY") == 0) {
		caps = line + resp.args_pos;
		const uint8_t *lf = memchr(caps, '\n', len - resp.args_pos);
		caps_len = lf != NULL ? (size_t)(lf - caps) : len - resp.args_pos;
		if (caps_len > 0 && caps[caps_len - 1] == '\r')
			caps_len--;
	} else if (resp.status != IMAP_STATUS_NONE &&
		   imap_response_code_is(&resp, "CAPABILITY")) {
		if (resp.code_args == NULL)
			return 0;	/* "[CAPABILITY]" alone: nothing to filter */
		caps = resp.code_args;
		caps_len = resp.code_args_len;
	} else {
		return 0;
	}
	/* Everything before the list, the filtered list, everything after. */
	size_t prefix = (size_t)(caps - line);
	size_t suffix_pos = prefix + caps_len;
	if (out_size < len + 64)
		return -1;
	memcpy(out, line, prefix);
	int n = imap_capability_filter(caps, caps_len, ctx, out + prefix,
				       out_size - prefix);
	if (n < 0 || prefix + (size_t)n + (len - suffix_pos) > out_size)
		return -1;
	memcpy(out + prefix + (size_t)n, line + suffix_pos, len - suffix_pos);
	return (int)(prefix + (size_t)n + (len - suffix_pos));
}
