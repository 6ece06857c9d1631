/* The routers a client connects to: cfg.routers ("HOST:PORT,...") parsed
 * once, or host and port alone, and which one each attempt takes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>

#include "client/client-int.h"

/* One "HOST:PORT" or "[V6]:PORT", spaces around it dropped. */
static int parse_one(const char *p, size_t len, struct sb__client_addr *a, char *why, size_t cap)
{
	const char *host, *colon, *end = p + len;
	size_t hlen;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	len = (size_t)(end - p);
	if (len == 0) {
		snprintf(why, cap, "routers: an empty address (HOST:PORT,HOST:PORT)");
		return SB_EINVAL;
	}
	if (len > SB__CLIENT_ADDR_MAX) {
		snprintf(why, cap, "routers: an address of %zu bytes (at most %u)", len,
			 SB__CLIENT_ADDR_MAX);
		return SB_EINVAL;
	}
	if (*p == '[') {
		const char *close = memchr(p, ']', len);
		if (close == NULL || close + 1 == end || close[1] != ':') {
			snprintf(why, cap, "routers: \"%.*s\": expected [ADDRESS]:PORT", (int)len,
				 p);
			return SB_EINVAL;
		}
		host = p + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = memchr(p, ':', len);
		if (colon == NULL || memchr(colon + 1, ':', (size_t)(end - colon - 1)) != NULL) {
			snprintf(why, cap,
				 "routers: \"%.*s\": expected HOST:PORT (an IPv6 address in "
				 "brackets: [::1]:7400)",
				 (int)len, p);
			return SB_EINVAL;
		}
		host = p;
		hlen = (size_t)(colon - p);
	}
	unsigned long port = 0;
	const char *d = colon + 1;
	for (; d < end && *d >= '0' && *d <= '9' && port <= 65535; d++)
		port = port * 10 + (unsigned long)(*d - '0');
	if (hlen == 0 || d != end || d == colon + 1 || port == 0 || port > 65535) {
		snprintf(why, cap, "routers: \"%.*s\": %s", (int)len, p,
			 hlen == 0 ? "no host" : "expected a port from 1 to 65535");
		return SB_EINVAL;
	}
	if ((a->host = strndup(host, hlen)) == NULL)
		return SB_ENOMEM;
	a->port = (uint16_t)port;
	snprintf(a->text, sizeof a->text, "%.*s", (int)len, p);
	return 0;
}

int sb__client_routers_parse(const char *list, struct sb__client_addr **out, unsigned *n, char *why,
			     size_t cap)
{
	struct sb__client_addr *a = NULL;
	unsigned count = 1;
	int rc = 0;

	*out = NULL;
	*n = 0;
	for (const char *p = list; *p != 0; p++)
		count += *p == ',';
	if (count > SB__CLIENT_ROUTERS_MAX) {
		snprintf(why, cap, "routers: %u addresses (at most %u)", count,
			 SB__CLIENT_ROUTERS_MAX);
		return SB_EINVAL;
	}
	if ((a = calloc(count, sizeof *a)) == NULL) {
		snprintf(why, cap, "out of memory");
		return SB_ENOMEM;
	}
	for (unsigned i = 0; i < count && rc == 0; i++) {
		size_t len = strcspn(list, ",");
		rc = parse_one(list, len, &a[i], why, cap);
		list += len + (list[len] == ',');
	}
	if (rc != 0) {
		sb__client_routers_free(a, count);
		return rc;
	}
	*out = a;
	*n = count;
	return 0;
}

void sb__client_routers_free(struct sb__client_addr *a, unsigned n)
{
	if (a == NULL)
		return;
	for (unsigned i = 0; i < n; i++)
		free(a[i].host);
	free(a);
}

void sb__client_routers_next(struct sb_client *c)
{
	/* The first attempt takes the first router; every later one the
	 * next, so a router that is gone costs one attempt per round. */
	if (c->addr_tried)
		c->addr_cur = (c->addr_cur + 1) % c->naddrs;
	c->addr_tried = 1;
}

const char *sb_client_router(const struct sb_client *c)
{
	return c->addrs[c->addr_cur].text;
}
