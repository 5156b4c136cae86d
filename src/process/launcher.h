/*
 * launcher.h: the launcher background worker.
 */
#ifndef RETL_LAUNCHER_H
#define RETL_LAUNCHER_H

extern void retl_launcher_register(void);
extern PGDLLEXPORT void retl_launcher_main(Datum main_arg);

#endif
