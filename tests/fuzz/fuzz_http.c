/* libFuzzer target for the HTTP edge's request parser: the first byte picks
 * the piece size the rest arrives in and the pipelining bound, and every
 * head is answered at once. The target aborts if a head's strings lie
 * outside the parser's block, if a path does not start with '/' (or is not
 * "*"), if the body handed out is not exactly Content-Length bytes, if a
 * refusal's status is not one the parser documents or its answer does not
 * fit in 1 KiB, or if a refused parser takes bytes again. The parser's
 * block is its own heap allocation, so ASan sees any read past it. */
#include <stdlib.h>
#include <string.h>

#include "router/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const struct sb__http *h, struct sb__http_str s)
{
	if (s.p == NULL) {
		if (s.len != 0)
			abort();
		return;
	}
	if (s.p < h->block || s.p + s.len > h->block + h->lim.head_max)
		abort();
}

static void check_head(const struct sb__http *h)
{
	const struct sb__http_req *r = sb__http_request(h);
	const struct sb__http_str all[] = {
		r->target, r->path,   r->query,   r->host,   r->content_type, r->authorization,
		r->cookie, r->origin, r->upgrade, r->ws_key, r->ws_version,   r->timeout};

	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		inside(h, all[i]);
	for (unsigned i = 0; i < r->n_accept; i++)
		inside(h, r->accept[i]);
	for (unsigned i = 0; i < r->n_ws_protocol; i++)
		inside(h, r->ws_protocol[i]);
	if (r->method < SB__HTTP_M_GET || r->method > SB__HTTP_M_PATCH || r->minor > 1)
		abort();
	if (r->path.len == 0 || (r->path.p[0] != '/' && !(r->path.len == 1 && r->path.p[0] == '*')))
		abort();
	if (r->content_length > h->lim.body_max || r->fields > h->lim.fields_max)
		abort();
	if (r->upgrade_websocket && !r->conn_upgrade)
		abort();
}

static void check_refusal(const struct sb__http *h)
{
	static const int statuses[] = {400, 411, 413, 414, 417, 431, 501, 505};
	char buf[1024];
	struct sb__http_out o;
	size_t i;

	for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (sb__http_status(h) == statuses[i])
			break;
	if (i == sizeof statuses / sizeof statuses[0] || sb__http_why(h)[0] == 0)
		abort();
	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_refusal(&o, h);
	if (sb__http_out_done(&o) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sb__http_limits lim = {512, 128, 8, 1, 256};
	struct sb__http h;

	if (size < 1)
		return 0;
	size_t piece = (size_t)(data[0] & 0x1f) + 1;
	lim.pipeline_max = (uint32_t)(data[0] >> 5) + 1;
	data++;
	size--;
	if (sb__http_init(&h, &lim) != 0)
		abort();
	uint64_t body = 0, want = 0;
	int in_request = 0;
	for (size_t off = 0; off < size;) {
		size_t n = size - off < piece ? size - off : piece;
		/* Each piece in a block of its own size: a read past it is seen. */
		uint8_t *p = malloc(n);
		if (p == NULL)
			abort();
		memcpy(p, data + off, n);
		size_t at = 0, used;
		struct sb__http_str b;
		enum sb__http_event ev;
		do {
			ev = sb__http_parse(&h, p + at, n - at, &used, &b);
			if (used > n - at)
				abort();
			at += used;
			switch (ev) {
			case SB__HTTP_HEAD:
				if (in_request)
					abort();
				check_head(&h);
				in_request = 1;
				body = 0;
				want = sb__http_request(&h)->content_length;
				break;
			case SB__HTTP_BODY:
				if (!in_request || b.p < (const char *)p ||
				    b.p + b.len > (const char *)p + n)
					abort();
				body += b.len;
				if (body > want)
					abort();
				break;
			case SB__HTTP_END:
				if (!in_request || body != want)
					abort();
				in_request = 0;
				sb__http_answered(&h);
				break;
			case SB__HTTP_ERROR:
				check_refusal(&h);
				if (used != 0 && at > n)
					abort();
				break;
			default:
				break;
			}
		} while (ev == SB__HTTP_HEAD || ev == SB__HTTP_BODY || ev == SB__HTTP_END);
		free(p);
		if (ev == SB__HTTP_WAIT || ev == SB__HTTP_ERROR) {
			size_t used2;
			struct sb__http_str b2;
			if (sb__http_parse(&h, data + off, size - off, &used2, &b2) != ev ||
			    used2 != 0)
				abort();
			break;
		}
		off += at;
	}
	sb__http_free(&h);
	return 0;
}
