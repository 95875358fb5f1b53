/* Unit tests of the API token file: made once with mode 0600, the same
 * token on every read and for racing creators, and refused when others
 * may read it, when it is a symlink or does not hold one token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_token.h"

static char *make_dir(void)
{
	char *dir = g_dir_make_tmp("sp-token-XXXXXX", NULL);
	assert_non_null(dir);
	return dir;
}

static void remove_dir(char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
		char *p = g_build_filename(dir, name, NULL);
		g_unlink(p);
		g_free(p);
	}
	if (d != NULL)
		g_dir_close(d);
	g_rmdir(dir);
	g_free(dir);
}

static void write_file(const char *dir, const char *text, int mode)
{
	char *path = api_token_path(dir);
	g_unlink(path);
	assert_true(g_file_set_contents(path, text, -1, NULL));
	assert_int_equal(g_chmod(path, mode), 0);
	g_free(path);
}

static void test_create_and_read(void **state)
{
	(void)state;
	char *dir = make_dir();
	char token[API_CHECK_TOKEN_LEN + 1], again[API_CHECK_TOKEN_LEN + 1];
	const char *error = NULL;
	assert_int_equal(api_token_load(dir, false, token, &error), -1);
	assert_non_null(strstr(error, "cannot open"));
	assert_int_equal(api_token_load(dir, true, token, &error), 0);
	assert_int_equal(strlen(token), API_CHECK_TOKEN_LEN);
	for (size_t i = 0; i < API_CHECK_TOKEN_LEN; i++)
		assert_true(g_ascii_isxdigit(token[i]) && !g_ascii_isupper(token[i]));
	char *path = api_token_path(dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Read again, with or without create: the same token. */
	assert_int_equal(api_token_load(dir, true, again, &error), 0);
	assert_string_equal(token, again);
	assert_int_equal(api_token_load(dir, false, again, &error), 0);
	assert_string_equal(token, again);
	/* No temporary file left behind. */
	GDir *d = g_dir_open(dir, 0, NULL);
	unsigned files = 0;
	while (g_dir_read_name(d) != NULL)
		files++;
	g_dir_close(d);
	assert_int_equal(files, 1);
	g_free(path);
	remove_dir(dir);
}

static void test_refused(void **state)
{
	(void)state;
	char *dir = make_dir();
	char token[API_CHECK_TOKEN_LEN + 1];
	const char *error = NULL;
	const char good[] = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n";
	write_file(dir, good, 0600);
	assert_int_equal(api_token_load(dir, false, token, &error), 0);
	assert_string_equal(token, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	write_file(dir, good, 0644);
	assert_int_equal(api_token_load(dir, true, token, &error), -1);
	assert_non_null(strstr(error, "accessible to others"));
	write_file(dir, good, 0620);
	assert_int_equal(api_token_load(dir, true, token, &error), -1);
	static const char *const bad[] = {
		"", "\n", "0123", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\n",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0\n",
		" 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nx\n",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		write_file(dir, bad[i], 0600);
		if (api_token_load(dir, true, token, &error) != -1)
			fail_msg("token file %zu accepted", i);
		assert_non_null(strstr(error, "does not hold a token"));
	}
	/* A symlink is not followed, even to a good file. */
	char *path = api_token_path(dir);
	char *other = g_build_filename(dir, "other", NULL);
	g_unlink(path);
	assert_true(g_file_set_contents(other, good, -1, NULL));
	g_chmod(other, 0600);
	assert_int_equal(symlink(other, path), 0);
	assert_int_equal(api_token_load(dir, true, token, &error), -1);
	g_free(other);
	g_free(path);
	remove_dir(dir);
}

typedef struct {
	const char *dir;
	char token[API_CHECK_TOKEN_LEN + 1];
	int ret;
} racer;

static void *race(void *p)
{
	racer *r = p;
	const char *error;
	r->ret = api_token_load(r->dir, true, r->token, &error);
	return NULL;
}

/* Creators racing end up with one token. */
static void test_race(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++) {
		char *dir = make_dir();
		racer rs[6];
		pthread_t th[6];
		for (size_t i = 0; i < G_N_ELEMENTS(rs); i++) {
			rs[i].dir = dir;
			assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
		}
		for (size_t i = 0; i < G_N_ELEMENTS(rs); i++)
			pthread_join(th[i], NULL);
		for (size_t i = 0; i < G_N_ELEMENTS(rs); i++) {
			assert_int_equal(rs[i].ret, 0);
			assert_string_equal(rs[i].token, rs[0].token);
		}
		remove_dir(dir);
	}
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	umask(022);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_and_read),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
