/* view_pin: the pin protocol around imap_view_pool renderings, shared by
 * imap_decrypt and pop3_maildrop. */
#include "view_pin.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "keystore_db.h"

int view_pin_get(const session_env *env, const imap_view_key *key, char **pin_r,
		 char *reason, size_t reason_size)
{
	const char *error;
	if (keystore_view_pin_get(env->db, key->account, key->mailbox, key->mailbox_len,
				  key->uidvalidity, key->uid, pin_r, &error) < 0) {
		snprintf(reason, reason_size, "the view store cannot be read: %s", error);
		return -1;
	}
	return 0;
}

bool view_pin_drop_invalid(imap_view_job *job, char **pin, int round)
{
	if (job->result != CRYPTO_VIEW_INVALID || round != 0)
		return false;
	imap_view_job_clear(job);
	g_free(*pin);
	*pin = NULL;
	job->pinned_signature = NULL;
	return true;
}

int view_pin_put_first(const session_env *env, const imap_view_key *key, imap_view_job *job,
		       char **pin, int round, char *reason, size_t reason_size)
{
	if (job->status.signature == NULL || *pin != NULL)
		return 0;
	char *stored = NULL;
	const char *error;
	if (keystore_view_pin_put(env->db, key->account, key->mailbox, key->mailbox_len,
				  key->uidvalidity, key->uid, job->status.signature, &stored,
				  &error) < 0) {
		snprintf(reason, reason_size, "the view store cannot be written: %s", error);
		return -1;
	}
	if (stored != NULL && strcmp(stored, job->status.signature) != 0 && round == 0) {
		/* Another session pinned first: show its status. */
		imap_view_job_clear(job);
		*pin = stored;
		job->pinned_signature = stored;
		return 1;
	}
	g_free(stored);
	return 0;
}
