# Sourced by scripts/test: Debian's chromium, which the inspector's browser tests drive
# (tests/test_inspector_browser.py, through Playwright's executable_path; never `playwright install`).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests ..." >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
  APT=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300)
  for attempt in 1 2 3; do  # tolerant of an apt lock held by something else
    if $SUDO "${APT[@]}" update </dev/null >/dev/null && $SUDO "${APT[@]}" install -y chromium </dev/null >/dev/null; then
      break
    fi
    echo "apt-get failed (attempt $attempt); retrying ..." >&2
    sleep 15
  done
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "warning: /usr/bin/chromium is missing: the browser tests will fail" >&2
fi
