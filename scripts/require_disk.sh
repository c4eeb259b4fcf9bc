# Sourced by the set-up scripts: require_free_gb GB WHAT fails with a clear message, before pip
# starts, when the file system holding the checkout has less than GB gigabytes free (pip would
# otherwise stop half-way with "No space left on device" and leave a broken environment).
require_free_gb() {
    local need_gb="$1" what="$2" free_gb
    free_gb=$(df -Pk . | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
    if [ "$free_gb" -lt "$need_gb" ]; then
        echo "ERROR: $what needs about $need_gb GB free on the file system of $(pwd); only $free_gb GB is free." >&2
        echo "Free some space (or clone the checkout onto a larger disk) and rerun." >&2
        exit 1
    fi
}
