/* Inside the control API: what the server and its unit test share. */
#ifndef ACCORD_API_INTERNAL_H
#define ACCORD_API_INTERNAL_H

#include <stddef.h>

/* The body of PUT /vm/actions: exactly {"action": "NAME"} in strict JSON.
 * Returns the action's name (static) or NULL with why in err. */
const char *api_parse_action(const char *body, size_t len, char *err, size_t errlen);
/* PUT /vm/kvp/external's body {"key": "...", "value": "..."}: 0 with both
 * strings malloc'd, or -1 with the reason in err */
int api_parse_kvp(const char *body, size_t len, char **key, char **value, char *err, size_t errlen);

struct machine_config;

/* The pre-boot routes (PUT /vm/machine-config, /vm/boot-source,
 * /vm/drives/{id}, /vm/network-interfaces/{id}, /vm/rng, /vm/console):
 * check the strict JSON body of PUT path against c (files opened, the
 * kernel tried on scratch memory) and apply it. id is the path's {id}, else
 * NULL. 204, or 400 with why in err and c as it was; 404 for another path. */
int api_configure(struct machine_config *c, const char *path, const char *id, const char *body, size_t len,
		  char *err, size_t errlen);
/* DELETE /vm/drives/{id} and /vm/network-interfaces/{id} before the
 * start: the drive or interface id taken out of c. 204; 404 for an id that
 * is not there (or another path); 400 for a bad id or a body (body_len is
 * its length), with why in err and c as it was. */
int api_remove(struct machine_config *c, const char *path, const char *id, size_t body_len, char *err,
	       size_t errlen);

#endif
