/* keystore_db: sealpost's SQLite database in state_dir — encryption policy
 * rules per address and domain, and the log of crypto decisions. */
#ifndef SEALPOST_KEYSTORE_DB_H
#define SEALPOST_KEYSTORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	KEYSTORE_POLICY_NONE = 0,	/* no rule / not set */
	KEYSTORE_POLICY_REQUIRE,
	KEYSTORE_POLICY_OPPORTUNISTIC,
	KEYSTORE_POLICY_NEVER,
} keystore_policy;

/* "require", "opportunistic", "never"; "none" for KEYSTORE_POLICY_NONE. */
const char *keystore_policy_name(keystore_policy p);
/* Case-insensitive; -1 for anything else (including "none"). */
int keystore_policy_parse(const char *text, keystore_policy *p_r);

typedef struct keystore_db keystore_db;

/* Opens (creating when missing) STATE_DIR/sealpost.db: mode 0600, WAL,
 * synchronous=FULL, busy timeout, schema migrated to the current version.
 * Safe to share between threads. NULL with *error_r (one line, static or
 * thread-local storage) on failure — a newer schema than this sealpost
 * knows is a failure, never a downgrade. */
keystore_db *keystore_db_open(const char *state_dir, const char **error_r);
void keystore_db_close(keystore_db **db);

/* The schema version of an open database (PRAGMA user_version). */
int keystore_db_schema_version(keystore_db *db);

/* A rule's target is an address "local@domain" or a domain "@domain".
 * Normalised to lower case; anything else (no '@', several '@', empty
 * parts, spaces, control characters, longer than 320 bytes) is refused.
 * Writes the normalised form into out (size >= 321). */
int keystore_policy_target_normalise(const char *target, char *out, size_t size,
				     const char **error_r);

/* The most specific rule for an address: the address itself, else its
 * domain. *policy_r is KEYSTORE_POLICY_NONE when neither has a rule;
 * matched_r (may be NULL, size >= 321) gets the target that matched or "".
 * -1 with *error_r on a database failure (callers treat it as temporary). */
int keystore_policy_lookup(keystore_db *db, const char *address,
			   keystore_policy *policy_r, char *matched_r,
			   size_t matched_size, const char **error_r);
int keystore_policy_set(keystore_db *db, const char *target, keystore_policy p,
			const char **error_r);
/* *existed_r tells whether there was a rule to remove. */
int keystore_policy_unset(keystore_db *db, const char *target, bool *existed_r,
			  const char **error_r);

typedef struct {
	const char *target;	/* normalised */
	keystore_policy policy;
	int64_t updated;	/* unix seconds */
} keystore_policy_rule;

/* Calls fn for every rule, ordered by target. fn returning non-zero stops. */
int keystore_policy_list(keystore_db *db,
			 int (*fn)(void *ctx, const keystore_policy_rule *rule),
			 void *ctx, const char **error_r);

/* One outbound decision, never content: what happened to a message and why. */
typedef struct {
	const char *account;
	const char *message_id;	/* may be NULL */
	const char *recipients;	/* comma-separated envelope addresses */
	const char *decision;	/* "encrypted", "signed", "plain", "passthrough", "refused", "tempfail" */
	const char *reason;	/* one line, may be NULL */
} keystore_decision;

int keystore_db_log_decision(keystore_db *db, const keystore_decision *d,
			     const char **error_r);

typedef struct {
	int64_t id;
	int64_t time;		/* unix seconds */
	const char *account, *message_id, *recipients, *decision, *reason;
} keystore_decision_row;

/* Older decisions are pruned as new ones are logged, keeping the newest
 * `keep` (default 10,000; 0 counts as 1). */
void keystore_db_set_decision_limit(keystore_db *db, unsigned keep);

/* The newest `limit` decisions, newest first. */
int keystore_db_recent_decisions(keystore_db *db, unsigned limit,
				 int (*fn)(void *ctx, const keystore_decision_row *row),
				 void *ctx, const char **error_r);

#endif
