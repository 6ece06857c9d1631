/* The peer directory's records: the router-wide table of names, a shard's
 * replica, and what a connection keeps for presence and identity. Types
 * only; peers.h has what uses them. */
#ifndef SB_CORE_PEERS_T_H
#define SB_CORE_PEERS_T_H

#include <stdint.h>

#include <switchboard/proto.h>

#include "common/buf.h"
#include "common/idmap.h"
#include "common/list.h"

#define SB__TOMBS_MAX 65536u /* names of gone peers remembered, oldest evicted first */
/* Identities a connection is told before the router forgets them all
 * (docs/protocol.md, PRESENCE). */
#define SB__TOLD_MAX        1024u
#define SB__PATTERN_DEFAULT "P####"
/* A resume token's bytes: 128 random bits (docs/protocol.md, WELCOME). */
#define SB__RESUME_LEN 16u

/* A peer as the router-wide table or a shard's replica knows it. */
struct sb__peer {
	uint64_t ep;           /* its connection; 0 in the router-wide table once gone */
	uint32_t peer_id;      /* what it is known by in `from`; never reused */
	uint32_t hash;         /* of the name */
	uint8_t service;       /* role "service" */
	uint8_t draining;      /* it said GOODBYE */
	struct sb__link link;  /* router-wide table: on the tombstone list while gone;
				  replicas: on the list of every record */
	struct sb__buf *ident; /* replicas: its encoded identity event, shared by every tell */
	uint32_t ident_len;    /* that frame's bytes */
	char *subject;         /* certificate subject (TLS), or NULL */
	uint8_t *claims;       /* its bearer token's claims, one MessagePack map, or NULL */
	uint32_t claims_len;   /* ... its bytes */
	uint32_t len;          /* name bytes */
	char name[SB_PEER_MAX + 1];
	/* Router-wide table only: the holder's resume token, and once it is
	 * gone, until when (sb__now_ms()) its name is kept for whoever shows
	 * that token; 0 = the name is free. */
	uint8_t token[SB__RESUME_LEN];
	uint64_t held_until;
	uint8_t tokened; /* token is its holder's: the router gave the name (from the
			    pattern) or its holder showed a resume token for it;
			    only such a name is held */
};

/* Name -> peer, open addressing. */
struct sb__peermap {
	struct sb__peer **slots; /* NULL = empty */
	uint32_t mask;
	uint32_t count;
};

/* The router-wide table, under the router's names_lock. It keeps the names
 * of peers that left (tombstones), so a `to` naming one can be told apart
 * from a name nobody ever had; past SB__TOMBS_MAX the oldest is forgotten. */
struct sb__dir {
	struct sb__peermap names;
	struct sb__link tombs; /* gone peers, oldest first */
	uint32_t ntombs;
	uint32_t counter;  /* the number in the next assigned name */
	char *pattern;     /* naming pattern of assigned names: one run of '#' */
	uint32_t next_id;  /* the next peer_id: handed out with the name, so a later
			      holder of a name always has the larger id */
	uint32_t grace_ms; /* how long a gone peer's name is held for its token; 0 = not */
};

/* One shard's replica of the connected peers, and its presence subscribers. */
struct sb__replica {
	struct sb__link all;      /* every record (names has the newest holder of each) */
	struct sb__peermap names; /* the newest holder of each name */
	struct sb__idmap by_id;   /* peer_id -> struct sb__peer * */
	struct sb__idmap by_ep;   /* connection -> struct sb__peer * */
	uint64_t *subs;           /* this shard's connections subscribed to presence */
	uint32_t nsubs, subs_cap;
};

/* What a connection keeps for the peer directory. */
struct sb__conn_peer {
	struct sb__idmap told;          /* peer ids it has had an identity event for */
	uint32_t told_last;             /* the last sender checked: most frames repeat it */
	uint8_t presence;               /* subscribed to presence events */
	char *subject;                  /* certificate subject, set (by TLS) before HELLO ends */
	uint8_t *claims;                /* a verified token's claims (MessagePack map), or NULL */
	uint32_t claims_len;            /* ... its bytes */
	uint8_t resume[SB__RESUME_LEN]; /* the resume token its HELLO showed, if has_resume */
	uint8_t has_resume;
	uint8_t token[SB__RESUME_LEN]; /* the resume token its WELCOME gives, if has_token */
	uint8_t has_token;
	uint8_t pattern; /* the name it asks for is the pattern's (the cluster's pick) */
};

/* A connected peer, as $sb.peers lists it. */
struct sb__peer_info {
	char name[SB_PEER_MAX + 1];
	uint64_t ep;
	uint32_t peer_id;
	uint8_t service;
	char *subject;       /* its identity's subject (a copy), or NULL */
	uint8_t *claims;     /* its identity's claims (a copy, one MessagePack map), or NULL */
	uint32_t claims_len; /* ... their bytes */
};

#endif
