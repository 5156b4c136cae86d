# retl: reverse ETL from inside PostgreSQL.  Built with PGXS.
#
#   make demo    build, install, start a scratch cluster + receiver, show rows arriving
#   make test    install what is missing, build, run pg_regress and TAP tests
#   make bench   delivery and capture-overhead benchmarks

EXTENSION = retl
MODULE_big = retl
OBJS = \
	src/retl.o \
	src/guc.o \
	src/shmem.o \
	src/launcher.o \
	src/worker.o \
	src/utility.o \
	src/capture_trigger.o \
	src/claim.o \
	src/counters.o \
	src/decoder.o \
	src/mark.o \
	src/plans.o \
	src/queue.o \
	src/backfill.o \
	src/mapping.o \
	src/cron.o \
	src/diff.o \
	src/runs.o \
	src/stream.o \
	src/dest.o \
	src/stats.o \
	src/http.o \
	src/netcheck.o \
	src/redact.o \
	src/signing.o \
	src/owner.o \
	src/trust.o \
	src/subxact.o \
	src/entry.o \
	src/connectors/webhook.o

DATA = $(wildcard sql/retl--*.sql)
PGFILEDESC = "retl - reverse ETL from inside PostgreSQL"

REGRESS = setup secrets destinations syncs status diff audiences roles hijack teardown
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=test/regress.conf

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter  # PostgreSQL headers have unused parameters
SHLIB_LINK = -lcurl -lcjson

PG_CONFIG ?= $(shell command -v pg_config >/dev/null 2>&1 && echo pg_config || echo /usr/lib/postgresql/15/bin/pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard src/*.h src/connectors/*.h)

.PHONY: test demo bench tap

test:
	bash test/run-tests.sh

demo:
	bash test/demo.sh

bench:
	bash test/bench.sh

# TAP tests against the installed extension (run by test/run-tests.sh).
tap:
	PATH="$(bindir):$$PATH" $(PROVE) -I $(pgxsdir)/src/test/perl -I test/perl $(PROVE_FLAGS) $(if $(PROVE_TESTS),$(PROVE_TESTS),test/t/*.pl)
