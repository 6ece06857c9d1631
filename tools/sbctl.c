/* sbctl: send, request, listen and inspect a router from the shell, over the
 * client library. This file is the command line: flags, commands, help;
 * the commands live in sbctl_call.c, sbctl_listen.c and sbctl_tables.c, the
 * connection and printing in sbctl_conn.c. Payloads are JSON (tools/json.c). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/json.h"
#include "sbctl.h"

/* getopt values of the TLS flags: past every letter, so none collides. */
enum {
	OPT_TLS = 256,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_NAME,
	OPT_STR,
	OPT_WAIT,
	OPT_HEADER
};

static const struct command *find_command(const char *name);

static const char global_options[] =
	"Options (before or after the command):\n"
	"  --router HOST:PORT    the router (default 127.0.0.1:7400); several, comma-\n"
	"                        separated, are tried in turn (routers of a cluster)\n"
	"  --name NAME           peer name to ask for (default: the router assigns one)\n"
	"  --json                machine output: one JSON object per line\n"
	"  --connect-timeout MS  how long to wait for the router (default 2000)\n"
	"  --wait                retry a router that cannot be reached (refused,\n"
	"                        unknown host, TLS failure) until --connect-timeout;\n"
	"                        without it the first failure exits 3 at once\n"
	"  --secret-file FILE    the shared secret of our role, for a router that\n"
	"                        asks for one (default: $SB_SECRET, else none)\n"
	"  --tls                 connect with TLS 1.3, verifying the router's certificate\n"
	"  --tls-ca FILE         PEM CA the router's certificate must be signed by\n"
	"                        (default: the system's CA certificates)\n"
	"  --tls-server-name N   name the certificate must carry (default: the host)\n"
	"  --tls-cert FILE       PEM client certificate, for routers that require one\n"
	"  --tls-key FILE        its PEM key (default: in the --tls-cert file)\n"
	"                        (each --tls-* flag implies --tls)\n"
	"  --help                this text; after a command, that command's\n"
	"  --version             print the version and exit\n";

static const char exit_codes[] =
	"Exit codes:\n"
	"  0  ok\n"
	"  1  the request ended in an error reply, a timeout or no handler\n"
	"     (stderr says which), or the connection was lost; with --all,\n"
	"     also when any peer's result was an error\n"
	"  2  usage error or invalid JSON\n"
	"  3  cannot connect to the router (stderr says why), or it refused us\n";

static void usage(FILE *out);

/* ---- small helpers -------------------------------------------------------- */

/* Parses a decimal in [lo, hi] or exits with a message naming the flag. */
unsigned long number(const char *flag, const char *s, unsigned long lo, unsigned long hi)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != 0 || *s == '-' || *s == 0 || v < lo || v > hi) {
		fprintf(stderr, "sbctl: --%s %s: expected a number from %lu to %lu\n", flag, s, lo,
			hi);
		exit(EXIT_USAGE);
	}
	return v;
}

/* The rules the router applies to a peer name, through the codec. */
static int peer_name_ok(const char *name)
{
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	m.peer = (struct sb_view){(const uint8_t *)name, (uint32_t)strlen(name)};
	m.role = (struct sb_view){(const uint8_t *)"client", 6};
	return sb_encoded_size(&m) > 0;
}

/* A broadcast's peer selector, as the router reads one (docs/protocol.md). */
static int selector_ok(const char *sel)
{
	const char *star = strchr(sel, '*');
	if (sel[0] == '@')
		return strcmp(sel, "@client") == 0 || strcmp(sel, "@service") == 0;
	return peer_name_ok(sel) && (star == NULL || star[1] == 0);
}

/* A secret file holds the secret and perhaps a newline after it; it is read
 * from a file (or the environment) so it never shows in a process list. */
static const char *read_secret(const char *path)
{
	static char buf[4097];
	FILE *f = fopen(path, "r");
	size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;

	if (f == NULL || ferror(f) || !feof(f) || n == 0) {
		fprintf(stderr, "sbctl: --secret-file %s: %s\n", path,
			f == NULL ? strerror(errno)
			: n == 0  ? "the file is empty"
				  : "cannot read it whole (4096 bytes at most)");
		if (f != NULL)
			fclose(f);
		exit(EXIT_USAGE);
	}
	fclose(f);
	if (buf[n - 1] == '\n')
		n -= 1 + (n > 1 && buf[n - 2] == '\r');
	buf[n] = 0;
	if (n == 0 || strlen(buf) != n) {
		fprintf(stderr, "sbctl: --secret-file %s: %s\n", path,
			n == 0 ? "the file is empty" : "the secret contains a NUL byte");
		exit(EXIT_USAGE);
	}
	return buf;
}

/* --router a:1,b:2: the library checks each address when it is given
 * them; kept here are how many and the last (a round of attempts ends
 * with it). */
static void parse_router(struct opts *o, const char *s)
{
	const char *last = strrchr(s, ',');

	last = last != NULL ? last + 1 : s;
	while (*last == ' ' || *last == '\t')
		last++;
	o->routers = s;
	o->nrouters = 1;
	for (const char *p = s; *p != 0; p++)
		o->nrouters += *p == ',';
	snprintf(o->last, sizeof o->last, "%s", last);
	for (size_t n = strlen(o->last);
	     n > 0 && (o->last[n - 1] == ' ' || o->last[n - 1] == '\t');)
		o->last[--n] = 0;
}

/* The JSON text of a payload, or a note when it cannot be printed (the
 * library has checked it is one MessagePack value, so only depth fails). */

/* ---- help ----------------------------------------------------------------- */

static void command_help(FILE *out, const struct command *cmd)
{
	fprintf(out, "usage: sbctl [OPTIONS] %s\n\n%s\n%s\n%s", cmd->usage, cmd->help,
		global_options, exit_codes);
}

static int cmd_help(const struct opts *o, char **args, int nargs)
{
	(void)o;
	if (nargs == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	const struct command *cmd = find_command(args[0]);
	if (cmd == NULL) {
		fprintf(stderr, "sbctl: unknown command %s (sbctl help lists them)\n", args[0]);
		return EXIT_USAGE;
	}
	command_help(stdout, cmd);
	return EXIT_OK;
}

static const struct command commands[] = {
	{"send", F_TO | F_ALL | F_PEERS | F_STR | F_HEADER, 1, 2,
	 "send NAME [PAYLOAD] [--str] [--header K=V]... [--to PEER | --all | --peers SEL]",
	 "send a message, fire-and-forget",
	 "Sends a message to one handler of NAME; nothing comes back. PAYLOAD is\n"
	 "JSON (omitted: null), or @FILE / @- to read it from a file / stdin. Prints\n"
	 "nothing ({\"sent\":true} with --json) once the message is written to the\n"
	 "router; whether a handler took it is not reported.\n"
	 "\n"
	 "  --str                 PAYLOAD (or the file's bytes) is a string, not JSON\n"
	 "  --header KEY=VALUE    a header beside the payload (repeat: up to 16;\n"
	 "                        docs/protocol.md, \"Headers\")\n"
	 "  --to PEER             to the peer named PEER instead (its handler for NAME\n"
	 "                        or its catch-all)\n"
	 "  --all                 to every handler of NAME\n"
	 "  --peers SEL           to every connected peer SEL picks: @client, @service,\n"
	 "                        or a peer name pattern (agent-*, * for all)\n",
	 cmd_send},
	{"request", F_TIMEOUT | F_TO | F_ALL | F_PEERS | F_STR | F_HEADER, 1, 2,
	 "request NAME [PAYLOAD] [--str] [--header K=V]... [--timeout MS] [--to PEER | --all | "
	 "--peers SEL]",
	 "send a request and print every reply",
	 "Sends a request to NAME and prints each reply as it arrives. PAYLOAD is\n"
	 "as for send: JSON, @FILE or @- (stdin), a string with --str.\n"
	 "  OUTCOME  PAYLOAD                       the final reply\n"
	 "  OUTCOME  PAYLOAD  (more: progress)     a progress update\n"
	 "  OUTCOME  PAYLOAD  (more: chunk)        a stream chunk\n"
	 "With --json, one object per line: {\"outcome\":...,\"more\":bool,\"payload\":...}.\n"
	 "An error prints \"error: TEXT (code NAME)\" on stderr (and with --json\n"
	 "{\"error\":NAME,\"code\":N,\"text\":TEXT} on stdout) and exits 1.\n"
	 "\n"
	 "With --all, every handler of NAME answers (with --peers SEL, every\n"
	 "connected peer SEL picks, one without a handler as an error); each\n"
	 "result, as it arrives:\n"
	 "  PEER  OUTCOME  PAYLOAD                 a peer's reply\n"
	 "  PEER  OUTCOME  PAYLOAD  (more: chunk)  a chunk of a peer's stream\n"
	 "  PEER  error: TEXT (code NAME)          a peer's error, timeout, or loss\n"
	 "then the tally:\n"
	 "  all: N peers, N ok, N errors, N timeouts, N gone\n"
	 "With --json: {\"peer\":...,\"outcome\":...,\"more\":bool,\"payload\":...},\n"
	 "{\"peer\":...,\"error\":NAME,\"code\":N,\"text\":...}, then {\"all\":{\"peers\":N,\n"
	 "\"ok\":N,\"errors\":N,\"timeouts\":N,\"gone\":N}}. Exits 1 if any peer failed.\n"
	 "\n"
	 "  --str                 PAYLOAD (or the file's bytes) is a string, not JSON\n"
	 "  --header KEY=VALUE    a header beside the payload (repeat: up to 16)\n"
	 "  --timeout MS          the request's timeout (default: the router's, 30 s);\n"
	 "                        with --all, every peer's\n"
	 "  --to PEER             ask the peer named PEER (its handler for NAME or its\n"
	 "                        catch-all)\n"
	 "  --all                 ask every handler of NAME\n"
	 "  --peers SEL           ask every connected peer SEL picks: @client, @service,\n"
	 "                        or a peer name pattern (agent-*, * for all)\n",
	 cmd_request},
	{"listen", F_ECHO | F_COUNT | F_SCHEMA, 1, 1,
	 "listen NAME [--echo] [--count N] [--schema JSON]",
	 "handle NAME: print what arrives and reply",
	 "Registers a handler for NAME and prints each message that arrives:\n"
	 "  send  NAME  PAYLOAD       or     request  NAME  PAYLOAD\n"
	 "followed, when the message has headers, by two spaces and the headers as\n"
	 "a JSON object ({\"traceparent\":\"00-...\"}). With --json:\n"
	 "{\"name\":...,\"request\":bool,\"payload\":...}, and \"headers\":{...} when the\n"
	 "message has headers. Requests are\n"
	 "answered with outcome \"ok\" and a null payload. Prints \"sbctl: listening\n"
	 "on NAME\" on stderr once registered; SIGINT or SIGTERM stops it (exit 0).\n"
	 "\n"
	 "  --echo                reply with outcome \"echo\" and the same payload\n"
	 "  --count N             exit after N messages\n"
	 "  --schema JSON         register with this argument schema, a JSON Schema\n"
	 "                        document: the router refuses requests that break it\n"
	 "                        (\"invalid arguments\", naming the path) before they\n"
	 "                        arrive, e.g. '{\"type\": \"object\", \"required\": [\"email\"],\n"
	 "                          \"properties\": {\"email\": {\"type\": \"string\"}}}'\n"
	 "                        (keywords: docs/protocol.md, \"Argument schemas\")\n",
	 cmd_listen},
	{"presence", F_COUNT, 0, 0, "presence [--count N]", "print peers as they come and go",
	 "Subscribes to the router's presence events and prints one line each:\n"
	 "  EVENT  PEER  ID  ROLE [SUBJECT]\n"
	 "EVENT is connected, draining (the peer said goodbye) or disconnected;\n"
	 "SUBJECT is the peer's certificate subject under TLS. With --json:\n"
	 "{\"event\":...,\"peer\":...,\"id\":N,\"role\":...[,\"subject\":...]}. Prints\n"
	 "\"sbctl: watching presence\" on stderr once subscribed; SIGINT or SIGTERM\n"
	 "stops it (exit 0). Peers already connected are not listed: see peers.\n"
	 "\n"
	 "  --count N             exit after N events\n",
	 cmd_presence},
	{"routes", F_TIMEOUT, 0, 0, "routes [--timeout MS]",
	 "the router's names and their handlers",
	 "Asks the router ($sb.routes) for every name and its handlers; prints a\n"
	 "table NAME PEER SHARD (a name with several handlers takes several rows).\n"
	 "With --json, the reply itself: [{\"name\":...,\"handlers\":[{\"peer\":...,\n"
	 "\"shard\":N}]}].\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's)\n",
	 cmd_routes},
	{"peers", F_TIMEOUT, 0, 0, "peers [--timeout MS]", "the peers connected to the router",
	 "Asks the router ($sb.peers) for its connected peers; prints a table\n"
	 "PEER ID ROLE SHARD. With --json, the reply itself:\n"
	 "[{\"peer\":...,\"id\":N,\"role\":...,\"shard\":N}].\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's)\n",
	 cmd_peers},
	{"stats", F_TIMEOUT, 0, 0, "stats [--timeout MS]",
	 "the router's counters, per shard and per route",
	 "Asks the router ($sb.stats) for its counters; prints COUNTER VALUE rows,\n"
	 "a table SHARD CONNECTIONS INFLIGHT, and a table of every route with its\n"
	 "requests, sends, replies, errors, timeouts and latency percentiles (us,\n"
	 "request to final answer). The router lists routes a page at a time;\n"
	 "every page is fetched. With --json, the reply with every page's routes:\n"
	 "{\"COUNTER\":N,...,\"shards\":[{\"shard\":N,\"connections\":N,\"inflight\":N}],\n"
	 "\"routes\":[{\"name\":...,\"requests\":N,...,\"p99_us\":N}],\"routes_more\":false}.\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's)\n",
	 cmd_stats},
	{"help", 0, 0, 1, "help [COMMAND]", "this text, or a command's",
	 "Prints the list of commands, or COMMAND's flags and output.\n", cmd_help},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: sbctl [OPTIONS] COMMAND [ARGS]\n"
		     "\n"
		     "Talks to a Switchboard router: sends, requests (to one handler, one\n"
		     "peer by name, or every handler), listens, watches peers come and go,\n"
		     "and shows its routes, peers and counters. Payloads are JSON.\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strlen(commands[i].usage) <= 38)
			fprintf(out, "  %-38s %s\n", commands[i].usage, commands[i].summary);
		else /* the summary goes under it, in its column */
			fprintf(out, "  %s\n  %-38s %s\n", commands[i].usage, "",
				commands[i].summary);
	fprintf(out,
		"\n%s\n"
		"JSON: objects, arrays, strings, integers (int64/uint64), floats,\n"
		"true/false/null. MessagePack bin prints as {\"$bin\":\"<hex>\"}. A payload\n"
		"is always JSON: 5 is the integer 5; the string is '\"5\"' or --str 5.\n"
		"@FILE and @- read it from a file or stdin (no size limit of the shell).\n"
		"A JSON argument that starts with '-' goes after \"--\": sbctl send n -- -5\n"
		"\n%s",
		global_options, exit_codes);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"router", required_argument, NULL, 'r'},
		{"name", required_argument, NULL, 'n'},
		{"json", no_argument, NULL, 'j'},
		{"connect-timeout", required_argument, NULL, 'C'},
		{"secret-file", required_argument, NULL, 'S'},
		{"timeout", required_argument, NULL, 't'},
		{"echo", no_argument, NULL, 'e'},
		{"count", required_argument, NULL, 'c'},
		{"to", required_argument, NULL, 'T'},
		{"all", no_argument, NULL, 'A'},
		{"peers", required_argument, NULL, 'P'},
		{"schema", required_argument, NULL, 's'},
		{"str", no_argument, NULL, OPT_STR},
		{"header", required_argument, NULL, OPT_HEADER},
		{"wait", no_argument, NULL, OPT_WAIT},
		{"tls", no_argument, NULL, OPT_TLS},
		{"tls-ca", required_argument, NULL, OPT_TLS_CA},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{"tls-server-name", required_argument, NULL, OPT_TLS_NAME},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.connect_ms = 2000};
	int help = 0, opt;

	/* A test hook: the router's own names cannot be served by a stand-in,
	 * so tests of the table layout point sbctl at other names. */
	o.admin = getenv("SBCTL_TEST_ADMIN_PREFIX") ? getenv("SBCTL_TEST_ADMIN_PREFIX") : "$sb.";
	parse_router(&o, "127.0.0.1:7400");
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			parse_router(&o, optarg);
			break;
		case 'n':
			o.name = optarg;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'C':
			o.connect_ms = (unsigned)number("connect-timeout", optarg, 1, 3600000);
			break;
		case 'S':
			o.secret = read_secret(optarg);
			break;
		case 't':
			o.timeout_ms = (uint32_t)number("timeout", optarg, 1, 3600000);
			o.given |= F_TIMEOUT;
			break;
		case 'e':
			o.echo = 1;
			o.given |= F_ECHO;
			break;
		case 'c':
			o.count = number("count", optarg, 1, ULONG_MAX);
			o.given |= F_COUNT;
			break;
		case 'T':
			o.to = optarg;
			o.given |= F_TO;
			break;
		case 'A':
			o.all = 1;
			o.given |= F_ALL;
			break;
		case 'P':
			o.peers = optarg;
			o.given |= F_PEERS;
			break;
		case 's':
			o.schema = optarg;
			o.given |= F_SCHEMA;
			break;
		case OPT_STR:
			o.str = 1;
			o.given |= F_STR;
			break;
		case OPT_WAIT:
			o.wait = 1;
			break;
		case OPT_HEADER: {
			char *eq = strchr(optarg, '=');
			if (eq == NULL || eq == optarg) {
				fprintf(stderr, "sbctl: --header %s: not KEY=VALUE\n", optarg);
				return EXIT_USAGE;
			}
			if (o.nheaders == SB_HEADERS_COUNT_MAX) {
				fprintf(stderr, "sbctl: --header: at most %u headers\n",
					SB_HEADERS_COUNT_MAX);
				return EXIT_USAGE;
			}
			*eq = 0; /* the key ends there; argv is ours to cut */
			o.headers[o.nheaders++] = (struct sb_header){optarg, eq + 1};
			o.given |= F_HEADER;
			break;
		}
		case OPT_TLS:
			o.tls = 1;
			break;
		case OPT_TLS_CA:
			o.tls = 1;
			o.tls_ca = optarg;
			break;
		case OPT_TLS_CERT:
			o.tls = 1;
			o.tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			o.tls = 1;
			o.tls_key = optarg;
			break;
		case OPT_TLS_NAME:
			o.tls = 1;
			o.tls_server_name = optarg;
			break;
		case 'h':
			help = 1;
			break;
		case 'V':
			printf("sbctl %s (protocol 1)\n", SB_VERSION_STRING);
			return EXIT_OK;
		case ':':
			fprintf(stderr, "sbctl: %s needs a value\n", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "sbctl: unknown option %s (sbctl help lists them)\n",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (o.secret == NULL && getenv("SB_SECRET") != NULL && getenv("SB_SECRET")[0] != 0)
		o.secret = getenv("SB_SECRET");
	if (o.secret != NULL && strlen(o.secret) > 4096) {
		fprintf(stderr, "sbctl: SB_SECRET: longer than 4096 bytes\n");
		return EXIT_USAGE;
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	if (nargs == 0) {
		usage(help ? stdout : stderr);
		return help ? EXIT_OK : EXIT_USAGE;
	}
	const struct command *cmd = find_command(args[0]);
	if (cmd == NULL) {
		fprintf(stderr, "sbctl: unknown command %s (sbctl help lists them)\n", args[0]);
		return EXIT_USAGE;
	}
	if (help) {
		command_help(stdout, cmd);
		return EXIT_OK;
	}
	args++;
	nargs--;
	if (o.given & ~cmd->flags) {
		unsigned bad = o.given & ~cmd->flags;
		fprintf(stderr, "sbctl: %s does not take %s (sbctl %s --help)\n", cmd->name,
			bad & F_TIMEOUT  ? "--timeout"
			: bad & F_ECHO   ? "--echo"
			: bad & F_COUNT  ? "--count"
			: bad & F_TO     ? "--to"
			: bad & F_ALL    ? "--all"
			: bad & F_STR    ? "--str"
			: bad & F_PEERS  ? "--peers"
			: bad & F_HEADER ? "--header"
					 : "--schema",
			cmd->name);
		return EXIT_USAGE;
	}
	if (o.to != NULL && o.all) {
		fprintf(stderr, "sbctl: --to and --all exclude each other: one peer, or all of "
				"them\n");
		return EXIT_USAGE;
	}
	if (o.peers != NULL && (o.to != NULL || o.all)) {
		fprintf(stderr, "sbctl: --peers excludes --to and --all: peers, one peer, or "
				"handlers\n");
		return EXIT_USAGE;
	}
	if (o.peers != NULL && !selector_ok(o.peers)) {
		fprintf(stderr,
			"sbctl: --peers %s: not a selector (@client, @service, or a peer name "
			"pattern with * only at its end)\n",
			o.peers);
		return EXIT_USAGE;
	}
	o.all |= o.peers != NULL; /* its results are a broadcast's */
	if (o.to != NULL && !peer_name_ok(o.to)) {
		fprintf(stderr, "sbctl: --to %s: not a valid peer name\n", o.to);
		return EXIT_USAGE;
	}
	uint8_t hmap[SB_HEADERS_MAX];
	long hn = o.nheaders > 0 ? sb_headers_encode(o.headers, o.nheaders, hmap, sizeof hmap) : 0;
	if (hn < 0) {
		fprintf(stderr, "sbctl: --header: %s\n",
			hn == SB_ETOOLARGE ? "too long (a key up to 64 bytes, a value up to 256, "
					     "1 KiB in all)"
					   : "a key twice, or a key with a space or a control "
					     "character, or a value with a control character");
		return EXIT_USAGE;
	}
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "usage: sbctl [OPTIONS] %s\n", cmd->usage);
		return EXIT_USAGE;
	}
	return cmd->run(&o, args, nargs);
}
