/* session: helpers every protocol session shares — above all the one way
 * to reach the provider, which never continues without verified TLS. */
#include "session.h"

#include <stdio.h>

conn *session_connect_upstream(const session_env *env,
			       const config_upstream *up, const char **error_r)
{
	const char *error;
	int timeout_ms = (int)env->cfg->limits.connect_timeout * 1000;
	conn *c = conn_connect(up->host, up->port, timeout_ms, &error);
	if (c == NULL) {
		*error_r = error;
		return NULL;
	}
	conn_set_timeout(c, timeout_ms);
	if (up->tls == UPSTREAM_TLS_IMPLICIT &&
	    conn_starttls_client(c, env->tls_cli, up->host, &error) < 0) {
		static _Thread_local char msg[320];
		snprintf(msg, sizeof(msg), "%s", error);
		conn_free(&c);
		*error_r = msg;
		return NULL;
	}
	conn_set_timeout(c, (int)env->cfg->limits.command_timeout * 1000);
	return c;
}
