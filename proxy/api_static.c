/* api_static: looks up the web console's files in the table
 * scripts/embed_assets.py generates from plugin/console. */
#include "api_static.h"

#include <string.h>

const api_static_file *api_static_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < api_static_n_files; i++)
		if (strcmp(api_static_files[i].name, name) == 0)
			return &api_static_files[i];
	return NULL;
}
