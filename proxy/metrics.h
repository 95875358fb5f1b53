/* metrics: counters of the SMTP path (submission and gateway) — connections,
 * messages and what became of them, latency, OpenPGP failures — rendered in
 * the Prometheus text format for the API's GET /metrics. */
#ifndef SEALPOST_METRICS_H
#define SEALPOST_METRICS_H

#include <glib.h>
#include <stdbool.h>

typedef enum {
	METRICS_MODE_SUBMISSION,	/* [account NAME] smtp_listen / smtps_listen */
	METRICS_MODE_GATEWAY,		/* [gateway NAME] listen */
	METRICS_N_MODES
} metrics_mode;

/* Why a message was refused (5xx) or deferred (4xx). */
typedef enum {
	METRICS_REASON_NO_KEY,		/* encryption required, no usable key */
	METRICS_REASON_KEY_LOOKUP,	/* gpg could not be asked about keys */
	METRICS_REASON_POLICY_STORE,	/* the policy rules could not be read */
	METRICS_REASON_SIGNING_KEY,	/* signing is on, no secret key */
	METRICS_REASON_OPENPGP,		/* encrypting or signing failed */
	METRICS_REASON_MESSAGE,		/* the message itself (header, size) */
	METRICS_REASON_SPOOL,		/* storing or reading it locally */
	METRICS_REASON_NEXT_HOP,	/* provider / next hop unreachable or lost */
	METRICS_REASON_NEXT_HOP_REPLY,	/* provider / next hop refused it */
	METRICS_REASON_OTHER,
	METRICS_N_REASONS
} metrics_reason;

/* The label value ("no_key", "next_hop", ...). */
const char *metrics_reason_name(metrics_reason r);

/* All are thread-safe and never block. */
void metrics_connection_opened(metrics_mode mode);
void metrics_connection_closed(metrics_mode mode);
/* A message was received in full (the final dot). */
void metrics_message_in(metrics_mode mode);
/* Relayed and accepted: which kinds of copy it left as (several when it
 * was split into copies). */
void metrics_message_relayed(metrics_mode mode, bool encrypted, bool signed_, bool passed);
void metrics_message_refused(metrics_mode mode, metrics_reason reason);
void metrics_message_tempfailed(metrics_mode mode, metrics_reason reason);
/* From the final dot to the final reply, whatever the outcome. */
void metrics_message_latency(metrics_mode mode, double seconds);
void metrics_gpg_failure(metrics_mode mode);

/* Appends every metric in the Prometheus text exposition format 0.0.4. */
void metrics_render(GString *out);

/* Back to zero (tests). */
void metrics_reset(void);

#endif
