#!/usr/bin/env bash
# Checks that the library graph in the code is the one the build declares.
#
#   scripts/check-layers.sh [BUILD_DIR]     BUILD_DIR defaults to build-test
#
# BUILD_DIR/layers.txt (written by CMake: "TARGET FOLDER DEP...", one line per
# library, test executable and binary) says which folder each target owns and
# what it links. This script fails when
#  1. a file includes a project header (under src/ or tests/) whose folder
#     belongs to a target that the file's own target neither is nor links
#     (directly or transitively), or that belongs to no target at all;
#  2. a type (class, struct, enum, alias) is defined at namespace scope in two
#     files of the same named namespace: two `sluice::HttpRequest`s linked into
#     one binary break the one-definition rule.
# Run by `make test` (CTest test check_layers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-test}
if [[ ! -f "$build/layers.txt" ]]; then
  echo "check-layers: $build/layers.txt not found: configure a build first" \
       "(make test-build, or cmake -S . -B $build), or pass its directory" >&2
  exit 2
fi
exec python3 - "$root" "$build/layers.txt" <<'EOF'
import os, re, sys

root, layers_file = sys.argv[1], sys.argv[2]
owner, deps = {}, {}
for line in open(layers_file):
    parts = line.split()
    if len(parts) < 2:
        continue
    target, folder, direct = parts[0], parts[1], parts[2:]
    deps.setdefault(target, set()).update(direct)
    owner.setdefault(folder, target)

def closure(t, seen=None):
    seen = set() if seen is None else seen
    for d in deps.get(t, ()):
        if d not in seen:
            seen.add(d)
            closure(d, seen)
    return seen

reach = {t: closure(t) | {t} for t in deps}
errors = []
include_re = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
sources = []
for folder, target in owner.items():
    d = os.path.join(root, folder)
    for f in sorted(os.listdir(d)):
        if f.endswith(('.h', '.cc')):
            sources.append((os.path.join(d, f), folder, target))

def resolve(inc, here):
    for base in (os.path.dirname(here), os.path.join(root, 'src'), os.path.join(root, 'tests')):
        p = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(p):
            return p
    return None

for path, folder, target in sources:
    rel = os.path.relpath(path, root)
    for n, line in enumerate(open(path, encoding='utf-8'), 1):
        m = include_re.match(line)
        if not m:
            continue
        hdr = resolve(m.group(1), path)
        if hdr is None or not hdr.startswith(root + os.sep):
            continue  # a system or third-party header
        hfolder = os.path.relpath(os.path.dirname(hdr), root)
        hrel = os.path.relpath(hdr, root)
        if not (hfolder.startswith('src') or hfolder.startswith('tests')):
            continue
        htarget = owner.get(hfolder)
        if htarget is None:
            errors.append(f"{rel}:{n}: includes {hrel}, whose folder {hfolder} is no library")
        elif htarget not in reach.get(target, {target}):
            errors.append(f"{rel}:{n}: includes {hrel} of {htarget}, which {target} does not link")

# 2. one name, one type
type_re = re.compile(
    r'^(?:class|struct|union|enum(?:\s+class)?)\s+(?:\[\[[^\]]*\]\]\s+)?([A-Za-z_]\w*)\b(?!::)[^;(]*\{'
    r'|^using\s+([A-Za-z_]\w*)\s*=')
ns_re = re.compile(r'^namespace\s*([\w:]*)\s*\{')
defs = {}
for path, folder, target in sources:
    rel = os.path.relpath(path, root)
    stack = []
    for n, line in enumerate(open(path, encoding='utf-8'), 1):
        m = ns_re.match(line)
        if m:
            stack.append(m.group(1))
            continue
        if line.startswith('}') and '// namespace' in line:
            if stack:
                stack.pop()
            continue
        if not stack or '' in stack:
            continue  # global scope of a test main, or an anonymous namespace
        m = type_re.match(line)
        if m:
            name = m.group(1) or m.group(2)
            defs.setdefault(('::'.join(stack), name), []).append(f"{rel}:{n}")
for (ns, name), where in sorted(defs.items()):
    files = {w.rsplit(':', 1)[0] for w in where}
    if len(files) > 1:
        errors.append(f"{ns}::{name} is defined in {len(files)} files: " + ", ".join(where))

for e in errors:
    print("check-layers: " + e)
targets = len(deps)
if errors:
    print(f"check-layers: FAILED, {len(errors)} problem(s) in {len(sources)} files of {targets} targets")
    sys.exit(1)
print(f"check-layers: ok, {len(sources)} files of {targets} targets include only what they link; "
      f"no type defined twice")
EOF
