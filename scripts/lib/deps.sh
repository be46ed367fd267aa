# Debian packages the scripts need, installed only when missing. Sourced by scripts/test and
# scripts/demo:
#
#   source scripts/lib/deps.sh
#   missing=()
#   deps_build            # adds cmake and gcc to `missing` when absent
#   deps_install [ARGS]   # installs `missing` with apt-get (sudo when not root), ARGS passed to
#                         # apt-get install (--no-install-recommends, say); nothing when empty

# What building ssv-ha needs: cmake for Pingora's zlib (its build script panics without it) and
# a C compiler.
deps_build() {
  command -v cmake >/dev/null || missing+=(cmake)
  command -v cc >/dev/null || missing+=(gcc)
}

# Installs the packages in `missing`, if any, saying which first; arguments go to apt-get install.
deps_install() {
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing Debian packages: ${missing[*]}"
  # sudo clears the environment: the non-interactive front end is passed through it.
  local apt=(apt-get)
  [ "$(id -u)" -eq 0 ] || apt=(sudo DEBIAN_FRONTEND=noninteractive apt-get)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq "$@" "${missing[@]}" >/dev/null
}
