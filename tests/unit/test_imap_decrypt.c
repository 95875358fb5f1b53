/* The header field reader that Autocrypt on the inbound path uses: values
 * of a named field, unfolded, from the header only, never past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "imap_decrypt.h"

static GPtrArray *values(const char *msg, const char *name)
{
	return imap_decrypt_header_values((const uint8_t *)msg, strlen(msg), name);
}

static void assert_values(const char *msg, const char *name, const char *const *want)
{
	GPtrArray *v = values(msg, name);
	size_t n = 0;
	while (want[n] != NULL)
		n++;
	assert_int_equal(v->len, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v->pdata[i], want[i]);
	g_ptr_array_unref(v);
}

static const char msg[] =
	"From: Carol <carol@example.test>\r\n"
	"Autocrypt: addr=carol@example.test;\r\n"
	" keydata=AAAA\r\n"
	"\tBBBB\r\n"
	"Autocrypt-Gossip: addr=dave@example.test; keydata=CCCC\r\n"
	"autocrypt:second \r\n"
	"AutocryptX: no\r\n"
	"Subject: s\r\n"
	"\r\n"
	"Autocrypt: in the body\r\n";

static void test_values(void **state)
{
	(void)state;
	assert_values(msg, "Autocrypt", (const char *const[]){
		"addr=carol@example.test; keydata=AAAA\tBBBB", "second", NULL });
	assert_values(msg, "Autocrypt-Gossip", (const char *const[]){
		"addr=dave@example.test; keydata=CCCC", NULL });
	assert_values(msg, "FROM", (const char *const[]){ "Carol <carol@example.test>", NULL });
	assert_values(msg, "To", (const char *const[]){ NULL });
	assert_values(msg, "Subject", (const char *const[]){ "s", NULL });
	/* LF line ends, a header without body, a continuation before any field. */
	assert_values(" lost\nDate: Mon, 3 Mar 2025\n folded\n", "Date",
		      (const char *const[]){ "Mon, 3 Mar 2025 folded", NULL });
	assert_values("", "From", (const char *const[]){ NULL });
	assert_values("From:", "From", (const char *const[]){ "", NULL });
	assert_values("From", "From", (const char *const[]){ NULL });
}

/* Every prefix of the message: no more values than the whole has, and
 * nothing read past the end (ASan would see it in the copy). */
static void test_every_prefix(void **state)
{
	(void)state;
	size_t len = strlen(msg);
	for (size_t n = 0; n <= len; n++) {
		uint8_t *copy = g_memdup2(msg, n);
		GPtrArray *v = imap_decrypt_header_values(copy, n, "Autocrypt");
		assert_true(v->len <= 2);
		g_ptr_array_unref(v);
		g_free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_every_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
