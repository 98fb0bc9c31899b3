#!/usr/bin/env bash
# Start the Apicurio Registry built by build.sh, in the foreground (exec: the PID is java's).
#   deploy/local/registry/run.sh REGISTRY_DIR PORT [DATA_DIR]
# REGISTRY_DIR is build.sh's OUT_DIR. Listens on 127.0.0.1:PORT only.
#   Confluent Schema Registry API:  http://127.0.0.1:PORT/apis/ccompat/v7
#   readiness:                      http://127.0.0.1:PORT/health/ready   (200 when ready)
# Storage is H2 in memory (gone when the process ends) unless DATA_DIR is given, in which case
# it is an H2 file database under DATA_DIR (survives restarts; one process at a time).
# Extra JVM or Quarkus/Apicurio options: REGISTRY_JAVA_OPTS="-Dkey=value ...".
set -euo pipefail
dir="${1:?usage: run.sh REGISTRY_DIR PORT [DATA_DIR]}"
port="${2:?usage: run.sh REGISTRY_DIR PORT [DATA_DIR]}"
data="${3:-}"
version="${APICURIO_VERSION:-3.0.9}"
jar="$dir/apicurio-registry-$version/apicurio-registry-app-$version-runner.jar"
[[ -f "$jar" ]] || { echo "run.sh: $jar not found; run build.sh $dir first" >&2; exit 1; }
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
opts=(
  # small footprint: the machine is shared with Kafka
  -Xms32m -Xmx256m -XX:+UseSerialGC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30
  -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=64m
  -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port"
  -Dquarkus.http.access-log.enabled=false
  -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2
  -Dapicurio.datasource.jdbc.max-size=20
  # same schema text modulo formatting -> same id, as in Confluent's registry
  -Dapicurio.ccompat.use-canonical-hash=true
)
if [[ -n "$data" ]]; then
  mkdir -p "$data"
  data="$(cd "$data" && pwd)"
  opts+=(-Dapicurio.datasource.url="jdbc:h2:file:$data/registry")
fi
# shellcheck disable=SC2206
extra=(${REGISTRY_JAVA_OPTS:-})
exec "$java" "${opts[@]}" "${extra[@]}" -jar "$jar"
