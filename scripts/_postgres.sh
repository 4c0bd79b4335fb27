# Sourced by scripts/test: start the machine's PostgreSQL (127.0.0.1:5432) if it is down, since
# the store tests run against it too and fail, never skip, when it is unreachable.
# With CAPIGATE_TEST_PG set (another server), nothing is started.
if [ -z "${CAPIGATE_TEST_PG:-}" ] && command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1; then
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  echo "scripts/test: PostgreSQL is down; starting cluster ${version:-?}/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 40); do
    pg_isready -q -h 127.0.0.1 && break
    sleep 0.25
  done
fi
