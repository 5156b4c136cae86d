/*
 * roles.h: DROP ROLE, REASSIGN OWNED and DROP OWNED see retl's objects
 * (see roles.c).
 */
#ifndef RETL_ROLES_H
#define RETL_ROLES_H

#include "nodes/nodes.h"

extern void retl_roles_before(Node *node);
extern void retl_roles_after(Node *node);

#endif
