/* imap_view_cache: decrypted views kept in memory, shared by every IMAP
 * session of the process, bounded in bytes and evicted least recently used. */
#ifndef SEALPOST_IMAP_VIEW_CACHE_H
#define SEALPOST_IMAP_VIEW_CACHE_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A view is immutable once rendered (its signature status is pinned), so an
 * entry never goes stale; it only leaves when space is needed. An entry may
 * also record that a message is served as the provider stores it (no view),
 * so the next FETCH need not download it again. */
typedef struct imap_view_cache imap_view_cache;

typedef struct {
	const char *account;		/* the account's name */
	const uint8_t *mailbox;		/* as the client named it (decoded astring) */
	size_t mailbox_len;
	uint32_t uidvalidity;
	uint32_t uid;
} imap_view_key;

/* max_bytes 0: nothing is ever kept. Thread-safe. */
imap_view_cache *imap_view_cache_new(uint64_t max_bytes);
void imap_view_cache_free(imap_view_cache **cache);

/* True when the message is known: *view_r is a new reference to its view,
 * or NULL when it is served unchanged from the provider. */
bool imap_view_cache_get(imap_view_cache *cache, const imap_view_key *key, GBytes **view_r);
/* Stores view (a reference is taken; NULL: served unchanged), evicting the
 * least recently used entries beyond the bound. A view larger than the
 * whole bound is not kept. */
void imap_view_cache_put(imap_view_cache *cache, const imap_view_key *key, GBytes *view);

/* Bytes held now (views plus bookkeeping), for tests and status. */
uint64_t imap_view_cache_bytes(imap_view_cache *cache);

#endif
