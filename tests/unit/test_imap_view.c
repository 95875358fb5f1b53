/* The IMAP view cache (LRU bounded in bytes, shared by threads) and the
 * removal of X-Sealpost-* fields from plain messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "imap_decrypt.h"
#include "imap_view_cache.h"

static imap_view_key key(const char *account, const char *mailbox, uint32_t uidvalidity,
			 uint32_t uid)
{
	imap_view_key k = {
		.account = account, .mailbox = (const uint8_t *)mailbox,
		.mailbox_len = strlen(mailbox), .uidvalidity = uidvalidity, .uid = uid,
	};
	return k;
}

static GBytes *bytes_of(size_t n, char fill)
{
	char *buf = g_malloc(n);
	memset(buf, fill, n);
	return g_bytes_new_take(buf, n);
}

static void test_cache_get_put(void **state)
{
	(void)state;
	imap_view_cache *c = imap_view_cache_new(1 << 20);
	GBytes *v = bytes_of(100, 'a'), *got = NULL;
	imap_view_key k = key("acct", "INBOX", 7, 1);

	assert_false(imap_view_cache_get(c, &k, &got));
	assert_null(got);
	imap_view_cache_put(c, &k, v);
	assert_true(imap_view_cache_get(c, &k, &got));
	assert_non_null(got);
	assert_true(g_bytes_equal(got, v));
	g_bytes_unref(got);

	/* Every part of the key counts; the mailbox is compared as bytes. */
	imap_view_key others[] = {
		key("acct2", "INBOX", 7, 1), key("acct", "inbox", 7, 1),
		key("acct", "INBOX", 8, 1), key("acct", "INBOX", 7, 2),
		/* account "acc" + mailbox "tINBOX" must not collide with "acct" + "INBOX" */
		key("acc", "tINBOX", 7, 1),
	};
	for (size_t i = 0; i < G_N_ELEMENTS(others); i++) {
		assert_false(imap_view_cache_get(c, &others[i], &got));
		assert_null(got);
	}

	/* "Served unchanged" is remembered as a known entry without a view. */
	imap_view_key plain = key("acct", "INBOX", 7, 3);
	imap_view_cache_put(c, &plain, NULL);
	got = (GBytes *)0x1;
	assert_true(imap_view_cache_get(c, &plain, &got));
	assert_null(got);

	/* A put for a known key replaces its entry (and its cost). */
	uint64_t before = imap_view_cache_bytes(c);
	GBytes *bigger = bytes_of(300, 'b');
	imap_view_cache_put(c, &k, bigger);
	assert_int_equal(imap_view_cache_bytes(c), before + 200);
	assert_true(imap_view_cache_get(c, &k, &got));
	assert_true(g_bytes_equal(got, bigger));
	g_bytes_unref(got);

	g_bytes_unref(v);
	g_bytes_unref(bigger);
	imap_view_cache_free(&c);
	assert_null(c);
}

/* The bound holds, the least recently used entry leaves first, and a
 * reference handed out survives eviction. */
static void test_cache_lru_bound(void **state)
{
	(void)state;
	const uint64_t bound = 10 * 1024;
	imap_view_cache *c = imap_view_cache_new(bound);
	GBytes *held = NULL;
	for (uint32_t uid = 1; uid <= 50; uid++) {
		imap_view_key k = key("a", "INBOX", 1, uid);
		GBytes *v = bytes_of(1000, (char)('a' + uid % 26));
		imap_view_cache_put(c, &k, v);
		g_bytes_unref(v);
		assert_true(imap_view_cache_bytes(c) <= bound);
		if (uid == 3) {
			/* Touch 1 so that 2 is the oldest. */
			imap_view_key k1 = key("a", "INBOX", 1, 1);
			assert_true(imap_view_cache_get(c, &k1, &held));
		}
		if (uid == 10) {
			imap_view_key k2 = key("a", "INBOX", 1, 2), k1 = key("a", "INBOX", 1, 1);
			GBytes *got = NULL;
			/* 10 x ~1.2 KB > 10 KiB: something left, and it was 2 not 1. */
			assert_false(imap_view_cache_get(c, &k2, &got));
			assert_true(imap_view_cache_get(c, &k1, &got));
			g_bytes_unref(got);
		}
	}
	/* Long evicted, the reference is still good. */
	imap_view_key k1 = key("a", "INBOX", 1, 1);
	GBytes *got = NULL;
	assert_false(imap_view_cache_get(c, &k1, &got));
	assert_int_equal(g_bytes_get_size(held), 1000);
	assert_int_equal(((const char *)g_bytes_get_data(held, NULL))[999], 'b');
	g_bytes_unref(held);
	/* The newest is there. */
	imap_view_key k50 = key("a", "INBOX", 1, 50);
	assert_true(imap_view_cache_get(c, &k50, &got));
	g_bytes_unref(got);

	/* A view bigger than the whole bound is not kept, nor does it evict. */
	uint64_t before = imap_view_cache_bytes(c);
	GBytes *huge = bytes_of(bound + 1, 'h');
	imap_view_key kh = key("a", "INBOX", 1, 99);
	imap_view_cache_put(c, &kh, huge);
	g_bytes_unref(huge);
	assert_false(imap_view_cache_get(c, &kh, &got));
	assert_int_equal(imap_view_cache_bytes(c), before);
	imap_view_cache_free(&c);
}

/* Size 0 keeps nothing; a NULL cache is a no-op. */
static void test_cache_disabled(void **state)
{
	(void)state;
	imap_view_cache *c = imap_view_cache_new(0);
	imap_view_key k = key("a", "INBOX", 1, 1);
	GBytes *v = bytes_of(10, 'x'), *got = NULL;
	imap_view_cache_put(c, &k, v);
	assert_false(imap_view_cache_get(c, &k, &got));
	assert_int_equal(imap_view_cache_bytes(c), 0);
	imap_view_cache_put(NULL, &k, v);
	assert_false(imap_view_cache_get(NULL, &k, &got));
	g_bytes_unref(v);
	imap_view_cache_free(&c);
	imap_view_cache_free(&c);	/* NULL: nothing */
}

typedef struct {
	imap_view_cache *c;
	uint32_t base;
} thread_arg;

static gpointer hammer(gpointer p)
{
	thread_arg *a = p;
	for (uint32_t i = 0; i < 2000; i++) {
		imap_view_key k = key("a", "INBOX", 1, a->base + i % 300);
		GBytes *got = NULL;
		if (imap_view_cache_get(a->c, &k, &got)) {
			if (got != NULL)
				g_bytes_unref(got);
		} else {
			GBytes *v = bytes_of(64 + i % 512, 'z');
			imap_view_cache_put(a->c, &k, v);
			g_bytes_unref(v);
		}
	}
	return NULL;
}

/* Threads sharing one cache: no corruption (ASan/UBSan), bound kept. */
static void test_cache_threads(void **state)
{
	(void)state;
	const uint64_t bound = 64 * 1024;
	imap_view_cache *c = imap_view_cache_new(bound);
	thread_arg args[4];
	GThread *threads[4];
	for (int i = 0; i < 4; i++) {
		args[i].c = c;
		args[i].base = (uint32_t)(1 + i * 150);	/* overlapping ranges */
		threads[i] = g_thread_new("hammer", hammer, &args[i]);
	}
	for (int i = 0; i < 4; i++)
		g_thread_join(threads[i]);
	assert_true(imap_view_cache_bytes(c) <= bound);
	assert_true(imap_view_cache_bytes(c) > 0);
	imap_view_cache_free(&c);
}

static void expect_stripped(const char *in, const char *want)
{
	GByteArray *out = imap_decrypt_strip_status_fields((const uint8_t *)in, strlen(in));
	if (want == NULL) {
		assert_null(out);
		return;
	}
	assert_non_null(out);
	assert_int_equal(out->len, strlen(want));
	assert_memory_equal(out->data, want, out->len);
	g_byte_array_unref(out);
}

static void test_strip_status_fields(void **state)
{
	(void)state;
	/* Nothing to remove: NULL, the message is served as stored. */
	expect_stripped("Subject: hi\r\n\r\nbody\r\n", NULL);
	expect_stripped("", NULL);
	/* A field in the body is body. */
	expect_stripped("Subject: hi\r\n\r\nX-Sealpost-Decryption: ok\r\n", NULL);
	/* Any case, with continuation lines, anywhere in the header. */
	expect_stripped("X-Sealpost-Decryption: ok\r\nSubject: hi\r\n\r\nbody\r\n",
			"Subject: hi\r\n\r\nbody\r\n");
	expect_stripped("Subject: hi\r\nx-sealpost-signature: good\r\n 0123 <a@b>\r\n\tmore\r\n"
			"From: a@b\r\n\r\nbody\r\n",
			"Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n");
	/* Several, and the last before the blank line. */
	expect_stripped("X-SEALPOST-A: 1\r\nTo: b@c\r\nX-Sealpost-From-Mismatch: x\r\n\r\n",
			"To: b@c\r\n\r\n");
	/* LF-only line ends. */
	expect_stripped("X-Sealpost-Decryption: ok\nSubject: s\n\nb\n", "Subject: s\n\nb\n");
	/* A header without a body, the field last, no line end. */
	expect_stripped("Subject: s\r\nX-Sealpost-Decryption: ok", "Subject: s\r\n");
	/* Not the prefix: kept. */
	expect_stripped("X-Sealpos: 1\r\nX-Sealpost: 2\r\n\r\n", NULL);
	/* A continuation line of a kept field that looks like one stays. */
	expect_stripped("Subject: a\r\n X-Sealpost-Decryption: ok\r\n\r\n", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_get_put),
		cmocka_unit_test(test_cache_lru_bound),
		cmocka_unit_test(test_cache_disabled),
		cmocka_unit_test(test_cache_threads),
		cmocka_unit_test(test_strip_status_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
