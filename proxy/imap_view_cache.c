/* imap_view_cache: an LRU of decrypted views behind one mutex; a hash table
 * finds an entry, a queue orders entries from most to least recently used. */
#include "imap_view_cache.h"

#include <string.h>

/* What an entry costs beyond its view: key, links, table slot. */
#define IMAP_VIEW_CACHE_OVERHEAD 160

typedef struct {
	GBytes *key;
	GBytes *view;		/* NULL: served unchanged */
	uint64_t cost;
	GList link;		/* in lru; data points to this entry */
} imap_view_entry;

struct imap_view_cache {
	GMutex lock;
	GHashTable *entries;	/* GBytes key -> imap_view_entry */
	GQueue lru;		/* head: most recently used */
	uint64_t max_bytes;
	uint64_t bytes;
};

static GBytes *imap_view_cache_key(const imap_view_key *k)
{
	/* uidvalidity, uid, account NUL mailbox: names hold no NUL. */
	size_t alen = strlen(k->account);
	size_t len = 8 + alen + 1 + k->mailbox_len;
	uint8_t *buf = g_malloc(len);
	memcpy(buf, &k->uidvalidity, 4);
	memcpy(buf + 4, &k->uid, 4);
	memcpy(buf + 8, k->account, alen);
	buf[8 + alen] = '\0';
	memcpy(buf + 8 + alen + 1, k->mailbox, k->mailbox_len);
	return g_bytes_new_take(buf, len);
}

static void imap_view_entry_free(imap_view_entry *e)
{
	g_bytes_unref(e->key);
	if (e->view != NULL)
		g_bytes_unref(e->view);
	g_free(e);
}

imap_view_cache *imap_view_cache_new(uint64_t max_bytes)
{
	imap_view_cache *c = g_new0(imap_view_cache, 1);
	g_mutex_init(&c->lock);
	c->entries = g_hash_table_new(g_bytes_hash, g_bytes_equal);
	g_queue_init(&c->lru);
	c->max_bytes = max_bytes;
	return c;
}

void imap_view_cache_free(imap_view_cache **cp)
{
	imap_view_cache *c = *cp;
	if (c == NULL)
		return;
	GList *l = c->lru.head;
	while (l != NULL) {
		GList *next = l->next;
		imap_view_entry_free(l->data);
		l = next;
	}
	g_hash_table_destroy(c->entries);
	g_mutex_clear(&c->lock);
	g_free(c);
	*cp = NULL;
}

static void imap_view_cache_remove(imap_view_cache *c, imap_view_entry *e)
{
	g_queue_unlink(&c->lru, &e->link);
	g_hash_table_remove(c->entries, e->key);
	c->bytes -= e->cost;
	imap_view_entry_free(e);
}

bool imap_view_cache_get(imap_view_cache *c, const imap_view_key *key, GBytes **view_r)
{
	*view_r = NULL;
	if (c == NULL || c->max_bytes == 0)
		return false;
	GBytes *k = imap_view_cache_key(key);
	g_mutex_lock(&c->lock);
	imap_view_entry *e = g_hash_table_lookup(c->entries, k);
	if (e != NULL) {
		g_queue_unlink(&c->lru, &e->link);
		g_queue_push_head_link(&c->lru, &e->link);
		if (e->view != NULL)
			*view_r = g_bytes_ref(e->view);
	}
	g_mutex_unlock(&c->lock);
	g_bytes_unref(k);
	return e != NULL;
}

void imap_view_cache_put(imap_view_cache *c, const imap_view_key *key, GBytes *view)
{
	if (c == NULL || c->max_bytes == 0)
		return;
	uint64_t cost = IMAP_VIEW_CACHE_OVERHEAD + key->mailbox_len + strlen(key->account) +
		(view != NULL ? g_bytes_get_size(view) : 0);
	if (cost > c->max_bytes)
		return;
	imap_view_entry *e = g_new0(imap_view_entry, 1);
	e->key = imap_view_cache_key(key);
	e->view = view != NULL ? g_bytes_ref(view) : NULL;
	e->cost = cost;
	e->link.data = e;
	g_mutex_lock(&c->lock);
	imap_view_entry *old = g_hash_table_lookup(c->entries, e->key);
	if (old != NULL)
		imap_view_cache_remove(c, old);
	while (c->bytes + cost > c->max_bytes && c->lru.tail != NULL)
		imap_view_cache_remove(c, c->lru.tail->data);
	g_hash_table_insert(c->entries, e->key, e);
	g_queue_push_head_link(&c->lru, &e->link);
	c->bytes += cost;
	g_mutex_unlock(&c->lock);
}

uint64_t imap_view_cache_bytes(imap_view_cache *c)
{
	g_mutex_lock(&c->lock);
	uint64_t n = c->bytes;
	g_mutex_unlock(&c->lock);
	return n;
}
