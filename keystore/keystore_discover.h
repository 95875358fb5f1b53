/* keystore_discover: finding a recipient's key by WKD or on a keyserver through
 * GnuPG's dirmngr, within a deadline, with answers cached and lookups rate-limited. */
#ifndef SEALPOST_KEYSTORE_DISCOVER_H
#define SEALPOST_KEYSTORE_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore_db.h"

/* Bits of keystore_discover_config.methods, tried in this order. */
#define KEYSTORE_DISCOVER_WKD 1u
#define KEYSTORE_DISCOVER_KEYSERVER 2u

/* Defaults of the [sealpost] keys (docs/configuration.md). */
#define KEYSTORE_DISCOVER_TIMEOUT 5
#define KEYSTORE_DISCOVER_NEGATIVE_TTL (60 * 60)
#define KEYSTORE_DISCOVER_POSITIVE_TTL (24 * 60 * 60)
#define KEYSTORE_DISCOVER_RATE 30

typedef struct {
	unsigned methods;	/* KEYSTORE_DISCOVER_* bits; 0: discovery is off */
	char *keyserver;	/* hkp:// or hkps:// URL; NULL: dirmngr.conf's */
	unsigned timeout;	/* seconds one lookup may take, all methods together */
	unsigned negative_ttl;	/* seconds a miss or a failure is not asked again */
	unsigned positive_ttl;	/* seconds before a found key is looked up again */
	unsigned rate;		/* lookups per minute and process; 0: no limit */
} keystore_discover_config;

/* ---- the rules (pure) ---------------------------------------------------------------- */

typedef enum {
	KEYSTORE_DISCOVER_DUE = 0,	/* look it up now */
	KEYSTORE_DISCOVER_FRESH,	/* the cached answer stands */
} keystore_discover_due;

/* Whether address must be looked up, from its cached row (NULL: never
 * looked up) at now (unix seconds). have_key: the keyring has a usable
 * key for it. A key that did not come from discovery is never looked up;
 * with a usable key an address is looked up again positive_ttl after the
 * last lookup (whatever it answered), without one negative_ttl after it
 * (a miss, a failure, or a key found that is not usable, e.g. pending).
 * A row from the future (the clock went back) is stale. */
keystore_discover_due keystore_discover_check_cache(const keystore_discovery_row *row,
						    bool have_key, int64_t now,
						    const keystore_discover_config *cfg);

/* At most per_minute lookups in any calendar minute of now (seconds);
 * per_minute 0: no limit. */
typedef struct {
	int64_t minute;
	unsigned used;
} keystore_discover_rate;

/* True (and the lookup counted) when one more is allowed now. */
bool keystore_discover_rate_take(keystore_discover_rate *r, unsigned per_minute, int64_t now);

/* Appends the data of an Assuan "D " line's argument (percent-escaped)
 * to out; -1 when an escape is malformed or out would pass max bytes. */
int keystore_discover_unescape(const char *arg, size_t len, unsigned char *out,
			       size_t *out_len, size_t max);

/* One reply of dirmngr (Assuan): status and comment lines, data lines
 * ("D " and percent-escaped bytes), up to "OK" or "ERR code text". */
#define KEYSTORE_DISCOVER_LINE_MAX 4096	/* Assuan's is 1000; slack for sloppy peers */
typedef struct {
	char line[KEYSTORE_DISCOVER_LINE_MAX];
	size_t have;			/* bytes of the current line */
	unsigned char *data;		/* the data lines, decoded (g_free) */
	size_t data_len, data_cap, data_max;
	bool err;			/* ended with ERR */
	unsigned code;			/* ERR: the gpg-error code (low 16 bits) */
	char text[200];			/* ERR: its text, controls as '?' */
} keystore_discover_reply;

/* data_max: the most data bytes taken (0: a reply with data is malformed). */
void keystore_discover_reply_init(keystore_discover_reply *r, size_t data_max);
void keystore_discover_reply_clear(keystore_discover_reply *r);
/* Feeds len bytes of a reply. 1: the reply is complete (OK or ERR read)
 * and *used_r bytes were taken, the rest belongs to what follows; 0: all
 * taken, more needed; -1 (*error_r, static): malformed — a line over
 * KEYSTORE_DISCOVER_LINE_MAX, a bad escape, more than data_max data bytes,
 * an INQUIRE. Memory stays below data_max plus the line. */
int keystore_discover_reply_feed(keystore_discover_reply *r, const char *buf, size_t len,
				 size_t *used_r, const char **error_r);

/* Whether addr can be put into a dirmngr command and a gpg filter
 * expression: one '@', non-empty parts, no spaces, controls or
 * characters either language gives a meaning, at most 320 bytes. */
bool keystore_discover_address_ok(const char *addr);

/* ---- lookups ------------------------------------------------------------------------- */

typedef enum {
	KEYSTORE_DISCOVER_IMPORTED = 0,	/* imported, source wkd/keyserver, unverified */
	KEYSTORE_DISCOVER_KNOWN,	/* the key found is in the keyring already */
	KEYSTORE_DISCOVER_PENDING,	/* differs from the key known: a pending change */
	KEYSTORE_DISCOVER_REJECTED,	/* the user rejected (or refused) this key */
	KEYSTORE_DISCOVER_NOT_FOUND,	/* no key for the address */
	KEYSTORE_DISCOVER_FAILED,	/* timeout, dirmngr, unusable data */
	KEYSTORE_DISCOVER_CACHED,	/* not asked: the cached answer stands */
	KEYSTORE_DISCOVER_RATE_LIMITED,	/* not asked: too many lookups this minute */
} keystore_discover_fate;

/* "imported", "known", "pending", "rejected", "not-found", "failed",
 * "cached", "rate-limited". */
const char *keystore_discover_fate_name(keystore_discover_fate f);

typedef struct {
	keystore_discover_fate fate;
	keystore_key_source method;	/* where the key was found (wkd, keyserver) */
	char fingerprint[65];		/* the key found, "" when none */
	int64_t pending_id;		/* PENDING */
	char why[240];			/* one line: what happened */
} keystore_discover_result;

typedef struct keystore_discover keystore_discover;

/* cfg is copied. gnupg_home: sealpost's GNUPGHOME (NULL: GnuPG's default);
 * db must outlive the result. NULL with *error_r when the keyring cannot
 * be opened. Nothing is started before the first lookup. */
keystore_discover *keystore_discover_new(const keystore_discover_config *cfg,
					 const char *gnupg_home, keystore_db *db,
					 const char **error_r);
void keystore_discover_free(keystore_discover **d);

/* Looks address up by the configured methods, unless its cached answer
 * stands or the rate limit is reached (force: ask anyway — a user's
 * explicit lookup). A key found keeps only its user IDs for address and
 * is imported as source wkd or keyserver, unverified — unless the keyring
 * holds another key for address that is usable or verified, when it goes
 * to the pending changes instead and is not used. The answer is cached.
 * Thread-safe: lookups of one address are serialised (the later ones
 * take the first one's cached answer), others run side by side; one never
 * takes much longer than cfg's timeout. Never fails: res_r says what
 * happened. */
void keystore_discover_lookup(keystore_discover *d, const char *address, bool force,
			      bool have_key, keystore_discover_result *res_r);

/* Lookups made and what dirmngr was asked, for tests and the status page. */
typedef struct {
	unsigned long lookups, cached, rate_limited, failed;
} keystore_discover_stats;
void keystore_discover_get_stats(keystore_discover *d, keystore_discover_stats *stats_r);

#endif
