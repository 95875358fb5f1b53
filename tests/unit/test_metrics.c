/* Unit tests of the metrics: every counter shows up in the Prometheus text
 * format, histogram buckets are cumulative, counting from many threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <pthread.h>

#include "metrics.h"

static char *render(void)
{
	GString *out = g_string_new(NULL);
	metrics_render(out);
	return g_string_free(out, FALSE);
}

static void assert_line(const char *text, const char *line)
{
	char *want = g_strdup_printf("\n%s\n", line);
	if (strstr(text, want) == NULL)
		fail_msg("no line '%s' in:\n%s", line, text);
	g_free(want);
}

static void test_zero(void **state)
{
	(void)state;
	metrics_reset();
	char *text = render();
	assert_true(g_str_has_prefix(text, "# HELP sealpost_smtp_connections_total "));
	assert_line(text, "# TYPE sealpost_smtp_connections_total counter");
	assert_line(text, "sealpost_smtp_connections_total{mode=\"gateway\"} 0");
	assert_line(text, "sealpost_smtp_connections_open{mode=\"submission\"} 0");
	assert_line(text, "# TYPE sealpost_smtp_message_duration_seconds histogram");
	assert_line(text, "sealpost_smtp_message_duration_seconds_bucket{mode=\"gateway\",le=\"+Inf\"} 0");
	assert_line(text, "sealpost_smtp_messages_refused_total{mode=\"gateway\",reason=\"no_key\"} 0");
	assert_line(text, "sealpost_smtp_messages_tempfailed_total{mode=\"submission\",reason=\"next_hop\"} 0");
	/* Every line is a comment or "name{labels} value". */
	char **lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l != NULL; l++) {
		if ((*l)[0] == '\0' || (*l)[0] == '#')
			continue;
		assert_true(g_str_has_prefix(*l, "sealpost_smtp_"));
		assert_non_null(strstr(*l, "} "));
	}
	g_strfreev(lines);
	assert_true(g_str_has_suffix(text, "\n"));
	g_free(text);
}

static void test_counts(void **state)
{
	(void)state;
	metrics_reset();
	metrics_connection_opened(METRICS_MODE_GATEWAY);
	metrics_connection_opened(METRICS_MODE_GATEWAY);
	metrics_connection_closed(METRICS_MODE_GATEWAY);
	metrics_message_in(METRICS_MODE_GATEWAY);
	metrics_message_in(METRICS_MODE_GATEWAY);
	metrics_message_in(METRICS_MODE_SUBMISSION);
	metrics_message_relayed(METRICS_MODE_GATEWAY, true, true, false);
	metrics_message_relayed(METRICS_MODE_GATEWAY, true, false, true);
	metrics_message_refused(METRICS_MODE_GATEWAY, METRICS_REASON_NO_KEY);
	metrics_message_tempfailed(METRICS_MODE_SUBMISSION, METRICS_REASON_NEXT_HOP);
	metrics_gpg_failure(METRICS_MODE_GATEWAY);
	metrics_message_latency(METRICS_MODE_GATEWAY, 0.004);
	metrics_message_latency(METRICS_MODE_GATEWAY, 0.02);
	metrics_message_latency(METRICS_MODE_GATEWAY, 100);
	char *text = render();
	assert_line(text, "sealpost_smtp_connections_total{mode=\"gateway\"} 2");
	assert_line(text, "sealpost_smtp_connections_open{mode=\"gateway\"} 1");
	assert_line(text, "sealpost_smtp_messages_in_total{mode=\"gateway\"} 2");
	assert_line(text, "sealpost_smtp_messages_in_total{mode=\"submission\"} 1");
	assert_line(text, "sealpost_smtp_messages_encrypted_total{mode=\"gateway\"} 2");
	assert_line(text, "sealpost_smtp_messages_signed_total{mode=\"gateway\"} 1");
	assert_line(text, "sealpost_smtp_messages_passed_total{mode=\"gateway\"} 1");
	assert_line(text, "sealpost_smtp_messages_refused_total{mode=\"gateway\",reason=\"no_key\"} 1");
	assert_line(text, "sealpost_smtp_messages_tempfailed_total{mode=\"submission\",reason=\"next_hop\"} 1");
	assert_line(text, "sealpost_smtp_gpg_failures_total{mode=\"gateway\"} 1");
	assert_line(text, "sealpost_smtp_message_duration_seconds_bucket{mode=\"gateway\",le=\"0.005\"} 1");
	assert_line(text, "sealpost_smtp_message_duration_seconds_bucket{mode=\"gateway\",le=\"0.01\"} 1");
	assert_line(text, "sealpost_smtp_message_duration_seconds_bucket{mode=\"gateway\",le=\"0.025\"} 2");
	assert_line(text, "sealpost_smtp_message_duration_seconds_bucket{mode=\"gateway\",le=\"60\"} 2");
	assert_line(text, "sealpost_smtp_message_duration_seconds_bucket{mode=\"gateway\",le=\"+Inf\"} 3");
	assert_line(text, "sealpost_smtp_message_duration_seconds_sum{mode=\"gateway\"} 100.024000");
	assert_line(text, "sealpost_smtp_message_duration_seconds_count{mode=\"gateway\"} 3");
	g_free(text);
	assert_string_equal(metrics_reason_name(METRICS_REASON_NEXT_HOP_REPLY), "next_hop_reply");
	assert_string_equal(metrics_reason_name((metrics_reason)999), "other");
}

static void *count_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++) {
		metrics_message_in(METRICS_MODE_GATEWAY);
		metrics_message_latency(METRICS_MODE_GATEWAY, 0.001);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	metrics_reset();
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, count_many, NULL), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	char *text = render();
	assert_line(text, "sealpost_smtp_messages_in_total{mode=\"gateway\"} 40000");
	assert_line(text, "sealpost_smtp_message_duration_seconds_count{mode=\"gateway\"} 40000");
	assert_line(text, "sealpost_smtp_message_duration_seconds_sum{mode=\"gateway\"} 40.000000");
	g_free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
