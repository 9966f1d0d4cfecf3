#!/bin/sh
# List (and optionally verify) the built test programs.
#
#   list.sh [OUT]            one line per file: NAME KIND SIZE PATH
#   list.sh --verify [OUT]   also check every file is what it should be;
#                            exits 1 if anything is wrong or missing
#
# KIND comes from the 8-byte header: "module" (\0asm 01 00 00 00),
# "component" (\0asm 0d 00 01 00), "not-wasm" (no \0asm magic), or
# "unknown-version".  OUT defaults to the out/ directory next to this script.
set -eu

verify=0
if [ "${1:-}" = "--verify" ]; then verify=1; shift; fi
out=${1:-$(dirname "$0")/out}

# name -> expected kind (and what else to check)
expected() {
    case "$1" in
        hello-component) echo component ;;
        bad/not-wasm) echo not-wasm ;;
        bad/invalid) echo module-invalid ;;
        bad/imports-env) echo module-imports-env ;;
        trap) echo module-trap ;;
        *) echo module-wasi ;;
    esac
}
ALL="hello hello-component printer files exit-code trap sleeper hello-c memhog tty
bad/not-wasm bad/invalid bad/imports-env"

kind_of() {
    magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
    version=$(od -An -tx1 -j4 -N4 "$1" | tr -d ' \n')
    if [ "$magic" != "0061736d" ]; then echo not-wasm
    elif [ "$version" = "01000000" ]; then echo module
    elif [ "$version" = "0d000100" ]; then echo component
    else echo "unknown-version($version)"
    fi
}

fail=0
bad() { echo "  FAIL $1: $2" >&2; fail=1; }

for name in $ALL; do
    f="$out/$name.wasm"
    if [ ! -f "$f" ]; then
        printf '%-16s %-10s %8s %s\n' "$name" missing - "$f"
        [ $verify = 1 ] && bad "$name" "not built (run make -C test-images)"
        continue
    fi
    kind=$(kind_of "$f")
    size=$(wc -c < "$f" | tr -d ' ')
    printf '%-16s %-10s %8s %s\n' "$name" "$kind" "$size" "$f"
    [ $verify = 1 ] || continue

    want=$(expected "$name")
    case "$want" in
        component)
            [ "$kind" = component ] || bad "$name" "want component, got $kind"
            # wabt cannot parse components; check it carries the CLI world.
            grep -aq 'wasi:cli/run' "$f" || bad "$name" "no wasi:cli/run export found"
            ;;
        not-wasm)
            [ "$kind" = not-wasm ] || bad "$name" "want not-wasm, got $kind"
            ;;
        module-invalid)
            [ "$kind" = module ] || bad "$name" "want a module header, got $kind"
            if wasm-objdump -h "$f" >/dev/null 2>&1; then
                bad "$name" "wasm-objdump parsed it; it should be malformed"
            fi
            ;;
        module-*)
            [ "$kind" = module ] || { bad "$name" "want module, got $kind"; continue; }
            wasm-validate "$f" >/dev/null 2>&1 || bad "$name" "wasm-validate failed"
            x=$(wasm-objdump -x "$f" 2>/dev/null || true)
            echo "$x" | grep -q -- '-> "_start"$' || bad "$name" "no _start export"
            case "$want" in
                module-wasi)
                    echo "$x" | grep -q '<- wasi_snapshot_preview1\.' \
                        || bad "$name" "no wasi_snapshot_preview1 imports"
                    if echo "$x" | grep '<- ' | grep -vq '<- wasi_snapshot_preview1\.'; then
                        bad "$name" "imports something other than wasi_snapshot_preview1"
                    fi ;;
                module-trap)
                    if echo "$x" | grep -q '<- '; then bad "$name" "trap should import nothing"; fi ;;
                module-imports-env)
                    echo "$x" | grep -q '<- env\.missing_host_fn' \
                        || bad "$name" "no env.missing_host_fn import" ;;
            esac
            ;;
    esac
done

if [ $verify = 1 ]; then
    if [ $fail = 0 ]; then echo "verify: all ok"; else echo "verify: FAILED" >&2; exit 1; fi
fi
