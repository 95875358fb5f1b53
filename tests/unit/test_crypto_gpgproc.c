/* Unit tests of the OpenPGP worker processes: the outbound writer and the
 * decrypted view through them, a large message streamed, and what happens
 * when a worker process dies or hangs mid-operation — against real gpg in a
 * throwaway GNUPGHOME. This program is also the worker (as sealpost is). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <glib.h>
#include <gmime/gmime.h>
#include <gpgme.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpgproc.h"
#include "keystore.h"
#include "testkeys.h"
#include "outbound.h"
#include "view.h"

#define U8(s) ((const uint8_t *)(s))
#define POOL_SIZE 2

static char *tmp_dir;
static char *home;
static gpgme_ctx_t setup_ctx;
static char *alice_fpr, *bob_fpr;

static int group_setup(void **state)
{
	(void)state;
	g_mime_init();
	tmp_dir = g_dir_make_tmp("sealpost-gpgproc-XXXXXX", NULL);
	assert_non_null(tmp_dir);
	home = g_build_filename(tmp_dir, "gnupg", NULL);
	const char *error = NULL;
	if (keystore_init(home, &error) < 0)
		fail_msg("keystore_init: %s", error);
	assert_int_equal(gpgme_new(&setup_ctx), 0);
	gpgme_set_protocol(setup_ctx, GPGME_PROTOCOL_OpenPGP);
	alice_fpr = testkeys_make(setup_ctx, "Alice <alice@example.test>");
	bob_fpr = testkeys_make(setup_ctx, "Bob <bob@example.test>");
	if (crypto_gpgproc_start(POOL_SIZE, home, &error) < 0)
		fail_msg("crypto_gpgproc_start: %s", error);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	crypto_gpgproc_stop();
	gpgme_release(setup_ctx);
	char *argv[] = { "gpgconf", "--homedir", home, "--kill", "all", NULL };
	g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
		     G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	char *rm[] = { "rm", "-rf", tmp_dir, NULL };
	g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
	g_free(alice_fpr);
	g_free(bob_fpr);
	g_free(home);
	g_free(tmp_dir);
	g_mime_shutdown();
	return 0;
}

/* ---- the body source: a text repeated, with a hook at a given read ---------------- */

typedef struct {
	size_t total, pos;
	unsigned reads;
	unsigned hook_at;	/* 0: none */
	void (*hook)(void);
} big_source;

static const char line[] = "The quick brown fox jumps over the lazy dog, 0123456789.\r\n";

static ssize_t big_read(void *ctx, void *buf, size_t size)
{
	big_source *b = ctx;
	if (++b->reads == b->hook_at && b->hook != NULL)
		b->hook();
	size_t n = b->total - b->pos < size ? b->total - b->pos : size;
	for (size_t i = 0; i < n; i++)
		((char *)buf)[i] = line[(b->pos + i) % (sizeof(line) - 1)];
	b->pos += n;
	return (ssize_t)n;
}

static int big_rewind(void *ctx)
{
	((big_source *)ctx)->pos = 0;
	return 0;
}

typedef struct {
	GString *text;
	size_t total;
	bool keep;		/* false: count only */
} counting_sink;

static int counting_write(void *ctx, const void *buf, size_t len)
{
	counting_sink *s = ctx;
	s->total += len;
	if (s->keep)
		g_string_append_len(s->text, buf, (gssize)len);
	return 0;
}

static const char header[] =
	"From: Bob <bob@example.test>\r\n"
	"To: Alice <alice@example.test>\r\n"
	"Subject: through a worker process\r\n"
	"Message-ID: <gpgproc@example.test>\r\n"
	"\r\n";

/* Writes header + body_len bytes of body through the pool: encrypted to
 * alice (signed by bob when sign), or only signed when !encrypt. */
static int write_out(bool encrypt, bool sign, big_source *src_ctx, counting_sink *out,
		     crypto_failure *failure_r, const char **error_r)
{
	size_t block;
	bool blank;
	assert_int_equal(crypto_header_block_end(U8(header), strlen(header), false, &block,
						 &blank), 1);
	crypto_outbound_header *h = crypto_outbound_header_parse(U8(header), block, blank,
								 U8(""), 0);
	const char *error = NULL;
	crypto_worker *w = crypto_worker_new(&error);
	assert_non_null(w);
	assert_true(w->remote);
	gpgme_key_t keys[2] = { testkeys_get(setup_ctx, alice_fpr, false), NULL };
	crypto_outbound_options opts = {
		.recipients = keys,
		.signer = sign ? testkeys_get(setup_ctx, bob_fpr, true) : NULL,
	};
	crypto_source src = { big_read, big_rewind, src_ctx };
	crypto_sink sink = { counting_write, out };
	int ret = encrypt
		? crypto_outbound_write_encrypted(h, w, &opts, &src, &sink, failure_r, error_r)
		: crypto_outbound_write_signed(h, w, &opts, &src, &sink, failure_r, error_r);
	gpgme_key_unref(keys[0]);
	if (opts.signer != NULL)
		gpgme_key_unref(opts.signer);
	crypto_worker_free(&w);
	crypto_outbound_header_free(&h);
	return ret;
}

static crypto_view_result render(const char *msg, GByteArray **view_r, crypto_view_status *st)
{
	const char *error = NULL;
	crypto_worker *w = crypto_worker_new(&error);
	assert_non_null(w);
	crypto_view_result r = crypto_view_render(w, CRYPTO_DECRYPT_ROOT, U8(msg), strlen(msg),
						  NULL, view_r, st);
	crypto_worker_free(&w);
	return r;
}

static bool has(const GByteArray *ba, const char *needle)
{
	return ba != NULL && memmem(ba->data, ba->len, needle, strlen(needle)) != NULL;
}

/* An encrypted (and signed) message, as the outbound path writes it. */
static char *encrypted_message(size_t body_len)
{
	big_source src = { .total = body_len };
	counting_sink out = { g_string_new(NULL), 0, true };
	crypto_failure failure;
	const char *error = NULL;
	if (write_out(true, true, &src, &out, &failure, &error) < 0)
		fail_msg("encrypting: %s", error);
	return g_string_free(out.text, FALSE);
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
	(void)state;
	char *msg = encrypted_message(2000);
	assert_non_null(strstr(msg, "multipart/encrypted"));
	assert_null(strstr(msg, "quick brown fox"));
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(render(msg, &view, &st), CRYPTO_VIEW_RENDERED);
	assert_true(st.decrypted);
	assert_true(st.encrypted);
	assert_int_equal(st.kind, CRYPTO_VIEW_KIND_PGP_MIME);
	assert_non_null(st.signature);
	assert_true(g_str_has_prefix(st.signature, "good "));
	assert_true(has(view, "quick brown fox"));
	assert_true(has(view, "Subject: through a worker process"));
	assert_true(has(view, "X-Sealpost-Decryption: ok"));
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);

	/* A plain message never leaves this process, and comes back unchanged. */
	const char *plain = "From: a@example.test\r\nSubject: hi\r\n\r\nhello\r\n";
	assert_int_equal(render(plain, &view, &st), CRYPTO_VIEW_UNCHANGED);
	assert_null(view);
	assert_false(st.encrypted);
	crypto_view_status_clear(&st);
	g_free(msg);
}

static void test_signed(void **state)
{
	(void)state;
	big_source src = { .total = 5000 };
	counting_sink out = { g_string_new(NULL), 0, true };
	crypto_failure failure;
	const char *error = NULL;
	if (write_out(false, true, &src, &out, &failure, &error) < 0)
		fail_msg("signing: %s", error);
	assert_non_null(strstr(out.text->str, "multipart/signed; micalg=\"pgp-sha"));
	assert_non_null(strstr(out.text->str, "-----BEGIN PGP SIGNATURE-----\r\n"));
	assert_non_null(strstr(out.text->str, "quick brown fox"));
	g_string_free(out.text, TRUE);
}

static ssize_t discard_write(void *ctx, const void *buf, size_t size)
{
	(void)ctx;
	(void)buf;
	return (ssize_t)size;
}

/* gpg refuses before it read the input (no such key): the answer comes
 * while the input still streams, the rest is dropped, and the worker is
 * ready for the next operation. */
static void test_refused_early(void **state)
{
	(void)state;
	const char *unknown[] = { "0123456789ABCDEF0123456789ABCDEF01234567", NULL };
	for (int round = 0; round < 2 * POOL_SIZE; round++) {
		big_source src = { .total = 4u * 1024 * 1024 };
		crypto_gpgproc_result res;
		const char *error = NULL;
		assert_int_equal(crypto_gpgproc_run(CRYPTO_GPGPROC_ENCRYPT, unknown, NULL,
						    big_read, &src, discard_write, NULL,
						    &res, &error), 0);
		assert_int_equal(gpgme_err_code(res.err), GPG_ERR_NO_PUBKEY);
		assert_true(src.pos < src.total);
	}
	pid_t before[POOL_SIZE], after[POOL_SIZE];
	crypto_gpgproc_pids(before, POOL_SIZE);
	big_source src = { .total = 10000 };
	counting_sink out = { NULL, 0, false };
	crypto_failure failure;
	const char *error = NULL;
	if (write_out(true, true, &src, &out, &failure, &error) < 0)
		fail_msg("after refusals: %s", error);
	crypto_gpgproc_pids(after, POOL_SIZE);
	assert_memory_equal(before, after, sizeof(before));
}

/* 25 MiB in and out through the socket, never held whole by either side. */
static void test_large_streamed(void **state)
{
	(void)state;
	big_source src = { .total = 25u * 1024 * 1024 };
	counting_sink out = { NULL, 0, false };
	crypto_failure failure;
	const char *error = NULL;
	if (write_out(true, false, &src, &out, &failure, &error) < 0)
		fail_msg("encrypting 25 MiB: %s", error);
	assert_int_equal(src.pos, src.total);
	assert_true(out.total > 1000);
}

static pid_t killed[POOL_SIZE];

static void kill_workers(void)
{
	size_t n = crypto_gpgproc_pids(killed, POOL_SIZE);
	assert_int_equal(n, POOL_SIZE);
	for (size_t i = 0; i < n; i++)
		if (killed[i] > 0)
			kill(killed[i], SIGKILL);
}

static void assert_reaped(const pid_t *pids)
{
	for (size_t i = 0; i < POOL_SIZE; i++) {
		if (pids[i] <= 0)
			continue;
		/* Waited for: not even a zombie is left. */
		assert_int_equal(kill(pids[i], 0), -1);
		assert_int_equal(errno, ESRCH);
	}
}

/* The worker processes are killed while a message streams through one: the
 * operation fails as temporary, and the next one works on new processes. */
static void test_worker_killed(void **state)
{
	(void)state;
	big_source src = { .total = 4u * 1024 * 1024, .hook_at = 3, .hook = kill_workers };
	counting_sink out = { NULL, 0, false };
	crypto_failure failure = CRYPTO_FAIL_PERMANENT;
	const char *error = NULL;
	assert_int_equal(write_out(true, false, &src, &out, &failure, &error), -1);
	assert_int_equal(failure, CRYPTO_FAIL_TEMPORARY);
	assert_non_null(strstr(error, "OpenPGP worker"));

	big_source again = { .total = 100000 };
	counting_sink out2 = { NULL, 0, false };
	if (write_out(true, false, &again, &out2, &failure, &error) < 0)
		fail_msg("after the workers were killed: %s", error);
	assert_reaped(killed);
	pid_t now[POOL_SIZE];
	crypto_gpgproc_pids(now, POOL_SIZE);
	for (size_t i = 0; i < POOL_SIZE; i++)
		for (size_t j = 0; j < POOL_SIZE; j++)
			assert_true(now[i] == 0 || now[i] != killed[j]);

	/* Killed while idle: the next borrower notices and starts another. */
	char *msg = encrypted_message(1000);
	kill_workers();
	usleep(50 * 1000);
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(render(msg, &view, &st), CRYPTO_VIEW_RENDERED);
	assert_true(st.decrypted);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	assert_reaped(killed);
	g_free(msg);
}

/* A worker started while this process has descriptors without
 * close-on-exec (sessions do) gets none of them: its stdin, stdout, stderr
 * and socket only. */
static void test_no_inherited_descriptors(void **state)
{
	(void)state;
	int leak = dup(2);
	assert_true(leak > 3);
	kill_workers();
	big_source src = { .total = 1000 };
	counting_sink out = { NULL, 0, false };
	crypto_failure failure;
	const char *error = NULL;
	if (write_out(true, false, &src, &out, &failure, &error) < 0)
		fail_msg("encrypting: %s", error);
	pid_t pids[POOL_SIZE];
	crypto_gpgproc_pids(pids, POOL_SIZE);
	size_t checked = 0;
	for (size_t i = 0; i < POOL_SIZE; i++) {
		if (pids[i] <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pids[i]);
		GDir *dir = g_dir_open(path, 0, NULL);
		assert_non_null(dir);
		for (const char *name; (name = g_dir_read_name(dir)) != NULL;)
			assert_true(atoi(name) <= 3);
		g_dir_close(dir);
		checked++;
	}
	assert_true(checked > 0);
	close(leak);
}

/* A worker process that stops answering: the view fails as temporary after
 * the timeout, the process is replaced, and the next view renders. */
static void test_worker_hung(void **state)
{
	(void)state;
	char *msg = encrypted_message(1000);
	pid_t stopped[POOL_SIZE];
	crypto_gpgproc_pids(stopped, POOL_SIZE);
	for (size_t i = 0; i < POOL_SIZE; i++)
		if (stopped[i] > 0)
			kill(stopped[i], SIGSTOP);
	crypto_gpgproc_set_timeout(1000);
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(render(msg, &view, &st), CRYPTO_VIEW_TEMPFAIL);
	assert_null(view);
	assert_non_null(strstr(st.reason, "did not answer"));
	crypto_view_status_clear(&st);
	crypto_gpgproc_set_timeout(0);
	/* The hung one was killed and waited for; the others go on. */
	pid_t now[POOL_SIZE];
	crypto_gpgproc_pids(now, POOL_SIZE);
	size_t replaced = 0;
	for (size_t i = 0; i < POOL_SIZE; i++) {
		if (now[i] > 0)
			kill(now[i], SIGCONT);
		if (now[i] != stopped[i])
			replaced++;
	}
	assert_int_equal(replaced, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(render(msg, &view, &st), CRYPTO_VIEW_RENDERED);
		assert_true(has(view, "quick brown fox"));
		g_byte_array_unref(view);
		crypto_view_status_clear(&st);
	}
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

/* The integrity self-check (ignore-mdc-error) runs in the worker process. */
static void test_integrity_check_in_worker(void **state)
{
	(void)state;
	char *msg = encrypted_message(1000);
	crypto_gpgproc_stop();
	char *path = g_build_filename(home, "gpg.conf", NULL);
	assert_true(g_file_get_contents(path, &gpg_conf_saved, NULL, NULL));
	char *lax = g_strconcat(gpg_conf_saved, "ignore-mdc-error\n", NULL);
	assert_true(g_file_set_contents(path, lax, -1, NULL));
	const char *error = NULL;
	if (crypto_gpgproc_start(POOL_SIZE, home, &error) < 0)
		fail_msg("crypto_gpgproc_start: %s", error);
	GByteArray *view = NULL;
	crypto_view_status st;
	assert_int_equal(render(msg, &view, &st), CRYPTO_VIEW_TEMPFAIL);
	assert_null(view);
	assert_non_null(strstr(st.reason, "ignore-mdc-error"));
	crypto_view_status_clear(&st);
	restore_gpg_conf(NULL);
	assert_int_equal(render(msg, &view, &st), CRYPTO_VIEW_RENDERED);
	assert_true(st.decrypted);
	g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(lax);
	g_free(path);
	g_free(msg);
}

/* A process that ended: gone, or a zombie waiting for init. */
static bool process_ended(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	char *stat = NULL;
	if (!g_file_get_contents(path, &stat, NULL, NULL))
		return true;
	const char *end = strrchr(stat, ')');
	bool zombie = end != NULL && (end[2] == 'Z' || end[2] == 'X');
	g_free(stat);
	return zombie;
}

#define POOL_PARENT_ARG "__test-pool-parent"

/* The body of the process test_workers_end_with_parent kills. */
static int pool_parent_main(const char *gnupg_home)
{
	const char *error = NULL;
	if (keystore_init(gnupg_home, &error) < 0 ||
	    crypto_gpgproc_start(POOL_SIZE, gnupg_home, &error) < 0) {
		fprintf(stderr, "pool parent: %s\n", error);
		return 1;
	}
	pid_t pids[POOL_SIZE];
	crypto_gpgproc_pids(pids, POOL_SIZE);
	for (size_t i = 0; i < POOL_SIZE; i++)
		printf("%d\n", (int)pids[i]);
	fflush(stdout);
	for (;;)
		pause();
}

/* sealpost killed outright: its worker processes see their socket close
 * and exit; none is left behind. */
static void test_workers_end_with_parent(void **state)
{
	(void)state;
	char *argv[] = { "/proc/self/exe", POOL_PARENT_ARG, home, NULL };
	GPid child;
	int out_fd;
	GError *err = NULL;
	if (!g_spawn_async_with_pipes(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
				      &child, NULL, &out_fd, NULL, &err))
		fail_msg("spawn: %s", err->message);
	GIOChannel *ch = g_io_channel_unix_new(out_fd);
	pid_t workers[POOL_SIZE];
	for (size_t i = 0; i < POOL_SIZE; i++) {
		char *lineb = NULL;
		assert_int_equal(g_io_channel_read_line(ch, &lineb, NULL, NULL, NULL),
				 G_IO_STATUS_NORMAL);
		workers[i] = (pid_t)atoi(lineb);
		assert_true(workers[i] > 0);
		assert_false(process_ended(workers[i]));
		g_free(lineb);
	}
	g_io_channel_unref(ch);
	close(out_fd);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, NULL, 0), child);
	for (size_t i = 0; i < POOL_SIZE; i++) {
		gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
		while (!process_ended(workers[i]) && g_get_monotonic_time() < deadline)
			g_usleep(10000);
		assert_true(process_ended(workers[i]));
	}
}

/* Stopping ends every worker process and waits for it. */
static void test_stop(void **state)
{
	(void)state;
	pid_t pids[POOL_SIZE];
	crypto_gpgproc_pids(pids, POOL_SIZE);
	crypto_gpgproc_stop();
	assert_false(crypto_gpgproc_running());
	assert_reaped(pids);
	/* Without the pool, workers are in-process again. */
	const char *error = NULL;
	crypto_worker *w = crypto_worker_new(&error);
	assert_non_null(w);
	assert_false(w->remote);
	crypto_worker_free(&w);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], CRYPTO_GPGPROC_WORKER_ARG) == 0)
		return crypto_gpgproc_worker_main(argc, argv);
	if (argc > 2 && strcmp(argv[1], POOL_PARENT_ARG) == 0)
		return pool_parent_main(argv[2]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_signed),
		cmocka_unit_test(test_refused_early),
		cmocka_unit_test(test_large_streamed),
		cmocka_unit_test(test_worker_killed),
		cmocka_unit_test(test_no_inherited_descriptors),
		cmocka_unit_test(test_worker_hung),
		cmocka_unit_test_teardown(test_integrity_check_in_worker, restore_gpg_conf),
		cmocka_unit_test(test_workers_end_with_parent),
		cmocka_unit_test(test_stop),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
