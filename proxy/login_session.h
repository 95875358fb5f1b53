/* login_session: what an IMAP and a POP3 session share up to login and at
 * their end: the client leg (implicit TLS, STARTTLS, replies, idle timeout,
 * linger), the provider connection and why it failed, the login results,
 * the state log and the one teardown. Each protocol embeds one. */
#ifndef SEALPOST_LOGIN_SESSION_H
#define SEALPOST_LOGIN_SESSION_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "conn.h"
#include "session.h"
#include "upstream_setup.h"

/* The states of the session; each protocol names them in its own terms. */
typedef enum {
	LOGIN_SESSION_GREETING,
	LOGIN_SESSION_BEFORE_LOGIN,	/* IMAP not authenticated, POP3 authorization */
	LOGIN_SESSION_AUTHENTICATING,
	LOGIN_SESSION_LOGGED_IN,	/* IMAP relaying, POP3 transaction */
	LOGIN_SESSION_CLOSING,
} login_session_state;

/* Why a login attempt did not succeed; each protocol's login_reply turns
 * it into what the client sees (a protocol meets only some of them). */
typedef enum {
	LOGIN_SESSION_OK,
	LOGIN_SESSION_UPSTREAM_UNAVAILABLE, /* no verified connection (reason in upstream_error) */
	LOGIN_SESSION_AUTH_FAILED,	/* the provider refused the credentials */
	LOGIN_SESSION_AUTH_TEMPORARY,	/* IMAP [UNAVAILABLE], POP3 [SYS/TEMP] */
	LOGIN_SESSION_IN_USE,		/* POP3: the provider said [IN-USE] */
	LOGIN_SESSION_DELAY,		/* POP3: the provider said [LOGIN-DELAY] */
	LOGIN_SESSION_MAILDROP,		/* POP3: logged in, but the message list could not be read */
	LOGIN_SESSION_ABORTED,		/* IMAP: AUTHENTICATE cancelled or malformed */
	LOGIN_SESSION_PRIVACY_REQUIRED,	/* plaintext login on a plain client leg */
	LOGIN_SESSION_CLIENT_GONE,	/* the client left or broke the protocol */
} login_session_result;

/* For the log: "credentials refused by the provider"... */
const char *login_session_result_name(login_session_result result);

/* What a protocol tells the shared part. The callbacks get the owner given
 * to login_session_open(). */
typedef struct {
	const char *const *state_names;	/* indexed by login_session_state */
	const char *starttls;		/* the protocol's word: "STARTTLS", "STLS" */
	/* Opens a new provider connection into ls->upstream (on failure
	 * NULL, with upstream_failure and upstream_error), after letting go of
	 * what the protocol kept from the previous one. */
	void (*connect_upstream)(void *owner);
	/* The idle provider connection has input before login: whether it
	 * is still usable (input read and dropped as the protocol sees fit). */
	bool (*upstream_input_ok)(void *owner);
} login_session_protocol;

typedef struct {
	const login_session_protocol *proto;
	void *owner;
	const session_env *env;
	login_session_state state;
	conn *client;
	conn *upstream;
	upstream_setup_failure upstream_failure;
	char upstream_error[320];
	bool client_error;		/* drain the client's input before closing */
	char end_reason[300];
} login_session;

/* Takes client_fd (closed on failure too) and brings up implicit TLS when
 * the listener wants it. 0, or -1 with the end reason set: the caller goes
 * on to login_session_close(). */
int login_session_open(login_session *ls, const login_session_protocol *proto, void *owner,
		       const session_env *env, int client_fd);
/* The teardown of the shared part: the client gets what is buffered (and a
 * moment to read it after a protocol error), the end is logged with its
 * reason, both connections are freed. */
void login_session_close(login_session *ls);

void login_session_enter_state(login_session *ls, login_session_state state);
/* The first reason set is the one logged. */
void login_session_set_end(login_session *ls, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes one reply (cut at 767 bytes) and flushes. 0, or -1 with the end
 * reason set. */
int login_session_reply(login_session *ls, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A write to the client failed: sets the end reason, returns -1. */
int login_session_write_failed(login_session *ls);
/* A read from the client ended (closed: end of stream, else an error or
 * the idle timeout, which gets idle_reply). Sets the end reason, returns -1. */
int login_session_read_failed(login_session *ls, bool closed, const char *idle_reply);
/* Around a wait for the client's next command: the idle timeout applies
 * while idle, the command timeout otherwise. */
void login_session_wait_idle(login_session *ls, bool idle);

/* Whether credentials may be taken on this client leg. */
bool login_session_plaintext_allowed(const login_session *ls);
bool login_session_login_allowed(const login_session *ls);

/* After the protocol's STARTTLS (STLS) go-ahead: drops what came along
 * unprotected, then the server handshake. 0, or -1 with the end reason. */
int login_session_starttls(login_session *ls);

/* The provider connection goes, with failure and reason (logged). */
void login_session_drop_upstream(login_session *ls, upstream_setup_failure failure,
				 const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void login_session_drop_upstream_v(login_session *ls, upstream_setup_failure failure,
				   const char *fmt, va_list args)
	__attribute__((format(printf, 3, 0)));
/* Connects anew through the protocol; the reason of a failure is made
 * fit for a reply line. */
void login_session_connect_upstream(login_session *ls);
/* Before credentials go out: the connection must still be there. A
 * provider that timed out the idle connection gets a fresh one. */
bool login_session_upstream_ready(login_session *ls);
/* What the client is told when the provider cannot be used, into buf.
 * Reasons that involve TLS say that the credentials stayed here. */
const char *login_session_unavailable_text(const login_session *ls, char *buf, size_t size);

#endif
