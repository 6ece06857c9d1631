/* Intrusive doubly-linked lists for the engine and the client library:
 * an unlinked node points at itself, so removal never needs the list. */
#ifndef SB_CORE_LIST_H
#define SB_CORE_LIST_H

#include <stddef.h>

struct sb__link {
	struct sb__link *prev, *next;
};

static inline void sb__link_init(struct sb__link *l)
{
	l->prev = l->next = l;
}

/* Inserts l first in the list at head. */
static inline void sb__link_add(struct sb__link *head, struct sb__link *l)
{
	l->next = head->next;
	l->prev = head;
	head->next->prev = l;
	head->next = l;
}

/* Inserts l last in the list at head. */
static inline void sb__link_add_tail(struct sb__link *head, struct sb__link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static inline void sb__link_del(struct sb__link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	sb__link_init(l);
}

static inline int sb__link_empty(const struct sb__link *head)
{
	return head->next == head;
}

/* The struct of the given type that holds member at ptr. */
#define SB__CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
