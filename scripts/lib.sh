# Shared steps of scripts/serve and scripts/test. Every step is idempotent and says
# what it does; nothing here assumes anything was installed by hand.

# Each step is told with the time since the script began (bash's SECONDS), so a slow
# step shows.
say() { printf '\033[1m==> [%d:%02d] %s\033[0m\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A Docker engine that answers: install docker.io and start dockerd when needed.
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        say "Docker engine: running"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        apt_install docker.io iptables
    fi
    if ! command -v docker >/dev/null 2>&1; then
        apt_install docker.io
    fi
    local log=/var/log/sandboxd-dockerd.log
    say "starting dockerd in the background (log: $log)"
    as_root sh -c "setsid nohup dockerd >'$log' 2>&1 </dev/null &"
    local i
    for i in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            say "Docker engine: started"
            return
        fi
        sleep 1
    done
    echo "dockerd did not come up in 60 s; its log:" >&2
    tail -n 30 "$log" >&2 || true
    return 1
}

# Host tools, each from its Debian package when missing (PATH lists sbin for root).
# The daemon uses iptables (egress), ip, nsenter (the DNS rule inside a sandbox) and
# mkfs.ext4 / mount (each sandbox's disk); the tests also use curl and sqlite3.
ensure_tools() {
    local missing=() pair tool package
    for pair in "$@"; do
        tool=${pair%%:*} package=${pair#*:}
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1; then
            missing+=("$package")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}
DAEMON_TOOLS=(iptables:iptables ip:iproute2 nsenter:util-linux mkfs.ext4:e2fsprogs losetup:mount)
TEST_TOOLS=(curl:curl sqlite3:sqlite3 python3:python3 perl:perl chromium:chromium)
# Node and npm build the web console (console/) that the daemon embeds.
CONSOLE_TOOLS=(node:nodejs npm:npm)

# debootstrap builds the base image where no registry is reachable.
ensure_debootstrap() {
    if ! command -v debootstrap >/dev/null 2>&1; then
        apt_install debootstrap
    fi
}

# The web console: installs its pinned packages (console/package-lock.json) when they
# changed and bundles console/src into console/dist when a source is newer than the
# bundle. daemon/build.rs embeds console/dist into the binary, so run this first.
build_console() {
    if [ ! -f console/node_modules/.package-lock.json ] ||
        [ console/package-lock.json -nt console/node_modules/.package-lock.json ]; then
        say "installing the web console's packages (console/, npm ci)"
        (cd console && npm ci --no-audit --no-fund --loglevel=error)
    fi
    if [ ! -f console/dist/app.js ] ||
        [ -n "$(find console/src console/build.mjs console/package-lock.json \
            -newer console/dist/app.js -print -quit)" ]; then
        say "building the web console (console/src -> console/dist)"
        (cd console && node build.mjs)
    else
        say "web console: up to date (console/dist)"
    fi
}

# Builds the daemon and the static sandbox-init; PROFILE is "release" or "dev".
build_binaries() {
    local profile="${1:-release}" flag=()
    [ "$profile" = release ] && flag=(--release)
    say "building sandboxd ($profile)"
    cargo build "${flag[@]}" -p sandboxd
    say "building the static sandbox-init ($profile)"
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build "${flag[@]}" -p sandbox-init --target x86_64-unknown-linux-gnu
}

# The Claude Code CLI: the standalone binary bundled in the PyPI package
# claude-agent-sdk, extracted once into the cache. Exports SANDBOXD_CLAUDE_BIN.
CLAUDE_SDK_VERSION="${SANDBOXD_CLAUDE_SDK_VERSION:-0.2.187}"
ensure_claude() {
    if [ -n "${SANDBOXD_CLAUDE_BIN:-}" ] && [ -x "${SANDBOXD_CLAUDE_BIN}" ]; then
        say "claude: $SANDBOXD_CLAUDE_BIN"
        return
    fi
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/sandboxd/claude-agent-sdk-$CLAUDE_SDK_VERSION"
    local bin="$dir/claude"
    if [ ! -x "$bin" ]; then
        say "downloading the Claude Code CLI (claude-agent-sdk $CLAUDE_SDK_VERSION from PyPI, ~170 MB)"
        local tmp
        tmp=$(mktemp -d)
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            -d "$tmp" "claude-agent-sdk==$CLAUDE_SDK_VERSION"
        mkdir -p "$dir"
        python3 - "$tmp" "$bin" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("_bundled/claude"))
    with open(sys.argv[2] + ".part", "wb") as out:
        out.write(z.read(name))
os.chmod(sys.argv[2] + ".part", 0o755)
os.rename(sys.argv[2] + ".part", sys.argv[2])
PY
        rm -rf "$tmp"
    fi
    export SANDBOXD_CLAUDE_BIN="$bin"
    say "claude: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
}

# The OpenAI Codex CLI: the static musl binary of the npm package
# @openai/codex@<version>-linux-x64, unpacked once into the cache. Exports
# SANDBOXD_CODEX_BIN.
CODEX_VERSION="${SANDBOXD_CODEX_VERSION:-0.171.0}"
ensure_codex() {
    if [ -n "${SANDBOXD_CODEX_BIN:-}" ] && [ -x "${SANDBOXD_CODEX_BIN}" ]; then
        say "codex: $SANDBOXD_CODEX_BIN"
        return
    fi
    local arch triple
    case "$(uname -m)" in
        x86_64) arch=x64 triple=x86_64-unknown-linux-musl ;;
        aarch64) arch=arm64 triple=aarch64-unknown-linux-musl ;;
        *) echo "codex: no package for $(uname -m)" >&2; return 1 ;;
    esac
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/sandboxd/codex-$CODEX_VERSION-linux-$arch"
    local bin="$dir/codex"
    if [ ! -x "$bin" ]; then
        command -v npm >/dev/null 2>&1 || apt_install npm
        say "downloading the Codex CLI (@openai/codex@$CODEX_VERSION-linux-$arch from npm, ~170 MB)"
        local tmp
        tmp=$(mktemp -d)
        (cd "$tmp" && npm pack --silent "@openai/codex@$CODEX_VERSION-linux-$arch" >/dev/null)
        tar -xzf "$tmp"/*.tgz -C "$tmp" "package/vendor/$triple/bin/codex"
        mkdir -p "$dir"
        mv "$tmp/package/vendor/$triple/bin/codex" "$bin.part"
        chmod 0755 "$bin.part"
        mv "$bin.part" "$bin"
        rm -rf "$tmp"
    fi
    export SANDBOXD_CODEX_BIN="$bin"
    say "codex: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
}

# The Python suite of the E2B API (tests/e2b-py, run by tests/tests/e2b_py.rs): a venv
# at tests/e2b-py/.venv holding the pinned packages of its requirements.txt (PyPI e2b
# and pytest), installed again only when that file changes.
ensure_e2b_py() {
    local dir=tests/e2b-py
    local venv="$dir/.venv"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the Python venv of the E2B SDK tests ($venv)"
        python3 -m venv "$venv"
    fi
    if cmp -s "$dir/requirements.txt" "$venv/installed-requirements.txt"; then
        say "e2b Python SDK and pytest: up to date ($venv)"
        return
    fi
    say "installing the e2b Python SDK and pytest into $venv ($dir/requirements.txt)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
    cp "$dir/requirements.txt" "$venv/installed-requirements.txt"
}
