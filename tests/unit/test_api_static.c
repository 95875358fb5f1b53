/* Unit tests of the web console's built-in files: exact-name lookup only,
 * content types by kind, and pages that keep to their CSP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "api_static.h"

static char *file_text(const api_static_file *f)
{
	return g_strndup((const char *)f->data, f->size);
}

static void test_lookup(void **state)
{
	(void)state;
	const char *const names[] = { "index.html", "console.css", "api.js", "pages.js", "main.js" };
	for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
		const api_static_file *f = api_static_find(names[i]);
		assert_non_null(f);
		assert_string_equal(f->name, names[i]);
		assert_true(f->size > 0);
	}
	assert_non_null(api_static_find(API_STATIC_INDEX));
	assert_int_equal(api_static_n_files, G_N_ELEMENTS(names));
}

static void test_no_tricks(void **state)
{
	(void)state;
	const char *const bad[] = { "", ".", "..", "../api.js", "./api.js", "/api.js", "api.js/",
				    "API.JS", "api.js ", " api.js", "api", "api.j", "console/api.js",
				    "index.html\r\n", "sealpost.conf", "api-token" };
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		assert_null(api_static_find(bad[i]));
	assert_null(api_static_find(NULL));
	/* The NUL ends the name: "api.js\0x" is "api.js", which is fine. */
}

static void test_content_types(void **state)
{
	(void)state;
	for (size_t i = 0; i < api_static_n_files; i++) {
		const api_static_file *f = &api_static_files[i];
		const char *want = g_str_has_suffix(f->name, ".html") ? "text/html; charset=utf-8" :
			g_str_has_suffix(f->name, ".js") ? "text/javascript; charset=utf-8" :
			g_str_has_suffix(f->name, ".css") ? "text/css; charset=utf-8" : NULL;
		assert_non_null(want);
		assert_string_equal(f->content_type, want);
		assert_true(g_utf8_validate((const char *)f->data, (gssize)f->size, NULL));
		/* No file name can leave its directory. */
		assert_null(strchr(f->name, '/'));
		assert_false(f->name[0] == '.');
	}
}

/* The page names only files that are built in, and holds nothing the CSP
 * would block: no inline script or style, no remote resource. */
static void test_index_keeps_to_csp(void **state)
{
	(void)state;
	char *html = file_text(api_static_find(API_STATIC_INDEX));
	GRegex *ref = g_regex_new("(?:src|href)=\"([^\"]*)\"", 0, 0, NULL);
	GMatchInfo *m = NULL;
	unsigned refs = 0;
	g_regex_match(ref, html, 0, &m);
	while (g_match_info_matches(m)) {
		char *url = g_match_info_fetch(m, 1);
		if (!g_str_has_prefix(url, "data:")) {
			if (!g_str_has_prefix(url, "/console/"))
				fail_msg("index.html refers to %s", url);
			if (api_static_find(url + strlen("/console/")) == NULL)
				fail_msg("index.html refers to %s, which is not built in", url);
			refs++;
		}
		g_free(url);
		g_match_info_next(m, NULL);
	}
	g_match_info_free(m);
	g_regex_unref(ref);
	assert_true(refs >= 2);
	assert_null(strstr(html, "<script>"));
	assert_null(strstr(html, "<style"));
	assert_null(strstr(html, " style="));
	assert_null(strstr(html, " onclick="));
	assert_null(strstr(html, "http://"));
	assert_null(strstr(html, "https://"));
	g_free(html);
	/* The pages build the DOM from text nodes, never markup. */
	const char *const scripts[] = { "api.js", "pages.js", "main.js" };
	for (size_t i = 0; i < G_N_ELEMENTS(scripts); i++) {
		char *js = file_text(api_static_find(scripts[i]));
		assert_null(strstr(js, "innerHTML"));
		assert_null(strstr(js, "outerHTML"));
		assert_null(strstr(js, "insertAdjacentHTML"));
		assert_null(strstr(js, "document.write"));
		assert_null(strstr(js, "eval("));
		g_free(js);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_no_tricks),
		cmocka_unit_test(test_content_types),
		cmocka_unit_test(test_index_keeps_to_csp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
