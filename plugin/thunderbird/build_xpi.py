#!/usr/bin/env python3
"""Packs the sealpost Thunderbird add-on into an .xpi (a zip file).

Usage: python3 plugin/thunderbird/build_xpi.py OUT.xpi

The archive holds the add-on's files from plugin/thunderbird/ and the
console's api.js, pages.js and console.css (from plugin/console/) as
console/. Entries are sorted and carry a fixed time, so the same sources
give the same bytes. Fails when a file the manifest names, or a module a
script imports, is missing.
"""

import json
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONSOLE = os.path.join(os.path.dirname(HERE), "console")
CONSOLE_FILES = ("api.js", "pages.js", "console.css")
# What ships from plugin/thunderbird/ (folders taken whole, but for dotfiles).
ADDON_FILES = ("manifest.json", "background.js")
ADDON_DIRS = ("lib", "popup", "options", "icons")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
IMPORT_RE = re.compile(r"""(?:^|[;\s])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|"""
                       r"""(?:^|[;\s])import\s*["']([^"']+)["']""", re.M)
REF_RE = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)


class BuildError(Exception):
    pass


def collect():
    """{archive name: source path} of everything that ships."""
    files = {}
    for name in ADDON_FILES:
        files[name] = os.path.join(HERE, name)
    for d in ADDON_DIRS:
        top = os.path.join(HERE, d)
        if not os.path.isdir(top):
            raise BuildError(f"missing folder {top}")
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for f in filenames:
                if f.startswith(".") or f.endswith("~"):
                    continue
                path = os.path.join(dirpath, f)
                files[os.path.relpath(path, HERE).replace(os.sep, "/")] = path
    for f in CONSOLE_FILES:
        files["console/" + f] = os.path.join(CONSOLE, f)
    for name, path in sorted(files.items()):
        if not os.path.isfile(path):
            raise BuildError(f"missing file {path} (packed as {name})")
    return files


def manifest_refs(manifest):
    """The files the manifest names, as archive names."""
    refs = []
    bg = manifest.get("background", {})
    refs += bg.get("scripts", [])
    if "page" in bg:
        refs.append(bg["page"])
    if "options_ui" in manifest:
        refs.append(manifest["options_ui"]["page"])
    for key in ("message_display_action", "compose_action", "browser_action", "action"):
        action = manifest.get(key)
        if not action:
            continue
        if "default_popup" in action:
            refs.append(action["default_popup"])
        icon = action.get("default_icon")
        refs += list(icon.values()) if isinstance(icon, dict) else [icon] if icon else []
    refs += list(manifest.get("icons", {}).values())
    return [r.lstrip("/") for r in refs]


def resolve(base_name, ref):
    """The archive name ref (relative to the file base_name) points at."""
    ref = ref.split("#", 1)[0].split("?", 1)[0]
    parts = base_name.split("/")[:-1]
    for p in ref.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


def check(files):
    try:
        with open(files["manifest.json"], encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise BuildError(f"manifest.json: {e}")
    for ref in manifest_refs(manifest):
        if ref not in files:
            raise BuildError(f"manifest.json names {ref}, which is not in the add-on")
    for name, path in sorted(files.items()):
        if not name.endswith((".js", ".html")):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        pattern = IMPORT_RE if name.endswith(".js") else REF_RE
        for m in pattern.finditer(text):
            ref = next(g for g in m.groups() if g)
            if re.match(r"^[a-z]+:", ref):
                continue
            target = resolve(name, ref)
            if target not in files:
                raise BuildError(f"{name} refers to {ref}, which is not in the add-on")


def build(out):
    files = collect()
    check(files)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            with open(files[name], "rb") as f:
                z.writestr(info, f.read())
    os.replace(tmp, out)
    return len(files)


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print("usage: build_xpi.py OUT.xpi", file=sys.stderr)
        return 2
    try:
        n = build(argv[1])
    except BuildError as e:
        print(f"build_xpi.py: {e}", file=sys.stderr)
        return 1
    print(f"{argv[1]}: {n} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
