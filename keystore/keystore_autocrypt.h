/* keystore_autocrypt: Autocrypt Level 1 — the Autocrypt and Autocrypt-Gossip
 * header values, the peer state rules, the encryption recommendation, and
 * applying what a received message says to the stored peer state. */
#ifndef SEALPOST_KEYSTORE_AUTOCRYPT_H
#define SEALPOST_KEYSTORE_AUTOCRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore_db.h"
#include "keystore_keyring.h"

/* A larger header value is invalid (the spec's 10 KiB). */
#define KEYSTORE_AUTOCRYPT_HEADER_MAX 10240
/* A peer's autocrypt_timestamp this much older than its last_seen makes
 * the recommendation "discourage": the peer now also writes without
 * Autocrypt. */
#define KEYSTORE_AUTOCRYPT_STALE_SECONDS (35 * 24 * 60 * 60)

/* ---- the header -------------------------------------------------------------------- */

typedef struct {
	char *addr;			/* as written */
	bool prefer_mutual;		/* prefer-encrypt=mutual; any other value is nopreference */
	unsigned char *keydata;		/* base64-decoded */
	size_t keydata_len;
} keystore_autocrypt_header;

/* Parses one Autocrypt (or Autocrypt-Gossip) header value, folded or not:
 * `addr=...; [prefer-encrypt=mutual;] [_other=...;] keydata=BASE64`.
 * Invalid (-1 with *error_r, static): larger than 10 KiB, a NUL, an
 * attribute without '=', a repeated attribute, an unknown critical
 * attribute (a name not starting with '_'), no addr or no keydata, an
 * attribute after keydata, keydata that is not base64. Whether keydata is
 * an OpenPGP key is not checked here. Never reads past len. */
int keystore_autocrypt_header_parse(const char *value, size_t len,
				    keystore_autocrypt_header *h_r, const char **error_r);
void keystore_autocrypt_header_clear(keystore_autocrypt_header *h);

/* The spec's canonical form of an address, used for comparison and as the
 * peer table's key: the local part lower-cased (UTF-8), the domain in
 * IDNA ASCII form, lower case. NULL (g_free otherwise) when addr is not
 * one address (no '@', empty parts, spaces, controls, <>, bad UTF-8). */
char *keystore_autocrypt_canonical(const char *addr);

/* Of a message's Autocrypt header values (NULL-terminated), the single
 * valid one whose addr equals from (canonical comparison): 1 with *h_r.
 * 0 when there is none — none at all, each invalid or for another
 * address, or more than one valid (then all are ignored) — with *why_r
 * (static) saying why. */
int keystore_autocrypt_select(const char *const *values, const char *from,
			      keystore_autocrypt_header *h_r, const char **why_r);

/* ---- the peer state rules (pure) --------------------------------------------------- */

/* The spec's effective date: date, unless it is missing (<= 0) or in the
 * future, then now. */
int64_t keystore_autocrypt_effective_date(int64_t date, int64_t now);

typedef enum {
	KEYSTORE_AUTOCRYPT_UNCHANGED = 0,	/* older than autocrypt_timestamp: nothing changes */
	KEYSTORE_AUTOCRYPT_SEEN,		/* no valid header: last_seen at most */
	KEYSTORE_AUTOCRYPT_TAKEN,		/* the header's key and preference taken */
} keystore_autocrypt_step;

/* Steps 1-6 of "Updating Autocrypt Peer State" on peer in place (account
 * and addr untouched). h NULL: the message had no valid header. The
 * header's keydata is copied; public_key_fpr is cleared when the key
 * changes (the caller knows the fingerprint). */
keystore_autocrypt_step keystore_autocrypt_update(keystore_autocrypt_peer *peer,
						  int64_t effective_date,
						  const keystore_autocrypt_header *h);

/* Steps 2-4 of "Updating Autocrypt Peer State from Key Gossip" (step 1,
 * gossip-addr among To, Cc and Reply-To, is the caller's). True when the
 * gossip key was taken. */
bool keystore_autocrypt_update_gossip(keystore_autocrypt_peer *peer, int64_t effective_date,
				      const keystore_autocrypt_header *h);

/* ---- the recommendation ------------------------------------------------------------ */

typedef enum {
	KEYSTORE_AUTOCRYPT_DISABLE = 0,
	KEYSTORE_AUTOCRYPT_DISCOURAGE,
	KEYSTORE_AUTOCRYPT_AVAILABLE,
	KEYSTORE_AUTOCRYPT_ENCRYPT,
} keystore_autocrypt_recommendation;

/* "disable", "discourage", "available", "encrypt". */
const char *keystore_autocrypt_recommendation_name(keystore_autocrypt_recommendation r);

/* One recipient (pure). peer NULL: no peer state. key_usable,
 * gossip_usable: whether public_key, gossip_key can be used to encrypt
 * (a revoked, expired or otherwise unusable key counts as none). own_mutual:
 * the account's prefer-encrypt=mutual. reply_to_encrypted: the message
 * answers an encrypted one. */
keystore_autocrypt_recommendation
keystore_autocrypt_recommend_peer(const keystore_autocrypt_peer *peer, bool key_usable,
				  bool gossip_usable, bool own_mutual, bool reply_to_encrypted);

/* Several recipients (pure): any disable -> disable; all encrypt ->
 * encrypt; any discourage -> discourage; else available. n 0: disable. */
keystore_autocrypt_recommendation
keystore_autocrypt_recommend_combine(const keystore_autocrypt_recommendation *recs, size_t n);

/* Whether fingerprint (may be "" when unknown) can serve address now. */
typedef bool (*keystore_autocrypt_usable_fn)(void *ctx, const char *address,
					     const char *fingerprint);

/* The recommendation for a message from account to recipients (bare
 * addresses; NULL entries count as disable), from the stored peer state.
 * usable decides key_usable and gossip_usable (NULL: every stored key is
 * usable). why (may be NULL) gets the first recipient that made the
 * answer what it is, e.g. "<bob@example.org>: discourage". -1 with
 * *error_r on a database failure. */
int keystore_autocrypt_recommend(keystore_db *db, const char *account,
				 const char *const *recipients, size_t n, bool own_mutual,
				 bool reply_to_encrypted, keystore_autocrypt_usable_fn usable,
				 void *ctx, keystore_autocrypt_recommendation *rec_r,
				 char *why, size_t why_size, const char **error_r);

/* Whether an `opportunistic` message may be encrypted to key fpr (the key
 * keystore_keys_find chose) for address. Autocrypt has a say only over keys
 * sealpost learned from Autocrypt and the user has not verified: for those
 * the recommendation for address, with fpr as the only usable key, must be
 * "available" or "encrypt"; "discourage" (a stale key, or gossip only) and
 * "disable" mean the message goes as written. Any other key (imported,
 * discovered, verified): *encrypt_r true. *rec_r (may be NULL) gets the
 * recommendation, KEYSTORE_AUTOCRYPT_AVAILABLE when Autocrypt has no say.
 * -1 with *error_r on a database failure. */
int keystore_autocrypt_opportunistic(keystore_db *db, const char *account, const char *address,
				     const char *fpr, bool own_mutual, bool *encrypt_r,
				     keystore_autocrypt_recommendation *rec_r,
				     const char **error_r);

/* ---- a received message ------------------------------------------------------------ */

/* What one received message says. How the inbound path calls
 * keystore_autocrypt_process:
 *  - once per message the client fetches (plaintext, or the decrypted view
 *    of an encrypted one), after the message is known whole;
 *  - not at all for a message with `Auto-Submitted: auto-replied`, a
 *    Content-Type multipart/report, more than one address in From, or one
 *    the provider marked as spam (the spec says these are ignored);
 *  - account: the account's address (config_account.address);
 *  - from: the bare address of the single From mailbox;
 *  - date: the Date header as unix seconds (g_mime_message_get_date), 0
 *    when there is none or it cannot be read; now: 0 for the clock;
 *  - autocrypt: every `Autocrypt` header value of the message, raw
 *    (unfolding not needed), in any order, NULL-terminated (NULL or empty
 *    when there is none). For an encrypted message these are the outer
 *    header's and, with protected headers, the inner part's together;
 *  - gossip: every `Autocrypt-Gossip` value of the root part inside the
 *    encryption; honoured only when encrypted is true;
 *  - recipients: the bare addresses of To, Cc and Reply-To (gossip for any
 *    other address is ignored);
 *  - encrypted: the values were read from inside an encrypted part, i.e.
 *    the decrypted view of a message that decrypted.
 * Calling it again for the same message changes nothing more. It is safe
 * from several threads (one keystore_keyring may be shared); a message
 * costs one database read and at most one write, and gpg runs only when a
 * header or gossip brings a key different from the one stored. */
typedef struct {
	const char *account;
	const char *from;
	int64_t date;
	int64_t now;
	const char *const *autocrypt;
	const char *const *gossip;
	const char *const *recipients;
	bool encrypted;
} keystore_autocrypt_message;

/* What became of the header's key. */
typedef enum {
	KEYSTORE_AUTOCRYPT_KEY_NONE = 0,	/* no new key: no valid header, or the key seen before */
	KEYSTORE_AUTOCRYPT_KEY_IMPORTED,	/* imported, source autocrypt, unverified */
	KEYSTORE_AUTOCRYPT_KEY_KNOWN,		/* already in the keyring (its state unchanged) */
	KEYSTORE_AUTOCRYPT_KEY_PENDING,		/* differs from the verified key: pending */
	KEYSTORE_AUTOCRYPT_KEY_REJECTED,	/* the user rejected or refused it before */
	KEYSTORE_AUTOCRYPT_KEY_UNUSABLE,	/* kept as peer state only (e.g. no user ID for addr) */
} keystore_autocrypt_key_fate;

typedef struct {
	keystore_autocrypt_step step;
	const char *header_why;		/* why no header was taken (static), NULL when one was */
	keystore_autocrypt_key_fate key;
	char fingerprint[65];		/* the header key's, when one was taken */
	int64_t pending_id;		/* KEY_PENDING */
	const char *key_why;		/* KEY_UNUSABLE: why (thread-local storage) */
	unsigned gossip_taken;		/* gossip headers that updated a peer */
	unsigned gossip_imported;	/* of those, keys imported */
	unsigned gossip_ignored;	/* invalid, not for a recipient, or outside encryption */
} keystore_autocrypt_result;

/* Applies m to the peer state of (m->account, m->from) and of gossiped
 * recipients by the spec's rules. A new key from a valid header is checked
 * as an OpenPGP key (an invalid one makes the header invalid) and then:
 * imported as source autocrypt, unverified, when it has a user ID for the
 * From address — unless the keyring holds a key the user verified for
 * that address, when it goes to the pending changes instead; a key the
 * user rejected stays rejected. A gossiped key is imported only when its
 * address has no usable key at all. -1 with *error_r only when the
 * database or keyring failed; bad input is never an error (see result_r). */
int keystore_autocrypt_process(keystore_db *db, keystore_keyring *kr,
			       const keystore_autocrypt_message *m,
			       keystore_autocrypt_result *result_r, const char **error_r);

#endif
