#!/usr/bin/env bash
# Single-node Slurm (munge auth, fake GPU gres) + PostgreSQL on 127.0.0.1, for CI and local tests.
# Taken from the team's tested recipe (shared tools) and owned here.
# Debian 12, run as root, no systemd needed. Idempotent.
#   .ci/services.sh up      # install if needed, configure, start, smoke-test
#   .ci/services.sh down    # cancel jobs, stop daemons   (PURGE=1 also deletes state/config)
#   .ci/services.sh pg-restart [SECONDS]   # stop PostgreSQL (fast), stay down SECONDS, start it again
#   .ci/services.sh pg-up | pg-down        # PostgreSQL alone: with PGDATA, PGPORT and ENV_FILE set, a
#                                          # second server (the restart test's, so others' stays up)
# After `up`:  source /tmp/ci-services.env   (exports OPTUNA_STORAGE_URL)
set -euo pipefail

ACTION=${1:-up}
NODE=localhost                        # Slurm maps "localhost" to this machine whatever `hostname` is
SLURM_CPUS=${SLURM_CPUS:-$(nproc)}    # may be set above the real count to run more tasks at once
SLURM_MEM_MB=${SLURM_MEM_MB:-$(free -m | awk '/^Mem:/{print $2}')}   # likewise, for big --mem requests
FAKE_GPUS=${FAKE_GPUS:-2}             # count of fake gres/gpu (0 = none)
PGDATA=${PGDATA:-/tmp/ci-pg}
PGPORT=${PGPORT:-5432}
PG_USER=${PG_USER:-optuna} PG_DB=${PG_DB:-optuna}
# A fresh random password per `up` unless given: nothing secret is kept in the repository.
PG_PASS=${PG_PASS:-$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')}
PG_MAX_CONN=${PG_MAX_CONN:-300}
ENV_FILE=${ENV_FILE:-/tmp/ci-services.env}
export DEBIAN_FRONTEND=noninteractive

T0=$EPOCHREALTIME
log() { printf '[services %5ss] %s\n' "$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $T0}")" "$*"; }
die() { log "ERROR: $*"; exit 1; }
running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }   # zombies count as gone
alive() { [ -s "$1" ] && running "$(cat "$1")"; }
wait_for() { local end=$((SECONDS + $1)); shift
             until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done; }
stop_pidfile() { alive "$1" || return 0; local p; p=$(cat "$1"); kill "$p"
                 for _ in $(seq 100); do running "$p" || return 0; sleep 0.1; done; kill -9 "$p" 2>/dev/null || true; }
node_state() { timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null; }
pgbin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }
as_pg() { runuser -u postgres -- "$@"; }

install_pkgs() {
  local need=() p
  for p in munge slurmctld slurmd slurm-client postgresql; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] && { log "packages already installed"; return; }
  log "installing: ${need[*]}"
  rm -f /var/lib/man-db/auto-update          # skip the slow man-db trigger
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  log "installed"
}

up_munge() {
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge /var/log/munge; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  if ! alive /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged      # as root it refuses: "Logfile is insecure"
  fi
  wait_for 10 sh -c 'munge -n </dev/null | unmunge' || die "munged not working (see /var/log/munge/munged.log)"
  log "munge up"
}

up_slurm() {
  local gres="" new=/etc/slurm/slurm.conf.new i
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  if [ "$FAKE_GPUS" -gt 0 ]; then
    # gres/gpu needs File= (file-less GPUs are dropped => node INVAL "gres/gpu count reported
    # lower than configured"), and File must exist; char devs aliasing /dev/null avoid log errors.
    for i in $(seq 0 $((FAKE_GPUS - 1))); do
      [ -e /dev/fakegpu$i ] || mknod -m 666 /dev/fakegpu$i c 1 3 2>/dev/null || touch /dev/fakegpu$i
    done
    gres="Gres=gpu:$FAKE_GPUS"
    printf 'AutoDetect=off\nName=gpu File=/dev/fakegpu[0-%d]\n' $((FAKE_GPUS - 1)) > /etc/slurm/gres.conf
  else
    rm -f /etc/slurm/gres.conf
  fi
  cat > "$new" <<EOF
ClusterName=ci
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$SLURM_CPUS RealMemory=$SLURM_MEM_MB $gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if cmp -s "$new" /etc/slurm/slurm.conf && alive /run/slurmctld.pid && alive /run/slurmd.pid; then
    rm -f "$new"
  else
    stop_pidfile /run/slurmd.pid; stop_pidfile /run/slurmctld.pid
    mv "$new" /etc/slurm/slurm.conf
    slurmctld                                   # daemonizes; log in /var/log/slurm
    wait_for 20 scontrol ping || die "slurmctld not up: $(tail -5 /var/log/slurm/slurmctld.log)"
    slurmd -N "$NODE"
  fi
  wait_for 30 sh -c "timeout 5 sinfo -h -n $NODE -o %T | grep -Eq '^(idle|mixed|allocated)'" || {
    log "node state '$(node_state)'; resuming"; scontrol update nodename="$NODE" state=resume || true
    wait_for 15 sh -c "timeout 5 sinfo -h -n $NODE -o %T | grep -q '^idle'" ||
      die "node not idle: $(timeout 5 sinfo -h -N -o '%T %E'); $(tail -5 /var/log/slurm/slurmctld.log)"; }
  log "slurm up: $(timeout 5 sinfo -h -N -o '%N %T cpus=%c mem=%m gres=%G')"
}

up_pg() {
  local bin; bin=$(pgbin)
  if [ ! -s "$PGDATA/PG_VERSION" ]; then      # initdb/pg_ctl refuse to run as root
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    as_pg "$bin/initdb" -D "$PGDATA" -U postgres -E UTF8 --no-sync \
          --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    cat >> "$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDATA'
max_connections = $PG_MAX_CONN
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; then   # e.g. Debian's 15/main auto-started by postinst
      pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p && $4 == "online" {print $1, $2}' |
        while read -r v c; do log "stopping Debian cluster $v/$c on :$PGPORT"; pg_ctlcluster "$v" "$c" stop; done
      ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" || die "another server already listens on :$PGPORT"
    fi
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null
  fi
  as_pg psql -h "$PGDATA" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 -qAt >/dev/null <<EOF
SELECT 'CREATE ROLE "$PG_USER" LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')\gexec
ALTER ROLE "$PG_USER" PASSWORD '$PG_PASS';
SELECT 'CREATE DATABASE "$PG_DB" OWNER "$PG_USER"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
EOF
  PGPASSWORD=$PG_PASS psql -h 127.0.0.1 -p "$PGPORT" -U "$PG_USER" -d "$PG_DB" -qAtc 'select 1' >/dev/null ||
    die "cannot connect to postgres over TCP"
  log "postgres up: $("$bin/postgres" --version), max_connections=$PG_MAX_CONN, data=$PGDATA"
}

smoke() {
  local d jid g=(); d=$(mktemp -d); cd "$d"
  [ "$FAKE_GPUS" -gt 0 ] && g=(--gres=gpu:1)
  jid=$(sbatch --parsable --array=0-1 "${g[@]}" -o 'o_%a' --wrap 'echo ok $SLURM_ARRAY_TASK_ID')
  wait_for 60 sh -c "[ -z \"\$(squeue -h -j $jid)\" ]" || die "smoke job $jid did not finish"
  [ "$(cat o_0 o_1)" = "$(printf 'ok 0\nok 1')" ] || die "smoke job output wrong: $(cat o_* 2>&1)"
  cd /; rm -rf "$d"; log "smoke test passed (sbatch array job $jid)"
}

down() {
  if alive /run/slurmctld.pid; then
    squeue -h -o %A | sort -u | xargs -r scancel 2>/dev/null || true
    wait_for 20 sh -c '[ -z "$(squeue -h)" ]' || log "jobs still present after 20 s"
  fi
  stop_pidfile /run/slurmd.pid; stop_pidfile /run/slurmctld.pid
  stop_pidfile /run/munge/munged.pid
  [ -s "$PGDATA/postmaster.pid" ] && as_pg "$(pgbin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
  if [ "${PURGE:-0}" = 1 ]; then
    rm -rf "$PGDATA" /var/spool/slurmctld /var/spool/slurmd /etc/slurm/slurm.conf /etc/slurm/gres.conf \
           /dev/fakegpu[0-9]* "$ENV_FILE"
  fi
  log "down"
}

write_env() {
  ( umask 077; cat > "$ENV_FILE" ) <<EOF
export OPTUNA_STORAGE_URL=postgresql+psycopg2://$PG_USER:$PG_PASS@127.0.0.1:$PGPORT/$PG_DB
export PGHOST=127.0.0.1 PGPORT=$PGPORT PGUSER=$PG_USER PGPASSWORD=$PG_PASS PGDATABASE=$PG_DB
EOF
}

case "$ACTION" in
  up)
    install_pkgs; up_munge; up_slurm; up_pg; write_env
    [ "${SMOKE:-1}" = 1 ] && smoke
    log "all up; source $ENV_FILE" ;;
  down) down ;;
  pg-up) install_pkgs; up_pg; write_env; log "source $ENV_FILE" ;;
  pg-down) [ -s "$PGDATA/postmaster.pid" ] && as_pg "$(pgbin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
           log "postgres at $PGDATA stopped" ;;
  pg-restart)   # an outage for the reliability tests: clients lose their connections, then reconnect
    bin=$(pgbin)
    as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    log "postgres stopped; down for ${2:-0} s"
    sleep "${2:-0}"
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null
    log "postgres started" ;;
  status) timeout 5 sinfo -N || true; timeout 5 squeue || true
          as_pg "$(pgbin)/pg_ctl" -D "$PGDATA" status || true ;;
  *) echo "usage: $0 up|down|status|pg-restart [SECONDS]|pg-up|pg-down" >&2; exit 2 ;;
esac
