/* main: the sealpost command line — serve, check-config, version — with
 * documented exit codes (docs/cli.md). */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_common.h"
#include "cli_keys.h"
#include "cli_pair.h"
#include "cli_policy.h"
#include "cli_status.h"
#include "config.h"
#include "crypto.h"
#include "gpgproc.h"
#include "keystore.h"
#include "log.h"
#include "server.h"
#include "tls.h"
#include <openssl/crypto.h>


static server *main_server;

static void main_on_signal(int sig)
{
	(void)sig;
	if (main_server != NULL)
		server_stop(main_server);
}

static const char main_usage[] =
	"Usage: sealpost COMMAND [OPTIONS]\n"
	"\n"
	"Commands:\n"
	"  serve [--config FILE]     run the proxy (no config: a demo provider on loopback)\n"
	"  check-config FILE         validate a configuration file and exit\n"
	"  policy set|unset|list     manage per-address and per-domain encryption rules\n"
	"  keys list|generate|...    manage OpenPGP keys: import, export, verify, unlock, ...\n"
	"  status [--json]           accounts, listeners, usable keys, pending key changes\n"
	"  pair [--json]             print the local API's URL and token (for the add-on)\n"
	"  version [--cert]          print versions (and the certificate fingerprint)\n"
	"  help                      this text\n"
	"\n"
	"Run 'sealpost COMMAND --help' for a command's options.\n"
	"Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration.\n";

static int main_parse(GOptionContext *ctx, int *argc, char ***argv)
{
	GError *err = NULL;
	if (!g_option_context_parse(ctx, argc, argv, &err)) {
		fprintf(stderr, "sealpost: %s\n", err->message);
		g_error_free(err);
		return -1;
	}
	return 0;
}

static int cmd_check_config(int argc, char **argv)
{
	GOptionContext *ctx = g_option_context_new("FILE - validate a configuration file");
	g_option_context_set_summary(ctx,
		"Reads FILE, checks every section, key and value, and exits 0 when it\n"
		"is valid; otherwise prints one line naming file, line and key, and\n"
		"exits 3.");
	int ret = main_parse(ctx, &argc, &argv);
	g_option_context_free(ctx);
	if (ret < 0)
		return CLI_EXIT_USAGE;
	if (argc != 2) {
		fprintf(stderr, "sealpost check-config: expected exactly one FILE\n");
		return CLI_EXIT_USAGE;
	}
	const char *error;
	config *cfg = config_load(argv[1], &error);
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", error);
		return CLI_EXIT_CONFIG;
	}
	if (cfg->n_gateways == 0)
		printf("%s: OK (%zu account%s)\n", argv[1], cfg->n_accounts,
		       cfg->n_accounts == 1 ? "" : "s");
	else
		printf("%s: OK (%zu account%s, %zu gateway%s)\n", argv[1], cfg->n_accounts,
		       cfg->n_accounts == 1 ? "" : "s", cfg->n_gateways,
		       cfg->n_gateways == 1 ? "" : "s");
	config_free(&cfg);
	return CLI_EXIT_OK;
}

static int cmd_version(int argc, char **argv)
{
	gboolean cert = FALSE;
	char *config_path = NULL;
	GOptionEntry entries[] = {
		{ "cert", 0, 0, G_OPTION_ARG_NONE, &cert,
		  "Print the SHA-256 fingerprint of sealpost's client-facing certificate", NULL },
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration file (default: ~/.config/sealpost/sealpost.conf)", "FILE" },
		G_OPTION_ENTRY_NULL
	};
	GOptionContext *ctx = g_option_context_new("- print version information");
	g_option_context_add_main_entries(ctx, entries, NULL);
	int ret = main_parse(ctx, &argc, &argv);
	g_option_context_free(ctx);
	if (ret < 0 || argc != 1) {
		if (ret == 0)
			fprintf(stderr, "sealpost version: unexpected argument %s\n", argv[1]);
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	if (!cert) {
		crypto_init();
		printf("sealpost %s\n", SEALPOST_VERSION);
		printf("GMime %s, GPGME %s, libsodium %s, %s\n",
		       crypto_gmime_version(), keystore_gpgme_version(),
		       keystore_sodium_version(), OpenSSL_version(OPENSSL_VERSION));
		crypto_shutdown();
		g_free(config_path);
		return CLI_EXIT_OK;
	}
	config *cfg = cli_load_config("version --cert", config_path, &ret);
	g_free(config_path);
	if (cfg == NULL)
		return ret;
	const char *error;
	ret = CLI_EXIT_OK;
	char fpr[128];
	if (server_ensure_certificate(cfg, &error) < 0 ||
	    tls_cert_fingerprint(cfg->tls_cert, fpr, sizeof(fpr), &error) < 0) {
		fprintf(stderr, "sealpost: %s\n", error);
		ret = CLI_EXIT_RUNTIME;
	} else {
		printf("%s\nSHA-256 %s\n", cfg->tls_cert, fpr);
	}
	config_free(&cfg);
	return ret;
}

static const char *main_provider_script(void)
{
	const char *env = g_getenv("SEALPOST_PROVIDER_SCRIPT");
	if (env != NULL)
		return env;
	return SEALPOST_SOURCE_DIR "/tests/provider/provider.py";
}

/* Starts the demo provider (private Postfix + Dovecot on loopback, test
 * users and keys) and returns the path of the config it wrote. */
static char *main_demo_start(char **demo_dir_r)
{
	char *dir = g_strdup("/tmp/sealpost-demo-XXXXXX");
	if (g_mkdtemp_full(dir, 0755) == NULL) {
		fprintf(stderr, "sealpost: cannot create demo directory: %s\n", strerror(errno));
		g_free(dir);
		return NULL;
	}
	char *conf = g_build_filename(dir, "sealpost.conf", NULL);
	const char *argv[] = {
		"python3", main_provider_script(), "demo", "--dir", dir,
		"--sealpost-conf", conf, NULL,
	};
	int status = 0;
	GError *err = NULL;
	fprintf(stderr, "sealpost: no configuration given: starting a demo provider in %s\n", dir);
	if (!g_spawn_sync(NULL, (char **)argv, NULL,
			  G_SPAWN_SEARCH_PATH | G_SPAWN_CHILD_INHERITS_STDIN,
			  NULL, NULL, NULL, NULL, &status, &err) ||
	    !g_spawn_check_wait_status(status, &err)) {
		fprintf(stderr, "sealpost: demo provider failed: %s\n", err->message);
		g_error_free(err);
		g_free(conf);
		g_free(dir);
		return NULL;
	}
	*demo_dir_r = dir;
	return conf;
}

static void main_demo_stop(const char *dir)
{
	const char *argv[] = {
		"python3", main_provider_script(), "stop", "--dir", dir, "--remove", NULL,
	};
	int status = 0;
	g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
		     NULL, NULL, &status, NULL);
}

static void main_print_endpoints(const config *cfg, const char *config_path)
{
	char fpr[128];
	const char *error;
	printf("\nsealpost %s is serving. Point a mail client at:\n", SEALPOST_VERSION);
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const config_account *a = cfg->accounts[i];
		printf("  account %s (%s)\n", a->name, a->address);
		const struct { const config_listen *l; const char *what; } ls[] = {
			{ &a->imap_listen, "IMAP, STARTTLS" },
			{ &a->imaps_listen, "IMAP, TLS" },
			{ &a->smtp_listen, "SMTP submission, STARTTLS" },
			{ &a->smtps_listen, "SMTP submission, TLS" },
			{ &a->pop3_listen, "POP3, STLS" },
			{ &a->pop3s_listen, "POP3, TLS" },
		};
		for (size_t j = 0; j < G_N_ELEMENTS(ls); j++) {
			if (ls[j].l->port != 0)
				printf("    %-28s %s:%d\n", ls[j].what, ls[j].l->host, ls[j].l->port);
		}
		if (a->imap_upstream.host != NULL)
			printf("    %-28s %s\n", "IMAP provider", a->imap_upstream.url);
		if (a->smtp_upstream.host != NULL)
			printf("    %-28s %s\n", "SMTP provider", a->smtp_upstream.url);
		if (a->pop3_upstream.host != NULL)
			printf("    %-28s %s\n", "POP3 provider", a->pop3_upstream.url);
	}
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const config_gateway *gw = cfg->gateways[i];
		printf("  gateway %s: MTA hands over at %s:%d, re-injected into %s\n", gw->name,
		       gw->listen.host, gw->listen.port, gw->account.smtp_upstream.url);
	}
	if (!cfg->api_listen_default)
		printf("  web console http://%s:%d/ and local API http://%s:%d/api/v1/\n"
		       "    its token: sealpost pair --config %s\n", cfg->api_listen.host,
		       cfg->api_listen.port, cfg->api_listen.host, cfg->api_listen.port,
		       config_path);
	if (tls_cert_fingerprint(cfg->tls_cert, fpr, sizeof(fpr), &error) == 0)
		printf("  certificate %s\n  SHA-256 %s\n", cfg->tls_cert, fpr);
	printf("  log in with the provider's user name and password.\n\n");
	fflush(stdout);
}

static int cmd_serve(int argc, char **argv)
{
	char *config_path = NULL;
	char *log_level_name = NULL;
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration file (default: ~/.config/sealpost/sealpost.conf; "
		  "when there is none, a demo provider is started on loopback)", "FILE" },
		{ "log-level", 0, 0, G_OPTION_ARG_STRING, &log_level_name,
		  "debug, info, warn or error (overrides log_level)", "LEVEL" },
		G_OPTION_ENTRY_NULL
	};
	GOptionContext *ctx = g_option_context_new("- run the proxy");
	g_option_context_add_main_entries(ctx, entries, NULL);
	int ret = main_parse(ctx, &argc, &argv);
	g_option_context_free(ctx);
	if (ret < 0 || argc != 1) {
		if (ret == 0)
			fprintf(stderr, "sealpost serve: unexpected argument %s\n", argv[1]);
		return CLI_EXIT_USAGE;
	}
	log_level cli_level = LOG_LEVEL_INFO;
	if (log_level_name != NULL && log_level_parse(log_level_name, &cli_level) < 0) {
		fprintf(stderr, "sealpost serve: --log-level: expected debug, info, warn or error\n");
		return CLI_EXIT_USAGE;
	}

	char *demo_dir = NULL;
	if (config_path == NULL)
		config_path = config_default_path();
	if (config_path == NULL) {
		config_path = main_demo_start(&demo_dir);
		if (config_path == NULL)
			return CLI_EXIT_RUNTIME;
	}

	const char *error;
	config *cfg = config_load(config_path, &error);
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", error);
		ret = CLI_EXIT_CONFIG;
		goto out;
	}
	if (log_init(log_level_name != NULL ? cli_level : cfg->log_level,
		     cfg->log_file, &error) < 0) {
		fprintf(stderr, "sealpost: %s\n", error);
		ret = CLI_EXIT_RUNTIME;
		goto out;
	}
	if (g_mkdir_with_parents(cfg->state_dir, 0700) < 0) {
		fprintf(stderr, "sealpost: cannot create state_dir %s: %s\n",
			cfg->state_dir, strerror(errno));
		ret = CLI_EXIT_RUNTIME;
		goto out;
	}
	crypto_init();
	if (keystore_init(cfg->gnupg_home, &error) < 0) {
		fprintf(stderr, "sealpost: %s\n", error);
		ret = CLI_EXIT_RUNTIME;
		goto out;
	}
	main_server = server_new(cfg, &error);
	if (main_server == NULL) {
		fprintf(stderr, "sealpost: %s\n", error);
		ret = CLI_EXIT_RUNTIME;
		goto out;
	}
	struct sigaction sa = { .sa_handler = main_on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	log_info(NULL, "starting", "sealpost %s, config %s", SEALPOST_VERSION, config_path);
	main_print_endpoints(cfg, config_path);
	ret = server_run(main_server) < 0 ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
	if (server_drain(main_server, 5000) < 0) {
		/* A session stuck on the provider still uses the config and
		 * TLS contexts: end the process without freeing under it. */
		if (demo_dir != NULL)
			main_demo_stop(demo_dir);
		log_close();
		fflush(NULL);
		_exit(ret);
	}
	server_free(&main_server);
	crypto_shutdown();
out:
	if (demo_dir != NULL) {
		main_demo_stop(demo_dir);
		g_free(demo_dir);
	}
	config_free(&cfg);
	g_free(config_path);
	g_free(log_level_name);
	log_close();
	return ret;
}

int main(int argc, char **argv)
{
	/* Writes to a vanished peer must fail with EPIPE, not kill the proxy. */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		fputs(main_usage, stderr);
		return CLI_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, CRYPTO_GPGPROC_WORKER_ARG) == 0)
		return crypto_gpgproc_worker_main(argc, argv);
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(argc - 1, argv + 1);
	if (strcmp(cmd, "policy") == 0)
		return cli_policy_main(argc - 1, argv + 1);
	if (strcmp(cmd, "keys") == 0)
		return cli_keys_main(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return cli_status_main(argc - 1, argv + 1);
	if (strcmp(cmd, "pair") == 0)
		return cli_pair_main(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
		return cmd_version(argc - 1, argv + 1);
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "-h") == 0) {
		fputs(main_usage, stdout);
		return CLI_EXIT_OK;
	}
	fprintf(stderr, "sealpost: unknown command '%s'\n\n%s", cmd, main_usage);
	return CLI_EXIT_USAGE;
}
