/* outbound: the header block of an outgoing message read field by field,
 * and the three ways it leaves — as written, signed, or encrypted — streamed
 * from the spooled body through gpg, never held whole in memory. */
#include "outbound.h"

#include <errno.h>
#include <glib.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gpgproc.h"

#define CRYPTO_IO_CHUNK (64 * 1024)

struct crypto_outbound_header {
	uint8_t *block;			/* our copy of the header block */
	size_t block_len;
	bool blank;			/* it ended with an empty line */
	crypto_header_field *fields;
	size_t n_fields;
	char *from;
	char *message_id;
	GPtrArray *named;		/* To and Cc mailboxes */
	bool encrypted;
	bool has_autocrypt;
	GPtrArray *encrypt_values, *sign_values;	/* X-Sealpost-* as set */
	char *content_type_raw;		/* NULL: none */
	bool ct_has_protected, ct_has_hp;
};

/* ---- the header block ------------------------------------------------------ */

/* A field name: printable US-ASCII except ':' up to the colon. */
static size_t crypto_field_name_len(const uint8_t *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = line[i];
		if (c == ':')
			return i;
		if (c < 33 || c > 126)
			return 0;
	}
	return 0;
}

int crypto_header_block_end(const uint8_t *data, size_t len, bool at_end,
			    size_t *len_r, bool *blank_r)
{
	size_t pos = 0;
	while (pos < len) {
		const uint8_t *nl = memchr(data + pos, '\n', len - pos);
		if (nl == NULL)
			break;
		size_t line_len = (size_t)(nl - (data + pos)) + 1;
		const uint8_t *line = data + pos;
		if (line_len == 2 && line[0] == '\r') {
			*len_r = pos + 2;
			*blank_r = true;
			return 1;
		}
		bool continuation = line[0] == ' ' || line[0] == '\t';
		if ((continuation && pos == 0) ||
		    (!continuation && crypto_field_name_len(line, line_len) == 0)) {
			*len_r = pos;
			*blank_r = false;
			return 1;
		}
		pos += line_len;
	}
	if (!at_end)
		return 0;
	*len_r = len;
	*blank_r = false;
	return 1;
}

static bool crypto_field_is(const crypto_header_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && g_ascii_strncasecmp(f->raw, name, n) == 0;
}

static bool crypto_field_is_sealpost(const crypto_header_field *f)
{
	return f->name_len > 11 && g_ascii_strncasecmp(f->raw, "X-Sealpost-", 11) == 0;
}

/* Dropped from every copy that leaves. */
static bool crypto_field_dropped(const crypto_header_field *f)
{
	return crypto_field_is_sealpost(f) || crypto_field_is(f, "Bcc") ||
		crypto_field_is(f, "Resent-Bcc");
}

/* The value unfolded: continuation line ends removed, surrounding blanks
 * trimmed. g_free. */
static char *crypto_field_value(const crypto_header_field *f)
{
	const char *v = f->raw + f->name_len + 1;
	size_t n = f->raw_len - f->name_len - 1;
	GString *s = g_string_sized_new(n);
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\r' || v[i] == '\n')
			continue;
		g_string_append_c(s, v[i]);
	}
	char *out = g_string_free(s, FALSE);
	return g_strstrip(out);
}

static void crypto_collect_mailboxes(InternetAddressList *list, GPtrArray *out)
{
	int n = list != NULL ? internet_address_list_length(list) : 0;
	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
			if (addr != NULL && *addr != '\0')
				g_ptr_array_add(out, g_strdup(addr));
		} else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			crypto_collect_mailboxes(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
						 out);
		}
	}
}

static void crypto_parse_addresses(const char *value, GPtrArray *out)
{
	InternetAddressList *list = internet_address_list_parse(NULL, value);
	if (list == NULL)
		return;
	crypto_collect_mailboxes(list, out);
	g_object_unref(list);
}

static bool crypto_armored_pgp(const uint8_t *p, size_t len)
{
	static const char marker[] = "-----BEGIN PGP MESSAGE-----";
	size_t i = 0;
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	return len - i >= sizeof(marker) - 1 && memcmp(p + i, marker, sizeof(marker) - 1) == 0;
}

static void crypto_outbound_header_understand(crypto_outbound_header *h,
					      const uint8_t *body_prefix,
					      size_t prefix_len)
{
	bool is_text = true;
	for (size_t i = 0; i < h->n_fields; i++) {
		const crypto_header_field *f = &h->fields[i];
		if (f->name_len == 0)
			continue;
		if (crypto_field_is(f, "From") && h->from == NULL) {
			char *v = crypto_field_value(f);
			GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
			crypto_parse_addresses(v, a);
			if (a->len > 0)
				h->from = g_strdup(g_ptr_array_index(a, 0));
			g_ptr_array_unref(a);
			g_free(v);
		} else if (crypto_field_is(f, "To") || crypto_field_is(f, "Cc")) {
			char *v = crypto_field_value(f);
			crypto_parse_addresses(v, h->named);
			g_free(v);
		} else if (crypto_field_is(f, "Message-ID") && h->message_id == NULL) {
			char *v = crypto_field_value(f);
			char *p = v;
			if (*p == '<')
				p++;
			size_t n = strcspn(p, ">");
			if (n > 0 && n < 1000)
				h->message_id = g_strndup(p, n);
			g_free(v);
		} else if (crypto_field_is(f, "Autocrypt")) {
			h->has_autocrypt = true;
		} else if (crypto_field_is(f, "X-Sealpost-Encrypt")) {
			g_ptr_array_add(h->encrypt_values, crypto_field_value(f));
		} else if (crypto_field_is(f, "X-Sealpost-Sign")) {
			g_ptr_array_add(h->sign_values, crypto_field_value(f));
		} else if (crypto_field_is(f, "Content-Type") && h->content_type_raw == NULL) {
			h->content_type_raw = crypto_field_value(f);
			GMimeContentType *ct = g_mime_content_type_parse(NULL, h->content_type_raw);
			if (ct != NULL) {
				const char *type = g_mime_content_type_get_media_type(ct);
				const char *sub = g_mime_content_type_get_media_subtype(ct);
				if (type != NULL && sub != NULL) {
					is_text = g_ascii_strcasecmp(type, "text") == 0;
					if (g_ascii_strcasecmp(type, "multipart") == 0 &&
					    g_ascii_strcasecmp(sub, "encrypted") == 0)
						h->encrypted = true;
					if (g_ascii_strcasecmp(type, "application") == 0 &&
					    (g_ascii_strcasecmp(sub, "pkcs7-mime") == 0 ||
					     g_ascii_strcasecmp(sub, "x-pkcs7-mime") == 0))
						h->encrypted = true;
				}
				h->ct_has_protected =
					g_mime_content_type_get_parameter(ct, "protected-headers") != NULL;
				h->ct_has_hp = g_mime_content_type_get_parameter(ct, "hp") != NULL;
				g_object_unref(ct);
			}
		}
	}
	if (is_text && crypto_armored_pgp(body_prefix, prefix_len))
		h->encrypted = true;
}

crypto_outbound_header *crypto_outbound_header_parse(const uint8_t *block, size_t len,
						     bool blank,
						     const uint8_t *body_prefix,
						     size_t prefix_len)
{
	crypto_outbound_header *h = g_new0(crypto_outbound_header, 1);
	h->block = g_memdup2(block, len);
	h->block_len = len;
	h->blank = blank;
	h->named = g_ptr_array_new_with_free_func(g_free);
	h->encrypt_values = g_ptr_array_new_with_free_func(g_free);
	h->sign_values = g_ptr_array_new_with_free_func(g_free);
	size_t fields_len = blank && len >= 2 ? len - 2 : len;
	size_t cap = 0;
	size_t pos = 0;
	while (pos < fields_len) {
		const uint8_t *nl = memchr(h->block + pos, '\n', fields_len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - (h->block + pos)) + 1 : fields_len - pos;
		const uint8_t *line = h->block + pos;
		bool continuation = (line[0] == ' ' || line[0] == '\t') && h->n_fields > 0;
		if (continuation) {
			h->fields[h->n_fields - 1].raw_len += line_len;
		} else {
			if (h->n_fields == cap) {
				cap = cap == 0 ? 32 : cap * 2;
				h->fields = g_renew(crypto_header_field, h->fields, cap);
			}
			crypto_header_field *f = &h->fields[h->n_fields++];
			f->raw = (const char *)line;
			f->raw_len = line_len;
			f->name_len = crypto_field_name_len(line, line_len);
		}
		pos += line_len;
	}
	crypto_outbound_header_understand(h, body_prefix, prefix_len);
	return h;
}

void crypto_outbound_header_free(crypto_outbound_header **hp)
{
	crypto_outbound_header *h = *hp;
	if (h == NULL)
		return;
	g_free(h->block);
	g_free(h->fields);
	g_free(h->from);
	g_free(h->message_id);
	g_free(h->content_type_raw);
	g_ptr_array_unref(h->named);
	g_ptr_array_unref(h->encrypt_values);
	g_ptr_array_unref(h->sign_values);
	g_free(h);
	*hp = NULL;
}

size_t crypto_outbound_header_n_fields(const crypto_outbound_header *h)
{
	return h->n_fields;
}

const crypto_header_field *crypto_outbound_header_field(const crypto_outbound_header *h,
							 size_t i)
{
	return i < h->n_fields ? &h->fields[i] : NULL;
}

const char *crypto_outbound_header_from(const crypto_outbound_header *h)
{
	return h->from;
}

const char *crypto_outbound_header_message_id(const crypto_outbound_header *h)
{
	return h->message_id;
}

bool crypto_outbound_header_names(const crypto_outbound_header *h, const char *address)
{
	for (guint i = 0; i < h->named->len; i++)
		if (g_ascii_strcasecmp(g_ptr_array_index(h->named, i), address) == 0)
			return true;
	return false;
}

bool crypto_outbound_header_encrypted(const crypto_outbound_header *h)
{
	return h->encrypted;
}

bool crypto_outbound_header_has_autocrypt(const crypto_outbound_header *h)
{
	return h->has_autocrypt;
}

int crypto_outbound_header_requests(const crypto_outbound_header *h,
				    keystore_policy *policy_r, int *sign_r,
				    const char **error_r)
{
	static __thread char error[200];
	*policy_r = KEYSTORE_POLICY_NONE;
	*sign_r = -1;
	for (guint i = 0; i < h->encrypt_values->len; i++) {
		const char *v = g_ptr_array_index(h->encrypt_values, i);
		keystore_policy p;
		if (keystore_policy_parse(v, &p) < 0) {
			snprintf(error, sizeof(error), "X-Sealpost-Encrypt: unknown value '%.60s' "
				 "(expected require, opportunistic or never)", v);
			*error_r = error;
			return -1;
		}
		if (*policy_r != KEYSTORE_POLICY_NONE && *policy_r != p) {
			*error_r = "X-Sealpost-Encrypt appears twice with different values";
			return -1;
		}
		*policy_r = p;
	}
	for (guint i = 0; i < h->sign_values->len; i++) {
		const char *v = g_ptr_array_index(h->sign_values, i);
		int s;
		if (g_ascii_strcasecmp(v, "yes") == 0 || g_ascii_strcasecmp(v, "true") == 0)
			s = 1;
		else if (g_ascii_strcasecmp(v, "no") == 0 || g_ascii_strcasecmp(v, "false") == 0)
			s = 0;
		else {
			snprintf(error, sizeof(error), "X-Sealpost-Sign: unknown value '%.60s' "
				 "(expected yes or no)", v);
			*error_r = error;
			return -1;
		}
		if (*sign_r != -1 && *sign_r != s) {
			*error_r = "X-Sealpost-Sign appears twice with different values";
			return -1;
		}
		*sign_r = s;
	}
	return 0;
}

/* ---- output helpers --------------------------------------------------------- */

typedef struct {
	const crypto_sink *sink;
	bool failed;
} crypto_out;

static void crypto_put(crypto_out *o, const void *data, size_t len)
{
	if (o->failed || len == 0)
		return;
	if (o->sink->write(o->sink->ctx, data, len) < 0)
		o->failed = true;
}

static void crypto_puts(crypto_out *o, const char *s)
{
	crypto_put(o, s, strlen(s));
}

/* Copies the body from its source; false on a read failure. */
static bool crypto_copy_body(crypto_out *o, const crypto_source *body)
{
	char *buf = g_malloc(CRYPTO_IO_CHUNK);
	bool ok = true;
	for (;;) {
		ssize_t n = body->read(body->ctx, buf, CRYPTO_IO_CHUNK);
		if (n < 0) {
			ok = false;
			break;
		}
		if (n == 0)
			break;
		crypto_put(o, buf, (size_t)n);
		if (o->failed)
			break;
	}
	g_free(buf);
	return ok;
}

char *crypto_autocrypt_value(const char *addr, bool mutual,
			     const unsigned char *key, size_t key_len)
{
	char *b64 = g_base64_encode(key, key_len);
	char *v = g_strdup_printf("addr=%s; %skeydata=%s", addr,
				  mutual ? "prefer-encrypt=mutual; " : "", b64);
	g_free(b64);
	return v;
}

/* "Autocrypt: addr=...; keydata=" and the base64 folded in 76-character
 * lines, as RFC 5322 wants lines under 78. */
static void crypto_put_autocrypt(crypto_out *o, const char *value)
{
	const char *kd = strstr(value, "keydata=");
	if (kd == NULL)
		return;
	kd += 8;
	crypto_puts(o, "Autocrypt: ");
	crypto_put(o, value, (size_t)(kd - value));
	size_t n = strlen(kd);
	for (size_t i = 0; i < n; i += 76) {
		crypto_puts(o, "\r\n ");
		crypto_put(o, kd + i, n - i < 76 ? n - i : 76);
	}
	crypto_puts(o, "\r\n");
}

static bool crypto_want_autocrypt(const crypto_outbound_header *h,
				  const crypto_outbound_options *opts)
{
	return opts->autocrypt != NULL && !h->has_autocrypt;
}

int crypto_outbound_write_plain(const crypto_outbound_header *h,
				const crypto_outbound_options *opts,
				const crypto_source *body, const crypto_sink *sink,
				const char **error_r)
{
	crypto_out o = { sink, false };
	for (size_t i = 0; i < h->n_fields; i++) {
		const crypto_header_field *f = &h->fields[i];
		if (f->name_len > 0 && crypto_field_dropped(f))
			continue;
		crypto_put(&o, f->raw, f->raw_len);
	}
	if (crypto_want_autocrypt(h, opts))
		crypto_put_autocrypt(&o, opts->autocrypt);
	if (h->blank)
		crypto_puts(&o, "\r\n");
	if (!crypto_copy_body(&o, body)) {
		*error_r = "reading the spooled message failed";
		return -1;
	}
	if (o.failed) {
		*error_r = "writing the message failed";
		return -1;
	}
	return 0;
}

/* ---- the protected entity ----------------------------------------------------- */

/* Fields the outer header of an encrypted message keeps: what routing,
 * threading and replying need, nothing that says what it is about. */
static const char *const crypto_outer_fields[] = {
	"From", "Sender", "To", "Cc", "Reply-To", "Date", "Message-ID",
	"In-Reply-To", "References",
};

static bool crypto_field_outer(const crypto_header_field *f)
{
	for (size_t i = 0; i < G_N_ELEMENTS(crypto_outer_fields); i++)
		if (crypto_field_is(f, crypto_outer_fields[i]))
			return true;
	return false;
}

/* Appends raw without its final line end and trailing blanks. */
static void crypto_append_trimmed(GString *s, const char *raw, size_t len)
{
	while (len > 0 && (raw[len - 1] == '\r' || raw[len - 1] == '\n' ||
			   raw[len - 1] == ' ' || raw[len - 1] == '\t'))
		len--;
	g_string_append_len(s, raw, (gssize)len);
}

/* The header of the entity that is signed or encrypted: every field the
 * client wrote (RFC 9788 wraps them all), the Content-Type marked, and for
 * an encrypted message HP-Outer copies of what the outside shows. */
static GString *crypto_entity_header(const crypto_outbound_header *h, bool encrypted,
				     bool clear_subject, bool keep_bcc)
{
	GString *s = g_string_sized_new(h->block_len + 256);
	const char *hp = encrypted ? "cipher" : "clear";
	bool content_type_done = false;
	for (size_t i = 0; i < h->n_fields; i++) {
		const crypto_header_field *f = &h->fields[i];
		if (f->name_len == 0 || crypto_field_is(f, "Autocrypt"))
			continue;
		if (crypto_field_dropped(f) && !(keep_bcc && !crypto_field_is_sealpost(f)))
			continue;
		if (crypto_field_is(f, "Content-Type") && !content_type_done) {
			content_type_done = true;
			crypto_append_trimmed(s, f->raw, f->raw_len);
			if (!h->ct_has_protected)
				g_string_append(s, ";\r\n protected-headers=\"v1\"");
			if (!h->ct_has_hp)
				g_string_append_printf(s, ";\r\n hp=\"%s\"", hp);
			g_string_append(s, "\r\n");
			continue;
		}
		g_string_append_len(s, f->raw, (gssize)f->raw_len);
	}
	if (!content_type_done)
		g_string_append_printf(s, "Content-Type: text/plain; charset=us-ascii;\r\n"
				       " protected-headers=\"v1\"; hp=\"%s\"\r\n", hp);
	if (encrypted) {
		for (size_t i = 0; i < h->n_fields; i++) {
			const crypto_header_field *f = &h->fields[i];
			if (f->name_len == 0 || !crypto_field_outer(f))
				continue;
			g_string_append(s, "HP-Outer: ");
			g_string_append_len(s, f->raw, (gssize)f->raw_len);
		}
		for (size_t i = 0; i < h->n_fields; i++) {
			const crypto_header_field *f = &h->fields[i];
			if (f->name_len == 0 || !crypto_field_is(f, "Subject"))
				continue;
			if (clear_subject) {
				g_string_append(s, "HP-Outer: ");
				g_string_append_len(s, f->raw, (gssize)f->raw_len);
			} else {
				g_string_append(s, "HP-Outer: Subject: ...\r\n");
			}
			break;
		}
	}
	g_string_append(s, "\r\n");
	return s;
}

/* GPGME reads the entity: its header, then the body from the source. */
typedef struct {
	const char *head;
	size_t head_len, head_off;
	const crypto_source *body;
	bool failed;
} crypto_entity_reader;

static ssize_t crypto_entity_read(void *handle, void *buf, size_t size)
{
	crypto_entity_reader *r = handle;
	if (r->head_off < r->head_len) {
		size_t n = r->head_len - r->head_off;
		if (n > size)
			n = size;
		memcpy(buf, r->head + r->head_off, n);
		r->head_off += n;
		return (ssize_t)n;
	}
	ssize_t n = r->body->read(r->body->ctx, buf, size);
	if (n < 0) {
		r->failed = true;
		errno = EIO;
		return -1;
	}
	return n;
}

/* GPGME writes armored text with LF line ends; mail wants CRLF. */
typedef struct {
	crypto_out *out;
	bool last_cr;
} crypto_crlf_writer;

static ssize_t crypto_crlf_write(void *handle, const void *buf, size_t size)
{
	crypto_crlf_writer *w = handle;
	const char *p = buf;
	char tmp[8192];
	size_t t = 0;
	for (size_t i = 0; i < size; i++) {
		if (t + 2 > sizeof(tmp)) {
			crypto_put(w->out, tmp, t);
			t = 0;
		}
		if (p[i] == '\n' && !w->last_cr)
			tmp[t++] = '\r';
		tmp[t++] = p[i];
		w->last_cr = p[i] == '\r';
	}
	crypto_put(w->out, tmp, t);
	if (w->out->failed) {
		errno = EIO;
		return -1;
	}
	return (ssize_t)size;
}

static char *crypto_boundary(void)
{
	char *uuid = g_uuid_string_random();
	/* "=_" never occurs in base64 or quoted-printable text. */
	char *b = g_strdup_printf("=_sealpost_%s", uuid);
	g_free(uuid);
	return b;
}

static const char *crypto_gpg_error(gpgme_error_t err, const char *what,
				    crypto_failure *failure_r)
{
	static __thread char buf[256];
	gpgme_err_code_t code = gpgme_err_code(err);
	*failure_r = CRYPTO_FAIL_TEMPORARY;
	if (code == GPG_ERR_NO_SECKEY || code == GPG_ERR_BAD_PASSPHRASE ||
	    code == GPG_ERR_NO_PIN || code == GPG_ERR_CANCELED ||
	    code == GPG_ERR_NO_PASSPHRASE)
		snprintf(buf, sizeof(buf), "%s: the signing key is locked or unavailable (%s)",
			 what, gpgme_strerror(err));
	else
		snprintf(buf, sizeof(buf), "%s: %s", what, gpgme_strerror(err));
	return buf;
}

/* A detached signature is small; anything beyond this is not one. */
#define CRYPTO_MAX_SIGNATURE (64 * 1024)

typedef struct {
	GByteArray *buf;
	bool too_big;
} crypto_sig_buffer;

static ssize_t crypto_sig_write(void *handle, const void *buf, size_t size)
{
	crypto_sig_buffer *s = handle;
	if (size > CRYPTO_MAX_SIGNATURE - s->buf->len) {
		s->too_big = true;
		errno = EFBIG;
		return -1;
	}
	g_byte_array_append(s->buf, buf, (guint)size);
	return (ssize_t)size;
}

/* Runs the GPGME operation: in a worker process when w is remote (keys go
 * there by fingerprint), else here. -1 with *error_r when the worker
 * process failed (temporary); 0 with what gpg answered. */
static int crypto_outbound_gpg(crypto_worker *w, crypto_gpgproc_op op, gpgme_key_t *recipients,
			       gpgme_key_t signer, crypto_gpgproc_read_fn read, void *read_ctx,
			       crypto_gpgproc_write_fn write, void *write_ctx,
			       crypto_gpgproc_result *res_r, const char **error_r)
{
	if (!w->remote) {
		crypto_gpgproc_run_local(w->ctx, op, recipients, signer, read, read_ctx, write,
					 write_ctx, res_r);
		return 0;
	}
	size_t n = 0;
	while (recipients != NULL && recipients[n] != NULL)
		n++;
	const char **fprs = g_new0(const char *, n + 1);
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		fprs[i] = recipients[i]->fpr != NULL ? recipients[i]->fpr
			: recipients[i]->subkeys != NULL ? recipients[i]->subkeys->fpr : NULL;
		ok = ok && fprs[i] != NULL;
	}
	const char *signer_fpr = signer == NULL ? NULL : signer->fpr != NULL ? signer->fpr
		: signer->subkeys != NULL ? signer->subkeys->fpr : NULL;
	int ret = -1;
	if (!ok || (signer != NULL && signer_fpr == NULL))
		*error_r = "a key without fingerprint";
	else
		ret = crypto_gpgproc_run(op, fprs, signer_fpr, read, read_ctx, write, write_ctx,
					 res_r, error_r);
	g_free(fprs);
	return ret;
}

/* Writes the outer header fields an encrypted message keeps. */
static void crypto_put_outer_fields(crypto_out *o, const crypto_outbound_header *h,
				    bool clear_subject)
{
	bool subject_done = false;
	for (size_t i = 0; i < h->n_fields; i++) {
		const crypto_header_field *f = &h->fields[i];
		if (f->name_len == 0)
			continue;
		if (crypto_field_outer(f) || crypto_field_is(f, "Autocrypt")) {
			crypto_put(o, f->raw, f->raw_len);
		} else if (crypto_field_is(f, "Subject") && !subject_done) {
			subject_done = true;
			if (clear_subject)
				crypto_put(o, f->raw, f->raw_len);
			else
				crypto_puts(o, "Subject: ...\r\n");
		}
	}
	if (!subject_done && !clear_subject)
		crypto_puts(o, "Subject: ...\r\n");
}

int crypto_outbound_write_encrypted(const crypto_outbound_header *h, crypto_worker *w,
				    const crypto_outbound_options *opts,
				    const crypto_source *body, const crypto_sink *sink,
				    crypto_failure *failure_r, const char **error_r)
{
	crypto_out o = { sink, false };
	char *boundary = crypto_boundary();
	crypto_put_outer_fields(&o, h, opts->clear_subject);
	crypto_puts(&o, "MIME-Version: 1.0\r\n"
		    "Content-Type: multipart/encrypted;\r\n"
		    " protocol=\"application/pgp-encrypted\";\r\n boundary=\"");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "\"\r\n");
	if (crypto_want_autocrypt(h, opts))
		crypto_put_autocrypt(&o, opts->autocrypt);
	crypto_puts(&o, "\r\nThis is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n--");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "\r\nContent-Type: application/pgp-encrypted\r\n"
		    "Content-Description: PGP/MIME version identification\r\n"
		    "\r\nVersion: 1\r\n\r\n--");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
		    "Content-Description: OpenPGP encrypted message\r\n"
		    "Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n");

	GString *head = crypto_entity_header(h, true, opts->clear_subject, opts->keep_bcc);
	crypto_entity_reader reader = { head->str, head->len, 0, body, false };
	crypto_crlf_writer writer = { &o, false };
	crypto_gpgproc_result res;
	int ret = -1;
	if (crypto_outbound_gpg(w, CRYPTO_GPGPROC_ENCRYPT, opts->recipients, opts->signer,
				crypto_entity_read, &reader, crypto_crlf_write, &writer, &res,
				error_r) < 0) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		goto done;
	}
	if (reader.failed) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "reading the spooled message failed";
		goto done;
	}
	if (o.failed) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "writing the encrypted message failed";
		goto done;
	}
	if (res.err != 0) {
		*error_r = crypto_gpg_error(res.err, opts->signer != NULL ? "signing and encryption"
					    : "encryption", failure_r);
		goto done;
	}
	if (res.invalid_recipient != 0) {
		*error_r = crypto_gpg_error(res.invalid_recipient,
					    "a recipient's key was refused", failure_r);
		goto done;
	}
	crypto_puts(&o, "\r\n--");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "--\r\n");
	if (o.failed) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "writing the encrypted message failed";
		goto done;
	}
	ret = 0;
done:
	g_string_free(head, TRUE);
	g_free(boundary);
	return ret;
}

int crypto_outbound_write_signed(const crypto_outbound_header *h, crypto_worker *w,
				 const crypto_outbound_options *opts,
				 const crypto_source *body, const crypto_sink *sink,
				 crypto_failure *failure_r, const char **error_r)
{
	crypto_out o = { sink, false };
	GString *head = crypto_entity_header(h, false, true, false);
	crypto_entity_reader reader = { head->str, head->len, 0, body, false };
	crypto_sig_buffer sig = { g_byte_array_new(), false };
	char *boundary = NULL;
	int ret = -1;
	crypto_gpgproc_result res;
	if (crypto_outbound_gpg(w, CRYPTO_GPGPROC_SIGN, NULL, opts->signer, crypto_entity_read,
				&reader, crypto_sig_write, &sig, &res, error_r) < 0) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		goto done;
	}
	if (reader.failed) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "reading the spooled message failed";
		goto done;
	}
	if (res.err != 0) {
		*error_r = crypto_gpg_error(res.err, "signing", failure_r);
		goto done;
	}
	if (!res.signed_ok || sig.too_big || sig.buf->len == 0) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "signing: gpg made no signature";
		goto done;
	}
	const char *hash = gpgme_hash_algo_name((gpgme_hash_algo_t)res.hash_algo);
	char *micalg = g_ascii_strdown(hash != NULL ? hash : "sha256", -1);
	if (body->rewind(body->ctx) < 0) {
		g_free(micalg);
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "reading the spooled message failed";
		goto done;
	}

	boundary = crypto_boundary();
	for (size_t i = 0; i < h->n_fields; i++) {
		const crypto_header_field *f = &h->fields[i];
		if (f->name_len == 0 || crypto_field_dropped(f) ||
		    crypto_field_is(f, "MIME-Version") ||
		    g_ascii_strncasecmp(f->raw, "Content-", 8) == 0)
			continue;
		crypto_put(&o, f->raw, f->raw_len);
	}
	crypto_puts(&o, "MIME-Version: 1.0\r\nContent-Type: multipart/signed; micalg=\"pgp-");
	crypto_puts(&o, micalg);
	g_free(micalg);
	crypto_puts(&o, "\";\r\n protocol=\"application/pgp-signature\";\r\n boundary=\"");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "\"\r\n");
	if (crypto_want_autocrypt(h, opts))
		crypto_put_autocrypt(&o, opts->autocrypt);
	crypto_puts(&o, "\r\nThis is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n--");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "\r\n");
	/* The part is exactly the bytes that were signed. */
	crypto_put(&o, head->str, head->len);
	if (!crypto_copy_body(&o, body)) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "reading the spooled message failed";
		goto done;
	}
	crypto_puts(&o, "\r\n--");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "\r\nContent-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"\r\n"
		    "Content-Description: OpenPGP digital signature\r\n"
		    "Content-Disposition: attachment; filename=\"OpenPGP_signature.asc\"\r\n\r\n");
	crypto_crlf_writer writer = { &o, false };
	(void)crypto_crlf_write(&writer, sig.buf->data, sig.buf->len);
	crypto_puts(&o, "\r\n--");
	crypto_puts(&o, boundary);
	crypto_puts(&o, "--\r\n");
	if (o.failed) {
		*failure_r = CRYPTO_FAIL_TEMPORARY;
		*error_r = "writing the signed message failed";
		goto done;
	}
	ret = 0;
done:
	g_byte_array_unref(sig.buf);
	g_string_free(head, TRUE);
	g_free(boundary);
	return ret;
}
