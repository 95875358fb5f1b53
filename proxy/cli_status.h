/* cli_status: the `sealpost status` command — accounts and their listeners,
 * usable keys, pending key changes and recent refusals, at a glance. */
#ifndef SEALPOST_CLI_STATUS_H
#define SEALPOST_CLI_STATUS_H

#include <json-glib/json-glib.h>

#include "config.h"
#include "keystore_db.h"
#include "keystore_keyring.h"

/* argv[0] is "status". Returns the exit code of docs/cli.md: 0 done, 1 the
 * keyring or database could not be read, 2 usage, 3 the configuration is
 * invalid. */
int cli_status_main(int argc, char **argv);

/* Adds the object `sealpost status --json` prints to b (the local API
 * too). -1 with *error_r when the keyring or database could not be read. */
int cli_status_json(const config *cfg, keystore_db *db, keystore_keyring *kr, JsonBuilder *b,
		    const char **error_r);

#endif
