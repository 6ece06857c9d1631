/* The names this client serves: registration (and its checks), the REGISTER
 * each new connection repeats, the ACKs that gate ONLINE, and which handler
 * a message goes to. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/opts.h"

/* A linear scan: a service registers a handful of names, and comparing a
 * few lengths costs less than hashing the name. A service with hundreds of
 * names would want a hash table here. */
struct handler *sb__client_handler_find(struct sb_client *c, struct sb_view name)
{
	struct handler *any = NULL;

	for (unsigned i = 0; i < c->nh; i++) {
		struct handler *h = &c->h[i];
		if (h->name == NULL)
			any = h;
		else if (name.ptr != NULL && h->len == name.len &&
			 memcmp(h->name, name.ptr, name.len) == 0)
			return h;
	}
	return any;
}

/* The registration of exactly this name (NULL: the catch-all), or -1. */
static int handler_index(const struct sb_client *c, const char *name)
{
	for (unsigned i = 0; i < c->nh; i++) {
		const char *n = c->h[i].name;
		if ((n == NULL && name == NULL) ||
		    (n != NULL && name != NULL && strcmp(n, name) == 0))
			return (int)i;
	}
	return -1;
}

void sb__client_handler_remove(struct sb_client *c, unsigned i)
{
	free(c->h[i].name);
	free(c->h[i].schema);
	c->h[i] = c->h[--c->nh];
}

int sb__client_send_register(struct sb_client *c, struct handler *h)
{
	struct sb_msg m = {.kind = SB_REGISTER, .id = c->next_ctl++ | CTL_BIT};
	int rc;

	m.flags = (uint8_t)(h->flags & SB_HANDLER_INTERNAL ? SB_F_INTERNAL : 0);
	m.name = sb__client_view(h->name);
	m.payload = (struct sb_view){h->schema, h->schema_len};
	if ((rc = sb__client_queue(c, &m, 1)) == 0)
		h->reg_id = m.id;
	return rc;
}

/* ONLINE (or RECONNECTED) once the WELCOME is in and no registration is
 * waiting for its ACK: a request that finds us online can reach every
 * handler we have. */
void sb__client_maybe_online(struct sb_client *c)
{
	if (c->st != C_REGISTER || c->pres_id != 0)
		return;
	for (unsigned i = 0; i < c->nh; i++)
		if (c->h[i].reg_id != 0)
			return;
	c->st = C_READY;
	c->attempt = 0;
	c->online_reported = 1;
	/* Before on_state: what the program sends from there comes after. */
	if (c->oq_len > 0)
		sb__client_offline_flush(c);
	int again = c->ever_online;
	c->ever_online = 1;
	sb__client_report(c, again ? SB_CLIENT_RECONNECTED : SB_CLIENT_ONLINE, 0);
}

void sb__client_on_ack(struct sb_client *c, uint64_t id)
{
	if (id == c->pres_id)
		c->pres_id = 0;
	for (unsigned i = 0; i < c->nh && (id & CTL_BIT); i++)
		if (c->h[i].reg_id == id)
			c->h[i].reg_id = 0;
}

/* The router refused a REGISTER or UNREGISTER. */
void sb__client_on_ctl_error(struct sb_client *c, uint64_t id, int err)
{
	if (id == c->pres_id) { /* not subscribed: never renewed either */
		c->pres_id = 0;
		c->pres_fn = NULL;
	}
	for (unsigned i = 0; i < c->nh; i++)
		if (c->h[i].reg_id == id) {
			/* Not registered: never re-registered either. */
			sb__client_handler_remove(c, i);
			break;
		}
	sb__client_report(c, SB_CLIENT_ERROR, err);
}

int sb_client_register(struct sb_client *c, const char *name, const struct sb_handler_opts *opts,
		       sb_handler_fn fn, void *ud)
{
	struct sb_msg m = {.kind = SB_REGISTER};
	struct sb_handler_opts o;
	struct handler *h;
	int rc = SB_EINVAL;

	if (sb__handler_opts_read(opts, &o) != 0)
		return SB_EINVAL;
	unsigned flags = o.flags;
	const void *schema = o.schema;
	size_t schema_len = o.schema_len;
	m.name = sb__client_view(name);
	/* The same checks as the router's, so a refusal comes now, not later. */
	if (fn == NULL || sb_encoded_size(&m) < 0 || (name != NULL && name[0] == '$') ||
	    handler_index(c, name) >= 0 || schema_len > UINT32_MAX)
		return SB_EINVAL;
	if ((rc = sb_schema_validate(schema, schema_len, NULL, 0)) != 0)
		return rc;
	if (c->nh == c->h_cap) {
		unsigned cap = c->h_cap ? c->h_cap * 2 : 8;
		struct handler *nh = realloc(c->h, cap * sizeof *nh);
		if (nh == NULL)
			return SB_ENOMEM;
		c->h = nh;
		c->h_cap = cap;
	}
	h = &c->h[c->nh];
	*h = (struct handler){.len = m.name.len, .flags = flags, .fn = fn, .ud = ud};
	if ((name != NULL && (h->name = strdup(name)) == NULL) ||
	    (schema_len > 0 && (h->schema = malloc(schema_len)) == NULL)) {
		free(h->name);
		return SB_ENOMEM;
	}
	if (schema_len > 0)
		memcpy(h->schema, schema, schema_len);
	h->schema_len = (uint32_t)schema_len;
	c->nh++;
	if (sb__client_welcomed(c) && (rc = sb__client_send_register(c, h)) != 0)
		goto fail;
	return 0;
fail:
	sb__client_handler_remove(c, c->nh - 1);
	return rc;
}

int sb_client_unregister(struct sb_client *c, const char *name)
{
	struct sb_msg m = {.kind = SB_UNREGISTER};
	int i = handler_index(c, name);

	if (i < 0)
		return SB_EINVAL;
	if (sb__client_welcomed(c)) {
		m.id = c->next_ctl++ | CTL_BIT;
		m.name = sb__client_view(name);
		sb__client_queue(c, &m, 1);
	}
	/* If its REGISTER was still waiting, the gate to ONLINE no longer
	 * waits for it: the next turn's sb__client_maybe_online() sees that. */
	sb__client_handler_remove(c, (unsigned)i);
	return 0;
}
