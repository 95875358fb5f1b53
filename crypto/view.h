/* view: the decrypted view of one message, what a client is shown instead of
 * an encrypted message, rendered to the same bytes every time. */
#ifndef SEALPOST_CRYPTO_VIEW_H
#define SEALPOST_CRYPTO_VIEW_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker.h"

/* ---- what a message is -------------------------------------------------------
 * Only a message whose ROOT is encrypted is decrypted. Ciphertext nested next
 * to other parts is never decrypted and spliced in: that is how EFAIL's direct
 * exfiltration wraps a stolen ciphertext in attacker-controlled HTML. */
typedef enum {
	CRYPTO_VIEW_KIND_PLAIN,		/* nothing encrypted (or not a MIME message) */
	CRYPTO_VIEW_KIND_PGP_MIME,	/* root: multipart/encrypted, application/pgp-encrypted */
	CRYPTO_VIEW_KIND_INLINE_PGP,	/* root: one text/plain part that is one armored
					 * PGP MESSAGE block and nothing else */
	CRYPTO_VIEW_KIND_MALFORMED,	/* root claims PGP/MIME but its parts are wrong */
	CRYPTO_VIEW_KIND_NESTED,	/* encrypted content below the root */
	CRYPTO_VIEW_KIND_UNSUPPORTED,	/* S/MIME or an unknown encryption protocol */
} crypto_view_kind;

/* Why an encrypted message was not shown decrypted. One place
 * (crypto_view_failure_text) turns it into the text of the view. */
typedef enum {
	CRYPTO_VIEW_FAIL_NONE,
	CRYPTO_VIEW_FAIL_NO_KEY,	/* no secret key for any recipient */
	CRYPTO_VIEW_FAIL_KEY_LOCKED,	/* the key (or the message) needs a passphrase */
	CRYPTO_VIEW_FAIL_NO_INTEGRITY,	/* no MDC and no AEAD: anyone could have changed it */
	CRYPTO_VIEW_FAIL_INTEGRITY,	/* the MDC/AEAD check failed: it was changed */
	CRYPTO_VIEW_FAIL_GARBLED,	/* not OpenPGP data gpg could read */
	CRYPTO_VIEW_FAIL_STRUCTURE,	/* the PGP/MIME parts are not as RFC 3156 says */
	CRYPTO_VIEW_FAIL_TOO_BIG,	/* decrypted content beyond CRYPTO_VIEW_MAX_PLAINTEXT */
	CRYPTO_VIEW_FAIL_TOO_COMPLEX,	/* decrypted content beyond the depth/part limits */
} crypto_view_failure;

/* The decryption policy, an explicit argument (never a global). */
typedef enum {
	CRYPTO_DECRYPT_NEVER,	/* classify only: every message comes back unchanged */
	CRYPTO_DECRYPT_ROOT,	/* decrypt PGP/MIME and inline PGP roots */
} crypto_decrypt_policy;

/* Bounds on decrypted content (Dovecot's message-parser defaults for MIME). */
#define CRYPTO_VIEW_MAX_PLAINTEXT (128u * 1024 * 1024)
#define CRYPTO_VIEW_MAX_DEPTH 100
#define CRYPTO_VIEW_MAX_PARTS 10000

/* One per message; everything downstream reads this. */
typedef struct {
	crypto_view_kind kind;
	bool encrypted;		/* kind is PGP_MIME, INLINE_PGP or MALFORMED */
	bool decrypted;		/* the view shows the decrypted content */
	crypto_view_failure failure;	/* encrypted && !decrypted: why */
	/* One line: why nothing was decrypted, or why decryption failed; NULL
	 * when decrypted. g_free'd by crypto_view_status_clear. */
	char *reason;
	/* The X-Sealpost-Signature value of the view, to be persisted and
	 * passed back as pinned_signature next time; NULL unless decrypted. */
	char *signature;
	/* The protected From differs from the outer From (the view carries
	 * X-Sealpost-From-Mismatch). */
	bool inner_from_mismatch;
	/* A failure that a key import or unlock can cure (no key, locked
	 * key): the same message may render differently later. */
	bool transient;
	/* The Autocrypt-Gossip values of the decrypted root entity's header
	 * (or of the signed content inside it), raw and unfolded, whatever
	 * protection the sender declared: the view does not show them
	 * unless hp="cipher". NULL-terminated, NULL when there are none or
	 * nothing was decrypted (g_strfreev'd by crypto_view_status_clear). */
	char **gossip;
} crypto_view_status;

void crypto_view_status_clear(crypto_view_status *status);

/* ---- rendering ------------------------------------------------------------------ */

typedef enum {
	/* *view_r is the view: decrypted, or the failure view (the outer
	 * header, X-Sealpost-Decryption: failed (reason), and a short
	 * text/plain part in place of the content). */
	CRYPTO_VIEW_RENDERED,
	/* Not decrypted (plain, nested, S/MIME, or policy NEVER): serve the
	 * message as it is. *view_r is NULL; status says why. */
	CRYPTO_VIEW_UNCHANGED,
	/* gpg could not be asked (engine, I/O, key listing), or it is set to
	 * skip integrity checks (ignore-mdc-error): nothing rendered, nothing
	 * to persist; try again later. status->reason says what. */
	CRYPTO_VIEW_TEMPFAIL,
	/* pinned_signature is not a value this function returned. */
	CRYPTO_VIEW_INVALID,
} crypto_view_result;

/* The view of msg (one RFC 5322 message, any line ends).
 *
 * The view is the decrypted MIME entity as the body. Its protected header
 * fields (RFC 9788, or protected-headers="v1"): Subject, From, To, Cc,
 * Reply-To, Date, Message-ID, In-Reply-To, References, and with hp="cipher"
 * every other field it carries, replace the outer fields of the same names;
 * other outer fields stay (Received, ...). X-Sealpost-* fields arriving in
 * the message, outside or inside, are dropped; the view adds
 *   X-Sealpost-From-Mismatch: outer <addr>   (protected From differs)
 *   X-Sealpost-Decryption: ok | failed (<reason>)
 *   X-Sealpost-Signature: <see below>
 * Signature values:
 *   good <FPR> <uid>       valid, covers the whole decrypted content, and a
 *                          user ID of the key has the From address
 *   mismatch <FPR> <uid>   valid and whole, but no user ID has the From address
 *   partial <FPR>          valid, but covers only a part of the content
 *   unknown-key <KEYID>    the signing key is not in the keyring
 *   bad [(<why>)]          does not verify, or the key is revoked/expired
 *   none                   not signed
 *
 * Ciphertext without integrity protection (no MDC, no AEAD), or failing its
 * check, yields no plaintext byte: the failure view.
 *
 * Deterministic: the view bytes are a function of msg, what the keyring
 * decrypts, and the signature value. pinned_signature (NULL: verify now) is
 * a value status->signature gave before; it is used verbatim and nothing is
 * verified, so a key imported later cannot change an existing view. Line ends
 * are CRLF. w may be NULL with CRYPTO_DECRYPT_NEVER. */
crypto_view_result crypto_view_render(crypto_worker *w, crypto_decrypt_policy policy,
				      const uint8_t *msg, size_t len,
				      const char *pinned_signature,
				      GByteArray **view_r, crypto_view_status *status_r);

/* What msg is, without decrypting anything: status kind, encrypted and
 * reason (for kinds other than PGP_MIME and INLINE_PGP). */
void crypto_view_classify(const uint8_t *msg, size_t len, crypto_view_status *status_r);

/* The view of msg given its decrypted content: plain is the MIME entity
 * (PGP/MIME, or inline PGP whose literal data is MIME) when is_mime, else the
 * text of an inline PGP message; signature is the X-Sealpost-Signature value.
 * crypto_view_render is classify, decrypt, verify, then this; it is here so
 * the assembling can be tested and fuzzed without gpg. 0 with *view_r (the
 * failure view when the content is beyond the limits), or -1 when msg is not
 * a PGP/MIME or inline PGP message or signature is not one line of text. */
int crypto_view_build(const uint8_t *msg, size_t len, const uint8_t *plain,
		      size_t plain_len, bool is_mime, const char *signature,
		      GByteArray **view_r, crypto_view_status *status_r);

/* The short text a failure view shows and X-Sealpost-Decryption carries. */
const char *crypto_view_failure_text(crypto_view_failure failure);

#endif
