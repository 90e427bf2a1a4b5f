#!/usr/bin/env bash
# Installs what the end-to-end suite runs: Postfix (sending, receiving and oracle
# instances), nsd + ldns (signed authoritative zone), unbound (validating resolver),
# swaks (client), systemd (for systemd-analyze, which checks contrib/systemd offline),
# chromium (headless, renders the check page: web_test.go; large, so only when missing).
# redis-server (the fleet's shared cache tier; Debian has no valkey-server package).
# The oracle's TLS policy table is tlsgate's own socketmap: no MTA-STS resolver daemon.
# Debian packages; needs root. Safe to run twice.
set -euo pipefail
need=()
for tool in postfix:postfix nsd:nsd unbound:unbound ldns-signzone:ldnsutils swaks:swaks openssl:openssl \
  unshare:util-linux systemd-analyze:systemd chromium:chromium redis-server:redis-server; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
# A font for the screenshots of the check page.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  # "No configuration": no main.cf, so the package starts no system Postfix that would
  # take port 25 on the addresses the suite uses.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u)
fi
# The packages may start their own daemons (Debian's postinst); the suite starts its own
# instances on fixed loopback addresses, so stop any system copy.
for svc in unbound nsd postfix redis-server; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
