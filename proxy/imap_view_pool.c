/* imap_view_pool: a GLib thread pool of dedicated threads; each thread makes
 * its crypto_worker at its first job and keeps it until the pool stops. */
#include "imap_view_pool.h"

#include <string.h>

struct imap_view_pool {
	GThreadPool *threads;
	unsigned n_threads;
};

/* The jobs of one imap_view_pool_render call. */
typedef struct {
	GMutex lock;
	GCond done;
	size_t left;
} imap_view_batch;

typedef struct {
	imap_view_job *job;
	imap_view_batch *batch;
} imap_view_task;

static void imap_view_pool_worker_free(gpointer p)
{
	crypto_worker *w = p;
	crypto_worker_free(&w);
}

static GPrivate imap_view_pool_worker = G_PRIVATE_INIT(imap_view_pool_worker_free);

static void imap_view_pool_run(gpointer data, gpointer user_data)
{
	(void)user_data;
	imap_view_task *task = data;
	imap_view_job *job = task->job;
	crypto_worker *w = g_private_get(&imap_view_pool_worker);
	if (w == NULL) {
		const char *error;
		w = crypto_worker_new(&error);
		if (w != NULL)
			g_private_set(&imap_view_pool_worker, w);
	}
	memset(&job->status, 0, sizeof(job->status));
	job->view = NULL;
	if (w == NULL) {
		job->result = CRYPTO_VIEW_TEMPFAIL;
		job->status.reason = g_strdup("cannot create a GPGME context");
	} else {
		gsize len;
		const uint8_t *msg = g_bytes_get_data(job->msg, &len);
		job->result = crypto_view_render(w, job->policy, msg, len, job->pinned_signature,
						 &job->view, &job->status);
	}
	imap_view_batch *b = task->batch;
	g_free(task);
	g_mutex_lock(&b->lock);
	if (--b->left == 0)
		g_cond_signal(&b->done);
	g_mutex_unlock(&b->lock);
}

imap_view_pool *imap_view_pool_new(unsigned threads, const char **error_r)
{
	if (threads == 0)
		threads = g_get_num_processors();
	if (threads == 0)
		threads = 1;
	imap_view_pool *pool = g_new0(imap_view_pool, 1);
	GError *err = NULL;
	pool->threads = g_thread_pool_new(imap_view_pool_run, pool, (gint)threads, TRUE, &err);
	if (pool->threads == NULL) {
		g_clear_error(&err);
		g_free(pool);
		*error_r = "cannot start the decryption threads";
		return NULL;
	}
	pool->n_threads = threads;
	return pool;
}

void imap_view_pool_free(imap_view_pool **pp)
{
	imap_view_pool *pool = *pp;
	if (pool == NULL)
		return;
	g_thread_pool_free(pool->threads, FALSE, TRUE);
	g_free(pool);
	*pp = NULL;
}

unsigned imap_view_pool_threads(const imap_view_pool *pool)
{
	return pool->n_threads;
}

void imap_view_pool_render(imap_view_pool *pool, imap_view_job *jobs, size_t n)
{
	if (n == 0)
		return;
	imap_view_batch b;
	g_mutex_init(&b.lock);
	g_cond_init(&b.done);
	b.left = n;
	for (size_t i = 0; i < n; i++) {
		imap_view_task *task = g_new(imap_view_task, 1);
		task->job = &jobs[i];
		task->batch = &b;
		GError *err = NULL;
		if (!g_thread_pool_push(pool->threads, task, &err)) {
			g_clear_error(&err);
			g_free(task);
			memset(&jobs[i].status, 0, sizeof(jobs[i].status));
			jobs[i].view = NULL;
			jobs[i].result = CRYPTO_VIEW_TEMPFAIL;
			jobs[i].status.reason = g_strdup("cannot queue the message for decryption");
			g_mutex_lock(&b.lock);
			b.left--;
			g_mutex_unlock(&b.lock);
		}
	}
	g_mutex_lock(&b.lock);
	while (b.left > 0)
		g_cond_wait(&b.done, &b.lock);
	g_mutex_unlock(&b.lock);
	g_mutex_clear(&b.lock);
	g_cond_clear(&b.done);
}

void imap_view_job_clear(imap_view_job *job)
{
	if (job->view != NULL)
		g_byte_array_unref(job->view);
	job->view = NULL;
	crypto_view_status_clear(&job->status);
}
