/* sb-golden: decodes frames given as hex lines on stdin and prints, per line,
 * a JSON object with every element in wire order and our re-encoding.
 * check_golden.py compares that with what python3-msgpack built. In
 * `schema` mode each line is a schema and a payload in hex, and the answer
 * is what the router's schema check says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "proto/schema.h"

/* Element order per kind, after kind, flags, id and before the payload,
 * transcribed from docs/protocol.md (not from the codec's tables, so a
 * reordering in either shows up here). */
enum el {
	E_END,
	E_VERSION,
	E_PEER,
	E_ROLE,
	E_NONCE,
	E_MECH,
	E_PROOF,
	E_PEER_ID,
	E_MAX_FRAME,
	E_NAME,
	E_TO,
	E_FROM,
	E_TIMEOUT,
	E_OUTCOME,
	E_CODE,
	E_TEXT,
	E_EVENT,
	E_DEADLINE
};

static const enum el order[SB_KIND_MAX + 1][5] = {
	[SB_HELLO] = {E_VERSION, E_PEER, E_ROLE},
	[SB_CHALLENGE] = {E_NONCE, E_MECH},
	[SB_AUTH] = {E_NONCE, E_PROOF},
	[SB_WELCOME] = {E_VERSION, E_PEER, E_PEER_ID, E_MAX_FRAME},
	[SB_REGISTER] = {E_NAME},
	[SB_UNREGISTER] = {E_NAME},
	[SB_SEND] = {E_NAME, E_TO, E_FROM},
	[SB_REQUEST] = {E_NAME, E_TO, E_FROM, E_TIMEOUT},
	[SB_REPLY] = {E_OUTCOME, E_PEER},
	[SB_ERROR] = {E_CODE, E_TEXT, E_PEER},
	[SB_SUBSCRIBE] = {E_NAME},
	[SB_PRESENCE] = {E_EVENT, E_PEER, E_PEER_ID},
	[SB_GOODBYE] = {E_TEXT, E_DEADLINE},
};

static void hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static void json_str(struct sb_view v)
{
	if (v.ptr == NULL) {
		printf("null");
		return;
	}
	putchar('"');
	for (uint32_t i = 0; i < v.len; i++) {
		uint8_t c = v.ptr[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_bin(struct sb_view v)
{
	printf("{\"bin\":\"");
	hex(v.ptr, v.len);
	printf("\"}");
}

static void element(const struct sb_msg *m, enum el e)
{
	switch (e) {
	case E_VERSION:
		printf("%u", m->version);
		break;
	case E_PEER:
		json_str(m->peer);
		break;
	case E_ROLE:
		json_str(m->role);
		break;
	case E_NONCE:
		json_bin(m->nonce);
		break;
	case E_MECH:
		json_str(m->mech);
		break;
	case E_PROOF:
		json_bin(m->proof);
		break;
	case E_PEER_ID:
		printf("%u", m->peer_id);
		break;
	case E_MAX_FRAME:
		printf("%u", m->max_frame);
		break;
	case E_NAME:
		json_str(m->name);
		break;
	case E_TO:
		json_str(m->to);
		break;
	case E_FROM:
		printf("%u", m->from);
		break;
	case E_TIMEOUT:
		printf("%u", m->timeout_ms);
		break;
	case E_OUTCOME:
		json_str(m->outcome);
		break;
	case E_CODE:
		printf("%u", m->code);
		break;
	case E_TEXT:
		json_str(m->text);
		break;
	case E_EVENT:
		printf("%u", m->event);
		break;
	case E_DEADLINE:
		printf("%u", m->deadline_ms);
		break;
	case E_END:
		break;
	}
}

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
	size_t len = strlen(s);
	if (len % 2 != 0 || len / 2 > cap)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	*n = len / 2;
	return 0;
}

static void one(const uint8_t *frame, size_t len)
{
	static uint8_t again[1 << 20];
	struct sb_msg m;
	struct sb_fault_info fi;
	int rc = sb_decode(frame, len, SB_DECODE_PAYLOAD, &m, &fi);

	if (rc != 0) {
		printf("{\"ok\":false,\"code\":\"%s\",\"fault\":\"%s\",\"field\":%u}\n",
		       sb_errname(rc), sb_fault_name(fi.fault), fi.field);
		return;
	}
	printf("{\"ok\":true,\"fields\":[%u,%u,%llu", m.kind, m.flags, (unsigned long long)m.id);
	for (int i = 0; i < 5 && order[m.kind][i] != E_END; i++) {
		putchar(',');
		element(&m, order[m.kind][i]);
	}
	if (m.kind == SB_ERROR && (m.flags & SB_F_APP)) { /* the element APP adds */
		putchar(',');
		json_str(m.app_code);
	}
	if ((m.kind == SB_SEND || m.kind == SB_REQUEST) && (m.flags & SB_F_HEADERS)) {
		struct sb_view k, v; /* the element HEADERS adds, as a JSON object */
		size_t pos = 0;
		printf(",{");
		while (sb_headers_next(m.headers, &pos, &k, &v)) {
			if (pos > 1)
				putchar(',');
			json_str(k);
			putchar(':');
			json_str(v);
		}
		putchar('}');
	}
	printf("],\"payload\":\"");
	hex(m.payload.ptr, m.payload.len);
	printf("\",\"reencoded\":\"");
	long n = sb_encode(&m, again, sizeof again);
	if (n > 0)
		hex(again, (size_t)n);
	printf("\"}\n");
}

/* "SCHEMA PAYLOAD" in hex -> {"compiled": bool, "why": str}, where why is
 * the compiler's refusal, or else the check's verdict ("" if it fits). */
static void schema_line(char *line)
{
	static uint8_t schema[1 << 16], payload[1 << 16];
	size_t sn, pn;
	char why[1100];
	struct sb__schema *s;
	char *sp = strchr(line, ' ');

	if (sp == NULL)
		sp = line + strlen(line);
	else
		*sp++ = 0;
	if (unhex(line, schema, sizeof schema, &sn) != 0 ||
	    unhex(sp, payload, sizeof payload, &pn) != 0) {
		printf("{\"compiled\":false,\"why\":\"not hex\"}\n");
		return;
	}
	int rc = sb__schema_compile(schema, sn, &s, why, sizeof why);
	if (rc == 0) {
		if (s != NULL && sb__schema_check(s, payload, pn, why, sizeof why) == 0)
			why[0] = 0;
		sb__schema_unref(s);
	}
	printf("{\"compiled\":%s,\"why\":", rc == 0 ? "true" : "false");
	json_str((struct sb_view){(const uint8_t *)why, (uint32_t)strlen(why)});
	printf("}\n");
}

int main(int argc, char **argv)
{
	static char line[1 << 21];
	static uint8_t frame[1 << 20];

	if (argc == 2 && strcmp(argv[1], "schema") == 0) {
		while (fgets(line, sizeof line, stdin) != NULL) {
			line[strcspn(line, "\r\n")] = 0;
			schema_line(line);
		}
		return 0;
	}
	if (argc != 2 || strcmp(argv[1], "decode") != 0) {
		fprintf(stderr, "usage: sb-golden decode|schema < hex-lines\n");
		return 2;
	}
	while (fgets(line, sizeof line, stdin) != NULL) {
		size_t n;
		line[strcspn(line, "\r\n")] = 0;
		if (unhex(line, frame, sizeof frame, &n) != 0) {
			printf("{\"ok\":false,\"code\":\"input\",\"fault\":\"not "
			       "hex\",\"field\":0}\n");
			continue;
		}
		one(frame, n);
	}
	return 0;
}
