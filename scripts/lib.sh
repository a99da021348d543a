# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # script is set, and fetched read, by the sourcing script
# Shell functions shared by scripts/zk.sh and scripts/kafka.sh, which source
# this file (it is not run by itself). The sourcing script sets script, its
# name in messages ("zk.sh"), and defines write_pom first.

die() { echo "$script: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH: $2"
}

# mvn_fetch DIR LIB WHAT JAR fetches the runtime dependencies of the pom that
# write_pom writes, from Maven Central through mvn, into LIB, unless
# LIB/.complete says they are there already. DIR holds LIB, the lock file and
# the scratch dirs; WHAT names the release in messages ("Kafka 4.4.0"); JAR
# must be among the jars fetched. One fetcher at a time: the others wait for
# the lock, then find it done. Sets fetched to 1 when it fetched, else to "".
mvn_fetch() {
  local dir="$1" lib="$2" what="$3" jar="$4"
  fetched=""
  if [[ -f "$lib/.complete" ]]; then
    return 0
  fi
  need java "install a JDK (17 or later), e.g. apt-get install openjdk-17-jdk-headless"
  need mvn "install Maven, e.g. apt-get install maven"
  mkdir -p "$dir"
  # One fetcher at a time; the others wait here and then find it done.
  exec 9>"$dir/.lock"
  flock 9
  if [[ -f "$lib/.complete" ]]; then
    exec 9>&-
    return 0
  fi
  echo "$script: fetching $what from Maven Central into $lib" >&2
  local tmp
  tmp="$(mktemp -d "$dir/fetch.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  write_pom "$tmp/pom.xml"
  # mvn's output is kept for a failure only (Debian's 3.8 prints stray colour
  # codes even with -B -q).
  if ! mvn -B -q -f "$tmp/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
    cat "$tmp/mvn.log" >&2
    die "mvn failed to fetch $what (log above)"
  fi
  [[ -f "$tmp/lib/$jar" ]] || die "$jar missing after mvn"
  touch "$tmp/lib/.complete"
  rm -rf "$lib"
  mv "$tmp/lib" "$lib"
  rm -rf "$tmp"
  trap - EXIT
  exec 9>&-
  fetched=1
}
