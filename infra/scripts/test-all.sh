#!/usr/bin/env bash
# The project's single test command (see README):
#
#   bash infra/scripts/test-all.sh [extra cargo test args...]
#
# 1. makes sure a Python venv with moto (local DynamoDB/SQS/Secrets Manager/KMS emulator), cfn-lint and
#    aws-sam-translator exists under ${SHOP_KEYCRM_CACHE:-$HOME/.cache/shop-keycrm}/venv
#    (created or repaired when missing or incomplete; reused otherwise);
# 2. makes sure headless Chromium and ChromeDriver exist for the settings page's browser tests
#    (installs the Debian packages `chromium` and `chromium-driver` with apt-get when missing);
#    starts moto_server on 127.0.0.1 with a free port and points the AWS SDK at it through
#    the environment only (no credentials or config files are ever read);
# 3. runs cargo fmt --check, cargo clippy -D warnings, cargo test (extra args are passed to it);
# 4. checks template.yaml in two passes: cfn-lint on the SAM source, then an offline
#    SAM -> CloudFormation expansion (infra/scripts/sam2cfn.py) linted again with cfn-lint;
# 5. prints a summary and exits non-zero if any step failed. moto is always stopped (by PID).
#
# Needs: python3 (3.9+), curl, cargo with rustfmt and clippy; Chromium + ChromeDriver (installed
# with apt-get as root, or sudo, on Debian/Ubuntu when missing). Network only for the first venv
# setup (PyPI), the browser packages (Debian mirrors) and crates not yet in the cargo cache
# (crates.io). No Docker, no AWS account.
set -uo pipefail

# ---------------------------------------------------------------- settings
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
SAM_TRANSLATOR_VERSION="1.115.0"
PIP_REQUIREMENTS=(
  "moto[dynamodb,sqs,secretsmanager,kms]==${MOTO_VERSION}"
  "flask"
  "flask-cors"
  "cfn-lint==${CFN_LINT_VERSION}"
  "aws-sam-translator==${SAM_TRANSLATOR_VERSION}"
)

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd)"
cd "${REPO_ROOT}" || exit 1

# KeyCRM's OpenAPI file (the simulator's conformance test) is reference material kept beside the
# repository, in ../shared. A clone made elsewhere (git clone . /tmp/fresh) has no ../shared of
# its own: then use the one beside the repository it was cloned from, if that is a local path.
if [ -z "${KEYCRM_OPENAPI:-}" ] && [ ! -f "${REPO_ROOT}/../shared/keycrm/openapi.yml" ]; then
  ORIGIN_PATH="$(git -C "${REPO_ROOT}" config --get remote.origin.url 2>/dev/null || true)"
  if [ -n "${ORIGIN_PATH}" ] && [ -f "${ORIGIN_PATH}/../shared/keycrm/openapi.yml" ]; then
    KEYCRM_OPENAPI="$(cd -- "${ORIGIN_PATH}/../shared/keycrm" && pwd)/openapi.yml"
    export KEYCRM_OPENAPI
  fi
fi

CACHE_DIR="${SHOP_KEYCRM_CACHE:-${HOME}/.cache/shop-keycrm}"
VENV="${CACHE_DIR}/venv"
TEMPLATE="template.yaml"
EXPANDED="target/sam/template.cfn.json"
MOTO_READY_TIMEOUT_S="${MOTO_READY_TIMEOUT_S:-30}"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  BOLD=$'\033[1m'; RED=$'\033[31m'; GREEN=$'\033[32m'; RESET=$'\033[0m'
else
  BOLD=""; RED=""; GREEN=""; RESET=""
fi

section() { printf '\n%s==> %s%s\n' "${BOLD}" "$*" "${RESET}"; }
info() { printf '    %s\n' "$*"; }
die() { printf '%sERROR: %s%s\n' "${RED}" "$*" "${RESET}" >&2; exit 1; }

# ---------------------------------------------------------------- moto lifecycle
MOTO_PID=""
MOTO_LOG=""
stop_moto() {
  if [ -n "${MOTO_PID}" ]; then
    if kill -0 "${MOTO_PID}" 2>/dev/null; then
      kill "${MOTO_PID}" 2>/dev/null || true
      # Give it a moment to exit cleanly, then make sure.
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "${MOTO_PID}" 2>/dev/null || break
        sleep 0.2
      done
      kill -0 "${MOTO_PID}" 2>/dev/null && kill -9 "${MOTO_PID}" 2>/dev/null
    fi
    wait "${MOTO_PID}" 2>/dev/null || true
    MOTO_PID=""
  fi
  if [ -n "${MOTO_LOG}" ] && [ -f "${MOTO_LOG}" ]; then
    rm -f "${MOTO_LOG}"
  fi
}
on_exit() {
  local rc=$?
  stop_moto
  exit "${rc}"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---------------------------------------------------------------- python venv
venv_complete() {
  [ -x "${VENV}/bin/python" ] && [ -x "${VENV}/bin/moto_server" ] && [ -x "${VENV}/bin/cfn-lint" ] || return 1
  "${VENV}/bin/python" - "${MOTO_VERSION}" "${CFN_LINT_VERSION}" "${SAM_TRANSLATOR_VERSION}" <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import sys

pins = {"moto": sys.argv[1], "cfn-lint": sys.argv[2], "aws-sam-translator": sys.argv[3]}
for dist, want in pins.items():
    if md.version(dist) != want:
        sys.exit(1)
# presence of the unpinned server deps and of what the dynamodb extra pulls in
for dist in ("flask", "flask-cors", "werkzeug", "boto3", "docker", "py-partiql-parser"):
    md.version(dist)
import flask, flask_cors, moto.server, moto.dynamodb, moto.sqs, moto.secretsmanager, moto.kms  # noqa: E401,F401
import cfnlint, samtranslator.translator.transform  # noqa: E401,F401
PY
}

ensure_venv() {
  section "Python tools (moto ${MOTO_VERSION}, cfn-lint ${CFN_LINT_VERSION}, aws-sam-translator ${SAM_TRANSLATOR_VERSION})"
  if venv_complete; then
    info "reusing ${VENV}"
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for the moto/cfn-lint venv)"
  mkdir -p "${CACHE_DIR}" || die "cannot create ${CACHE_DIR}"
  if ! "${VENV}/bin/python" -c 'import sys' >/dev/null 2>&1 || ! "${VENV}/bin/python" -m pip --version >/dev/null 2>&1; then
    info "creating venv at ${VENV}"
    # --clear repairs a half-created venv (missing interpreter or pip).
    python3 -m venv --clear "${VENV}" || die "python3 -m venv ${VENV} failed"
  else
    info "venv at ${VENV} is incomplete or has other versions; (re)installing the pinned tools"
  fi
  local log="${CACHE_DIR}/pip.log"
  info "pip install ${PIP_REQUIREMENTS[*]}  (log: ${log})"
  if ! "${VENV}/bin/python" -m pip install --disable-pip-version-check --no-input -q \
      "${PIP_REQUIREMENTS[@]}" >"${log}" 2>&1; then
    tail -n 40 "${log}" >&2
    die "pip install into ${VENV} failed (see ${log})"
  fi
  venv_complete || die "venv ${VENV} is still incomplete after pip install (see ${log})"
  info "venv ready"
}

# ---------------------------------------------------------------- browser
# The browser tests (tests/tests/settings_page_browser.rs) drive headless Chromium through
# ChromeDriver. CHROMIUM / CHROMEDRIVER may point at other binaries; otherwise the same paths the
# tests look in (tests/src/webdriver.rs `require`) are checked, in the same order.
first_executable() {
  local p
  for p in "$@"; do
    [ -x "${p}" ] && { printf '%s' "${p}"; return 0; }
  done
  return 1
}
chromium_path() {
  if [ -n "${CHROMIUM:-}" ]; then first_executable "${CHROMIUM}"; return; fi
  first_executable /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome
}
chromedriver_path() {
  if [ -n "${CHROMEDRIVER:-}" ]; then first_executable "${CHROMEDRIVER}"; return; fi
  first_executable /usr/bin/chromedriver /usr/lib/chromium/chromedriver
}
browser_ready() {
  chromium_path >/dev/null && chromedriver_path >/dev/null
}

ensure_browser() {
  section "Browser for the settings page tests (Chromium + ChromeDriver)"
  if browser_ready; then
    info "$(chromium_path), $(chromedriver_path): $("$(chromedriver_path)" --version 2>/dev/null | head -n 1)"
    return 0
  fi
  if [ -n "${CHROMIUM:-}${CHROMEDRIVER:-}" ]; then
    die "CHROMIUM/CHROMEDRIVER set but not executable (CHROMIUM=${CHROMIUM:-unset}, CHROMEDRIVER=${CHROMEDRIVER:-unset})"
  fi
  command -v apt-get >/dev/null 2>&1 || die "Chromium/ChromeDriver missing and no apt-get: install chromium and chromium-driver, or set CHROMIUM and CHROMEDRIVER"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "Chromium/ChromeDriver missing: run as root or install chromium and chromium-driver"
    sudo="sudo"
  fi
  local log="${CACHE_DIR}/apt.log"
  mkdir -p "${CACHE_DIR}" || die "cannot create ${CACHE_DIR}"
  info "apt-get install chromium chromium-driver  (log: ${log})"
  if ! { ${sudo} apt-get update && DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y --no-install-recommends chromium chromium-driver; } >"${log}" 2>&1; then
    tail -n 40 "${log}" >&2
    die "installing chromium and chromium-driver failed (see ${log})"
  fi
  browser_ready || die "chromium/chromedriver still missing after apt-get (see ${log})"
  info "installed: $("$(chromedriver_path)" --version 2>/dev/null | head -n 1)"
}

# ---------------------------------------------------------------- moto server
start_moto() {
  section "Starting moto_server on 127.0.0.1 (free port)"
  command -v curl >/dev/null 2>&1 || die "curl not found (used for the moto readiness check)"
  MOTO_LOG="$(mktemp "${TMPDIR:-/tmp}/shop-keycrm-moto.XXXXXX")" || die "mktemp failed"
  "${VENV}/bin/moto_server" -H 127.0.0.1 -p 0 >"${MOTO_LOG}" 2>&1 </dev/null &
  MOTO_PID=$!

  local port="" deadline=$((SECONDS + MOTO_READY_TIMEOUT_S))
  while :; do
    if ! kill -0 "${MOTO_PID}" 2>/dev/null; then
      printf '%s--- moto_server log ---%s\n' "${RED}" "${RESET}" >&2
      cat "${MOTO_LOG}" >&2
      MOTO_PID=""
      die "moto_server exited before it became ready"
    fi
    if [ -z "${port}" ]; then
      port="$(sed -n 's#.*Running on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "${MOTO_LOG}" | head -n 1)"
    fi
    if [ -n "${port}" ] && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:${port}/moto-api/" 2>/dev/null; then
      break
    fi
    if [ "${SECONDS}" -ge "${deadline}" ]; then
      printf '%s--- moto_server log ---%s\n' "${RED}" "${RESET}" >&2
      cat "${MOTO_LOG}" >&2
      die "moto_server (pid ${MOTO_PID}) not ready after ${MOTO_READY_TIMEOUT_S}s"
    fi
    sleep 0.1
  done

  export AWS_ENDPOINT_URL="http://127.0.0.1:${port}"
  export AWS_REGION="us-east-1"
  export AWS_DEFAULT_REGION="us-east-1"
  export AWS_ACCESS_KEY_ID="test"
  export AWS_SECRET_ACCESS_KEY="test"
  export AWS_EC2_METADATA_DISABLED="true"
  export AWS_CONFIG_FILE="/dev/null"
  export AWS_SHARED_CREDENTIALS_FILE="/dev/null"
  unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
  info "moto_server pid ${MOTO_PID}, AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL}"
}

# ---------------------------------------------------------------- steps
STEP_NAMES=()
STEP_RESULTS=()
FAILED=0

# run_step "<title>" cmd args...  (records PASS/FAIL and duration; never aborts the script)
run_step() {
  local title="$1"; shift
  section "${title}"
  info "\$ $*"
  local start=${SECONDS} rc=0
  "$@" || rc=$?
  local took=$((SECONDS - start))
  if [ "${rc}" -eq 0 ]; then
    STEP_RESULTS+=("PASS")
    printf '    %sok%s (%ss)\n' "${GREEN}" "${RESET}" "${took}"
  else
    STEP_RESULTS+=("FAIL")
    FAILED=$((FAILED + 1))
    printf '    %sFAILED%s with exit code %s (%ss)\n' "${RED}" "${RESET}" "${rc}" "${took}"
  fi
  STEP_NAMES+=("${title}")
  return 0
}

skip_step() {
  section "$1"
  info "skipped: $2"
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("SKIP")
  FAILED=$((FAILED + 1))
}

expand_template() {
  mkdir -p "$(dirname "${EXPANDED}")" && rm -f "${EXPANDED}" &&
    "${VENV}/bin/python" infra/scripts/sam2cfn.py "${TEMPLATE}" "${EXPANDED}"
}

# ---------------------------------------------------------------- main
TOTAL_START=${SECONDS}
printf '%sshop-keycrm test suite%s (repo: %s)\n' "${BOLD}" "${RESET}" "${REPO_ROOT}"

ensure_venv
ensure_browser
start_moto

run_step "cargo fmt --all -- --check" cargo fmt --all -- --check
run_step "cargo clippy --workspace --all-targets --locked -- -D warnings" \
  cargo clippy --workspace --all-targets --locked -- -D warnings
# The pure domain must not grow I/O through its dependencies (README: "mapping ... no I/O").
mapping_has_no_io_deps() {
  local found
  found="$(cargo tree -p mapping -e normal --locked --prefix none | grep -E '^(reqwest|tokio|rand|hyper|aws-[a-z-]+) ' | sort -u)"
  if [ -n "${found}" ]; then
    printf '    mapping depends on I/O crates:\n%s\n' "${found}" >&2
    return 1
  fi
}
run_step "cargo tree: mapping has no reqwest/tokio/rand/aws" mapping_has_no_io_deps
# Functions hand each other work through queues and the shared crates (jobs, queue, store),
# never through each other: no function crate may depend on another, dev-dependencies included.
no_function_depends_on_another() {
  local dir name others found bad=0
  for dir in functions/*/; do
    name="$(basename "${dir}")"
    others="$(ls functions | grep -vx "${name}" | paste -sd'|')"
    found="$(cargo tree -p "${name}" -e normal,dev --locked --prefix none --depth 1 \
      | tail -n +2 | grep -E "^(${others}) " | sort -u)"
    if [ -n "${found}" ]; then
      printf '    %s depends on other functions:\n%s\n' "${name}" "${found}" >&2
      bad=1
    fi
  done
  return "${bad}"
}
run_step "cargo tree: no function crate depends on another" no_function_depends_on_another
# --no-fail-fast: one failing test binary must not hide the results of the others.
run_step "cargo test --workspace --locked --no-fail-fast $*" cargo test --workspace --locked --no-fail-fast "$@"

# Template checks do not need moto; stop it now so it does not outlive the Rust tests.
stop_moto

run_step "cfn-lint ${TEMPLATE} (pass 1: SAM source)" "${VENV}/bin/cfn-lint" -- "${TEMPLATE}"
run_step "sam2cfn: offline SAM -> CloudFormation expansion" expand_template
if [ -f "${EXPANDED}" ]; then
  run_step "cfn-lint ${EXPANDED} (pass 2: expanded CloudFormation)" "${VENV}/bin/cfn-lint" -- "${EXPANDED}"
else
  skip_step "cfn-lint ${EXPANDED} (pass 2: expanded CloudFormation)" "expansion failed, nothing to lint"
fi

# ---------------------------------------------------------------- summary
section "Summary"
for i in "${!STEP_NAMES[@]}"; do
  case "${STEP_RESULTS[$i]}" in
    PASS) colour="${GREEN}" ;;
    *) colour="${RED}" ;;
  esac
  printf '    %s%-4s%s  %s\n' "${colour}" "${STEP_RESULTS[$i]}" "${RESET}" "${STEP_NAMES[$i]}"
done
passed=$(( ${#STEP_NAMES[@]} - FAILED ))
if [ "${FAILED}" -eq 0 ]; then
  printf '\n%sRESULT: all %s steps passed%s in %ss\n' "${GREEN}${BOLD}" "${#STEP_NAMES[@]}" "${RESET}" "$((SECONDS - TOTAL_START))"
  exit 0
fi
printf '\n%sRESULT: %s of %s steps FAILED%s (%s passed) in %ss\n' "${RED}${BOLD}" "${FAILED}" "${#STEP_NAMES[@]}" "${RESET}" "${passed}" "$((SECONDS - TOTAL_START))"
exit 1
