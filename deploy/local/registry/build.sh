#!/usr/bin/env bash
# Fetch the Apicurio Registry (a Confluent-compatible schema registry) into OUT_DIR.
#   deploy/local/registry/build.sh OUT_DIR        e.g. build.sh .stack/registry
# Needs Java 17+, Maven and tar; downloads one ~109 MB artifact from Maven Central (kept in
# the Maven local repository, so a rebuild after deleting OUT_DIR is offline and quick).
# Idempotent: returns at once when OUT_DIR already holds a complete unpack of this version.
# Prints the path of the runner jar on stdout (Maven's output goes to stderr).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
version="${APICURIO_VERSION:-3.0.9}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
dest="$out/apicurio-registry-$version"
jar="$dest/apicurio-registry-app-$version-runner.jar"
if [[ -f "$dest/.complete" && -f "$jar" ]]; then
  echo "$jar"
  exit 0
fi
tmp="$out/.download-$version"
rm -rf "$dest" "$tmp"
mkdir -p "$tmp/unpacked"
if ! mvn -B -q -f "$here/pom.xml" dependency:copy \
     -Dapicurio.version="$version" -Dregistry.out="$tmp" >"$out/.mvn-$version.log" 2>&1; then
  cat "$out/.mvn-$version.log" >&2
  echo "build.sh: maven could not fetch io.apicurio:apicurio-registry-app:$version:tar.gz:all" >&2
  exit 1
fi
rm -f "$out/.mvn-$version.log"
tar -xzf "$tmp/apicurio-registry-app-$version-all.tar.gz" -C "$tmp/unpacked"
if [[ ! -f "$tmp/unpacked/apicurio-registry-app-$version-runner.jar" ]]; then
  echo "build.sh: no runner jar in apicurio-registry-app-$version-all.tar.gz" \
       "(3.1+ ship quarkus-run.jar instead and need Java 21)" >&2
  exit 1
fi
touch "$tmp/unpacked/.complete"
mv "$tmp/unpacked" "$dest"
rm -rf "$tmp"
echo "$jar"
