/*
 * launcher.h: the launcher background worker.
 */
#ifndef RETL_LAUNCHER_H
#define RETL_LAUNCHER_H

#include "postmaster/bgworker.h"

extern void retl_launcher_register(void);
extern void retl_dynamic_worker(BackgroundWorker *bgw, const char *function, const char *type,
								Datum main_arg);
extern PGDLLEXPORT void retl_launcher_main(Datum main_arg);

#endif
