/* Text for every error code; the table is indexed by the negated code. */
#include <stddef.h>

#include <switchboard/error.h>

struct err_text {
	const char *name; /* stable identifier for logs and JSON */
	const char *text; /* what a person reads */
};

static const struct err_text wire[] = {
	[0] = {"OK", "ok"},
	[-SB_ENOHANDLER] = {"ENOHANDLER", "no handler"},
	[-SB_ETIMEOUT] = {"ETIMEOUT", "timeout"},
	[-SB_EUNKNOWNPEER] = {"EUNKNOWNPEER", "unknown peer"},
	[-SB_ENOTCONNECTED] = {"ENOTCONNECTED", "peer not connected"},
	[-SB_EPEERGONE] = {"EPEERGONE", "peer gone"},
	[-SB_EOFFLINE] = {"EOFFLINE", "offline"},
	[-SB_EUNAUTHORIZED] = {"EUNAUTHORIZED", "unauthorized"},
	[-SB_EFORBIDDEN] = {"EFORBIDDEN", "forbidden"},
	[-SB_EINVAL] = {"EINVAL", "invalid arguments"},
	[-SB_ETOOLARGE] = {"ETOOLARGE", "too large"},
	[-SB_EOVERLOADED] = {"EOVERLOADED", "overloaded"},
	[-SB_EBADFRAME] = {"EBADFRAME", "bad frame"},
	[-SB_EDUPNAME] = {"EDUPNAME", "duplicate name"},
	[-SB_ECANCELLED] = {"ECANCELLED", "cancelled"},
	[-SB_EUNSUPPORTED] = {"EUNSUPPORTED", "unsupported"},
	[-SB_ENOPEERS] = {"ENOPEERS", "no connected peers"},
	[-SB_EDRAINING] = {"EDRAINING", "router draining"},
	[-SB_EINTERNAL] = {"EINTERNAL", "internal error"},
	[-SB_EAPP] = {"EAPP", "application error"},
};

static const struct err_text local[] = {
	[-100 - SB_ENOMEM] = {"ENOMEM", "out of memory"},
	[-100 - SB_ENOSPC] = {"ENOSPC", "buffer too small"},
	[-100 - SB_ESYS] = {"ESYS", "system call failed"},
};

static const struct err_text *lookup(int err)
{
	if (err <= 0 && -err < (int)(sizeof(wire) / sizeof(wire[0])))
		return &wire[-err];
	if (err <= -100 && -100 - err < (int)(sizeof(local) / sizeof(local[0])))
		return &local[-100 - err];
	return NULL;
}

const char *sb_strerror(int err)
{
	const struct err_text *e = lookup(err);
	return e != NULL ? e->text : "unknown error";
}

const char *sb_errname(int err)
{
	const struct err_text *e = lookup(err);
	return e != NULL ? e->name : "EUNKNOWN";
}
