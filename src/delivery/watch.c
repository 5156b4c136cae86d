/*
 * watch.c: the sockets libcurl asks the worker to watch, in one
 * WaitEventSet kept from one wait to the next.
 *
 * libcurl says what to watch on which socket as it changes (its socket
 * callback, http.c): on a kept-alive connection, at each request, "write",
 * then "read", then "remove" once the answer is in.  A set built for each
 * wait (an epoll instance, the latch, postmaster death and every socket
 * added, then closed) cost a worker sending one record a request about 7%
 * of its time; this one changes only what changed since the last wait,
 * when it waits.
 *
 * A WaitEventSet cannot drop an event, so a socket libcurl no longer
 * watches stays in the set, dormant: registered for reading only, which an
 * idle connection never is until its server closes it.  An event of a
 * dormant socket is not libcurl's: the set is built again without it
 * (until libcurl watches it again).  So it is, whole, when a socket of the
 * set may no longer be the one registered: a
 * connection's socket closed (libcurl closes the sockets it opened through
 * http.c's callbacks, which tell this file), or a socket of libcurl's own
 * (its resolver's) removed, which it may close without telling.
 *
 * Callbacks of libcurl call in here: nothing raises an error but the wait.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "delivery/watch.h"

typedef struct Watched
{
	curl_socket_t fd;
	int			what;			/* libcurl's: CURL_POLL_IN / OUT / INOUT, 0: none */
	bool		ours;			/* opened by http.c: its close is told */
	int			pos;			/* its event in the set, or -1 */
	uint32		events;			/* as registered there */
	bool		hushed;			/* dormant, and its server closed it (or
								 * spoke): left out of the set until libcurl
								 * watches it again */
} Watched;

#define FIRST_EVENTS 2			/* the latch, postmaster death */

static Watched watched[RETL_WATCH_MAX];
static int	nwatched = 0;		/* entries in watched[] */
static int	nwanted = 0;		/* of them, with what != 0 */
static WaitEventSet *set = NULL;
static bool stale = true;		/* the set is to be built at the next wait */
static int	set_size = 0;		/* events the set has room for */
static int	set_used = 0;		/* events in it */

static int
find(curl_socket_t fd)
{
	for (int i = 0; i < nwatched; i++)
		if (watched[i].fd == fd)
			return i;
	return -1;
}

static void
drop(int i)
{
	if (watched[i].what != 0)
		nwanted--;
	watched[i] = watched[--nwatched];
}

/* The socket fd was opened for a connection (its close will be told). */
void
retl_watch_opened(curl_socket_t fd)
{
	int			i = find(fd);

	/* a number reused without its close told: not the socket registered */
	if (i >= 0)
	{
		if (watched[i].pos >= 0)
			stale = true;
		drop(i);
	}
	if (nwatched >= RETL_WATCH_MAX)
		return;					/* retl_watch_socket refuses it */
	watched[nwatched].fd = fd;
	watched[nwatched].what = 0;
	watched[nwatched].ours = true;
	watched[nwatched].pos = -1;
	watched[nwatched].events = 0;
	watched[nwatched].hushed = false;
	nwatched++;
}

/* The socket fd of a connection is closing. */
void
retl_watch_closed(curl_socket_t fd)
{
	int			i = find(fd);

	if (i < 0)
		return;
	if (watched[i].pos >= 0)
		stale = true;
	drop(i);
}

/*
 * libcurl's wish for fd (CURL_POLL_*); false when no more sockets can be
 * watched (libcurl then fails the transfer).
 */
bool
retl_watch_socket(curl_socket_t fd, int what)
{
	int			i = find(fd);

	if (what == CURL_POLL_REMOVE)
	{
		if (i < 0)
			return true;
		if (watched[i].what != 0)
			nwanted--;
		watched[i].what = 0;
		/* libcurl may close a socket of its own without telling */
		if (!watched[i].ours)
		{
			if (watched[i].pos >= 0)
				stale = true;
			drop(i);
		}
		return true;
	}
	if (i < 0)
	{
		if (nwatched >= RETL_WATCH_MAX)
			return false;
		i = nwatched++;
		watched[i].fd = fd;
		watched[i].what = 0;
		watched[i].ours = false;
		watched[i].pos = -1;
		watched[i].events = 0;
	}
	/* (CURL_POLL_NONE, 0, which libcurl 7.88 never passes, watches nothing) */
	if (watched[i].what == 0 && what != 0)
		nwanted++;
	else if (watched[i].what != 0 && what == 0)
		nwanted--;
	watched[i].what = what;
	watched[i].hushed = false;
	return true;
}

/* The number of sockets libcurl watches. */
int
retl_watch_count(void)
{
	return nwanted;
}

static uint32
events_of(int what)
{
	uint32		ev = 0;

	if (what & CURL_POLL_IN)
		ev |= WL_SOCKET_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= WL_SOCKET_WRITEABLE;
	return ev;
}

/*
 * A new set: the latch, postmaster death, every socket libcurl watches and
 * the dormant ones not hushed.
 */
static void
build(void)
{
	if (set != NULL)
		FreeWaitEventSet(set);
	set_size = FIRST_EVENTS + Max(16, 2 * nwatched);
	set = CreateWaitEventSet(TopMemoryContext, set_size);
	stale = false;
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	set_used = FIRST_EVENTS;
	for (int i = 0; i < nwatched; i++)
	{
		watched[i].pos = -1;
		watched[i].events = 0;
		if (watched[i].what == 0 && watched[i].hushed)
			continue;
		/* dormant: reading only, which an idle connection is not */
		watched[i].events = watched[i].what == 0 ? WL_SOCKET_READABLE :
			events_of(watched[i].what);
		watched[i].pos = AddWaitEventToSet(set, watched[i].events, watched[i].fd, NULL, NULL);
		set_used++;
	}
}

/* Bring the set up to libcurl's wishes. */
static void
update(void)
{
	if (stale)
	{
		build();
		return;
	}
	for (int i = 0; i < nwatched; i++)
	{
		Watched    *w = &watched[i];
		uint32		ev = events_of(w->what);

		if (w->pos < 0)
		{
			if (ev == 0)
				continue;
			if (set_used >= set_size)
			{
				build();
				return;
			}
			w->events = ev;
			w->pos = AddWaitEventToSet(set, ev, w->fd, NULL, NULL);
			set_used++;
		}
		else if (ev == 0)
		{
			/* dormant: reading only, which an idle connection is not */
			if (w->events != WL_SOCKET_READABLE)
			{
				w->events = WL_SOCKET_READABLE;
				ModifyWaitEvent(set, w->pos, w->events, NULL);
			}
		}
		else if (ev != w->events)
		{
			w->events = ev;
			ModifyWaitEvent(set, w->pos, ev, NULL);
		}
	}
}

/*
 * Wait until one of the events happens or timeout_ms passes (0: just
 * poll); the latch is one of them when with_latch.  Returns the number of
 * events: the latch's, and those of sockets libcurl watches.
 */
int
retl_watch_wait(WaitEvent *events, int nevents_max, bool with_latch, long timeout_ms,
				uint32 wait_event_info)
{
	int			n;
	int			kept = 0;

	update();
	ModifyWaitEvent(set, 0, WL_LATCH_SET, with_latch ? MyLatch : NULL);
	n = WaitEventSetWait(set, timeout_ms, events, nevents_max, wait_event_info);
	for (int e = 0; e < n; e++)
	{
		if (events[e].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			i = find(events[e].fd);

			/* a dormant socket's: its server closed it, or sent what none asked */
			if (i < 0 || watched[i].what == 0)
			{
				if (i >= 0)
					watched[i].hushed = true;
				stale = true;
				continue;
			}
		}
		events[kept++] = events[e];
	}
	return kept;
}
