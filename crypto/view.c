/* view: the decrypted view of one message. GMime reads the message and writes
 * the view; gpg (through the worker's GPGME context) decrypts and verifies.
 * With a remote worker the whole rendering of an encrypted message runs in
 * a worker process (crypto/gpgproc.c), which calls back in here. */
#include "view.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <gpgme.h>
#include <string.h>

#include "gpgproc.h"
#include "keystore_keys.h"

/* GPGME, not GMime's GPGME context, decrypts: GMime's GMimeDecryptResult
 * does not say whether the ciphertext was integrity protected (its cipher
 * and mdc fields are never filled), and with `ignore-mdc-error` in the
 * user's gpg.conf GMime hands back unprotected plaintext as a success.
 * gpgme_decrypt_result_t names the mode (symkey_algo, legacy_cipher_nomdc);
 * that gpg checks an MDC that is there is probed once per worker. Signatures
 * over MIME parts are verified through GMime; the signer's user IDs are
 * listed through GPGME. */

#define VIEW_ARMOR_BEGIN "-----BEGIN PGP MESSAGE-----"
#define VIEW_ARMOR_END "-----END PGP MESSAGE-----"
#define VIEW_MAX_SIGNATURE_VALUE 1024
#define VIEW_MAX_UID 256

void crypto_view_status_clear(crypto_view_status *status)
{
	g_free(status->reason);
	g_free(status->signature);
	g_strfreev(status->gossip);
	memset(status, 0, sizeof(*status));
}

const char *crypto_view_failure_text(crypto_view_failure failure)
{
	switch (failure) {
	case CRYPTO_VIEW_FAIL_NONE:
		return "ok";
	case CRYPTO_VIEW_FAIL_NO_KEY:
		return "no secret key for this message";
	case CRYPTO_VIEW_FAIL_KEY_LOCKED:
		return "the secret key is locked";
	case CRYPTO_VIEW_FAIL_NO_INTEGRITY:
		return "no integrity protection";
	case CRYPTO_VIEW_FAIL_INTEGRITY:
		return "integrity check failed";
	case CRYPTO_VIEW_FAIL_GARBLED:
		return "not readable OpenPGP data";
	case CRYPTO_VIEW_FAIL_STRUCTURE:
		return "malformed PGP/MIME structure";
	case CRYPTO_VIEW_FAIL_TOO_BIG:
		return "decrypted content too large";
	case CRYPTO_VIEW_FAIL_TOO_COMPLEX:
		return "decrypted content too deeply nested or too many parts";
	}
	return "unknown failure";
}

/* What the explanatory part of a failure view says after its first line. */
static const char *view_failure_explanation(crypto_view_failure failure)
{
	switch (failure) {
	case CRYPTO_VIEW_FAIL_NO_KEY:
		return "None of the keys this message is encrypted to has its secret key in\r\n"
			"sealpost's keyring. Import the key, and the message will be shown\r\n"
			"decrypted the next time it is fetched.\r\n";
	case CRYPTO_VIEW_FAIL_KEY_LOCKED:
		return "The secret key needs a passphrase. Unlock it through sealpost.\r\n";
	case CRYPTO_VIEW_FAIL_NO_INTEGRITY:
		return "The message is encrypted without integrity protection, so anyone\r\n"
			"on its way could have changed it. Nothing of its content is shown.\r\n";
	case CRYPTO_VIEW_FAIL_INTEGRITY:
		return "The encrypted data was changed on its way. Nothing of its content\r\n"
			"is shown.\r\n";
	default:
		return "Nothing of its content is shown.\r\n";
	}
}

/* ---- reading the message ------------------------------------------------------- */

/* Fresh options every time: GMime's defaults are process-wide and mutable,
 * and the view must not depend on what someone set elsewhere. */
static GMimeFormatOptions *view_format_options(void)
{
	GMimeFormatOptions *fo = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	return fo;
}

/* The stream reads buf in place: buf must outlive everything parsed. */
static GMimeStream *view_stream_on(GByteArray *buf)
{
	GMimeStream *s = g_mime_stream_mem_new_with_byte_array(buf);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(s), FALSE);
	return s;
}

static GMimeMessage *view_parse_message(GByteArray *buf, GMimeParserOptions *po)
{
	GMimeStream *s = view_stream_on(buf);
	GMimeParser *p = g_mime_parser_new_with_stream(s);
	GMimeMessage *m = g_mime_parser_construct_message(p, po);
	g_object_unref(p);
	g_object_unref(s);
	return m;
}

static GMimeObject *view_parse_entity(GByteArray *buf, GMimeParserOptions *po)
{
	GMimeStream *s = view_stream_on(buf);
	GMimeParser *p = g_mime_parser_new_with_stream(s);
	GMimeObject *o = g_mime_parser_construct_part(p, po);
	g_object_unref(p);
	g_object_unref(s);
	return o;
}

static bool view_is_type(GMimeObject *o, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	return ct != NULL && g_mime_content_type_is_type(ct, type, subtype);
}

/* The part's content with its transfer encoding undone. */
static GByteArray *view_part_content(GMimePart *part)
{
	GByteArray *ba = g_byte_array_new();
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	if (dw != NULL) {
		GMimeStream *s = view_stream_on(ba);
		g_mime_data_wrapper_write_to_stream(dw, s);
		g_object_unref(s);
	}
	return ba;
}

static bool view_contains(const GByteArray *ba, const char *needle)
{
	return ba->len > 0 && memmem(ba->data, ba->len, needle, strlen(needle)) != NULL;
}

static bool view_blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The whole text, blanks aside, is one armored PGP MESSAGE block. */
static bool view_one_armored_block(const GByteArray *ba)
{
	const uint8_t *p = ba->data;
	size_t start = 0, end = ba->len;
	while (start < end && view_blank(p[start]))
		start++;
	while (end > start && view_blank(p[end - 1]))
		end--;
	size_t bl = strlen(VIEW_ARMOR_BEGIN), el = strlen(VIEW_ARMOR_END);
	if (end - start < bl + el || memcmp(p + start, VIEW_ARMOR_BEGIN, bl) != 0 ||
	    (p[start + bl] != '\r' && p[start + bl] != '\n') ||
	    memcmp(p + end - el, VIEW_ARMOR_END, el) != 0)
		return false;
	/* Exactly one block: no second armor line of any kind inside. */
	const uint8_t *inner = p + start + bl;
	size_t inner_len = end - el - (start + bl);
	return memmem(inner, inner_len, "-----BEGIN PGP", 14) == NULL &&
		memmem(inner, inner_len, "-----END PGP", 12) == NULL;
}

/* A walk over the MIME tree, bounded so that a hostile nesting depth costs
 * nothing (GMime itself copes with any depth). */
typedef struct {
	bool look_for_ciphertext;
	bool ciphertext;	/* an encrypted part or an armored text was seen */
	bool signed_part;	/* a multipart/signed was seen (below the start) */
	GMimeMultipartSigned *first_signed;
	unsigned parts;
	bool too_complex;
} view_walk;

static void view_walk_tree(GMimeObject *o, unsigned depth, view_walk *w)
{
	if (depth > CRYPTO_VIEW_MAX_DEPTH || w->parts >= CRYPTO_VIEW_MAX_PARTS) {
		w->too_complex = true;
		return;
	}
	w->parts++;
	if (GMIME_IS_MULTIPART(o)) {
		if (view_is_type(o, "multipart", "encrypted"))
			w->ciphertext = true;
		if (GMIME_IS_MULTIPART_SIGNED(o) && depth > 0 && w->first_signed == NULL)
			w->first_signed = GMIME_MULTIPART_SIGNED(o);
		GMimeMultipart *mp = GMIME_MULTIPART(o);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && !w->too_complex; i++)
			view_walk_tree(g_mime_multipart_get_part(mp, i), depth + 1, w);
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
		GMimeObject *root = m != NULL ? g_mime_message_get_mime_part(m) : NULL;
		if (root != NULL)
			view_walk_tree(root, depth + 1, w);
	} else if (GMIME_IS_PART(o) && w->look_for_ciphertext) {
		if (view_is_type(o, "application", "pgp-encrypted") ||
		    view_is_type(o, "application", "pkcs7-mime") ||
		    view_is_type(o, "application", "x-pkcs7-mime")) {
			w->ciphertext = true;
		} else if (view_is_type(o, "text", "*")) {
			GByteArray *text = view_part_content(GMIME_PART(o));
			if (view_contains(text, VIEW_ARMOR_BEGIN))
				w->ciphertext = true;
			g_byte_array_unref(text);
		}
	}
}

/* What the message is; for PGP/MIME and inline PGP, the part holding the
 * ciphertext. */
static crypto_view_kind view_classify(GMimeMessage *m, GMimePart **cipher_r,
				      const char **reason_r)
{
	*cipher_r = NULL;
	GMimeObject *root = m != NULL ? g_mime_message_get_mime_part(m) : NULL;
	if (root == NULL) {
		*reason_r = "not a MIME message";
		return CRYPTO_VIEW_KIND_PLAIN;
	}
	if (view_is_type(root, "multipart", "encrypted")) {
		const char *protocol = g_mime_object_get_content_type_parameter(root, "protocol");
		if (protocol == NULL || g_ascii_strcasecmp(protocol, "application/pgp-encrypted") != 0) {
			*reason_r = protocol != NULL && strstr(protocol, "pkcs7") != NULL
				? "S/MIME is not decrypted" : "unknown encryption protocol";
			return CRYPTO_VIEW_KIND_UNSUPPORTED;
		}
		GMimeMultipart *mp = GMIME_IS_MULTIPART(root) ? GMIME_MULTIPART(root) : NULL;
		GMimeObject *version = mp != NULL && g_mime_multipart_get_count(mp) == 2
			? g_mime_multipart_get_part(mp, 0) : NULL;
		GMimeObject *data = version != NULL ? g_mime_multipart_get_part(mp, 1) : NULL;
		if (version == NULL || data == NULL || !GMIME_IS_PART(version) || !GMIME_IS_PART(data) ||
		    !view_is_type(version, "application", "pgp-encrypted") ||
		    !view_is_type(data, "application", "octet-stream")) {
			*reason_r = crypto_view_failure_text(CRYPTO_VIEW_FAIL_STRUCTURE);
			return CRYPTO_VIEW_KIND_MALFORMED;
		}
		*cipher_r = GMIME_PART(data);
		*reason_r = NULL;
		return CRYPTO_VIEW_KIND_PGP_MIME;
	}
	if (view_is_type(root, "application", "pkcs7-mime") ||
	    view_is_type(root, "application", "x-pkcs7-mime")) {
		*reason_r = "S/MIME is not decrypted";
		return CRYPTO_VIEW_KIND_UNSUPPORTED;
	}
	if (GMIME_IS_PART(root) && view_is_type(root, "text", "plain")) {
		GByteArray *text = view_part_content(GMIME_PART(root));
		bool inline_pgp = view_one_armored_block(text);
		g_byte_array_unref(text);
		if (inline_pgp) {
			*cipher_r = GMIME_PART(root);
			*reason_r = NULL;
			return CRYPTO_VIEW_KIND_INLINE_PGP;
		}
	}
	view_walk w = { .look_for_ciphertext = true };
	view_walk_tree(root, 0, &w);
	if (w.ciphertext) {
		*reason_r = "encrypted content nested inside other content is not decrypted";
		return CRYPTO_VIEW_KIND_NESTED;
	}
	*reason_r = "not encrypted";
	return CRYPTO_VIEW_KIND_PLAIN;
}

static bool view_kind_encrypted(crypto_view_kind kind)
{
	return kind == CRYPTO_VIEW_KIND_PGP_MIME || kind == CRYPTO_VIEW_KIND_INLINE_PGP ||
		kind == CRYPTO_VIEW_KIND_MALFORMED;
}

static void view_status_set_kind(crypto_view_status *st, crypto_view_kind kind,
				 const char *reason)
{
	st->kind = kind;
	st->encrypted = view_kind_encrypted(kind);
	g_free(st->reason);
	st->reason = g_strdup(reason);
}

void crypto_view_classify(const uint8_t *msg, size_t len, crypto_view_status *status_r)
{
	memset(status_r, 0, sizeof(*status_r));
	GByteArray *buf = g_byte_array_sized_new((guint)len);
	g_byte_array_append(buf, msg, (guint)len);
	GMimeParserOptions *po = g_mime_parser_options_new();
	GMimeMessage *m = view_parse_message(buf, po);
	GMimePart *cipher;
	const char *reason;
	crypto_view_kind kind = view_classify(m, &cipher, &reason);
	view_status_set_kind(status_r, kind, reason);
	if (m != NULL)
		g_object_unref(m);
	g_mime_parser_options_free(po);
	g_byte_array_unref(buf);
}

/* ---- signatures ------------------------------------------------------------------ */

typedef enum {
	VIEW_SIG_VALID,		/* the signature verifies with a usable key */
	VIEW_SIG_UNKNOWN_KEY,
	VIEW_SIG_BAD,
} view_sig_verdict;

typedef struct {
	view_sig_verdict verdict;
	char *fpr;		/* fingerprint, or key ID when the key is unknown */
	char *why;		/* BAD other than a plain bad signature */
} view_sig;

static void view_sig_free(gpointer p)
{
	view_sig *s = p;
	g_free(s->fpr);
	g_free(s->why);
	g_free(s);
}

static void view_sigs_add(GPtrArray *sigs, view_sig_verdict verdict, const char *fpr,
			  const char *why)
{
	view_sig *s = g_new0(view_sig, 1);
	s->verdict = verdict;
	s->fpr = g_strdup(fpr != NULL ? fpr : "");
	s->why = g_strdup(why);
	g_ptr_array_add(sigs, s);
}

/* The one-pass signatures of the decryption just done. */
static void view_sigs_from_gpgme(gpgme_ctx_t ctx, GPtrArray *sigs)
{
	gpgme_verify_result_t vr = gpgme_op_verify_result(ctx);
	for (gpgme_signature_t s = vr != NULL ? vr->signatures : NULL; s != NULL; s = s->next) {
		gpgme_err_code_t code = gpgme_err_code(s->status);
		unsigned bad = GPGME_SIGSUM_RED | GPGME_SIGSUM_KEY_REVOKED | GPGME_SIGSUM_KEY_EXPIRED |
			GPGME_SIGSUM_SIG_EXPIRED | GPGME_SIGSUM_KEY_MISSING | GPGME_SIGSUM_SYS_ERROR;
		if (code == GPG_ERR_NO_ERROR && (s->summary & bad) == 0)
			view_sigs_add(sigs, VIEW_SIG_VALID, s->fpr, NULL);
		else if (code == GPG_ERR_NO_PUBKEY || (s->summary & GPGME_SIGSUM_KEY_MISSING))
			view_sigs_add(sigs, VIEW_SIG_UNKNOWN_KEY, s->fpr, NULL);
		else if (code == GPG_ERR_BAD_SIGNATURE || (s->summary & GPGME_SIGSUM_RED))
			view_sigs_add(sigs, VIEW_SIG_BAD, s->fpr, NULL);
		else
			view_sigs_add(sigs, VIEW_SIG_BAD, s->fpr,
				      code != GPG_ERR_NO_ERROR ? gpgme_strerror(s->status)
				      : "key revoked or expired");
	}
}

/* The signatures of a multipart/signed, through GMime. -1 when gpg could
 * not be asked (temporary); 0 otherwise, with what it said in sigs. */
static int view_sigs_from_gmime(GMimeMultipartSigned *mps, GPtrArray *sigs, char **error_r)
{
	const char *protocol = g_mime_object_get_content_type_parameter(GMIME_OBJECT(mps), "protocol");
	if (protocol == NULL || g_ascii_strcasecmp(protocol, "application/pgp-signature") != 0)
		return 0;	/* S/MIME or unknown: not a signature sealpost speaks for */
	GError *err = NULL;
	GMimeSignatureList *list = g_mime_multipart_signed_verify(mps, GMIME_VERIFY_NONE, &err);
	if (list == NULL) {
		bool temporary = err != NULL && err->domain == GMIME_GPGME_ERROR;
		if (temporary) {
			gpgme_err_code_t code = gpgme_err_code((gpgme_error_t)err->code);
			temporary = code != GPG_ERR_NO_DATA && code != GPG_ERR_BAD_DATA &&
				code != GPG_ERR_INV_PACKET && code != GPG_ERR_BAD_SIGNATURE &&
				code != GPG_ERR_UNKNOWN_PACKET;
		}
		if (temporary) {
			*error_r = g_strdup_printf("gpg: %s", err->message);
			g_error_free(err);
			return -1;
		}
		view_sigs_add(sigs, VIEW_SIG_BAD, NULL, "malformed signed part");
		if (err != NULL)
			g_error_free(err);
		return 0;
	}
	int n = g_mime_signature_list_length(list);
	if (n == 0)
		view_sigs_add(sigs, VIEW_SIG_BAD, NULL, "no signature in the signed part");
	for (int i = 0; i < n; i++) {
		GMimeSignature *sig = g_mime_signature_list_get_signature(list, i);
		GMimeCertificate *cert = g_mime_signature_get_certificate(sig);
		const char *fpr = cert != NULL ? g_mime_certificate_get_fingerprint(cert) : NULL;
		if (fpr == NULL && cert != NULL)
			fpr = g_mime_certificate_get_key_id(cert);
		GMimeSignatureStatus st = g_mime_signature_get_status(sig);
		if (st & GMIME_SIGNATURE_STATUS_RED)
			view_sigs_add(sigs, VIEW_SIG_BAD, fpr, NULL);
		else if (st & GMIME_SIGNATURE_STATUS_KEY_MISSING)
			view_sigs_add(sigs, VIEW_SIG_UNKNOWN_KEY, fpr, NULL);
		else if (st & (GMIME_SIGNATURE_STATUS_KEY_REVOKED | GMIME_SIGNATURE_STATUS_KEY_EXPIRED |
			       GMIME_SIGNATURE_STATUS_SIG_EXPIRED | GMIME_SIGNATURE_STATUS_SYS_ERROR))
			view_sigs_add(sigs, VIEW_SIG_BAD, fpr, "key revoked or expired, or gpg error");
		else
			view_sigs_add(sigs, VIEW_SIG_VALID, fpr, NULL);
	}
	g_object_unref(list);
	return 0;
}

/* A user ID as a header value shows it: valid UTF-8, no control
 * characters, bounded. g_free. */
static char *view_clean_uid(const char *uid)
{
	char *valid = g_utf8_make_valid(uid != NULL ? uid : "", -1);
	for (char *p = valid; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (strlen(valid) > VIEW_MAX_UID) {
		const char *cut = g_utf8_find_prev_char(valid, valid + VIEW_MAX_UID + 1);
		valid[cut != NULL ? cut - valid : 0] = '\0';
	}
	return valid;
}

static const char *view_uid_address(gpgme_user_id_t uid)
{
	return uid->address != NULL ? uid->address : uid->email;
}

/* The X-Sealpost-Signature value for sigs. covers_root: they sign the whole
 * decrypted content. from: the view's single From address (NULL: none or
 * several). -1 when the keyring could not be read (temporary). */
static int view_signature_value(crypto_worker *w, GPtrArray *sigs, bool covers_root,
				const char *from, char **value_r, char **error_r)
{
	if (sigs->len == 0) {
		*value_r = g_strdup("none");
		return 0;
	}
	const view_sig *valid = NULL, *unknown = NULL;
	for (guint i = 0; i < sigs->len; i++) {
		const view_sig *s = g_ptr_array_index(sigs, i);
		/* One bad signature spoils the message: never "good" beside it. */
		if (s->verdict == VIEW_SIG_BAD) {
			*value_r = s->why != NULL ? g_strdup_printf("bad (%s)", s->why) : g_strdup("bad");
			return 0;
		}
		if (s->verdict == VIEW_SIG_VALID && valid == NULL)
			valid = s;
		if (s->verdict == VIEW_SIG_UNKNOWN_KEY && unknown == NULL)
			unknown = s;
	}
	if (valid == NULL) {
		*value_r = g_strdup_printf("unknown-key %s", unknown->fpr);
		return 0;
	}
	gpgme_key_t key = NULL;
	gpgme_error_t err = gpgme_get_key(w->ctx, valid->fpr, &key, 0);
	if (gpgme_err_code(err) == GPG_ERR_EOF || gpgme_err_code(err) == GPG_ERR_NOT_FOUND) {
		*value_r = g_strdup_printf("unknown-key %s", valid->fpr);
		return 0;
	}
	if (err != 0) {
		*error_r = g_strdup_printf("gpg: listing the signer's key: %s", gpgme_strerror(err));
		return -1;
	}
	if (key->revoked || key->expired || key->disabled || key->invalid) {
		*value_r = g_strdup("bad (key revoked, expired or disabled)");
		gpgme_key_unref(key);
		return 0;
	}
	const char *fpr = key->fpr != NULL ? key->fpr : valid->fpr;
	if (!covers_root) {
		*value_r = g_strdup_printf("partial %s", fpr);
		gpgme_key_unref(key);
		return 0;
	}
	gpgme_user_id_t match = NULL, first = NULL;
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next) {
		if (uid->revoked || uid->invalid)
			continue;
		if (first == NULL)
			first = uid;
		const char *addr = view_uid_address(uid);
		if (from != NULL && addr != NULL && keystore_address_equal(addr, from)) {
			match = uid;
			break;
		}
	}
	char *uid = view_clean_uid(match != NULL ? match->uid : first != NULL ? first->uid : "");
	*value_r = g_strdup_printf("%s %s %s", match != NULL ? "good" : "mismatch", fpr, uid);
	g_strchomp(*value_r);
	g_free(uid);
	gpgme_key_unref(key);
	return 0;
}

/* A value this module can have returned: one line of UTF-8 text. */
static bool view_signature_value_ok(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > VIEW_MAX_SIGNATURE_VALUE || !g_utf8_validate(v, (gssize)n, NULL))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

/* ---- decrypting ------------------------------------------------------------------- */

typedef struct {
	GByteArray *buf;
	bool too_big;
} view_sink;

static ssize_t view_sink_write(void *handle, const void *data, size_t size)
{
	view_sink *s = handle;
	if (size > CRYPTO_VIEW_MAX_PLAINTEXT - s->buf->len) {
		s->too_big = true;
		errno = EFBIG;
		return -1;
	}
	g_byte_array_append(s->buf, data, (guint)size);
	return (ssize_t)size;
}

/* Plaintext that must not be shown leaves no copy behind in our memory. */
static void view_wipe(GByteArray **ba)
{
	if (*ba == NULL)
		return;
	explicit_bzero((*ba)->data, (*ba)->len);
	g_byte_array_unref(*ba);
	*ba = NULL;
}

/* Integrity protected: an MDC (OpenPGP CFB mode with MDC, which GPGME names
 * "CFB"; plain "PGPCFB" is without) or an AEAD mode. */
static bool view_integrity_protected(gpgme_decrypt_result_t dr)
{
	if (dr == NULL || dr->legacy_cipher_nomdc || dr->symkey_algo == NULL)
		return false;
	const char *dot = strrchr(dr->symkey_algo, '.');
	if (dot == NULL)
		return false;
	return strcmp(dot + 1, "CFB") == 0 || strcmp(dot + 1, "OCB") == 0 ||
		strcmp(dot + 1, "EAX") == 0;
}

static bool view_all_recipients_lack_key(gpgme_decrypt_result_t dr)
{
	if (dr == NULL || dr->recipients == NULL)
		return false;
	for (gpgme_recipient_t r = dr->recipients; r != NULL; r = r->next)
		if (gpgme_err_code(r->status) != GPG_ERR_NO_SECKEY)
			return false;
	return true;
}

typedef struct {
	crypto_view_failure failure;	/* NONE: plain holds the plaintext */
	char *tempfail;			/* gpg could not be asked: why */
	GByteArray *plain;
	bool is_mime;
	GPtrArray *sigs;		/* one-pass signatures (view_sig) */
} view_decrypted;

static void view_decrypted_clear(view_decrypted *d)
{
	view_wipe(&d->plain);
	g_free(d->tempfail);
	if (d->sigs != NULL)
		g_ptr_array_unref(d->sigs);
	memset(d, 0, sizeof(*d));
}

/* Why gpg refused, as a failure of the message; false when the failure is
 * gpg's own (engine, I/O): the caller should try again later. */
static bool view_failure_of(gpgme_error_t err, gpgme_decrypt_result_t dr,
			    crypto_view_failure *failure_r)
{
	switch (gpgme_err_code(err)) {
	case GPG_ERR_NO_SECKEY:
		*failure_r = CRYPTO_VIEW_FAIL_NO_KEY;
		return true;
	case GPG_ERR_NO_PIN:
	case GPG_ERR_BAD_PASSPHRASE:
	case GPG_ERR_NO_PASSPHRASE:
	case GPG_ERR_CANCELED:
	case GPG_ERR_PIN_BLOCKED:
		*failure_r = CRYPTO_VIEW_FAIL_KEY_LOCKED;
		return true;
	case GPG_ERR_DECRYPT_FAILED:
		if (view_all_recipients_lack_key(dr))
			*failure_r = CRYPTO_VIEW_FAIL_NO_KEY;
		else if (dr != NULL && (dr->legacy_cipher_nomdc ||
					(dr->symkey_algo != NULL &&
					 strstr(dr->symkey_algo, ".PGPCFB") != NULL)))
			*failure_r = CRYPTO_VIEW_FAIL_NO_INTEGRITY;
		else
			*failure_r = CRYPTO_VIEW_FAIL_INTEGRITY;
		return true;
	case GPG_ERR_NO_DATA:
	case GPG_ERR_BAD_DATA:
	case GPG_ERR_INV_DATA:
	case GPG_ERR_INV_PACKET:
	case GPG_ERR_UNKNOWN_PACKET:
	case GPG_ERR_INV_ARMOR:
	case GPG_ERR_CHECKSUM:
	case GPG_ERR_UNSUPPORTED_ALGORITHM:
	case GPG_ERR_CIPHER_ALGO:
	case GPG_ERR_WRONG_KEY_USAGE:
		*failure_r = CRYPTO_VIEW_FAIL_GARBLED;
		return true;
	default:
		return false;
	}
}

/* Decrypts (and verifies unless told not to) into sink; what gpg said in d. */
static void view_decrypt_into(crypto_worker *w, gpgme_data_t in, gpgme_data_t out,
			      view_sink *sink, bool verify, view_decrypted *d)
{
	/* Offline: no key server is asked, so the answer depends on the
	 * keyring alone, and nobody learns which message is being read. */
	int offline = gpgme_get_offline(w->ctx);
	gpgme_set_offline(w->ctx, 1);
	gpgme_error_t err = gpgme_op_decrypt_ext(w->ctx, verify ? GPGME_DECRYPT_VERIFY : 0,
						 in, out);
	gpgme_set_offline(w->ctx, offline);
	gpgme_decrypt_result_t dr = gpgme_op_decrypt_result(w->ctx);
	if (sink->too_big) {
		d->failure = CRYPTO_VIEW_FAIL_TOO_BIG;
	} else if (err != 0) {
		if (!view_failure_of(err, dr, &d->failure))
			d->tempfail = g_strdup_printf("gpg: %s", gpgme_strerror(err));
	} else if (!view_integrity_protected(dr)) {
		/* gpg decrypted it, but a gpg.conf with ignore-mdc-error lets
		 * unprotected ciphertext through: never show it. */
		d->failure = CRYPTO_VIEW_FAIL_NO_INTEGRITY;
	} else {
		d->is_mime = dr->is_mime;
		if (verify)
			view_sigs_from_gpgme(w->ctx, d->sigs);
		d->plain = sink->buf;
		sink->buf = NULL;
	}
}

/* A message encrypted with the passphrase below whose MDC has one bit
 * flipped (gpg --symmetric --s2k-mode 1 -z 0, last byte changed). gpg
 * rejects it unless told to skip integrity checks (ignore-mdc-error in
 * gpg.conf, which no option can undo and no status line reveals: gpg then
 * reports a manipulated message as decrypted, mode CFB and all). */
static const uint8_t view_probe_message[] = {
	0x8c, 0x0c, 0x04, 0x09, 0x01, 0x08, 0x29, 0xdb, 0xb2, 0x24, 0xab, 0xe5, 0x79, 0x64,
	0xd2, 0x52, 0x01, 0x99, 0x86, 0xc2, 0x54, 0xae, 0xb2, 0x0e, 0xbe, 0xcd, 0x27, 0xf8,
	0x94, 0xe4, 0x1a, 0xa4, 0x69, 0xac, 0x3f, 0xfc, 0x77, 0xc4, 0x65, 0xfe, 0xe4, 0x89,
	0x60, 0x48, 0xc8, 0x81, 0x4b, 0xf7, 0x43, 0x3a, 0x6a, 0xee, 0x15, 0xa3, 0x62, 0x79,
	0x44, 0xe6, 0x20, 0x00, 0x18, 0x11, 0x3c, 0x4a, 0xdd, 0x40, 0x97, 0x94, 0x39, 0x13,
	0x22, 0x78, 0x95, 0x67, 0x01, 0xf0, 0xae, 0xea, 0xf9, 0x47, 0xeb, 0xca, 0x37, 0x6a,
	0x8c, 0x86, 0x19, 0xf0, 0x38, 0x3b, 0x6c, 0x6b, 0x2f, 0xc6, 0xcc, 0x32, 0x1d, 0x9d,
};
#define VIEW_PROBE_PASSPHRASE "sealpost-integrity-probe"

static gpgme_error_t view_probe_passphrase(void *hook, const char *uid_hint,
					   const char *info, int prev_was_bad, int fd)
{
	if (prev_was_bad)
		return gpg_error(GPG_ERR_CANCELED);
	static const char pass[] = VIEW_PROBE_PASSPHRASE "\n";
	return gpgme_io_writen(fd, pass, sizeof(pass) - 1) == 0 ? 0 : gpg_error(GPG_ERR_EIO);
}

/* 0 when gpg is seen to reject the manipulated probe; -1 with *error_r
 * when it accepts it or cannot be asked. Only success is remembered, so a
 * corrected gpg.conf counts at the next message. */
static int view_check_gpg_integrity(crypto_worker *w, char **error_r)
{
	if (w->integrity_checked)
		return 0;
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t in = NULL, out = NULL;
	gpgme_error_t err = gpgme_new(&ctx);
	if (err == 0) {
		gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
		gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_LOOPBACK);
		gpgme_set_passphrase_cb(ctx, view_probe_passphrase, NULL);
		/* Keep the probe's passphrase out of the agent's cache. */
		(void)gpgme_set_ctx_flag(ctx, "no-symkey-cache", "1");
		err = gpgme_data_new_from_mem(&in, (const char *)view_probe_message,
					      sizeof(view_probe_message), 0);
	}
	if (err == 0)
		err = gpgme_data_new(&out);
	if (err == 0)
		err = gpgme_op_decrypt(ctx, in, out);
	int ret = -1;
	if (gpgme_err_code(err) == GPG_ERR_DECRYPT_FAILED) {
		w->integrity_checked = true;
		ret = 0;
	} else if (err == 0) {
		*error_r = g_strdup("gpg is set to skip integrity checks (ignore-mdc-error in "
				    "gpg.conf): nothing is decrypted");
	} else {
		*error_r = g_strdup_printf("gpg: cannot check that it enforces integrity: %s",
					   gpgme_strerror(err));
	}
	if (out != NULL)
		gpgme_data_release(out);
	if (in != NULL)
		gpgme_data_release(in);
	if (ctx != NULL)
		gpgme_release(ctx);
	return ret;
}

static void view_decrypt(crypto_worker *w, const GByteArray *cipher, bool verify,
			 view_decrypted *d)
{
	memset(d, 0, sizeof(*d));
	d->sigs = g_ptr_array_new_with_free_func(view_sig_free);
	/* Room up front: growing by realloc would leave copies behind. */
	view_sink sink = { g_byte_array_sized_new(cipher->len * 2 + 4096), false };
	struct gpgme_data_cbs cbs = { .write = view_sink_write };
	gpgme_data_t in = NULL, out = NULL;
	gpgme_error_t err = gpgme_data_new_from_mem(&in, (const char *)cipher->data, cipher->len, 0);
	if (err == 0)
		err = gpgme_data_new_from_cbs(&out, &cbs, &sink);
	if (err == 0)
		view_decrypt_into(w, in, out, &sink, verify, d);
	else
		d->tempfail = g_strdup_printf("gpg: %s", gpgme_strerror(err));
	/* Whatever gpg wrote before it failed (it streams plaintext before
	 * the integrity check at the end) is wiped here. */
	view_wipe(&sink.buf);
	if (in != NULL)
		gpgme_data_release(in);
	if (out != NULL)
		gpgme_data_release(out);
}

/* ---- the view --------------------------------------------------------------------- */

/* RFC 9788: fields a receiver takes from the protected header whenever it is
 * marked; with hp="cipher" every field it carries counts. */
static const char *const view_protected_names[] = {
	"Subject", "From", "To", "Cc", "Reply-To", "Date", "Message-ID",
	"In-Reply-To", "References",
};

static bool view_name_listed(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(view_protected_names); i++)
		if (g_ascii_strcasecmp(name, view_protected_names[i]) == 0)
			return true;
	return false;
}

static bool view_name_is_content(const char *name)
{
	return g_ascii_strncasecmp(name, "Content-", 8) == 0;
}

/* Fields no view shows from the message: status fields only sealpost may
 * write, and fields that describe the encrypted form. */
static bool view_name_dropped(const char *name)
{
	return g_ascii_strncasecmp(name, "X-Sealpost-", 11) == 0 ||
		g_ascii_strcasecmp(name, "MIME-Version") == 0 ||
		g_ascii_strcasecmp(name, "HP-Outer") == 0;
}

typedef enum {
	VIEW_PROTECT_NONE,	/* not marked: its other fields are not shown */
	VIEW_PROTECT_LISTED,	/* protected-headers="v1" (or hp="clear") */
	VIEW_PROTECT_ALL,	/* hp="cipher" */
} view_protection;

static view_protection view_protection_of(GMimeObject *o)
{
	const char *hp = g_mime_object_get_content_type_parameter(o, "hp");
	const char *v1 = g_mime_object_get_content_type_parameter(o, "protected-headers");
	if (hp != NULL && g_ascii_strcasecmp(hp, "cipher") == 0)
		return VIEW_PROTECT_ALL;
	if (hp != NULL || (v1 != NULL && g_ascii_strcasecmp(v1, "v1") == 0))
		return VIEW_PROTECT_LISTED;
	return VIEW_PROTECT_NONE;
}

/* The mailboxes of an address list, groups opened, in order. */
static void view_collect_mailboxes(InternetAddressList *list, GPtrArray *out)
{
	int n = list != NULL ? internet_address_list_length(list) : 0;
	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
			g_ptr_array_add(out, g_strdup(addr != NULL ? addr : ""));
		} else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			view_collect_mailboxes(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
					       out);
		}
	}
}

static GPtrArray *view_mailboxes_of(GMimeHeader *h, GMimeParserOptions *po)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	const char *v = h != NULL ? g_mime_header_get_value(h) : NULL;
	if (v == NULL)
		return out;
	InternetAddressList *list = internet_address_list_parse(po, v);
	if (list != NULL) {
		view_collect_mailboxes(list, out);
		g_object_unref(list);
	}
	return out;
}

static bool view_same_mailboxes(GPtrArray *a, GPtrArray *b)
{
	if (a->len != b->len)
		return false;
	for (guint i = 0; i < a->len; i++)
		if (!keystore_address_equal(g_ptr_array_index(a, i), g_ptr_array_index(b, i)))
			return false;
	return true;
}

static GMimeHeader *view_find(GPtrArray *fields, const char *name)
{
	for (guint i = 0; i < fields->len; i++) {
		GMimeHeader *h = g_ptr_array_index(fields, i);
		if (g_ascii_strcasecmp(g_mime_header_get_name(h), name) == 0)
			return h;
	}
	return NULL;
}

/* Autocrypt-Gossip values read from one message at most (the spec expects
 * one per recipient). */
#define VIEW_GOSSIP_MAX 100

/* What the view is made of. */
typedef struct {
	GMimeParserOptions *po;
	GMimeMessage *outer;
	GMimeObject *entity;	/* the body of the view (a reference) */
	GPtrArray *outer_fields;	/* GMimeHeader refs kept from the outside */
	GPtrArray *inner_fields;	/* GMimeHeader refs taken from the protected header */
	char *from_mismatch;	/* X-Sealpost-From-Mismatch value, or NULL */
	char *from;		/* the view's single From address, or NULL */
	GPtrArray *gossip;	/* Autocrypt-Gossip values inside (char *), NULL-terminated */
} view_parts;

static void view_parts_clear(view_parts *vp)
{
	if (vp->entity != NULL)
		g_object_unref(vp->entity);
	if (vp->outer_fields != NULL)
		g_ptr_array_unref(vp->outer_fields);
	if (vp->inner_fields != NULL)
		g_ptr_array_unref(vp->inner_fields);
	g_free(vp->from_mismatch);
	g_free(vp->from);
	if (vp->gossip != NULL)
		g_ptr_array_unref(vp->gossip);
	vp->gossip = NULL;
	vp->entity = NULL;
	vp->outer_fields = vp->inner_fields = NULL;
	vp->from_mismatch = vp->from = NULL;
}

static bool view_inner_has(GPtrArray *inner, const char *name)
{
	return view_find(inner, name) != NULL;
}

/* The outer fields the view keeps: all but the dropped ones, the Content-*
 * ones (the entity brings its own) and those the protected header replaces. */
static void view_take_outer(view_parts *vp)
{
	vp->outer_fields = g_ptr_array_new_with_free_func(g_object_unref);
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(vp->outer));
	int n = g_mime_header_list_get_count(hl);
	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *name = g_mime_header_get_name(h);
		if (view_name_dropped(name) || view_name_is_content(name) ||
		    view_inner_has(vp->inner_fields, name))
			continue;
		g_ptr_array_add(vp->outer_fields, g_object_ref(h));
	}
}

/* Removes from o's own header every field but Content-*: they are either in
 * the view's header already or not shown. */
static void view_keep_content_fields(GMimeObject *o)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(o);
	for (int i = g_mime_header_list_get_count(hl) - 1; i >= 0; i--) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		if (!view_name_is_content(g_mime_header_get_name(h)))
			g_mime_header_list_remove_at(hl, i);
	}
}

/* The view's body is no longer inside an encryption: its Content-Type stops
 * claiming a protected header. */
static void view_drop_protection_params(GMimeObject *o)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	GMimeParamList *params = g_mime_content_type_get_parameters(ct);
	if (g_mime_param_list_get_parameter(params, "protected-headers") == NULL &&
	    g_mime_param_list_get_parameter(params, "hp") == NULL)
		return;
	GMimeContentType *fresh = g_mime_content_type_new(g_mime_content_type_get_media_type(ct),
							  g_mime_content_type_get_media_subtype(ct));
	int n = g_mime_param_list_length(params);
	for (int i = 0; i < n; i++) {
		GMimeParam *p = g_mime_param_list_get_parameter_at(params, i);
		const char *name = g_mime_param_get_name(p);
		if (g_ascii_strcasecmp(name, "protected-headers") == 0 ||
		    g_ascii_strcasecmp(name, "hp") == 0)
			continue;
		g_mime_content_type_set_parameter(fresh, name, g_mime_param_get_value(p));
	}
	g_mime_object_set_content_type(o, fresh);
	g_object_unref(fresh);
}

/* Fills everything but the status fields from the outer message and the
 * decrypted entity (a reference is taken). */
static void view_assemble(view_parts *vp, GMimeObject *entity)
{
	vp->entity = g_object_ref(entity);
	/* Where the protected header is: on the entity, or (as some clients
	 * sign then encrypt) on the content of a multipart/signed entity. */
	GMimeObject *payload = entity;
	view_protection prot = view_protection_of(entity);
	if (prot == VIEW_PROTECT_NONE && GMIME_IS_MULTIPART_SIGNED(entity) &&
	    g_mime_multipart_get_count(GMIME_MULTIPART(entity)) > 0) {
		GMimeObject *content = g_mime_multipart_get_part(GMIME_MULTIPART(entity), 0);
		if (view_protection_of(content) != VIEW_PROTECT_NONE) {
			payload = content;
			prot = view_protection_of(content);
		}
	}
	/* Autocrypt-Gossip sits in the header of the encrypted entity, with or
	 * without protected headers: read it before that header is trimmed. */
	vp->gossip = g_ptr_array_new_with_free_func(g_free);
	GObject *gossip_from[] = { G_OBJECT(entity), payload != entity ? G_OBJECT(payload) : NULL };
	for (size_t k = 0; k < G_N_ELEMENTS(gossip_from) && gossip_from[k] != NULL; k++) {
		GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(gossip_from[k]));
		int n = g_mime_header_list_get_count(hl);
		for (int i = 0; i < n && vp->gossip->len < VIEW_GOSSIP_MAX; i++) {
			GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
			if (g_ascii_strcasecmp(g_mime_header_get_name(h), "Autocrypt-Gossip") != 0)
				continue;
			const char *raw = g_mime_header_get_raw_value(h);
			if (raw == NULL)
				continue;
			GString *v = g_string_sized_new(strlen(raw));
			for (const char *c = raw; *c != '\0'; c++)
				if (*c != '\r' && *c != '\n')
					g_string_append_c(v, *c);
			g_ptr_array_add(vp->gossip, g_strstrip(g_string_free(v, FALSE)));
		}
	}
	g_ptr_array_add(vp->gossip, NULL);
	vp->inner_fields = g_ptr_array_new_with_free_func(g_object_unref);
	if (prot != VIEW_PROTECT_NONE) {
		GMimeHeaderList *hl = g_mime_object_get_header_list(payload);
		int n = g_mime_header_list_get_count(hl);
		for (int i = 0; i < n; i++) {
			GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
			const char *name = g_mime_header_get_name(h);
			if (view_name_is_content(name) || view_name_dropped(name))
				continue;
			if (prot == VIEW_PROTECT_ALL || view_name_listed(name))
				g_ptr_array_add(vp->inner_fields, g_object_ref(h));
		}
	}
	view_take_outer(vp);

	GMimeHeaderList *outer_hl = g_mime_object_get_header_list(GMIME_OBJECT(vp->outer));
	GMimeHeader *outer_from = g_mime_header_list_get_header(outer_hl, "From");
	GMimeHeader *inner_from = view_find(vp->inner_fields, "From");
	GPtrArray *outer_boxes = view_mailboxes_of(outer_from, vp->po);
	GPtrArray *inner_boxes = view_mailboxes_of(inner_from, vp->po);
	if (inner_from != NULL && !view_same_mailboxes(outer_boxes, inner_boxes)) {
		GString *s = g_string_new("outer");
		if (outer_boxes->len == 0)
			g_string_append(s, " (none)");
		for (guint i = 0; i < outer_boxes->len; i++)
			g_string_append_printf(s, "%s <%s>", i > 0 ? "," : "",
					       (const char *)g_ptr_array_index(outer_boxes, i));
		vp->from_mismatch = g_string_free(s, FALSE);
	}
	GPtrArray *view_boxes = inner_from != NULL ? inner_boxes : outer_boxes;
	if (view_boxes->len == 1)
		vp->from = g_strdup(g_ptr_array_index(view_boxes, 0));
	g_ptr_array_unref(outer_boxes);
	g_ptr_array_unref(inner_boxes);

	/* Signed content stays byte for byte as it was signed. */
	view_keep_content_fields(entity);
	if (payload == entity)
		view_drop_protection_params(entity);
}

/* Appends one header field as GMime writes it, ending in a line end. */
static void view_put_field(GString *head, GMimeHeader *h, GMimeFormatOptions *fo)
{
	GByteArray *ba = g_byte_array_new();
	GMimeStream *s = view_stream_on(ba);
	g_mime_header_write_to_stream(h, fo, s);
	g_object_unref(s);
	g_string_append_len(head, (const char *)ba->data, (gssize)ba->len);
	if (ba->len == 0 || ba->data[ba->len - 1] != '\n')
		g_string_append(head, "\n");
	g_byte_array_unref(ba);
}

/* A CR that does not end a line would end one for some readers: in the
 * header block it could start a forged field, so it becomes a space. */
static void view_neutralise_lone_cr(GString *head)
{
	for (gsize i = 0; i < head->len; i++)
		if (head->str[i] == '\r' && (i + 1 == head->len || head->str[i + 1] != '\n'))
			head->str[i] = ' ';
}

/* The view's bytes: the kept outer fields, the protected fields, sealpost's
 * own fields and the entity's Content-* fields, then the entity's content
 * as GMime writes it, all with CRLF line ends. */
static GByteArray *view_write(view_parts *vp, const char *decryption, const char *signature)
{
	GMimeFormatOptions *fo = view_format_options();
	GString *head = g_string_new(NULL);
	for (guint i = 0; i < vp->outer_fields->len; i++)
		view_put_field(head, g_ptr_array_index(vp->outer_fields, i), fo);
	for (guint i = 0; i < vp->inner_fields->len; i++)
		view_put_field(head, g_ptr_array_index(vp->inner_fields, i), fo);
	GMimeHeaderList *ours = g_mime_header_list_new(vp->po);
	g_mime_header_list_append(ours, "MIME-Version", "1.0", NULL);
	if (vp->from_mismatch != NULL)
		g_mime_header_list_append(ours, "X-Sealpost-From-Mismatch", vp->from_mismatch, NULL);
	g_mime_header_list_append(ours, "X-Sealpost-Decryption", decryption, NULL);
	g_mime_header_list_append(ours, "X-Sealpost-Signature", signature, "utf-8");
	for (int i = 0; i < g_mime_header_list_get_count(ours); i++)
		view_put_field(head, g_mime_header_list_get_header_at(ours, i), fo);
	g_object_unref(ours);
	GMimeHeaderList *entity_hl = g_mime_object_get_header_list(vp->entity);
	for (int i = 0; i < g_mime_header_list_get_count(entity_hl); i++)
		view_put_field(head, g_mime_header_list_get_header_at(entity_hl, i), fo);
	view_neutralise_lone_cr(head);
	g_string_append(head, "\n");

	GByteArray *out = g_byte_array_new();
	GMimeStream *mem = view_stream_on(out);
	/* GMime keeps some line ends as parsed (a multipart's prologue and
	 * epilogue): the filter makes every one CRLF. */
	GMimeStream *crlf = g_mime_stream_filter_new(mem);
	GMimeFilter *filter = g_mime_filter_unix2dos_new(FALSE);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(crlf), filter);
	g_object_unref(filter);
	g_mime_stream_write(crlf, head->str, head->len);
	g_mime_object_write_content_to_stream(vp->entity, fo, crlf);
	g_mime_stream_flush(crlf);
	g_object_unref(crlf);
	g_object_unref(mem);
	g_string_free(head, TRUE);
	g_mime_format_options_free(fo);
	return out;
}

static GMimeObject *view_text_part(const char *media_subtype, const uint8_t *text, size_t len)
{
	GMimePart *part = g_mime_part_new_with_type("text", media_subtype);
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)text, len);
	GMimeDataWrapper *dw = g_mime_data_wrapper_new_with_stream(s, GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(part, dw);
	g_object_unref(dw);
	g_object_unref(s);
	return GMIME_OBJECT(part);
}

/* The failure view: the outer header and a short text instead of content. */
static GByteArray *view_write_failure(GMimeMessage *outer, GMimeParserOptions *po,
				      crypto_view_failure failure)
{
	char *text = g_strdup_printf("This message is encrypted, and sealpost could not decrypt it:\r\n"
				     "%s.\r\n\r\n%s", crypto_view_failure_text(failure),
				     view_failure_explanation(failure));
	GMimeObject *part = view_text_part("plain", (const uint8_t *)text, strlen(text));
	g_mime_object_set_content_type_parameter(part, "charset", "us-ascii");
	g_mime_part_set_content_encoding(GMIME_PART(part), GMIME_CONTENT_ENCODING_7BIT);
	view_parts vp = { .po = po, .outer = outer };
	vp.inner_fields = g_ptr_array_new_with_free_func(g_object_unref);
	vp.entity = part;
	view_take_outer(&vp);
	char *decryption = g_strdup_printf("failed (%s)", crypto_view_failure_text(failure));
	GByteArray *out = view_write(&vp, decryption, "none");
	g_free(decryption);
	g_free(text);
	view_parts_clear(&vp);
	return out;
}

/* text as a text/plain part, with the Content-Type parameters of like (the
 * inline PGP part it came in) when there is one. */
static GMimeObject *view_text_entity(GMimeObject *like, GByteArray *plain)
{
	GMimeObject *part = view_text_part("plain", plain->data, plain->len);
	GMimeContentType *was = like != NULL ? g_mime_object_get_content_type(like) : NULL;
	GMimeParamList *params = was != NULL ? g_mime_content_type_get_parameters(was) : NULL;
	int n = params != NULL ? g_mime_param_list_length(params) : 0;
	for (int i = 0; i < n; i++) {
		GMimeParam *p = g_mime_param_list_get_parameter_at(params, i);
		g_mime_object_set_content_type_parameter(part, g_mime_param_get_name(p),
							 g_mime_param_get_value(p));
	}
	if (g_mime_object_get_content_type_parameter(part, "charset") == NULL &&
	    g_mime_utils_text_is_8bit(plain->data, plain->len))
		g_mime_object_set_content_type_parameter(
			part, "charset", g_utf8_validate((const char *)plain->data,
							 (gssize)plain->len, NULL)
			? "utf-8" : "unknown-8bit");
	GMimeContentEncoding enc = g_mime_part_get_best_content_encoding(GMIME_PART(part),
									 GMIME_ENCODING_CONSTRAINT_8BIT);
	/* DEFAULT: GMime sees no need to encode; say which of the two. 8bit
	 * where it can be, so the text is shown byte for byte as it was
	 * encrypted (as a PGP/MIME entity is). */
	if (enc == GMIME_CONTENT_ENCODING_DEFAULT)
		enc = g_mime_utils_text_is_8bit(plain->data, plain->len)
			? GMIME_CONTENT_ENCODING_8BIT : GMIME_CONTENT_ENCODING_7BIT;
	g_mime_part_set_content_encoding(GMIME_PART(part), enc);
	return part;
}

/* The decrypted entity: parsed when MIME, else (inline PGP, or content that
 * does not even start like a MIME entity) shown as text. */
static GMimeObject *view_entity(GMimeObject *inline_part, GByteArray *plain, bool is_mime,
				GMimeParserOptions *po)
{
	GMimeObject *entity = is_mime ? view_parse_entity(plain, po) : NULL;
	return entity != NULL ? entity : view_text_entity(inline_part, plain);
}

typedef struct {
	crypto_worker *w;	/* NULL: signature is fixed */
	const char *signature;	/* fixed value, or NULL: evaluate */
	GPtrArray *onepass;	/* one-pass signatures from decryption */
} view_signing;

/* Renders the decrypted view (or the failure view when the content is
 * beyond the limits). TEMPFAIL when the keyring could not be read. */
static crypto_view_result view_render_plaintext(GMimeMessage *outer, GMimePart *cipher_part,
						GMimeParserOptions *po, GByteArray *plain,
						bool is_mime, const view_signing *signing,
						GByteArray **view_r, crypto_view_status *st)
{
	GMimeObject *inline_part = st->kind == CRYPTO_VIEW_KIND_INLINE_PGP
		? GMIME_OBJECT(cipher_part) : NULL;
	GMimeObject *entity = view_entity(inline_part, plain, is_mime, po);
	crypto_view_failure failure = CRYPTO_VIEW_FAIL_NONE;
	view_walk walk = { 0 };
	view_walk_tree(entity, 0, &walk);
	if (walk.too_complex)
		failure = CRYPTO_VIEW_FAIL_TOO_COMPLEX;
	if (failure != CRYPTO_VIEW_FAIL_NONE) {
		g_object_unref(entity);
		*view_r = view_write_failure(outer, po, failure);
		st->failure = failure;
		g_free(st->reason);
		st->reason = g_strdup(crypto_view_failure_text(failure));
		return CRYPTO_VIEW_RENDERED;
	}

	view_parts vp = { .po = po, .outer = outer };
	char *signature = NULL;
	char *error = NULL;
	crypto_view_result ret = CRYPTO_VIEW_RENDERED;
	/* Verification reads the entity as it was decrypted, so it comes
	 * before view_assemble trims the entity's header. */
	GPtrArray *sigs = g_ptr_array_new_with_free_func(view_sig_free);
	bool covers_root = true;
	if (signing->signature == NULL) {
		if (signing->onepass != NULL && signing->onepass->len > 0) {
			for (guint i = 0; i < signing->onepass->len; i++) {
				const view_sig *s = g_ptr_array_index(signing->onepass, i);
				view_sigs_add(sigs, s->verdict, s->fpr, s->why);
			}
		} else if (GMIME_IS_MULTIPART_SIGNED(entity)) {
			if (view_sigs_from_gmime(GMIME_MULTIPART_SIGNED(entity), sigs, &error) < 0)
				ret = CRYPTO_VIEW_TEMPFAIL;
		} else if (walk.first_signed != NULL) {
			covers_root = false;
			if (view_sigs_from_gmime(walk.first_signed, sigs, &error) < 0)
				ret = CRYPTO_VIEW_TEMPFAIL;
		}
	}
	if (ret == CRYPTO_VIEW_RENDERED) {
		view_assemble(&vp, entity);
		if (signing->signature != NULL)
			signature = g_strdup(signing->signature);
		else if (view_signature_value(signing->w, sigs, covers_root, vp.from,
					      &signature, &error) < 0)
			ret = CRYPTO_VIEW_TEMPFAIL;
	}
	if (ret == CRYPTO_VIEW_RENDERED) {
		*view_r = view_write(&vp, "ok", signature);
		st->decrypted = true;
		st->failure = CRYPTO_VIEW_FAIL_NONE;
		g_free(st->reason);
		st->reason = NULL;
		st->signature = signature;
		signature = NULL;
		st->inner_from_mismatch = vp.from_mismatch != NULL;
		g_strfreev(st->gossip);
		st->gossip = NULL;
		if (vp.gossip != NULL && vp.gossip->len > 1) {
			g_ptr_array_set_free_func(vp.gossip, NULL);
			st->gossip = (char **)g_ptr_array_free(vp.gossip, FALSE);
			vp.gossip = NULL;
		}
	} else {
		g_free(st->reason);
		st->reason = error;
		error = NULL;
	}
	g_free(signature);
	g_free(error);
	g_ptr_array_unref(sigs);
	view_parts_clear(&vp);
	g_object_unref(entity);
	return ret;
}

/* The message parsed and classified; everything else reads from here. */
typedef struct {
	GByteArray *buf;
	GMimeParserOptions *po;
	GMimeMessage *message;
	GMimePart *cipher_part;
} view_input;

static void view_input_open(view_input *in, const uint8_t *msg, size_t len,
			    crypto_view_status *st)
{
	in->buf = g_byte_array_sized_new((guint)len);
	g_byte_array_append(in->buf, msg, (guint)len);
	in->po = g_mime_parser_options_new();
	in->message = view_parse_message(in->buf, in->po);
	const char *reason;
	crypto_view_kind kind = view_classify(in->message, &in->cipher_part, &reason);
	view_status_set_kind(st, kind, reason);
}

static void view_input_close(view_input *in)
{
	if (in->message != NULL)
		g_object_unref(in->message);
	g_mime_parser_options_free(in->po);
	g_byte_array_unref(in->buf);
	memset(in, 0, sizeof(*in));
}

static crypto_view_result view_render_encrypted(crypto_worker *w, view_input *in,
						const char *pinned_signature,
						GByteArray **view_r, crypto_view_status *st)
{
	if (st->kind == CRYPTO_VIEW_KIND_MALFORMED) {
		st->failure = CRYPTO_VIEW_FAIL_STRUCTURE;
		*view_r = view_write_failure(in->message, in->po, st->failure);
		return CRYPTO_VIEW_RENDERED;
	}
	char *error = NULL;
	if (view_check_gpg_integrity(w, &error) < 0) {
		g_free(st->reason);
		st->reason = error;
		return CRYPTO_VIEW_TEMPFAIL;
	}
	GByteArray *cipher = view_part_content(in->cipher_part);
	view_decrypted d;
	view_decrypt(w, cipher, pinned_signature == NULL, &d);
	g_byte_array_unref(cipher);
	crypto_view_result ret = CRYPTO_VIEW_RENDERED;
	if (d.tempfail != NULL) {
		g_free(st->reason);
		st->reason = d.tempfail;
		d.tempfail = NULL;
		ret = CRYPTO_VIEW_TEMPFAIL;
	} else if (d.failure != CRYPTO_VIEW_FAIL_NONE) {
		st->failure = d.failure;
		g_free(st->reason);
		st->reason = g_strdup(crypto_view_failure_text(d.failure));
		st->transient = d.failure == CRYPTO_VIEW_FAIL_NO_KEY ||
			d.failure == CRYPTO_VIEW_FAIL_KEY_LOCKED;
		*view_r = view_write_failure(in->message, in->po, d.failure);
	} else {
		/* Inline PGP whose literal data is MIME is shown as that MIME. */
		bool is_mime = st->kind == CRYPTO_VIEW_KIND_PGP_MIME || d.is_mime;
		view_signing signing = { w, pinned_signature, d.sigs };
		ret = view_render_plaintext(in->message, in->cipher_part, in->po, d.plain, is_mime,
					    &signing, view_r, st);
	}
	view_decrypted_clear(&d);
	return ret;
}

crypto_view_result crypto_view_render(crypto_worker *w, crypto_decrypt_policy policy,
				      const uint8_t *msg, size_t len,
				      const char *pinned_signature,
				      GByteArray **view_r, crypto_view_status *status_r)
{
	*view_r = NULL;
	memset(status_r, 0, sizeof(*status_r));
	if (pinned_signature != NULL && !view_signature_value_ok(pinned_signature)) {
		status_r->reason = g_strdup("the pinned signature status is not one line of text");
		return CRYPTO_VIEW_INVALID;
	}
	if (w != NULL && w->remote && policy == CRYPTO_DECRYPT_ROOT) {
		/* Only what needs gpg goes to a worker process. */
		crypto_view_classify(msg, len, status_r);
		if (!status_r->encrypted)
			return CRYPTO_VIEW_UNCHANGED;
		crypto_view_status_clear(status_r);
		return crypto_gpgproc_view(msg, len, pinned_signature, view_r, status_r);
	}
	view_input in;
	view_input_open(&in, msg, len, status_r);
	crypto_view_result ret = CRYPTO_VIEW_UNCHANGED;
	if (status_r->encrypted && (policy == CRYPTO_DECRYPT_NEVER || w == NULL)) {
		g_free(status_r->reason);
		status_r->reason = g_strdup("decryption is off");
	} else if (status_r->encrypted) {
		ret = view_render_encrypted(w, &in, pinned_signature, view_r, status_r);
	}
	view_input_close(&in);
	return ret;
}

int crypto_view_build(const uint8_t *msg, size_t len, const uint8_t *plain,
		      size_t plain_len, bool is_mime, const char *signature,
		      GByteArray **view_r, crypto_view_status *status_r)
{
	*view_r = NULL;
	memset(status_r, 0, sizeof(*status_r));
	if (!view_signature_value_ok(signature)) {
		status_r->reason = g_strdup("the signature status is not one line of text");
		return -1;
	}
	view_input in;
	view_input_open(&in, msg, len, status_r);
	int ret = -1;
	if (status_r->kind == CRYPTO_VIEW_KIND_PGP_MIME ||
	    status_r->kind == CRYPTO_VIEW_KIND_INLINE_PGP) {
		GByteArray *buf = g_byte_array_sized_new((guint)plain_len);
		g_byte_array_append(buf, plain, (guint)plain_len);
		view_signing signing = { NULL, signature, NULL };
		bool mime = is_mime || status_r->kind == CRYPTO_VIEW_KIND_PGP_MIME;
		if (view_render_plaintext(in.message, in.cipher_part, in.po, buf, mime, &signing,
					  view_r, status_r) == CRYPTO_VIEW_RENDERED)
			ret = 0;
		g_byte_array_unref(buf);
	}
	view_input_close(&in);
	return ret;
}
