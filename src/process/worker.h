/*
 * worker.h: the per-database worker.
 */
#ifndef RETL_WORKER_H
#define RETL_WORKER_H

#include "postmaster/bgworker.h"

extern PGDLLEXPORT void retl_worker_main(Datum main_arg);

#endif
