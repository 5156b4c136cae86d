/*
 * version.h: the extension version this library serves.
 *
 * It is retl.control's default_version: the database's worker waits while
 * the extension's version in its database is another, and every request
 * names it in its User-Agent.
 */
#ifndef RETL_VERSION_H
#define RETL_VERSION_H

#define RETL_VERSION "0.2"

/* The User-Agent header of every request retl sends. */
#define RETL_USER_AGENT "retl/" RETL_VERSION

#endif							/* RETL_VERSION_H */
