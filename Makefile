# retl: reverse ETL from inside PostgreSQL.  Built with PGXS.
#
#   make demo    build, install, start a scratch cluster + receiver, show rows arriving
#   make test    install what is missing, build, run pg_regress and TAP tests
#   make bench   delivery and capture-overhead benchmarks

EXTENSION = retl
MODULE_big = retl
OBJS = \
	src/retl.o \
	src/process/answers.o \
	src/process/claims.o \
	src/process/parts.o \
	src/process/launcher.o \
	src/process/utility.o \
	src/process/roles.o \
	src/process/runner.o \
	src/process/scheduled.o \
	src/process/staging.o \
	src/process/tokens.o \
	src/process/txn.o \
	src/process/worker.o \
	src/api/checks.o \
	src/api/entry.o \
	src/api/runs.o \
	src/capture/backfill.o \
	src/capture/capture_trigger.o \
	src/capture/partitions.o \
	src/capture/decoder.o \
	src/capture/queue_insert.o \
	src/capture/spool.o \
	src/capture/staged.o \
	src/capture/stream.o \
	src/capture/visibility.o \
	src/models/cron.o \
	src/models/diff.o \
	src/models/diff_sql.o \
	src/models/empty_replace.o \
	src/models/jsonkey.o \
	src/models/probe.o \
	src/models/probe_load.o \
	src/models/probe_plan.o \
	src/models/probe_removed.o \
	src/models/probe_share.o \
	src/models/snapshot.o \
	src/models/query.o \
	src/models/rowhash.o \
	src/models/runs.o \
	src/models/run_queue.o \
	src/queue/backoff.o \
	src/queue/batches.o \
	src/queue/claim.o \
	src/queue/counters.o \
	src/queue/holders.o \
	src/queue/jobs.o \
	src/queue/mark.o \
	src/queue/outcome.o \
	src/queue/queue.o \
	src/queue/queued_keys.o \
	src/queue/ranges.o \
	src/queue/render.o \
	src/queue/rowjson.o \
	src/queue/rows.o \
	src/queue/sweep.o \
	src/connectors/auth.o \
	src/connectors/google_ads.o \
	src/connectors/headers.o \
	src/connectors/hashing.o \
	src/connectors/braze.o \
	src/connectors/customerio.o \
	src/connectors/http.o \
	src/connectors/http_compile.o \
	src/connectors/hubspot.o \
	src/connectors/klaviyo.o \
	src/connectors/mailchimp.o \
	src/connectors/iterable.o \
	src/connectors/marketo.o \
	src/connectors/meta.o \
	src/connectors/oauth.o \
	src/connectors/registry.o \
	src/connectors/request.o \
	src/connectors/salesforce.o \
	src/connectors/segment.o \
	src/connectors/slack.o \
	src/connectors/webhook.o \
	src/sync/compiled.o \
	src/sync/dropping.o \
	src/sync/dest.o \
	src/sync/expr.o \
	src/sync/ids.o \
	src/sync/keytext.o \
	src/sync/mapping.o \
	src/sync/owner.o \
	src/sync/sync.o \
	src/sync/trust.o \
	src/delivery/http.o \
	src/delivery/http_check.o \
	src/delivery/netcheck.o \
	src/delivery/redact.o \
	src/delivery/signing.o \
	src/delivery/stats.o \
	src/delivery/watch.o \
	src/base/guc.o \
	src/base/identity.o \
	src/base/plans.o \
	src/base/progress.o \
	src/base/shmem.o \
	src/base/subxact.o \
	src/base/visible.o

DATA = $(wildcard sql/retl--*.sql)
PGFILEDESC = "retl - reverse ETL from inside PostgreSQL"

REGRESS = setup secrets destinations syncs connectors status diff audiences roles hijack teardown
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=test/regress.conf

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter  # PostgreSQL headers have unused parameters
SHLIB_LINK = -lcurl -lcjson

PG_CONFIG ?= $(shell command -v pg_config >/dev/null 2>&1 && echo pg_config || echo /usr/lib/postgresql/15/bin/pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard src/*/*.h)

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
