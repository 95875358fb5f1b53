/* metrics: process-wide counters as relaxed atomics (a message path never
 * waits for a lock to count), rendered on demand. */
#include "metrics.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds in seconds; the last bucket (+Inf) is the count. */
static const double metrics_buckets[] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
#define METRICS_N_BUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

static const char *const metrics_mode_names[METRICS_N_MODES] = {
	[METRICS_MODE_SUBMISSION] = "submission",
	[METRICS_MODE_GATEWAY] = "gateway",
};

static const char *const metrics_reason_names[METRICS_N_REASONS] = {
	[METRICS_REASON_NO_KEY] = "no_key",
	[METRICS_REASON_KEY_LOOKUP] = "key_lookup",
	[METRICS_REASON_POLICY_STORE] = "policy_store",
	[METRICS_REASON_SIGNING_KEY] = "signing_key",
	[METRICS_REASON_OPENPGP] = "openpgp",
	[METRICS_REASON_MESSAGE] = "message",
	[METRICS_REASON_SPOOL] = "spool",
	[METRICS_REASON_NEXT_HOP] = "next_hop",
	[METRICS_REASON_NEXT_HOP_REPLY] = "next_hop_reply",
	[METRICS_REASON_OTHER] = "other",
};

typedef struct {
	atomic_ulong connections, connections_open;
	atomic_ulong messages_in, encrypted, signed_, passed, gpg_failures;
	atomic_ulong refused[METRICS_N_REASONS], tempfailed[METRICS_N_REASONS];
	atomic_ulong latency_bucket[METRICS_N_BUCKETS];	/* not cumulative here */
	atomic_ulong latency_count;
	atomic_ullong latency_sum_us;
} metrics_set;

static metrics_set metrics_sets[METRICS_N_MODES];

static metrics_set *metrics_of(metrics_mode mode)
{
	return &metrics_sets[(unsigned)mode < METRICS_N_MODES ? mode : 0];
}

static void metrics_inc(atomic_ulong *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static unsigned long metrics_get(atomic_ulong *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

const char *metrics_reason_name(metrics_reason r)
{
	return (unsigned)r < METRICS_N_REASONS ? metrics_reason_names[r] : "other";
}

void metrics_connection_opened(metrics_mode mode)
{
	metrics_inc(&metrics_of(mode)->connections);
	metrics_inc(&metrics_of(mode)->connections_open);
}

void metrics_connection_closed(metrics_mode mode)
{
	atomic_fetch_sub_explicit(&metrics_of(mode)->connections_open, 1, memory_order_relaxed);
}

void metrics_message_in(metrics_mode mode)
{
	metrics_inc(&metrics_of(mode)->messages_in);
}

void metrics_message_relayed(metrics_mode mode, bool encrypted, bool signed_, bool passed)
{
	metrics_set *m = metrics_of(mode);
	if (encrypted)
		metrics_inc(&m->encrypted);
	if (signed_)
		metrics_inc(&m->signed_);
	if (passed)
		metrics_inc(&m->passed);
}

void metrics_message_refused(metrics_mode mode, metrics_reason reason)
{
	metrics_inc(&metrics_of(mode)->refused[(unsigned)reason < METRICS_N_REASONS ?
						reason : METRICS_REASON_OTHER]);
}

void metrics_message_tempfailed(metrics_mode mode, metrics_reason reason)
{
	metrics_inc(&metrics_of(mode)->tempfailed[(unsigned)reason < METRICS_N_REASONS ?
						   reason : METRICS_REASON_OTHER]);
}

void metrics_message_latency(metrics_mode mode, double seconds)
{
	metrics_set *m = metrics_of(mode);
	if (!(seconds >= 0))
		seconds = 0;
	size_t b = 0;
	while (b < METRICS_N_BUCKETS && seconds > metrics_buckets[b])
		b++;
	if (b < METRICS_N_BUCKETS)
		metrics_inc(&m->latency_bucket[b]);
	metrics_inc(&m->latency_count);
	atomic_fetch_add_explicit(&m->latency_sum_us, (unsigned long long)(seconds * 1e6),
				  memory_order_relaxed);
}

void metrics_gpg_failure(metrics_mode mode)
{
	metrics_inc(&metrics_of(mode)->gpg_failures);
}

static void metrics_header(GString *out, const char *name, const char *type, const char *help)
{
	g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One line per mode of a plain counter or gauge. */
static void metrics_simple(GString *out, const char *name, const char *type, const char *help,
			   size_t offset)
{
	metrics_header(out, name, type, help);
	for (unsigned i = 0; i < METRICS_N_MODES; i++) {
		atomic_ulong *c = (atomic_ulong *)(void *)((char *)&metrics_sets[i] + offset);
		g_string_append_printf(out, "%s{mode=\"%s\"} %lu\n", name, metrics_mode_names[i],
				       metrics_get(c));
	}
}

static void metrics_by_reason(GString *out, const char *name, const char *help, bool refused)
{
	metrics_header(out, name, "counter", help);
	for (unsigned i = 0; i < METRICS_N_MODES; i++) {
		for (unsigned r = 0; r < METRICS_N_REASONS; r++) {
			atomic_ulong *c = refused ? &metrics_sets[i].refused[r]
				: &metrics_sets[i].tempfailed[r];
			g_string_append_printf(out, "%s{mode=\"%s\",reason=\"%s\"} %lu\n", name,
					       metrics_mode_names[i], metrics_reason_names[r],
					       metrics_get(c));
		}
	}
}

void metrics_render(GString *out)
{
	metrics_simple(out, "sealpost_smtp_connections_total", "counter",
		       "SMTP connections accepted.", offsetof(metrics_set, connections));
	metrics_simple(out, "sealpost_smtp_connections_open", "gauge",
		       "SMTP connections open now.", offsetof(metrics_set, connections_open));
	metrics_simple(out, "sealpost_smtp_messages_in_total", "counter",
		       "Messages received in full.", offsetof(metrics_set, messages_in));
	metrics_simple(out, "sealpost_smtp_messages_encrypted_total", "counter",
		       "Messages relayed with at least one encrypted copy.",
		       offsetof(metrics_set, encrypted));
	metrics_simple(out, "sealpost_smtp_messages_signed_total", "counter",
		       "Messages relayed with at least one signed copy.",
		       offsetof(metrics_set, signed_));
	metrics_simple(out, "sealpost_smtp_messages_passed_total", "counter",
		       "Messages relayed with at least one copy not encrypted by sealpost "
		       "(as written, or encrypted by the sender already).",
		       offsetof(metrics_set, passed));
	metrics_by_reason(out, "sealpost_smtp_messages_refused_total",
			  "Messages refused with a permanent (5xx) reply, by reason.", true);
	metrics_by_reason(out, "sealpost_smtp_messages_tempfailed_total",
			  "Messages deferred with a temporary (4xx) reply, by reason.", false);
	metrics_simple(out, "sealpost_smtp_gpg_failures_total", "counter",
		       "OpenPGP operations (encrypting, signing) that failed.",
		       offsetof(metrics_set, gpg_failures));

	const char *h = "sealpost_smtp_message_duration_seconds";
	metrics_header(out, h, "histogram",
		       "From a message's final dot to sealpost's reply to it.");
	for (unsigned i = 0; i < METRICS_N_MODES; i++) {
		metrics_set *m = &metrics_sets[i];
		unsigned long count = metrics_get(&m->latency_count);
		unsigned long cumulative = 0;
		for (size_t b = 0; b < METRICS_N_BUCKETS; b++) {
			cumulative += metrics_get(&m->latency_bucket[b]);
			g_string_append_printf(out, "%s_bucket{mode=\"%s\",le=\"%g\"} %lu\n", h,
					       metrics_mode_names[i], metrics_buckets[b], cumulative);
		}
		/* Read apart from the buckets: never below their sum. */
		if (count < cumulative)
			count = cumulative;
		g_string_append_printf(out, "%s_bucket{mode=\"%s\",le=\"+Inf\"} %lu\n", h,
				       metrics_mode_names[i], count);
		unsigned long long sum = atomic_load_explicit(&m->latency_sum_us,
							      memory_order_relaxed);
		g_string_append_printf(out, "%s_sum{mode=\"%s\"} %llu.%06llu\n", h,
				       metrics_mode_names[i], sum / 1000000ULL, sum % 1000000ULL);
		g_string_append_printf(out, "%s_count{mode=\"%s\"} %lu\n", h,
				       metrics_mode_names[i], count);
	}
}

void metrics_reset(void)
{
	for (unsigned i = 0; i < METRICS_N_MODES; i++) {
		metrics_set *m = &metrics_sets[i];
		atomic_store(&m->connections, 0);
		atomic_store(&m->connections_open, 0);
		atomic_store(&m->messages_in, 0);
		atomic_store(&m->encrypted, 0);
		atomic_store(&m->signed_, 0);
		atomic_store(&m->passed, 0);
		atomic_store(&m->gpg_failures, 0);
		for (unsigned r = 0; r < METRICS_N_REASONS; r++) {
			atomic_store(&m->refused[r], 0);
			atomic_store(&m->tempfailed[r], 0);
		}
		for (size_t b = 0; b < METRICS_N_BUCKETS; b++)
			atomic_store(&m->latency_bucket[b], 0);
		atomic_store(&m->latency_count, 0);
		atomic_store(&m->latency_sum_us, 0);
	}
}
