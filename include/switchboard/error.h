/* Switchboard error codes: one enum for the library, the wire and the client.
 * Every function that can fail returns one of these (negative) or >= 0. */
#ifndef SWITCHBOARD_ERROR_H
#define SWITCHBOARD_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Codes -1 .. -63 travel on the wire: an ERROR frame carries the positive
 * value (SB_ETIMEOUT is sent as 2). Codes from -100 down are local to one
 * process and never sent. The numbers are part of the protocol: never
 * renumber, only append. */
enum sb_err {
	SB_OK = 0,
	SB_ENOHANDLER = -1,    /* no handler is registered for the name */
	SB_ETIMEOUT = -2,      /* the request's timeout expired */
	SB_EUNKNOWNPEER = -3,  /* no peer of that name was ever seen */
	SB_ENOTCONNECTED = -4, /* the peer is known but not connected */
	SB_EPEERGONE = -5,     /* the handling peer went away mid-request */
	SB_EOFFLINE = -6,      /* client side: not connected to a router */
	SB_EUNAUTHORIZED = -7, /* authentication missing or wrong */
	SB_EFORBIDDEN = -8,    /* authenticated, but not allowed to do this */
	SB_EINVAL = -9,        /* invalid arguments */
	SB_ETOOLARGE = -10,    /* a frame, name or field is over its limit */
	SB_EOVERLOADED = -11,  /* a queue or in-flight limit is full; retry later */
	SB_EBADFRAME = -12,    /* the bytes are not a valid frame */
	SB_EDUPNAME = -13,     /* the peer name is already taken */
	SB_ECANCELLED = -14,   /* the requester cancelled the request */
	SB_EUNSUPPORTED = -15, /* unknown message kind or protocol version */
	SB_ENOPEERS = -16,     /* broadcast: no connected peer handles the name */
	SB_EDRAINING = -17,    /* the router is shutting down; no new requests */
	SB_EINTERNAL = -18,    /* a bug or resource failure inside the router */
	SB_EAPP = -19,         /* a handler failed with an application code (a string,
				  struct sb_reply.app_code); never the router's own */

	SB_ENOMEM = -100, /* an allocation failed */
	SB_ENOSPC = -101, /* the caller's buffer is too small */
	SB_ESYS = -102,   /* a system call failed; errno says why */
};

/* Largest code that may appear on the wire (as its positive value). */
#define SB_WIRE_CODE_MAX 63

/**
 * Human-readable text for an error code ("no handler", "timeout", ...).
 * @param err  a value of enum sb_err, negative or zero
 * @return a static string; "unknown error" for codes we do not define
 */
const char *sb_strerror(int err);

/**
 * Short stable identifier for an error code ("ENOHANDLER"), for logs and JSON.
 * @return a static string; "EUNKNOWN" for codes we do not define
 */
const char *sb_errname(int err);

#ifdef __cplusplus
}
#endif
#endif
