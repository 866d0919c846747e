# Sourced by CI (.ci/run), which defines apt_mirror_for. Paste-ready as a function.
# QEMU's QAPI source schema for the installed QEMU, for the qapi-gen regeneration test: the
# orig tarball of Debian's qemu source package, from the machine's configured mirror (the
# backports suite's .dsc is not always on the mirror; the orig tarball is). Exports
# QAPI_SCHEMA_DIR (the QEMU source tree holding qapi/, qga/ and VERSION).
fetch_qapi_schema() {
    local version upstream codename mirror dir=/tmp/qapi-schema tarball top
    version=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || {
        echo "qemu-system-x86 is not installed: no schema to fetch"
        return 0
    }
    upstream=${version#*:}
    upstream=${upstream%%-*}                 # 1:10.0.2+ds-2+deb13u1~bpo12+1 -> 10.0.2+ds
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    mirror=$(apt_mirror_for "$codename-backports")
    [ -n "$mirror" ] || mirror=$(apt_mirror_for "$codename")
    [ -n "$mirror" ] || { echo "no Debian mirror in the apt sources"; return 1; }
    tarball="qemu_${upstream}.orig.tar.xz"
    top="qemu-${upstream%%+*}"
    mkdir -p "$dir"
    if [ ! -d "$dir/$top/qapi" ]; then
        curl -fsSL -o "$dir/$tarball" "${mirror%/}/pool/main/q/qemu/$tarball"
        tar -xJf "$dir/$tarball" -C "$dir" "$top/VERSION" "$top/qapi" "$top/qga/qapi-schema.json"
        rm -f "$dir/$tarball"
    fi
    export QAPI_SCHEMA_DIR="$dir/$top"
}
