/* Who is who: the senders the router introduces before their first message
 * (PRESENCE identity), presence events for the program, and the map lookups
 * their payloads need. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/idmap.h"
#include "common/list.h"
#include "proto/mp.h"

#define IDENT_WINDOW 1024u /* senders kept: the router's window (protocol.md) */

/* Skips the elements of container it (already read) at *p. */
static int mp_skip_children(const uint8_t **p, const uint8_t *end, const struct sb__mp_item *it)
{
	uint64_t left = it->type == SB__MP_ARRAY ? it->len
			: it->type == SB__MP_MAP ? 2ull * it->len
						 : 0;
	struct sb__mp_item x;

	for (; left > 0; left--) {
		if (sb__mp_read(p, end, &x) != SB__MP_OK)
			return -1;
		left += x.type == SB__MP_ARRAY ? x.len : x.type == SB__MP_MAP ? 2ull * x.len : 0;
	}
	return 0;
}

/* The value of string key k in the MessagePack map [p, p + len): 1 with
 * its item in *val, 0 if absent, -1 if the payload is not a map. */
int sb__client_map_get(const uint8_t *p, size_t len, const char *k, struct sb__mp_item *val)
{
	const uint8_t *end = p + len;
	struct sb__mp_item m, key;

	if (p == NULL || sb__mp_read(&p, end, &m) != SB__MP_OK || m.type != SB__MP_MAP)
		return -1;
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &key) != SB__MP_OK || mp_skip_children(&p, end, &key) != 0)
			return -1;
		if (sb__mp_read(&p, end, val) != SB__MP_OK)
			return -1;
		if (key.type == SB__MP_STR && key.len == strlen(k) &&
		    memcmp(key.body, k, key.len) == 0)
			return 1;
		if (mp_skip_children(&p, end, val) != 0)
			return -1;
	}
	return 0;
}

/* The encoded value of key k in the MessagePack map [p, p + len) when it is
 * a map: 1 with its bytes in *s, *n; else 0. */
static int map_span(const uint8_t *p, size_t len, const char *k, const uint8_t **s, size_t *n)
{
	const uint8_t *end = p + len;
	struct sb__mp_item m, key, val;

	if (p == NULL || sb__mp_read(&p, end, &m) != SB__MP_OK || m.type != SB__MP_MAP)
		return 0;
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &key) != SB__MP_OK || mp_skip_children(&p, end, &key) != 0)
			return 0;
		const uint8_t *at = p;
		if (sb__mp_read(&p, end, &val) != SB__MP_OK || mp_skip_children(&p, end, &val) != 0)
			return 0;
		if (key.type == SB__MP_STR && key.len == strlen(k) &&
		    memcmp(key.body, k, key.len) == 0) {
			*s = at;
			*n = (size_t)(p - at);
			return val.type == SB__MP_MAP;
		}
	}
	return 0;
}

/* Copies string key k of a map payload into out (cap bytes), "" if absent. */
static void map_str(const struct sb_view *pl, const char *k, char *out, size_t cap)
{
	struct sb__mp_item v;

	out[0] = 0;
	if (sb__client_map_get(pl->ptr, pl->len, k, &v) == 1 && v.type == SB__MP_STR &&
	    v.len < cap) {
		memcpy(out, v.body, v.len);
		out[v.len] = 0;
	}
}

void sb__client_ident_put(struct ident *id)
{
	if (id != NULL && --id->refs == 0) {
		free(id->subject);
		free(id->claims);
		free(id);
	}
}

void sb__client_idents_forget(struct sb_client *c)
{
	while (!sb__link_empty(&c->idents_all)) {
		struct ident *id = SB__CONTAINER(c->idents_all.next, struct ident, link);
		sb__link_del(&id->link);
		sb__client_ident_put(id);
	}
	sb__idmap_destroy(&c->idents);
	sb__idmap_init(&c->idents);
}

/* An identity event: the router introduces the sender of what follows. */
static void on_identity(struct sb_client *c, const struct sb_msg *m)
{
	struct ident *id = calloc(1, sizeof *id), *old;
	struct sb__mp_item v;

	if (id == NULL || m->peer.len > SB_PEER_MAX)
		goto fail;
	id->refs = 1;
	sb__link_init(&id->link);
	memcpy(id->name, m->peer.ptr, m->peer.len);
	map_str(&m->payload, "role", id->role, sizeof id->role);
	if (sb__client_map_get(m->payload.ptr, m->payload.len, "subject", &v) == 1 &&
	    v.type == SB__MP_STR) {
		if ((id->subject = malloc(v.len + 1)) == NULL)
			goto fail;
		memcpy(id->subject, v.body, v.len);
		id->subject[v.len] = 0;
	}
	/* The claims map, whole: the router copied it from a verified token. */
	const uint8_t *cs;
	size_t cn;
	if (map_span(m->payload.ptr, m->payload.len, "claims", &cs, &cn) == 1) {
		if ((id->claims = malloc(cn)) == NULL)
			goto fail;
		memcpy(id->claims, cs, cn);
		id->claims_len = cn;
	}
	/* The router's window: it forgets every sender when it must introduce
	 * one past IDENT_WINDOW, and will introduce them again. */
	if (c->idents.count >= IDENT_WINDOW)
		sb__client_idents_forget(c);
	if ((old = (struct ident *)(uintptr_t)sb__idmap_get(&c->idents, m->peer_id)) != NULL) {
		sb__link_del(&old->link);
		sb__client_ident_put(old);
	}
	if (sb__idmap_put(&c->idents, m->peer_id, (uintptr_t)id) != 0)
		goto fail;
	sb__link_add_tail(&c->idents_all, &id->link);
	return;
fail:
	/* Calls from this sender will show no name: nothing worse. */
	sb__idmap_del(&c->idents, m->peer_id);
	sb__client_ident_put(id);
}

void sb__client_on_presence(struct sb_client *c, const struct sb_msg *m)
{
	char name[SB_PEER_MAX + 1], role[SB_TOKEN_MAX + 1], *subject = c->text;
	sb_presence_fn fn = c->pres_fn;

	if (m->event == SB_PEER_IDENTITY) {
		on_identity(c, m);
		return;
	}
	/* Later events are for later libraries. */
	if (fn == NULL || m->event < SB_PEER_CONNECTED || m->event > SB_PEER_DRAINING ||
	    m->peer.len > SB_PEER_MAX)
		return;
	memcpy(name, m->peer.ptr, m->peer.len);
	name[m->peer.len] = 0;
	map_str(&m->payload, "role", role, sizeof role);
	map_str(&m->payload, "subject", c->text, sizeof c->text);
	struct sb_presence p = {.event = (enum sb_presence_event)m->event,
				.peer = name,
				.peer_id = m->peer_id,
				.role = role,
				.subject = subject[0] != 0 ? subject : NULL};
	c->in_cb++;
	fn(c, &p, c->pres_ud);
	c->in_cb--;
}

int sb__client_send_subscribe(struct sb_client *c, int off)
{
	struct sb_msg m = {.kind = SB_SUBSCRIBE, .id = c->next_ctl++ | CTL_BIT};
	int rc;

	m.flags = off ? SB_F_OFF : 0;
	m.name = sb__client_view("presence");
	if ((rc = sb__client_queue(c, &m, 1)) == 0)
		c->pres_id = off ? 0 : m.id;
	return rc;
}

int sb_client_presence(struct sb_client *c, sb_presence_fn fn, void *ud)
{
	sb_presence_fn old = c->pres_fn;
	void *old_ud = c->pres_ud;
	int rc = 0;

	c->pres_fn = fn;
	c->pres_ud = ud;
	/* Connected: tell the router now; otherwise the next WELCOME does. */
	if (sb__client_welcomed(c) && (old != NULL) != (fn != NULL) &&
	    (rc = sb__client_send_subscribe(c, fn == NULL)) != 0) {
		c->pres_fn = old;
		c->pres_ud = old_ud;
	}
	return rc;
}
